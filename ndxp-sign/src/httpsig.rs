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

use std::borrow::{Borrow, Cow};
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri};
use openssl::bn::BigNum;
use openssl::ec::EcKey;
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::md::Md;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use openssl::pkey_ctx::PkeyCtx;
use openssl::rsa::Padding;
use openssl::sha::{Sha256, Sha512};
use openssl::sign::{RsaPssSaltlen, Signer, Verifier};
use sfv::{
    BareItem, BareItemFromInput, Dictionary, FieldType, GenericBareItem, Item, KeyRef, List,
    ListEntry, Parameters, Parser, StringRef, Version,
};

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
}

impl From<ErrorStack> for SignatureError {
    fn from(e: ErrorStack) -> Self {
        Self::Crypto(e)
    }
}

type Result<T, E = SignatureError> = std::result::Result<T, E>;

// ---------------------------------------------------------------------------
// Algorithms and keys
// ---------------------------------------------------------------------------

/// HTTP signature algorithms supported by NDXP (RFC 9421 §3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// `ecdsa-p256-sha256`: raw 64-byte `r || s` signature (§3.3.4).
    EcdsaP256Sha256,
    /// `rsa-pss-sha512`: RSASSA-PSS, MGF1-SHA-512, 64-byte salt (§3.3.1).
    RsaPssSha512,
    /// `rsa-v1_5-sha256`: RSASSA-PKCS1-v1_5 with SHA-256 (§3.3.2).
    RsaV15Sha256,
}

impl Algorithm {
    /// All supported algorithms.
    pub const ALL: [Algorithm; 3] = [
        Algorithm::EcdsaP256Sha256,
        Algorithm::RsaPssSha512,
        Algorithm::RsaV15Sha256,
    ];

    /// The registered algorithm name, e.g. `ecdsa-p256-sha256`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EcdsaP256Sha256 => "ecdsa-p256-sha256",
            Self::RsaPssSha512 => "rsa-pss-sha512",
            Self::RsaV15Sha256 => "rsa-v1_5-sha256",
        }
    }

    /// The default algorithm for a key: ECDSA for EC P-256 keys,
    /// `rsa-pss-sha512` for RSA and RSA-PSS keys.
    ///
    /// # Errors
    /// [`SignatureError::UnsuitableKey`] for other key types.
    pub fn default_for_key<T: HasPublic>(key: &PKeyRef<T>) -> Result<Self> {
        match key.id() {
            Id::EC => Ok(Self::EcdsaP256Sha256),
            Id::RSA | Id::RSA_PSS => Ok(Self::RsaPssSha512),
            _ => Err(SignatureError::UnsuitableKey {
                algorithm: Self::EcdsaP256Sha256,
                reason: "only EC P-256 and RSA keys are supported",
            }),
        }
    }

    fn check_key<T: HasPublic>(self, key: &PKeyRef<T>) -> Result<()> {
        let unsuitable = |reason| SignatureError::UnsuitableKey {
            algorithm: self,
            reason,
        };
        match self {
            Self::EcdsaP256Sha256 => {
                if key.id() != Id::EC {
                    return Err(unsuitable("not an EC key"));
                }
                let ec = key.ec_key()?;
                if ec.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
                    return Err(unsuitable("EC key is not on curve P-256"));
                }
            }
            Self::RsaPssSha512 | Self::RsaV15Sha256 => {
                match key.id() {
                    Id::RSA => {}
                    Id::RSA_PSS if self == Self::RsaPssSha512 => {}
                    Id::RSA_PSS => {
                        return Err(unsuitable("RSA-PSS key cannot make v1.5 signatures"))
                    }
                    _ => return Err(unsuitable("not an RSA key")),
                }
                if key.bits() < MIN_RSA_BITS {
                    return Err(unsuitable("RSA key shorter than 2048 bits"));
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Algorithm {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| SignatureError::UnsupportedAlgorithm(s.to_owned()))
    }
}

/// Sign `data` with `alg`, producing the wire form of the signature
/// (raw `r || s` for ECDSA). Shared with the JWS module.
pub(crate) fn raw_sign(
    key: &PKeyRef<Private>,
    digest: MessageDigest,
    kind: RawKind,
    data: &[u8],
) -> Result<Vec<u8>, ErrorStack> {
    match kind {
        RawKind::Ecdsa { coord_len } => {
            let hashed = openssl::hash::hash(digest, data)?;
            let ec = key.ec_key()?;
            let sig = EcdsaSig::sign(&hashed, &ec)?;
            let mut out = sig.r().to_vec_padded(coord_len)?;
            out.extend_from_slice(&sig.s().to_vec_padded(coord_len)?);
            Ok(out)
        }
        RawKind::RsaPss { salt_len } => {
            let mut signer = Signer::new(digest, key)?;
            signer.set_rsa_padding(Padding::PKCS1_PSS)?;
            signer.set_rsa_mgf1_md(digest)?;
            signer.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt_len))?;
            signer.sign_oneshot_to_vec(data)
        }
        RawKind::RsaPkcs1 => {
            let mut signer = Signer::new(digest, key)?;
            signer.set_rsa_padding(Padding::PKCS1)?;
            signer.sign_oneshot_to_vec(data)
        }
    }
}

/// Verify a wire-form signature; `Ok(false)` for a well-formed key and a
/// signature that does not verify.
pub(crate) fn raw_verify<T: HasPublic>(
    key: &PKeyRef<T>,
    digest: MessageDigest,
    kind: RawKind,
    data: &[u8],
    signature: &[u8],
) -> Result<bool, ErrorStack> {
    match kind {
        RawKind::Ecdsa { coord_len } => {
            let n = usize::try_from(coord_len).unwrap_or(0);
            if n == 0 || signature.len() != 2 * n {
                return Ok(false);
            }
            let r = BigNum::from_slice(&signature[..n])?;
            let s = BigNum::from_slice(&signature[n..])?;
            let sig = EcdsaSig::from_private_components(r, s)?;
            let hashed = openssl::hash::hash(digest, data)?;
            let ec = key.ec_key()?;
            // An invalid (r, s) makes OpenSSL return an error rather than
            // `false`; both mean "does not verify".
            Ok(sig.verify(&hashed, &ec).unwrap_or(false))
        }
        RawKind::RsaPss { salt_len } => {
            let mut verifier = Verifier::new(digest, key)?;
            verifier.set_rsa_padding(Padding::PKCS1_PSS)?;
            verifier.set_rsa_mgf1_md(digest)?;
            verifier.set_rsa_pss_saltlen(RsaPssSaltlen::custom(salt_len))?;
            Ok(verifier.verify_oneshot(signature, data).unwrap_or(false))
        }
        RawKind::RsaPkcs1 => {
            let mut verifier = Verifier::new(digest, key)?;
            verifier.set_rsa_padding(Padding::PKCS1)?;
            Ok(verifier.verify_oneshot(signature, data).unwrap_or(false))
        }
    }
}

/// Signature encoding families shared by HTTP signatures and JWS.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawKind {
    Ecdsa { coord_len: i32 },
    RsaPss { salt_len: i32 },
    RsaPkcs1,
}

/// Hash `data` with the digest of `alg` (low-level SHA API: no per-call
/// algorithm fetch as with `EVP_Digest*` in OpenSSL 3).
enum Prehash {
    Sha256([u8; 32]),
    Sha512([u8; 64]),
}

impl Prehash {
    fn of(alg: Algorithm, data: &[u8]) -> Self {
        match alg {
            Algorithm::EcdsaP256Sha256 | Algorithm::RsaV15Sha256 => Self::Sha256(sha256(data)),
            Algorithm::RsaPssSha512 => {
                let mut h = Sha512::new();
                h.update(data);
                Self::Sha512(h.finish())
            }
        }
    }

    fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Sha256(d) => d,
            Self::Sha512(d) => d,
        }
    }
}

fn sha256(data: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(data);
    h.finish()
}

/// Most idle contexts kept per key; more are freed after use.
const MAX_IDLE_CTX: usize = 32;

/// Pre-initialised `EVP_PKEY_CTX`s for one key (sign or verify, padding and
/// digest set). Setting a context up costs about as much as an RSA
/// verification in OpenSSL 3 (provider fetch, key export check, parameter
/// plumbing), so contexts are reused. A context is used by one thread at a
/// time: it is taken out of the pool for the operation and put back after
/// a successful one (a failed operation drops it).
struct CtxPool<T> {
    idle: Mutex<Vec<PkeyCtx<T>>>,
}

impl<T> CtxPool<T> {
    fn new() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Option<PkeyCtx<T>> {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }

    fn put(&self, ctx: PkeyCtx<T>) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE_CTX {
            idle.push(ctx);
        }
    }
}

/// How a key signs or verifies a digest.
enum Engine<T> {
    /// `ECDSA_do_sign` / `ECDSA_do_verify` on the EC key, `r || s` on the
    /// wire.
    Ecdsa(EcKey<T>),
    /// `EVP_PKEY_sign` / `EVP_PKEY_verify` on pooled contexts.
    Pkey(Arc<CtxPool<T>>),
}

impl<T> Clone for Engine<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Ecdsa(ec) => Self::Ecdsa(ec.clone()),
            Self::Pkey(pool) => Self::Pkey(Arc::clone(pool)),
        }
    }
}

impl<T: HasPublic> Engine<T> {
    fn new(key: &PKeyRef<T>, alg: Algorithm) -> Result<Self> {
        Ok(match alg {
            Algorithm::EcdsaP256Sha256 => Self::Ecdsa(key.ec_key()?),
            Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256 => {
                Self::Pkey(Arc::new(CtxPool::new()))
            }
        })
    }
}

