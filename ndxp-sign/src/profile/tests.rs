//! A signer in the intermediary role (the central gateway) and its receivers.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use http::header::HeaderValue;

use super::*;
use crate::ca::{InitOptions, Pki};
use crate::cert::Profile;
use crate::{csr, digest, key::KeyAlgorithm};

fn signer_of(pki: &Pki, member: &str) -> Signer {
    let member: MemberId = member.parse().unwrap();
    let key = KeyAlgorithm::EcP256.generate().unwrap();
    let req = csr::build_sign_csr(&member, &key).unwrap();
    let cert = pki.issue(&req, Profile::Sign, 30).unwrap();
    Signer::new(key, cert, pki.chain().to_vec()).unwrap()
}

fn head(client: &str) -> http::request::Parts {
    http::Request::get("http://backend.example/persons/001")
        .header(NDXP_CLIENT, client)
        .header(NDXP_ID, TransactionId::new().to_string())
        .body(())
        .unwrap()
        .into_parts()
        .0
}

#[test]
fn a_gateway_signs_for_a_client_of_another_member() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        ocsp_url: "http://127.0.0.1:1/ocsp".into(),
        ..InitOptions::default()
    };
    let pki = Pki::init(&tmp.path().join("pki"), &opts).unwrap();
    let gateway = signer_of(&pki, "VN/GOV/000.00.00.A01");
    let now = Utc::now();
    let body = b"{}";
    let digest = digest::content_digest(body);

    // A signer in the member role refuses; in the intermediary role it signs.
    let mut parts = head("VN/GOV/000.00.00.G22/QLHT");
    assert!(matches!(
        sign_request(&mut parts, &digest, &gateway, now),
        Err(ProfileError::ClientNotOfSigner { .. })
    ));
    let mut parts = head("VN/GOV/000.00.00.G22/QLHT");
    let gateway = gateway.with_role(SignerRole::Intermediary);
    let info = sign_request(&mut parts, &digest, &gateway, now).unwrap();
    assert_eq!(info.fingerprint, gateway.fingerprint());

    let policy = ProfilePolicy::new(vec![pki.root_cert().clone()]);
    // A receiver that does not name the gateway refuses the request ...
    assert!(matches!(
        verify_request(&parts, &policy, now),
        Err(ProfileError::ClientNotOfSigner { .. })
    ));
    assert!(matches!(
        verify_request_from_intermediary(&parts, &policy, &[], now),
        Err(ProfileError::ClientNotOfSigner { .. })
    ));
    // ... one that trusts it as an intermediary accepts it.
    let vm = verify_request_from_intermediary(&parts, &policy, &[gateway.member().clone()], now)
        .unwrap();
    assert_eq!(&vm.signer, gateway.member());
    assert_eq!(vm.client.unwrap().to_string(), "VN/GOV/000.00.00.G22/QLHT");
    digest::verify_content_digest(&vm.content_digest, body).unwrap();

    // A tampered head fails like any other NDXP signature.
    parts.headers.insert(
        NDXP_CLIENT,
        HeaderValue::from_static("VN/GOV/000.00.00.G22/OTHER"),
    );
    assert!(
        verify_request_from_intermediary(&parts, &policy, &[gateway.member().clone()], now)
            .is_err()
    );
}
