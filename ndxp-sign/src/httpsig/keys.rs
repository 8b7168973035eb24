//! Algorithms and keys: [`Algorithm`], [`SigningKey`], [`VerifyingKey`], and the
//! raw signing primitives shared with JWS.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};

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

use super::{Result, SignatureError, MIN_RSA_BITS};

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

pub(super) fn sha256(data: &[u8]) -> [u8; 32] {
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

/// A key with its algorithm, its `keyid` and the engine that uses it: what
/// a [`SigningKey`] and a [`VerifyingKey`] hold.
struct KeyWith<T> {
    key: PKey<T>,
    alg: Algorithm,
    keyid: String,
    engine: Engine<T>,
}

impl<T> Clone for KeyWith<T> {
    fn clone(&self) -> Self {
        Self {
            key: self.key.clone(),
            alg: self.alg,
            keyid: self.keyid.clone(),
            engine: self.engine.clone(),
        }
    }
}

impl<T: HasPublic> KeyWith<T> {
    /// `key` with `alg`, or with its default algorithm
    /// ([`Algorithm::default_for_key`]) when `alg` is `None`.
    fn new(key: PKey<T>, alg: Option<Algorithm>, keyid: String) -> Result<Self> {
        let alg = match alg {
            Some(alg) => alg,
            None => Algorithm::default_for_key(&key)?,
        };
        alg.check_key(&key)?;
        let engine = Engine::new(&key, alg)?;
        Ok(Self {
            key,
            alg,
            keyid,
            engine,
        })
    }

    fn debug(&self, name: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(name)
            .field("alg", &self.alg)
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

/// A private key with its algorithm and `keyid`.
#[derive(Clone)]
pub struct SigningKey(KeyWith<Private>);

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug("SigningKey", f)
    }
}

impl SigningKey {
    /// Wrap a key with its default algorithm ([`Algorithm::default_for_key`]).
    ///
    /// # Errors
    /// [`SignatureError::UnsuitableKey`] for unsupported key types, curves
    /// other than P-256, or RSA keys under 2048 bits.
    pub fn new(key: PKey<Private>, keyid: impl Into<String>) -> Result<Self> {
        KeyWith::new(key, None, keyid.into()).map(Self)
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
        KeyWith::new(key, Some(alg), keyid.into()).map(Self)
    }

    /// The algorithm this key signs with.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.0.alg
    }

    /// The key identifier.
    #[must_use]
    pub fn keyid(&self) -> &str {
        &self.0.keyid
    }

    /// The private key itself, for signing other documents (JWS) with the
    /// same member key.
    #[must_use]
    pub fn private_key(&self) -> &PKeyRef<Private> {
        &self.0.key
    }

    /// The matching verifying key (same algorithm and keyid).
    ///
    /// # Errors
    /// [`SignatureError::Crypto`] if the public key cannot be extracted.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        let der = self.0.key.public_key_to_der()?;
        let public = PKey::public_key_from_der(&der)?;
        VerifyingKey::with_algorithm(public, self.0.alg, self.0.keyid.clone())
    }

    /// Sign raw bytes (normally a signature base) with this key's algorithm.
    ///
    /// # Errors
    /// [`SignatureError::Crypto`] on OpenSSL failure.
    pub fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>> {
        let digest = Prehash::of(self.0.alg, data);
        Ok(self.sign_digest(digest.as_bytes())?)
    }

    fn sign_digest(&self, digest: &[u8]) -> Result<Vec<u8>, ErrorStack> {
        match &self.0.engine {
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
                        let mut ctx = PkeyCtx::new(&self.0.key)?;
                        ctx.sign_init()?;
                        configure_ctx(&mut ctx, self.0.alg)?;
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

/// Something that makes RFC 9421 signatures: a [`SigningKey`] (a private
/// key in memory) or a [`StoreSigningKey`] (a key held by a
/// [`KeyStore`](crate::key::KeyStore), such as a PKCS#11 token).
/// [`create_signature`](super::create_signature) and the functions built
/// on it take either.
pub trait MessageSigner {
    /// The algorithm this key signs with.
    fn algorithm(&self) -> Algorithm;
    /// The key identifier.
    fn keyid(&self) -> &str;
    /// Sign raw bytes (normally a signature base), returning the wire form
    /// of the signature (raw `r || s` for ECDSA).
    ///
    /// # Errors
    /// When the key's holder cannot sign.
    fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>>;
}

impl MessageSigner for SigningKey {
    fn algorithm(&self) -> Algorithm {
        SigningKey::algorithm(self)
    }
    fn keyid(&self) -> &str {
        SigningKey::keyid(self)
    }
    fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>> {
        SigningKey::sign_bytes(self, data)
    }
}

/// A key held by a [`KeyStore`](crate::key::KeyStore) under a name, with
/// its RFC 9421 algorithm and `keyid`: signs without the private key ever
/// being in this process (with a PKCS#11 store, it stays on the token).
///
/// ```
/// use std::sync::Arc;
/// use ndxp_sign::httpsig::{MessageSigner, StoreSigningKey};
/// use ndxp_sign::key::{FileKeyStore, KeyAlgorithm};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let mut store = FileKeyStore::new();
/// store.insert("member", KeyAlgorithm::EcP256.generate()?, None);
/// let key = StoreSigningKey::new(Arc::new(store), "member", "member-key")?;
/// let sig = key.sign_bytes(b"base")?;
/// key.verifying_key()?.verify_bytes(b"base", &sig)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct StoreSigningKey {
    store: Arc<dyn crate::key::KeyStore>,
    name: String,
    alg: Algorithm,
    keyid: String,
    public: PKey<Public>,
}

impl fmt::Debug for StoreSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreSigningKey")
            .field("name", &self.name)
            .field("alg", &self.alg)
            .field("keyid", &self.keyid)
            .finish_non_exhaustive()
    }
}

