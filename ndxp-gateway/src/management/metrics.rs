//! Prometheus metrics of the management role, served as text at
//! `/metrics` on the admin port. The registry is created in
//! [`crate::server::run`] and passed down; there is no global state.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ndxp_management_requests_total` | counter | `method`, `route`, `status` |
//! | `ndxp_management_request_duration_seconds` | histogram | `method`, `route` |
//! | `ndxp_management_errors_total` | counter | `code` (problem code) |
//! | `ndxp_globalconf_version` | gauge | |
//! | `ndxp_globalconf_age_seconds` | gauge | |
//! | `ndxp_gateway_connections_open`, `ndxp_gateway_connections_refused_total`, `ndxp_gateway_handshakes_failed_total` | gauge, counters | `listener` (management, admin, gateway); see [`ndxp_edge::metrics`] |
//! | `ndxp_build_info` | gauge | see [`ndxp_edge::metrics`] |
//! | `ndxp_gateway_requests_total` and the gateway role's others | | when the process runs the gateway role: [`crate::gateway::metrics`] |
//!
//! `route` is the route template (e.g. `/api/v1/members/{instance}/{class}/{code}`),
//! or `unmatched`, so labels stay few whatever paths clients send.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use ndxp_edge::problem::ProblemCode;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    code: String,
}

type HistogramFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// The metrics of one management process.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: HistogramFamily,
    errors: Family<ErrorLabels, Counter>,
    conf_version: Gauge,
    conf_age: Gauge<f64, AtomicU64>,
    conf_created: Mutex<Option<DateTime<Utc>>>,
    connections: ndxp_edge::metrics::ConnectionMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        Self::with_gateway(None)
    }

    /// [`new`](Self::new), plus the gateway role's metrics when the
    /// process runs it.
    pub fn with_gateway(gateway: Option<&crate::gateway::metrics::GatewayMetrics>) -> Self {
        let mut registry = Registry::default();
        ndxp_edge::metrics::register_build_info(&mut registry);
        if let Some(g) = gateway {
            g.register(&mut registry);
        }
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let errors = Family::<ErrorLabels, Counter>::default();
        let conf_version = Gauge::default();
        let conf_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "ndxp_management_requests",
            "Management API requests by method, route and status",
            requests.clone(),
        );
        registry.register(
            "ndxp_management_request_duration_seconds",
            "Management API request latency",
            latency.clone(),
        );
        registry.register(
            "ndxp_management_errors",
            "Management API error answers by problem code",
            errors.clone(),
        );
        registry.register(
            "ndxp_globalconf_version",
            "Version of the latest published global configuration",
            conf_version.clone(),
        );
        registry.register(
            "ndxp_globalconf_age_seconds",
            "Seconds since the latest global configuration was built",
            conf_age.clone(),
        );
        let connections =
            ndxp_edge::metrics::ConnectionMetrics::register(&mut registry, "ndxp_gateway");
        Self {
            registry,
            connections,
            requests,
            latency,
            errors,
            conf_version,
            conf_age,
            conf_created: Mutex::new(None),
        }
    }

    /// Records one answered request.
    pub fn observe(&self, method: &str, route: &str, status: u16, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                method: method.to_string(),
                route: route.to_string(),
                status: status.to_string(),
            })
            .inc();
        self.latency
            .get_or_create(&RouteLabels {
                method: method.to_string(),
                route: route.to_string(),
            })
            .observe(seconds);
    }

    /// Counts an error answer by its problem code.
    pub fn error(&self, code: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                code: code.to_string(),
            })
            .inc();
    }

    /// Records the latest published global configuration.
    pub fn set_conf(&self, version: i64, created_at: DateTime<Utc>) {
        self.conf_version.set(version);
        if let Ok(mut c) = self.conf_created.lock() {
            *c = Some(created_at);
        }
    }

    /// Reports the serve loop of `listener` in the connection metrics.
    pub fn watch_edge(&self, listener: &'static str, stats: ndxp_edge::serve::EdgeStats) {
        self.connections.watch(listener, stats);
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        self.connections.refresh();
        if let Ok(c) = self.conf_created.lock() {
            if let Some(t) = *c {
                let age = (Utc::now() - t).num_milliseconds() as f64 / 1000.0;
                self.conf_age.set(age.max(0.0));
            }
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Middleware: counts and times every request by route template.
pub async fn track(State(metrics): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = method_label(req.method());
    let start = Instant::now();
    let resp = next.run(req).await;
    metrics.observe(
        method,
        &route,
        resp.status().as_u16(),
        start.elapsed().as_secs_f64(),
    );
    if let Some(ProblemCode(code)) = resp.extensions().get::<ProblemCode>() {
        metrics.error(code);
    }
    resp
}
