//! W3C Trace Context on every hop (`docs/monitoring.md`, "Tracing"): the
//! one place where the consumer's node, the provider's node and the central
//! gateway read the caller's `traceparent`, open the hop's span and write
//! the `traceparent` they send on.
//!
//! A hop ([`Hop::start`]) continues the caller's trace when its
//! `traceparent` is valid and starts a fresh one otherwise (a malformed
//! header is ignored, never an error). Its own span id is the `parent-id`
//! of the `traceparent` it sends on ([`Hop::propagate`]), so the next hop's
//! span is the child of this one. A `tracestate` travels only with a valid
//! `traceparent`, unchanged.
//!
//! The hop's span records the trace id (field `trace_id`); new ids are
//! drawn from OpenSSL's random generator.
//!
//! ```
//! use http::HeaderMap;
//! use ndxp_edge::trace::Hop;
//!
//! let mut incoming = HeaderMap::new();
//! incoming.insert("traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse().unwrap());
//! let hop = Hop::start(&incoming, tracing::info_span!("ndxp.example"));
//! assert_eq!(hop.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! let mut outgoing = HeaderMap::new();
//! hop.propagate(&mut outgoing);
//! let sent = outgoing["traceparent"].to_str().unwrap();
//! assert!(sent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"));
//! assert!(!sent.contains("00f067aa0ba902b7")); // the parent is this hop now
//! ```

use http::header::{HeaderMap, HeaderName, HeaderValue};
use ndxp_core::trace::{SpanId, TraceId, TraceParent, TraceState, TRACEPARENT, TRACESTATE};

/// One hop of a trace: its span and the trace context it sends on.
#[derive(Debug, Clone)]
pub struct Hop {
    /// The context to send on: this hop's span id as the parent.
    context: TraceParent,
    /// The caller's `tracestate`, when valid and with a valid `traceparent`.
    state: Option<TraceState>,
    /// The hop's span (an OpenTelemetry span when export is on).
    span: tracing::Span,
}

/// The single value of `name`, as text; `None` when absent, repeated or
/// not text (a repeated `traceparent` is invalid: the specification allows
/// one).
fn single<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut all = headers.get_all(name).iter();
    let first = all.next()?;
    if all.next().is_some() {
        return None;
    }
    first.to_str().ok()
}

/// The caller's trace context from `headers`, when valid.
pub fn incoming(headers: &HeaderMap) -> Option<(TraceParent, Option<TraceState>)> {
    let parent = TraceParent::parse(single(headers, TRACEPARENT)?)?;
    let state = headers
        .get_all(TRACESTATE)
        .iter()
        .map(|v| v.to_str().ok())
        .collect::<Option<Vec<_>>>()
        .and_then(|parts| TraceState::parse(&parts.join(",")));
    Some((parent, state))
}

/// The name of every hop's span ([`hop_span`]); the exporter takes these
/// spans only.
pub const HOP_SPAN: &str = "ndxp.hop";

/// Starts `span` as an exported OpenTelemetry span, the child of `caller`
/// (a remote parent) when there is one, and returns its ids as the
/// `traceparent` to send on (the sampled flag is the sampler's decision);
/// `None` when the span is not exported (export off, or another span).
fn exported(span: &tracing::Span, caller: Option<TraceParent>) -> Option<TraceParent> {
    use opentelemetry::trace::{self as ot, TraceContextExt as _};
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;
    if let Some(c) = caller {
        let remote = ot::SpanContext::new(
            ot::TraceId::from_bytes(c.trace_id.to_bytes()),
            ot::SpanId::from_bytes(c.parent_id.to_bytes()),
            ot::TraceFlags::new(c.flags),
            true,
            ot::TraceState::default(),
        );
        let parent = opentelemetry::Context::new().with_remote_span_context(remote);
        span.set_parent(parent).ok()?;
    }
    let cx = span.context();
    let own = cx.span().span_context().clone();
    if !own.is_valid() {
        return None;
    }
    Some(TraceParent {
        trace_id: TraceId::from_bytes(own.trace_id().to_bytes())?,
        parent_id: SpanId::from_bytes(own.span_id().to_bytes())?,
        flags: if own.is_sampled() { 0x01 } else { 0x00 },
    })
}

/// Random bytes from OpenSSL; zeros only if it fails (never in practice),
/// which the id types turn into a valid id.
fn random<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    if ndxp_sign::openssl::rand::rand_bytes(&mut b).is_err() {
        tracing::warn!("OpenSSL's random generator failed; a trace id is not random");
    }
    b
}

impl Hop {
    /// Starts the hop for a request with `headers`: continues the caller's
    /// trace or starts one, and links `span` to it.
    ///
    /// When the span is exported ([`crate::telemetry`]), the exporter's span
    /// takes the caller's span as its parent and its ids are the ones sent
    /// on, so the collector shows the hops as parent and child; otherwise
    /// the ids are drawn here.
    pub fn start(headers: &HeaderMap, span: tracing::Span) -> Self {
        let caller = incoming(headers);
        let (context, state) = match (caller.clone(), exported(&span, caller.map(|c| c.0))) {
            (Some((parent, state)), Some(otel)) => (parent.child(otel.parent_id), state),
            (None, Some(otel)) => (otel, None),
            (Some((parent, state)), None) => (parent.child(SpanId::from(random::<8>())), state),
            (None, None) => (
                TraceParent::new_root(TraceId::from(random::<16>()), SpanId::from(random::<8>())),
                None,
            ),
        };
        span.record("trace_id", tracing::field::display(context.trace_id));
        Self {
            context,
            state,
            span,
        }
    }

