#![allow(clippy::unwrap_used)]
//! Chain validation: time, purpose, trust anchors and revocation.

use std::cell::RefCell;

use chrono::{Duration, Utc};
use ndxp_core::id::{MemberId, NodeName};
use ndxp_sign::ca::{InitOptions, Pki};
use ndxp_sign::cert::{self, Profile};
use ndxp_sign::chain::{self, verify_chain, BoxError, ChainError, NoRevocationCheck, Purpose};
use ndxp_sign::csr;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::revocation::{CertStatus, RevocationReason};
use openssl::x509::{X509Ref, X509};

struct Fixture {
    _tmp: tempfile::TempDir,
    pki: Pki,
    auth: X509,
    sign: X509,
}

fn member() -> MemberId {
    "VN/GOV/000.00.00.H29".parse().unwrap()
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        ocsp_url: "http://127.0.0.1:9/ocsp".to_string(),
        ..InitOptions::default()
    };
    let pki = Pki::init(&tmp.path().join("pki"), &opts).unwrap();
    let key = KeyAlgorithm::EcP256.generate().unwrap();
    let node: NodeName = "node1".parse().unwrap();
    let auth = pki
        .issue(
            &csr::build_auth_csr(&member(), &node, &[], &[], &key).unwrap(),
            Profile::Auth,
            1,
        )
        .unwrap();
    let sign = pki
        .issue(
            &csr::build_sign_csr(&member(), &key).unwrap(),
            Profile::Sign,
            1,
        )
        .unwrap();
    Fixture {
        _tmp: tmp,
        pki,
        auth,
        sign,
    }
}

impl Fixture {
    fn anchors(&self) -> Vec<X509> {
        vec![self.pki.root_cert().clone()]
    }

    fn verify(
        &self,
        leaf: &X509Ref,
        at: chrono::DateTime<Utc>,
        purpose: Purpose,
    ) -> Result<chain::VerifiedChain, ChainError> {
        verify_chain(
            leaf,
            self.pki.chain(),
            &self.anchors(),
            at,
            purpose,
            &self.pki,
        )
    }

    /// The signing certificate's chain checked now, with `revocation`.
    fn sign_now_with(
        &self,
        revocation: &dyn chain::RevocationChecker,
    ) -> Result<chain::VerifiedChain, ChainError> {
        verify_chain(
            &self.sign,
            self.pki.chain(),
            &self.anchors(),
            Utc::now(),
            Purpose::Sign,
            revocation,
        )
    }
}

/// A signing certificate's chain checked now, without revocation.
fn sign_chain_now(
    leaf: &X509Ref,
    untrusted: &[X509],
    anchors: &[X509],
) -> Result<chain::VerifiedChain, ChainError> {
    verify_chain(
        leaf,
        untrusted,
        anchors,
        Utc::now(),
        Purpose::Sign,
        &NoRevocationCheck,
    )
}

#[test]
fn valid_chains_are_accepted_now() {
    let f = fixture();
    let now = Utc::now();
    let v = f.verify(&f.auth, now, Purpose::Auth).unwrap();
    assert_eq!(v.certs().len(), 3);
    assert_eq!(
        v.leaf().unwrap().to_der().unwrap(),
        f.auth.to_der().unwrap()
    );
    assert_eq!(
        v.anchor().unwrap().to_der().unwrap(),
        f.pki.root_cert().to_der().unwrap()
    );
    f.verify(&f.sign, now, Purpose::Sign).unwrap();
    f.verify(f.pki.tsa_cert(), now, Purpose::Timestamping)
        .unwrap();
    f.verify(&f.auth, now, Purpose::Any).unwrap();
}

