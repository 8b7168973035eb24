//! Node registration requests: the document a member's node sends to the
//! management role to be admitted (`ndxp-node register`), and its check on
//! the management side.
//!
//! The request is a JWS (compact, `typ` [`REGISTRATION_TYP`]) signed with the
//! **member's signing key**, with the signing certificate and its chain in
//! `x5c`. Its payload names the member, the node, the node's peer address
//! and carries the node's **authentication certificate**. The management
//! side accepts it only when:
//!
//! - the signature verifies and the `x5c` chain reaches a trusted CA at the
//!   time of checking, and the signer certificate is a signing certificate
//!   (`Purpose::Sign`) of exactly the member named in the payload;
//! - the authentication certificate chains to a trusted CA, is an
//!   authentication certificate (`Purpose::Auth`) of exactly that member
//!   and node (one of another member is
//!   [`RegistrationError::NotOwnCertificate`]);
//! - `submitted_at` is within [`MAX_AGE`] of the time of checking (a stale
//!   or future-dated request is refused; a replay within the window is a
//!   duplicate pending request, which the registry refuses).
//!
//! ```no_run
//! # use ndxp_registry::registration::*;
//! # fn demo(key: &ndxp_sign::openssl::pkey::PKeyRef<ndxp_sign::openssl::pkey::Private>,
//! #         sign_chain: &[ndxp_sign::openssl::x509::X509], auth_pem: String,
//! #         anchors: &[ndxp_sign::openssl::x509::X509]) -> Result<(), RegistrationError> {
//! let payload = RegistrationPayload::new(
//!     "VN/GOV/000.00.00.G22".parse().unwrap(),
//!     "node-g22".parse().unwrap(),
//!     "https://node.g22.example.vn:8443".into(),
//!     auth_pem,
//!     chrono::Utc::now(),
//! );
//! let jws = sign_registration(&payload, key, sign_chain)?;
//! let checked = verify_registration(&jws, anchors, chrono::Utc::now())?;
//! assert_eq!(checked.payload.node.as_str(), "node-g22");
//! # Ok(()) }
//! ```

use chrono::{DateTime, Duration, Utc};
use ndxp_core::{MemberId, NodeName};
use ndxp_sign::chain::{verify_chain, NoRevocationCheck, Purpose};
use ndxp_sign::jws::{self, JwsAlgorithm, VerifyOptions};
use ndxp_sign::openssl::pkey::{Id, PKeyRef, Private};
use ndxp_sign::openssl::x509::X509;
use serde::{Deserialize, Serialize};

/// The `typ` header of a registration request.
pub const REGISTRATION_TYP: &str = "ndxp-registration+jwt";
/// The `format` member of the payload.
pub const REGISTRATION_FORMAT: &str = "ndxp-registration/1";
/// How far `submitted_at` may be from the time of checking.
pub const MAX_AGE: Duration = Duration::minutes(10);
/// The largest request accepted, in bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// What a node asks to be registered as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationPayload {
    /// Always [`REGISTRATION_FORMAT`].
    pub format: String,
    /// The member that owns the node.
    pub member: MemberId,
    /// The node's name, unique within the member.
    pub node: NodeName,
    /// The `https://` URL of the node's peer port, as other nodes will reach it.
    pub address: String,
    /// The node's authentication (TLS) certificate, PEM.
    pub auth_cert_pem: String,
    /// When the node made the request.
    pub submitted_at: DateTime<Utc>,
}

impl RegistrationPayload {
    /// A payload in the current format.
    pub fn new(
        member: MemberId,
        node: NodeName,
        address: String,
        auth_cert_pem: String,
        submitted_at: DateTime<Utc>,
    ) -> Self {
        Self {
            format: REGISTRATION_FORMAT.to_string(),
            member,
            node,
            address,
            auth_cert_pem,
            submitted_at,
        }
    }
}

/// A request that passed every check of [`verify_registration`].
#[derive(Debug, Clone)]
pub struct VerifiedRegistration {
    /// The payload.
    pub payload: RegistrationPayload,
    /// SHA-256 fingerprint of the authentication certificate (lowercase hex).
    pub auth_cert_sha256: String,
}

/// Why a registration request was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistrationError {
    /// The JWS did not verify or its chain is not trusted.
    #[error("the registration request's signature is not valid")]
    Signature(#[source] ndxp_sign::jws::JwsError),
    /// The payload is not a registration request.
    #[error("the registration request is malformed: {0}")]
    Malformed(String),
    /// The signer is not a signing certificate of the member named.
    #[error("the request is signed by {signer}, not by a signing certificate of {member}")]
    WrongSigner {
        /// Who signed.
        signer: String,
        /// The member the request names.
        member: MemberId,
    },
    /// The authentication certificate is not valid for the node.
    #[error("the node's authentication certificate is not acceptable: {0}")]
    AuthCertificate(String),
    /// The authentication certificate belongs to a node of another member:
    /// a member registers only its own nodes' certificates.
    #[error(
        "the authentication certificate was issued to node {node} of {owner}, not to a node of \
         {member}: a member may register only its own nodes' certificates"
    )]
    NotOwnCertificate {
        /// The member the certificate names.
        owner: Box<MemberId>,
        /// The node the certificate names.
        node: Box<NodeName>,
        /// The member that asked.
        member: Box<MemberId>,
    },
    /// `submitted_at` is too far from now.
    #[error("the request was made at {submitted_at}, more than {} minutes from now; make a new one", MAX_AGE.num_minutes())]
    Stale {
        /// When the request says it was made.
        submitted_at: DateTime<Utc>,
    },
    /// The address is not an `https://` URL.
    #[error("the node address {0:?} must be an https:// URL")]
    BadAddress(String),
    /// The signing key type is not supported.
    #[error("signing the request failed")]
    Sign(#[source] ndxp_sign::jws::JwsError),
}

