//! RFC 9421 vectors: rebuild the published signature bases from the
//! published messages, verify the published signatures, and round-trip our
//! own signatures with the RFC keys. Vectors: `tests/vectors/rfc9421/`.

#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use http::{Request, Response, StatusCode};
use ndxp_sign::httpsig::*;
use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;

fn vector(name: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors/rfc9421/");
    std::fs::read_to_string(format!("{path}{name}")).unwrap()
}

fn sig_bytes(name: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(vector(name).trim())
        .unwrap()
}

fn private(name: &str) -> PKey<Private> {
    PKey::private_key_from_pem(vector(&format!("{name}.pem")).as_bytes()).unwrap()
}

fn public(name: &str) -> PKey<Public> {
    let pem = vector(&format!("{name}.pub.pem"));
    if pem.contains("BEGIN RSA PUBLIC KEY") {
        PKey::from_rsa(Rsa::public_key_from_pem_pkcs1(pem.as_bytes()).unwrap()).unwrap()
    } else {
        PKey::public_key_from_pem(pem.as_bytes()).unwrap()
    }
}

const REQ_DIGEST: &str = "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:";
const RESP_DIGEST: &str = "sha-512=:mEWXIS7MaLRuGgxOBdODa3xqM1XdEvxoYhvlCFJ41QJgJc4GTsPp29l5oGX69wWdXymyU0rjJuahq4l5aGgfLQ==:";
const RESP503_DIGEST: &str = "sha-512=:0Y6iCBzGg5rZtoXS95Ijz03mslf6KAMCloESHObfwnHJDbkkWWQz6PhhU9kxsTbARtY2PTBOzq24uJFpHsMuAg==:";
const CREATED: i64 = 1_618_884_473;

