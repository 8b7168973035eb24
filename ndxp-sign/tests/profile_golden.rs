//! NDXP signature profile: the exact signature bases of a fixed request and
//! response are pinned in `tests/vectors/ndxp-profile/`, so the wire format
//! cannot drift silently. ECDSA signatures are randomised, so the base (what
//! is signed) is pinned rather than the signature; the signer's fingerprint,
//! which changes with every test CA, is written as `<fingerprint>`.
//!
//! After a deliberate change of the profile, rewrite the files with
//! `NDXP_BLESS=1 cargo test -p ndxp-sign --test profile_golden` and update
//! `docs/signatures.md`.

#![allow(clippy::unwrap_used)]

mod profile_support;

use chrono::DateTime;
use ndxp_core::TransactionId;
use ndxp_sign::digest::content_digest;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::profile;
use profile_support::*;

const ID: &str = "01978a3e-4b2c-7d10-8e5f-0123456789ab";
const CREATED: i64 = 1_750_000_000;

fn check(file: &str, actual: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/vectors/ndxp-profile")
        .join(file);
    if std::env::var_os("NDXP_BLESS").is_some() {
        std::fs::write(&path, actual).unwrap();
    }
    let expected = std::fs::read_to_string(&path).unwrap();
    assert_eq!(actual, expected, "signature base of {file} changed");
}

#[test]
fn request_and_response_bases_are_pinned() {
    let ca = Ca::new("NDXP Test Root");
    let consumer = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let provider = ca.signer(PROVIDER, KeyAlgorithm::EcP256);
    let at = DateTime::from_timestamp(CREATED, 0).unwrap();
    let id: TransactionId = ID.parse().unwrap();

    let mut req = request_head(id);
    req.headers
        .insert("ndxp-user-id", "citizen-42".parse().unwrap());
    req.headers
        .insert("ndxp-request-id", "qlht-2025-000123".parse().unwrap());
    let signed =
        profile::sign_request(&mut req, &content_digest(REQUEST_BODY), &consumer, at).unwrap();
    check(
        "request.base",
        &signed.base.replace(consumer.fingerprint(), "<fingerprint>"),
    );
    // The signature base is the one the receiver reconstructs.
    // (The fixed `created` predates the test CA: verify now with a window
    // wide enough to reach it.)
    let policy = ca.policy().with_window(u64::MAX);
    let v = profile::verify_request(&as_received(&req), &policy, now()).unwrap();
    assert_eq!(v.base, signed.base);
    assert_eq!(v.signature_input, signed.signature_input);

    let resp = {
        let mut parts = http::Response::builder()
            .status(200)
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let signed = profile::sign_response(
            &mut parts,
            &as_received(&req),
            &content_digest(RESPONSE_BODY),
            &provider,
            at,
        )
        .unwrap();
        // The request signature is random; pin everything else.
        let req_sig = req.headers["signature"].to_str().unwrap();
        let req_sig = req_sig.strip_prefix("ndxp=").unwrap();
        check(
            "response.base",
            &signed
                .base
                .replace(provider.fingerprint(), "<fingerprint>")
                .replace(req_sig, "<request signature>"),
        );
        parts
    };
    let rv = profile::verify_response(&resp, &req, &policy, now()).unwrap();
    assert_eq!(rv.ndxp_id, id);
}