fn algorithm_for(key: &PKeyRef<Private>) -> JwsAlgorithm {
    if key.id() == Id::EC {
        JwsAlgorithm::Es256
    } else {
        JwsAlgorithm::Ps256
    }
}

/// Signs a registration request with the member's signing key;
/// `sign_chain` is the signing certificate followed by its intermediates.
pub fn sign_registration(
    payload: &RegistrationPayload,
    key: &PKeyRef<Private>,
    sign_chain: &[X509],
) -> Result<String, RegistrationError> {
    let body =
        serde_json::to_vec(payload).map_err(|e| RegistrationError::Malformed(e.to_string()))?;
    jws::sign(
        &body,
        key,
        algorithm_for(key),
        sign_chain,
        Some(REGISTRATION_TYP),
    )
    .map_err(RegistrationError::Sign)
}

/// Checks a registration request against the trusted CA certificates at
/// `now` (see the module documentation for every rule).
pub fn verify_registration(
    jws_text: &str,
    trusted_cas: &[X509],
    now: DateTime<Utc>,
) -> Result<VerifiedRegistration, RegistrationError> {
    let opts = VerifyOptions {
        max_len: MAX_REQUEST_BYTES,
        ..VerifyOptions::default()
    };
    let verified = jws::verify_with_anchors(jws_text.trim(), trusted_cas, now, &opts)
        .map_err(RegistrationError::Signature)?;
    let payload: RegistrationPayload = serde_json::from_slice(&verified.payload)
        .map_err(|e| RegistrationError::Malformed(e.to_string()))?;
    if payload.format != REGISTRATION_FORMAT {
        return Err(RegistrationError::Malformed(format!(
            "format is {:?}, expected {REGISTRATION_FORMAT:?}",
            payload.format
        )));
    }
    if (payload.submitted_at - now).abs() > MAX_AGE {
        return Err(RegistrationError::Stale {
            submitted_at: payload.submitted_at,
        });
    }
    if !payload.address.starts_with("https://") || payload.address.len() > 2048 {
        return Err(RegistrationError::BadAddress(payload.address));
    }

    // The signer: a signing certificate of the member named.
    let (leaf, intermediates) = verified
        .chain
        .split_first()
        .ok_or_else(|| RegistrationError::Malformed("no signer certificate".into()))?;
    let signer_ok = verify_chain(
        leaf,
        intermediates,
        trusted_cas,
        now,
        Purpose::Sign,
        &NoRevocationCheck,
    )
    .is_ok()
        && ndxp_sign::cert::member_of(leaf).is_ok_and(|m| m == payload.member);
    if !signer_ok {
        return Err(RegistrationError::WrongSigner {
            signer: ndxp_sign::cert::subject_text(leaf.subject_name()),
            member: payload.member,
        });
    }

    // The node's TLS certificate: an authentication certificate of that
    // member and node, from a trusted CA.
    let auth_cert_sha256 = verify_auth_certificate(
        &payload.auth_cert_pem,
        &payload.member,
        &payload.node,
        intermediates,
        trusted_cas,
        now,
    )?;
    Ok(VerifiedRegistration {
        payload,
        auth_cert_sha256,
    })
}

/// Checks a node's authentication (TLS) certificate, PEM (the leaf,
/// optionally followed by its intermediates): it must chain to one of
/// `trusted_cas` at `now` (with `intermediates` as further untrusted
/// certificates), be an authentication certificate (`Purpose::Auth`) and
/// be issued to exactly `member`'s node `node`. Returns its SHA-256
/// fingerprint, lowercase hex. Used for registrations and for
/// additional certificates of an existing node (rotation).
pub fn verify_auth_certificate(
    auth_cert_pem: &str,
    member: &MemberId,
    node: &NodeName,
    intermediates: &[X509],
    trusted_cas: &[X509],
    now: DateTime<Utc>,
) -> Result<String, RegistrationError> {
    let certs = ndxp_sign::cert::read_pem_chain(auth_cert_pem.as_bytes())
        .map_err(|e| RegistrationError::AuthCertificate(e.to_string()))?;
    let (auth, auth_rest) = certs.split_first().ok_or_else(|| {
        RegistrationError::AuthCertificate("no certificate in auth_cert_pem".into())
    })?;
    let mut untrusted: Vec<X509> = auth_rest.to_vec();
    untrusted.extend(intermediates.iter().cloned());
    verify_chain(
        auth,
        &untrusted,
        trusted_cas,
        now,
        Purpose::Auth,
        &NoRevocationCheck,
    )
    .map_err(|e| RegistrationError::AuthCertificate(e.to_string()))?;
    let (cert_member, cert_node) = ndxp_sign::cert::node_of(auth)
        .map_err(|e| RegistrationError::AuthCertificate(e.to_string()))?;
    if &cert_member != member {
        return Err(RegistrationError::NotOwnCertificate {
            owner: Box::new(cert_member),
            node: Box::new(cert_node),
            member: Box::new(member.clone()),
        });
    }
    if &cert_node != node {
        return Err(RegistrationError::AuthCertificate(format!(
            "it was issued to node {cert_node} of {cert_member}, not to {node} of {member}"
        )));
    }
    ndxp_sign::cert::try_fingerprint_sha256(auth)
        .map_err(|e| RegistrationError::AuthCertificate(e.to_string()))
}
