//! The exporter of `[telemetry]` with `Hop` in one process, against an
//! in-test OTLP/HTTP receiver: sampling is parent-based (the caller's
//! sampled flag decides, `sample_ratio` only for traces that start here),
//! the flag sent on tells the next hop the decision, and the exported span
//! has the ids of the `traceparent` sent on.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use http::HeaderMap;
use ndxp_core::trace::TraceParent;
use ndxp_edge::telemetry::{Telemetry, TelemetrySettings};
use ndxp_edge::trace::{hop_span, Hop};
use ndxp_test_support::otlp::Collector;
use tracing_subscriber::layer::SubscriberExt as _;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn caller(flags: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "traceparent",
        format!("00-{TRACE}-00f067aa0ba902b7-{flags}")
            .parse()
            .unwrap(),
    );
    h
}

/// Runs one hop for `headers` with `telemetry`'s layer; the `traceparent`
/// it sends on.
fn hop(telemetry: &Telemetry, headers: &HeaderMap) -> TraceParent {
    let subscriber = tracing_subscriber::registry().with(telemetry.layer());
    tracing::subscriber::with_default(subscriber, || {
        let hop = Hop::start(headers, hop_span("consumer", None));
        let mut out = HeaderMap::new();
        hop.propagate(&mut out);
        TraceParent::parse(out["traceparent"].to_str().unwrap()).unwrap()
    })
}

fn settings(collector: &Collector, service: &str, ratio: f64) -> TelemetrySettings {
    TelemetrySettings {
        otlp_endpoint: Some(collector.endpoint()),
        service_name: Some(service.into()),
        sample_ratio: ratio,
        ..TelemetrySettings::default()
    }
}

#[test]
fn sampling_follows_the_caller_then_the_ratio() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let collector = rt.block_on(Collector::start());

    // Ratio 0: only what the caller sampled is exported.
    let none = Telemetry::start(&settings(&collector, "ratio-zero", 0.0), "x")
        .unwrap()
        .unwrap();
    let sampled = hop(&none, &caller("01"));
    let unsampled = hop(&none, &caller("00"));
    let fresh = hop(&none, &HeaderMap::new());
    none.shutdown();
    assert!(sampled.sampled());
    assert_eq!(sampled.trace_id.to_string(), TRACE);
    assert!(!unsampled.sampled(), "the caller's decision travels on");
    assert_eq!(unsampled.trace_id.to_string(), TRACE);
    assert!(!fresh.sampled(), "a new trace is not sampled at ratio 0");
    assert_ne!(fresh.trace_id.to_string(), TRACE);

    // Ratio 1: a new trace is exported, as a root.
    let all = Telemetry::start(&settings(&collector, "ratio-one", 1.0), "x")
        .unwrap()
        .unwrap();
    let root = hop(&all, &HeaderMap::new());
    all.shutdown();
    assert!(root.sampled());

    let spans =
        rt.block_on(collector.wait_for(Duration::from_secs(5), "two spans", |s| s.len() >= 2));
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let zero = spans
        .iter()
        .find(|s| s.service_name == "ratio-zero")
        .unwrap();
    assert_eq!(zero.trace_id, TRACE);
    assert_eq!(zero.parent_span_id, "00f067aa0ba902b7");
    assert_eq!(zero.span_id, sampled.parent_id.to_string());
    assert_eq!(zero.name, "ndxp consumer");
    assert_eq!(zero.attributes["ndxp.role"], "consumer");
    let one = spans
        .iter()
        .find(|s| s.service_name == "ratio-one")
        .unwrap();
    assert_eq!(one.trace_id, root.trace_id.to_string());
    assert_eq!(one.span_id, root.parent_id.to_string());
    assert_eq!(one.parent_span_id, "", "a trace started here is a root");
}
