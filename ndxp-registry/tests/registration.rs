//! Node registration requests: signed by the member, checked by management.
#![allow(clippy::unwrap_used)]

use chrono::{Duration, Utc};
use ndxp_core::{MemberId, NodeName};
use ndxp_registry::registration::*;
use ndxp_sign::ca::Pki;
use ndxp_sign::openssl::pkey::{PKey, Private};
use ndxp_sign::openssl::x509::X509;
use ndxp_test_support::pki::{init_pki, member_signer, node_auth_cert, pem};
use proptest::prelude::*;

struct Member {
    id: MemberId,
    sign_key: PKey<Private>,
    sign_chain: Vec<X509>,
    auth_pem: String,
}

fn new_pki() -> (tempfile::TempDir, Pki) {
    let tmp = tempfile::tempdir().unwrap();
    let pki = init_pki(&tmp.path().join("pki"), "http://127.0.0.1:1/ocsp");
    (tmp, pki)
}

fn member(pki: &Pki, id: &str, node: &str) -> Member {
    let id: MemberId = id.parse().unwrap();
    let node: NodeName = node.parse().unwrap();
    let signer = member_signer(pki, &id);
    let auth = node_auth_cert(pki, &id, &node);
    Member {
        id,
        sign_key: signer.key,
        sign_chain: signer.chain,
        auth_pem: pem(&auth),
    }
}

fn payload(m: &Member, node: &str) -> RegistrationPayload {
    RegistrationPayload::new(
        m.id.clone(),
        node.parse().unwrap(),
        "https://127.0.0.1:8202".into(),
        m.auth_pem.clone(),
        Utc::now(),
    )
}

fn signed(p: &RegistrationPayload, by: &Member) -> String {
    sign_registration(p, &by.sign_key, &by.sign_chain).unwrap()
}

#[test]
fn a_member_signed_request_is_accepted() {
    let (_t, pki) = new_pki();
    let g22 = member(&pki, "VN/GOV/000.00.00.G22", "node-g22");
    let jws = signed(&payload(&g22, "node-g22"), &g22);
    let v = verify_registration(&jws, &[pki.root_cert().clone()], Utc::now()).unwrap();
    assert_eq!(v.payload.member, g22.id);
    assert_eq!(v.payload.node.as_str(), "node-g22");
    assert_eq!(v.auth_cert_sha256.len(), 64);
}

#[test]
fn requests_that_must_be_refused() {
    let (_t, pki) = new_pki();
    let anchors = [pki.root_cert().clone()];
    let g22 = member(&pki, "VN/GOV/000.00.00.G22", "node-g22");
    let h29 = member(&pki, "VN/GOV/000.00.00.H29", "node-h29");
    let check = |jws: &str| verify_registration(jws, &anchors, Utc::now());

    // Signed by another member's key.
    let jws = signed(&payload(&g22, "node-g22"), &h29);
    assert!(matches!(
        check(&jws),
        Err(RegistrationError::WrongSigner { .. })
    ));
    // Carrying another member's TLS certificate: not the member's own.
    let mut p = payload(&g22, "node-g22");
    p.auth_cert_pem = h29.auth_pem.clone();
    let e = check(&signed(&p, &g22)).unwrap_err();
    assert!(
        matches!(&e, RegistrationError::NotOwnCertificate { owner, .. } if owner.to_string() == "VN/GOV/000.00.00.H29"),
        "{e:?}"
    );
    assert!(e.to_string().contains("only its own nodes"), "{e}");
    // Naming a node the TLS certificate was not issued to.
    let jws = signed(&payload(&g22, "node-x"), &g22);
    assert!(matches!(
        check(&jws),
        Err(RegistrationError::AuthCertificate(_))
    ));
    // Stale.
    let jws = signed(&payload(&g22, "node-g22"), &g22);
    assert!(matches!(
        verify_registration(&jws, &anchors, Utc::now() + Duration::hours(1)),
        Err(RegistrationError::Stale { .. })
    ));
    // A plain-HTTP address.
    let mut p = payload(&g22, "node-g22");
    p.address = "http://127.0.0.1:8202".into();
    assert!(matches!(
        check(&signed(&p, &g22)),
        Err(RegistrationError::BadAddress(_))
    ));
    // From a CA the management does not trust.
    let (_t2, other) = new_pki();
    assert!(matches!(
        verify_registration(&jws, &[other.root_cert().clone()], Utc::now()),
        Err(RegistrationError::Signature(_))
    ));
    // Tampered payload.
    let mut parts: Vec<String> = jws.split('.').map(str::to_string).collect();
    parts[1] = parts[1].replacen('e', "f", 1);
    assert!(check(&parts.join(".")).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn arbitrary_input_is_refused_without_panic(s in "\\PC{0,300}") {
        let (_t, pki) = new_pki();
        prop_assert!(verify_registration(&s, &[pki.root_cert().clone()], Utc::now()).is_err());
    }
}
