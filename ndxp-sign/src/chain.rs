//! Certificate path validation at a given time, for a given purpose, with
//! revocation checked through a [`RevocationChecker`].
//!
//! [`verify_chain`] runs OpenSSL's path building and verification
//! (`X509_verify_cert`) with the verification time set to `at`, then checks
//! the leaf's key usages for the [`Purpose`], then asks the checker about
//! every certificate of the built chain except the trust anchor.
//!
//! # Security behaviour
//!
//! - Every certificate in `anchors` is trusted as given, self-signed or not
//!   (OpenSSL's partial-chain mode): the global configuration lists the CAs
//!   a node trusts, and an intermediate may be listed on its own.
//! - A revocation takes effect at its recorded time: a certificate revoked
//!   after `at` is accepted when validating at `at` (validating an old
//!   signature at its signing time); revoked at or before `at` is rejected.
//! - `Unknown` revocation status is an error, never treated as good.
//! - The checker is synchronous on purpose: a node fetches OCSP responses
//!   asynchronously into a cache and the checker reads that cache.
//!   [`NoRevocationCheck`] skips revocation and is for tests and offline
//!   tools only.
//!
//! # Purposes
//!
//! | Purpose | Required of the leaf |
//! |---|---|
//! | `Auth` | extendedKeyUsage with serverAuth and clientAuth; keyUsage, if present, with digitalSignature; OpenSSL's `sslclient` checks on the chain |
//! | `ClientAuth` | extendedKeyUsage, if present, with clientAuth; keyUsage, if present, with digitalSignature; OpenSSL's `sslclient` checks on the chain |
//! | `Sign` | keyUsage with digitalSignature and nonRepudiation; no timeStamping or OCSPSigning extendedKeyUsage |
//! | `Timestamping` | OpenSSL's `timestampsign` checks: critical extendedKeyUsage of exactly timeStamping (RFC 3161) |
//! | `Any` | nothing beyond the path |
//!
//! No leaf may carry keyCertSign for `Auth`, `Sign` or `Timestamping`.
//!
//! # Example
//!
//! ```
//! use ndxp_sign::ca::{InitOptions, Pki};
//! use ndxp_sign::chain::{verify_chain, ChainError, Purpose};
//! use ndxp_sign::cert::Profile;
//!
//! let tmp = tempfile::tempdir()?;
//! let opts = InitOptions { ocsp_url: "http://127.0.0.1:8080/ocsp".into(), ..InitOptions::default() };
//! let pki = Pki::init(&tmp.path().join("pki"), &opts)?;
//! let key = ndxp_sign::key::KeyAlgorithm::EcP256.generate()?;
//! let req = ndxp_sign::csr::build_sign_csr(&"VN/GOV/000.00.00.H29".parse()?, &key)?;
//! let cert = pki.issue(&req, Profile::Sign, 30)?;
//!
//! let now = chrono::Utc::now();
//! let ok = verify_chain(&cert, pki.chain(), &[pki.root_cert().clone()], now, Purpose::Sign, &pki)?;
//! assert_eq!(ok.certs().len(), 3);
//! let err = verify_chain(&cert, pki.chain(), &[pki.root_cert().clone()], now, Purpose::Auth, &pki);
//! assert!(matches!(err, Err(ChainError::WrongPurpose { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;

use chrono::{DateTime, Utc};
use openssl::error::ErrorStack;
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::{X509VerifyFlags, X509VerifyParam};
use openssl::x509::{
    X509ExtendedKeyUsage, X509KeyUsage, X509PurposeId, X509Ref, X509StoreContext, X509,
};

use crate::cert::{self, subject_text};
use crate::revocation::{CertStatus, RevocationReason};

/// A boxed error, as returned by revocation checkers.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What the leaf certificate is being used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Mutual TLS between nodes (both client and server).
    Auth,
    /// A TLS client only (e.g. a consumer's information system calling the
    /// central gateway with a client certificate).
    ClientAuth,
    /// Signing messages and documents on behalf of a member.
    Sign,
    /// Signing RFC 3161 timestamps.
    Timestamping,
    /// No purpose check (path and revocation only).
    Any,
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Purpose::Auth => "authentication (TLS client and server)",
            Purpose::ClientAuth => "TLS client authentication",
            Purpose::Sign => "signing",
            Purpose::Timestamping => "time-stamping",
            Purpose::Any => "any purpose",
        })
    }
}

