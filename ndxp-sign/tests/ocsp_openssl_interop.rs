//! Interoperability of the OCSP responder and client with the stock
//! `openssl ocsp` command line. These tests fail (they do not skip) when
//! `openssl` is not installed.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns build fixtures

mod ocsp_tsa_support;

use chrono::{TimeZone, Utc};
use ndxp_sign::ocsp::{OcspClientRequest, OcspResponder, ResponseStatus};
use ndxp_sign::revocation::{CertStatus, RevocationReason};
use ocsp_tsa_support::{issue, openssl, root, text, write_key, write_pem, Kind};

fn lookup(serial: &openssl::bn::BigNumRef) -> CertStatus {
    match serial.to_dec_str().unwrap().to_string().as_str() {
        "500" => CertStatus::Good,
        "501" => CertStatus::Revoked {
            at: Utc.with_ymd_and_hms(2025, 6, 1, 8, 30, 0).unwrap(),
            reason: RevocationReason::KeyCompromise,
        },
        _ => CertStatus::Unknown,
    }
}

#[test]
fn openssl_request_answered_by_our_responder_is_verified_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = root("NDXP OCSP Interop Root");
    let good = issue("good", Kind::EndEntity, 500, Some(&ca), -1, 365);
    let revoked = issue("revoked", Kind::EndEntity, 501, Some(&ca), -1, 365);
    let stranger = issue("stranger", Kind::EndEntity, 502, Some(&ca), -1, 365);
    write_pem(&dir.join("ca.pem"), &ca.cert);
    write_pem(&dir.join("good.pem"), &good.cert);
    write_pem(&dir.join("revoked.pem"), &revoked.cert);
    write_pem(&dir.join("stranger.pem"), &stranger.cert);
    let responder = OcspResponder::new(&ca.cert, &ca.cert, &ca.key).unwrap();

    for (name, expected) in [
        ("good", "good.pem: good"),
        ("revoked", "revoked.pem: revoked"),
        ("stranger", "stranger.pem: unknown"),
    ] {
        let req = format!("{name}.req");
        let resp = format!("{name}.resp");
        let cert = format!("{name}.pem");
        let out = openssl(
            &["ocsp", "-issuer", "ca.pem", "-cert", &cert, "-reqout", &req],
            dir,
        );
        assert!(out.status.success(), "{}", text(&out));
        let reply = responder.respond(&std::fs::read(dir.join(&req)).unwrap(), &lookup, Utc::now());
        assert_eq!(
            reply.status,
            ResponseStatus::Successful,
            "{:?}",
            reply.error
        );
        std::fs::write(dir.join(&resp), &reply.der).unwrap();
        // Status as openssl reads it (-no_nonce: this invocation builds a
        // fresh request of its own, whose nonce cannot match).
        let out = openssl(
            &[
                "ocsp",
                "-respin",
                &resp,
                "-issuer",
                "ca.pem",
                "-CAfile",
                "ca.pem",
                "-cert",
                &cert,
                "-no_nonce",
            ],
            dir,
        );
        let all = text(&out);
        assert!(out.status.success(), "{all}");
        assert!(all.contains("Response verify OK"), "{all}");
        assert!(all.contains(expected), "{all}");
        assert!(!all.contains("WARNING"), "{all}");
        if name == "revoked" {
            assert!(all.contains("Reason: keyCompromise"), "{all}");
            assert!(
                all.contains("Revocation Time: Jun  1 08:30:00 2025 GMT"),
                "{all}"
            );
        }
        // With the original request, openssl checks that the nonce was echoed.
        let out = openssl(
            &[
                "ocsp", "-reqin", &req, "-respin", &resp, "-CAfile", "ca.pem",
            ],
            dir,
        );
        let all = text(&out);
        assert!(out.status.success(), "{all}");
        assert!(all.contains("Response verify OK"), "{all}");
        assert!(!all.contains("Nonce Verify error"), "{all}");
        assert!(!all.contains("WARNING"), "{all}");
    }

    // A response to another request (other nonce) is refused by openssl.
    let out = openssl(
        &[
            "ocsp",
            "-reqin",
            "good.req",
            "-respin",
            "revoked.resp",
            "-CAfile",
            "ca.pem",
        ],
        dir,
    );
    let all = text(&out);
    assert!(all.contains("Nonce Verify error"), "{all}");
    assert!(!out.status.success(), "{all}");

    // The GET form of an openssl request (base64, URL-encoded) decodes to the same DER.
    let der = std::fs::read(dir.join("good.req")).unwrap();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(&der);
    let url = b64
        .replace('+', "%2B")
        .replace('/', "%2F")
        .replace('=', "%3D");
    assert_eq!(ndxp_sign::ocsp::decode_get_request(&url).unwrap(), der);
}

#[test]
fn our_request_answered_by_openssl_responder_is_verified_by_our_client() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = root("NDXP OCSP Interop Root");
    let good = issue("good", Kind::EndEntity, 0x500, Some(&ca), -1, 365);
    let revoked = issue("revoked", Kind::EndEntity, 0x501, Some(&ca), -1, 365);
    write_pem(&dir.join("ca.pem"), &ca.cert);
    write_key(&dir.join("ca.key"), &ca.key);
    // openssl's CA database: V(alid) and R(evoked) entries, hex serials.
    let index = "V\t351231235959Z\t\t0500\tunknown\t/CN=good\n\
                 R\t351231235959Z\t250601083000Z,keyCompromise\t0501\tunknown\t/CN=revoked\n";
    std::fs::write(dir.join("index.txt"), index).unwrap();

    let trust = [ca.cert.clone()];
    for (id, expected) in [
        (&good, CertStatus::Good),
        (
            &revoked,
            CertStatus::Revoked {
                at: Utc.with_ymd_and_hms(2025, 6, 1, 8, 30, 0).unwrap(),
                reason: RevocationReason::KeyCompromise,
            },
        ),
    ] {
        let req = OcspClientRequest::new(&id.cert, &ca.cert).unwrap();
        std::fs::write(dir.join("q.der"), req.der()).unwrap();
        let out = openssl(
            &[
                "ocsp",
                "-index",
                "index.txt",
                "-rsigner",
                "ca.pem",
                "-rkey",
                "ca.key",
                "-CA",
                "ca.pem",
                "-reqin",
                "q.der",
                "-respout",
                "r.der",
                "-ndays",
                "1",
            ],
            dir,
        );
        assert!(out.status.success(), "{}", text(&out));
        let resp = std::fs::read(dir.join("r.der")).unwrap();
        let check = req.verify_response(&resp, &trust, Utc::now()).unwrap();
        assert_eq!(check.status, expected);
        assert!(check.next_update.is_some());
    }
}