impl StoreSigningKey {
    /// The key `name` of `store` with its default algorithm
    /// ([`Algorithm::default_for_key`]).
    ///
    /// # Errors
    /// [`SignatureError::KeyStore`] when the store has no such key,
    /// [`SignatureError::UnsuitableKey`] for unsupported key types.
    pub fn new(
        store: Arc<dyn crate::key::KeyStore>,
        name: &str,
        keyid: impl Into<String>,
    ) -> Result<Self> {
        let public = store.public_key(name).map_err(SignatureError::KeyStore)?;
        let alg = Algorithm::default_for_key(&public)?;
        Self::build(store, name, alg, keyid.into(), public)
    }

    /// The key `name` of `store` with an explicit algorithm.
    ///
    /// # Errors
    /// As [`StoreSigningKey::new`]; [`SignatureError::UnsuitableKey`] when
    /// the key does not fit `alg`.
    pub fn with_algorithm(
        store: Arc<dyn crate::key::KeyStore>,
        name: &str,
        alg: Algorithm,
        keyid: impl Into<String>,
    ) -> Result<Self> {
        let public = store.public_key(name).map_err(SignatureError::KeyStore)?;
        Self::build(store, name, alg, keyid.into(), public)
    }

    fn build(
        store: Arc<dyn crate::key::KeyStore>,
        name: &str,
        alg: Algorithm,
        keyid: String,
        public: PKey<Public>,
    ) -> Result<Self> {
        alg.check_key(&public)?;
        Ok(Self {
            store,
            name: name.to_owned(),
            alg,
            keyid,
            public,
        })
    }

    /// The matching verifying key (same algorithm and keyid).
    ///
    /// # Errors
    /// [`SignatureError::UnsuitableKey`] cannot happen for a key that was
    /// accepted here; kept for symmetry with [`SigningKey::verifying_key`].
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        VerifyingKey::with_algorithm(self.public.clone(), self.alg, self.keyid.clone())
    }

    /// The key store that signs.
    #[must_use]
    pub fn store(&self) -> &Arc<dyn crate::key::KeyStore> {
        &self.store
    }

    /// The key's name in [`StoreSigningKey::store`].
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public key.
    #[must_use]
    pub fn public_key(&self) -> &PKeyRef<Public> {
        &self.public
    }
}

