//! The gateway's edge, end to end on loopback: the path rule and the
//! header policy of the backend forwarder, seen from a backend that
//! records everything it receives.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use gateway_support::*;
use ndxp_test_support::edge::{
    assert_bad_paths_refused, assert_header_policy, raw_request, RecordingBackend, CALLER_HEADERS,
};
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
    let path = format!("/{SERVICE_V1}/persons/001?x=1");
    let ok = raw_request(env.gateway, &path, &[("authorization", &auth)]).await;
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

#[tokio::test]
async fn only_allowed_headers_reach_the_backend_and_the_gateway_says_who_called() {
    let env = Env::start().await;
    let backend = RecordingBackend::start().await;
    // citizen/v1 lets X-Tenant in and X-Backend-Only out (the harness's
    // [[gateway.forward_headers]]); citizen/v2 has no extra header.
    let (token, provider, consumer) = offered(&env, &backend, json!({})).await;
    env.offer(&provider, SERVICE_V2, &backend.url("/base"), json!({}))
        .await;
    env.subscribe(&consumer, &provider, SERVICE_V2).await;
    let auth = format!("Bearer {token}");
    let mut headers = CALLER_HEADERS.to_vec();
    headers.push(("authorization", &auth));

    let a = raw_request(env.gateway, &format!("/{SERVICE_V1}/persons/1"), &headers).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(
        a.headers["x-backend-only"], "1",
        "a configured response extra"
    );
    let a2 = raw_request(env.gateway, &format!("/{SERVICE_V2}/persons/1"), &headers).await;
    assert_eq!(a2.status, 200, "{:?}", a2.body);
    assert!(!a2.headers.contains_key("x-backend-only"));

    let seen = backend.exchanges();
    assert_eq!(seen.len(), 2);
    let forwarded = format!("for=127.0.0.1;proto=http;host=\"{}\"", env.gateway);
    assert_header_policy(&seen[0], &seen[1], &forwarded);
    for s in &seen {
        assert_eq!(s.headers["ndxp-client"], CONSUMER_SUB);
    }
    env.stop().await;
}

#[tokio::test]
async fn https_backends_with_their_own_ca_and_client_certificate_work() {
    let env = Env::start().await;
    let dir = env.dir.path();
    let (cert, key) = tls_identity(&env.pki, PROVIDER, "backend");
    std::fs::write(dir.join("backend.pem"), cert).unwrap();
    std::fs::write(dir.join("backend.key"), key).unwrap();
    let (gw_cert, gw_key) = tls_identity(&env.pki, PLATFORM, "gateway-client");
    std::fs::write(dir.join("gw-client.pem"), gw_cert).unwrap();
    std::fs::write(dir.join("gw-client.key"), gw_key).unwrap();
    let ca = dir.join("ca.pem");
    let backend = RecordingBackend::start_tls(
        &dir.join("backend.pem"),
        &dir.join("backend.key"),
        Some(&ca),
    )
    .await;
    let (provider, consumer) = env.parties().await;
    let op = env.operator.clone();
    let tls = json!({"backend_tls": {
        "ca_file": ca.display().to_string(),
        "client_cert_file": dir.join("gw-client.pem").display().to_string(),
        "client_key_file": dir.join("gw-client.key").display().to_string(),
    }});
    env.offer(&op, SERVICE_V1, &backend.url("/base"), tls).await;
    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    let (id, secret) = env.credentials(&consumer).await;
    let token = env.token(&id, &secret).await;
    let auth = format!("Bearer {token}");
    let path = format!("/{SERVICE_V1}/persons/1?q=2");
    let a = raw_request(env.gateway, &path, &[("authorization", &auth)]).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["path"], "/base/persons/1?q=2");
    assert_eq!(backend.exchanges().len(), 1);

    // Without the CA the backend's certificate is not trusted: 502.
    let path = format!("/api/v1/gateway/services/{SERVICE_V1}");
    env.op_ok("PATCH", &path, Some(json!({"backend_tls": {}})), 200)
        .await;
    let path = format!("/{SERVICE_V1}/persons/1");
    let a = raw_request(env.gateway, &path, &[("authorization", &auth)]).await;
    assert_eq!(a.status, 502, "{:?}", a.body);
    assert_eq!(
        a.problem_code().as_deref(),
        Some("ndxp.provider_unreachable")
    );
    assert_eq!(backend.exchanges().len(), 1);
    env.stop().await;
}
