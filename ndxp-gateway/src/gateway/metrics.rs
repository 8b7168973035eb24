//! The central gateway's request and token metrics, registered in the
//! process's registry ([`crate::management::metrics::Metrics`]) and served
//! on its admin port:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ndxp_gateway_requests_total` | counter | `service`, `client`, `status` (HTTP), `code` (problem code raised by the gateway, or empty) |
//! | `ndxp_gateway_request_duration_seconds` | histogram | `service`: request received to answer ready (message log committed) |
//! | `ndxp_gateway_upstream_duration_seconds` | histogram | `service`: request forwarded to the backend's response head |
//! | `ndxp_gateway_rate_limited_total` | counter | `limit` (`rate`, `quota`): calls refused by a subscription's limits |
//! | `ndxp_gateway_tokens_issued_total` | counter | |
//! | `ndxp_gateway_tokens_refused_total` | counter | `reason` (`invalid_request`, `invalid_client`, `rate_limited`, `server_error`) |
//!
//! **Bounded labels.** `service` is a service offered through this gateway
//! (never the path a caller sent), `client` an application that
//! authenticated; calls refused before either is known carry `unknown`.
//! Each label keeps at most [`MAX_LABEL_VALUES`] distinct values; later
//! ones are counted under `other` ([`ndxp_edge::metrics::LabelValues`]).
//! Recording a call allocates nothing once its labels have been seen.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use ndxp_core::{ServiceId, SubsystemId};
use ndxp_edge::metrics::LabelValues;
use ndxp_edge::problem::ProblemCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Most distinct values of each of the `service`, `client` and `code`
/// labels.
pub const MAX_LABEL_VALUES: usize = 1000;

/// The `service` or `client` of a call refused before it was known.
pub const UNKNOWN: &str = "unknown";

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    service: Arc<str>,
    client: Arc<str>,
    status: u16,
    code: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: Arc<str>,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    limit: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

type Histograms = Family<ServiceLabels, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    // 0.25 ms .. ~8 s
    Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
}

/// Who a call was for and from, as its labels; set by the proxy on the
/// answer of every call that reached the message log.
#[derive(Debug, Clone)]
pub(crate) struct CallSeen {
    pub(crate) service: Arc<str>,
    pub(crate) client: Arc<str>,
    /// Request forwarded to the backend's response head, when it was
    /// forwarded.
    pub(crate) upstream: Option<Duration>,
}

/// The gateway role's metrics. Cheap to share: every field is a handle.
#[derive(Debug)]
pub struct GatewayMetrics {
    requests: Family<CallLabels, Counter>,
    duration: Histograms,
    upstream: Histograms,
    rate_limited: Family<LimitLabels, Counter>,
    tokens_issued: Counter,
    tokens_refused: Family<ReasonLabels, Counter>,
    services: LabelValues<ServiceId>,
    clients: LabelValues<SubsystemId>,
    codes: LabelValues,
    unknown: Arc<str>,
    no_code: Arc<str>,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    /// The metrics, not registered yet.
    pub fn new() -> Self {
        Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(duration_histogram),
            upstream: Family::new_with_constructor(duration_histogram),
            rate_limited: Family::default(),
            tokens_issued: Counter::default(),
            tokens_refused: Family::default(),
            services: LabelValues::new(MAX_LABEL_VALUES),
            clients: LabelValues::new(MAX_LABEL_VALUES),
            codes: LabelValues::new(MAX_LABEL_VALUES),
            unknown: Arc::from(UNKNOWN),
            no_code: Arc::from(""),
        }
    }

    /// Registers every metric in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ndxp_gateway_requests",
            "Central gateway calls answered, by service, client, HTTP status and problem code",
            self.requests.clone(),
        );
        registry.register(
            "ndxp_gateway_request_duration_seconds",
            "Central gateway calls: request received to answer ready, by service",
            self.duration.clone(),
        );
        registry.register(
            "ndxp_gateway_upstream_duration_seconds",
            "Central gateway calls: request forwarded to the backend's response head, by service",
            self.upstream.clone(),
        );
        registry.register(
            "ndxp_gateway_rate_limited",
            "Central gateway calls refused by a subscription's rate limit or daily quota",
            self.rate_limited.clone(),
        );
        registry.register(
            "ndxp_gateway_tokens_issued",
            "Access tokens issued at /oauth2/token",
            self.tokens_issued.clone(),
        );
        registry.register(
            "ndxp_gateway_tokens_refused",
            "Token requests refused at /oauth2/token, by reason",
            self.tokens_refused.clone(),
        );
    }

    /// The label of an offered service.
    pub(crate) fn service(&self, id: &ServiceId) -> Arc<str> {
        self.services.get(id)
    }

    /// The label of an authenticated client.
    pub(crate) fn client(&self, id: &SubsystemId) -> Arc<str> {
        self.clients.get(id)
    }

    /// Counts a call refused by a subscription's `rate` or `quota`.
    pub(crate) fn rate_limited(&self, limit: &'static str) {
        self.rate_limited
            .get_or_create(&LimitLabels { limit })
            .inc();
    }

    /// Records one answered call; `service` is the offered service it
    /// named, when the proxy did not label the answer itself.
    pub(crate) fn observe_call(&self, resp: &Response, service: Option<Arc<str>>, took: Duration) {
        let seen = resp.extensions().get::<CallSeen>();
        let service = seen
            .map(|s| s.service.clone())
            .or(service)
            .unwrap_or_else(|| self.unknown.clone());
        let client = seen.map_or_else(|| self.unknown.clone(), |s| s.client.clone());
        let code = resp
            .extensions()
            .get::<ProblemCode>()
            .map_or_else(|| self.no_code.clone(), |c| self.codes.get(c.0.as_str()));
        self.requests
            .get_or_create(&CallLabels {
                service: service.clone(),
                client,
                status: resp.status().as_u16(),
                code,
            })
            .inc();
        let labels = ServiceLabels { service };
        if let Some(up) = seen.and_then(|s| s.upstream) {
            self.upstream
                .get_or_create(&labels)
                .observe(up.as_secs_f64());
        }
        self.duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// Records one answer of the token endpoint.
    pub(crate) fn observe_token(&self, status: StatusCode) {
        let reason = match status.as_u16() {
            200 => {
                self.tokens_issued.inc();
                return;
            }
            401 => "invalid_client",
            429 => "rate_limited",
            400..=499 => "invalid_request",
            _ => "server_error",
        };
        self.tokens_refused
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
}
