//! The centralized model end to end, one test per lifecycle step, driven
//! only through the management API, the token endpoint, service calls and
//! the `ndxp-gateway gateway` command line, against real backends.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::sync::Arc;

use chrono::{Duration, Utc};
use gateway_support::*;
use ndxp_audit::log::{LogOptions, MessageLog, Role, SqlMessageLog};
use ndxp_registry::store::gateway::GatewayStore;
use serde_json::json;

fn txid_of(r: &reqwest::Response) -> uuid::Uuid {
    let id = r.headers()["ndxp-id"].to_str().unwrap();
    let u = uuid::Uuid::parse_str(id).unwrap();
    assert_eq!(u.get_version_num(), 7, "NDXP-Id is a UUID v7");
    u
}

async fn logged(env: &Env) -> Vec<ndxp_audit::log::LogRecord> {
    let log = SqlMessageLog::open(&env.log_url, "test-reader", &LogOptions::default())
        .await
        .unwrap();
    let mut all = Vec::new();
    for w in log.writers().await.unwrap() {
        let head = log.head(&w).await.unwrap();
        all.extend(log.read(&w, 1, head.seq).await.unwrap());
    }
    log.close().await;
    all
}

#[tokio::test]
async fn a_provider_registers_a_service_and_the_operator_publishes_it() {
    let env = Env::start().await;
    let (provider, consumer) = env.parties().await;
    let url = backend(plain("a")).await;
    // The provider registers; it cannot publish.
    let v = env
        .ok(
            "POST",
            "/api/v1/gateway/services",
            &provider,
            Some(
                json!({"service": SERVICE_V1, "description": "Citizen lookup",
                        "openapi": {"openapi": "3.1.0"}, "backend_url": url,
                        "quota_per_day": 1000}),
            ),
            201,
        )
        .await;
    assert_eq!(v["state"], "registered");
    assert_eq!(v["quota_per_day"], 1000);
    // The OpenAPI document is in the catalogue.
    let (s, doc) = env
        .op(
            "GET",
            &format!("/api/v1/services/{SERVICE_V1}/openapi"),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    // Another member may not register the provider's service.
    let (s, _) = env
        .api(
            "POST",
            "/api/v1/gateway/services",
            &consumer,
            Some(json!({"service": SERVICE_V2, "description": "x", "backend_url": url})),
        )
        .await;
    assert_eq!(s, 403);
    let publish = format!("/api/v1/gateway/services/{SERVICE_V1}/publish");
    let (s, _) = env.api("POST", &publish, &provider, None).await;
    assert_eq!(s, 403, "only an operator publishes");

    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    let (id, secret) = env.credentials(&consumer).await;
    let token = env.token(&id, &secret).await;
    let (s, p) = env.call_json(&token, SERVICE_V1, "/persons/001").await;
    assert_eq!(s, 404, "registered but not published: {p}");
    assert_eq!(p["code"], "ndxp.service_unknown");

    env.publish(SERVICE_V1).await;
    let (s, body) = env.call_json(&token, SERVICE_V1, "/persons/001").await;
    assert_eq!(s, 200, "published: the very next call goes through: {body}");
    assert_eq!(body["path"], "/persons/001");
    // The gateway reports its own status beside the nodes'.
    let mut rows = serde_json::Value::Null;
    for _ in 0..100 {
        let (s, v) = env.op("GET", "/api/v1/monitoring/status", None).await;
        assert_eq!(s, 200, "{v}");
        if v.as_array()
            .is_some_and(|a| a.iter().any(|r| r["node"] == "central-gateway"))
        {
            rows = v;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let gw = rows
        .as_array()
        .and_then(|a| {
            a.iter()
                .find(|r| r["node"] == "central-gateway" && r["service"].is_null())
        })
        .unwrap_or_else(|| panic!("no status of the central gateway: {rows}"));
    assert_eq!(gw["software_version"], env!("CARGO_PKG_VERSION"), "{gw}");
    // The test CA issues 30-day certificates: the gateway warns about its
    // own signing certificate.
    assert_eq!(gw["state"], "degraded", "{gw}");
    assert!(
        gw["reasons"].as_array().is_some_and(|r| r.iter().any(|r| r
            .as_str()
            .is_some_and(|r| r.starts_with("signing certificate expires")))),
        "{gw}"
    );
    env.stop().await;
}

#[tokio::test]
async fn a_consumer_subscribes_is_approved_gets_credentials_and_calls() {
    let env = Env::start().await;
    let (provider, consumer) = env.parties().await;
    let url = backend(plain("a")).await;
    env.offer(&provider, SERVICE_V1, &url, json!({})).await;
    let (id, secret) = env.credentials(&consumer).await;
    assert!(id.starts_with("ndxpc_") && secret.starts_with("ndxps_"));
    // The secret is never shown again, nor stored in clear.
    let listed = env
        .ok("GET", "/api/v1/gateway/credentials", &consumer, None, 200)
        .await;
    assert!(!listed.to_string().contains(&secret));
    let stored = env.store.list_gateway_apps(None).await;
    assert!(stored.unwrap()[0].secret_hash.starts_with("hmac-sha256$"));

    let token = env.token(&id, &secret).await;
    // Requested, not yet approved: refused.
    let sub = env.request(&consumer, SERVICE_V1).await;
    let r = env.call(&token, SERVICE_V1, "/persons/001").await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["code"], "ndxp.access_denied");
    assert!(p["transaction_id"].is_string());
    // Only the provider (or an operator) decides.
    let (s, _) = env
        .api(
            "POST",
            &format!("/api/v1/subscriptions/{sub}/approve"),
            &consumer,
            None,
        )
        .await;
    assert_eq!(s, 403);
    env.ok(
        "POST",
        &format!("/api/v1/subscriptions/{sub}/approve"),
        &provider,
        None,
        200,
    )
    .await;

    let r = env
        .http
        .get(env.gateway_url(&format!("/{SERVICE_V1}/persons/001?fields=name")))
        .bearer_auth(&token)
        .header("ndxp-request-id", "req-42")
        .header("ndxp-client", "VN/GOV/000.00.00.H29/SPOOF")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let txid = txid_of(&r);
    let hash = r.headers()["ndxp-request-hash"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(hash.starts_with("sha-256=:") && hash.ends_with(':'));
    assert_eq!(r.headers()["x-backend"], "a");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["path"], "/persons/001?fields=name");
    assert_eq!(
        body["ndxp_client"], CONSUMER_SUB,
        "the gateway names the real client"
    );
    assert_eq!(body["ndxp_id"], txid.to_string());
    assert_eq!(
        body["authorization"],
        serde_json::Value::Null,
        "the token stays at the gateway"
    );
    assert!(body["content_digest"]
        .as_str()
        .unwrap()
        .starts_with("sha-256=:"));

    // The exchange is in the message log, durable before the answer.
    let records = logged(&env).await;
    let rec = records
        .iter()
        .find(|r| r.exchange.transaction_id.as_uuid() == &txid)
        .expect("the call is logged");
    assert_eq!(rec.exchange.role, Role::Gateway);
    assert_eq!(rec.exchange.status, 200);
    assert_eq!(rec.exchange.client.to_string(), CONSUMER_SUB);
    assert_eq!(rec.exchange.service.to_string(), SERVICE_V1);
    assert!(rec.writer.starts_with("gateway/"));

    // A rejected request gives no access either.
    let v = env
        .ok(
            "POST",
            "/api/v1/gateway/services",
            &provider,
            Some(json!({"service": SERVICE_V2, "description": "v2", "backend_url": url})),
            201,
        )
        .await;
    assert_eq!(v["state"], "registered");
    env.publish(SERVICE_V2).await;
    let sub2 = env.request(&consumer, SERVICE_V2).await;
    env.ok(
        "POST",
        &format!("/api/v1/subscriptions/{sub2}/reject"),
        &provider,
        Some(json!({"note": "not needed"})),
        200,
    )
    .await;
    let (s, p) = env.call_json(&token, SERVICE_V2, "/persons/001").await;
    assert_eq!((s, p["code"].as_str()), (403, Some("ndxp.access_denied")));
    env.stop().await;
}

#[tokio::test]
async fn calls_are_held_to_rate_limits_quotas_and_address_ranges() {
    let env = Env::start().await;
    let Calling {
        provider,
        consumer,
        sub,
        id,
        token,
        ..
    } = env.calling(json!({"rate_per_sec": 1, "burst": 2})).await;
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);
    let r = env.call(&token, SERVICE_V1, "/p").await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "{retry}");
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["code"], "ndxp.rate_limited");

    // The provider gives this subscription its own limits: no rate, a
    // quota of 2 a day.
    let v = env
        .ok(
            "PUT",
            &format!("/api/v1/gateway/subscriptions/{sub}/limits"),
            &provider,
            Some(json!({"rate_per_sec": 0, "quota_per_day": 2})),
            200,
        )
        .await;
    assert_eq!(v["quota_per_day"], 2);
    let (s, _) = env
        .api(
            "PUT",
            &format!("/api/v1/gateway/subscriptions/{sub}/limits"),
            &consumer,
            Some(json!({"rate_per_sec": 0})),
        )
        .await;
    assert_eq!(s, 403, "the consumer cannot lift its own limits");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(env.call(&token, SERVICE_V1, "/p").await.status().as_u16());
    }
    // Two calls already counted today; the quota of 2 is used up.
    assert_eq!(statuses, vec![429, 429, 429, 429]);
    let r = env.call(&token, SERVICE_V1, "/p").await;
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        retry > 1 && retry <= 86_400,
        "until the next UTC day: {retry}"
    );
    env.ok(
        "PUT",
        &format!("/api/v1/gateway/subscriptions/{sub}/limits"),
        &provider,
        Some(json!({"rate_per_sec": 0, "quota_per_day": 0})),
        200,
    )
    .await;
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);

    // Address ranges: calls from outside are refused at once.
    env.ok(
        "PUT",
        &format!("/api/v1/gateway/credentials/{id}/ranges"),
        &consumer,
        Some(json!({"allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"]})),
        200,
    )
    .await;
    let (s, p) = env.call_json(&token, SERVICE_V1, "/p").await;
    assert_eq!((s, p["code"].as_str()), (403, Some("ndxp.access_denied")));
    assert!(p["detail"].as_str().unwrap().contains("127.0.0.1"));
    env.ok(
        "PUT",
        &format!("/api/v1/gateway/credentials/{id}/ranges"),
        &consumer,
        Some(json!({"allowed_cidrs": ["127.0.0.0/8"]})),
        200,
    )
    .await;
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);
    let (s, _) = env
        .api(
            "PUT",
            &format!("/api/v1/gateway/credentials/{id}/ranges"),
            &consumer,
            Some(json!({"allowed_cidrs": ["not-a-range"]})),
        )
        .await;
    assert_eq!(s, 400);
    env.stop().await;
}