/// `test-request` of RFC 9421 B.2.
fn test_request() -> http::request::Parts {
    Request::post("/foo?param=Value&Pet=dog")
        .header("Host", "example.com")
        .header("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
        .header("Content-Type", "application/json")
        .header("Content-Digest", REQ_DIGEST)
        .header("Content-Length", "18")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// `test-response` of RFC 9421 B.2.
fn test_response() -> http::response::Parts {
    Response::builder()
        .status(200)
        .header("Date", "Tue, 20 Apr 2021 02:07:56 GMT")
        .header("Content-Type", "application/json")
        .header("Content-Digest", RESP_DIGEST)
        .header("Content-Length", "23")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// The 503 response of RFC 9421 §2.4.
fn response_503() -> http::response::Parts {
    Response::builder()
        .status(StatusCode::SERVICE_UNAVAILABLE)
        .header("Date", "Tue, 20 Apr 2021 02:07:56 GMT")
        .header("Content-Type", "application/json")
        .header("Content-Length", "62")
        .header("Content-Digest", RESP503_DIGEST)
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn fields(names: &[&str]) -> Vec<Component> {
    names
        .iter()
        .map(|n| match *n {
            "@method" => Component::method(),
            "@authority" => Component::authority(),
            "@path" => Component::path(),
            "@query" => Component::query(),
            "@status" => Component::status(),
            f => Component::field(f),
        })
        .collect()
}

fn add_sig(headers: &mut http::HeaderMap, label: &str, params: &SignatureParams, sig_file: &str) {
    let b64 = vector(sig_file).trim().to_owned();
    headers.append(
        "signature-input",
        format!("{label}={}", params.serialize().unwrap())
            .parse()
            .unwrap(),
    );
    headers.append("signature", format!("{label}=:{b64}:").parse().unwrap());
}

/// A resolver for the RFC's test key `keyid` used with `alg`.
fn resolver_for(keyid: &'static str, alg: Algorithm) -> impl Fn(&str) -> Option<VerifyingKey> {
    let vk = VerifyingKey::with_algorithm(public(keyid), alg, keyid).unwrap();
    move |k: &str| (k == keyid).then(|| vk.clone())
}

/// [`verify`] under [`lenient_policy`].
fn verify_lenient(
    msg: &MessageView<'_>,
    label: &str,
    now: i64,
    resolver: &dyn KeyResolver,
) -> Result<VerifiedSignature, SignatureError> {
    verify(msg, label, &lenient_policy(), now, resolver)
}

fn lenient_policy() -> VerifyPolicy {
    let mut p = VerifyPolicy::new(vec![]);
    p.max_age = None;
    p
}

fn b21_params() -> SignatureParams {
    SignatureParams::new(vec![])
        .with_created(CREATED)
        .with_keyid("test-key-rsa-pss")
        .with_nonce("b3k2pp5k7z-50gnwp.yemd")
}

fn b22_params() -> SignatureParams {
    SignatureParams::new(vec![
        Component::authority(),
        Component::field("content-digest"),
        Component::query_param("Pet"),
    ])
    .with_created(CREATED)
    .with_keyid("test-key-rsa-pss")
    .with_tag("header-example")
}

fn b23_params() -> SignatureParams {
    SignatureParams::new(fields(&[
        "date",
        "@method",
        "@path",
        "@query",
        "@authority",
        "content-type",
        "content-digest",
        "content-length",
    ]))
    .with_created(CREATED)
    .with_keyid("test-key-rsa-pss")
}

fn b24_params() -> SignatureParams {
    SignatureParams::new(fields(&[
        "@status",
        "content-type",
        "content-digest",
        "content-length",
    ]))
    .with_created(CREATED)
    .with_keyid("test-key-ecc-p256")
}

#[test]
fn b2_request_bases_match_rfc() {
    let req = test_request();
    let msg = MessageView::request(&req);
    assert_eq!(
        signature_base(&msg, &b21_params()).unwrap(),
        vector("b2_1.base")
    );
    assert_eq!(
        signature_base(&msg, &b22_params()).unwrap(),
        vector("b2_2.base")
    );
    assert_eq!(
        signature_base(&msg, &b23_params()).unwrap(),
        vector("b2_3.base")
    );
    // B.2.5 (hmac-sha256) and B.2.6 (ed25519): algorithms we do not sign
    // with, but the bases are algorithm-independent.
    let b25 = SignatureParams::new(fields(&["date", "@authority", "content-type"]))
        .with_created(CREATED)
        .with_keyid("test-shared-secret");
    assert_eq!(signature_base(&msg, &b25).unwrap(), vector("b2_5.base"));
    let b26 = SignatureParams::new(fields(&[
        "date",
        "@method",
        "@path",
        "@authority",
        "content-type",
        "content-length",
    ]))
    .with_created(CREATED)
    .with_keyid("test-key-ed25519");
    assert_eq!(signature_base(&msg, &b26).unwrap(), vector("b2_6.base"));
    // §2.5 example base.
    let s25 = SignatureParams::new(fields(&[
        "@method",
        "@authority",
        "@path",
        "content-digest",
        "content-length",
        "content-type",
    ]))
    .with_created(CREATED)
    .with_keyid("test-key-rsa-pss");
    assert_eq!(
        signature_base(&msg, &s25).unwrap(),
        vector("s2_5_sig1.base")
    );
}

#[test]
fn b2_4_response_base_matches_rfc() {
    let resp = test_response();
    let base = signature_base(&MessageView::response(&resp, None), &b24_params()).unwrap();
    assert_eq!(base, vector("b2_4.base"));
}

#[test]
fn rfc_rsa_pss_signatures_verify() {
    let resolver = resolver_for("test-key-rsa-pss", Algorithm::RsaPssSha512);
    for (label, params, file) in [
        ("sig-b21", b21_params(), "b2_1.sig"),
        ("sig-b22", b22_params(), "b2_2.sig"),
        ("sig-b23", b23_params(), "b2_3.sig"),
    ] {
        let mut req = test_request();
        add_sig(&mut req.headers, label, &params, file);
        let v = verify_lenient(&MessageView::request(&req), label, CREATED + 1, &resolver)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_eq!(v.keyid, "test-key-rsa-pss");
        assert_eq!(v.algorithm, Algorithm::RsaPssSha512);
        assert_eq!(v.signature, sig_bytes(file));
        assert_eq!(
            v.base_sha256,
            openssl::sha::sha256(vector(&file.replace(".sig", ".base")).as_bytes())
        );
    }
}

#[test]
fn rfc_ecdsa_response_signature_verifies() {
    let resolver = resolver_for("test-key-ecc-p256", Algorithm::EcdsaP256Sha256);
    let mut resp = test_response();
    add_sig(&mut resp.headers, "sig-b24", &b24_params(), "b2_4.sig");
    let v = verify_lenient(
        &MessageView::response(&resp, None),
        "sig-b24",
        CREATED,
        &resolver,
    )
    .unwrap();
    assert_eq!(v.signature.len(), 64, "raw r||s");
    // Flipping one bit of s must fail.
    let mut resp = test_response();
    let mut sig = sig_bytes("b2_4.sig");
    sig[63] ^= 1;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&sig);
    resp.headers.append(
        "signature-input",
        format!("sig-b24={}", b24_params().serialize().unwrap())
            .parse()
            .unwrap(),
    );
    resp.headers
        .append("signature", format!("sig-b24=:{b64}:").parse().unwrap());
    let err = verify_lenient(
        &MessageView::response(&resp, None),
        "sig-b24",
        CREATED,
        &resolver,
    )
    .unwrap_err();
    assert!(matches!(err, SignatureError::InvalidSignature), "{err}");
}

#[test]
fn rfc_section_2_4_request_response() {
    let req = test_request();
    let resp = response_503();
    let reqres = SignatureParams::new(vec![
        Component::status(),
        Component::field("content-digest"),
        Component::field("content-type"),
        Component::authority().req(),
        Component::method().req(),
        Component::path().req(),
        Component::field("content-digest").req(),
    ])
    .with_created(1_618_884_479)
    .with_keyid("test-key-ecc-p256");
    let msg = MessageView::response(&resp, Some(RequestView::from_parts(&req)));
    assert_eq!(
        signature_base(&msg, &reqres).unwrap(),
        vector("s2_4_reqres.base")
    );

    let resolver = resolver_for("test-key-ecc-p256", Algorithm::EcdsaP256Sha256);
    let mut signed = response_503();
    add_sig(&mut signed.headers, "reqres", &reqres, "s2_4_reqres.sig");
    let msg = MessageView::response(&signed, Some(RequestView::from_parts(&req)));
    verify_lenient(&msg, "reqres", 1_618_884_479, &resolver).unwrap();

    // Without the request, `;req` components cannot be resolved.
    let err = verify_lenient(
        &MessageView::response(&signed, None),
        "reqres",
        1_618_884_479,
        &resolver,
    )
    .unwrap_err();
    assert!(matches!(err, SignatureError::MissingComponent(_)), "{err}");
}

#[test]
fn rfc_section_2_4_signed_request_and_full_response() {
    // The signed request `sig1` (RSA-PSS); its base is not printed in the
    // RFC, so verification is the check that we rebuild it exactly.
    let sig1 = SignatureParams::new(fields(&[
        "@method",
        "@authority",
        "@path",
        "@query",
        "content-digest",
        "content-type",
        "content-length",
    ]))
    .with_created(1_618_884_475)
    .with_keyid("test-key-rsa-pss");
    let mut req = test_request();
    add_sig(&mut req.headers, "sig1", &sig1, "s2_4_request_sig1.sig");
    let pss = resolver_for("test-key-rsa-pss", Algorithm::RsaPssSha512);
    verify_lenient(&MessageView::request(&req), "sig1", 1_618_884_475, &pss).unwrap();

    let full = SignatureParams::new(vec![
        Component::status(),
        Component::field("content-digest"),
        Component::field("content-type"),
        Component::authority().req(),
        Component::method().req(),
        Component::path().req(),
        Component::query().req(),
        Component::field("content-digest").req(),
        Component::field("content-type").req(),
        Component::field("content-length").req(),
    ])
    .with_created(1_618_884_479)
    .with_keyid("test-key-ecc-p256");
    let resp = response_503();
    let msg = MessageView::response(&resp, Some(RequestView::from_parts(&req)));
    assert_eq!(
        signature_base(&msg, &full).unwrap(),
        vector("s2_4_reqres_full.base")
    );
    let mut signed = response_503();
    add_sig(&mut signed.headers, "reqres", &full, "s2_4_reqres_full.sig");
    let ecc = resolver_for("test-key-ecc-p256", Algorithm::EcdsaP256Sha256);
    let msg = MessageView::response(&signed, Some(RequestView::from_parts(&req)));
    verify_lenient(&msg, "reqres", 1_618_884_479, &ecc).unwrap();
}

/// RFC 9421 §4.3: a client signature and a proxy's `rsa-v1_5-sha256`
/// signature (deterministic, so our output must equal the RFC's bytes).
#[test]
fn rfc_section_4_3_multiple_signatures() {
    let client = SignatureParams::new(fields(&[
        "@method",
        "@authority",
        "@path",
        "content-digest",
        "content-type",
        "content-length",
    ]))
    .with_created(1_618_884_475)
    .with_keyid("test-key-ecc-p256");
    let proxy = SignatureParams::new(fields(&[
        "@method",
        "@authority",
        "@path",
        "content-digest",
        "content-type",
        "content-length",
        "forwarded",
    ]))
    .with_created(1_618_884_480)
    .with_keyid("test-key-rsa")
    .with_alg(Algorithm::RsaV15Sha256)
    .with_expires(1_618_884_540);

    // Client request as sent to the proxy.
    let mut original = test_request();
    add_sig(
        &mut original.headers,
        "sig1",
        &client,
        "s4_3_client_sig1.sig",
    );
    let ecc = resolver_for("test-key-ecc-p256", Algorithm::EcdsaP256Sha256);
    verify_lenient(
        &MessageView::request(&original),
        "sig1",
        1_618_884_475,
        &ecc,
    )
    .unwrap();

    // Forwarded request.
    let mut fwd = Request::post("/foo?param=Value&Pet=dog")
        .header("Host", "origin.host.internal.example")
        .header("Date", "Tue, 20 Apr 2021 02:07:56 GMT")
        .header("Content-Type", "application/json")
        .header("Content-Length", "18")
        .header("Forwarded", "for=192.0.2.123;host=example.com;proto=https")
        .header("Content-Digest", REQ_DIGEST)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    add_sig(&mut fwd.headers, "sig1", &client, "s4_3_client_sig1.sig");
    assert_eq!(
        signature_base(&MessageView::request(&fwd), &proxy).unwrap(),
        vector("s4_3_proxy_sig.base")
    );
    let key = SigningKey::with_algorithm(
        private("test-key-rsa"),
        Algorithm::RsaV15Sha256,
        "test-key-rsa",
    )
    .unwrap();
    let out = sign_request(&mut fwd, "proxy_sig", &proxy, &key).unwrap();
    assert_eq!(out.signature_bytes, sig_bytes("s4_3_proxy_sig.sig"));
    assert_eq!(
        fwd.headers.get_all("signature-input").iter().count(),
        2,
        "appended next to sig1"
    );
    let rsa = resolver_for("test-key-rsa", Algorithm::RsaV15Sha256);
    let v = verify_lenient(
        &MessageView::request(&fwd),
        "proxy_sig",
        1_618_884_480,
        &rsa,
    )
    .unwrap();
    assert_eq!(v.expires, Some(1_618_884_540));
    // The client signature no longer verifies: the proxy changed @authority.
    let err = verify_lenient(&MessageView::request(&fwd), "sig1", 1_618_884_475, &ecc).unwrap_err();
    assert!(matches!(err, SignatureError::InvalidSignature), "{err}");
    // A verifier configured for rsa-pss-sha512 on this key rejects the
    // declared rsa-v1_5-sha256.
    let pss = resolver_for("test-key-rsa", Algorithm::RsaPssSha512);
    let err = verify_lenient(
        &MessageView::request(&fwd),
        "proxy_sig",
        1_618_884_480,
        &pss,
    )
    .unwrap_err();
    assert!(
        matches!(err, SignatureError::AlgorithmMismatch { .. }),
        "{err}"
    );
}

/// RFC 9421 B.3: a TLS-terminating proxy signs the `Client-Cert` field.
#[test]
fn rfc_b3_tls_terminating_proxy() {
    let cert = ":MIIBqDCCAU6gAwIBAgIBBzAKBggqhkjOPQQDAjA6MRswGQYDVQQKDBJMZXQncyBBdXRoZW50aWNhdGUxGzAZBgNVBAMMEkxBIEludGVybWVkaWF0ZSBDQTAeFw0yMDAxMTQyMjU1MzNaFw0yMTAxMjMyMjU1MzNaMA0xCzAJBgNVBAMMAkJDMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE8YnXXfaUgmnMtOXU/IncWalRhebrXmckC8vdgJ1p5Be5F/3YC8OthxM4+k1M6aEAEFcGzkJiNy6J84y7uzo9M6NyMHAwCQYDVR0TBAIwADAfBgNVHSMEGDAWgBRm3WjLa38lbEYCuiCPct0ZaSED2DAOBgNVHQ8BAf8EBAMCBsAwEwYDVR0lBAwwCgYIKwYBBQUHAwIwHQYDVR0RAQH/BBMwEYEPYmRjQGV4YW1wbGUuY29tMAoGCCqGSM49BAMCA0gAMEUCIBHda/r1vaL6G3VliL4/Di6YK0Q6bMjeSkC3dFCOOB8TAiEAx/kHSB4urmiZ0NX5r5XarmPk0wmuydBVoU4hBVZ1yhk=:";
    let mut req = Request::post("/foo?param=Value&Pet=dog")
        .header("Host", "service.internal.example")
        .header("Date", "Tue, 20 Apr 2021 02:07:55 GMT")
        .header("Content-Type", "application/json")
        .header("Content-Length", "18")
        .header("Client-Cert", cert)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let params = SignatureParams::new(fields(&[
        "@path",
        "@query",
        "@method",
        "@authority",
        "client-cert",
    ]))
    .with_created(CREATED)
    .with_keyid("test-key-ecc-p256");
    assert_eq!(
        signature_base(&MessageView::request(&req), &params).unwrap(),
        vector("b3_ttrp.base")
    );
    add_sig(&mut req.headers, "ttrp", &params, "b3_ttrp.sig");
    let ecc = resolver_for("test-key-ecc-p256", Algorithm::EcdsaP256Sha256);
    verify_lenient(&MessageView::request(&req), "ttrp", CREATED, &ecc).unwrap();
}

#[test]
fn round_trip_with_rfc_keys() {
    for (keyname, label, params, base) in [
        ("test-key-rsa-pss", "sig-b22", b22_params(), "b2_2.base"),
        ("test-key-rsa-pss", "sig-b23", b23_params(), "b2_3.base"),
    ] {
        let key = SigningKey::new(private(keyname), keyname).unwrap();
        assert_eq!(key.algorithm(), Algorithm::RsaPssSha512);
        let mut req = test_request();
        let out = sign_request(&mut req, label, &params, &key).unwrap();
        assert_eq!(out.base, vector(base));
        let vk = key.verifying_key().unwrap();
        let resolver = |k: &str| (k == keyname).then(|| vk.clone());
        verify_lenient(&MessageView::request(&req), label, CREATED, &resolver).unwrap();
    }
    let key = SigningKey::new(private("test-key-ecc-p256"), "test-key-ecc-p256").unwrap();
    assert_eq!(key.algorithm(), Algorithm::EcdsaP256Sha256);
    let mut resp = test_response();
    let req = test_request();
    let out = sign_response(
        &mut resp,
        RequestView::from_parts(&req),
        "sig-b24",
        &b24_params(),
        &key,
    )
    .unwrap();
    assert_eq!(out.base, vector("b2_4.base"));
    assert_eq!(out.signature_bytes.len(), 64);
    // Our signature verifies with the RFC's published public key.
    let resolver = resolver_for("test-key-ecc-p256", Algorithm::EcdsaP256Sha256);
    verify_lenient(
        &MessageView::response(&resp, None),
        "sig-b24",
        CREATED,
        &resolver,
    )
    .unwrap();
}