/// Padding and digest settings shared by sign and verify contexts.
fn configure_ctx<T>(ctx: &mut PkeyCtx<T>, alg: Algorithm) -> Result<(), ErrorStack> {
    match alg {
        Algorithm::EcdsaP256Sha256 => ctx.set_signature_md(Md::sha256()),
        Algorithm::RsaV15Sha256 => {
            ctx.set_rsa_padding(Padding::PKCS1)?;
            ctx.set_signature_md(Md::sha256())
        }
        Algorithm::RsaPssSha512 => {
            ctx.set_rsa_padding(Padding::PKCS1_PSS)?;
            ctx.set_signature_md(Md::sha512())?;
            ctx.set_rsa_mgf1_md(Md::sha512())?;
            ctx.set_rsa_pss_saltlen(RsaPssSaltlen::custom(64))
        }
    }
}

/// A private key with its algorithm and `keyid`.
#[derive(Clone)]
pub struct SigningKey {
    key: PKey<Private>,
    alg: Algorithm,
    keyid: String,
    engine: Engine<Private>,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("alg", &self.alg)
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Wrap a key with its default algorithm ([`Algorithm::default_for_key`]).
    ///
    /// # Errors
    /// [`SignatureError::UnsuitableKey`] for unsupported key types, curves
    /// other than P-256, or RSA keys under 2048 bits.
    pub fn new(key: PKey<Private>, keyid: impl Into<String>) -> Result<Self> {
        let alg = Algorithm::default_for_key(&key)?;
        Self::with_algorithm(key, alg, keyid)
    }

    /// Wrap a key with an explicit algorithm.
    ///
    /// # Errors
    /// [`SignatureError::UnsuitableKey`] when the key does not fit `alg`.
    pub fn with_algorithm(
        key: PKey<Private>,
        alg: Algorithm,
        keyid: impl Into<String>,
    ) -> Result<Self> {
        alg.check_key(&key)?;
        let engine = Engine::new(&key, alg)?;
        Ok(Self {
            key,
            alg,
            keyid: keyid.into(),
            engine,
        })
    }

    /// The algorithm this key signs with.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key identifier.
    #[must_use]
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The private key itself, for signing other documents (JWS) with the
    /// same member key.
    #[must_use]
    pub fn private_key(&self) -> &PKeyRef<Private> {
        &self.key
    }

    /// The matching verifying key (same algorithm and keyid).
    ///
    /// # Errors
    /// [`SignatureError::Crypto`] if the public key cannot be extracted.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        let der = self.key.public_key_to_der()?;
        let public = PKey::public_key_from_der(&der)?;
        VerifyingKey::with_algorithm(public, self.alg, self.keyid.clone())
    }

    /// Sign raw bytes (normally a signature base) with this key's algorithm.
    ///
    /// # Errors
    /// [`SignatureError::Crypto`] on OpenSSL failure.
    pub fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>> {
        let digest = Prehash::of(self.alg, data);
        Ok(self.sign_digest(digest.as_bytes())?)
    }

    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        match &self.engine {
            Engine::Ecdsa(ec) => {
                let sig = EcdsaSig::sign(digest, ec)?;
                let mut out = sig.r().to_vec_padded(32)?;
                out.extend_from_slice(&sig.s().to_vec_padded(32)?);
                Ok(out)
            }
            Engine::Pkey(pool) => {
                let mut ctx = match pool.take() {
                    Some(ctx) => ctx,
                    None => {
                        let mut ctx = PkeyCtx::new(&self.key)?;
                        ctx.sign_init()?;
                        configure_ctx(&mut ctx, self.alg)?;
                        ctx
                    }
                };
                let mut out = Vec::new();
                ctx.sign_to_vec(digest, &mut out)?;
                pool.put(ctx);
                Ok(out)
            }
        }
    }
}

/// A public key with its algorithm and `keyid`.
#[derive(Clone)]
pub struct VerifyingKey {
    key: PKey<Public>,
    alg: Algorithm,
    keyid: String,
    engine: Engine<Public>,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Wrap a public key with its default algorithm.
    ///
    /// # Errors
    /// [`SignatureError::UnsuitableKey`] for unsupported keys.
    pub fn new(key: PKey<Public>, keyid: impl Into<String>) -> Result<Self> {
        let alg = Algorithm::default_for_key(&key)?;
        Self::with_algorithm(key, alg, keyid)
    }

    /// Wrap a public key with an explicit algorithm.
    ///
    /// # Errors
    /// [`SignatureError::UnsuitableKey`] when the key does not fit `alg`.
    pub fn with_algorithm(
        key: PKey<Public>,
        alg: Algorithm,
        keyid: impl Into<String>,
    ) -> Result<Self> {
        alg.check_key(&key)?;
        let engine = Engine::new(&key, alg)?;
        Ok(Self {
            key,
            alg,
            keyid: keyid.into(),
            engine,
        })
    }

    /// The algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The key identifier.
    #[must_use]
    pub fn keyid(&self) -> &str {
        &self.keyid
    }

    /// The wrapped OpenSSL key.
    #[must_use]
    pub fn public_key(&self) -> &PKeyRef<Public> {
        &self.key
    }

    /// Verify a signature over raw bytes.
    ///
    /// # Errors
    /// [`SignatureError::InvalidSignature`] when it does not verify.
    pub fn verify_bytes(&self, data: &[u8], signature: &[u8]) -> Result<()> {
        let digest = Prehash::of(self.alg, data);
        self.verify_digest(digest.as_bytes(), signature)
    }

    /// Verify a signature over a digest made with this key's algorithm.
    fn verify_digest(&self, digest: &[u8], signature: &[u8]) -> Result<()> {
        if self.verify_digest_raw(digest, signature)? {
            Ok(())
        } else {
            Err(SignatureError::InvalidSignature)
        }
    }

