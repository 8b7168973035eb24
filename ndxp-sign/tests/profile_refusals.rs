//! NDXP signature profile: everything a receiver must refuse, and the
//! problem code each refusal maps to.

#![allow(clippy::unwrap_used)]

mod profile_support;

use std::sync::Arc;

use chrono::Duration;
use http::{HeaderValue, Method, StatusCode};
use ndxp_core::{ErrorCode, TransactionId};
use ndxp_sign::cert::cert_serial_hex;
use ndxp_sign::chain::{self, BoxError, ChainError};
use ndxp_sign::digest::content_digest;
use ndxp_sign::httpsig::SignatureError;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::profile::{self, ProfileError};
use ndxp_sign::revocation::{CertStatus, RevocationReason};
use openssl::x509::X509Ref;
use profile_support::*;

struct World {
    ca: Ca,
    consumer: ndxp_sign::profile::Signer,
    provider: ndxp_sign::profile::Signer,
}

fn world() -> World {
    let ca = Ca::new("NDXP Test Root");
    let consumer = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let provider = ca.signer(PROVIDER, KeyAlgorithm::EcP256);
    World {
        ca,
        consumer,
        provider,
    }
}

fn refused_request(w: &World, parts: &http::request::Parts) -> ProfileError {
    profile::verify_request(parts, &w.ca.policy(), now()).unwrap_err()
}

fn is_signature(e: &ProfileError) -> bool {
    matches!(e, ProfileError::Signature(SignatureError::InvalidSignature))
}

type Tamper = Box<dyn Fn(&mut http::request::Parts)>;

#[test]
fn tampered_request_heads_are_refused() {
    let w = world();
    let sent = signed_request(&w.consumer, TransactionId::new(), now());
    profile::verify_request(&sent, &w.ca.policy(), now()).unwrap();

    let tampers: Vec<(&str, Tamper)> = vec![
        ("method", Box::new(|p| p.method = Method::PUT)),
        (
            "path",
            Box::new(|p| {
                p.uri = URI.replace("/lookup", "/delete").parse().unwrap();
            }),
        ),
        (
            "query",
            Box::new(|p| {
                p.uri = URI.replace("full=1", "full=0").parse().unwrap();
            }),
        ),
        (
            "authority",
            Box::new(|p| {
                p.uri = URI
                    .replace("provider.example", "other.example")
                    .parse()
                    .unwrap();
            }),
        ),
        (
            "ndxp-client",
            Box::new(|p| {
                p.headers.insert(
                    "ndxp-client",
                    HeaderValue::from_static("VN/GOV/000.00.00.G22/KHAC"),
                );
            }),
        ),
        (
            "ndxp-id",
            Box::new(|p| {
                p.headers.insert(
                    "ndxp-id",
                    HeaderValue::from_str(&TransactionId::new().to_string()).unwrap(),
                );
            }),
        ),
        (
            "content-digest",
            Box::new(|p| {
                p.headers.insert(
                    "content-digest",
                    HeaderValue::from_str(&content_digest(b"other")).unwrap(),
                );
            }),
        ),
    ];
    for (what, tamper) in tampers {
        let mut p = sent.clone();
        tamper(&mut p);
        let e = refused_request(&w, &p);
        assert!(is_signature(&e), "tampered {what}: {e:?}");
        assert_eq!(e.problem_code(), ErrorCode::SignatureInvalid, "{what}");
    }
}

#[test]
fn tampered_response_heads_are_refused() {
    let w = world();
    let sent = signed_request(&w.consumer, TransactionId::new(), now());
    let resp = signed_response(&w.provider, &as_received(&sent), now());
    profile::verify_response(&resp, &sent, &w.ca.policy(), now()).unwrap();

    let mut status = resp.clone();
    status.status = StatusCode::NOT_FOUND;
    assert!(is_signature(
        &profile::verify_response(&status, &sent, &w.ca.policy(), now()).unwrap_err()
    ));

    let mut digest = resp.clone();
    digest.headers.insert(
        "content-digest",
        HeaderValue::from_str(&content_digest(b"{}")).unwrap(),
    );
    assert!(is_signature(
        &profile::verify_response(&digest, &sent, &w.ca.policy(), now()).unwrap_err()
    ));

    // A response carrying another transaction's id.
    let mut id = resp.clone();
    id.headers.insert(
        "ndxp-id",
        HeaderValue::from_str(&TransactionId::new().to_string()).unwrap(),
    );
    let e = profile::verify_response(&id, &sent, &w.ca.policy(), now()).unwrap_err();
    assert!(matches!(e, ProfileError::IdMismatch { .. }), "{e:?}");
    assert_eq!(e.problem_code(), ErrorCode::SignatureInvalid);

    // The body is bound too.
    let e = profile::verify_response_with_body(
        &resp,
        &sent,
        b"{\"name\":\"X\"}",
        &w.ca.policy(),
        now(),
    )
    .unwrap_err();
    assert!(matches!(e, ProfileError::Digest(_)), "{e:?}");
}