#[tokio::test]
async fn the_digisign_adapter_signs_requests_and_verifies_responses() {
    let env = Env::start().await;
    let (provider, consumer) = env.parties().await;
    let provider_signer =
        ndxp_test_support::pki::member_signer(&env.pki, &PROVIDER.parse().unwrap());
    let mut chain = provider_signer.chain.clone();
    let leaf = chain.remove(0);
    let signer =
        Arc::new(ndxp_sign::profile::Signer::new(provider_signer.key, leaf, chain).unwrap());
    let anchors = vec![env.pki.root_cert().clone()];
    let signing = backend(BackendMode {
        name: "signing",
        signer: Some(signer),
        anchors: anchors.clone(),
    })
    .await;
    env.offer(
        &provider,
        SERVICE_V1,
        &signing,
        json!({"sign_requests": true, "verify_responses": true}),
    )
    .await;
    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    let (id, secret) = env.credentials(&consumer).await;
    let token = env.token(&id, &secret).await;
    let r = env.call(&token, SERVICE_V1, "/persons/001").await;
    assert_eq!(r.status(), 200);
    let txid = txid_of(&r);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body["verified_by"], PLATFORM,
        "the backend verified the gateway's signature"
    );
    // Both signatures are in the log, verifiable offline.
    let records = logged(&env).await;
    let rec = records
        .iter()
        .find(|r| r.exchange.transaction_id.as_uuid() == &txid)
        .unwrap();
    assert!(rec.exchange.request.signature.starts_with("ndxp=:"));
    let resp = rec
        .exchange
        .response
        .as_ref()
        .expect("signed response logged");
    let (signer, _) = ndxp_sign::profile::verify_logged(
        &resp.base,
        &resp.signature_input,
        &resp.signature,
        &resp.signer_cert_der,
        &resp.chain_der,
        &anchors,
        &ndxp_sign::chain::NoRevocationCheck,
    )
    .unwrap();
    assert_eq!(signer.to_string(), PROVIDER);

    // A backend signing with a certificate the CA revoked is refused with
    // 502: the gateway asks the OCSP responder about the signer.
    let revoked = ndxp_test_support::pki::member_signer(&env.pki, &PROVIDER.parse().unwrap());
    env.pki
        .revoke(
            &revoked.chain[0],
            ndxp_sign::revocation::RevocationReason::KeyCompromise,
            chrono::Utc::now(),
        )
        .unwrap();
    let mut chain = revoked.chain.clone();
    let leaf = chain.remove(0);
    let revoked_backend = backend(BackendMode {
        name: "revoked",
        signer: Some(Arc::new(
            ndxp_sign::profile::Signer::new(revoked.key, leaf, chain).unwrap(),
        )),
        anchors: anchors.clone(),
    })
    .await;
    // The operator moves the service to `url`; the next call is refused
    // with 502; its problem document.
    let refused_from = async |url: &str| {
        env.move_backend(SERVICE_V1, url).await;
        let (s, p) = env.call_json(&token, SERVICE_V1, "/persons/001").await;
        assert_eq!(
            (s, p["code"].as_str()),
            (502, Some("ndxp.signature_invalid")),
            "{p}"
        );
        p
    };
    let p = refused_from(&revoked_backend).await;
    assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");

    // A backend that does not sign its answers is refused with 502.
    let unsigned = backend(plain("unsigned")).await;
    refused_from(&unsigned).await;
    // Without response verification the unsigned backend is fine again.
    env.ok(
        "PATCH",
        &format!("/api/v1/gateway/services/{SERVICE_V1}"),
        &provider,
        Some(json!({"verify_responses": false})),
        200,
    )
    .await;
    let (s, _) = env.call_json(&token, SERVICE_V1, "/persons/001").await;
    assert_eq!(s, 200);
    env.stop().await;
}

