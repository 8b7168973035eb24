//! Property tests: arbitrary bytes and mutations of valid DER given to the
//! time-stamp query parser, the authority and the verifiers never panic and
//! always yield a rejection response or a typed error.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns build fixtures

mod ocsp_tsa_support;

use std::sync::OnceLock;

use ndxp_sign::tsa::{
    response_status, verify_response, verify_token_for_data, ImprintAlgorithm, PkiStatus,
    TimestampAuthority, TimestampQuery, TimestampRequest, TsaTrust,
};
use ocsp_tsa_support::{issue, mutated, root, Identity, Kind};
use proptest::prelude::*;

struct Fixture {
    ca: Identity,
    authority: TimestampAuthority,
    request: TimestampRequest,
    response: Vec<u8>,
    token: Vec<u8>,
}

const DATA: &[u8] = b"proptest data";

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let ca = root("Proptest Root");
        let tsa = issue("Proptest TSA", Kind::Tsa, 9, Some(&ca), -1, 365);
        let authority = TimestampAuthority::new(&tsa.cert, &tsa.key).unwrap();
        let request = TimestampRequest::for_data(ImprintAlgorithm::Sha256, DATA).unwrap();
        let response = authority.respond(request.der()).der;
        let token = verify_response(&response, &request, &TsaTrust::new(vec![ca.cert.clone()]))
            .unwrap()
            .der;
        Fixture {
            ca,
            authority,
            request,
            response,
            token,
        }
    })
}

fn check_query(input: &[u8]) {
    let f = fixture();
    let parsed = TimestampQuery::from_der(input);
    let reply = f.authority.respond(input);
    let st = response_status(&reply.der).expect("authority output must be a TimeStampResp");
    assert_eq!(st.status, reply.status);
    match reply.status {
        PkiStatus::Granted => {
            assert!(reply.error.is_none());
            // Whatever the authority grants, our own parser accepts.
            assert!(parsed.is_ok(), "granted but parser said {parsed:?}");
        }
        PkiStatus::Rejection => {
            assert!(reply.error.is_some());
            assert!(!st.failure.is_empty(), "a rejection names its failure");
        }
        other => panic!("unexpected status {other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn authority_never_panics_on_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..512)) {
        check_query(&input);
    }

    #[test]
    fn authority_never_panics_on_mutated_queries(input in mutated(fixture().request.der())) {
        check_query(&input);
    }

    #[test]
    fn verifiers_reject_arbitrary_bytes(input in prop::collection::vec(any::<u8>(), 0..512)) {
        let f = fixture();
        let trust = TsaTrust::new(vec![f.ca.cert.clone()]);
        prop_assert!(verify_response(&input, &f.request, &trust).is_err());
        prop_assert!(verify_token_for_data(&input, DATA, &trust).is_err());
        let _ = response_status(&input);
    }

    #[test]
    fn verifiers_never_panic_on_mutated_responses(input in mutated(&fixture().response)) {
        let f = fixture();
        let trust = TsaTrust::new(vec![f.ca.cert.clone()]);
        if let Ok(t) = verify_response(&input, &f.request, &trust) {
            prop_assert_eq!(t.imprint, ImprintAlgorithm::Sha256.hash(DATA).unwrap());
        }
    }

    #[test]
    fn verifiers_never_panic_on_mutated_tokens(input in mutated(&fixture().token)) {
        let f = fixture();
        let trust = TsaTrust::new(vec![f.ca.cert.clone()]);
        if let Ok(t) = verify_token_for_data(&input, DATA, &trust) {
            prop_assert_eq!(t.imprint, ImprintAlgorithm::Sha256.hash(DATA).unwrap());
        }
    }
}