#[test]
fn a_response_to_request_a_is_refused_for_request_b() {
    let w = world();
    let id = TransactionId::new();
    let a = signed_request(&w.consumer, id, now());
    // Request B: same transaction id and head, but signed anew (another
    // `created`, another ECDSA signature), as a replayed exchange would be.
    let b = signed_request(&w.consumer, id, now() + Duration::seconds(1));
    let resp_a = signed_response(&w.provider, &as_received(&a), now());
    profile::verify_response(&resp_a, &a, &w.ca.policy(), now()).unwrap();
    let e = profile::verify_response(&resp_a, &b, &w.ca.policy(), now()).unwrap_err();
    assert!(is_signature(&e), "{e:?}");

    // And for a request with another body.
    let mut c = request_head(id);
    profile::sign_request(
        &mut c,
        &content_digest(b"{\"citizen\":\"2\"}"),
        &w.consumer,
        now(),
    )
    .unwrap();
    assert!(is_signature(
        &profile::verify_response(&resp_a, &c, &w.ca.policy(), now()).unwrap_err()
    ));

    // A provider cannot answer a request that carries no signature.
    let unsigned = request_head(id);
    let mut resp = http::Response::new(()).into_parts().0;
    let e = profile::sign_response(
        &mut resp,
        &unsigned,
        &content_digest(b""),
        &w.provider,
        now(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ProfileError::Signature(SignatureError::MissingComponent(_))
        ),
        "{e:?}"
    );
}

#[test]
fn signer_from_another_ca_is_untrusted() {
    let w = world();
    let rogue_ca = Ca::new("Rogue Root");
    let rogue = rogue_ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let sent = signed_request(&rogue, TransactionId::new(), now());
    let e = refused_request(&w, &sent);
    assert!(
        matches!(
            e,
            ProfileError::UntrustedSigner(ChainError::Untrusted { .. })
        ),
        "{e:?}"
    );
    assert_eq!(e.problem_code(), ErrorCode::SignatureInvalid);
}

#[test]
fn a_member_cannot_sign_for_another_members_client() {
    let w = world();
    // The provider member's key claims the consumer's subsystem: the
    // signing side refuses ...
    let mut parts = request_head(TransactionId::new());
    let e = profile::sign_request(
        &mut parts,
        &content_digest(REQUEST_BODY),
        &w.provider,
        now(),
    )
    .unwrap_err();
    assert!(matches!(e, ProfileError::ClientNotOfSigner { .. }), "{e:?}");
    // A head signed for the member's own subsystem, then relabelled,
    // breaks the signature.
    let mut own = request_head(TransactionId::new());
    own.headers.insert(
        "ndxp-client",
        HeaderValue::from_static("VN/GOV/000.00.00.H29/CSDLDC"),
    );
    profile::sign_request(&mut own, &content_digest(REQUEST_BODY), &w.provider, now()).unwrap();
    let provider_cert_header = own.headers["ndxp-signer-cert"].clone();
    profile::verify_request(&own, &w.ca.policy(), now()).unwrap();
    own.headers
        .insert("ndxp-client", HeaderValue::from_static(CLIENT));
    assert!(is_signature(&refused_request(&w, &own)));

    // A correctly signed request whose client is of another member: sign
    // with httpsig directly, as another vendor's buggy node might.
    let mut bad = request_head(TransactionId::new());
    bad.headers.insert(
        "content-digest",
        HeaderValue::from_str(&content_digest(REQUEST_BODY)).unwrap(),
    );
    bad.headers.insert("ndxp-signer-cert", provider_cert_header);
    let params =
        ndxp_sign::httpsig::SignatureParams::new(profile::request_components(&bad.headers))
            .with_created(now().timestamp())
            .with_keyid(w.provider.fingerprint())
            .with_alg(w.provider.algorithm())
            .with_tag(profile::TAG);
    ndxp_sign::httpsig::sign_request(&mut bad, profile::LABEL, &params, w.provider.signing_key())
        .unwrap();
    let e = refused_request(&w, &bad);
    match &e {
        ProfileError::ClientNotOfSigner { client, signer } => {
            assert_eq!(client.to_string(), CLIENT);
            assert_eq!(signer.to_string(), PROVIDER);
        }
        other => panic!("expected ClientNotOfSigner, got {other:?}"),
    }
    assert_eq!(e.problem_code(), ErrorCode::SignatureInvalid);
}