#[tokio::test]
async fn v2_is_published_beside_v1_which_is_deprecated_then_retired() {
    let env = Env::start().await;
    let (provider, consumer) = env.parties().await;
    let v1 = backend(plain("v1")).await;
    let v2 = backend(plain("v2")).await;
    env.offer(&provider, SERVICE_V1, &v1, json!({})).await;
    env.offer(&provider, SERVICE_V2, &v2, json!({})).await;
    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    env.subscribe(&consumer, &provider, SERVICE_V2).await;
    let (id, secret) = env.credentials(&consumer).await;
    let token = env.token(&id, &secret).await;

    let r = env.call(&token, SERVICE_V1, "/p").await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("deprecation").is_none());

    let deprecated = Utc::now() - Duration::hours(1);
    let sunset = Utc::now() + Duration::days(30);
    env.ok(
        "PATCH",
        &format!("/api/v1/services/{SERVICE_V1}"),
        &provider,
        Some(json!({"deprecated_at": deprecated, "sunset_at": sunset})),
        200,
    )
    .await;
    let r = env.call(&token, SERVICE_V1, "/p").await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["deprecation"].to_str().unwrap(),
        format!("@{}", deprecated.timestamp())
    );
    assert_eq!(
        r.headers()["sunset"].to_str().unwrap(),
        sunset.format("%a, %d %b %Y %H:%M:%S GMT").to_string()
    );
    let r = env.call(&token, SERVICE_V2, "/p").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-backend"], "v2");
    assert!(r.headers().get("deprecation").is_none());

    // The sunset arrives: v1 is refused, v2 answers.
    env.ok(
        "PATCH",
        &format!("/api/v1/services/{SERVICE_V1}"),
        &provider,
        Some(json!({"sunset_at": Utc::now() - Duration::seconds(1)})),
        200,
    )
    .await;
    let (s, p) = env.call_json(&token, SERVICE_V1, "/p").await;
    assert_eq!((s, p["code"].as_str()), (404, Some("ndxp.service_unknown")));
    assert!(p["detail"].as_str().unwrap().contains("retired"));
    assert_eq!(env.call(&token, SERVICE_V2, "/p").await.status(), 200);
    env.stop().await;
}

