//! RFC 3161 authority and client working together, and their refusals.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns build fixtures

mod ocsp_tsa_support;

use std::collections::HashSet;

use chrono::Utc;
use ndxp_sign::tsa::{
    response_status, verify_response, verify_token, verify_token_for_data, ImprintAlgorithm,
    PkiFailureInfo, PkiStatus, TimestampAuthority, TimestampQuery, TimestampRequest, TsaError,
    TsaTrust, DEFAULT_POLICY_OID,
};
use ocsp_tsa_support::{issue, issue_from_yesterday, root, Identity, Kind};

struct Pki {
    ca: Identity,
    tsa: Identity,
}

fn pki() -> Pki {
    let ca = root("NDXP Test Root");
    let tsa = issue("NDXP Test TSA", Kind::Tsa, 300, Some(&ca), -1, 365);
    Pki { ca, tsa }
}

fn authority(p: &Pki) -> TimestampAuthority {
    TimestampAuthority::new(&p.tsa.cert, &p.tsa.key).unwrap()
}

fn trust(p: &Pki) -> TsaTrust {
    TsaTrust::new(vec![p.ca.cert.clone()])
}

#[test]
fn granted_token_round_trip_for_each_algorithm() {
    let p = pki();
    let tsa = authority(&p);
    for alg in ImprintAlgorithm::ALL {
        let data = b"chain head 42";
        let req = TimestampRequest::for_data(alg, data).unwrap();
        let before = Utc::now();
        let reply = tsa.respond(req.der());
        assert_eq!(reply.status, PkiStatus::Granted, "{:?}", reply.error);
        let token = verify_response(&reply.der, &req, &trust(&p)).unwrap();
        assert_eq!(token.algorithm, alg);
        assert_eq!(token.imprint, alg.hash(data).unwrap());
        assert_eq!(token.policy, DEFAULT_POLICY_OID);
        assert_eq!(token.nonce.as_deref(), req.nonce());
        assert!((token.gen_time - before).num_seconds().abs() <= 2);
        assert_eq!(
            token.tsa_cert.to_der().unwrap(),
            p.tsa.cert.to_der().unwrap()
        );
        // The stored token verifies later for the same data, and not for other data.
        let again = verify_token_for_data(&token.der, data, &trust(&p)).unwrap();
        assert_eq!(again.serial, token.serial);
        verify_token(&token.der, alg, &alg.hash(data).unwrap(), &trust(&p)).unwrap();
        let err = verify_token_for_data(&token.der, b"chain head 43", &trust(&p)).unwrap_err();
        assert!(matches!(err, TsaError::ImprintMismatch), "{err}");
    }
}

#[test]
fn serials_are_unique_and_large() {
    let p = pki();
    let tsa = authority(&p);
    let mut seen = HashSet::new();
    for i in 0..50u32 {
        let req = TimestampRequest::for_data(ImprintAlgorithm::Sha256, &i.to_be_bytes()).unwrap();
        let token = verify_response(&tsa.respond(req.der()).der, &req, &trust(&p)).unwrap();
        assert!(token.serial.num_bits() >= 64, "{}", token.serial);
        assert!(seen.insert(token.serial.to_vec()));
    }
}

#[test]
fn cert_req_controls_whether_the_tsa_certificate_is_included() {
    let p = pki();
    let tsa = authority(&p);
    let imprint = ImprintAlgorithm::Sha256.hash(b"x").unwrap();
    let with = TimestampRequest::new(ImprintAlgorithm::Sha256, &imprint, true, true).unwrap();
    let without = TimestampRequest::new(ImprintAlgorithm::Sha256, &imprint, true, false).unwrap();
    let tsa_der = p.tsa.cert.to_der().unwrap();
    let r_with = tsa.respond(with.der());
    let r_without = tsa.respond(without.der());
    assert!(r_with.der.windows(tsa_der.len()).any(|w| w == tsa_der));
    assert!(!r_without.der.windows(tsa_der.len()).any(|w| w == tsa_der));
    // Without the certificate in the token, the client needs it from elsewhere.
    let err = verify_response(&r_without.der, &without, &trust(&p)).unwrap_err();
    assert!(
        matches!(err, TsaError::BadSignature(_) | TsaError::SignerNotFound),
        "{err}"
    );
    let t = trust(&p).with_untrusted(vec![p.tsa.cert.clone()]);
    verify_response(&r_without.der, &without, &t).unwrap();
}

