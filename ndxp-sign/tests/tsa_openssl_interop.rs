//! Interoperability of the RFC 3161 authority and client with the stock
//! `openssl ts` command line. These tests fail (they do not skip) when
//! `openssl` is not installed.

#![allow(clippy::unwrap_used)] // helpers outside #[test] fns build fixtures

mod ocsp_tsa_support;

use std::path::Path;

use ndxp_sign::tsa::{
    verify_response, verify_token_for_data, ImprintAlgorithm, PkiStatus, TimestampAuthority,
    TimestampRequest, TsaError, TsaTrust, DEFAULT_POLICY_OID,
};
use ocsp_tsa_support::{issue, openssl, root, text, write_key, write_pem, Identity, Kind};

fn setup(dir: &Path) -> (Identity, Identity) {
    let ca = root("NDXP Interop Root");
    let tsa = issue("NDXP Interop TSA", Kind::Tsa, 400, Some(&ca), -1, 365);
    write_pem(&dir.join("ca.pem"), &ca.cert);
    write_pem(&dir.join("tsa.pem"), &tsa.cert);
    write_key(&dir.join("tsa.key"), &tsa.key);
    std::fs::write(dir.join("data.bin"), b"NDXP interop payload\n").unwrap();
    (ca, tsa)
}

#[test]
fn openssl_query_answered_by_our_tsa_passes_openssl_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_ca, tsa) = setup(dir);
    let out = openssl(
        &[
            "ts", "-query", "-data", "data.bin", "-sha256", "-cert", "-out", "q.tsq",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let query = std::fs::read(dir.join("q.tsq")).unwrap();
    let authority = TimestampAuthority::new(&tsa.cert, &tsa.key).unwrap();
    let reply = authority.respond(&query);
    assert_eq!(reply.status, PkiStatus::Granted, "{:?}", reply.error);
    std::fs::write(dir.join("r.tsr"), &reply.der).unwrap();

    let out = openssl(
        &[
            "ts",
            "-verify",
            "-in",
            "r.tsr",
            "-queryfile",
            "q.tsq",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "tsa.pem",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Verification: OK"),
        "{}",
        text(&out)
    );

    // Also against the data itself.
    let out = openssl(
        &[
            "ts",
            "-verify",
            "-in",
            "r.tsr",
            "-data",
            "data.bin",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "tsa.pem",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));

    // openssl reads the fields we put in: our policy and a nonce.
    let out = openssl(&["ts", "-reply", "-in", "r.tsr", "-text"], dir);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("Status: Granted"), "{shown}");
    assert!(shown.contains(DEFAULT_POLICY_OID), "{shown}");

    // Against other data openssl refuses it: the check above can fail.
    std::fs::write(dir.join("other.bin"), b"something else").unwrap();
    let out = openssl(
        &[
            "ts",
            "-verify",
            "-in",
            "r.tsr",
            "-data",
            "other.bin",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "tsa.pem",
        ],
        dir,
    );
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn our_rejection_is_understood_by_openssl() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (_ca, tsa) = setup(dir);
    // SHA-1 imprint: badAlg.
    let out = openssl(
        &[
            "ts", "-query", "-data", "data.bin", "-sha1", "-cert", "-out", "q1.tsq",
        ],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let authority = TimestampAuthority::new(&tsa.cert, &tsa.key).unwrap();
    let reply = authority.respond(&std::fs::read(dir.join("q1.tsq")).unwrap());
    assert_eq!(reply.status, PkiStatus::Rejection);
    std::fs::write(dir.join("r1.tsr"), &reply.der).unwrap();
    let out = openssl(&["ts", "-reply", "-in", "r1.tsr", "-text"], dir);
    let shown = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(shown.contains("Rejected"), "{}", text(&out));
    assert!(
        shown.contains("unrecognized or unsupported algorithm"),
        "{}",
        text(&out)
    );
}

const TSA_CONFIG: &str = "\
[ tsa ]
default_tsa = tsa_config1

[ tsa_config1 ]
dir = .
serial = ./tsaserial
crypto_device = builtin
signer_cert = ./tsa.pem
certs = ./ca.pem
signer_key = ./tsa.key
signer_digest = sha256
default_policy = 1.3.6.1.4.1.32473.3161.1
other_policies = 1.3.6.1.4.1.32473.3161.2
digests = sha256, sha384, sha512
accuracy = secs:1
clock_precision_digits = 0
ordering = no
tsa_name = yes
ess_cert_id_chain = no
ess_cert_id_alg = sha256
";

/// Write the `openssl ts` configuration ([`TSA_CONFIG`]) and its serial
/// file into `dir`.
fn write_tsa_config(dir: &Path) {
    std::fs::write(dir.join("ts.cnf"), TSA_CONFIG).unwrap();
    std::fs::write(dir.join("tsaserial"), "01\n").unwrap();
}

/// `openssl ts -reply` to `q.tsq` in `dir` with the written configuration,
/// plus `args`.
fn openssl_ts_reply(dir: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["ts", "-reply", "-config", "ts.cnf", "-queryfile", "q.tsq"];
    all.extend_from_slice(args);
    openssl(&all, dir)
}

#[test]
fn openssl_tsa_token_is_accepted_by_our_client_and_tampering_is_not() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (ca, _tsa) = setup(dir);
    write_tsa_config(dir);
    let data = std::fs::read(dir.join("data.bin")).unwrap();
    let req = TimestampRequest::for_data(ImprintAlgorithm::Sha256, &data).unwrap();
    std::fs::write(dir.join("q.tsq"), req.der()).unwrap();

    let out = openssl_ts_reply(dir, &["-out", "r.tsr"]);
    assert!(out.status.success(), "{}", text(&out));
    let out = openssl_ts_reply(dir, &["-token_out", "-out", "t.der"]);
    assert!(out.status.success(), "{}", text(&out));
    let resp = std::fs::read(dir.join("r.tsr")).unwrap();
    let token_der = std::fs::read(dir.join("t.der")).unwrap();
    let trust = TsaTrust::new(vec![ca.cert.clone()]);

    let token = verify_response(&resp, &req, &trust).unwrap();
    assert_eq!(token.policy, "1.3.6.1.4.1.32473.3161.1");
    assert_eq!(token.nonce.as_deref(), req.nonce());
    let stored = verify_token_for_data(&token_der, &data, &trust).unwrap();
    // openssl's serial file counts up: the second token has the next serial.
    let mut next = token.serial.to_owned().unwrap();
    next.add_word(1).unwrap();
    assert_eq!(stored.serial, next);
    // The token we extracted from the response verifies as a stored token too.
    verify_token_for_data(&token.der, &data, &trust).unwrap();

    // One changed byte near the end (inside the signature) is rejected.
    for der in [&resp, &token_der] {
        let mut bad = der.clone();
        let i = bad.len() - 5;
        bad[i] ^= 0x55;
        let r1 = verify_response(&bad, &req, &trust);
        let r2 = verify_token_for_data(&bad, &data, &trust);
        assert!(r1.is_err() && r2.is_err(), "{r1:?} {r2:?}");
    }
    let mut bad = resp.clone();
    let i = bad.len() - 5;
    bad[i] ^= 0x55;
    assert!(matches!(
        verify_response(&bad, &req, &trust),
        Err(TsaError::BadSignature(_))
    ));
    // Changing the data is noticed.
    assert!(matches!(
        verify_token_for_data(&token_der, b"other", &trust),
        Err(TsaError::ImprintMismatch)
    ));
}

#[test]
fn openssl_tsa_with_non_critical_eku_is_refused_by_our_client() {
    // openssl ts -reply checks the purpose itself, so sign with a certificate
    // that has a critical EKU, then present a trust setup where the chain
    // is fine: this guards our own EKU check against regressions by
    // comparing with a certificate that lacks criticality.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let ca = root("NDXP Interop Root");
    let weak = issue("weak TSA", Kind::TsaNonCriticalEku, 401, Some(&ca), -1, 365);
    write_pem(&dir.join("ca.pem"), &ca.cert);
    write_pem(&dir.join("tsa.pem"), &weak.cert);
    write_key(&dir.join("tsa.key"), &weak.key);
    write_tsa_config(dir);
    let req = TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"w").unwrap();
    std::fs::write(dir.join("q.tsq"), req.der()).unwrap();
    let out = openssl_ts_reply(dir, &["-out", "r.tsr"]);
    // OpenSSL refuses to sign with such a certificate; if a future version
    // signs anyway, our client must still refuse the token.
    if let Ok(resp) = std::fs::read(dir.join("r.tsr")) {
        let result = verify_response(&resp, &req, &TsaTrust::new(vec![ca.cert.clone()]));
        assert!(result.is_err(), "{}", text(&out));
    } else {
        assert!(!out.status.success(), "{}", text(&out));
    }
}