#[tokio::test]
async fn connection_details_change_without_a_restart() {
    let env = Env::start().await;
    let (provider, consumer) = env.parties().await;
    let a = backend(plain("a")).await;
    let b = backend(plain("b")).await;
    env.offer(&provider, SERVICE_V1, &a, json!({})).await;
    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    let (id, secret) = env.credentials(&consumer).await;
    let old_token = env.token(&id, &secret).await;
    assert_eq!(env.call(&old_token, SERVICE_V1, "/p").await.status(), 200);

    // Rotate the secret: the old secret and its tokens stop at once.
    let v = env
        .ok(
            "POST",
            &format!("/api/v1/gateway/credentials/{id}/rotate"),
            &consumer,
            None,
            200,
        )
        .await;
    let new_secret = v["client_secret"].as_str().unwrap().to_string();
    assert_eq!(v["generation"], 2);
    let (s, p) = env.call_json(&old_token, SERVICE_V1, "/p").await;
    assert_eq!((s, p["code"].as_str()), (401, Some("ndxp.unauthorized")));
    let (s, e) = env.token_request(&id, &secret).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")));
    let token = env.token(&id, &new_secret).await;
    let r = env.call(&token, SERVICE_V1, "/p").await;
    assert_eq!(r.headers()["x-backend"], "a");

    // Move the backend: the next call reaches the new one. A published
    // service's backend is the operator's to change.
    let (s, _) = env
        .api(
            "PATCH",
            &format!("/api/v1/gateway/services/{SERVICE_V1}"),
            &provider,
            Some(json!({"backend_url": b})),
        )
        .await;
    assert_eq!(s, 403);
    assert_eq!(
        env.call(&token, SERVICE_V1, "/p").await.headers()["x-backend"],
        "a"
    );
    env.move_backend(SERVICE_V1, &b).await;
    let r = env.call(&token, SERVICE_V1, "/p").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-backend"], "b");

    // Revoke: tokens stop at once.
    env.ok(
        "POST",
        &format!("/api/v1/gateway/credentials/{id}/revoke"),
        &consumer,
        None,
        200,
    )
    .await;
    let (s, _) = env.call_json(&token, SERVICE_V1, "/p").await;
    assert_eq!(s, 401);
    env.stop().await;
}

