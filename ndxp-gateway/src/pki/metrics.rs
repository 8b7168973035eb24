//! Metrics of `ndxp-gateway pki serve`, served at `/metrics` on its admin
//! port (`--admin-listen`):
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ndxp_pki_ocsp_requests_total` | counter | `result`: `cached` (a kept answer), `signed` (signed now), `refused` (an OCSP error status, e.g. malformedRequest), `busy` (503, no signing place free), `failed` (signing failed or timed out) |
//! | `ndxp_pki_tsa_requests_total` | counter | `result`: `granted`, `rejected` (a PKIStatus refusal), `busy`, `failed` |
//! | `ndxp_pki_signing_duration_seconds` | histogram | `kind` (`ocsp`, `tsa`): time to sign one answer |
//! | `ndxp_pki_ocsp_cached_answers` | gauge | OCSP answers kept |
//! | `ndxp_pki_connections_open`, `ndxp_pki_connections_refused_total`, `ndxp_pki_handshakes_failed_total` | gauge, counters | `listener` (`pki`, `admin`); see [`ndxp_edge::metrics`] |
//! | `ndxp_build_info` | gauge | see [`ndxp_edge::metrics`] |

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// What a request to the PKI service was about.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub(super) enum Kind {
    Ocsp,
    Tsa,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Ocsp => "ocsp",
            Kind::Tsa => "tsa",
        }
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The metrics of one PKI service process.
#[derive(Debug)]
pub struct PkiMetrics {
    registry: Registry,
    ocsp: Family<ResultLabels, Counter>,
    tsa: Family<ResultLabels, Counter>,
    signing: Family<KindLabels, Histogram, fn() -> Histogram>,
    cached: Gauge,
    connections: ndxp_edge::metrics::ConnectionMetrics,
}

fn signing_histogram() -> Histogram {
    // 0.1 ms .. ~3 s
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

impl Default for PkiMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl PkiMetrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        ndxp_edge::metrics::register_build_info(&mut registry);
        let ocsp = Family::<ResultLabels, Counter>::default();
        registry.register(
            "ndxp_pki_ocsp_requests",
            "OCSP requests answered, by result",
            ocsp.clone(),
        );
        let tsa = Family::<ResultLabels, Counter>::default();
        registry.register(
            "ndxp_pki_tsa_requests",
            "Timestamp requests answered, by result",
            tsa.clone(),
        );
        let signing: Family<KindLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(signing_histogram);
        registry.register(
            "ndxp_pki_signing_duration_seconds",
            "Time to sign one OCSP answer or timestamp token",
            signing.clone(),
        );
        let cached = Gauge::default();
        registry.register(
            "ndxp_pki_ocsp_cached_answers",
            "OCSP answers kept, produced ahead of time or on request",
            cached.clone(),
        );
        let connections =
            ndxp_edge::metrics::ConnectionMetrics::register(&mut registry, "ndxp_pki");
        Self {
            registry,
            ocsp,
            tsa,
            signing,
            cached,
            connections,
        }
    }

    /// Counts one answer about `kind` with `result`.
    pub(super) fn count(&self, kind: Kind, result: &'static str) {
        let family = match kind {
            Kind::Ocsp => &self.ocsp,
            Kind::Tsa => &self.tsa,
        };
        family.get_or_create(&ResultLabels { result }).inc();
    }

    /// Records the time one signature took.
    pub(super) fn signed(&self, kind: Kind, took: Duration) {
        self.signing
            .get_or_create(&KindLabels { kind: kind.label() })
            .observe(took.as_secs_f64());
    }

    /// Reports the serve loop of `listener` in the connection metrics.
    pub fn watch_edge(&self, listener: &'static str, stats: ndxp_edge::serve::EdgeStats) {
        self.connections.watch(listener, stats);
    }

    /// The exposition, with `cached` answers kept now.
    pub(super) fn encode(&self, cached: usize) -> String {
        self.connections.refresh();
        self.cached.set(i64::try_from(cached).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
