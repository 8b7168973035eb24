//! The NDXP profile of RFC 9421: how node-to-node requests and responses are
//! signed and verified (docs/design.md §5). `docs/signatures.md` is the normative
//! text; this module implements it on top of [`crate::httpsig`],
//! [`crate::digest`], [`crate::cert`] and [`crate::chain`], so another vendor
//! can verify an NDXP message with `ndxp-sign` alone.
//!
//! # The profile in short
//!
//! * One signature per message, labelled [`LABEL`] (`ndxp`), with the
//!   parameters `created`, `keyid`, `alg`, `tag` in that order; `tag` is
//!   [`TAG`] (`ndxp`), `keyid` is the SHA-256 fingerprint of the signer's
//!   certificate ([`crate::cert::fingerprint_sha256`], 64 lowercase hex digits).
//! * A request covers `"@method" "@target-uri" "content-digest"
//!   "ndxp-client" "ndxp-id"`, then `"ndxp-user-id"` and `"ndxp-request-id"`
//!   when those fields are present ([`request_components`]).
//! * A response covers `"@status" "content-digest" "ndxp-id"
//!   "@method";req "@target-uri";req "content-digest";req
//!   "signature";req;key="ndxp"` ([`response_components`]), so it cannot be
//!   replayed onto another request.
//! * The body is bound by `Content-Digest` (RFC 9530, `sha-256`).
//! * The signer's certificate, then any intermediates, travel in
//!   [`SIGNER_CERT`] (`NDXP-Signer-Cert`) as an RFC 8941 List of Byte
//!   Sequences of DER: `NDXP-Signer-Cert: :MIIB...:, :MIIC...:`.
//! * A receiver accepts `created` within ±[`DEFAULT_WINDOW_SECS`] (300 s)
//!   of its clock and rejects an (`NDXP-Id`, signer) pair it has seen within
//!   that window ([`ReplayCache`]).
//!
//! # Bodies
//!
//! The functions here read message heads only. A proxy streams the body and
//! checks it against the signed `Content-Digest` as it goes:
//!
//! ```
//! # use ndxp_sign::digest::ContentDigestVerifier;
//! # fn f(verified: &ndxp_sign::profile::VerifiedMessage, chunks: &[&[u8]]) -> Result<(), Box<dyn std::error::Error>> {
//! // after verify_request(..) succeeded:
//! let mut check = ContentDigestVerifier::new(&verified.content_digest)?;
//! for chunk in chunks {
//!     check.update(chunk); // and forward the chunk
//! }
//! check.finish()?; // a mismatch: abort the exchange, log it as signature_invalid
//! # Ok(()) }
//! ```
//!
//! [`verify_request_with_body`] and [`verify_response_with_body`] do both
//! steps for a body already in memory.
//!
//! # Example
//!
//! ```
//! use ndxp_sign::ca::{InitOptions, Pki};
//! use ndxp_sign::cert::Profile;
//! use ndxp_sign::{csr, digest, key::KeyAlgorithm, profile};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let opts = InitOptions { ocsp_url: "http://127.0.0.1:1/ocsp".into(), ..InitOptions::default() };
//! let pki = Pki::init(&tmp.path().join("pki"), &opts)?;
//! let member = "VN/GOV/000.00.00.G22".parse()?;
//! let key = KeyAlgorithm::EcP256.generate()?;
//! let req = csr::build_sign_csr(&member, &key)?;
//! let cert = pki.issue(&req, Profile::Sign, 30)?;
//! let signer = profile::Signer::new(key, cert, pki.chain().to_vec())?;
//!
//! let body = br#"{"id":"001"}"#;
//! let (mut parts, ()) = http::Request::post("https://provider.example/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/lookup")
//!     .header(profile::NDXP_CLIENT, "VN/GOV/000.00.00.G22/QLHT")
//!     .header(profile::NDXP_ID, ndxp_core::TransactionId::new().to_string())
//!     .body(())?
//!     .into_parts();
//! let now = chrono::Utc::now();
//! profile::sign_request(&mut parts, &digest::content_digest(body), &signer, now)?;
//!
//! let policy = profile::ProfilePolicy::new(vec![pki.root_cert().clone()]);
//! let verified = profile::verify_request_with_body(&parts, body, &policy, now)?;
//! assert_eq!(verified.signer, member);
//! # Ok(()) }
//! ```