#[test]
fn expired_and_not_yet_valid_are_rejected_at_the_given_time() {
    let f = fixture();
    let later = Utc::now() + Duration::days(2);
    match f.verify(&f.sign, later, Purpose::Sign) {
        Err(ChainError::Expired {
            subject,
            not_after,
            at,
        }) => {
            assert!(subject.contains("CN=000.00.00.H29"), "{subject}");
            assert!(not_after < at);
            assert_eq!(at, later);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    let earlier = Utc::now() - Duration::hours(1);
    let err = f.verify(&f.sign, earlier, Purpose::Sign).unwrap_err();
    assert!(matches!(err, ChainError::NotYetValid { .. }), "{err:?}");
    assert!(err.to_string().contains("not valid before"));
}

#[test]
fn revoked_leaf_is_rejected_through_the_checker() {
    let f = fixture();
    let at = Utc::now() - Duration::seconds(30);
    f.pki
        .revoke(&f.auth, RevocationReason::KeyCompromise, at)
        .unwrap();
    let err = f.verify(&f.auth, Utc::now(), Purpose::Auth).unwrap_err();
    let serial = cert::cert_serial_hex(&f.auth).unwrap();
    match &err {
        ChainError::Revoked {
            subject,
            serial: s,
            reason,
            ..
        } => {
            assert!(subject.contains("CN=node1"));
            assert_eq!(s, &serial);
            assert_eq!(*reason, RevocationReason::KeyCompromise);
        }
        other => panic!("expected Revoked, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&serial) && msg.contains("keyCompromise") && msg.contains("node1"));

    // Validating at a time before the revocation accepts it.
    f.verify(&f.auth, at - Duration::seconds(10), Purpose::Auth)
        .unwrap();
    // The explicit no-check checker accepts it (tests/offline only).
    verify_chain(
        &f.auth,
        f.pki.chain(),
        &f.anchors(),
        Utc::now(),
        Purpose::Auth,
        &NoRevocationCheck,
    )
    .unwrap();
}

#[test]
fn closure_checkers_are_asked_for_every_non_anchor_certificate() {
    let f = fixture();
    let asked = RefCell::new(Vec::new());
    let checker = chain::from_fn(|c: &X509Ref, issuer: &X509Ref| {
        asked.borrow_mut().push((
            cert::subject_text(c.subject_name()),
            cert::subject_text(issuer.subject_name()),
        ));
        Ok(CertStatus::Good)
    });
    f.sign_now_with(&checker).unwrap();
    let asked = asked.into_inner();
    assert_eq!(asked.len(), 2);
    assert!(asked[0].0.contains("000.00.00.H29") && asked[0].1 == "CN=NDXP Issuing CA");
    assert_eq!(
        asked[1],
        ("CN=NDXP Issuing CA".into(), "CN=NDXP Root CA".into())
    );

    let unknown = chain::from_fn(|_: &X509Ref, _: &X509Ref| Ok(CertStatus::Unknown));
    let err = f.sign_now_with(&unknown).unwrap_err();
    assert!(
        matches!(err, ChainError::RevocationUnknown { .. }),
        "{err:?}"
    );

    let failing = chain::from_fn(|_: &X509Ref, _: &X509Ref| -> Result<CertStatus, BoxError> {
        Err("no cached OCSP response".into())
    });
    let err = f.sign_now_with(&failing).unwrap_err();
    assert!(
        matches!(err, ChainError::RevocationCheckFailed { .. }),
        "{err:?}"
    );

    let revoked = chain::from_fn(|_: &X509Ref, _: &X509Ref| {
        Ok(CertStatus::Revoked {
            at: Utc::now() - Duration::days(1),
            reason: RevocationReason::CaCompromise,
        })
    });
    let err = f.sign_now_with(&revoked).unwrap_err();
    assert!(matches!(
        err,
        ChainError::Revoked {
            reason: RevocationReason::CaCompromise,
            ..
        }
    ));
}

#[test]
fn wrong_purpose_is_rejected() {
    let f = fixture();
    let now = Utc::now();
    let cases: [(&X509Ref, Purpose); 6] = [
        (&f.sign, Purpose::Auth),
        (&f.auth, Purpose::Sign),
        (&f.auth, Purpose::Timestamping),
        (&f.sign, Purpose::Timestamping),
        (f.pki.tsa_cert(), Purpose::Sign),
        (f.pki.tsa_cert(), Purpose::Auth),
    ];
    for (leaf, purpose) in cases {
        let err = f.verify(leaf, now, purpose).unwrap_err();
        assert!(
            matches!(err, ChainError::WrongPurpose { purpose: p, .. } if p == purpose),
            "{purpose:?}: {err:?}"
        );
    }
    // A CA certificate is no leaf.
    let err = verify_chain(
        f.pki.issuing_cert(),
        &[],
        &f.anchors(),
        now,
        Purpose::Sign,
        &NoRevocationCheck,
    )
    .unwrap_err();
    assert!(matches!(err, ChainError::WrongPurpose { .. }), "{err:?}");
}

#[test]
fn certificates_of_another_ca_are_untrusted() {
    let f = fixture();
    let other = fixture();
    let err = sign_chain_now(&other.sign, other.pki.chain(), &f.anchors()).unwrap_err();
    assert!(matches!(err, ChainError::Untrusted { .. }), "{err:?}");

    // Without the intermediate, no path is found either.
    let err = sign_chain_now(&f.sign, &[], &f.anchors()).unwrap_err();
    assert!(matches!(err, ChainError::Untrusted { .. }), "{err:?}");

    let err = sign_chain_now(&f.sign, f.pki.chain(), &[]).unwrap_err();
    assert!(matches!(err, ChainError::NoAnchors));
}

#[test]
fn an_intermediate_can_be_the_trust_anchor() {
    let f = fixture();
    let v = verify_chain(
        &f.auth,
        &[],
        &[f.pki.issuing_cert().clone()],
        Utc::now(),
        Purpose::Auth,
        &f.pki,
    )
    .unwrap();
    assert_eq!(v.certs().len(), 2);
}