/// Why a certificate chain was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// No trust anchors were given.
    #[error("no trust anchors given; nothing can be trusted")]
    NoAnchors,
    /// No valid path to a trust anchor (unknown issuer, bad signature, ...).
    #[error("certificate {subject} is not trusted: {reason}")]
    Untrusted {
        /// Subject of the certificate where verification failed.
        subject: String,
        /// OpenSSL's explanation.
        reason: &'static str,
        /// OpenSSL's verify error code.
        code: i32,
    },
    /// A certificate of the chain had expired at the validation time.
    #[error("certificate {subject} expired at {not_after} (validating at {at})")]
    Expired {
        /// Subject of the expired certificate.
        subject: String,
        /// Its notAfter.
        not_after: DateTime<Utc>,
        /// The validation time.
        at: DateTime<Utc>,
    },
    /// A certificate of the chain was not yet valid at the validation time.
    #[error("certificate {subject} is not valid before {not_before} (validating at {at})")]
    NotYetValid {
        /// Subject of the certificate.
        subject: String,
        /// Its notBefore.
        not_before: DateTime<Utc>,
        /// The validation time.
        at: DateTime<Utc>,
    },
    /// The leaf (or a CA above it) may not be used for this purpose.
    #[error("certificate {subject} may not be used for {purpose}: {detail}")]
    WrongPurpose {
        /// Subject of the certificate.
        subject: String,
        /// The purpose asked for.
        purpose: Purpose,
        /// What is missing or forbidden.
        detail: &'static str,
    },
    /// A certificate of the chain was revoked at or before the validation time.
    #[error("certificate {subject} (serial {serial}) was revoked at {revoked_at}: {reason}")]
    Revoked {
        /// Subject of the revoked certificate.
        subject: String,
        /// Its serial, as lowercase hex.
        serial: String,
        /// The revocation reason.
        reason: RevocationReason,
        /// When it was revoked.
        revoked_at: DateTime<Utc>,
    },
    /// The revocation source does not know the certificate.
    #[error("revocation status of certificate {subject} (serial {serial}) is unknown; it cannot be trusted")]
    RevocationUnknown {
        /// Subject of the certificate.
        subject: String,
        /// Its serial.
        serial: String,
    },
    /// The revocation checker failed (e.g. no cached OCSP response).
    #[error("could not check the revocation status of certificate {subject} (serial {serial})")]
    RevocationCheckFailed {
        /// Subject of the certificate.
        subject: String,
        /// Its serial.
        serial: String,
        /// The checker's error.
        #[source]
        source: BoxError,
    },
    /// A certificate could not be processed.
    #[error("malformed certificate data while {what}")]
    Malformed {
        /// What was being done.
        what: &'static str,
        /// The OpenSSL error.
        #[source]
        source: ErrorStack,
    },
}

/// Answers "is this certificate revoked?" for [`verify_chain`].
pub trait RevocationChecker {
    /// The status of `cert`, issued by `issuer`.
    fn status(&self, cert: &X509Ref, issuer: &X509Ref) -> Result<CertStatus, BoxError>;

    /// [`status`](Self::status), with the time until which the same answer
    /// stands as long as [`generation`](Self::generation) does not change
    /// (`None`: ask again every time, the default).
    ///
    /// # Errors
    /// As [`status`](Self::status).
    fn status_until(
        &self,
        cert: &X509Ref,
        issuer: &X509Ref,
    ) -> Result<(CertStatus, Option<DateTime<Utc>>), BoxError> {
        self.status(cert, issuer).map(|s| (s, None))
    }

    /// A number that changes whenever the checker's answers may have
    /// changed (e.g. an OCSP cache took a new answer), unique across
    /// checkers; `None` (the default) when its answers cannot be reused.
    fn generation(&self) -> Option<u64> {
        None
    }
}

/// A checker that reports every certificate as good. **For tests and
/// offline tools only**: with it, revoked certificates are accepted.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoRevocationCheck;

impl RevocationChecker for NoRevocationCheck {
    fn status(&self, _cert: &X509Ref, _issuer: &X509Ref) -> Result<CertStatus, BoxError> {
        Ok(CertStatus::Good)
    }
}

/// A [`RevocationChecker`] made from a closure; build it with [`from_fn`].
pub struct FnRevocationChecker<F>(F);

impl<F> fmt::Debug for FnRevocationChecker<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnRevocationChecker")
    }
}

/// Wraps a closure `|cert, issuer| -> Result<CertStatus, BoxError>` as a
/// [`RevocationChecker`].
pub fn from_fn<F>(f: F) -> FnRevocationChecker<F>
where
    F: Fn(&X509Ref, &X509Ref) -> Result<CertStatus, BoxError>,
{
    FnRevocationChecker(f)
}

impl<F> RevocationChecker for FnRevocationChecker<F>
where
    F: Fn(&X509Ref, &X509Ref) -> Result<CertStatus, BoxError>,
{
    fn status(&self, cert: &X509Ref, issuer: &X509Ref) -> Result<CertStatus, BoxError> {
        (self.0)(cert, issuer)
    }
}

