//! OCSP responder and client working together, and their refusals.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns build fixtures

mod ocsp_tsa_support;

use base64::Engine as _;
use chrono::{Duration, TimeZone, Utc};
use ndxp_sign::ocsp::{
    decode_get_request, OcspClientRequest, OcspError, OcspResponder, ResponseStatus,
};
use ndxp_sign::revocation::{CertStatus, RevocationReason};
use ocsp_tsa_support::{issue, issue_from_yesterday, root, Identity, Kind};
use openssl::bn::BigNumRef;
use openssl::hash::MessageDigest;
use openssl::ocsp::{OcspResponse, OcspResponseStatus};

struct Pki {
    ca: Identity,
    good: Identity,
    revoked: Identity,
    unknown: Identity,
}

fn pki() -> Pki {
    let ca = root("NDXP Test Root");
    let good = issue("good.example", Kind::EndEntity, 100, Some(&ca), -1, 365);
    let revoked = issue("revoked.example", Kind::EndEntity, 101, Some(&ca), -1, 365);
    let unknown = issue("unknown.example", Kind::EndEntity, 102, Some(&ca), -1, 365);
    Pki {
        ca,
        good,
        revoked,
        unknown,
    }
}

fn revoked_at() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap()
}

fn lookup(serial: &BigNumRef) -> CertStatus {
    match serial.to_dec_str().unwrap().to_string().as_str() {
        "100" => CertStatus::Good,
        "101" => CertStatus::Revoked {
            at: revoked_at(),
            reason: RevocationReason::KeyCompromise,
        },
        _ => CertStatus::Unknown,
    }
}

fn responder(p: &Pki) -> OcspResponder {
    OcspResponder::new(&p.ca.cert, &p.ca.cert, &p.ca.key).unwrap()
}

#[test]
fn good_revoked_unknown_round_trip() {
    let p = pki();
    let r = responder(&p);
    let now = Utc::now();
    for (id, expected) in [
        (&p.good, CertStatus::Good),
        (
            &p.revoked,
            CertStatus::Revoked {
                at: revoked_at(),
                reason: RevocationReason::KeyCompromise,
            },
        ),
        (&p.unknown, CertStatus::Unknown),
    ] {
        let req = OcspClientRequest::new(&id.cert, &p.ca.cert).unwrap();
        let reply = r.respond(req.der(), &lookup, now);
        assert_eq!(
            reply.status,
            ResponseStatus::Successful,
            "{:?}",
            reply.error
        );
        assert!(reply.error.is_none());
        let check = req
            .verify_response(&reply.der, std::slice::from_ref(&p.ca.cert), now)
            .unwrap();
        assert_eq!(check.status, expected);
        assert_eq!(check.this_update.timestamp(), now.timestamp());
        assert_eq!(
            check.next_update.unwrap().timestamp(),
            (now + Duration::hours(1)).timestamp()
        );
        assert!((check.produced_at - now).num_seconds().abs() < 60);
    }
}

#[test]
fn sha256_cert_ids_and_no_nonce_are_answered() {
    let p = pki();
    let req = OcspClientRequest::with_options(
        &p.revoked.cert,
        &p.ca.cert,
        MessageDigest::sha256(),
        false,
    )
    .unwrap();
    assert!(req.nonce().is_none());
    let now = Utc::now();
    let reply = responder(&p).respond(req.der(), &lookup, now);
    let check = req
        .verify_response(&reply.der, std::slice::from_ref(&p.ca.cert), now)
        .unwrap();
    assert!(matches!(
        check.status,
        CertStatus::Revoked {
            reason: RevocationReason::KeyCompromise,
            ..
        }
    ));
}

#[test]
fn unspecified_reason_round_trips() {
    let p = pki();
    let req = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    let now = Utc::now();
    let at = Utc.with_ymd_and_hms(2024, 1, 2, 3, 4, 5).unwrap();
    let reply = responder(&p).respond(
        req.der(),
        &|_| CertStatus::Revoked {
            at,
            reason: RevocationReason::Unspecified,
        },
        now,
    );
    let check = req
        .verify_response(&reply.der, std::slice::from_ref(&p.ca.cert), now)
        .unwrap();
    assert_eq!(
        check.status,
        CertStatus::Revoked {
            at,
            reason: RevocationReason::Unspecified
        }
    );
}