#[test]
fn nonce_and_imprint_of_another_request_are_rejected() {
    let p = pki();
    let tsa = authority(&p);
    let req1 = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"a").unwrap();
    let req2 = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"a").unwrap();
    let req3 = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"b").unwrap();
    let reply = tsa.respond(req1.der());
    let err = verify_response(&reply.der, &req2, &trust(&p)).unwrap_err();
    assert!(matches!(err, TsaError::NonceMismatch), "{err}");
    let err = verify_response(&reply.der, &req3, &trust(&p)).unwrap_err();
    assert!(matches!(err, TsaError::ImprintMismatch), "{err}");
    // A response without nonce to a request with one.
    let imprint = ImprintAlgorithm::Sha256.hash(b"a").unwrap();
    let no_nonce = TimestampRequest::new(ImprintAlgorithm::Sha256, &imprint, false, true).unwrap();
    let reply = tsa.respond(no_nonce.der());
    let err = verify_response(&reply.der, &req1, &trust(&p)).unwrap_err();
    assert!(matches!(err, TsaError::NonceMissing), "{err}");
    // But it is fine for the request without nonce.
    verify_response(&reply.der, &no_nonce, &trust(&p)).unwrap();
}

#[test]
fn policies_are_honoured() {
    let p = pki();
    let tsa = authority(&p)
        .with_policy("1.3.6.1.4.1.32473.3161.9")
        .unwrap()
        .with_accepted_policies(&["1.3.6.1.4.1.32473.3161.10"])
        .unwrap();
    assert_eq!(tsa.policy(), "1.3.6.1.4.1.32473.3161.9");
    let imprint = ImprintAlgorithm::Sha384.hash(b"p").unwrap();
    let req = TimestampRequest::with_policy(
        ImprintAlgorithm::Sha384,
        &imprint,
        "1.3.6.1.4.1.32473.3161.10",
        true,
        true,
    )
    .unwrap();
    let token = verify_response(&tsa.respond(req.der()).der, &req, &trust(&p)).unwrap();
    assert_eq!(token.policy, "1.3.6.1.4.1.32473.3161.10");
    // Unknown policy: rejection with unacceptedPolicy.
    let req =
        TimestampRequest::with_policy(ImprintAlgorithm::Sha384, &imprint, "1.2.3.4", true, true)
            .unwrap();
    let reply = tsa.respond(req.der());
    assert_eq!(reply.status, PkiStatus::Rejection);
    let st = response_status(&reply.der).unwrap();
    assert_eq!(st.failure, vec![PkiFailureInfo::UnacceptedPolicy]);
    let err = verify_response(&reply.der, &req, &trust(&p)).unwrap_err();
    assert!(
        matches!(err, TsaError::Rejected { status: PkiStatus::Rejection, ref failure, .. } if failure == &vec![PkiFailureInfo::UnacceptedPolicy]),
        "{err}"
    );
    // Without a policy the default is used.
    let req = TimestampRequest::new(ImprintAlgorithm::Sha384, &imprint, true, true).unwrap();
    let token = verify_response(&tsa.respond(req.der()).der, &req, &trust(&p)).unwrap();
    assert_eq!(token.policy, "1.3.6.1.4.1.32473.3161.9");
}