    fn verify_digest_raw(&self, digest: &[u8], signature: &[u8]) -> Result<bool, ErrorStack> {
        match &self.engine {
            Engine::Ecdsa(ec) => {
                if signature.len() != 64 {
                    return Ok(false);
                }
                let r = BigNum::from_slice(&signature[..32])?;
                let s = BigNum::from_slice(&signature[32..])?;
                let sig = EcdsaSig::from_private_components(r, s)?;
                // An invalid (r, s) makes OpenSSL return an error rather
                // than `false`; both mean "does not verify".
                Ok(sig.verify(digest, ec).unwrap_or(false))
            }
            Engine::Pkey(pool) => {
                let mut ctx = match pool.take() {
                    Some(ctx) => ctx,
                    None => {
                        let mut ctx = PkeyCtx::new(&self.key)?;
                        ctx.verify_init()?;
                        configure_ctx(&mut ctx, self.alg)?;
                        ctx
                    }
                };
                // As `EVP_DigestVerify`: an error (e.g. a signature of the
                // wrong length) means "does not verify". Only a context
                // that completed a good verification goes back to the pool.
                match ctx.verify(digest, signature) {
                    Ok(true) => {
                        pool.put(ctx);
                        Ok(true)
                    }
                    Ok(false) | Err(_) => Ok(false),
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------

/// A parameter of a component identifier (RFC 9421 §2.1, §2.2.8, §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ComponentParam {
    /// `sf`: strict structured-field re-serialisation.
    Sf,
    /// `key="..."`: one Dictionary member.
    Key(String),
    /// `bs`: each field line wrapped as a Byte Sequence.
    Bs,
    /// `req`: taken from the request that triggered this response.
    Req,
    /// `tr`: taken from trailers (not supported: always an error).
    Tr,
    /// `name="..."`: the query parameter of `@query-param`.
    Name(String),
}

impl ComponentParam {
    fn key(&self) -> &'static str {
        match self {
            Self::Sf => "sf",
            Self::Key(_) => "key",
            Self::Bs => "bs",
            Self::Req => "req",
            Self::Tr => "tr",
            Self::Name(_) => "name",
        }
    }
}

/// A component identifier: a field name or derived component name with
/// parameters (order preserved).
///
/// Equality ignores parameter order, as RFC 9421 §2 requires.
#[derive(Debug, Clone, Eq)]
pub struct Component {
    name: String,
    params: Vec<ComponentParam>,
}

impl PartialEq for Component {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.params.len() == other.params.len()
            && self.params.iter().all(|p| other.params.contains(p))
    }
}

impl Component {
    /// A component with the given name (case preserved), no parameters.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// An HTTP field component; the name is lower-cased.
    #[must_use]
    pub fn field(name: &str) -> Self {
        Self::new(name.to_ascii_lowercase())
    }

    /// `@method`.
    #[must_use]
    pub fn method() -> Self {
        Self::new("@method")
    }
    /// `@target-uri`.
    #[must_use]
    pub fn target_uri() -> Self {
        Self::new("@target-uri")
    }
    /// `@authority`.
    #[must_use]
    pub fn authority() -> Self {
        Self::new("@authority")
    }
    /// `@scheme`.
    #[must_use]
    pub fn scheme() -> Self {
        Self::new("@scheme")
    }
    /// `@request-target`.
    #[must_use]
    pub fn request_target() -> Self {
        Self::new("@request-target")
    }
    /// `@path`.
    #[must_use]
    pub fn path() -> Self {
        Self::new("@path")
    }
    /// `@query`.
    #[must_use]
    pub fn query() -> Self {
        Self::new("@query")
    }
    /// `@query-param;name="..."` (the name in its encoded form).
    #[must_use]
    pub fn query_param(name: impl Into<String>) -> Self {
        Self::new("@query-param").with_param(ComponentParam::Name(name.into()))
    }
    /// `@status`.
    #[must_use]
    pub fn status() -> Self {
        Self::new("@status")
    }

    /// `"signature";req;key="<label>"`: the request's signature value, for
    /// a response signature.
    #[must_use]
    pub fn request_signature(label: &str) -> Self {
        Self::field(SIGNATURE)
            .req()
            .with_param(ComponentParam::Key(label.to_owned()))
    }

    /// Add a parameter (kept in insertion order).
    #[must_use]
    pub fn with_param(mut self, p: ComponentParam) -> Self {
        self.params.push(p);
        self
    }
    /// Add `;sf`.
    #[must_use]
    pub fn sf(self) -> Self {
        self.with_param(ComponentParam::Sf)
    }
    /// Add `;key="..."`.
    #[must_use]
    pub fn key(self, member: impl Into<String>) -> Self {
        self.with_param(ComponentParam::Key(member.into()))
    }
    /// Add `;bs`.
    #[must_use]
    pub fn bs(self) -> Self {
        self.with_param(ComponentParam::Bs)
    }
    /// Add `;req`.
    #[must_use]
    pub fn req(self) -> Self {
        self.with_param(ComponentParam::Req)
    }

    /// The component name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters in order.
    #[must_use]
    pub fn params(&self) -> &[ComponentParam] {
        &self.params
    }

    fn has(&self, key: &str) -> bool {
        self.params.iter().any(|p| p.key() == key)
    }

    fn string_param(&self, key: &str) -> Option<&str> {
        self.params.iter().find_map(|p| match p {
            ComponentParam::Key(v) if key == "key" => Some(v.as_str()),
            ComponentParam::Name(v) if key == "name" => Some(v.as_str()),
            _ => None,
        })
    }

    /// Append the serialized identifier (an sf-string with parameters) to
    /// `out`; byte for byte what `sfv` makes of the equivalent `Item`.
    fn write_identifier(&self, out: &mut String) -> Result<()> {
        if !push_sf_string(out, &self.name) {
            return Err(self.invalid_unserializable("name is not a valid string"));
        }
        for (i, p) in self.params.iter().enumerate() {
            out.push(';');
            out.push_str(p.key());
            if let ComponentParam::Key(v) | ComponentParam::Name(v) = p {
                out.push('=');
                if !push_sf_string(out, v) {
                    return Err(self.invalid_unserializable("parameter is not a valid string"));
                }
            }
            if self.params[..i].iter().any(|q| q.key() == p.key()) {
                return Err(self.invalid_unserializable("duplicate parameter"));
            }
        }
        Ok(())
    }

    /// The serialized identifier, e.g. `"@query-param";name="Pet"`.
    ///
    /// # Errors
    /// [`SignatureError::InvalidComponent`] if the name or a parameter value
    /// is not a valid structured-field string.
    pub fn identifier(&self) -> Result<String> {
        let mut out = String::with_capacity(self.name.len() + 2);
        self.write_identifier(&mut out)?;
        Ok(out)
    }

    fn from_item(item: &Item) -> Result<Self> {
        Self::from_parts(
            &item.bare_item,
            item.params.iter().map(|(k, v)| (&**k, v)),
            || item.serialize(),
        )
    }

    /// A covered component from a parsed item; `serialize` gives the item's
    /// text for an error message.
    fn from_parts<'a, S, B, T, D>(
        bare_item: &'a GenericBareItem<S, B, T, D>,
        params: impl IntoIterator<Item = (&'a KeyRef, &'a GenericBareItem<S, B, T, D>)>,
        serialize: impl FnOnce() -> String,
    ) -> Result<Self>
    where
        S: Borrow<StringRef> + 'a,
        B: 'a,
        T: 'a,
        D: 'a,
    {
        let Some(name) = bare_item.as_string() else {
            return Err(SignatureError::InvalidSignatureParams(
                "covered component is not a string".into(),
            ));
        };
        let mut c = Component::new(name.as_str());
        for (k, v) in params {
            let p = match (k.as_str(), v) {
                ("sf", GenericBareItem::Boolean(true)) => ComponentParam::Sf,
                ("bs", GenericBareItem::Boolean(true)) => ComponentParam::Bs,
                ("req", GenericBareItem::Boolean(true)) => ComponentParam::Req,
                ("tr", GenericBareItem::Boolean(true)) => ComponentParam::Tr,
                ("key", GenericBareItem::String(s)) => {
                    ComponentParam::Key(s.borrow().as_str().to_owned())
                }
                ("name", GenericBareItem::String(s)) => {
                    ComponentParam::Name(s.borrow().as_str().to_owned())
                }
                _ => {
                    return Err(SignatureError::InvalidComponent {
                        component: serialize(),
                        reason: "unknown or mistyped component parameter",
                    })
                }
            };
            c.params.push(p);
        }
        Ok(c)
    }

    /// Error for a component that cannot even be serialized; must not call
    /// [`Self::identifier`] (which would recurse).
    fn invalid_unserializable(&self, reason: &'static str) -> SignatureError {
        SignatureError::InvalidComponent {
            component: format!("{:?}", self.name),
            reason,
        }
    }

    fn invalid(&self, reason: &'static str) -> SignatureError {
        SignatureError::InvalidComponent {
            component: self.display_lossy(),
            reason,
        }
    }

    fn display_lossy(&self) -> String {
        self.identifier()
            .unwrap_or_else(|_| format!("{:?}", self.name))
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_lossy())
    }
}

// ---------------------------------------------------------------------------
// Signature parameters
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ParamName {
    Created,
    Expires,
    Nonce,
    Alg,
    Keyid,
    Tag,
}

/// Covered components plus signature metadata (RFC 9421 §2.3), kept in the
/// order given so that a parsed value re-serialises byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    components: Vec<Component>,
    created: Option<i64>,
    expires: Option<i64>,
    nonce: Option<String>,
    alg: Option<Algorithm>,
    keyid: Option<String>,
    tag: Option<String>,
    order: Vec<ParamName>,
}

impl SignatureParams {
    /// Parameters covering `components`, with no metadata yet.
    #[must_use]
    pub fn new(components: Vec<Component>) -> Self {
        Self {
            components,
            created: None,
            expires: None,
            nonce: None,
            alg: None,
            keyid: None,
            tag: None,
            order: Vec::with_capacity(6),
        }
    }

    fn touch(&mut self, p: ParamName) {
        if !self.order.contains(&p) {
            self.order.push(p);
        }
    }

    /// Set `created` (Unix seconds).
    #[must_use]
    pub fn with_created(mut self, t: i64) -> Self {
        self.created = Some(t);
        self.touch(ParamName::Created);
        self
    }
    /// Set `expires` (Unix seconds).
    #[must_use]
    pub fn with_expires(mut self, t: i64) -> Self {
        self.expires = Some(t);
        self.touch(ParamName::Expires);
        self
    }
    /// Set `nonce`.
    #[must_use]
    pub fn with_nonce(mut self, n: impl Into<String>) -> Self {
        self.nonce = Some(n.into());
        self.touch(ParamName::Nonce);
        self
    }
    /// Set `alg`.
    #[must_use]
    pub fn with_alg(mut self, alg: Algorithm) -> Self {
        self.alg = Some(alg);
        self.touch(ParamName::Alg);
        self
    }
    /// Set `keyid`.
    #[must_use]
    pub fn with_keyid(mut self, k: impl Into<String>) -> Self {
        self.keyid = Some(k.into());
        self.touch(ParamName::Keyid);
        self
    }
    /// Set `tag`.
    #[must_use]
    pub fn with_tag(mut self, t: impl Into<String>) -> Self {
        self.tag = Some(t.into());
        self.touch(ParamName::Tag);
        self
    }

