//! Interoperability with a client we did not write: `curl` gets a token
//! (HTTP Basic client authentication, RFC 6749 §2.3.1), calls a service,
//! meets the rate limit (429 with `Retry-After`) and a cancelled
//! subscription (403).
#![allow(clippy::unwrap_used)]

mod gateway_support;

use gateway_support::*;
use ndxp_test_support::tool::run_tool;
use serde_json::{json, Value};

async fn curl(args: Vec<String>) -> (bool, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run_tool("curl", &args)
    })
    .await
    .unwrap()
}

/// `curl -sS -i ...`: status, headers (lowercase names) and body.
async fn curl_i(args: &[&str]) -> (u16, Vec<(String, String)>, String) {
    let mut all = vec!["-sS".to_string(), "-i".to_string()];
    all.extend(args.iter().map(ToString::to_string));
    let (ok, out) = curl(all).await;
    assert!(ok, "curl failed: {out}");
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn curl_gets_a_token_calls_is_rate_limited_and_refused_after_cancel() {
    let env = Env::start().await;
    let Offered { consumer, sub, .. } = env.offered(json!({"rate_per_sec": 1, "burst": 1})).await;
    let (id, secret) = env.credentials(&consumer).await;

    let token_url = env.gateway_url("/oauth2/token");
    let (status, headers, body) = curl_i(&[
        "-u",
        &format!("{id}:{secret}"),
        "-d",
        "grant_type=client_credentials",
        &token_url,
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    let v: Value = serde_json::from_str(&body).unwrap();
    let token = v["access_token"].as_str().unwrap().to_string();

    let call_url = env.gateway_url(&format!("/{SERVICE_V1}/persons/001099012345"));
    let auth = format!("Authorization: Bearer {token}");
    let (status, headers, body) = curl_i(&["-H", &auth, &call_url]).await;
    assert_eq!(status, 200, "{body}");
    assert!(header(&headers, "ndxp-id").is_some());
    assert!(header(&headers, "ndxp-request-hash")
        .unwrap()
        .starts_with("sha-256=:"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["path"], "/persons/001099012345");

    let (status, headers, body) = curl_i(&["-H", &auth, &call_url]).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(
        header(&headers, "content-type"),
        Some("application/problem+json")
    );
    assert_eq!(header(&headers, "retry-after"), Some("1"));
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "ndxp.rate_limited");

    // A wrong secret: RFC 6749 §5.2 error with WWW-Authenticate.
    let (status, headers, body) = curl_i(&[
        "-u",
        &format!("{id}:wrong"),
        "-d",
        "grant_type=client_credentials",
        &token_url,
    ])
    .await;
    assert_eq!(status, 401);
    assert!(header(&headers, "www-authenticate")
        .unwrap()
        .starts_with("Basic"));
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"],
        "invalid_client"
    );

    env.cancel(&consumer, &sub).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await; // past the rate limit
    let (status, _, body) = curl_i(&["-H", &auth, &call_url]).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "ndxp.access_denied"
    );
    env.stop().await;
}

#[tokio::test]
async fn curl_calls_over_https_with_a_registered_client_certificate() {
    let env = Env::start_tls().await;
    let Offered { consumer, .. } = env.offered(json!({})).await;
    let (cert, key) = tls_identity(&env.pki, CONSUMER, "qlht");
    env.ok(
        "POST",
        "/api/v1/gateway/credentials",
        &consumer,
        Some(json!({"client": CONSUMER_SUB, "certificate": cert})),
        201,
    )
    .await;
    let dir = env.dir.path();
    let (cert_file, key_file, ca_file) = (dir.join("c.pem"), dir.join("c.key"), dir.join("ca.pem"));
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let call_url = env.gateway_url(&format!("/{SERVICE_V1}/persons/001099012345"));
    assert!(call_url.starts_with("https://127.0.0.1:"));
    let ca = ca_file.to_str().unwrap();

    let (status, headers, body) = curl_i(&[
        "--cert",
        cert_file.to_str().unwrap(),
        "--key",
        key_file.to_str().unwrap(),
        "--cacert",
        ca,
        &call_url,
    ])
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(header(&headers, "ndxp-id").is_some());
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ndxp_client"], CONSUMER_SUB);

    // TLS 1.2 is accepted too; without a certificate or token: 401.
    let (status, _, body) =
        curl_i(&["--tlsv1.2", "--tls-max", "1.2", "--cacert", ca, &call_url]).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["code"],
        "ndxp.unauthorized"
    );
    env.stop().await;
}
