//! W3C Trace Context end to end through a real node pair: the
//! information system's `traceparent` is continued by the consumer's node,
//! the provider's node and the backend, and both nodes' transaction
//! queries find the exchange by its trace id; a malformed one starts a
//! fresh trace instead of failing the call.
#![allow(clippy::unwrap_used)]

mod support;

use ndxp_core::trace::TraceParent;
use support::net::{http, Network, NodeSetup, Options, CITIZEN, CLIENT};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// The transactions of `trace` in `node`'s log, from its admin API.
async fn by_trace(node: &NodeSetup, trace: &str) -> Vec<serde_json::Value> {
    let r = http()
        .get(format!(
            "{}/api/v1/transactions?trace_id={trace}",
            node.admin_url()
        ))
        .bearer_auth(node.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: serde_json::Value = r.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

/// Calls the citizen service with `headers`; returns the NDXP-Id and
/// the `traceparent` and `tracestate` the backend saw.
async fn call(net: &Network, headers: &[(&str, &str)]) -> (String, TraceParent, Option<String>) {
    let mut req = http()
        .get(net.url(CITIZEN, "/persons/001099012345"))
        .header("NDXP-Client", CLIENT);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), 200, "a trace header never fails a call");
    let id = r.headers()["ndxp-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = r.json().await.unwrap();
    let seen = body["seen_traceparent"]
        .as_str()
        .expect("the backend receives a traceparent");
    let tp = TraceParent::parse(seen).expect("a valid traceparent reaches the backend");
    (id, tp, body["seen_tracestate"].as_str().map(str::to_owned))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traceparent_is_followed_through_both_nodes_to_the_backend() {
    let net = Network::start(Options::default()).await;

    let (id, seen, state) = call(
        &net,
        &[
            ("traceparent", &format!("00-{TRACE}-{CALLER_SPAN}-01")),
            ("tracestate", "rojo=00f067aa0ba902b7"),
        ],
    )
    .await;
    assert_eq!(seen.trace_id.to_string(), TRACE);
    assert_ne!(
        seen.parent_id.to_string(),
        CALLER_SPAN,
        "the provider's node names its own span as the backend's parent"
    );
    assert!(seen.sampled());
    assert_eq!(state.as_deref(), Some("rojo=00f067aa0ba902b7"));

    // Both nodes' logs hold the exchange under the trace id.
    for (node, role) in [(&net.consumer, "consumer"), (&net.provider, "provider")] {
        let items = by_trace(node, TRACE).await;
        assert_eq!(items.len(), 1, "{role}: {items:?}");
        assert_eq!(items[0]["transaction_id"], id.as_str(), "{role}");
        assert_eq!(items[0]["role"], role);
        assert_eq!(items[0]["trace_id"], TRACE, "{role}");
    }

    // Malformed, repeated or absent: a fresh trace from the consumer's
    // node, carried to the provider's node and the backend all the same.
    let mut fresh = Vec::new();
    for headers in [
        vec![
            ("traceparent", "00-not-a-trace-01"),
            ("tracestate", "rojo=1"),
        ],
        vec![(
            "traceparent",
            &*format!("00-{}-{CALLER_SPAN}-01", TRACE.to_uppercase()),
        )],
        vec![],
    ] {
        let (id, seen, state) = call(&net, &headers).await;
        let trace = seen.trace_id.to_string();
        assert_ne!(trace, TRACE);
        assert_eq!(
            state, None,
            "a tracestate travels only with a valid traceparent"
        );
        for node in [&net.consumer, &net.provider] {
            let items = by_trace(node, &trace).await;
            assert_eq!(items.len(), 1);
            assert_eq!(items[0]["transaction_id"], id.as_str());
        }
        fresh.push(trace);
    }
    fresh.dedup();
    assert_eq!(
        fresh.len(),
        3,
        "every call without a valid traceparent is a trace of its own"
    );

    // A bad trace id in the query is the caller's mistake.
    let r = http()
        .get(format!(
            "{}/api/v1/transactions?trace_id=xyz",
            net.consumer.admin_url()
        ))
        .bearer_auth(net.consumer.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