#[tokio::test]
async fn cancelling_a_subscription_or_a_service_refuses_the_next_call() {
    let env = Env::start().await;
    let Calling {
        provider,
        consumer,
        sub,
        token,
        ..
    } = env.calling(json!({})).await;
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);
    env.cancel(&consumer, &sub).await;
    let (s, p) = env.call_json(&token, SERVICE_V1, "/p").await;
    assert_eq!((s, p["code"].as_str()), (403, Some("ndxp.access_denied")));

    // Subscribe again, then the provider withdraws the service.
    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);
    env.ok(
        "POST",
        &format!("/api/v1/gateway/services/{SERVICE_V1}/withdraw"),
        &provider,
        None,
        200,
    )
    .await;
    let (s, p) = env.call_json(&token, SERVICE_V1, "/p").await;
    assert_eq!((s, p["code"].as_str()), (404, Some("ndxp.service_unknown")));
    assert!(p["detail"].as_str().unwrap().contains("withdrawn"));
    env.stop().await;
}

#[tokio::test]
async fn forwarding_enforces_sizes_and_timeouts_and_reports_dead_backends() {
    let env = Env::start().await;
    let Calling { token, .. } = env.calling(json!({"timeout_ms": 300})).await;

    // A body within the limit is forwarded whole; one over it is refused.
    let r = env
        .http
        .post(env.gateway_url(&format!("/{SERVICE_V1}/echo")))
        .bearer_auth(&token)
        .header("content-type", "application/octet-stream")
        .body(vec![7u8; MAX_BODY])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["body_len"], MAX_BODY);
    let r = env
        .http
        .post(env.gateway_url(&format!("/{SERVICE_V1}/echo")))
        .bearer_auth(&token)
        .body(vec![7u8; MAX_BODY + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let p: serde_json::Value = r.json().await.unwrap();
    assert_eq!(p["code"], "ndxp.payload_too_large");

    // Slower than the service's timeout.
    let started = std::time::Instant::now();
    let (s, p) = env.call_json(&token, SERVICE_V1, "/slow").await;
    assert_eq!(
        (s, p["code"].as_str()),
        (504, Some("ndxp.provider_timeout"))
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(2));

    // A backend that is down.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    env.move_backend(SERVICE_V1, &dead).await;
    let (s, p) = env.call_json(&token, SERVICE_V1, "/p").await;
    assert_eq!(
        (s, p["code"].as_str()),
        (502, Some("ndxp.provider_unreachable"))
    );

    // Bad paths and tokens never reach a backend.
    let (s, p) = env.call_json(&token, SERVICE_V1, "/a/../../admin").await;
    assert_eq!((s, p["code"].as_str()), (400, Some("ndxp.bad_request")));
    let (s, _) = env.call_json("not.a.token", SERVICE_V1, "/p").await;
    assert_eq!(s, 401);
    let (s, p) = env.call_json(&token, "VN/GOV/X/Y/z/v9", "/p").await;
    assert_eq!((s, p["code"].as_str()), (404, Some("ndxp.service_unknown")));

    // Every refused or failed exchange of a known client is logged with its code.
    let records = logged(&env).await;
    let codes: Vec<_> = records
        .iter()
        .filter_map(|r| r.exchange.problem_code.clone())
        .collect();
    for want in [
        "ndxp.payload_too_large",
        "ndxp.provider_timeout",
        "ndxp.provider_unreachable",
    ] {
        assert!(codes.iter().any(|c| c == want), "{want} in {codes:?}");
    }
    env.stop().await;
}

#[tokio::test]
async fn the_token_endpoint_follows_rfc_6749() {
    let env = Env::start().await;
    let (_, consumer) = env.parties().await;
    let (id, secret) = env.credentials(&consumer).await;
    let post = |body: String, basic: Option<(String, String)>| {
        let mut rb = env
            .http
            .post(env.gateway_url("/oauth2/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        if let Some((u, p)) = basic {
            rb = rb.basic_auth(u, Some(p));
        }
        async move {
            let r = rb.send().await.unwrap();
            let s = r.status().as_u16();
            let cache = r
                .headers()
                .get("cache-control")
                .map(|v| v.to_str().unwrap().to_string());
            (s, cache, r.json::<serde_json::Value>().await.unwrap())
        }
    };
    // HTTP Basic.
    let (s, cache, v) = post(
        "grant_type=client_credentials".into(),
        Some((id.clone(), secret.clone())),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(cache.as_deref(), Some("no-store"));
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 300);
    // The token is an ES256 JWT with only the needed claims.
    let token = v["access_token"].as_str().unwrap();
    let parts: Vec<&str> = token.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
    let mut keys: Vec<_> = claims.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(keys, ["aud", "exp", "gen", "iat", "iss", "jti", "sub"]);
    assert_eq!(claims["sub"], id.as_str());
    assert_eq!(claims["iss"], "urn:ndxp:gateway:VN");

    for (body, basic, status, error) in [
        (
            "grant_type=password",
            Some((id.clone(), secret.clone())),
            400,
            "unsupported_grant_type",
        ),
        (
            "",
            Some((id.clone(), secret.clone())),
            400,
            "invalid_request",
        ),
        (
            "grant_type=client_credentials&grant_type=client_credentials",
            Some((id.clone(), secret.clone())),
            400,
            "invalid_request",
        ),
        (
            &*format!("grant_type=client_credentials&client_id={id}&client_secret={secret}"),
            Some((id.clone(), secret.clone())),
            400,
            "invalid_request",
        ),
        (
            "grant_type=client_credentials",
            Some((id.clone(), "wrong".into())),
            401,
            "invalid_client",
        ),
        (
            "grant_type=client_credentials",
            Some(("ndxpc_unknown".into(), secret.clone())),
            401,
            "invalid_client",
        ),
        ("grant_type=client_credentials", None, 401, "invalid_client"),
    ] {
        let (s, _, v) = post(body.to_string(), basic).await;
        assert_eq!(
            (s, v["error"].as_str()),
            (status, Some(error)),
            "{body}: {v}"
        );
    }
    // Form parameters work as well as Basic.
    let t = env.token(&id, &secret).await;
    assert!(!t.is_empty());
    env.stop().await;
}

#[tokio::test]
async fn every_lifecycle_step_works_from_the_command_line() {
    let env = Env::start().await;
    env.parties().await;
    let a = backend(plain("a")).await;
    let b = backend(plain("b")).await;
    let openapi = env.dir.path().join("openapi.json");
    std::fs::write(&openapi, r#"{"openapi":"3.1.0"}"#).unwrap();
    let out = env.cli_ok(&[
        "services",
        "register",
        "--id",
        SERVICE_V1,
        "--backend",
        &a,
        "--description",
        "Citizen lookup",
        "--openapi",
        openapi.to_str().unwrap(),
        "--quota",
        "100",
    ]);
    assert!(out.contains("registered"), "{out}");
    env.cli_ok(&["services", "publish", "--id", SERVICE_V1]);
    let list = env.cli_ok(&["services", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["state"], "published");
    assert_eq!(v[0]["quota_per_day"], 100);

    let sub = requested_id(&env.cli_ok(&REQUEST_V1));
    env.cli_ok(&["subscriptions", "approve", "--id", &sub]);
    let out = env.cli_ok(&["credentials", "create", "--client", CONSUMER_SUB]);
    let field = |out: &str, k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let (id, secret) = (field(&out, "client_id"), field(&out, "client_secret"));

    // Changes by another process reach the gateway within registry_poll_ms.
    let token = {
        let mut t = None;
        for _ in 0..100 {
            let (s, v) = env.token_request(&id, &secret).await;
            if s == 200 {
                t = Some(v["access_token"].as_str().unwrap().to_string());
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        t.expect("credentials created on the command line work")
    };
    eventually("the call succeeds", || async {
        env.call(&token, SERVICE_V1, "/p").await.status() == 200
    })
    .await;

    env.cli_ok(&[
        "subscriptions",
        "limits",
        "--id",
        &sub,
        "--rate",
        "1",
        "--burst",
        "1",
    ]);
    eventually("the rate limit applies", || async {
        env.call(&token, SERVICE_V1, "/p").await.status() == 429
    })
    .await;
    env.cli_ok(&["subscriptions", "limits", "--id", &sub, "--rate", "0"]);
    env.cli_ok(&[
        "credentials",
        "ranges",
        "--client-id",
        &id,
        "--allow",
        "192.0.2.0/24",
    ]);
    eventually("the address range applies", || async {
        env.call(&token, SERVICE_V1, "/p").await.status() == 403
    })
    .await;
    env.cli_ok(&["credentials", "ranges", "--client-id", &id]);
    env.cli_ok(&["services", "update", "--id", SERVICE_V1, "--backend", &b]);
    eventually("the new backend answers", || async {
        let r = env.call(&token, SERVICE_V1, "/p").await;
        r.status() == 200 && r.headers()["x-backend"] == "b"
    })
    .await;
    let sunset = (Utc::now() + Duration::days(7)).to_rfc3339();
    env.cli_ok(&[
        "services",
        "deprecate",
        "--id",
        SERVICE_V1,
        "--sunset",
        &sunset,
    ]);
    eventually("deprecation headers appear", || async {
        env.call(&token, SERVICE_V1, "/p")
            .await
            .headers()
            .contains_key("sunset")
    })
    .await;
    let out = env.cli_ok(&["credentials", "rotate", "--client-id", &id]);
    let new_secret = field(&out, "client_secret");
    eventually("the old token stops", || async {
        env.call(&token, SERVICE_V1, "/p").await.status() == 401
    })
    .await;
    let token = env.token(&id, &new_secret).await;
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);
    env.cli_ok(&["subscriptions", "cancel", "--id", &sub]);
    eventually("the cancelled subscription is refused", || async {
        env.call(&token, SERVICE_V1, "/p").await.status() == 403
    })
    .await;
    env.cli_ok(&["services", "withdraw", "--id", SERVICE_V1]);
    eventually("the withdrawn service is refused", || async {
        env.call(&token, SERVICE_V1, "/p").await.status() == 404
    })
    .await;
    let list = env.cli_ok(&["credentials", "list"]);
    assert!(list.contains(&id) && !list.contains(&new_secret));
    env.cli_ok(&["credentials", "revoke", "--client-id", &id]);

    // Bad input is a usage error (status 64) and changes nothing.
    let out = env.cli(&["credentials", "create", "--client", "LA/GOV/X/Y"]);
    assert_eq!(out.status.code(), Some(64));
    env.stop().await;
}

#[tokio::test]
async fn the_core_flow_runs_on_postgresql_too() {
    if ndxp_test_support::db::postgres_url().is_none() {
        return;
    }
    let env = Env::start_on(ndxp_test_support::db::Backend::Postgres).await;
    let Calling {
        consumer,
        sub,
        token,
        ..
    } = env.calling(json!({"rate_per_sec": 100})).await;
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 200);
    env.cancel(&consumer, &sub).await;
    assert_eq!(env.call(&token, SERVICE_V1, "/p").await.status(), 403);
    env.stop().await;
}
