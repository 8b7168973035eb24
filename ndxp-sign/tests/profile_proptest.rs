//! NDXP signature profile: arbitrary header values never panic, in signing
//! or verification; they are refused with a typed error.

#![allow(clippy::unwrap_used)]

mod profile_support;

use std::sync::OnceLock;

use http::HeaderValue;
use ndxp_core::TransactionId;
use ndxp_sign::digest::content_digest;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::profile::{self, ProfilePolicy, Signer};
use profile_support::*;
use proptest::prelude::*;

struct Fixture {
    _ca: Ca,
    signer: Signer,
    policy: ProfilePolicy,
    signed: http::request::Parts,
    response: http::response::Parts,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = Ca::new("NDXP Test Root");
        let signer = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
        let provider = ca.signer(PROVIDER, KeyAlgorithm::EcP256);
        let signed = signed_request(&signer, TransactionId::new(), now());
        let response = signed_response(&provider, &signed, now());
        Fixture {
            policy: ca.policy(),
            _ca: ca,
            signer,
            signed,
            response,
        }
    })
}

const FIELDS: [&str; 9] = [
    "ndxp-client",
    "ndxp-id",
    "ndxp-user-id",
    "ndxp-request-id",
    "ndxp-signer-cert",
    "content-digest",
    "signature-input",
    "signature",
    "host",
];

/// Header values: raw bytes, or structured-field-looking text, or a
/// mutation of the genuine value.
fn value() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..200),
        "[ -~]{0,200}".prop_map(String::into_bytes),
        r#"(ndxp|sig1)=\(("[@a-z-]{0,12}"(;req|;key="ndxp"|;sf|;bs)? ?){0,6}\)(;(created|keyid|alg|tag|expires)=("[a-z0-9-]{0,8}"|-?[0-9]{1,16})){0,5}"#
            .prop_map(String::into_bytes),
        r#"(:[A-Za-z0-9+/=]{0,80}:(, )?){0,4}"#.prop_map(String::into_bytes),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn verifying_arbitrary_headers_never_panics(
        edits in proptest::collection::vec((0..FIELDS.len(), value(), any::<bool>()), 1..4)
    ) {
        let f = fixture();
        let mut req = f.signed.clone();
        let mut resp = f.response.clone();
        for (i, v, append) in &edits {
            let Ok(v) = HeaderValue::from_bytes(v) else { continue };
            if *append {
                req.headers.append(FIELDS[*i], v.clone());
                resp.headers.append(FIELDS[*i], v);
            } else {
                req.headers.insert(FIELDS[*i], v.clone());
                resp.headers.insert(FIELDS[*i], v);
            }
        }
        let r = profile::verify_request_with_body(&req, REQUEST_BODY, &f.policy, now());
        if let Err(e) = &r {
            let _ = (e.to_string(), e.problem_code());
        }
        let _ = profile::verify_response(&resp, &req, &f.policy, now());
        let _ = profile::parse_signer_cert_header(&req.headers, 1 << 16);
    }

    #[test]
    fn signing_arbitrary_headers_never_panics(
        client in value(), id in value(), digest in "[ -~]{0,120}", user in value()
    ) {
        let f = fixture();
        let mut req = request_head(TransactionId::new());
        for (name, v) in [("ndxp-client", &client), ("ndxp-id", &id), ("ndxp-user-id", &user)] {
            if let Ok(v) = HeaderValue::from_bytes(v) {
                req.headers.insert(name, v);
            }
        }
        let _ = profile::sign_request(&mut req, &digest, &f.signer, now());
        let mut ok = request_head(TransactionId::new());
        profile::sign_request(&mut ok, &content_digest(REQUEST_BODY), &f.signer, now()).unwrap();
        let mut resp = http::Response::new(()).into_parts().0;
        let _ = profile::sign_response(&mut resp, &req, &digest, &f.signer, now());
    }

    #[test]
    fn a_changed_covered_value_is_always_refused(i in 0..2usize, v in "[ -~]{1,60}") {
        let f = fixture();
        let field = ["ndxp-client", "content-digest"][i];
        let mut req = f.signed.clone();
        prop_assume!(req.headers[field].as_bytes() != v.trim().as_bytes());
        req.headers.insert(field, HeaderValue::from_str(&v).unwrap());
        prop_assert!(profile::verify_request(&req, &f.policy, now()).is_err());
    }
}