    /// Covered components in order.
    #[must_use]
    pub fn components(&self) -> &[Component] {
        &self.components
    }
    /// `created`.
    #[must_use]
    pub fn created(&self) -> Option<i64> {
        self.created
    }
    /// `expires`.
    #[must_use]
    pub fn expires(&self) -> Option<i64> {
        self.expires
    }
    /// `nonce`.
    #[must_use]
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }
    /// `alg`.
    #[must_use]
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }
    /// `keyid`.
    #[must_use]
    pub fn keyid(&self) -> Option<&str> {
        self.keyid.as_deref()
    }
    /// `tag`.
    #[must_use]
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Append the serialized inner list to `out`; byte for byte what `sfv`
    /// makes of the equivalent `InnerList`.
    fn write_serialized(&self, out: &mut String) -> Result<()> {
        out.push('(');
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            c.write_identifier(out)?;
        }
        out.push(')');
        let string = |out: &mut String, k: &str, v: &str, what: &str| {
            out.push(';');
            out.push_str(k);
            out.push('=');
            if push_sf_string(out, v) {
                Ok(())
            } else {
                Err(SignatureError::InvalidSignatureParams(format!(
                    "{what} is not a valid string"
                )))
            }
        };
        let int = |out: &mut String, k: &str, v: i64| {
            if !(SF_INTEGER_MIN..=SF_INTEGER_MAX).contains(&v) {
                return Err(SignatureError::InvalidSignatureParams(
                    "integer out of range".into(),
                ));
            }
            out.push(';');
            out.push_str(k);
            out.push('=');
            out.push_str(&v.to_string());
            Ok(())
        };
        for p in &self.order {
            match p {
                ParamName::Created => {
                    if let Some(v) = self.created {
                        int(out, "created", v)?;
                    }
                }
                ParamName::Expires => {
                    if let Some(v) = self.expires {
                        int(out, "expires", v)?;
                    }
                }
                ParamName::Nonce => {
                    if let Some(v) = &self.nonce {
                        string(out, "nonce", v, "nonce")?;
                    }
                }
                ParamName::Alg => {
                    if let Some(a) = self.alg {
                        string(out, "alg", a.as_str(), "alg")?;
                    }
                }
                ParamName::Keyid => {
                    if let Some(v) = &self.keyid {
                        string(out, "keyid", v, "keyid")?;
                    }
                }
                ParamName::Tag => {
                    if let Some(v) = &self.tag {
                        string(out, "tag", v, "tag")?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Serialize as the `@signature-params` value / `Signature-Input` member
    /// value, e.g. `("@method");created=1618884473;keyid="k"`.
    ///
    /// # Errors
    /// [`SignatureError::InvalidComponent`] or
    /// [`SignatureError::InvalidSignatureParams`] for values that are not
    /// valid structured-field strings or integers.
    pub fn serialize(&self) -> Result<String> {
        let mut out = String::with_capacity(128);
        self.write_serialized(&mut out)?;
        Ok(out)
    }

    /// Parse a serialized inner list (the inverse of [`serialize`](Self::serialize)).
    ///
    /// # Errors
    /// [`SignatureError::MalformedField`] or
    /// [`SignatureError::InvalidSignatureParams`].
    pub fn parse(s: &str) -> Result<Self> {
        let list: List = Parser::new(s)
            .with_version(Version::Rfc8941)
            .parse()
            .map_err(|e| SignatureError::MalformedField {
                field: SIGNATURE_INPUT.into(),
                source: e,
            })?;
        match list.as_slice() {
            [entry] => Self::from_entry(entry),
            _ => Err(SignatureError::InvalidSignatureParams(
                "expected exactly one inner list".into(),
            )),
        }
    }

    fn from_entry(entry: &ListEntry) -> Result<Self> {
        let ListEntry::InnerList(il) = entry else {
            return Err(SignatureError::InvalidSignatureParams(
                "signature input member is not an inner list".into(),
            ));
        };
        let components = il
            .items
            .iter()
            .map(Component::from_item)
            .collect::<Result<Vec<_>>>()?;
        Self::from_parts(components, il.params.iter().map(|(k, v)| (&**k, v)))
    }

    /// Signature parameters from parsed inner-list parameters.
    fn from_parts<'a, S, B, T, D>(
        components: Vec<Component>,
        params: impl IntoIterator<Item = (&'a KeyRef, &'a GenericBareItem<S, B, T, D>)>,
    ) -> Result<Self>
    where
        S: Borrow<StringRef> + 'a,
        B: 'a,
        T: 'a,
        D: 'a,
    {
        let mut out = SignatureParams::new(components);
        let bad = |what: &str| {
            SignatureError::InvalidSignatureParams(format!("{what} has the wrong type"))
        };
        for (k, v) in params {
            out = match k.as_str() {
                "created" => out.with_created(
                    v.as_integer()
                        .map(i64::from)
                        .ok_or_else(|| bad("created"))?,
                ),
                "expires" => out.with_expires(
                    v.as_integer()
                        .map(i64::from)
                        .ok_or_else(|| bad("expires"))?,
                ),
                "nonce" => out.with_nonce(v.as_string().ok_or_else(|| bad("nonce"))?.as_str()),
                "alg" => out.with_alg(v.as_string().ok_or_else(|| bad("alg"))?.as_str().parse()?),
                "keyid" => out.with_keyid(v.as_string().ok_or_else(|| bad("keyid"))?.as_str()),
                "tag" => out.with_tag(v.as_string().ok_or_else(|| bad("tag"))?.as_str()),
                other => {
                    return Err(SignatureError::InvalidSignatureParams(format!(
                        "unknown signature parameter {other:?}"
                    )))
                }
            };
        }
        Ok(out)
    }
}

/// Range of an RFC 8941 Integer.
const SF_INTEGER_MAX: i64 = 999_999_999_999_999;
const SF_INTEGER_MIN: i64 = -SF_INTEGER_MAX;

/// Append `s` as an RFC 8941 sf-string; `false` (with `out` partly
/// written) if `s` has a character outside `0x20..=0x7e`.
fn push_sf_string(out: &mut String, s: &str) -> bool {
    if !all_visible_ascii(s) {
        return false;
    }
    out.reserve(s.len() + 2);
    out.push('"');
    let mut rest = s;
    while let Some(i) = rest.bytes().position(|b| b == b'\\' || b == b'"') {
        out.push_str(&rest[..i]);
        out.push('\\');
        out.push_str(&rest[i..=i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
    true
}

/// Whether every byte of `s` is in `0x20..=0x7e` (SP or VCHAR). Written
/// without early exit so that it vectorises.
fn all_visible_ascii(s: &str) -> bool {
    s.bytes()
        .fold(true, |ok, b| ok & (b.wrapping_sub(0x20) < 0x5f))
}

// ---------------------------------------------------------------------------
// Message views
// ---------------------------------------------------------------------------

/// Borrowed view of a request head, with the context needed for derived
/// components that a server-side `Uri` (origin-form) does not carry.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    scheme: Option<&'a str>,
    authority: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// View of method, URI and headers.
    #[must_use]
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            uri,
            headers,
            scheme: None,
            authority: None,
        }
    }

    /// View of `http::request::Parts`.
    #[must_use]
    pub fn from_parts(parts: &'a http::request::Parts) -> Self {
        Self::new(&parts.method, &parts.uri, &parts.headers)
    }

    /// View of an `http::Request`.
    #[must_use]
    pub fn from_request<B>(req: &'a http::Request<B>) -> Self {
        Self::new(req.method(), req.uri(), req.headers())
    }

    /// Scheme to use when the URI is in origin-form (a server typically
    /// knows it from the listener, e.g. `https`).
    #[must_use]
    pub fn with_scheme(mut self, scheme: &'a str) -> Self {
        self.scheme = Some(scheme);
        self
    }

    /// Authority to use instead of the URI's or the `Host` field's.
    #[must_use]
    pub fn with_authority(mut self, authority: &'a str) -> Self {
        self.authority = Some(authority);
        self
    }

    fn scheme_str(&self) -> Option<Cow<'a, str>> {
        self.scheme.or_else(|| self.uri.scheme_str()).map(lower)
    }

    fn authority_str(&self) -> Result<Cow<'a, str>> {
        let raw: &'a str = if let Some(a) = self.authority {
            a
        } else if let Some(a) = self.uri.authority() {
            a.as_str()
        } else {
            let mut hosts = self.headers.get_all(http::header::HOST).iter();
            let host = hosts
                .next()
                .ok_or_else(|| SignatureError::MissingComponent("\"@authority\"".into()))?;
            if hosts.next().is_some() {
                return Err(SignatureError::InvalidComponentValue(
                    "\"@authority\"".into(),
                ));
            }
            host.to_str()
                .map_err(|_| SignatureError::InvalidComponentValue("\"@authority\"".into()))?
                .trim()
        };
        // Drop userinfo, lower-case, and omit the scheme's default port.
        let host_port = raw.rsplit_once('@').map_or(raw, |(_, h)| h);
        let default_port = match self.scheme_str().as_deref() {
            Some("https") => Some(":443"),
            Some("http") => Some(":80"),
            _ => None,
        };
        // The port is ASCII, so it can be stripped before lower-casing.
        let host_port = default_port
            .and_then(|p| host_port.strip_suffix(p))
            .unwrap_or(host_port);
        Ok(lower(host_port))
    }

    fn path_str(&self) -> &'a str {
        match self.uri.path() {
            "" => "/",
            p => p,
        }
    }
}

/// `s` in ASCII lower case, borrowed when it already is.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Borrowed view of a response head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    status: StatusCode,
    headers: &'a HeaderMap,
}

impl<'a> ResponseView<'a> {
    /// View of a status and headers.
    #[must_use]
    pub fn new(status: StatusCode, headers: &'a HeaderMap) -> Self {
        Self { status, headers }
    }

    /// View of `http::response::Parts`.
    #[must_use]
    pub fn from_parts(parts: &'a http::response::Parts) -> Self {
        Self::new(parts.status, &parts.headers)
    }
}

/// The message a signature applies to.
#[derive(Debug, Clone, Copy)]
pub enum MessageView<'a> {
    /// A request.
    Request(RequestView<'a>),
    /// A response, with the request it answers when `req` components are
    /// used.
    Response {
        /// The response.
        response: ResponseView<'a>,
        /// The triggering request, if known.
        request: Option<RequestView<'a>>,
    },
}

impl<'a> MessageView<'a> {
    /// A request message from its parts.
    #[must_use]
    pub fn request(parts: &'a http::request::Parts) -> Self {
        Self::Request(RequestView::from_parts(parts))
    }

    /// A response message from its parts and the triggering request.
    #[must_use]
    pub fn response(parts: &'a http::response::Parts, request: Option<RequestView<'a>>) -> Self {
        Self::Response {
            response: ResponseView::from_parts(parts),
            request,
        }
    }

    fn headers(&self) -> &'a HeaderMap {
        match self {
            Self::Request(r) => r.headers,
            Self::Response { response, .. } => response.headers,
        }
    }
}

// ---------------------------------------------------------------------------
// Signature base
// ---------------------------------------------------------------------------

const DERIVED: [&str; 9] = [
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@request-target",
    "@path",
    "@query",
    "@query-param",
    "@status",
];

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

fn trim_ows(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| *c != b' ' && *c != b'\t')
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| *c != b' ' && *c != b'\t')
        .map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}