#[test]
fn expired_signer_is_refused() {
    let w = world();
    // The certificates live 30 days; sign and verify 31 days on.
    let later = now() + Duration::days(31);
    let sent = signed_request(&w.consumer, TransactionId::new(), later);
    let e = profile::verify_request(&sent, &w.ca.policy(), later).unwrap_err();
    assert!(
        matches!(e, ProfileError::UntrustedSigner(ChainError::Expired { .. })),
        "{e:?}"
    );
}

#[test]
fn revoked_signer_is_refused_through_the_checker() {
    let w = world();
    let revoked_serial = cert_serial_hex(w.consumer.certificate()).unwrap();
    let checker = chain::from_fn(
        move |cert: &X509Ref, _issuer: &X509Ref| -> Result<CertStatus, BoxError> {
            if cert_serial_hex(cert)? == revoked_serial {
                Ok(CertStatus::Revoked {
                    at: chrono::Utc::now() - Duration::hours(1),
                    reason: RevocationReason::KeyCompromise,
                })
            } else {
                Ok(CertStatus::Good)
            }
        },
    );
    let policy = w.ca.policy().with_revocation(Arc::new(checker));
    let sent = signed_request(&w.consumer, TransactionId::new(), now());
    let e = profile::verify_request(&sent, &policy, now()).unwrap_err();
    assert!(
        matches!(e, ProfileError::UntrustedSigner(ChainError::Revoked { .. })),
        "{e:?}"
    );
    // The provider's certificate is fine under the same checker.
    let resp = signed_response(&w.provider, &as_received(&sent), now());
    profile::verify_response(&resp, &sent, &policy, now()).unwrap();
    // The CA itself is a checker too.
    let policy = w.ca.policy().with_revocation(Arc::new(
        Ca::new("unused").pki, // a CA that never issued it: status unknown
    ));
    let e = profile::verify_request(&sent, &policy, now()).unwrap_err();
    assert!(matches!(e, ProfileError::UntrustedSigner(_)), "{e:?}");
}

#[test]
fn keyid_must_be_the_fingerprint_of_the_sent_certificate() {
    let w = world();
    let other = w.ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let mut sent = signed_request(&w.consumer, TransactionId::new(), now());
    let swapped = signed_request(&other, TransactionId::new(), now());
    sent.headers.insert(
        "ndxp-signer-cert",
        swapped.headers["ndxp-signer-cert"].clone(),
    );
    let e = refused_request(&w, &sent);
    match &e {
        ProfileError::KeyIdMismatch { keyid, fingerprint } => {
            assert_eq!(keyid, w.consumer.fingerprint());
            assert_eq!(fingerprint, other.fingerprint());
        }
        other => panic!("expected KeyIdMismatch, got {other:?}"),
    }
    assert_eq!(e.problem_code(), ErrorCode::SignatureInvalid);
}

#[test]
fn created_outside_the_window_is_refused() {
    let w = world();
    let t = now();
    let sent = signed_request(&w.consumer, TransactionId::new(), t);
    let policy = w.ca.policy();
    profile::verify_request(&sent, &policy, t + Duration::seconds(300)).unwrap();
    profile::verify_request(&sent, &policy, t - Duration::seconds(300)).unwrap();
    for at in [t + Duration::seconds(301), t - Duration::seconds(301)] {
        let e = profile::verify_request(&sent, &policy, at).unwrap_err();
        assert!(
            matches!(e, ProfileError::OutsideWindow { window: 300, .. }),
            "{e:?}"
        );
        assert_eq!(e.problem_code(), ErrorCode::SignatureInvalid);
    }
    let narrow = w.ca.policy().with_window(10);
    assert!(matches!(
        profile::verify_request(&sent, &narrow, t + Duration::seconds(11)),
        Err(ProfileError::OutsideWindow { .. })
    ));
}