#[test]
fn certificate_of_another_issuer_is_unknown_even_if_serial_is_good() {
    let p = pki();
    let other_ca = root("Other Root");
    // Same serial (100) as the good certificate, but another issuer.
    let foreign = issue_from_yesterday("foreign.example", Kind::EndEntity, 100, &other_ca, 365);
    let req = OcspClientRequest::new(&foreign.cert, &other_ca.cert).unwrap();
    let reply = responder(&p).respond(req.der(), &|_| CertStatus::Good, Utc::now());
    assert_eq!(reply.status, ResponseStatus::Successful);
    // The response is signed by our CA, not by other_ca, so the client of
    // other_ca rejects it; check the content with openssl's parser directly.
    let resp = OcspResponse::from_der(&reply.der).unwrap();
    let basic = resp.basic().unwrap();
    let id =
        openssl::ocsp::OcspCertId::from_cert(MessageDigest::sha1(), &foreign.cert, &other_ca.cert)
            .unwrap();
    let st = basic.find_status(&id).unwrap();
    assert_eq!(st.status, openssl::ocsp::OcspCertStatus::UNKNOWN);
    let err = req
        .verify_response(
            &reply.der,
            &[other_ca.cert.clone(), p.ca.cert.clone()],
            Utc::now(),
        )
        .unwrap_err();
    assert!(matches!(err, OcspError::BadSignature(_)), "{err}");
}

#[test]
fn nonce_is_echoed_and_a_different_nonce_is_rejected() {
    let p = pki();
    let r = responder(&p);
    let now = Utc::now();
    let req1 = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    let req2 = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    assert_eq!(req1.nonce().unwrap().len(), 32);
    assert_ne!(req1.nonce(), req2.nonce());
    let reply1 = r.respond(req1.der(), &lookup, now);
    // The nonce bytes appear in the response.
    let nonce = req1.nonce().unwrap();
    assert!(reply1.der.windows(nonce.len()).any(|w| w == nonce));
    req1.verify_response(&reply1.der, std::slice::from_ref(&p.ca.cert), now)
        .unwrap();
    // A response to another request (replayed) is refused.
    let err = req2
        .verify_response(&reply1.der, std::slice::from_ref(&p.ca.cert), now)
        .unwrap_err();
    assert!(matches!(err, OcspError::NonceMismatch), "{err}");
    // A response without nonce is refused when we sent one.
    let no_nonce =
        OcspClientRequest::with_options(&p.good.cert, &p.ca.cert, MessageDigest::sha1(), false)
            .unwrap();
    let reply = r.respond(no_nonce.der(), &lookup, now);
    let err = req1
        .verify_response(&reply.der, std::slice::from_ref(&p.ca.cert), now)
        .unwrap_err();
    assert!(matches!(err, OcspError::NonceMissing), "{err}");
}

#[test]
fn response_signed_by_a_wrong_key_is_rejected() {
    let p = pki();
    // An attacker's self-made "CA" with the same name as ours.
    let impostor = root("NDXP Test Root");
    let r = OcspResponder::new(&p.ca.cert, &impostor.cert, &impostor.key);
    assert!(matches!(r, Err(OcspError::SignerNotAuthorized)));
    // The same certificate with a key that is not its own.
    assert!(matches!(
        OcspResponder::new(&p.ca.cert, &p.ca.cert, &impostor.key),
        Err(OcspError::SignerKeyMismatch)
    ));
    // A responder for the impostor answering about our certificate.
    let bad = OcspResponder::new(&impostor.cert, &impostor.cert, &impostor.key).unwrap();
    let req = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    let reply = bad.respond(req.der(), &|_| CertStatus::Good, Utc::now());
    let err = req
        .verify_response(&reply.der, std::slice::from_ref(&p.ca.cert), Utc::now())
        .unwrap_err();
    assert!(matches!(err, OcspError::BadSignature(_)), "{err}");
    // Even when the impostor is (wrongly) among the anchors, it did not issue
    // the certificate, so it may not answer for it.
    let err = req
        .verify_response(
            &reply.der,
            &[p.ca.cert.clone(), impostor.cert.clone()],
            Utc::now(),
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            OcspError::BadSignature(_) | OcspError::NoStatusForCertificate
        ),
        "{err}"
    );
}

#[test]
fn tampered_response_is_rejected() {
    let p = pki();
    let req = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    let now = Utc::now();
    let reply = responder(&p).respond(req.der(), &lookup, now);
    let original = req
        .verify_response(&reply.der, std::slice::from_ref(&p.ca.cert), now)
        .unwrap();
    let mut rejected = 0;
    for i in 0..reply.der.len() {
        for bit in [0x01u8, 0x80] {
            let mut der = reply.der.clone();
            der[i] ^= bit;
            match req.verify_response(&der, std::slice::from_ref(&p.ca.cert), now) {
                Err(_) => rejected += 1,
                // A change may only be tolerated where it does not change
                // the answer (e.g. inside the embedded copy of the signer
                // certificate, which the client also has).
                Ok(check) => assert_eq!(check, original, "byte {i} bit {bit:#x}"),
            }
        }
    }
    assert!(rejected > reply.der.len(), "{rejected}");
}