fn component_value<'a>(msg: &MessageView<'a>, c: &Component) -> Result<Cow<'a, str>> {
    // Parameter sanity (§2.5 step 2.4).
    let mut seen: Vec<&str> = Vec::new();
    for p in &c.params {
        if seen.contains(&p.key()) {
            return Err(c.invalid("duplicate parameter"));
        }
        seen.push(p.key());
    }
    let req = c.has("req");
    let derived = c.name.starts_with('@');
    if derived {
        if !DERIVED.contains(&c.name.as_str()) {
            return Err(c.invalid("unknown derived component"));
        }
        let name_ok = c.name == "@query-param";
        for p in &c.params {
            match p {
                ComponentParam::Req => {}
                ComponentParam::Name(_) if name_ok => {}
                _ => return Err(c.invalid("parameter not applicable to this derived component")),
            }
        }
    } else {
        if !is_field_name(&c.name) {
            return Err(c.invalid("not a lower-case field name"));
        }
        if c.has("name") {
            return Err(c.invalid("name applies only to @query-param"));
        }
        if c.has("tr") {
            return Err(c.invalid("trailer fields are not supported"));
        }
        if c.has("bs") && (c.has("sf") || c.has("key")) {
            return Err(c.invalid("bs cannot be combined with sf or key"));
        }
    }

    // Pick the message the value comes from.
    enum Target<'a> {
        Req(RequestView<'a>),
        Resp(ResponseView<'a>),
    }
    let target = match (msg, req) {
        (MessageView::Request(_), true) => return Err(c.invalid("req used on a request")),
        (MessageView::Request(r), false) => Target::Req(*r),
        (MessageView::Response { request, .. }, true) => match request {
            Some(r) => Target::Req(*r),
            None => return Err(SignatureError::MissingComponent(c.display_lossy())),
        },
        (MessageView::Response { response, .. }, false) => Target::Resp(*response),
    };

    let value = if derived {
        match (c.name.as_str(), target) {
            ("@status", Target::Resp(r)) => Cow::Owned(r.status.as_str().to_owned()),
            ("@status", Target::Req(_)) => {
                return Err(c.invalid("@status applies only to responses"))
            }
            (_, Target::Resp(_)) => {
                return Err(c.invalid("request component on a response (use req)"))
            }
            (name, Target::Req(r)) => derived_request_value(name, c, &r)?,
        }
    } else {
        let headers = match &target {
            Target::Req(r) => r.headers,
            Target::Resp(r) => r.headers,
        };
        field_value(headers, c)?
    };
    if !all_visible_ascii(&value) {
        return Err(SignatureError::InvalidComponentValue(c.display_lossy()));
    }
    Ok(value)
}

fn derived_request_value<'a>(
    name: &str,
    c: &Component,
    r: &RequestView<'a>,
) -> Result<Cow<'a, str>> {
    let missing = || SignatureError::MissingComponent(c.display_lossy());
    Ok(Cow::Owned(match name {
        "@method" => return Ok(Cow::Borrowed(r.method.as_str())),
        "@scheme" => return r.scheme_str().ok_or_else(missing),
        "@authority" => return r.authority_str(),
        "@target-uri" => {
            let scheme = r.scheme_str().ok_or_else(missing)?;
            let authority = r.authority_str()?;
            let path = r.path_str();
            let query = r.uri.query();
            let mut s = String::with_capacity(
                scheme.len() + 3 + authority.len() + path.len() + query.map_or(0, |q| q.len() + 1),
            );
            s.push_str(&scheme);
            s.push_str("://");
            s.push_str(&authority);
            s.push_str(path);
            if let Some(q) = query {
                s.push('?');
                s.push_str(q);
            }
            s
        }
        "@request-target" => {
            if r.method == Method::CONNECT {
                return r.authority_str();
            } else if r.uri.path() == "*" {
                "*".to_owned()
            } else {
                let mut s = r.path_str().to_owned();
                if let Some(q) = r.uri.query() {
                    s.push('?');
                    s.push_str(q);
                }
                s
            }
        }
        "@path" => return Ok(Cow::Borrowed(r.path_str())),
        "@query" => format!("?{}", r.uri.query().unwrap_or("")),
        "@query-param" => {
            let wanted = c
                .string_param("name")
                .ok_or_else(|| c.invalid("@query-param needs name"))?;
            let mut found: Option<String> = None;
            for (k, v) in form_urlencoded_pairs(r.uri.query().unwrap_or("")) {
                if form_encode(&k) == wanted {
                    if found.is_some() {
                        return Err(c.invalid("query parameter occurs more than once"));
                    }
                    found = Some(form_encode(&v));
                }
            }
            found.ok_or_else(missing)?
        }
        _ => return Err(c.invalid("unknown derived component")),
    }))
}

fn field_value<'a>(headers: &'a HeaderMap, c: &Component) -> Result<Cow<'a, str>> {
    let missing = || SignatureError::MissingComponent(c.display_lossy());
    // Look up by `&str`: `HeaderName::from_bytes` would allocate for every
    // non-standard name. A name that is not a valid header name finds
    // nothing; tell that case apart only then.
    let mut lines = headers
        .get_all(c.name.as_str())
        .iter()
        .map(|v| trim_ows(v.as_bytes()));
    let Some(first) = lines.next() else {
        return Err(match HeaderName::from_bytes(c.name.as_bytes()) {
            Ok(_) => missing(),
            Err(_) => c.invalid("invalid field name"),
        });
    };
    if c.has("bs") {
        let list: List = std::iter::once(first)
            .chain(lines)
            .map(|l| ListEntry::Item(Item::new(BareItem::ByteSequence(l.to_vec()))))
            .collect();
        return list.serialize().map(Cow::Owned).ok_or_else(missing);
    }
    let invalid_value = || SignatureError::InvalidComponentValue(c.display_lossy());
    let joined: Cow<'a, str> = match lines.next() {
        // One field line, the common case: borrow it.
        None => Cow::Borrowed(std::str::from_utf8(first).map_err(|_| invalid_value())?),
        Some(second) => {
            let mut joined = first.to_vec();
            for l in std::iter::once(second).chain(lines) {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(l);
            }
            Cow::Owned(String::from_utf8(joined).map_err(|_| invalid_value())?)
        }
    };
    if !joined.is_ascii() {
        return Err(invalid_value());
    }
    let malformed = |e| SignatureError::MalformedField {
        field: c.name.clone(),
        source: e,
    };
    if let Some(member) = c.string_param("key") {
        let dict: Dictionary = Parser::new(&*joined).parse().map_err(malformed)?;
        let entry = dict.get(member).ok_or_else(missing)?;
        let list: List = vec![entry.clone()];
        return list.serialize().map(Cow::Owned).ok_or_else(missing);
    }
    if c.has("sf") {
        // Type is not known in general: Dictionary first, then List (whose
        // single-member serialisation is also the Item serialisation).
        if let Ok(dict) = Parser::new(&*joined).parse::<Dictionary>() {
            if let Some(s) = dict.serialize() {
                return Ok(Cow::Owned(s));
            }
        }
        let list: List = Parser::new(&*joined).parse().map_err(malformed)?;
        return Ok(Cow::Owned(list.serialize().unwrap_or_default()));
    }
    Ok(joined)
}