#[test]
fn missing_and_malformed_headers_are_bad_requests() {
    let w = world();
    let sent = signed_request(&w.consumer, TransactionId::new(), now());
    for name in [
        "ndxp-client",
        "ndxp-id",
        "content-digest",
        "ndxp-signer-cert",
        "signature-input",
        "signature",
    ] {
        let mut p = sent.clone();
        p.headers.remove(name);
        let e = refused_request(&w, &p);
        assert!(
            matches!(e, ProfileError::MissingHeader(n) if n == name),
            "{name}: {e:?}"
        );
        assert_eq!(e.problem_code(), ErrorCode::BadRequest, "{name}");
    }
    let malformed: [(&str, &str); 5] = [
        ("ndxp-client", "VN//x"),
        ("ndxp-id", "not-a-uuid"),
        ("content-digest", "sha-256=nope"),
        ("ndxp-signer-cert", "(:AAAA:)"),
        ("signature-input", "ndxp=("),
    ];
    for (name, value) in malformed {
        let mut p = sent.clone();
        p.headers.insert(name, HeaderValue::from_static(value));
        let e = refused_request(&w, &p);
        assert_eq!(e.problem_code(), ErrorCode::BadRequest, "{name}: {e:?}");
    }
    // A DER that is no certificate.
    let mut p = sent.clone();
    p.headers
        .insert("ndxp-signer-cert", HeaderValue::from_static(":AAAA:"));
    assert!(matches!(
        refused_request(&w, &p),
        ProfileError::BadCertificate(_)
    ));
    // The ndxp-id field twice.
    let mut p = sent.clone();
    p.headers.append(
        "ndxp-id",
        HeaderValue::from_str(&TransactionId::new().to_string()).unwrap(),
    );
    assert_eq!(
        refused_request(&w, &p).problem_code(),
        ErrorCode::BadRequest
    );
    // Not a v7 transaction id.
    let mut p = sent.clone();
    p.headers.insert(
        "ndxp-id",
        HeaderValue::from_static("936da01f-9abd-4d9d-80c7-02af85c822a8"),
    );
    assert!(matches!(
        refused_request(&w, &p),
        ProfileError::MalformedHeader {
            field: "ndxp-id",
            ..
        }
    ));
}

#[test]
fn wrong_tag_or_label_is_refused() {
    let w = world();
    let mut bad = request_head(TransactionId::new());
    bad.headers.insert(
        "content-digest",
        HeaderValue::from_str(&content_digest(REQUEST_BODY)).unwrap(),
    );
    bad.headers.insert(
        "ndxp-signer-cert",
        signed_request(&w.consumer, TransactionId::new(), now()).headers["ndxp-signer-cert"]
            .clone(),
    );
    let params =
        ndxp_sign::httpsig::SignatureParams::new(profile::request_components(&bad.headers))
            .with_created(now().timestamp())
            .with_keyid(w.consumer.fingerprint())
            .with_alg(w.consumer.algorithm())
            .with_tag("other-app");
    let mut tagged = bad.clone();
    ndxp_sign::httpsig::sign_request(
        &mut tagged,
        profile::LABEL,
        &params,
        w.consumer.signing_key(),
    )
    .unwrap();
    assert!(matches!(
        refused_request(&w, &tagged),
        ProfileError::ProfileViolation(_)
    ));
    let mut labelled = bad.clone();
    ndxp_sign::httpsig::sign_request(
        &mut labelled,
        "sig1",
        &params.with_tag(profile::TAG),
        w.consumer.signing_key(),
    )
    .unwrap();
    let e = refused_request(&w, &labelled);
    assert!(
        matches!(e, ProfileError::Signature(SignatureError::UnknownLabel(_))),
        "{e:?}"
    );
}

#[test]
fn a_signer_whose_key_does_not_match_its_certificate_is_a_configuration_error() {
    let w = world();
    let key = KeyAlgorithm::EcP256.generate().unwrap();
    let e = profile::Signer::new(key, w.consumer.certificate().clone(), vec![]).unwrap_err();
    assert!(matches!(e, ProfileError::BadSigner(_)), "{e:?}");
    assert_eq!(e.problem_code(), ErrorCode::Internal);
}
