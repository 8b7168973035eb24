//! RFC 9421 HTTP Message Signatures over `http` 1.x message heads.
//!
//! The body is never read here: it is bound to a signature by covering the
//! `content-digest` field (see [`crate::digest`]), so a proxy can sign and
//! verify message heads while streaming bodies.
//!
//! * [`SigningKey`] / [`VerifyingKey`] wrap OpenSSL keys with an
//!   [`Algorithm`] and a `keyid`.
//! * [`SignatureParams`] is the covered component list plus `created`,
//!   `expires`, `nonce`, `alg`, `keyid`, `tag`, in the order given.
//! * [`signature_base`] builds the exact RFC 9421 §2.5 signature base.
//! * [`sign_request`] / [`sign_response`] add `Signature-Input` and
//!   `Signature` members under a label; [`verify`] checks one labelled
//!   signature against a [`VerifyPolicy`] and a [`KeyResolver`].
//!
//! A response is bound to its request by covering request components with
//! the `req` flag, e.g. `"@method";req`, `"@target-uri";req`,
//! `"content-digest";req` and the request's own signature
//! ([`Component::request_signature`], `"signature";req;key="ndxp"`). RFC 9421
//! §7.3.7 warns that signing a signature value alone does not transitively
//! cover the request, so cover the request components as well.
//!
//! ```
//! use http::Request;
//! use ndxp_sign::httpsig::*;
//! use openssl::{ec::{EcGroup, EcKey}, nid::Nid, pkey::PKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
//! let key = SigningKey::new(PKey::from_ec_key(EcKey::generate(&group)?)?, "member-1")?;
//! let public = key.verifying_key()?;
//!
//! let body = b"{\"hello\": \"world\"}";
//! let (mut parts, ()) = Request::post("https://provider.example/r1/svc?x=1")
//!     .header("content-digest", ndxp_sign::digest::content_digest(body))
//!     .body(())?
//!     .into_parts();
//! let now = 1_700_000_000;
//! let params = SignatureParams::new(vec![
//!     Component::method(),
//!     Component::target_uri(),
//!     Component::field("content-digest"),
//! ])
//! .with_created(now)
//! .with_keyid(key.keyid())
//! .with_alg(key.algorithm());
//! sign_request(&mut parts, "ndxp", &params, &key)?;
//!
//! let policy = VerifyPolicy::new(vec![Component::method(), Component::field("content-digest")]);
//! let resolver = |keyid: &str| (keyid == "member-1").then(|| public.clone());
//! let verified = verify(&MessageView::request(&parts), "ndxp", &policy, now + 5, &resolver)?;
//! assert_eq!(verified.keyid, "member-1");
//! assert_eq!(verified.algorithm, Algorithm::EcdsaP256Sha256);
//! # Ok(())
//! # }
//! ```

use openssl::error::ErrorStack;

mod base;
mod components;
mod keys;
mod params;
mod sign;
mod verify;
mod view;

#[cfg(test)]
mod tests;

pub use base::signature_base;
pub use components::{Component, ComponentParam};
pub(crate) use keys::{raw_sign, raw_verify, RawKind};
pub use keys::{Algorithm, MessageSigner, SigningKey, StoreSigningKey, VerifyingKey};
pub use params::SignatureParams;
pub use sign::{attach_signature, create_signature, sign_request, sign_response, SignatureOutput};
pub use verify::{
    parse_signature_headers, verify, verify_parsed, KeyResolver, VerifiedSignature, VerifyPolicy,
};
pub use view::{MessageView, RequestView, ResponseView};

/// Name of the `Signature-Input` field.
pub const SIGNATURE_INPUT: &str = "signature-input";
/// Name of the `Signature` field.
pub const SIGNATURE: &str = "signature";

/// Minimum RSA modulus size accepted for signing and verification.
pub const MIN_RSA_BITS: u32 = 2048;

