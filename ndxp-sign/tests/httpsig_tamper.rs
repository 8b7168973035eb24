//! Node-to-node usage: tampering, time window, policy and request/response
//! binding; RFC 9530 Content-Digest examples.

#![allow(clippy::unwrap_used)]

use http::{Method, Request, Response};
use ndxp_sign::digest::{
    content_digest, content_digest_with, verify_content_digest, ContentDigestVerifier,
    DigestAlgorithm, DigestError,
};
use ndxp_sign::httpsig::*;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;

const NOW: i64 = 1_750_000_000;
const BODY: &[u8] = br#"{"citizen":"001234567890"}"#;

fn ec_signing(keyid: &str) -> SigningKey {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    SigningKey::new(
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap(),
        keyid,
    )
    .unwrap()
}

fn request_components() -> Vec<Component> {
    vec![
        Component::method(),
        Component::target_uri(),
        Component::field("content-digest"),
        Component::field("ndxp-client"),
        Component::field("ndxp-id"),
    ]
}

fn ndxp_request(id: &str, body: &[u8]) -> http::request::Parts {
    Request::post(
        "https://provider.example:8443/r1/VN/GOV/000.00.00.G22/QLHT/citizen/v1/lookup?full=1",
    )
    .header("content-type", "application/json")
    .header("content-digest", content_digest(body))
    .header("ndxp-client", "VN/GOV/000.00.00.G22/QLHT")
    .header("ndxp-id", id)
    .body(())
    .unwrap()
    .into_parts()
    .0
}

fn signed_request(key: &SigningKey, id: &str, created: i64) -> http::request::Parts {
    let mut req = ndxp_request(id, BODY);
    let params = SignatureParams::new(request_components())
        .with_created(created)
        .with_keyid(key.keyid())
        .with_alg(key.algorithm());
    sign_request(&mut req, "ndxp", &params, key).unwrap();
    req
}

fn policy() -> VerifyPolicy {
    VerifyPolicy::new(request_components())
}

fn check(
    req: &http::request::Parts,
    key: &SigningKey,
    now: i64,
) -> Result<VerifiedSignature, SignatureError> {
    let vk = key.verifying_key().unwrap();
    let resolver = move |k: &str| (k == vk.keyid()).then(|| vk.clone());
    verify(
        &MessageView::request(req),
        "ndxp",
        &policy(),
        now,
        &resolver,
    )
}

/// `req` no longer verifies with `key` at [`NOW`]: the signature is invalid.
#[track_caller]
fn assert_invalid(req: &http::request::Parts, key: &SigningKey) {
    assert!(matches!(
        check(req, key, NOW),
        Err(SignatureError::InvalidSignature)
    ));
}

#[test]
fn signed_request_verifies_and_reports_what_was_checked() {
    let key = ec_signing("VN/GOV/000.00.00.G22#sign-1");
    let req = signed_request(&key, "0190a1b2-0000-7000-8000-000000000001", NOW);
    let v = check(&req, &key, NOW + 2).unwrap();
    assert_eq!(v.label, "ndxp");
    assert_eq!(v.keyid, "VN/GOV/000.00.00.G22#sign-1");
    assert_eq!(v.algorithm, Algorithm::EcdsaP256Sha256);
    assert_eq!(v.created, Some(NOW));
    assert_eq!(v.components, request_components());
    assert_eq!(v.signature.len(), 64);
    // The Content-Digest it covers matches the body.
    let cd = req.headers.get("content-digest").unwrap().to_str().unwrap();
    assert_eq!(
        verify_content_digest(cd, BODY).unwrap(),
        vec![DigestAlgorithm::Sha256]
    );
}