/// WHATWG `application/x-www-form-urlencoded` parsing: `+` is a space,
/// percent escapes are decoded (invalid ones kept), then UTF-8 lossily.
fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hi = (b[i + 1] as char).to_digit(16);
                    let lo = (b[i + 2] as char).to_digit(16);
                    match (hi, lo) {
                        (Some(h), Some(l)) => {
                            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Percent-encode with the `application/x-www-form-urlencoded` set, spaces
/// as `%20` (RFC 9421 §2.2.8).
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Build the RFC 9421 §2.5 signature base for `params` over `msg`.
///
/// # Errors
/// Any component error ([`SignatureError::MissingComponent`],
/// [`SignatureError::InvalidComponent`],
/// [`SignatureError::DuplicateComponent`], ...).
pub fn signature_base(msg: &MessageView<'_>, params: &SignatureParams) -> Result<String> {
    signature_base_at(msg, params).map(|(base, _)| base)
}

/// [`signature_base`], plus the offset in it of the serialized signature
/// parameters (the last line's value).
fn signature_base_at(msg: &MessageView<'_>, params: &SignatureParams) -> Result<(String, usize)> {
    let mut out = String::with_capacity(512);
    for (i, c) in params.components.iter().enumerate() {
        if params.components[..i].contains(c) {
            return Err(SignatureError::DuplicateComponent(c.display_lossy()));
        }
        c.write_identifier(&mut out)?;
        let value = component_value(msg, c)?;
        out.push_str(": ");
        out.push_str(&value);
        out.push('\n');
    }
    out.push_str("\"@signature-params\": ");
    let at = out.len();
    params.write_serialized(&mut out)?;
    if !out.is_ascii() {
        return Err(SignatureError::InvalidSignatureParams(
            "signature base is not ASCII".into(),
        ));
    }
    Ok((out, at))
}

// ---------------------------------------------------------------------------
// Signing
// ---------------------------------------------------------------------------

/// The result of signing: header values to attach, plus the base for logs.
#[derive(Debug, Clone)]
pub struct SignatureOutput {
    /// Label of the signature.
    pub label: String,
    /// `Signature-Input` member, e.g. `ndxp=("@method");created=1`.
    pub signature_input: String,
    /// `Signature` member, e.g. `ndxp=:...:`.
    pub signature: String,
    /// The raw signature bytes.
    pub signature_bytes: Vec<u8>,
    /// The signature base that was signed.
    pub base: String,
}

fn check_label(label: &str) -> Result<()> {
    KeyRef::from_str(label)
        .map(|_| ())
        .map_err(|_| SignatureError::InvalidLabel(label.to_owned()))
}

/// Compute a signature over `msg` without modifying it.
///
/// If `params` carries `keyid` or `alg`, they must match the key.
///
/// # Errors
/// Base construction errors, [`SignatureError::KeyIdMismatch`],
/// [`SignatureError::AlgorithmMismatch`], [`SignatureError::DuplicateLabel`]
/// when `label` is already used in the message.
pub fn create_signature(
    msg: &MessageView<'_>,
    label: &str,
    params: &SignatureParams,
    key: &SigningKey,
) -> Result<SignatureOutput> {
    check_label(label)?;
    if let Some(k) = params.keyid() {
        if k != key.keyid() {
            return Err(SignatureError::KeyIdMismatch {
                params: k.to_owned(),
                key: key.keyid().to_owned(),
            });
        }
    }
    if let Some(a) = params.alg() {
        if a != key.algorithm() {
            return Err(SignatureError::AlgorithmMismatch {
                key: key.algorithm(),
                declared: a,
            });
        }
    }
    let headers = msg.headers();
    for field in [SIGNATURE_INPUT, SIGNATURE] {
        if let Some(dict) = parse_dict_field(headers, field, usize::MAX)? {
            if dict.contains_key(label) {
                return Err(SignatureError::DuplicateLabel(label.to_owned()));
            }
        }
    }
    let (base, params_at) = signature_base_at(msg, params)?;
    let sig = key.sign_bytes(base.as_bytes())?;
    let mut signature_input = String::with_capacity(label.len() + 1 + base.len() - params_at);
    signature_input.push_str(label);
    signature_input.push('=');
    signature_input.push_str(&base[params_at..]);
    let mut signature = String::with_capacity(label.len() + 3 + sig.len().div_ceil(3) * 4);
    signature.push_str(label);
    signature.push_str("=:");
    base64::Engine::encode_string(
        &base64::engine::general_purpose::STANDARD,
        &sig,
        &mut signature,
    );
    signature.push(':');
    Ok(SignatureOutput {
        label: label.to_owned(),
        signature_input,
        signature,
        signature_bytes: sig,
        base,
    })
}

/// Append the output's members to `Signature-Input` and `Signature`.
///
/// # Errors
/// [`SignatureError::InvalidSignatureParams`] if a value is not a valid
/// header value (cannot happen for output of [`create_signature`]).
pub fn attach_signature(headers: &mut HeaderMap, out: &SignatureOutput) -> Result<()> {
    let bad = |_| SignatureError::InvalidSignatureParams("not a valid header value".into());
    let input = HeaderValue::from_str(&out.signature_input).map_err(bad)?;
    let sig = HeaderValue::from_str(&out.signature).map_err(bad)?;
    headers.append(HeaderName::from_static(SIGNATURE_INPUT), input);
    headers.append(HeaderName::from_static(SIGNATURE), sig);
    Ok(())
}

/// Sign a request head and add the `Signature-Input` / `Signature` members.
///
/// For a server-side origin-form URI that needs `@scheme` or `@target-uri`,
/// use [`create_signature`] with a [`RequestView::with_scheme`] view.
///
/// # Errors
/// As [`create_signature`].
pub fn sign_request(
    parts: &mut http::request::Parts,
    label: &str,
    params: &SignatureParams,
    key: &SigningKey,
) -> Result<SignatureOutput> {
    let out = create_signature(&MessageView::request(parts), label, params, key)?;
    attach_signature(&mut parts.headers, &out)?;
    Ok(out)
}

/// Sign a response head (with `req` components taken from `request`) and
/// add the `Signature-Input` / `Signature` members.
///
/// # Errors
/// As [`create_signature`].
pub fn sign_response(
    parts: &mut http::response::Parts,
    request: RequestView<'_>,
    label: &str,
    params: &SignatureParams,
    key: &SigningKey,
) -> Result<SignatureOutput> {
    let out = create_signature(
        &MessageView::response(parts, Some(request)),
        label,
        params,
        key,
    )?;
    attach_signature(&mut parts.headers, &out)?;
    Ok(out)
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// Looks up verification keys by `keyid`.
pub trait KeyResolver {
    /// The key for `keyid`, or `None` if unknown or untrusted.
    fn resolve(&self, keyid: &str) -> Option<VerifyingKey>;
}

impl<F> KeyResolver for F
where
    F: Fn(&str) -> Option<VerifyingKey>,
{
    fn resolve(&self, keyid: &str) -> Option<VerifyingKey> {
        self(keyid)
    }
}

/// Application requirements checked during verification (RFC 9421 §3.2.1).
#[derive(Debug, Clone)]
pub struct VerifyPolicy {
    /// Components the signature must cover.
    pub required_components: Vec<Component>,
    /// Maximum age of `created`, in seconds (`None`: no limit).
    pub max_age: Option<u64>,
    /// Allowed clock skew in seconds, applied to `created` in the future, to
    /// the maximum age and to `expires`.
    pub clock_skew: u64,
    /// Whether `created` must be present.
    pub require_created: bool,
    /// A `tag` value the signature must carry.
    pub required_tag: Option<String>,
    /// Algorithms accepted.
    pub allowed_algorithms: Vec<Algorithm>,
    /// Upper bound on the size of `Signature-Input` and `Signature`.
    pub max_field_bytes: usize,
}

impl VerifyPolicy {
    /// Policy requiring `required_components`, `created` within 300 s
    /// (±30 s skew), any supported algorithm, fields up to 16 KiB.
    #[must_use]
    pub fn new(required_components: Vec<Component>) -> Self {
        Self {
            required_components,
            max_age: Some(300),
            clock_skew: 30,
            require_created: true,
            required_tag: None,
            allowed_algorithms: Algorithm::ALL.to_vec(),
            max_field_bytes: 16 * 1024,
        }
    }
}

/// What was verified; suitable for logging and replay checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedSignature {
    /// The signature label.
    pub label: String,
    /// The `keyid` of the key that verified it.
    pub keyid: String,
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// `created`, if present.
    pub created: Option<i64>,
    /// `expires`, if present.
    pub expires: Option<i64>,
    /// `nonce`, if present.
    pub nonce: Option<String>,
    /// `tag`, if present.
    pub tag: Option<String>,
    /// Covered components in order.
    pub components: Vec<Component>,
    /// The full parameter set as received.
    pub params: SignatureParams,
    /// Raw signature bytes.
    pub signature: Vec<u8>,
    /// SHA-256 of the signature base.
    pub base_sha256: [u8; 32],
}

fn parse_dict_field(
    headers: &HeaderMap,
    field: &'static str,
    limit: usize,
) -> Result<Option<Dictionary>> {
    let Some(joined) = joined_field(headers, field, limit)? else {
        return Ok(None);
    };
    Parser::new(&*joined)
        .with_version(Version::Rfc8941)
        .parse()
        .map(Some)
        .map_err(|e| SignatureError::MalformedField {
            field: field.into(),
            source: e,
        })
}

/// The field lines of `field` joined with `, ` (borrowed when there is only
/// one), `None` when absent.
fn joined_field<'h>(
    headers: &'h HeaderMap,
    field: &'static str,
    limit: usize,
) -> Result<Option<Cow<'h, [u8]>>> {
    let mut lines = headers.get_all(field).iter();
    let Some(first) = lines.next() else {
        return Ok(None);
    };
    let too_large = || SignatureError::FieldTooLarge { field, limit };
    if first.len() > limit {
        return Err(too_large());
    }
    let joined: Cow<'_, [u8]> = match lines.next() {
        // One field line, the common case: parse it in place.
        None => Cow::Borrowed(first.as_bytes()),
        Some(second) => {
            let mut joined = first.as_bytes().to_vec();
            for v in std::iter::once(second).chain(lines) {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(v.as_bytes());
                if joined.len() > limit {
                    return Err(too_large());
                }
            }
            Cow::Owned(joined)
        }
    };
    Ok(Some(joined))
}

