//! The signer cache: keyed by the `keyid` (the certificate's fingerprint),
//! never poisoned by a message naming another signer's `keyid`, and
//! revocation verdicts reused only while the OCSP cache is unchanged.

#![allow(clippy::unwrap_used)]

mod profile_support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Duration;
use ndxp_core::TransactionId;
use ndxp_sign::chain::{self, BoxError, ChainError};
use ndxp_sign::httpsig::SignatureError;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::ocsp::{IntermediatePolicy, OcspCheck, OcspStatusCache};
use ndxp_sign::profile::{self, ProfileError, ProfilePolicy, SignerCache};
use ndxp_sign::revocation::{CertStatus, RevocationReason};
use openssl::x509::X509Ref;
use profile_support::*;

fn cached_policy(ca: &Ca) -> (ProfilePolicy, Arc<SignerCache>) {
    let cache = Arc::new(SignerCache::new(16, 3600));
    (ca.policy().with_signer_cache(cache.clone()), cache)
}

#[test]
fn a_held_signer_is_verified_by_keyid_without_its_certificate_field() {
    let ca = Ca::new("NDXP Test Root");
    let a = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let (policy, cache) = cached_policy(&ca);

    // Not held yet: the certificate field is needed.
    let mut bare = signed_request(&a, TransactionId::new(), now());
    bare.headers.remove(profile::SIGNER_CERT);
    let e = profile::verify_request(&bare, &policy, now()).unwrap_err();
    assert!(
        matches!(e, ProfileError::MissingHeader(h) if h == profile::SIGNER_CERT),
        "{e:?}"
    );
    assert!(cache.is_empty());

    let full = signed_request(&a, TransactionId::new(), now());
    let vm = profile::verify_request(&full, &policy, now()).unwrap();
    assert_eq!(cache.len(), 1);

    // Held: the same signer verifies without the field, and the record
    // still carries the certificate that was validated.
    let vm2 = profile::verify_request(&bare, &policy, now()).unwrap();
    assert_eq!(vm2.fingerprint, a.fingerprint());
    assert_eq!(vm2.signer_cert_der, vm.signer_cert_der);
    assert_eq!(vm2.chain_der, vm.chain_der);
}

#[test]
fn another_signers_keyid_neither_poisons_the_cache_nor_verifies() {
    let ca = Ca::new("NDXP Test Root");
    let a = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let b = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let (policy, cache) = cached_policy(&ca);

    // A's signed message with B's (valid) certificate: refused, and
    // nothing is held under A's keyid.
    let mut swapped = signed_request(&a, TransactionId::new(), now());
    let b_msg = signed_request(&b, TransactionId::new(), now());
    swapped.headers.insert(
        profile::SIGNER_CERT,
        b_msg.headers[profile::SIGNER_CERT].clone(),
    );
    let e = profile::verify_request(&swapped, &policy, now()).unwrap_err();
    assert!(matches!(e, ProfileError::KeyIdMismatch { .. }), "{e:?}");
    assert!(cache.is_empty());

    // B held: still nothing under A's keyid.
    profile::verify_request(&b_msg, &policy, now()).unwrap();
    assert_eq!(cache.len(), 1);
    let e = profile::verify_request(&swapped, &policy, now()).unwrap_err();
    assert!(matches!(e, ProfileError::KeyIdMismatch { .. }), "{e:?}");

    // A message signed by B that claims A's keyid once A is held: the
    // held key of A does not verify B's signature.
    profile::verify_request(
        &signed_request(&a, TransactionId::new(), now()),
        &policy,
        now(),
    )
    .unwrap();
    let mut forged = signed_request(&b, TransactionId::new(), now());
    let input = forged.headers["signature-input"].to_str().unwrap().replace(
        &format!("keyid=\"{}\"", b.fingerprint()),
        &format!("keyid=\"{}\"", a.fingerprint()),
    );
    forged
        .headers
        .insert("signature-input", input.parse().unwrap());
    forged.headers.remove(profile::SIGNER_CERT);
    let e = profile::verify_request(&forged, &policy, now()).unwrap_err();
    assert!(
        matches!(e, ProfileError::Signature(SignatureError::InvalidSignature)),
        "{e:?}"
    );
}

