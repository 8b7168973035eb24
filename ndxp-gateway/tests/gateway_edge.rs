//! The gateway's edge, end to end on loopback: the path rule and the
//! header policy of the backend forwarder, seen from a backend that
//! records everything it receives.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use gateway_support::*;
use ndxp_test_support::edge::{assert_bad_paths_refused, raw_request, RecordingBackend};
use serde_json::json;

/// [`SERVICE_V1`] published on `backend` (base path `/base`); a bearer
/// token of a subscribed consumer, and the provider's and the consumer's
/// member tokens.
async fn offered(
    env: &Env,
    backend: &RecordingBackend,
    extra: serde_json::Value,
) -> (String, String, String) {
    let (provider, consumer) = env.parties().await;
    env.offer(&provider, SERVICE_V1, &backend.url("/base"), extra)
        .await;
    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    let (id, secret) = env.credentials(&consumer).await;
    (env.token(&id, &secret).await, provider, consumer)
}

#[tokio::test]
async fn encoded_path_tricks_are_refused_before_the_backend() {
    let env = Env::start().await;
    let backend = RecordingBackend::start().await;
    let (token, _, _) = offered(&env, &backend, json!({})).await;
    let auth = format!("Bearer {token}");

    // The control: an ordinary path reaches the backend under its base.
    let ok = raw_request(
        env.gateway,
        &format!("/{SERVICE_V1}/persons/001?x=1"),
        &[("authorization", &auth)],
    )
    .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(backend.exchanges().len(), 1);
    assert_eq!(
        backend.exchanges()[0].path_and_query,
        "/base/persons/001?x=1"
    );

    assert_bad_paths_refused(
        env.gateway,
        &format!("/{SERVICE_V1}"),
        &[("authorization", &auth)],
        &backend,
    )
    .await;
    env.stop().await;
}