/// Parse the `Signature-Input` member and `Signature` value for `label`.
///
/// # Errors
/// [`SignatureError::MissingHeader`], [`SignatureError::MalformedField`],
/// [`SignatureError::UnknownLabel`], [`SignatureError::MissingSignatureValue`],
/// [`SignatureError::InvalidSignatureParams`], [`SignatureError::FieldTooLarge`].
pub fn parse_signature_headers(
    headers: &HeaderMap,
    label: &str,
    max_field_bytes: usize,
) -> Result<(SignatureParams, Vec<u8>)> {
    // Both fields are parsed (and so validated) in full, but only the
    // label's members are kept, borrowed from the field text; RFC 8941
    // semantics hold: the last member with a key wins.
    let input = joined_field(headers, SIGNATURE_INPUT, max_field_bytes)?
        .ok_or(SignatureError::MissingHeader(SIGNATURE_INPUT))?;
    let member = Parser::new(&*input)
        .with_version(Version::Rfc8941)
        .parse_dictionary_with_visitor(visit::Member::new(label))
        .map_err(|e| SignatureError::MalformedField {
            field: SIGNATURE_INPUT.into(),
            source: e,
        })?;
    let sig = joined_field(headers, SIGNATURE, max_field_bytes)?
        .ok_or(SignatureError::MissingHeader(SIGNATURE))?;
    let sig = Parser::new(&*sig)
        .with_version(Version::Rfc8941)
        .parse_dictionary_with_visitor(visit::Member::new(label))
        .map_err(|e| SignatureError::MalformedField {
            field: SIGNATURE.into(),
            source: e,
        })?;
    let params = match member {
        None => return Err(SignatureError::UnknownLabel(label.to_owned())),
        Some(visit::Entry::InnerList(il)) => {
            let components = il
                .items
                .iter()
                .map(|(bare, params)| {
                    Component::from_parts(bare, params.iter().map(|(k, v)| (*k, v)), || {
                        let mut p = Parameters::new();
                        for (k, v) in params {
                            p.insert((*k).to_owned(), BareItem::from(v.clone()));
                        }
                        Item::with_params(BareItem::from(bare.clone()), p).serialize()
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            SignatureParams::from_parts(components, il.params.iter().map(|(k, v)| (*k, v)))?
        }
        Some(visit::Entry::Item(_)) => {
            return Err(SignatureError::InvalidSignatureParams(
                "signature input member is not an inner list".into(),
            ))
        }
    };
    let sig = match sig {
        Some(visit::Entry::Item(BareItemFromInput::ByteSequence(b))) => b,
        _ => return Err(SignatureError::MissingSignatureValue(label.to_owned())),
    };
    Ok((params, sig))
}

/// Visitors that keep one dictionary member, borrowed from the input.
mod visit {
    use std::convert::Infallible;

    use sfv::visitor::{
        DictionaryVisitor, EntryVisitor, Ignored, InnerListVisitor, ItemVisitor, ParameterVisitor,
    };
    use sfv::{BareItemFromInput, KeyRef};

    /// Parameters in first-seen key order, last value per key (RFC 8941
    /// §4.2.3.2), as `sfv::Parameters`.
    pub(super) type Params<'de> = Vec<(&'de KeyRef, BareItemFromInput<'de>)>;

    /// An inner list: items with their parameters, then its own parameters.
    pub(super) struct InnerList<'de> {
        pub(super) items: Vec<(BareItemFromInput<'de>, Params<'de>)>,
        pub(super) params: Params<'de>,
    }

    /// A dictionary member (an item's parameters are not kept).
    pub(super) enum Entry<'de> {
        Item(BareItemFromInput<'de>),
        InnerList(InnerList<'de>),
    }

    /// Keeps the last member named `label`.
    pub(super) struct Member<'l, 'de> {
        label: &'l str,
        found: Option<Entry<'de>>,
    }

    impl<'l> Member<'l, '_> {
        pub(super) fn new(label: &'l str) -> Self {
            Self { label, found: None }
        }
    }

    impl<'de> DictionaryVisitor<'de> for Member<'_, 'de> {
        type Out = Option<Entry<'de>>;
        type Error = Infallible;

        fn entry(&mut self, key: &'de KeyRef) -> Result<impl EntryVisitor<'de>, Self::Error> {
            Ok((key.as_str() == self.label).then_some(Slot(&mut self.found)))
        }

        fn finish(self) -> Result<Self::Out, Self::Error> {
            Ok(self.found)
        }
    }

    struct Slot<'a, 'de>(&'a mut Option<Entry<'de>>);

    impl<'de> EntryVisitor<'de> for Slot<'_, 'de> {
        type Error = Infallible;

        fn item(self) -> Result<impl ItemVisitor<'de>, Self::Error> {
            Ok(self)
        }

        fn inner_list(self) -> Result<impl InnerListVisitor<'de>, Self::Error> {
            *self.0 = Some(Entry::InnerList(InnerList {
                items: Vec::with_capacity(8),
                params: Vec::with_capacity(4),
            }));
            Ok(match self.0 {
                Some(Entry::InnerList(il)) => Some(il),
                _ => None,
            })
        }
    }

    impl<'de> ItemVisitor<'de> for Slot<'_, 'de> {
        type Out = ();
        type Error = Infallible;

        fn bare_item(
            self,
            bare_item: BareItemFromInput<'de>,
        ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
            *self.0 = Some(Entry::Item(bare_item));
            Ok(Ignored)
        }
    }

    impl<'de> InnerListVisitor<'de> for &mut InnerList<'de> {
        type Error = Infallible;

        fn item(&mut self) -> Result<impl ItemVisitor<'de>, Self::Error> {
            Ok(ListItem(&mut self.items))
        }

        fn finish(self) -> Result<impl ParameterVisitor<'de>, Self::Error> {
            Ok(ParamsVisitor(&mut self.params))
        }
    }

    struct ListItem<'a, 'de>(&'a mut Vec<(BareItemFromInput<'de>, Params<'de>)>);

    impl<'de> ItemVisitor<'de> for ListItem<'_, 'de> {
        type Out = ();
        type Error = Infallible;

        fn bare_item(
            self,
            bare_item: BareItemFromInput<'de>,
        ) -> Result<impl ParameterVisitor<'de, Out = Self::Out>, Self::Error> {
            let i = self.0.len();
            self.0.push((bare_item, Vec::new()));
            Ok(ParamsVisitor(&mut self.0[i].1))
        }
    }

    struct ParamsVisitor<'a, 'de>(&'a mut Params<'de>);

    impl<'de> ParameterVisitor<'de> for ParamsVisitor<'_, 'de> {
        type Out = ();
        type Error = Infallible;

        fn parameter(
            &mut self,
            key: &'de KeyRef,
            value: BareItemFromInput<'de>,
        ) -> Result<(), Self::Error> {
            match self.0.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => *v = value,
                None => self.0.push((key, value)),
            }
            Ok(())
        }

        fn finish(self) -> Result<Self::Out, Self::Error> {
            Ok(())
        }
    }
}