impl MessageSigner for StoreSigningKey {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
    fn keyid(&self) -> &str {
        &self.keyid
    }
    fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>> {
        use crate::key::RsaPadding;
        let (digest, padding) = match self.alg {
            Algorithm::EcdsaP256Sha256 => (MessageDigest::sha256(), RsaPadding::Pss),
            Algorithm::RsaPssSha512 => (MessageDigest::sha512(), RsaPadding::Pss),
            Algorithm::RsaV15Sha256 => (MessageDigest::sha256(), RsaPadding::Pkcs1v15),
        };
        let sig = self
            .store
            .sign(&self.name, digest, padding, data)
            .map_err(SignatureError::KeyStore)?;
        match self.alg {
            // Key stores return DER `ECDSA-Sig-Value`; RFC 9421 wants r || s.
            Algorithm::EcdsaP256Sha256 => {
                let sig = EcdsaSig::from_der(&sig)?;
                let mut out = sig.r().to_vec_padded(32)?;
                out.extend_from_slice(&sig.s().to_vec_padded(32)?);
                Ok(out)
            }
            Algorithm::RsaPssSha512 | Algorithm::RsaV15Sha256 => Ok(sig),
        }
    }
}

/// A public key with its algorithm and `keyid`.
#[derive(Clone)]
pub struct VerifyingKey(KeyWith<Public>);

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.debug("VerifyingKey", f)
    }
}

impl VerifyingKey {
    /// Wrap a public key with its default algorithm.
    ///
    /// # Errors
    /// [`SignatureError::UnsuitableKey`] for unsupported keys.
    pub fn new(key: PKey<Public>, keyid: impl Into<String>) -> Result<Self> {
        KeyWith::new(key, None, keyid.into()).map(Self)
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
        KeyWith::new(key, Some(alg), keyid.into()).map(Self)
    }

    /// The algorithm this key verifies.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.0.alg
    }

    /// The key identifier.
    #[must_use]
    pub fn keyid(&self) -> &str {
        &self.0.keyid
    }

    /// The wrapped OpenSSL key.
    #[must_use]
    pub fn public_key(&self) -> &PKeyRef<Public> {
        &self.0.key
    }

    /// Verify a signature over raw bytes.
    ///
    /// # Errors
    /// [`SignatureError::InvalidSignature`] when it does not verify.
    pub fn verify_bytes(&self, data: &[u8], signature: &[u8]) -> Result<()> {
        let digest = Prehash::of(self.0.alg, data);
        self.verify_digest(digest.as_bytes(), signature)
    }

    /// Verify a signature over a digest made with this key's algorithm.
    pub(super) fn verify_digest(&self, digest: &[u8], signature: &[u8]) -> Result<()> {
        if self.verify_digest_raw(digest, signature)? {
            Ok(())
        } else {
            Err(SignatureError::InvalidSignature)
        }
    }

    fn verify_digest_raw(&self, digest: &[u8], signature: &[u8]) -> Result<bool, ErrorStack> {
        match &self.0.engine {
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
                // RFC 8017 §8.1.2 and §8.2.2, step 1: a signature that is not
                // exactly k octets (the modulus length) is invalid. OpenSSL's
                // PSS path decodes a shorter one as the same integer, so a
                // signature with a leading zero octet stripped would verify:
                // two encodings of one signature.
                if signature.len() != self.0.key.size() {
                    return Ok(false);
                }
                let mut ctx = match pool.take() {
                    Some(ctx) => ctx,
                    None => {
                        let mut ctx = PkeyCtx::new(&self.0.key)?;
                        ctx.verify_init()?;
                        configure_ctx(&mut ctx, self.0.alg)?;
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