    /// The trace this hop belongs to.
    pub fn trace_id(&self) -> TraceId {
        self.context.trace_id
    }

    /// The `traceparent` this hop sends on (its own span as the parent).
    pub fn traceparent(&self) -> TraceParent {
        self.context
    }

    /// The hop's span: instrument the hop's work with it.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Sets `traceparent` (and `tracestate`, when the caller sent a valid
    /// one) in `headers`, replacing any value there.
    pub fn propagate(&self, headers: &mut HeaderMap) {
        if let Ok(v) = HeaderValue::from_str(&self.context.to_string()) {
            headers.insert(HeaderName::from_static(TRACEPARENT), v);
        }
        headers.remove(TRACESTATE);
        if let Some(v) = self
            .state
            .as_ref()
            .and_then(|s| HeaderValue::from_str(s.as_str()).ok())
        {
            headers.insert(HeaderName::from_static(TRACESTATE), v);
        }
    }
}

/// The span of one hop, named after the `role` it plays (`consumer`,
/// `provider`, `gateway`): `ndxp.hop` with OpenTelemetry name
/// `ndxp <role>`, kind server, and the attributes `ndxp.role`,
/// `ndxp.transaction_id` (when known), `trace_id`, then as the hop learns
/// them `ndxp.client`, `ndxp.service` ([`record_parties`]) and
/// `http.response.status_code`, `ndxp.problem_code` ([`end_span`]).
pub fn hop_span(role: &'static str, tx: Option<ndxp_core::TransactionId>) -> tracing::Span {
    let name = match role {
        "consumer" => "ndxp consumer",
        "provider" => "ndxp provider",
        "gateway" => "ndxp gateway",
        _ => "ndxp hop",
    };
    let span = tracing::info_span!(
        "ndxp.hop",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        ndxp.role = role,
        ndxp.transaction_id = tracing::field::Empty,
        trace_id = tracing::field::Empty,
        ndxp.client = tracing::field::Empty,
        ndxp.service = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
        ndxp.problem_code = tracing::field::Empty,
    );
    if let Some(tx) = tx {
        span.record("ndxp.transaction_id", tracing::field::display(tx));
    }
    span
}

/// Records the calling subsystem and the service on the current hop span.
pub fn record_parties(client: &dyn std::fmt::Display, service: Option<&dyn std::fmt::Display>) {
    let span = tracing::Span::current();
    span.record("ndxp.client", tracing::field::display(client));
    if let Some(s) = service {
        span.record("ndxp.service", tracing::field::display(s));
    }
}

/// Records how the hop ended: the HTTP status, the problem code (empty for
/// none) and, for a 5xx, the OpenTelemetry error status.
pub fn end_span(span: &tracing::Span, status: http::StatusCode, problem_code: &str) {
    span.record("http.response.status_code", status.as_u16());
    if !problem_code.is_empty() {
        span.record("ndxp.problem_code", problem_code);
    }
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn continues_a_valid_trace_with_its_state() {
        let hop = Hop::start(
            &headers(&[
                (TRACEPARENT, TP),
                (TRACESTATE, "rojo=1"),
                (TRACESTATE, "congo=2"),
            ]),
            tracing::Span::none(),
        );
        let mut out = headers(&[(TRACESTATE, "stale=1")]);
        hop.propagate(&mut out);
        let sent = TraceParent::parse(out[TRACEPARENT].to_str().unwrap()).unwrap();
        assert_eq!(
            sent.trace_id.to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_ne!(sent.parent_id.to_string(), "00f067aa0ba902b7");
        assert!(sent.sampled());
        assert_eq!(out[TRACESTATE], "rojo=1,congo=2");
    }

    #[test]
    fn malformed_or_repeated_starts_a_fresh_trace() {
        for h in [
            headers(&[(TRACEPARENT, "00-garbage"), (TRACESTATE, "rojo=1")]),
            headers(&[(TRACEPARENT, TP), (TRACEPARENT, TP)]),
            headers(&[]),
        ] {
            let a = Hop::start(&h, tracing::Span::none());
            let b = Hop::start(&h, tracing::Span::none());
            assert_ne!(a.trace_id(), b.trace_id());
            assert_ne!(a.trace_id().to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
            let mut out = HeaderMap::new();
            a.propagate(&mut out);
            assert!(TraceParent::parse(out[TRACEPARENT].to_str().unwrap()).is_some());
            assert!(!out.contains_key(TRACESTATE));
        }
    }

    #[test]
    fn a_bad_tracestate_is_dropped_the_trace_kept() {
        let hop = Hop::start(
            &headers(&[(TRACEPARENT, TP), (TRACESTATE, "Not Valid")]),
            tracing::Span::none(),
        );
        assert_eq!(
            hop.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        let mut out = HeaderMap::new();
        hop.propagate(&mut out);
        assert!(!out.contains_key(TRACESTATE));
    }
}