/// Verify the signature labelled `label` on `msg` at time `now` (Unix
/// seconds), with keys from `resolver`, under `policy`.
///
/// # Errors
/// Any [`SignatureError`] describing the first failed check.
pub fn verify(
    msg: &MessageView<'_>,
    label: &str,
    policy: &VerifyPolicy,
    now: i64,
    resolver: &dyn KeyResolver,
) -> Result<VerifiedSignature> {
    let (params, signature) =
        parse_signature_headers(msg.headers(), label, policy.max_field_bytes)?;

    for required in &policy.required_components {
        if !params.components.contains(required) {
            return Err(SignatureError::MissingRequiredComponent(
                required.display_lossy(),
            ));
        }
    }
    if let Some(expected) = &policy.required_tag {
        if params.tag() != Some(expected.as_str()) {
            return Err(SignatureError::TagMismatch {
                expected: expected.clone(),
                found: params.tag.clone(),
            });
        }
    }
    let skew = i64::try_from(policy.clock_skew).unwrap_or(i64::MAX);
    match params.created {
        Some(created) => {
            if created > now.saturating_add(skew) {
                return Err(SignatureError::CreatedInFuture { created, now });
            }
            if let Some(max_age) = policy.max_age {
                let max_age = i64::try_from(max_age).unwrap_or(i64::MAX);
                if now.saturating_sub(created) > max_age.saturating_add(skew) {
                    return Err(SignatureError::TooOld { created, now });
                }
            }
        }
        None if policy.require_created => return Err(SignatureError::MissingCreated),
        None => {}
    }
    if let Some(expires) = params.expires {
        if now > expires.saturating_add(skew) {
            return Err(SignatureError::Expired { expires, now });
        }
    }
    let keyid = params
        .keyid()
        .ok_or(SignatureError::MissingKeyId)?
        .to_owned();
    let key = resolver
        .resolve(&keyid)
        .ok_or_else(|| SignatureError::UnknownKey(keyid.clone()))?;
    if let Some(declared) = params.alg {
        if declared != key.algorithm() {
            return Err(SignatureError::AlgorithmMismatch {
                key: key.algorithm(),
                declared,
            });
        }
    }
    if !policy.allowed_algorithms.contains(&key.algorithm()) {
        return Err(SignatureError::AlgorithmNotAllowed(key.algorithm()));
    }
    let base = signature_base(msg, &params)?;
    let base_sha256 = sha256(base.as_bytes());
    match key.algorithm() {
        // The algorithm's own digest is the SHA-256 reported below.
        Algorithm::EcdsaP256Sha256 | Algorithm::RsaV15Sha256 => {
            key.verify_digest(&base_sha256, &signature)?;
        }
        Algorithm::RsaPssSha512 => key.verify_bytes(base.as_bytes(), &signature)?,
    }
    Ok(VerifiedSignature {
        label: label.to_owned(),
        keyid,
        algorithm: key.algorithm(),
        created: params.created,
        expires: params.expires,
        nonce: params.nonce.clone(),
        tag: params.tag.clone(),
        components: params.components.clone(),
        base_sha256,
        params,
        signature,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use sfv::{InnerList, Parameters};

    // The sfv-based serializers the hand-written ones replace; kept as an
    // oracle.
    fn key_of(s: &'static str) -> sfv::Key {
        KeyRef::from_str(s).unwrap().to_owned()
    }

    fn sfv_item(c: &Component) -> Option<Item> {
        let name = sfv::String::from_string(c.name.clone()).ok()?;
        let mut params = Parameters::new();
        for p in &c.params {
            let value = match p {
                ComponentParam::Key(v) | ComponentParam::Name(v) => {
                    BareItem::String(sfv::String::from_string(v.clone()).ok()?)
                }
                _ => BareItem::Boolean(true),
            };
            if params.insert(key_of(p.key()), value).is_some() {
                return None;
            }
        }
        Some(Item::with_params(BareItem::String(name), params))
    }

    fn sfv_params(sp: &SignatureParams) -> Option<String> {
        let items = sp
            .components
            .iter()
            .map(sfv_item)
            .collect::<Option<Vec<_>>>()?;
        let mut params = Parameters::new();
        let string = |s: &str| {
            sfv::String::from_string(s.to_owned())
                .ok()
                .map(BareItem::String)
        };
        let int = |v: i64| sfv::Integer::try_from(v).ok().map(BareItem::Integer);
        for p in &sp.order {
            let (k, v) = match p {
                ParamName::Created => ("created", int(sp.created?)?),
                ParamName::Expires => ("expires", int(sp.expires?)?),
                ParamName::Nonce => ("nonce", string(sp.nonce.as_deref()?)?),
                ParamName::Alg => ("alg", string(sp.alg?.as_str())?),
                ParamName::Keyid => ("keyid", string(sp.keyid.as_deref()?)?),
                ParamName::Tag => ("tag", string(sp.tag.as_deref()?)?),
            };
            params.insert(key_of(k), v);
        }
        let list: List = vec![ListEntry::InnerList(InnerList::with_params(items, params))];
        list.serialize()
    }

    #[test]
    fn serializers_match_sfv() {
        let components = [
            Component::method(),
            Component::query_param("Pet"),
            Component::field("content-digest"),
            Component::request_signature("sig1"),
            Component::field("x").sf().bs().req(),
            Component::field("x").key("a\\b\"c"),
            Component::new("with space"),
            Component::new(""),
            Component::new("bad\u{7f}"),
            Component::new("caf\u{e9}"),
            Component::new("tab\t"),
            Component::field("x").key("\n"),
            Component::field("x").sf().sf(),
            Component::field("x").key("a").key("a"),
            Component::field("x").key("\u{1}").key("a").key("a"),
        ];
        for c in &components {
            let ours = c.identifier().ok();
            let theirs = sfv_item(c).map(|i| i.serialize());
            assert_eq!(ours, theirs, "{c:?}");
        }
        let base = SignatureParams::new(components[..5].to_vec());
        let cases = [
            SignatureParams::new(Vec::new()),
            base.clone(),
            base.clone()
                .with_keyid("k\"1")
                .with_created(1_618_884_473)
                .with_alg(Algorithm::RsaPssSha512)
                .with_nonce("n\\")
                .with_expires(-5)
                .with_tag("t"),
            base.clone()
                .with_created(999_999_999_999_999)
                .with_expires(-999_999_999_999_999),
            base.clone().with_created(1_000_000_000_000_000),
            base.clone().with_expires(i64::MIN),
            base.clone().with_nonce("\u{0}"),
            base.clone().with_tag("\u{e9}"),
            base.clone().with_keyid("\u{7f}"),
            SignatureParams::new(vec![Component::new("\u{1}")]).with_created(1),
        ];
        for sp in &cases {
            assert_eq!(sp.serialize().ok(), sfv_params(sp), "{sp:?}");
            if let Ok(s) = sp.serialize() {
                assert_eq!(SignatureParams::parse(&s).unwrap(), *sp);
            }
        }
    }

    /// `parse_signature_headers` as it was: full `sfv` dictionaries.
    fn parse_signature_headers_sfv(
        headers: &HeaderMap,
        label: &str,
        max: usize,
    ) -> Result<(SignatureParams, Vec<u8>)> {
        let inputs = parse_dict_field(headers, SIGNATURE_INPUT, max)?
            .ok_or(SignatureError::MissingHeader(SIGNATURE_INPUT))?;
        let sigs = parse_dict_field(headers, SIGNATURE, max)?
            .ok_or(SignatureError::MissingHeader(SIGNATURE))?;
        let entry = inputs
            .get(label)
            .ok_or_else(|| SignatureError::UnknownLabel(label.to_owned()))?;
        let params = SignatureParams::from_entry(entry)?;
        let sig = match sigs.get(label) {
            Some(ListEntry::Item(item)) => match &item.bare_item {
                BareItem::ByteSequence(b) => b.clone(),
                _ => return Err(SignatureError::MissingSignatureValue(label.to_owned())),
            },
            _ => return Err(SignatureError::MissingSignatureValue(label.to_owned())),
        };
        Ok((params, sig))
    }

    #[test]
    fn signature_header_parsing_matches_sfv_dictionaries() {
        let inputs: &[&[&str]] = &[
            &[r#"sig=("@method" "content-digest");created=1;keyid="k";alg="rsa-v1_5-sha256""#],
            &[
                r#"a=("x"), sig=("@method";req "x";key="a\"b";sf "@query-param";name="n");nonce="n";tag="t";expires=5"#,
            ],
            &[r#"sig=("a"), sig=("b";bs);created=2"#],
            &[r#"sig=("a")"#, r#"other=("b"), sig=("c" "d")"#],
            &[r#"sig=("a");created=1;keyid="k";created=2"#],
            &[r#"sig=("a");created="x";created=3"#],
            &[r#"sig=("a");created=3;created="x""#],
            &[r#"sig=("a";sf=?0)"#],
            &[r#"sig=("a";sf;sf=?0)"#],
            &[r#"sig=("a";sf=?0;sf)"#],
            &[r#"sig=("a";foo=1;bar=2;foo=3)"#],
            &[r#"sig=("a";key=tok)"#],
            &[r#"sig=(a)"#],
            &[r#"sig=(1 "b")"#],
            &[r#"sig="a""#],
            &[r#"sig=("a"), sig="a""#],
            &[r#"sig="a", sig=("a")"#],
            &[r#"sig=("a");unknown=1"#],
            &[r#"sig=("a");alg="hs2019""#],
            &[r#"sig=("a");alg=rsa"#],
            &[r#"sig=("a");keyid=:AA==:"#],
            &[r#"sig=("a");created=1.5"#],
            &[r#"sig"#],
            &[r#"other=("a")"#],
            &[r#"sig=("a""#],
            &[r#"sig=("a");created=@1"#],
            &[r#"sig=("a");nonce=%"x""#],
            &[r#"sig=();created=1"#],
            &[r#"SIG=("a")"#],
        ];
        let sigs: &[&[&str]] = &[
            &["sig=:AAEC:"],
            &["sig=:AAEC:, sig=:AQ==:"],
            &["sig=:AAEC:;p=1"],
            &["sig=(:AA==:)"],
            &["sig=tok"],
            &["other=:AA==:"],
            &["sig=:AAEC:", "x=1, sig=:AgI=:"],
            &["sig=:AAE"],
            &["sig=:AA==:, sig=1"],
            &["sig=1, sig=:AA==:"],
        ];
        let mut n = 0;
        for input in inputs {
            for sig in sigs {
                for (with_input, with_sig) in [(true, true), (false, true), (true, false)] {
                    let mut headers = HeaderMap::new();
                    if with_input {
                        for v in *input {
                            headers.append(SIGNATURE_INPUT, HeaderValue::from_str(v).unwrap());
                        }
                    }
                    if with_sig {
                        for v in *sig {
                            headers.append(SIGNATURE, HeaderValue::from_str(v).unwrap());
                        }
                    }
                    for max in [usize::MAX, 20] {
                        let ours = parse_signature_headers(&headers, "sig", max);
                        let theirs = parse_signature_headers_sfv(&headers, "sig", max);
                        match (&ours, &theirs) {
                            (Ok(a), Ok(b)) => assert_eq!(a, b, "{input:?} {sig:?}"),
                            (Err(a), Err(b)) => {
                                assert_eq!(format!("{a:?}"), format!("{b:?}"), "{input:?} {sig:?}")
                            }
                            _ => panic!("{input:?} {sig:?}: {ours:?} vs {theirs:?}"),
                        }
                        n += usize::from(ours.is_ok());
                    }
                }
            }
        }
        assert!(n > 20, "too few successful cases: {n}");
    }

    #[test]
    fn pooled_contexts_survive_failures_and_threads() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        for alg in [Algorithm::RsaV15Sha256, Algorithm::RsaPssSha512] {
            let sk = SigningKey::with_algorithm(rsa.clone(), alg, "k").unwrap();
            let vk = sk.verifying_key().unwrap();
            let sig = sk.sign_bytes(b"base").unwrap();
            vk.verify_bytes(b"base", &sig).unwrap();
            // Failures (wrong data, wrong length, garbage) in between do not
            // poison the reused contexts.
            assert!(matches!(
                vk.verify_bytes(b"other", &sig),
                Err(SignatureError::InvalidSignature)
            ));
            assert!(matches!(
                vk.verify_bytes(b"base", &sig[1..]),
                Err(SignatureError::InvalidSignature)
            ));
            assert!(vk.verify_bytes(b"base", &[0xff; 256]).is_err());
            vk.verify_bytes(b"base", &sig).unwrap();
            std::thread::scope(|scope| {
                for t in 0..4u8 {
                    let (sk, vk) = (sk.clone(), vk.clone());
                    scope.spawn(move || {
                        for i in 0..8u8 {
                            let data = [t, i];
                            let sig = sk.sign_bytes(&data).unwrap();
                            vk.verify_bytes(&data, &sig).unwrap();
                            assert!(vk.verify_bytes(&[i, t, 0], &sig).is_err());
                        }
                    });
                }
            });
        }
    }

    #[test]
    fn form_encoding_matches_rfc_examples() {
        let pairs = form_urlencoded_pairs(
            "var=this%20is%20a%20big%0Amultiline%20value&bar=with+plus+whitespace&fa%C3%A7ade%22%3A%20=something",
        );
        let enc: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (form_encode(k), form_encode(v)))
            .collect();
        assert_eq!(
            enc[0],
            (
                "var".into(),
                "this%20is%20a%20big%0Amultiline%20value".into()
            )
        );
        assert_eq!(enc[1], ("bar".into(), "with%20plus%20whitespace".into()));
        assert_eq!(enc[2], ("fa%C3%A7ade%22%3A%20".into(), "something".into()));
    }

    #[test]
    fn truncated_percent_escape_is_kept() {
        let pairs = form_urlencoded_pairs("a=%4&b=%&c=%zz");
        assert_eq!(pairs[0].1, "%4");
        assert_eq!(pairs[1].1, "%");
        assert_eq!(pairs[2].1, "%zz");
    }
}
