//! W3C Trace Context through the central gateway: the caller's
//! `traceparent` reaches the backend with the same trace id and the
//! gateway's span as the parent, and the gateway's message log finds the
//! exchange by its trace id; a malformed one starts a fresh trace.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use gateway_support::{Env, SERVICE_V1};
use ndxp_audit::log::{LogOptions, SqlMessageLog};
use ndxp_audit::query::TransactionQuery;
use ndxp_core::trace::TraceParent;
use ndxp_test_support::edge::{header_text, raw_request, RecordingBackend};
use serde_json::json;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[tokio::test]
async fn a_traceparent_is_carried_to_the_backend_and_logged_by_the_gateway() {
    let env = Env::start().await;
    let backend = RecordingBackend::start().await;
    let (provider, consumer) = env.parties().await;
    env.offer(&provider, SERVICE_V1, &backend.url("/base"), json!({}))
        .await;
    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    let (id, secret) = env.credentials(&consumer).await;
    let auth = format!("Bearer {}", env.token(&id, &secret).await);
    let path = format!("/{SERVICE_V1}/persons/001");

    let caller = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let ok = raw_request(
        env.gateway,
        &path,
        &[
            ("authorization", &auth),
            ("traceparent", &caller),
            ("tracestate", "rojo=1"),
        ],
    )
    .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let txid = header_text(&ok.headers, "ndxp-id").unwrap();
    let seen = &backend.exchanges()[0];
    let sent = TraceParent::parse(&header_text(&seen.headers, "traceparent").unwrap()).unwrap();
    assert_eq!(sent.trace_id.to_string(), TRACE);
    assert_ne!(
        sent.parent_id.to_string(),
        CALLER_SPAN,
        "the gateway names its own span as the backend's parent"
    );
    assert_eq!(
        header_text(&seen.headers, "tracestate").as_deref(),
        Some("rojo=1")
    );

    // Malformed: the call goes through on a fresh trace.
    let fresh = raw_request(
        env.gateway,
        &path,
        &[("authorization", &auth), ("traceparent", "00-zz-01")],
    )
    .await;
    assert_eq!(
        fresh.status, 200,
        "a malformed traceparent never fails a call"
    );
    let seen = &backend.exchanges()[1];
    let other = TraceParent::parse(&header_text(&seen.headers, "traceparent").unwrap()).unwrap();
    assert_ne!(other.trace_id.to_string(), TRACE);
    assert!(!seen.headers.contains_key("tracestate"));

    // The gateway's log: each exchange under its own trace id.
    let log = SqlMessageLog::open(&env.log_url, "test-reader", &LogOptions::default())
        .await
        .unwrap();
    for (trace, txid) in [
        (TRACE.to_string(), Some(txid)),
        (
            other.trace_id.to_string(),
            header_text(&fresh.headers, "ndxp-id"),
        ),
    ] {
        let page = log
            .transactions(&TransactionQuery {
                trace_id: Some(trace.clone()),
                ..TransactionQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(page.items.len(), 1, "{trace}");
        assert_eq!(Some(&page.items[0].transaction_id), txid.as_ref());
        assert_eq!(page.items[0].trace_id.as_deref(), Some(trace.as_str()));
    }
    log.close().await;
    env.stop().await;
}