#[test]
fn changed_body_fails_the_digest() {
    let key = ec_signing("k");
    let req = signed_request(&key, "id-1", NOW);
    // Signature still verifies (head untouched) but the body does not match.
    check(&req, &key, NOW).unwrap();
    let cd = req.headers.get("content-digest").unwrap().to_str().unwrap();
    let err = verify_content_digest(cd, br#"{"citizen":"001234567891"}"#).unwrap_err();
    assert!(matches!(
        err,
        DigestError::Mismatch {
            algorithm: "sha-256"
        }
    ));
    // Replacing the digest to match the new body breaks the signature.
    let mut req = req;
    req.headers.insert(
        "content-digest",
        content_digest(br#"{"citizen":"001234567891"}"#)
            .parse()
            .unwrap(),
    );
    assert_invalid(&req, &key);
}

#[test]
fn changed_method_path_or_header_fails() {
    let key = ec_signing("k");
    let base = signed_request(&key, "id-1", NOW);

    let mut m = base.clone();
    m.method = Method::PUT;
    assert_invalid(&m, &key);

    let mut p = base.clone();
    p.uri = "https://provider.example:8443/r1/VN/GOV/000.00.00.G22/QLHT/citizen/v1/delete?full=1"
        .parse()
        .unwrap();
    assert_invalid(&p, &key);

    let mut q = base.clone();
    q.uri = "https://provider.example:8443/r1/VN/GOV/000.00.00.G22/QLHT/citizen/v1/lookup?full=0"
        .parse()
        .unwrap();
    assert_invalid(&q, &key);

    let mut h = base.clone();
    h.headers
        .insert("ndxp-client", "VN/GOV/000.00.00.G22/OTHER".parse().unwrap());
    assert_invalid(&h, &key);

    // A second field line for a covered header changes the combined value.
    let mut h2 = base.clone();
    h2.headers.append("ndxp-id", "id-2".parse().unwrap());
    assert_invalid(&h2, &key);

    // Removing a covered header is reported as such.
    let mut r = base.clone();
    r.headers.remove("ndxp-id");
    assert!(matches!(
        check(&r, &key, NOW),
        Err(SignatureError::MissingComponent(_))
    ));

    // Uncovered headers may change freely.
    let mut u = base;
    u.headers.insert("user-agent", "x".parse().unwrap());
    check(&u, &key, NOW).unwrap();
}

#[test]
fn time_window_is_enforced() {
    let key = ec_signing("k");
    let req = signed_request(&key, "id-1", NOW);
    // Default: 300 s max age, 30 s skew.
    check(&req, &key, NOW + 330).unwrap();
    assert!(matches!(
        check(&req, &key, NOW + 331),
        Err(SignatureError::TooOld { .. })
    ));
    check(&req, &key, NOW - 30).unwrap();
    assert!(matches!(
        check(&req, &key, NOW - 31),
        Err(SignatureError::CreatedInFuture { .. })
    ));

    // `expires` in the past.
    let mut req = ndxp_request("id-1", BODY);
    let params = SignatureParams::new(request_components())
        .with_created(NOW)
        .with_expires(NOW + 10)
        .with_keyid("k");
    sign_request(&mut req, "ndxp", &params, &key).unwrap();
    check(&req, &key, NOW + 40).unwrap();
    assert!(matches!(
        check(&req, &key, NOW + 41),
        Err(SignatureError::Expired { .. })
    ));

    // No `created` at all.
    let mut req = ndxp_request("id-1", BODY);
    let params = SignatureParams::new(request_components()).with_keyid("k");
    sign_request(&mut req, "ndxp", &params, &key).unwrap();
    assert!(matches!(
        check(&req, &key, NOW),
        Err(SignatureError::MissingCreated)
    ));
}

#[test]
fn policy_checks() {
    let key = ec_signing("k");
    let mut req = ndxp_request("id-1", BODY);
    let params = SignatureParams::new(vec![
        Component::method(),
        Component::field("content-digest"),
    ])
    .with_created(NOW)
    .with_keyid("k");
    sign_request(&mut req, "ndxp", &params, &key).unwrap();
    let err = check(&req, &key, NOW).unwrap_err();
    assert!(
        matches!(&err, SignatureError::MissingRequiredComponent(c) if c == "\"@target-uri\""),
        "{err}"
    );

    let req = signed_request(&key, "id-1", NOW);
    let vk = key.verifying_key().unwrap();
    let resolver = |k: &str| (k == "k").then(|| vk.clone());
    let msg = MessageView::request(&req);
    let mut p = policy();
    p.required_tag = Some("ndxp-v1".into());
    assert!(matches!(
        verify(&msg, "ndxp", &p, NOW, &resolver),
        Err(SignatureError::TagMismatch { found: None, .. })
    ));
    let mut p = policy();
    p.allowed_algorithms = vec![Algorithm::RsaPssSha512];
    assert!(matches!(
        verify(&msg, "ndxp", &p, NOW, &resolver),
        Err(SignatureError::AlgorithmNotAllowed(
            Algorithm::EcdsaP256Sha256
        ))
    ));
    assert!(matches!(
        verify(&msg, "other", &policy(), NOW, &resolver),
        Err(SignatureError::UnknownLabel(_))
    ));
    let nobody = |_: &str| None;
    assert!(matches!(
        verify(&msg, "ndxp", &policy(), NOW, &nobody),
        Err(SignatureError::UnknownKey(_))
    ));
    // A different key under the same keyid.
    let other = ec_signing("k").verifying_key().unwrap();
    let wrong = |k: &str| (k == "k").then(|| other.clone());
    assert!(matches!(
        verify(&msg, "ndxp", &policy(), NOW, &wrong),
        Err(SignatureError::InvalidSignature)
    ));
    // Signing twice under one label is refused.
    let mut again = req.clone();
    let params = SignatureParams::new(request_components()).with_created(NOW);
    assert!(matches!(
        sign_request(&mut again, "ndxp", &params, &key),
        Err(SignatureError::DuplicateLabel(_))
    ));
    let mut missing = req.clone();
    missing.headers.remove("signature");
    assert!(matches!(
        verify(
            &MessageView::request(&missing),
            "ndxp",
            &policy(),
            NOW,
            &resolver
        ),
        Err(SignatureError::MissingHeader("signature"))
    ));
}

fn response_components() -> Vec<Component> {
    vec![
        Component::status(),
        Component::field("content-digest"),
        Component::field("ndxp-id"),
        Component::method().req(),
        Component::target_uri().req(),
        Component::field("content-digest").req(),
        Component::request_signature("ndxp"),
    ]
}

#[test]
fn response_is_bound_to_its_request() {
    let consumer = ec_signing("consumer");
    let provider = ec_signing("provider");
    let req_a = signed_request(&consumer, "id-a", NOW);
    let req_b = signed_request(&consumer, "id-a", NOW + 1); // same id, new signature

    // Provider side: origin-form URI, scheme and Host from the connection.
    let mut server_a = req_a.clone();
    server_a.uri = req_a
        .uri
        .path_and_query()
        .unwrap()
        .as_str()
        .parse()
        .unwrap();
    server_a
        .headers
        .insert("host", "Provider.Example:8443".parse().unwrap());
    let server_view = RequestView::from_parts(&server_a).with_scheme("https");
    check_server_view(&server_view, &consumer);

    let body = br#"{"name":"Nguyen Van A"}"#;
    let mut resp = Response::builder()
        .status(200)
        .header("content-digest", content_digest(body))
        .header("ndxp-id", "id-a")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let params = SignatureParams::new(response_components())
        .with_created(NOW + 1)
        .with_keyid("provider")
        .with_alg(Algorithm::EcdsaP256Sha256);
    sign_response(&mut resp, server_view, "ndxp", &params, &provider).unwrap();

    let vk = provider.verifying_key().unwrap();
    let resolver = |k: &str| (k == "provider").then(|| vk.clone());
    let policy = VerifyPolicy::new(response_components());
    // Consumer side: absolute URI as sent.
    let ok = MessageView::response(&resp, Some(RequestView::from_parts(&req_a)));
    verify(&ok, "ndxp", &policy, NOW + 2, &resolver).unwrap();

    let replayed = MessageView::response(&resp, Some(RequestView::from_parts(&req_b)));
    assert!(matches!(
        verify(&replayed, "ndxp", &policy, NOW + 2, &resolver),
        Err(SignatureError::InvalidSignature)
    ));
    let mut req_c = req_a.clone();
    req_c.uri = "https://provider.example:8443/r1/other".parse().unwrap();
    let other_uri = MessageView::response(&resp, Some(RequestView::from_parts(&req_c)));
    assert!(matches!(
        verify(&other_uri, "ndxp", &policy, NOW + 2, &resolver),
        Err(SignatureError::InvalidSignature)
    ));
    // A response signature without the request binding fails the policy.
    let mut loose = resp.clone();
    loose.headers.remove("signature");
    loose.headers.remove("signature-input");
    let params = SignatureParams::new(vec![
        Component::status(),
        Component::field("content-digest"),
    ])
    .with_created(NOW + 1)
    .with_keyid("provider");
    sign_response(&mut loose, server_view, "ndxp", &params, &provider).unwrap();
    let err = verify(
        &MessageView::response(&loose, Some(RequestView::from_parts(&req_a))),
        "ndxp",
        &policy,
        NOW + 2,
        &resolver,
    )
    .unwrap_err();
    assert!(
        matches!(err, SignatureError::MissingRequiredComponent(_)),
        "{err}"
    );
}

fn check_server_view(view: &RequestView<'_>, key: &SigningKey) {
    // The provider rebuilds the same @target-uri from an origin-form URI,
    // so the consumer's signature verifies on its side.
    let vk = key.verifying_key().unwrap();
    let resolver = |k: &str| (k == key.keyid()).then(|| vk.clone());
    verify(
        &MessageView::Request(*view),
        "ndxp",
        &policy(),
        NOW,
        &resolver,
    )
    .unwrap();
}

#[test]
fn rsa_algorithms_round_trip_and_small_keys_rejected() {
    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let pss = SigningKey::new(rsa.clone(), "rsa").unwrap();
    assert_eq!(
        pss.algorithm(),
        Algorithm::RsaPssSha512,
        "PSS is the RSA default"
    );
    let v15 = SigningKey::with_algorithm(rsa, Algorithm::RsaV15Sha256, "rsa").unwrap();
    for key in [&pss, &v15] {
        let req = signed_request(key, "id", NOW);
        let v = check(&req, key, NOW).unwrap();
        assert_eq!(v.algorithm, key.algorithm());
        assert_eq!(v.signature.len(), 256);
    }
    let small = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
    assert!(matches!(
        SigningKey::new(small, "small"),
        Err(SignatureError::UnsuitableKey { .. })
    ));
    let group = EcGroup::from_curve_name(Nid::SECP384R1).unwrap();
    let p384 = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    assert!(matches!(
        SigningKey::new(p384, "p384"),
        Err(SignatureError::UnsuitableKey { .. })
    ));
}

#[test]
fn structured_field_parameters() {
    let req = Request::get("https://example.com/a?b=1&b=2")
        .header("example-dict", " a=1,    b=2;x=1;y=2,   c=(a   b   c), d")
        .header("example-header", "value, with, lots")
        .header("example-header", "of, commas")
        .header("cache-control", "max-age=60")
        .header("cache-control", "   must-revalidate")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let msg = MessageView::request(&req);
    let base = signature_base(
        &msg,
        &SignatureParams::new(vec![
            Component::field("example-dict").sf(),
            Component::field("example-dict").key("a"),
            Component::field("example-dict").key("d"),
            Component::field("example-dict").key("b"),
            Component::field("example-dict").key("c"),
            Component::field("example-header").bs(),
            Component::field("cache-control"),
        ]),
    )
    .unwrap();
    // Values from RFC 9421 §2.1, §2.1.1, §2.1.2 and §2.1.3.
    let expected = [
        "\"example-dict\";sf: a=1, b=2;x=1;y=2, c=(a b c), d",
        "\"example-dict\";key=\"a\": 1",
        "\"example-dict\";key=\"d\": ?1",
        "\"example-dict\";key=\"b\": 2;x=1;y=2",
        "\"example-dict\";key=\"c\": (a b c)",
        "\"example-header\";bs: :dmFsdWUsIHdpdGgsIGxvdHM=:, :b2YsIGNvbW1hcw==:",
        "\"cache-control\": max-age=60, must-revalidate",
    ];
    let lines: Vec<&str> = base.lines().collect();
    assert_eq!(&lines[..expected.len()], &expected);

    // Errors: missing member, duplicate, req on a request, bs+sf, duplicate
    // query parameter, unknown derived component.
    for (c, want) in [
        (Component::field("example-dict").key("zz"), "missing"),
        (Component::method().req(), "invalid"),
        (Component::field("example-header").bs().sf(), "invalid"),
        (Component::query_param("b"), "invalid"),
        (Component::new("@nope"), "invalid"),
        (Component::status(), "invalid"),
        (Component::new("Content-Type"), "invalid"),
        (Component::new("caf\u{e9}"), "invalid"),
        (Component::new("a\nb"), "invalid"),
        (Component::field("example-dict").key("\u{e9}"), "invalid"),
        (
            Component::field("example-dict").key("a").key("a"),
            "invalid",
        ),
    ] {
        let err = signature_base(&msg, &SignatureParams::new(vec![c.clone()])).unwrap_err();
        let ok = match want {
            "missing" => matches!(err, SignatureError::MissingComponent(_)),
            _ => matches!(err, SignatureError::InvalidComponent { .. }),
        };
        assert!(ok, "{c}: {err}");
    }
    let bad_nonce = SignatureParams::new(vec![]).with_nonce("n\u{e9}");
    assert!(matches!(
        signature_base(&msg, &bad_nonce),
        Err(SignatureError::InvalidSignatureParams(_))
    ));
    let dup = SignatureParams::new(vec![Component::method(), Component::method()]);
    assert!(matches!(
        signature_base(&msg, &dup),
        Err(SignatureError::DuplicateComponent(_))
    ));
    let reordered = SignatureParams::new(vec![
        Component::field("example-dict").sf().key("a"),
        Component::field("example-dict").key("a").sf(),
    ]);
    assert!(matches!(
        signature_base(&msg, &reordered),
        Err(SignatureError::DuplicateComponent(_))
    ));
}

#[test]
fn derived_component_values() {
    let req =
        Request::get("https://WWW.Example.com:443/path?param=value&foo=bar&baz=bat%2Dman&qux=")
            .body(())
            .unwrap()
            .into_parts()
            .0;
    let msg = MessageView::request(&req);
    let base = signature_base(
        &msg,
        &SignatureParams::new(vec![
            Component::target_uri(),
            Component::authority(),
            Component::scheme(),
            Component::request_target(),
            Component::path(),
            Component::query(),
            Component::query_param("baz"),
            Component::query_param("qux"),
        ]),
    )
    .unwrap();
    let expected =
        "\"@target-uri\": https://www.example.com/path?param=value&foo=bar&baz=bat%2Dman&qux=\n\
\"@authority\": www.example.com\n\
\"@scheme\": https\n\
\"@request-target\": /path?param=value&foo=bar&baz=bat%2Dman&qux=\n\
\"@path\": /path\n\
\"@query\": ?param=value&foo=bar&baz=bat%2Dman&qux=\n\
\"@query-param\";name=\"baz\": bat-man\n\
\"@query-param\";name=\"qux\": \n";
    assert!(base.starts_with(expected), "{base}");
    let no_query = Request::get("/x")
        .header("host", "a.example")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let base = signature_base(
        &MessageView::request(&no_query),
        &SignatureParams::new(vec![Component::query()]),
    )
    .unwrap();
    assert!(base.starts_with("\"@query\": ?\n"));
    // Origin-form without a scheme cannot produce @scheme.
    assert!(matches!(
        signature_base(
            &MessageView::request(&no_query),
            &SignatureParams::new(vec![Component::scheme()])
        ),
        Err(SignatureError::MissingComponent(_))
    ));
}

// ---- RFC 9530 ---------------------------------------------------------------

#[test]
fn rfc9530_examples() {
    // RFC 9530 §2 / Appendix B: `{"hello": "world"}` plus a newline.
    let body = b"{\"hello\": \"world\"}\n";
    assert_eq!(
        content_digest(body),
        "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
    );
    assert_eq!(
        content_digest_with(DigestAlgorithm::Sha512, body),
        "sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:"
    );
    // Empty content (RFC 9530 B.2).
    assert_eq!(
        content_digest(b""),
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
    );
    // Partial content "world"}\n (RFC 9530 B.3).
    assert_eq!(
        content_digest(b"\"world\"}\n"),
        "sha-256=:jjcgBDWNAtbYUXI37CVG3gRuGOAjaaDRGpIUFsdyepQ=:"
    );
    // RFC 9421 test-request body (sha-512 in its Content-Digest).
    assert_eq!(
        verify_content_digest(
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
            b"{\"hello\": \"world\"}"
        )
        .unwrap(),
        vec![DigestAlgorithm::Sha512]
    );
}

#[test]
fn digest_verification_rules() {
    let body = b"{\"hello\": \"world\"}\n";
    let both = "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:, \
                sha-512=:YMAam51Jz/jOATT6/zvHrLVgOYTGFy1d6GJiOHTohq4yP+pgk4vf2aCsyRZOtw8MjkM7iw7yZ/WkppmM44T3qg==:";
    assert_eq!(
        verify_content_digest(both, body).unwrap(),
        vec![DigestAlgorithm::Sha256, DigestAlgorithm::Sha512]
    );
    // Unknown algorithms are ignored when a supported one is present...
    let with_md5 = "md5=:AAAA:, sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:";
    verify_content_digest(with_md5, body).unwrap();
    // ...but alone they are not enough.
    assert!(matches!(
        verify_content_digest("md5=:AAAA:, unixsum=:AAAA:", body),
        Err(DigestError::NoSupportedAlgorithm)
    ));
    // Every supported member must match.
    let bad512 = "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:, \
                  sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
    assert!(matches!(
        verify_content_digest(bad512, body),
        Err(DigestError::Mismatch {
            algorithm: "sha-512"
        })
    ));
    assert!(matches!(
        verify_content_digest("sha-256=:AAAA:", body),
        Err(DigestError::MalformedMember { .. })
    ));
    assert!(matches!(
        verify_content_digest("sha-256=\"RK/0\"", body),
        Err(DigestError::MalformedMember { .. })
    ));
    assert!(matches!(
        verify_content_digest("sha-256=:RK/0qy18", body),
        Err(DigestError::MalformedField(_))
    ));
    // Streaming in odd chunk sizes gives the same answer.
    let mut v = ContentDigestVerifier::new(both).unwrap();
    for chunk in body.chunks(3) {
        v.update(chunk);
    }
    assert_eq!(v.finish().unwrap().len(), 2);
}