use ndxp_core::{ErrorCode, MemberId, SubsystemId, TransactionId};

use crate::cert::CertError;
use crate::chain::{BoxError, ChainError};
use crate::digest::DigestError;
use crate::httpsig::SignatureError;

mod components;
mod headers;
mod logged;
mod replay;
mod sign;
mod signer;
mod signer_cache;
mod verify;

#[cfg(test)]
mod tests;

pub use components::{request_components, response_components};
pub use headers::parse_signer_cert_header;
pub use logged::verify_logged;
pub use replay::ReplayCache;
pub use sign::{sign_request, sign_response, SignedInfo};
pub use signer::{Signer, SignerKeySource, SignerRole};
pub use signer_cache::SignerCache;
pub use verify::{
    verify_request, verify_request_from_intermediary, verify_request_with_body, verify_response,
    verify_response_with_body, ProfilePolicy, VerifiedMessage,
};

/// The signature label used in `Signature-Input` and `Signature`.
pub const LABEL: &str = "ndxp";
/// The `tag` parameter of every NDXP signature.
pub const TAG: &str = "ndxp";
/// Default acceptance window: `created` may be this many seconds before or
/// after the receiver's clock.
pub const DEFAULT_WINDOW_SECS: u64 = 300;

/// `NDXP-Client`: the calling subsystem.
pub const NDXP_CLIENT: &str = "ndxp-client";
/// `NDXP-Id`: the transaction id (UUID v7), the same in both nodes' logs.
pub const NDXP_ID: &str = "ndxp-id";
/// `NDXP-User-Id`: the end user, optional, signed when present.
pub const NDXP_USER_ID: &str = "ndxp-user-id";
/// `NDXP-Request-Id`: the information system's correlation id, optional,
/// signed when present.
pub const NDXP_REQUEST_ID: &str = "ndxp-request-id";
/// `NDXP-Signer-Cert`: the signer's certificate then its intermediates, an
/// RFC 8941 List of Byte Sequences of DER. Not covered by the signature: the
/// signed `keyid` is the leaf's fingerprint, which binds it.
pub const SIGNER_CERT: &str = "ndxp-signer-cert";
/// `Content-Digest` (RFC 9530).
pub const CONTENT_DIGEST: &str = "content-digest";

/// At most this many certificates are read from [`SIGNER_CERT`].
pub const MAX_SIGNER_CERTS: usize = 8;