fn answer(status: CertStatus) -> OcspCheck {
    let t = now();
    OcspCheck {
        status,
        this_update: t - Duration::minutes(1),
        next_update: Some(t + Duration::hours(1)),
        produced_at: t - Duration::minutes(1),
    }
}

#[test]
fn a_revocation_the_ocsp_cache_learns_takes_effect_on_the_next_message() {
    let ca = Ca::new("NDXP Test Root");
    let a = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let ocsp = Arc::new(OcspStatusCache::new(IntermediatePolicy::TrustIntermediates));
    let (policy, _) = cached_policy(&ca);
    let policy = policy.with_revocation(ocsp.clone());
    let leaf = a.certificate().clone();

    // No answer held: the revocation check fails (the node then fetches).
    let e = profile::verify_request(
        &signed_request(&a, TransactionId::new(), now()),
        &policy,
        now(),
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            ProfileError::UntrustedSigner(ChainError::RevocationCheckFailed { .. })
        ),
        "{e:?}"
    );
    ocsp.insert(&leaf, answer(CertStatus::Good));
    for _ in 0..3 {
        profile::verify_request(
            &signed_request(&a, TransactionId::new(), now()),
            &policy,
            now(),
        )
        .unwrap();
    }
    ocsp.insert(
        &leaf,
        answer(CertStatus::Revoked {
            at: now() - Duration::seconds(30),
            reason: RevocationReason::KeyCompromise,
        }),
    );
    let e = profile::verify_request(
        &signed_request(&a, TransactionId::new(), now()),
        &policy,
        now(),
    )
    .unwrap_err();
    assert!(
        matches!(e, ProfileError::UntrustedSigner(ChainError::Revoked { .. })),
        "{e:?}"
    );
    // Another cache (e.g. after a restart of the hub) starts with no
    // verdict, even for a signer held with a verdict from the first one.
    let fresh = Arc::new(OcspStatusCache::new(IntermediatePolicy::TrustIntermediates));
    ocsp.insert(&leaf, answer(CertStatus::Good));
    profile::verify_request(
        &signed_request(&a, TransactionId::new(), now()),
        &policy,
        now(),
    )
    .unwrap();
    let swapped = ProfilePolicy {
        revocation: Some(fresh),
        ..policy
    };
    let e = profile::verify_request(
        &signed_request(&a, TransactionId::new(), now()),
        &swapped,
        now(),
    )
    .unwrap_err();
    assert!(matches!(e, ProfileError::UntrustedSigner(_)), "{e:?}");
}

#[test]
fn a_checker_without_generations_is_asked_on_every_message() {
    let ca = Ca::new("NDXP Test Root");
    let a = ca.signer(CONSUMER, KeyAlgorithm::EcP256);
    let revoked = Arc::new(AtomicBool::new(false));
    let flag = revoked.clone();
    let checker = chain::from_fn(
        move |_cert: &X509Ref, _issuer: &X509Ref| -> Result<CertStatus, BoxError> {
            Ok(if flag.load(Ordering::SeqCst) {
                CertStatus::Revoked {
                    at: now() - Duration::hours(1),
                    reason: RevocationReason::KeyCompromise,
                }
            } else {
                CertStatus::Good
            })
        },
    );
    let (policy, _) = cached_policy(&ca);
    let policy = policy.with_revocation(Arc::new(checker));
    profile::verify_request(
        &signed_request(&a, TransactionId::new(), now()),
        &policy,
        now(),
    )
    .unwrap();
    revoked.store(true, Ordering::SeqCst);
    let e = profile::verify_request(
        &signed_request(&a, TransactionId::new(), now()),
        &policy,
        now(),
    )
    .unwrap_err();
    assert!(
        matches!(e, ProfileError::UntrustedSigner(ChainError::Revoked { .. })),
        "{e:?}"
    );
}
