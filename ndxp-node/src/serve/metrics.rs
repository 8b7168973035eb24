//! Prometheus metrics of a node, served at `/metrics` on the admin port.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ndxp_node_exchanges_total` | counter | `role` (consumer, provider), `status` (HTTP status), `code` (problem code raised or relayed, or empty) |
//! | `ndxp_node_exchange_duration_seconds` | histogram | `role` |
//! | `ndxp_node_peer_refused_total` | counter | |
//! | `ndxp_node_conf_version` | gauge | |
//! | `ndxp_node_conf_age_seconds` | gauge | |
//! | `ndxp_node_conf_expires_in_seconds` | gauge | |
//! | `ndxp_node_cert_expires_in_seconds` | gauge | `cert` (`auth`, `signing`): seconds until the node's TLS certificate or the member's signing certificate expires |
//! | `ndxp_node_timestamp_lag_seconds` | gauge | age of the oldest message-log record without an RFC 3161 token |
//! | `ndxp_node_unstamped_records` | gauge | records without a token at the last timestamping run |
//! | `ndxp_node_log_append_duration_seconds` | histogram | `role`: time an exchange waited for its message-log record to be committed |
//! | `ndxp_node_log_pending_appends` | gauge | appends waiting for their commit (sampled every 0.5 s) |
//! | `ndxp_build_info` | gauge | see [`ndxp_edge::metrics`] |
//! | `ndxp_node_connections_open`, `ndxp_node_connections_refused_total`, `ndxp_node_handshakes_failed_total` | gauge, counters | `listener` (client, client_https, peer, admin); see [`ndxp_edge::metrics`] |

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ExchangeLabels {
    role: &'static str,
    status: u16,
    code: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertLabels {
    cert: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoleLabels {
    role: &'static str,
}

type HistogramFamily = Family<RoleLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// The metrics of one node process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    exchanges: Family<ExchangeLabels, Counter>,
    latency: HistogramFamily,
    peer_refused: Counter,
    conf_version: Gauge,
    conf_age: Gauge<f64, AtomicU64>,
    conf_expires_in: Gauge<f64, AtomicU64>,
    cert_expires_in: Family<CertLabels, Gauge>,
    timestamp_lag: Gauge<f64, AtomicU64>,
    unstamped: Gauge,
    log_append: HistogramFamily,
    log_pending: Gauge,
    connections: ndxp_edge::metrics::ConnectionMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        ndxp_edge::metrics::register_build_info(&mut registry);
        let exchanges = Family::<ExchangeLabels, Counter>::default();
        registry.register(
            "ndxp_node_exchanges",
            "Exchanges answered, by role, HTTP status and problem code",
            exchanges.clone(),
        );
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "ndxp_node_exchange_duration_seconds",
            "Time from request received to answer ready, by role",
            latency.clone(),
        );
        let peer_refused = Counter::default();
        registry.register(
            "ndxp_node_peer_refused",
            "Peer connections refused (TLS handshake or revocation)",
            peer_refused.clone(),
        );
        let conf_version = Gauge::default();
        registry.register(
            "ndxp_node_conf_version",
            "Version of the global configuration in use",
            conf_version.clone(),
        );
        let conf_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "ndxp_node_conf_age_seconds",
            "Seconds since the global configuration in use was fetched",
            conf_age.clone(),
        );
        let conf_expires_in = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "ndxp_node_conf_expires_in_seconds",
            "Seconds until the global configuration in use expires",
            conf_expires_in.clone(),
        );
        let cert_expires_in = Family::<CertLabels, Gauge>::default();
        registry.register(
            "ndxp_node_cert_expires_in_seconds",
            "Seconds until the node's TLS certificate (auth) or the member's signing certificate (signing) expires",
            cert_expires_in.clone(),
        );
        let timestamp_lag = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "ndxp_node_timestamp_lag_seconds",
            "Age of the oldest message-log record not yet covered by a time-stamp token",
            timestamp_lag.clone(),
        );
        let unstamped = Gauge::default();
        registry.register(
            "ndxp_node_unstamped_records",
            "Message-log records not covered by a time-stamp token at the last run",
            unstamped.clone(),
        );
        let log_append: HistogramFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "ndxp_node_log_append_duration_seconds",
            "Time an exchange waited for its message-log record to be durably committed, by role",
            log_append.clone(),
        );
        let log_pending = Gauge::default();
        registry.register(
            "ndxp_node_log_pending_appends",
            "Message-log appends waiting for their commit",
            log_pending.clone(),
        );
        let connections =
            ndxp_edge::metrics::ConnectionMetrics::register(&mut registry, "ndxp_node");
        Self {
            registry,
            connections,
            log_append,
            log_pending,
            timestamp_lag,
            unstamped,
            exchanges,
            latency,
            peer_refused,
            conf_version,
            conf_age,
            conf_expires_in,
            cert_expires_in,
        }
    }

    /// Counts one answer.
    pub(crate) fn observe(&self, role: &'static str, status: u16, code: &str, took: Duration) {
        self.exchanges
            .get_or_create(&ExchangeLabels {
                role,
                status,
                code: code.to_owned(),
            })
            .inc();
        self.latency
            .get_or_create(&RoleLabels { role })
            .observe(took.as_secs_f64());
    }

    /// Counts a refused peer connection.
    pub(crate) fn peer_refused(&self) {
        self.peer_refused.inc();
    }

    /// Records the configuration version in use.
    pub(crate) fn set_conf_version(&self, v: u64) {
        self.conf_version.set(i64::try_from(v).unwrap_or(i64::MAX));
    }

    /// Records the configuration's age and remaining validity.
    pub(crate) fn observe_conf(&self, status: &ndxp_registry::globalconf::ConfStatus) {
        if let Some(a) = status.age_secs {
            self.conf_age.set(a as f64);
        }
        if let Some(e) = status.expires_in_secs {
            self.conf_expires_in.set(e as f64);
        }
    }

    /// Records when the node's certificates expire (`cert` is `auth` or
    /// `signing`), as seconds from `now` (negative once expired).
    pub(crate) fn observe_cert(
        &self,
        cert: &'static str,
        expires_at: chrono::DateTime<chrono::Utc>,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        self.cert_expires_in
            .get_or_create(&CertLabels { cert })
            .set((expires_at - now).num_seconds());
    }

    /// Records the timestamping lag.
    pub(crate) fn observe_timestamps(&self, lag: &ndxp_audit::timestamp::Lag) {
        self.timestamp_lag.set(lag.seconds);
        self.unstamped
            .set(i64::try_from(lag.unstamped).unwrap_or(i64::MAX));
    }

    /// Records how long one append waited for its commit.
    pub(crate) fn observe_log_append(&self, role: &'static str, took: Duration) {
        self.log_append
            .get_or_create(&RoleLabels { role })
            .observe(took.as_secs_f64());
    }

    /// Records the number of appends waiting for their commit.
    pub(crate) fn set_log_pending(&self, n: u64) {
        self.log_pending.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Reports the serve loop of `port` in the connection metrics.
    pub(crate) fn watch_edge(&self, port: &'static str, stats: ndxp_edge::serve::EdgeStats) {
        self.connections.watch(port, stats);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        self.connections.refresh();
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndxp_test_support::metrics::{catalogue, exposed};

    /// Every metric, once it has a sample, is in `docs/monitoring.md`'s
    /// node catalogue, and the catalogue lists nothing else.
    #[test]
    fn the_catalogue_lists_exactly_the_node_metrics() {
        let m = Metrics::new();
        m.observe("consumer", 200, "", Duration::from_millis(3));
        m.peer_refused();
        m.set_conf_version(7);
        m.observe_log_append("consumer", Duration::from_millis(1));
        m.set_log_pending(0);
        let now = chrono::Utc::now();
        m.observe_cert("auth", now + chrono::Duration::days(10), now);
        let edge = ndxp_edge::serve::Edge::new("admin port", &ndxp_edge::EdgeSettings::default());
        m.watch_edge("admin", edge.stats());
        let text = m.encode();
        assert_eq!(
            exposed(&text),
            catalogue("node"),
            "docs/monitoring.md's node catalogue"
        );
        assert!(
            text.contains("ndxp_node_cert_expires_in_seconds{cert=\"auth\"} 864000\n"),
            "{text}"
        );
        assert!(
            text.contains(
                "ndxp_node_exchanges_total{role=\"consumer\",status=\"200\",code=\"\"} 1\n"
            ),
            "{text}"
        );
    }
}