#[test]
fn delegated_responder_is_accepted_only_with_ocsp_signing_eku() {
    let p = pki();
    let delegate = issue_from_yesterday("ocsp.example", Kind::OcspResponder, 200, &p.ca, 30);
    let r = OcspResponder::new(&p.ca.cert, &delegate.cert, &delegate.key).unwrap();
    let req = OcspClientRequest::new(&p.revoked.cert, &p.ca.cert).unwrap();
    let now = Utc::now();
    let reply = r.respond(req.der(), &lookup, now);
    let check = req
        .verify_response(&reply.der, std::slice::from_ref(&p.ca.cert), now)
        .unwrap();
    assert!(matches!(check.status, CertStatus::Revoked { .. }));

    // An end-entity certificate of the same CA without the EKU may not sign.
    assert!(matches!(
        OcspResponder::new(&p.ca.cert, &p.good.cert, &p.good.key),
        Err(OcspError::SignerNotAuthorized)
    ));
}

#[test]
fn stale_and_future_responses_are_rejected() {
    let p = pki();
    let r = responder(&p).with_validity(Duration::minutes(10));
    let req = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    let now = Utc::now();
    let reply = r.respond(req.der(), &lookup, now);
    let anchors = [p.ca.cert.clone()];
    // Within nextUpdate plus skew: fine.
    req.verify_response(&reply.der, &anchors, now + Duration::minutes(14))
        .unwrap();
    let err = req
        .verify_response(&reply.der, &anchors, now + Duration::minutes(16))
        .unwrap_err();
    assert!(matches!(err, OcspError::Expired { .. }), "{err}");
    let err = req
        .verify_response(&reply.der, &anchors, now - Duration::minutes(6))
        .unwrap_err();
    assert!(matches!(err, OcspError::NotYetValid { .. }), "{err}");
}

#[test]
fn signer_chain_is_checked_at_the_given_time() {
    let p = pki();
    let short = issue_from_yesterday("short.example", Kind::OcspResponder, 201, &p.ca, 2);
    let r = OcspResponder::new(&p.ca.cert, &short.cert, &short.key)
        .unwrap()
        .with_validity(Duration::days(30));
    let req = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    let now = Utc::now();
    let reply = r.respond(req.der(), &lookup, now);
    req.verify_response(&reply.der, std::slice::from_ref(&p.ca.cert), now)
        .unwrap();
    // Five days later the delegated responder certificate has expired.
    let err = req
        .verify_response(
            &reply.der,
            std::slice::from_ref(&p.ca.cert),
            now + Duration::days(5),
        )
        .unwrap_err();
    assert!(matches!(err, OcspError::BadSignature(_)), "{err}");
}

#[test]
fn garbage_request_gets_malformed_request_response() {
    let p = pki();
    let r = responder(&p);
    for input in [
        &b""[..],
        &b"hello"[..],
        &[0x30, 0x00][..],
        &[0x30, 0x80, 0x00, 0x00][..],
    ] {
        let reply = r.respond(input, &lookup, Utc::now());
        assert_eq!(reply.status, ResponseStatus::MalformedRequest);
        assert!(reply.error.is_some());
        let parsed = OcspResponse::from_der(&reply.der).unwrap();
        assert_eq!(parsed.status(), OcspResponseStatus::MALFORMED_REQUEST);
    }
    // A valid request followed by trailing bytes is malformed too.
    let req = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    let mut der = req.der().to_vec();
    der.push(0);
    let reply = r.respond(&der, &lookup, Utc::now());
    assert!(matches!(reply.error, Some(OcspError::MalformedRequest)));
    // And the client reports the status as an error.
    let err = req
        .verify_response(&reply.der, std::slice::from_ref(&p.ca.cert), Utc::now())
        .unwrap_err();
    assert!(matches!(
        err,
        OcspError::Unsuccessful(ResponseStatus::MalformedRequest)
    ));
    assert!(err.to_string().contains("malformedRequest"));
}

#[test]
fn get_form_is_decoded() {
    let p = pki();
    let req = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(req.der());
    let encoded = b64
        .replace('%', "%25")
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    assert_eq!(decode_get_request(&encoded).unwrap(), req.der());
    // Unencoded base64 (as some clients send it) decodes as well.
    assert_eq!(decode_get_request(&b64).unwrap(), req.der());
    // Lower-case escapes are accepted.
    assert_eq!(
        decode_get_request(&encoded.replace("%2F", "%2f")).unwrap(),
        req.der()
    );
    // The decoded request is answered.
    let der = decode_get_request(&encoded).unwrap();
    let reply = responder(&p).respond(&der, &lookup, Utc::now());
    assert_eq!(reply.status, ResponseStatus::Successful);
    assert!(matches!(
        decode_get_request("MEIw%"),
        Err(OcspError::BadPercentEncoding)
    ));
    assert!(matches!(
        decode_get_request("not base64!"),
        Err(OcspError::BadBase64(_))
    ));
}

