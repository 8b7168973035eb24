//! NDXP signature profile: requests and responses signed by one member and
//! verified by another, with EC and RSA keys, and re-verified offline from
//! what a log record keeps.

#![allow(clippy::unwrap_used)]

mod profile_support;

use chrono::Duration;
use ndxp_core::{ErrorCode, TransactionId};
use ndxp_sign::chain::NoRevocationCheck;
use ndxp_sign::digest::{content_digest, ContentDigestVerifier};
use ndxp_sign::httpsig::Algorithm;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::profile::{self, ProfileError};
use profile_support::*;

fn round_trip(
    consumer_key: KeyAlgorithm,
    provider_key: KeyAlgorithm,
    expect: (Algorithm, Algorithm),
) {
    let ca = Ca::new("NDXP Test Root");
    let consumer = ca.signer(CONSUMER, consumer_key);
    let provider = ca.signer(PROVIDER, provider_key);
    let policy = ca.policy();
    let id = TransactionId::new();
    let t = now();

    let sent = signed_request(&consumer, id, t);
    for name in [
        "content-digest",
        "ndxp-signer-cert",
        "signature-input",
        "signature",
    ] {
        assert!(sent.headers.contains_key(name), "{name} not set");
    }
    let received = as_received(&sent);
    let v = profile::verify_request_with_body(
        &received,
        REQUEST_BODY,
        &policy,
        t + Duration::seconds(2),
    )
    .unwrap();
    assert_eq!(v.signer, CONSUMER.parse().unwrap());
    assert_eq!(v.client, Some(CLIENT.parse().unwrap()));
    assert_eq!(v.ndxp_id, id);
    assert_eq!(v.algorithm, expect.0);
    assert_eq!(v.created, t.timestamp());
    assert_eq!(v.fingerprint, consumer.fingerprint());
    assert_eq!(v.signer_cert_der, consumer.certificate().to_der().unwrap());
    assert_eq!(v.chain_der.len(), ca.pki.chain().len());
    assert!(v.signature_input.starts_with(
        "ndxp=(\"@method\" \"@target-uri\" \"content-digest\" \"ndxp-client\" \"ndxp-id\");created="
    ));
    assert!(v.signature_input.ends_with(&format!(
        ";keyid=\"{}\";alg=\"{}\";tag=\"ndxp\"",
        consumer.fingerprint(),
        expect.0.as_str()
    )));
    assert!(v
        .base
        .contains("\"@target-uri\": https://provider.example:8443/r1/"));
    assert_eq!(v.base_sha256, openssl::sha::sha256(v.base.as_bytes()));
    // The absolute-form head the sender kept verifies the same way.
    let v_sent = profile::verify_request(&sent, &policy, t).unwrap();
    assert_eq!(v_sent.base, v.base);

    // The provider answers the request as received.
    let resp = signed_response(&provider, &received, t + Duration::seconds(1));
    let rv = profile::verify_response_with_body(
        &resp,
        &sent,
        RESPONSE_BODY,
        &policy,
        t + Duration::seconds(3),
    )
    .unwrap();
    assert_eq!(rv.signer, PROVIDER.parse().unwrap());
    assert_eq!(rv.client, None);
    assert_eq!(rv.ndxp_id, id);
    assert_eq!(rv.algorithm, expect.1);
    assert_eq!(
        resp.headers.get("ndxp-id").unwrap().to_str().unwrap(),
        id.to_string()
    );
    assert!(rv.signature_input.starts_with(
        "ndxp=(\"@status\" \"content-digest\" \"ndxp-id\" \"@method\";req \"@target-uri\";req \"content-digest\";req \"signature\";req;key=\"ndxp\");created="
    ));

    // Both records re-verify offline, with nothing but what was logged.
    for (rec, member) in [(&v, CONSUMER), (&rv, PROVIDER)] {
        let (m, created) = profile::verify_logged(
            &rec.base,
            &rec.signature_input,
            &rec.signature,
            &rec.signer_cert_der,
            &rec.chain_der,
            &ca.anchors(),
            &NoRevocationCheck,
        )
        .unwrap();
        assert_eq!(m, member.parse().unwrap());
        assert_eq!(created, rec.created);
    }
}

#[test]
fn ec_request_and_response_round_trip() {
    round_trip(
        KeyAlgorithm::EcP256,
        KeyAlgorithm::EcP256,
        (Algorithm::EcdsaP256Sha256, Algorithm::EcdsaP256Sha256),
    );
}

#[test]
fn rsa_pss_request_and_ec_response_round_trip() {
    round_trip(
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::EcP256,
        (Algorithm::RsaPssSha512, Algorithm::EcdsaP256Sha256),
    );
}

#[test]
fn ec_request_and_rsa_pss_response_round_trip() {
    round_trip(
        KeyAlgorithm::EcP256,
        KeyAlgorithm::Rsa2048,
        (Algorithm::EcdsaP256Sha256, Algorithm::RsaPssSha512),
    );
}

