//! Client certificates as consumer credentials at the central gateway,
//! over its HTTPS listener: a registered certificate authenticates a call
//! without a token; an unknown certificate, revoked credentials, the old
//! certificate after a rotation, an expired certificate and one the CA
//! revoked are refused with `401 ndxp.unauthorized`; OAuth2 callers work
//! over the same listener. Everything through the management API, the
//! command line and HTTPS.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::time::Duration;

use gateway_support::*;
use ndxp_sign::openssl::asn1::Asn1Time;
use ndxp_sign::openssl::bn::{BigNum, MsbOption};
use ndxp_sign::openssl::hash::MessageDigest;
use ndxp_sign::openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::revocation::RevocationReason;
use serde_json::{json, Value};

/// Registers `cert_pem` for the consumer through the API.
async fn register(env: &Env, consumer: &str, cert_pem: &str) -> (u16, Value) {
    env.api(
        "POST",
        "/api/v1/gateway/credentials",
        consumer,
        Some(json!({"client": CONSUMER_SUB, "certificate": cert_pem})),
    )
    .await
}

/// A call through the gateway presenting `identity`, without a token.
async fn call_with(env: &Env, identity: Option<(&str, &str)>) -> (u16, Value) {
    let r = env
        .https_client(identity)
        .get(env.gateway_url(&format!("/{SERVICE_V1}/persons/001")))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        s,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn assert_unauthorized(got: &(u16, Value), detail: &str) {
    assert_eq!(got.0, 401, "{}", got.1);
    assert_eq!(got.1["code"], "ndxp.unauthorized", "{}", got.1);
    let d = got.1["detail"].as_str().unwrap();
    assert!(d.contains(detail), "{d:?} does not mention {detail:?}");
}

/// A client certificate of the test CA's issuing CA valid for `secs`
/// seconds from now (certificates the CA issues last whole days), and its
/// key, as PEM.
fn short_lived(env: &Env, secs: i64) -> (String, String) {
    let key = ndxp_test_support::pki::ec_key();
    let issuer = env.pki.issuing_cert();
    let mut b = X509::builder().unwrap();
    b.set_version(2).unwrap();
    let mut serial = BigNum::new().unwrap();
    serial.rand(127, MsbOption::MAYBE_ZERO, false).unwrap();
    b.set_serial_number(&serial.to_asn1_integer().unwrap())
        .unwrap();
    // The consumer's own node identity, as the CA writes it.
    let identity =
        ndxp_sign::cert::Identity::Node(CONSUMER.parse().unwrap(), "short".parse().unwrap());
    b.set_subject_name(&identity.subject_name().unwrap())
        .unwrap();
    b.set_issuer_name(issuer.subject_name()).unwrap();
    b.set_pubkey(&key).unwrap();
    let now = chrono::Utc::now().timestamp();
    b.set_not_before(&Asn1Time::from_unix(now - 60).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + secs).unwrap())
        .unwrap();
    b.append_extension(BasicConstraints::new().build().unwrap())
        .unwrap();
    b.append_extension(KeyUsage::new().digital_signature().build().unwrap())
        .unwrap();
    b.append_extension(ExtendedKeyUsage::new().client_auth().build().unwrap())
        .unwrap();
    let san = SubjectAlternativeName::new()
        .uri(&identity.uri())
        .build(&b.x509v3_context(Some(issuer), None))
        .unwrap();
    b.append_extension(san).unwrap();
    b.sign(env.pki.issuing_key(), MessageDigest::sha256())
        .unwrap();
    let mut chain = vec![b.build()];
    chain.extend(env.pki.chain().iter().cloned());
    (
        String::from_utf8(ndxp_sign::cert::write_pem_chain(&chain).unwrap()).unwrap(),
        String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    )
}