#[test]
fn bad_queries_get_the_right_failure_info() {
    let p = pki();
    let tsa = authority(&p).with_algorithms(&[ImprintAlgorithm::Sha256]);
    // Algorithm not accepted by this authority.
    let imprint = ImprintAlgorithm::Sha512.hash(b"z").unwrap();
    let req = TimestampRequest::new(ImprintAlgorithm::Sha512, &imprint, true, true).unwrap();
    let reply = tsa.respond(req.der());
    assert_eq!(reply.status, PkiStatus::Rejection);
    assert_eq!(
        response_status(&reply.der).unwrap().failure,
        vec![PkiFailureInfo::BadAlg]
    );
    assert!(matches!(reply.error, Some(TsaError::QueryRejected { .. })));
    // Not DER at all.
    for junk in [&b""[..], b"\x30\x03\x02\x01\x01", b"garbage"] {
        let reply = tsa.respond(junk);
        assert_eq!(reply.status, PkiStatus::Rejection);
        assert_eq!(
            response_status(&reply.der).unwrap().failure,
            vec![PkiFailureInfo::BadDataFormat]
        );
        assert!(matches!(reply.error, Some(TsaError::MalformedQuery)));
    }
    // Trailing bytes after a valid query.
    let good = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"q").unwrap();
    let mut der = good.der().to_vec();
    der.extend_from_slice(b"\0\0");
    assert_eq!(
        response_status(&tsa.respond(&der).der).unwrap().failure,
        vec![PkiFailureInfo::BadDataFormat]
    );
    // Too large.
    let reply = tsa.respond(&vec![0u8; 20_000]);
    assert_eq!(
        response_status(&reply.der).unwrap().failure,
        vec![PkiFailureInfo::BadRequest]
    );
    // Wrong version (patch INTEGER 1 → 2 right after the outer SEQUENCE header).
    let mut der = good.der().to_vec();
    let pos = der
        .windows(3)
        .position(|w| w == [0x02, 0x01, 0x01])
        .unwrap();
    der[pos + 2] = 2;
    assert!(matches!(
        TimestampQuery::from_der(&der),
        Err(TsaError::UnsupportedVersion(2))
    ));
    // libcrypto answers a wrong version with badRequest.
    assert_eq!(
        response_status(&tsa.respond(&der).der).unwrap().failure,
        vec![PkiFailureInfo::BadRequest]
    );
}