#[test]
fn rsa_v1_5_is_accepted_for_older_keys_unless_the_receiver_disallows_it() {
    let ca = Ca::new("NDXP Test Root");
    let consumer = ca.signer_with(CONSUMER, Algorithm::RsaV15Sha256, KeyAlgorithm::Rsa2048);
    let t = now();
    let sent = signed_request(&consumer, TransactionId::new(), t);
    let v = profile::verify_request(&sent, &ca.policy(), t).unwrap();
    assert_eq!(v.algorithm, Algorithm::RsaV15Sha256);

    let mut strict = ca.policy();
    strict.allowed_algorithms = vec![Algorithm::EcdsaP256Sha256, Algorithm::RsaPssSha512];
    let err = profile::verify_request(&sent, &strict, t).unwrap_err();
    assert!(matches!(err, ProfileError::ProfileViolation(_)), "{err:?}");
    assert_eq!(err.problem_code(), ErrorCode::SignatureInvalid);
}

#[test]
fn optional_user_and_request_ids_are_signed_when_present() {
    let ca = Ca::new("NDXP Test Root");
    let consumer = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let t = now();
    let mut parts = request_head(TransactionId::new());
    parts
        .headers
        .insert("ndxp-user-id", "citizen-42".parse().unwrap());
    parts
        .headers
        .insert("ndxp-request-id", "is-corr-7".parse().unwrap());
    profile::sign_request(&mut parts, &content_digest(REQUEST_BODY), &consumer, t).unwrap();
    let v = profile::verify_request(&parts, &ca.policy(), t).unwrap();
    assert!(v
        .signature_input
        .contains("\"ndxp-id\" \"ndxp-user-id\" \"ndxp-request-id\")"));
    assert!(v.base.contains("\"ndxp-user-id\": citizen-42\n"));

    // Changing a signed optional id breaks the signature.
    let mut tampered = parts.clone();
    tampered
        .headers
        .insert("ndxp-user-id", "citizen-43".parse().unwrap());
    assert!(matches!(
        profile::verify_request(&tampered, &ca.policy(), t),
        Err(ProfileError::Signature(_))
    ));
    // Adding one the sender did not sign is refused too: it would be logged.
    let mut added = signed_request(&consumer, TransactionId::new(), t);
    added
        .headers
        .insert("ndxp-user-id", "someone-else".parse().unwrap());
    assert!(matches!(
        profile::verify_request(&added, &ca.policy(), t),
        Err(ProfileError::Signature(_))
    ));
}

#[test]
fn streaming_body_check_uses_the_signed_content_digest() {
    let ca = Ca::new("NDXP Test Root");
    let consumer = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let t = now();
    let sent = signed_request(&consumer, TransactionId::new(), t);
    let v = profile::verify_request(&sent, &ca.policy(), t).unwrap();
    let mut ok = ContentDigestVerifier::new(&v.content_digest).unwrap();
    for chunk in REQUEST_BODY.chunks(5) {
        ok.update(chunk);
    }
    ok.finish().unwrap();
    let err = profile::verify_request_with_body(&sent, b"{\"citizen\":\"999\"}", &ca.policy(), t)
        .unwrap_err();
    assert!(matches!(err, ProfileError::Digest(_)), "{err:?}");
    assert_eq!(err.problem_code(), ErrorCode::SignatureInvalid);
}

#[test]
fn offline_verification_outlives_the_certificate_but_not_tampering() {
    let ca = Ca::new("NDXP Test Root");
    let consumer = ca.signer(CONSUMER, KeyAlgorithm::Rsa2048);
    let t = now();
    let v = profile::verify_request(
        &signed_request(&consumer, TransactionId::new(), t),
        &ca.policy(),
        t,
    )
    .unwrap();
    // Years later the certificate (30 days) has expired; live verification
    // would refuse it, the logged record still verifies at `created`.
    let later = t + Duration::days(3 * 365);
    let live = profile::verify_request(
        &signed_request(&consumer, TransactionId::new(), later),
        &ca.policy(),
        later,
    );
    assert!(
        matches!(live, Err(ProfileError::UntrustedSigner(_))),
        "{live:?}"
    );
    let check = |base: &str, input: &str, sig: &str| {
        profile::verify_logged(
            base,
            input,
            sig,
            &v.signer_cert_der,
            &v.chain_der,
            &ca.anchors(),
            &NoRevocationCheck,
        )
    };
    check(&v.base, &v.signature_input, &v.signature).unwrap();

    let other_id = TransactionId::new().to_string();
    let forged_base = v.base.replace(&v.ndxp_id.to_string(), &other_id);
    assert!(matches!(
        check(&forged_base, &v.signature_input, &v.signature),
        Err(ProfileError::Signature(_))
    ));
    let forged_input = v.signature_input.replace(
        &format!("created={}", v.created),
        &format!("created={}", v.created + 1),
    );
    assert!(check(&v.base, &forged_input, &v.signature).is_err());
    // Another CA's anchors do not vouch for the record.
    let other = Ca::new("Other Root");
    let err = profile::verify_logged(
        &v.base,
        &v.signature_input,
        &v.signature,
        &v.signer_cert_der,
        &v.chain_der,
        &other.anchors(),
        &NoRevocationCheck,
    )
    .unwrap_err();
    assert!(matches!(err, ProfileError::UntrustedSigner(_)), "{err:?}");
}