/// `credentials create` for the consumer's subsystem with the
/// certificate in `file`.
fn create_with_cert(file: &std::path::Path) -> [&str; 6] {
    let file = file.to_str().unwrap();
    [
        "credentials",
        "create",
        "--client",
        CONSUMER_SUB,
        "--cert",
        file,
    ]
}

#[tokio::test]
async fn a_registered_certificate_calls_and_revoked_rotated_or_unknown_ones_are_refused() {
    let env = Env::start_tls().await;
    let Offered { consumer, .. } = env.offered(json!({})).await;

    // Register certificate A: the answer shows it, and no secret.
    let (a_cert, a_key) = tls_identity(&env.pki, CONSUMER, "qlht-a");
    let (s, v) = register(&env, &consumer, &a_cert).await;
    assert_eq!(s, 201, "{v}");
    assert!(v.get("client_secret").is_none(), "{v}");
    let a_id = v["client_id"].as_str().unwrap().to_string();
    let a_sha = v["certificate"]["sha256"].as_str().unwrap().to_string();
    assert_eq!(a_sha.len(), 64);
    let (s, v) = register(&env, &consumer, &a_cert).await;
    assert_eq!(s, 409, "registered twice: {v}");

    // A calls without a token, as the consumer subsystem.
    let (s, v) = call_with(&env, Some((&a_cert, &a_key))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ndxp_client"], CONSUMER_SUB);
    assert_eq!(v["authorization"], Value::Null);

    // OAuth2 callers work over the same HTTPS listener.
    let (id, secret) = env.credentials(&consumer).await;
    let token = env.token(&id, &secret).await;
    let (s, v) = env.call_json(&token, SERVICE_V1, "/persons/001").await;
    assert_eq!(s, 200, "{v}");

    // No certificate and no token; a certificate of the CA nobody registered.
    assert_unauthorized(&call_with(&env, None).await, "client certificate");
    let (b_cert, b_key) = tls_identity(&env.pki, CONSUMER, "qlht-b");
    assert_unauthorized(
        &call_with(&env, Some((&b_cert, &b_key))).await,
        "not registered",
    );

    // Rotation: certificate C registered on the command line, then A's
    // credentials revoked through the API; A is refused at once.
    let (c_cert, c_key) = tls_identity(&env.pki, CONSUMER, "qlht-c");
    let c_file = env.dir.path().join("c.pem");
    std::fs::write(&c_file, &c_cert).unwrap();
    let out = env.cli_ok(&create_with_cert(&c_file));
    assert!(out.contains("certificate_sha256="), "{out}");
    env.ok(
        "POST",
        &format!("/api/v1/gateway/credentials/{a_id}/revoke"),
        &consumer,
        None,
        200,
    )
    .await;
    assert_unauthorized(
        &call_with(&env, Some((&a_cert, &a_key))).await,
        "not registered",
    );
    eventually(
        "the certificate registered on the command line works",
        || async { call_with(&env, Some((&c_cert, &c_key))).await.0 == 200 },
    )
    .await;
    let listed = env.cli_ok(&["credentials", "list", "--client", CONSUMER_SUB]);
    assert!(listed.contains(&format!("certificate {a_sha}")), "{listed}");

    // The CA revokes certificate D: its OCSP answer refuses it.
    let (d_cert, d_key) = tls_identity(&env.pki, CONSUMER, "qlht-d");
    let (s, v) = register(&env, &consumer, &d_cert).await;
    assert_eq!(s, 201, "{v}");
    let d = ndxp_sign::cert::read_pem_chain(d_cert.as_bytes()).unwrap();
    env.pki
        .revoke(&d[0], RevocationReason::KeyCompromise, chrono::Utc::now())
        .unwrap();
    assert_unauthorized(&call_with(&env, Some((&d_cert, &d_key))).await, "revoked");

    env.stop().await;
}

#[tokio::test]
async fn expired_or_foreign_certificates_are_refused() {
    let env = Env::start_tls().await;
    let Offered { consumer, .. } = env.offered(json!({})).await;

    // Not PEM, and a certificate of another CA: refused at registration.
    let (s, v) = register(&env, &consumer, "not a certificate").await;
    assert_eq!(s, 400, "{v}");
    let other_dir = tempfile::tempdir().unwrap();
    let other = ndxp_test_support::pki::init_named_pki(
        &other_dir.path().join("pki"),
        "Other Root",
        "http://127.0.0.1:1/ocsp",
    );
    let (foreign, _) = tls_identity(&other, CONSUMER, "qlht");
    let (s, v) = register(&env, &consumer, &foreign).await;
    assert_eq!(s, 400, "{v}");
    assert!(
        v["detail"].as_str().unwrap().contains("cannot be used"),
        "{v}"
    );

    // A certificate registered while valid is refused once it expires.
    let (cert, key) = short_lived(&env, 3);
    let (s, v) = register(&env, &consumer, &cert).await;
    assert_eq!(s, 201, "{v}");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_unauthorized(&call_with(&env, Some((&cert, &key))).await, "expired");
    let (s, v) = register(&env, &consumer, &cert).await;
    assert_eq!(s, 400, "an expired certificate cannot be registered: {v}");
    env.stop().await;
}

/// A certificate is a member's own credential: G22 cannot register H29's
/// node certificate for its client (which would block H29 and charge H29's
/// calls to G22), neither through the API nor on the command line; H29
/// then registers it for its own subsystem, and G22 can neither revoke nor
/// rotate nor re-range H29's credentials.
#[tokio::test]
async fn a_member_cannot_register_or_revoke_another_members_certificate() {
    let env = Env::start_tls().await;
    let (provider, consumer) = env.parties().await;

    // H29's node certificate, presented by G22 for G22/QLHT: 403.
    let (h29_cert, _) = tls_identity(&env.pki, PROVIDER, "node-h29");
    let (s, v) = register(&env, &consumer, &h29_cert).await;
    assert_eq!(
        (s, v["code"].as_str()),
        (403, Some("ndxp.access_denied")),
        "{v}"
    );
    let detail = v["detail"].as_str().unwrap();
    assert!(
        detail.contains(PROVIDER) && detail.contains("only its own certificates"),
        "{detail}"
    );
    // The operator's command line refuses it too (exit 64), naming the owner.
    let file = env.dir.path().join("h29.pem");
    std::fs::write(&file, &h29_cert).unwrap();
    let out = env.cli(&create_with_cert(&file));
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("only its own certificates"), "{err}");

    // Nothing was stored: H29 registers its own certificate for its own
    // subsystem.
    let (s, v) = env
        .api(
            "POST",
            "/api/v1/gateway/credentials",
            &provider,
            Some(json!({"client": PROVIDER_SUB, "certificate": h29_cert})),
        )
        .await;
    assert_eq!(s, 201, "{v}");
    let h29_id = v["client_id"].as_str().unwrap().to_string();

    // G22 may not revoke, rotate or re-range H29's credentials.
    for (path, body) in [
        (format!("/api/v1/gateway/credentials/{h29_id}/revoke"), None),
        (format!("/api/v1/gateway/credentials/{h29_id}/rotate"), None),
        (
            format!("/api/v1/gateway/credentials/{h29_id}/ranges"),
            Some(json!({"allowed_cidrs": ["10.0.0.0/8"]})),
        ),
    ] {
        let method = if path.ends_with("ranges") {
            "PUT"
        } else {
            "POST"
        };
        let (s, v) = env.api(method, &path, &consumer, body).await;
        assert_eq!(
            (s, v["code"].as_str()),
            (403, Some("ndxp.access_denied")),
            "{path}: {v}"
        );
    }
    let path = format!("/api/v1/gateway/credentials/{h29_id}");
    let v = env.ok("GET", &path, &provider, None, 200).await;
    assert_eq!(v["revoked_at"], Value::Null, "{v}");
    env.stop().await;
}
