//! Property tests: arbitrary bytes and mutations of valid DER given to the
//! OCSP responder, the GET-form decoder and the response verifier never
//! panic and always yield a well-formed answer or a typed error.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns build fixtures

mod ocsp_tsa_support;

use std::sync::OnceLock;

use chrono::Utc;
use ndxp_sign::ocsp::{decode_get_request, OcspClientRequest, OcspResponder, ResponseStatus};
use ndxp_sign::revocation::CertStatus;
use ocsp_tsa_support::{issue, mutated, root, Identity, Kind};
use openssl::ocsp::{OcspResponse, OcspResponseStatus};
use proptest::prelude::*;

struct Fixture {
    ca: Identity,
    ee: Identity,
    responder: OcspResponder,
    request: Vec<u8>,
    response: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = root("Proptest Root");
        let ee = issue("ee", Kind::EndEntity, 7, Some(&ca), -1, 365);
        let responder = OcspResponder::new(&ca.cert, &ca.cert, &ca.key).unwrap();
        let req = OcspClientRequest::new(&ee.cert, &ca.cert).unwrap();
        let request = req.der().to_vec();
        let response = responder
            .respond(&request, &|_| CertStatus::Good, Utc::now())
            .der;
        Fixture {
            ca,
            ee,
            responder,
            request,
            response,
        }
    })
}

fn check_reply(input: &[u8]) {
    let f = fixture();
    let reply = f
        .responder
        .respond(input, &|_| CertStatus::Good, Utc::now());
    let parsed = OcspResponse::from_der(&reply.der).expect("responder output must be DER");
    match reply.status {
        ResponseStatus::Successful => {
            assert!(reply.error.is_none());
            assert_eq!(parsed.status(), OcspResponseStatus::SUCCESSFUL);
            assert!(parsed.basic().is_ok());
        }
        ResponseStatus::MalformedRequest => {
            assert!(reply.error.is_some());
            assert_eq!(parsed.status(), OcspResponseStatus::MALFORMED_REQUEST);
        }
        other => panic!("unexpected status {other} for input {input:02x?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn responder_never_panics_on_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..512)) {
        check_reply(&input);
    }

    #[test]
    fn responder_never_panics_on_mutated_requests(input in mutated(&fixture().request)) {
        check_reply(&input);
    }

    #[test]
    fn get_decoder_never_panics(s in ".{0,300}") {
        let _ = decode_get_request(&s);
    }

    #[test]
    fn client_rejects_or_accepts_mutated_responses_without_panicking(
        input in mutated(&fixture().response)
    ) {
        let f = fixture();
        let req = OcspClientRequest::with_options(
            &f.ee.cert, &f.ca.cert, openssl::hash::MessageDigest::sha1(), false,
        ).unwrap();
        if let Ok(check) = req.verify_response(&input, std::slice::from_ref(&f.ca.cert), Utc::now()) {
            // Only a change that leaves the signed content intact can pass.
            prop_assert_eq!(check.status, CertStatus::Good);
        }
    }

    #[test]
    fn client_rejects_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..512)) {
        let f = fixture();
        let req = OcspClientRequest::new(&f.ee.cert, &f.ca.cert).unwrap();
        prop_assert!(req.verify_response(&input, std::slice::from_ref(&f.ca.cert), Utc::now()).is_err());
    }
}

/// A case proptest found: the CertID's hash AlgorithmIdentifier carries an
/// empty constructed element (`20 00`) where NULL parameters belong.
#[test]
fn odd_algorithm_parameters_are_malformed_not_internal() {
    let f = fixture();
    let mut input = f.request.clone();
    let null = [0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00];
    let at = input
        .windows(null.len())
        .position(|w| w == null)
        .expect("the SHA-1 CertID");
    input[at + 5] = 0x20;
    check_reply(&input);
}