/// Why a message could not be signed or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A header field the profile requires is absent.
    #[error("missing header field {0}")]
    MissingHeader(&'static str),
    /// A header field is present but not valid (not ASCII, repeated, not
    /// the expected syntax, too large).
    #[error("header field {field} is malformed: {reason}")]
    MalformedHeader {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
        /// The parser's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The signer certificate cannot be read or is not a member signing
    /// certificate.
    #[error("the signer certificate is not a usable NDXP signing certificate")]
    BadCertificate(#[source] CertError),
    /// The signer certificate does not chain to a trusted CA, has expired,
    /// is revoked, or is not for signing.
    #[error("the signer certificate is not trusted")]
    UntrustedSigner(#[source] ChainError),
    /// The signature's `keyid` is not the fingerprint of the certificate in
    /// `NDXP-Signer-Cert`.
    #[error(
        "signature keyid {keyid:?} is not the fingerprint {fingerprint} of the signer certificate"
    )]
    KeyIdMismatch {
        /// The `keyid` parameter.
        keyid: String,
        /// SHA-256 fingerprint of the certificate sent.
        fingerprint: String,
    },
    /// The signature parameters do not follow the profile (`tag`, `alg`,
    /// `created`, `keyid` missing or wrong, algorithm not allowed).
    #[error("signature does not follow the NDXP profile: {0}")]
    ProfileViolation(&'static str),
    /// The RFC 9421 signature is missing, malformed, or does not verify.
    #[error("HTTP message signature rejected")]
    Signature(#[source] SignatureError),
    /// The body does not match the signed `Content-Digest`.
    #[error("the body does not match the signed Content-Digest")]
    Digest(#[source] DigestError),
    /// `NDXP-Client` names a subsystem of another member than the signer's.
    #[error("NDXP-Client {client} does not belong to the signing member {signer}")]
    ClientNotOfSigner {
        /// The `NDXP-Client` subsystem.
        client: Box<SubsystemId>,
        /// The member of the signer certificate.
        signer: Box<MemberId>,
    },
    /// The response's `NDXP-Id` differs from the request's.
    #[error("response NDXP-Id {response} does not match request NDXP-Id {request}")]
    IdMismatch {
        /// `NDXP-Id` of the request.
        request: TransactionId,
        /// `NDXP-Id` of the response.
        response: TransactionId,
    },
    /// `created` is outside the acceptance window around the receiver's
    /// clock (check both clocks, NTP).
    #[error("signature created at {created} is outside ±{window} s of now ({now})")]
    OutsideWindow {
        /// `created` (Unix seconds).
        created: i64,
        /// The receiver's time (Unix seconds).
        now: i64,
        /// The window in seconds.
        window: u64,
    },
    /// The same (`NDXP-Id`, signer) pair was accepted before within the
    /// window.
    #[error("replayed message: NDXP-Id {ndxp_id} from signer {fingerprint} was already accepted")]
    Replay {
        /// The transaction id.
        ndxp_id: TransactionId,
        /// The signer's certificate fingerprint.
        fingerprint: String,
    },
    /// The replay cache holds its maximum of live entries; the message is
    /// refused rather than risk accepting a replay. Raise
    /// `max_entries` above the peak message rate times twice the window.
    #[error(
        "replay cache is full ({max_entries} live entries); refusing rather than risking a replay"
    )]
    ReplayCacheFull {
        /// The configured bound.
        max_entries: usize,
    },
    /// The replay cache holds its per-member share of live entries for
    /// this signer's member; the message is refused so that one peer cannot
    /// crowd every other peer out of the cache. Raise the share above that
    /// member's peak message rate times twice the window.
    #[error(
        "member {member} has {max_per_member} live entries in the replay cache, its whole share; \
         refusing its new messages until old ones leave the window"
    )]
    ReplayShareFull {
        /// The signer's member.
        member: Box<MemberId>,
        /// The configured share.
        max_per_member: usize,
    },
    /// The local signing key does not match the local certificate, or the
    /// certificate is not a member signing certificate (a configuration
    /// error of this node).
    #[error("signer configuration is invalid: {0}")]
    BadSigner(&'static str),
}

impl ProfileError {
    /// The docs/design.md §4 problem code for this error: `ndxp.bad_request` for
    /// missing or malformed header fields, `ndxp.rate_limited` for a full
    /// replay cache, `ndxp.internal` for a bad local signer, otherwise
    /// `ndxp.signature_invalid` (answer 400 for a request, 502 for a
    /// provider's response).
    #[must_use]
    pub fn problem_code(&self) -> ErrorCode {
        match self {
            Self::MissingHeader(_) | Self::MalformedHeader { .. } => ErrorCode::BadRequest,
            Self::Signature(
                SignatureError::MissingHeader(_)
                | SignatureError::MalformedField { .. }
                | SignatureError::FieldTooLarge { .. },
            ) => ErrorCode::BadRequest,
            Self::ReplayCacheFull { .. } | Self::ReplayShareFull { .. } => ErrorCode::RateLimited,
            // Our own key could not sign (e.g. its token was removed).
            Self::BadSigner(_) | Self::Signature(SignatureError::KeyStore(_)) => {
                ErrorCode::Internal
            }
            _ => ErrorCode::SignatureInvalid,
        }
    }
}

type Result<T, E = ProfileError> = std::result::Result<T, E>;

fn malformed(field: &'static str, reason: &'static str) -> ProfileError {
    ProfileError::MalformedHeader {
        field,
        reason,
        source: None,
    }
}

fn malformed_by<E>(field: &'static str, reason: &'static str) -> impl FnOnce(E) -> ProfileError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| ProfileError::MalformedHeader {
        field,
        reason,
        source: Some(Box::new(e)),
    }
}
