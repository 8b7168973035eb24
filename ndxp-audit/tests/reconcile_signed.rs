//! Signed summaries: verify against the PKI, reject tampering and strangers.
#![allow(clippy::unwrap_used)]

use chrono::{TimeZone, Utc};
use ndxp_audit::reconcile::{summarize, Entry, Outcome, Period, Side, Summary};
use ndxp_core::{MemberId, TransactionId};
use ndxp_sign::cert::member_of;
use ndxp_sign::jws::{self, JwsAlgorithm};
use ndxp_test_support::pki::{init_named_pki, init_pki, member_signer};

fn summary() -> Summary {
    let at = Utc.with_ymd_and_hms(2026, 1, 1, 10, 0, 0).unwrap();
    let u = uuid::Builder::from_unix_timestamp_millis(at.timestamp_millis() as u64 + 5, &[7; 10])
        .into_uuid();
    let e = Entry {
        transaction_id: TransactionId::from_uuid(u).unwrap(),
        client: "EE/GOV/70001/client".parse().unwrap(),
        service: "EE/COM/80001/prov/svc/v1".parse().unwrap(),
        outcome: Outcome::Ok,
        at,
    };
    summarize(Side::Provider, Period::hour(at), [e])
}

#[test]
fn signed_summary_verifies_and_names_its_signer() {
    let dir = tempfile::tempdir().unwrap();
    let pki = init_pki(dir.path(), "http://127.0.0.1:9/ocsp");
    let member: MemberId = "EE/COM/80001".parse().unwrap();
    let signer = member_signer(&pki, &member);
    let s = summary();
    let signed = s
        .sign(&signer.key, JwsAlgorithm::Es256, &signer.chain)
        .unwrap();
    let (back, v) = Summary::verify(&signed, &[pki.root_cert().clone()], Utc::now()).unwrap();
    assert_eq!(back, s);
    assert_eq!(back.total(), 1);
    assert_eq!(member_of(&v.chain[0]).unwrap(), member);

    // Another PKI's root does not vouch for it.
    let other_dir = tempfile::tempdir().unwrap();
    let other = init_named_pki(other_dir.path(), "Other Root", "http://127.0.0.1:9/ocsp");
    assert!(Summary::verify(&signed, &[other.root_cert().clone()], Utc::now()).is_err());

    // A changed payload (count 1 -> 2) breaks the signature.
    let parts: Vec<&str> = signed.split('.').collect();
    let payload = String::from_utf8(base64_url_decode(parts[1]))
        .unwrap()
        .replace("\"count\":1", "\"count\":2");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64_url_encode(payload.as_bytes()),
        parts[2]
    );
    assert!(Summary::verify(&forged, &[pki.root_cert().clone()], Utc::now()).is_err());

    // A valid JWS of another type is not accepted as a summary.
    let other_typ = jws::sign(
        &s.canonical_json().unwrap(),
        &signer.key,
        JwsAlgorithm::Es256,
        &signer.chain,
        Some("something-else"),
    )
    .unwrap();
    let err = Summary::verify(&other_typ, &[pki.root_cert().clone()], Utc::now()).unwrap_err();
    assert!(
        err.to_string().contains("not a reconciliation summary"),
        "{err}"
    );
}

fn base64_url_decode(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

fn base64_url_encode(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}