#[test]
fn one_responder_serves_many_threads() {
    let p = pki();
    let r = std::sync::Arc::new(responder(&p));
    let good = p.good.cert.clone();
    let ca = p.ca.cert.clone();
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let (r, good, ca) = (r.clone(), good.clone(), ca.clone());
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let req = OcspClientRequest::new(&good, &ca).unwrap();
                    let now = Utc::now();
                    let reply = r.respond(req.der(), &lookup, now);
                    let check = req
                        .verify_response(&reply.der, std::slice::from_ref(&ca), now)
                        .unwrap();
                    assert_eq!(check.status, CertStatus::Good);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn only_single_nonceless_requests_about_our_issuer_have_a_cache_key() {
    let p = pki();
    let r = responder(&p);
    let sha1 = |cert| {
        OcspClientRequest::with_options(cert, &p.ca.cert, MessageDigest::sha1(), false).unwrap()
    };
    let good = r.cache_key(sha1(&p.good.cert).der()).unwrap();
    assert_eq!(
        good.serial_bn().unwrap().to_dec_str().unwrap().to_string(),
        "100"
    );
    let revoked = r.cache_key(sha1(&p.revoked.cert).der()).unwrap();
    assert_ne!(good, revoked);
    // The CertID's hash algorithm is part of the key.
    let sha256 =
        OcspClientRequest::with_options(&p.good.cert, &p.ca.cert, MessageDigest::sha256(), false)
            .unwrap();
    assert_ne!(r.cache_key(sha256.der()).unwrap(), good);
    // A nonce must be echoed: no cache key.
    let with_nonce = OcspClientRequest::new(&p.good.cert, &p.ca.cert).unwrap();
    assert!(r.cache_key(with_nonce.der()).is_none());
    // Another issuer's certificate, garbage, several CertIDs: none.
    let other_ca = root("Other Root");
    let foreign = issue("x.example", Kind::EndEntity, 100, Some(&other_ca), -1, 365);
    let foreign_req = OcspClientRequest::with_options(
        &foreign.cert,
        &other_ca.cert,
        MessageDigest::sha1(),
        false,
    )
    .unwrap();
    assert!(r.cache_key(foreign_req.der()).is_none());
    assert!(r.cache_key(b"\x30\x03\x02\x01\x00").is_none());
    let mut two = openssl::ocsp::OcspRequest::new().unwrap();
    for cert in [&p.good.cert, &p.revoked.cert] {
        two.add_id(
            openssl::ocsp::OcspCertId::from_cert(MessageDigest::sha1(), cert, &p.ca.cert).unwrap(),
        )
        .unwrap();
    }
    assert!(r.cache_key(&two.to_der().unwrap()).is_none());
}

#[test]
fn answers_produced_ahead_of_time_verify_for_a_nonceless_request() {
    let p = pki();
    let r = responder(&p).with_validity(Duration::minutes(10));
    assert_eq!(r.validity(), Duration::minutes(10));
    let now = Utc::now();
    let revoked = CertStatus::Revoked {
        at: revoked_at(),
        reason: RevocationReason::KeyCompromise,
    };
    for (cert, status) in [(&p.good.cert, CertStatus::Good), (&p.revoked.cert, revoked)] {
        let (key, der) = r.produce(cert, &status, now).unwrap();
        let req = OcspClientRequest::with_options(cert, &p.ca.cert, MessageDigest::sha1(), false)
            .unwrap();
        assert_eq!(r.cache_key(req.der()), Some(key));
        let check = req
            .verify_response(&der, std::slice::from_ref(&p.ca.cert), now)
            .unwrap();
        assert_eq!(check.status, status);
        assert_eq!(
            check.next_update,
            Some(check.this_update + Duration::minutes(10))
        );
        // Still acceptable later, within its validity; not after it.
        assert!(req
            .verify_response(
                &der,
                std::slice::from_ref(&p.ca.cert),
                now + Duration::minutes(9)
            )
            .is_ok());
        assert!(req
            .verify_response(
                &der,
                std::slice::from_ref(&p.ca.cert),
                now + Duration::minutes(20)
            )
            .is_err());
    }
    // The status the lookup gave is reported with a live answer.
    let req = OcspClientRequest::new(&p.revoked.cert, &p.ca.cert).unwrap();
    let (reply, status) = r.respond_with_status(req.der(), &lookup, now);
    assert!(reply.error.is_none());
    assert!(matches!(status, Some(CertStatus::Revoked { .. })));
    let (_, status) = r.respond_with_status(b"junk", &lookup, now);
    assert_eq!(status, None);
}