/// Errors raised while building, signing or verifying HTTP message signatures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// A required header field is absent.
    #[error("missing header field {0}")]
    MissingHeader(&'static str),
    /// A header field is larger than the policy allows.
    #[error("header field {field} is larger than {limit} bytes")]
    FieldTooLarge {
        /// The field name.
        field: &'static str,
        /// The limit in bytes.
        limit: usize,
    },
    /// A structured field (RFC 8941) failed to parse.
    #[error("malformed structured field {field}")]
    MalformedField {
        /// The field name.
        field: String,
        /// The parser error.
        #[source]
        source: sfv::Error,
    },
    /// `Signature-Input` parsed, but its member for the label is not a valid
    /// signature parameter list.
    #[error("invalid signature parameters: {0}")]
    InvalidSignatureParams(String),
    /// The label is not present in `Signature-Input`.
    #[error("no signature labelled {0:?} in Signature-Input")]
    UnknownLabel(String),
    /// The label is in `Signature-Input` but has no byte sequence in
    /// `Signature`.
    #[error("no signature value labelled {0:?} in Signature")]
    MissingSignatureValue(String),
    /// The label is already used in the message.
    #[error("signature label {0:?} is already present")]
    DuplicateLabel(String),
    /// The label is not a valid structured-field key.
    #[error("invalid signature label {0:?}")]
    InvalidLabel(String),
    /// A component identifier is not valid (unknown derived component,
    /// unknown or incompatible parameter, not applicable to the message).
    #[error("invalid component {component}: {reason}")]
    InvalidComponent {
        /// The serialized component identifier.
        component: String,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// A covered component has no value in the message.
    #[error("component {0} is not present in the message")]
    MissingComponent(String),
    /// A component is listed twice.
    #[error("component {0} is covered more than once")]
    DuplicateComponent(String),
    /// A component value contains non-ASCII bytes or a line break.
    #[error("component {0} has a value that cannot be signed (non-ASCII or newline)")]
    InvalidComponentValue(String),
    /// The policy requires a component the signature does not cover.
    #[error("signature does not cover required component {0}")]
    MissingRequiredComponent(String),
    /// The signature has no `created` parameter but the policy requires one.
    #[error("signature has no created parameter")]
    MissingCreated,
    /// The signature has no `keyid` parameter.
    #[error("signature has no keyid parameter")]
    MissingKeyId,
    /// `keyid` in the parameters differs from the signing key's.
    #[error("keyid {params:?} in the parameters differs from the key's {key:?}")]
    KeyIdMismatch {
        /// keyid in the parameters.
        params: String,
        /// keyid of the key.
        key: String,
    },
    /// The signature is older than the policy's maximum age.
    #[error("signature created at {created} is too old at {now}")]
    TooOld {
        /// `created` (Unix seconds).
        created: i64,
        /// Verification time (Unix seconds).
        now: i64,
    },
    /// The signature's `expires` time has passed.
    #[error("signature expired at {expires} (now {now})")]
    Expired {
        /// `expires` (Unix seconds).
        expires: i64,
        /// Verification time (Unix seconds).
        now: i64,
    },
    /// `created` lies in the future beyond the allowed clock skew.
    #[error("signature created at {created} is in the future (now {now})")]
    CreatedInFuture {
        /// `created` (Unix seconds).
        created: i64,
        /// Verification time (Unix seconds).
        now: i64,
    },
    /// The `tag` parameter is absent or differs from the required one.
    #[error("signature tag {found:?} does not match required tag {expected:?}")]
    TagMismatch {
        /// Tag required by the policy.
        expected: String,
        /// Tag found in the signature.
        found: Option<String>,
    },
    /// The resolver does not know the key.
    #[error("unknown key {0:?}")]
    UnknownKey(String),
    /// The `alg` value is not one this implementation supports.
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// The `alg` parameter disagrees with the key's algorithm.
    #[error("algorithm mismatch: key uses {key}, signature declares {declared}")]
    AlgorithmMismatch {
        /// The key's algorithm.
        key: Algorithm,
        /// The declared algorithm.
        declared: Algorithm,
    },
    /// The algorithm is not allowed by the policy.
    #[error("algorithm {0} is not allowed by policy")]
    AlgorithmNotAllowed(Algorithm),
    /// The key cannot be used with the algorithm (type, curve or size).
    #[error("key is not usable with {algorithm}: {reason}")]
    UnsuitableKey {
        /// The algorithm.
        algorithm: Algorithm,
        /// Why the key does not fit.
        reason: &'static str,
    },
    /// The signature does not verify.
    #[error("invalid signature")]
    InvalidSignature,
    /// An OpenSSL operation failed.
    #[error("cryptographic operation failed")]
    Crypto(#[source] ErrorStack),
    /// The key store holding a [`StoreSigningKey`] failed to sign or to
    /// give its public key.
    #[error("the key store failed")]
    KeyStore(#[source] crate::key::KeyError),
}

impl From<ErrorStack> for SignatureError {
    fn from(e: ErrorStack) -> Self {
        Self::Crypto(e)
    }
}

type Result<T, E = SignatureError> = std::result::Result<T, E>;