/// A validated chain: the leaf first, the trust anchor last.
#[derive(Debug, Clone)]
pub struct VerifiedChain {
    certs: Vec<X509>,
}

impl VerifiedChain {
    /// All certificates, leaf first, trust anchor last.
    pub fn certs(&self) -> &[X509] {
        &self.certs
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> Option<&X509> {
        self.certs.first()
    }

    /// The trust anchor the chain ends in.
    pub fn anchor(&self) -> Option<&X509> {
        self.certs.last()
    }
}

enum Outcome {
    Valid(Vec<X509>),
    Invalid {
        code: i32,
        reason: &'static str,
        cert: Option<X509>,
    },
}

fn malformed(what: &'static str) -> impl Fn(ErrorStack) -> ChainError {
    move |source| ChainError::Malformed { what, source }
}

/// Validates `leaf` against `anchors` at time `at` for `purpose`, using
/// `untrusted` certificates (e.g. intermediates sent by the peer) to build
/// the path, and `revocation` for every certificate in it but the anchor.
pub fn verify_chain(
    leaf: &X509Ref,
    untrusted: &[X509],
    anchors: &[X509],
    at: DateTime<Utc>,
    purpose: Purpose,
    revocation: &dyn RevocationChecker,
) -> Result<VerifiedChain, ChainError> {
    if anchors.is_empty() {
        return Err(ChainError::NoAnchors);
    }
    let mut store = X509StoreBuilder::new().map_err(malformed("creating a store"))?;
    for a in anchors {
        store
            .add_cert(a.clone())
            .map_err(malformed("adding a trust anchor"))?;
    }
    let mut param = X509VerifyParam::new().map_err(malformed("creating parameters"))?;
    param.set_time(at.timestamp() as _);
    param
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(malformed("setting verify flags"))?;
    match purpose {
        Purpose::Auth | Purpose::ClientAuth => param.set_purpose(X509PurposeId::SSL_CLIENT),
        Purpose::Timestamping => param.set_purpose(X509PurposeId::TIMESTAMP_SIGN),
        Purpose::Sign | Purpose::Any => Ok(()),
    }
    .map_err(malformed("setting the purpose"))?;
    store
        .set_param(&param)
        .map_err(malformed("setting parameters"))?;
    let store = store.build();

    let mut chain = Stack::new().map_err(malformed("building a stack"))?;
    for c in untrusted {
        chain
            .push(c.clone())
            .map_err(malformed("collecting untrusted certificates"))?;
    }
    let mut ctx = X509StoreContext::new().map_err(malformed("creating a context"))?;
    let outcome = ctx
        .init(&store, leaf, &chain, |c| {
            if c.verify_cert()? {
                let certs = c
                    .chain()
                    .map(|s| s.iter().map(X509Ref::to_owned).collect())
                    .unwrap_or_default();
                Ok(Outcome::Valid(certs))
            } else {
                let err = c.error();
                Ok(Outcome::Invalid {
                    code: err.as_raw(),
                    reason: err.error_string(),
                    cert: c.current_cert().map(X509Ref::to_owned),
                })
            }
        })
        .map_err(malformed("verifying the chain"))?;

    let certs = match outcome {
        Outcome::Valid(certs) => certs,
        Outcome::Invalid { code, reason, cert } => {
            return Err(map_verify_error(
                code,
                reason,
                cert.as_deref().unwrap_or(leaf),
                at,
                purpose,
            ))
        }
    };
    check_purpose(leaf, purpose)?;

    check_revocation(&certs, at, revocation)?;
    Ok(VerifiedChain { certs })
}

/// The revocation part of [`verify_chain`] alone: asks `revocation` about
/// every certificate of an already built path (`certs`, leaf first, anchor
/// last; the anchor is not asked) as of `at`. For a verifier that keeps a
/// validated path and re-checks only revocation on later uses.
///
/// # Errors
/// [`ChainError::Revoked`] (revoked at or before `at`),
/// [`ChainError::RevocationUnknown`], [`ChainError::RevocationCheckFailed`].
pub fn check_revocation(
    certs: &[X509],
    at: DateTime<Utc>,
    revocation: &dyn RevocationChecker,
) -> Result<(), ChainError> {
    check_revocation_until(certs, at, revocation).map(|_| ())
}

/// [`check_revocation`], and until when the verdict "not revoked" stands
/// for the same checker [`generation`](RevocationChecker::generation):
/// the earliest [`status_until`](RevocationChecker::status_until) of the
/// path, or a known future revocation time if earlier; `None` when some
/// answer cannot be reused.
///
/// # Errors
/// As [`check_revocation`].
pub fn check_revocation_until(
    certs: &[X509],
    at: DateTime<Utc>,
    revocation: &dyn RevocationChecker,
) -> Result<Option<DateTime<Utc>>, ChainError> {
    // The subject and serial are only written out for an error.
    let names = |cert: &X509| {
        (
            subject_text(cert.subject_name()),
            cert::cert_serial_hex(cert).unwrap_or_else(|_| "?".to_string()),
        )
    };
    let mut until = Some(DateTime::<Utc>::MAX_UTC);
    for pair in certs.windows(2) {
        let [cert, issuer] = pair else { continue };
        match revocation.status_until(cert, issuer) {
            Ok((CertStatus::Good, good_until)) => until = until.min(good_until),
            Ok((
                CertStatus::Revoked {
                    at: revoked_at,
                    reason,
                },
                good_until,
            )) => {
                if revoked_at <= at {
                    let (subject, serial) = names(cert);
                    return Err(ChainError::Revoked {
                        subject,
                        serial,
                        reason,
                        revoked_at,
                    });
                }
                until = until.min(good_until).min(Some(revoked_at));
            }
            Ok((CertStatus::Unknown, _)) => {
                let (subject, serial) = names(cert);
                return Err(ChainError::RevocationUnknown { subject, serial });
            }
            Err(source) => {
                let (subject, serial) = names(cert);
                return Err(ChainError::RevocationCheckFailed {
                    subject,
                    serial,
                    source,
                });
            }
        }
    }
    Ok(until)
}

fn map_verify_error(
    code: i32,
    reason: &'static str,
    cert: &X509Ref,
    at: DateTime<Utc>,
    purpose: Purpose,
) -> ChainError {
    let subject = subject_text(cert.subject_name());
    match code {
        openssl_sys::X509_V_ERR_CERT_HAS_EXPIRED => ChainError::Expired {
            subject,
            not_after: cert::asn1_to_utc(cert.not_after()).unwrap_or(at),
            at,
        },
        openssl_sys::X509_V_ERR_CERT_NOT_YET_VALID => ChainError::NotYetValid {
            subject,
            not_before: cert::asn1_to_utc(cert.not_before()).unwrap_or(at),
            at,
        },
        openssl_sys::X509_V_ERR_INVALID_PURPOSE => ChainError::WrongPurpose {
            subject,
            purpose,
            detail: "OpenSSL's purpose check failed (key usage or extended key usage)",
        },
        _ => ChainError::Untrusted {
            subject,
            reason,
            code,
        },
    }
}

fn check_purpose(leaf: &X509Ref, purpose: Purpose) -> Result<(), ChainError> {
    let wrong = |detail| ChainError::WrongPurpose {
        subject: subject_text(leaf.subject_name()),
        purpose,
        detail,
    };
    let ku = leaf.key_usage();
    let eku = leaf.extended_key_usage();
    if purpose != Purpose::Any && ku.is_some_and(|k| k.contains(X509KeyUsage::KEY_CERT_SIGN)) {
        return Err(wrong("it is a CA certificate (keyCertSign)"));
    }
    match purpose {
        Purpose::Auth => {
            let tls = X509ExtendedKeyUsage::SSL_SERVER | X509ExtendedKeyUsage::SSL_CLIENT;
            if !eku.is_some_and(|e| e.contains(tls)) {
                return Err(wrong(
                    "extendedKeyUsage must include serverAuth and clientAuth",
                ));
            }
            if ku.is_some_and(|k| !k.contains(X509KeyUsage::DIGITAL_SIGNATURE)) {
                return Err(wrong("keyUsage lacks digitalSignature"));
            }
        }
        Purpose::ClientAuth => {
            if eku.is_some_and(|e| !e.contains(X509ExtendedKeyUsage::SSL_CLIENT)) {
                return Err(wrong("extendedKeyUsage lacks clientAuth"));
            }
            if ku.is_some_and(|k| !k.contains(X509KeyUsage::DIGITAL_SIGNATURE)) {
                return Err(wrong("keyUsage lacks digitalSignature"));
            }
        }
        Purpose::Sign => {
            let need = X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::NON_REPUDIATION;
            if !ku.is_some_and(|k| k.contains(need)) {
                return Err(wrong(
                    "keyUsage must include digitalSignature and nonRepudiation",
                ));
            }
            let dedicated = X509ExtendedKeyUsage::TIMESTAMP | X509ExtendedKeyUsage::OCSP_SIGN;
            if eku.is_some_and(|e| e.intersects(dedicated)) {
                return Err(wrong(
                    "it is dedicated to time-stamping or OCSP signing (extendedKeyUsage)",
                ));
            }
        }
        Purpose::Timestamping => {
            if eku != Some(X509ExtendedKeyUsage::TIMESTAMP) {
                return Err(wrong("extendedKeyUsage must be exactly timeStamping"));
            }
        }
        Purpose::Any => {}
    }
    Ok(())
}