#[test]
fn imprint_length_is_checked() {
    let err = TimestampRequest::new(ImprintAlgorithm::Sha256, &[0u8; 20], true, true).unwrap_err();
    assert!(
        matches!(
            err,
            TsaError::ImprintLength {
                expected: 32,
                got: 20,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("SHA-256"));
}

#[test]
fn query_parser_reads_fields() {
    let imprint = ImprintAlgorithm::Sha512.hash(b"f").unwrap();
    let req =
        TimestampRequest::with_policy(ImprintAlgorithm::Sha512, &imprint, "1.2.3.4", true, false)
            .unwrap();
    let q = TimestampQuery::from_der(req.der()).unwrap();
    assert_eq!(q.algorithm, ImprintAlgorithm::Sha512);
    assert_eq!(q.imprint, imprint);
    assert_eq!(q.policy.as_deref(), Some("1.2.3.4"));
    assert_eq!(q.nonce.as_deref(), req.nonce());
    assert!(!q.cert_req);
    assert_eq!(q.extensions, 0);
    assert!(matches!(
        TimestampQuery::from_der(b"\x30\x00"),
        Err(TsaError::MalformedQuery)
    ));
}

#[test]
fn tsa_certificate_requirements() {
    let p = pki();
    let weak = issue_from_yesterday("weak TSA", Kind::TsaNonCriticalEku, 301, &p.ca, 365);
    assert!(matches!(
        TimestampAuthority::new(&weak.cert, &weak.key),
        Err(TsaError::NotATsaCertificate)
    ));
    let ee = issue("ee", Kind::EndEntity, 302, Some(&p.ca), -1, 365);
    assert!(matches!(
        TimestampAuthority::new(&ee.cert, &ee.key),
        Err(TsaError::NotATsaCertificate)
    ));
    assert!(matches!(
        TimestampAuthority::new(&p.tsa.cert, &ee.key),
        Err(TsaError::KeyMismatch)
    ));
    assert!(matches!(
        authority(&p).with_policy("not-an-oid"),
        Err(TsaError::BadPolicyOid(..))
    ));
}

#[test]
fn token_from_untrusted_tsa_or_tampered_is_rejected() {
    let p = pki();
    let other = root("Other Root");
    let tsa = authority(&p);
    let req = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"t").unwrap();
    let reply = tsa.respond(req.der());
    let token = verify_response(&reply.der, &req, &trust(&p)).unwrap();
    // Not trusted by another root.
    let err = verify_token_for_data(&token.der, b"t", &TsaTrust::new(vec![other.cert.clone()]))
        .unwrap_err();
    assert!(matches!(err, TsaError::BadSignature(_)), "{err}");
    let err =
        verify_response(&reply.der, &req, &TsaTrust::new(vec![other.cert.clone()])).unwrap_err();
    assert!(matches!(err, TsaError::BadSignature(_)), "{err}");
    // Any single changed byte is rejected or leaves the verified content unchanged.
    let mut rejected = 0;
    for i in 0..token.der.len() {
        let mut der = token.der.clone();
        der[i] ^= 0x01;
        match verify_token_for_data(&der, b"t", &trust(&p)) {
            Err(_) => rejected += 1,
            Ok(t) => {
                assert_eq!(t.gen_time, token.gen_time, "byte {i}");
                assert_eq!(t.serial, token.serial, "byte {i}");
                assert_eq!(t.imprint, token.imprint, "byte {i}");
            }
        }
    }
    assert!(
        rejected * 10 >= token.der.len() * 9,
        "{rejected}/{}",
        token.der.len()
    );
}

#[test]
fn archived_token_is_checked_at_its_gen_time() {
    // A TSA certificate that expires tomorrow: the token stays valid because
    // the chain is checked at genTime, not at the time of verification.
    let p = pki();
    let short = issue("short TSA", Kind::Tsa, 303, Some(&p.ca), -1, 1);
    let tsa = TimestampAuthority::new(&short.cert, &short.key).unwrap();
    let req = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"old").unwrap();
    let token = verify_response(&tsa.respond(req.der()).der, &req, &trust(&p)).unwrap();
    verify_token_for_data(&token.der, b"old", &trust(&p)).unwrap();
    // A TSA certificate that is not yet valid at genTime is refused.
    let future = issue("future TSA", Kind::Tsa, 304, Some(&p.ca), 2, 30);
    let tsa = TimestampAuthority::new(&future.cert, &future.key).unwrap();
    let req = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"new").unwrap();
    let err = verify_response(&tsa.respond(req.der()).der, &req, &trust(&p)).unwrap_err();
    assert!(matches!(err, TsaError::BadSignature(_)), "{err}");
}

#[test]
fn one_authority_serves_many_threads() {
    let p = pki();
    let tsa = std::sync::Arc::new(authority(&p));
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            let tsa = tsa.clone();
            std::thread::spawn(move || {
                (0..10u8)
                    .map(|i| {
                        let req =
                            TimestampRequest::for_data(ImprintAlgorithm::Sha256, &[t, i]).unwrap();
                        (req, tsa.respond(&[]).status, tsa.respond(&[t, i]).status)
                    })
                    .map(|(req, s1, s2)| {
                        assert_eq!(s1, PkiStatus::Rejection);
                        assert_eq!(s2, PkiStatus::Rejection);
                        (req.der().to_vec(), tsa.respond(req.der()).der, req)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut serials = HashSet::new();
    for h in handles {
        for (_, resp, req) in h.join().unwrap() {
            let token = verify_response(&resp, &req, &trust(&p)).unwrap();
            assert!(serials.insert(token.serial.to_vec()));
        }
    }
    assert_eq!(serials.len(), 40);
}
