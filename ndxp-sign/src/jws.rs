//! RFC 7515 JWS compact serialization with `x5c` certificate chains.
//!
//! Used to sign NDXP's global configuration: the management role signs the
//! document with its signing key and puts its certificate chain in `x5c`;
//! nodes verify the chain against an operator-installed anchor at a given
//! time, then the signature with the leaf's key.
//!
//! Supported algorithms: `ES256` (raw `r || s`, RFC 7518 §3.4), `PS256`,
//! `PS512`, `RS256`. Verification rejects `alg: none`, unknown algorithms,
//! any `crit` header (no extensions are understood), malformed base64url
//! and input above a caller-given size limit.
//!
//! ```
//! use ndxp_sign::jws::{self, JwsAlgorithm, VerifyOptions};
//! use openssl::{ec::{EcGroup, EcKey}, nid::Nid, pkey::PKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
//! let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
//! let public = PKey::public_key_from_der(&key.public_key_to_der()?)?;
//!
//! let token = jws::sign(b"{\"version\":1}", &key, JwsAlgorithm::Es256, &[], Some("ndxp-conf+jws"))?;
//! let verified = jws::verify_with_key(&token, &public, &VerifyOptions::default())?;
//! assert_eq!(verified.payload, b"{\"version\":1}");
//! assert_eq!(verified.header.typ.as_deref(), Some("ndxp-conf+jws"));
//! # Ok(())
//! # }
//! ```

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::{DateTime, Utc};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509KeyUsage, X509StoreContext, X509};
use serde_json::{Map, Value};

use openssl::ecdsa::EcdsaSig;

use crate::httpsig::{raw_sign, raw_verify, RawKind, MIN_RSA_BITS};
use crate::key::{KeyStore, RsaPadding};

/// Errors raised while signing or verifying a JWS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwsError {
    /// The input is larger than the caller's limit.
    #[error("JWS of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// Input length.
        len: usize,
        /// Limit.
        limit: usize,
    },
    /// The input is not three dot-separated parts.
    #[error("malformed JWS: {0}")]
    Malformed(&'static str),
    /// A part is not valid unpadded base64url.
    #[error("invalid base64url in JWS {0}")]
    Base64(&'static str),
    /// The protected header is not a JSON object.
    #[error("invalid JWS header JSON")]
    HeaderJson(#[source] serde_json::Error),
    /// A header member has the wrong type.
    #[error("invalid JWS header member {0}")]
    InvalidHeader(&'static str),
    /// `alg` is `none`.
    #[error("unsecured JWS (alg none) rejected")]
    AlgNone,
    /// `alg` is not supported.
    #[error("unsupported JWS algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// `alg` is supported but not allowed by the caller.
    #[error("JWS algorithm {0} not allowed")]
    AlgorithmNotAllowed(JwsAlgorithm),
    /// The header lists critical extensions, none of which are understood.
    #[error("unsupported critical header parameters {0:?}")]
    UnsupportedCritical(Vec<String>),
    /// No `x5c` chain where one is required.
    #[error("JWS header has no x5c certificate chain")]
    MissingX5c,
    /// An `x5c` entry is not standard base64 of a DER certificate.
    #[error("x5c entry {index} is not a base64 DER certificate")]
    InvalidX5c {
        /// Index in the `x5c` array.
        index: usize,
    },
    /// The chain does not verify against the trust anchors at the given time.
    #[error("certificate chain not trusted: {0}")]
    UntrustedChain(String),
    /// The signer certificate's key usage does not allow signing.
    #[error("signer certificate key usage does not allow digital signatures")]
    KeyUsage,
    /// The key does not fit the algorithm (type, curve, size).
    #[error("key is not usable with {algorithm}: {reason}")]
    UnsuitableKey {
        /// The algorithm.
        algorithm: JwsAlgorithm,
        /// Why.
        reason: &'static str,
    },
    /// The signing key does not match the first `x5c` certificate.
    #[error("signing key does not match the signer certificate")]
    KeyCertificateMismatch,
    /// The signature does not verify.
    #[error("invalid JWS signature")]
    InvalidSignature,
    /// An OpenSSL operation failed.
    #[error("cryptographic operation failed")]
    Crypto(#[source] ErrorStack),
    /// The key store (e.g. a PKCS#11 token) could not sign.
    #[error("the key store could not sign")]
    KeyStore(#[source] crate::key::KeyError),
}

impl From<ErrorStack> for JwsError {
    fn from(e: ErrorStack) -> Self {
        Self::Crypto(e)
    }
}

type Result<T, E = JwsError> = std::result::Result<T, E>;

/// JWS algorithms supported (RFC 7518 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JwsAlgorithm {
    /// `ES256`: ECDSA P-256 SHA-256, raw 64-byte `r || s`.
    Es256,
    /// `PS256`: RSASSA-PSS SHA-256, MGF1-SHA-256, 32-byte salt.
    Ps256,
    /// `PS512`: RSASSA-PSS SHA-512, MGF1-SHA-512, 64-byte salt.
    Ps512,
    /// `RS256`: RSASSA-PKCS1-v1_5 SHA-256.
    Rs256,
}

impl JwsAlgorithm {
    /// All supported algorithms.
    pub const ALL: [JwsAlgorithm; 4] = [Self::Es256, Self::Ps256, Self::Ps512, Self::Rs256];

    /// The `alg` header value.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::Ps256 => "PS256",
            Self::Ps512 => "PS512",
            Self::Rs256 => "RS256",
        }
    }

    fn parse(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("none") {
            return Err(JwsError::AlgNone);
        }
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| JwsError::UnsupportedAlgorithm(s.to_owned()))
    }

    fn primitives(self) -> (MessageDigest, RawKind) {
        match self {
            Self::Es256 => (MessageDigest::sha256(), RawKind::Ecdsa { coord_len: 32 }),
            Self::Ps256 => (MessageDigest::sha256(), RawKind::RsaPss { salt_len: 32 }),
            Self::Ps512 => (MessageDigest::sha512(), RawKind::RsaPss { salt_len: 64 }),
            Self::Rs256 => (MessageDigest::sha256(), RawKind::RsaPkcs1),
        }
    }

    fn check_key<T: HasPublic>(self, key: &PKeyRef<T>) -> Result<()> {
        let unsuitable = |reason| JwsError::UnsuitableKey {
            algorithm: self,
            reason,
        };
        match self {
            Self::Es256 => {
                if key.id() != Id::EC {
                    return Err(unsuitable("not an EC key"));
                }
                if key.ec_key()?.group().curve_name() != Some(Nid::X9_62_PRIME256V1) {
                    return Err(unsuitable("EC key is not on curve P-256"));
                }
            }
            Self::Ps256 | Self::Ps512 | Self::Rs256 => {
                match key.id() {
                    Id::RSA => {}
                    Id::RSA_PSS if self != Self::Rs256 => {}
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

impl fmt::Display for JwsAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The protected header members this module understands.
#[derive(Debug, Clone)]
pub struct JwsHeader {
    /// `alg`.
    pub alg: JwsAlgorithm,
    /// `typ`, if present.
    pub typ: Option<String>,
    /// `kid`, if present.
    pub kid: Option<String>,
    /// `x5c` certificates in order (signer first); empty when absent.
    pub x5c: Vec<X509>,
}

/// Limits and algorithm restrictions for verification.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    /// Maximum accepted length of the compact JWS, in bytes.
    pub max_len: usize,
    /// Algorithms accepted.
    pub allowed_algorithms: Vec<JwsAlgorithm>,
}

impl Default for VerifyOptions {
    /// 8 MiB, all supported algorithms.
    fn default() -> Self {
        Self {
            max_len: 8 * 1024 * 1024,
            allowed_algorithms: JwsAlgorithm::ALL.to_vec(),
        }
    }
}

/// A verified JWS.
#[derive(Debug, Clone)]
pub struct VerifiedJws {
    /// The protected header.
    pub header: JwsHeader,
    /// The payload bytes.
    pub payload: Vec<u8>,
    /// The verified chain from the signer to the trust anchor (empty for
    /// [`verify_with_key`]).
    pub chain: Vec<X509>,
}

/// Sign `payload` as a compact JWS with `alg`; `chain` (signer certificate
/// first, then intermediates) goes into `x5c` when not empty.
///
/// # Errors
/// [`JwsError::UnsuitableKey`], [`JwsError::KeyCertificateMismatch`] when
/// `chain[0]` does not hold the key's public half, [`JwsError::Crypto`].
pub fn sign(
    payload: &[u8],
    key: &PKeyRef<Private>,
    alg: JwsAlgorithm,
    chain: &[X509],
    typ: Option<&str>,
) -> Result<String> {
    alg.check_key(key)?;
    let mut out = signing_input(payload, key, alg, chain, typ)?;
    let (md, kind) = alg.primitives();
    let sig = raw_sign(key, md, kind, out.as_bytes())?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

/// As [`sign`], with the private key `name` of a [`KeyStore`] (a key that
/// may live on a PKCS#11 token) instead of a key in memory.
///
/// # Errors
/// As [`sign`]; [`JwsError::KeyStore`] when the store cannot sign.
pub fn sign_with_store(
    payload: &[u8],
    store: &dyn KeyStore,
    name: &str,
    alg: JwsAlgorithm,
    chain: &[X509],
    typ: Option<&str>,
) -> Result<String> {
    let public = store.public_key(name).map_err(JwsError::KeyStore)?;
    alg.check_key(&public)?;
    let mut out = signing_input(payload, &public, alg, chain, typ)?;
    let (md, kind) = alg.primitives();
    let sig = match kind {
        RawKind::Ecdsa { coord_len } => {
            let der = store
                .sign(name, md, RsaPadding::Pss, out.as_bytes())
                .map_err(JwsError::KeyStore)?;
            let sig = EcdsaSig::from_der(&der)?;
            let mut raw = sig.r().to_vec_padded(coord_len)?;
            raw.extend_from_slice(&sig.s().to_vec_padded(coord_len)?);
            raw
        }
        RawKind::RsaPss { salt_len } if usize::try_from(salt_len).ok() == Some(md.size()) => store
            .sign(name, md, RsaPadding::Pss, out.as_bytes())
            .map_err(JwsError::KeyStore)?,
        RawKind::RsaPss { .. } => {
            return Err(JwsError::UnsuitableKey {
                algorithm: alg,
                reason: "key stores sign RSASSA-PSS with a salt as long as the digest",
            })
        }
        RawKind::RsaPkcs1 => store
            .sign(name, md, RsaPadding::Pkcs1v15, out.as_bytes())
            .map_err(JwsError::KeyStore)?,
    };
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

/// `base64url(header) "." base64url(payload)`, the part that is signed.
fn signing_input<T: HasPublic>(
    payload: &[u8],
    key: &PKeyRef<T>,
    alg: JwsAlgorithm,
    chain: &[X509],
    typ: Option<&str>,
) -> Result<String> {
    let mut header = Map::new();
    header.insert("alg".into(), Value::String(alg.as_str().into()));
    if let Some(t) = typ {
        header.insert("typ".into(), Value::String(t.into()));
    }
    if let Some(leaf) = chain.first() {
        if !leaf.public_key()?.public_eq(key) {
            return Err(JwsError::KeyCertificateMismatch);
        }
        let certs = chain
            .iter()
            .map(|c| Ok(Value::String(STANDARD.encode(c.to_der()?))))
            .collect::<Result<Vec<_>>>()?;
        header.insert("x5c".into(), Value::Array(certs));
    }
    let header_json = Value::Object(header).to_string();
    let mut out = URL_SAFE_NO_PAD.encode(header_json.as_bytes());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(payload));
    Ok(out)
}

struct Decoded<'a> {
    header: JwsHeader,
    signing_input: &'a str,
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn decode<'a>(jws: &'a str, opts: &VerifyOptions) -> Result<Decoded<'a>> {
    if jws.len() > opts.max_len {
        return Err(JwsError::TooLarge {
            len: jws.len(),
            limit: opts.max_len,
        });
    }
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Malformed("expected three dot-separated parts"));
    };
    let signing_input = &jws[..h.len() + 1 + p.len()];
    let header_bytes = URL_SAFE_NO_PAD
        .decode(h)
        .map_err(|_| JwsError::Base64("header"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(p)
        .map_err(|_| JwsError::Base64("payload"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwsError::Base64("signature"))?;
    let header = parse_header(&header_bytes)?;
    if !opts.allowed_algorithms.contains(&header.alg) {
        return Err(JwsError::AlgorithmNotAllowed(header.alg));
    }
    Ok(Decoded {
        header,
        signing_input,
        payload,
        signature,
    })
}

fn parse_header(bytes: &[u8]) -> Result<JwsHeader> {
    let value: Value = serde_json::from_slice(bytes).map_err(JwsError::HeaderJson)?;
    let Value::Object(map) = value else {
        return Err(JwsError::InvalidHeader("header is not an object"));
    };
    let alg = match map.get("alg") {
        Some(Value::String(s)) => JwsAlgorithm::parse(s)?,
        _ => return Err(JwsError::InvalidHeader("alg")),
    };
    if let Some(crit) = map.get("crit") {
        let names = match crit {
            Value::Array(a) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned).unwrap_or_default())
                .collect(),
            _ => Vec::new(),
        };
        // No extension is understood, so any `crit` is rejected (RFC 7515
        // §4.1.11); an empty or mistyped `crit` is invalid anyway.
        return Err(JwsError::UnsupportedCritical(names));
    }
    let opt_string = |name: &'static str| match map.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(JwsError::InvalidHeader(name)),
    };
    let typ = opt_string("typ")?;
    let kid = opt_string("kid")?;
    let x5c = match map.get("x5c") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(index, v)| {
                let der = v
                    .as_str()
                    .and_then(|s| STANDARD.decode(s).ok())
                    .ok_or(JwsError::InvalidX5c { index })?;
                X509::from_der(&der).map_err(|_| JwsError::InvalidX5c { index })
            })
            .collect::<Result<Vec<_>>>()?,
        Some(_) => return Err(JwsError::InvalidHeader("x5c")),
    };
    Ok(JwsHeader { alg, typ, kid, x5c })
}

fn check_signature<T: HasPublic>(d: &Decoded<'_>, key: &PKeyRef<T>) -> Result<()> {
    d.header.alg.check_key(key)?;
    let (md, kind) = d.header.alg.primitives();
    if raw_verify(key, md, kind, d.signing_input.as_bytes(), &d.signature)? {
        Ok(())
    } else {
        Err(JwsError::InvalidSignature)
    }
}

/// Parse a compact JWS without verifying it (for diagnostics only).
///
/// # Errors
/// Any parsing error of [`JwsError`].
pub fn decode_unverified(jws: &str, opts: &VerifyOptions) -> Result<(JwsHeader, Vec<u8>)> {
    let d = decode(jws, opts)?;
    Ok((d.header, d.payload))
}

/// Verify a compact JWS with a known public key (no chain check).
///
/// # Errors
/// Parsing errors, [`JwsError::UnsuitableKey`], [`JwsError::InvalidSignature`].
pub fn verify_with_key<T: HasPublic>(
    jws: &str,
    key: &PKeyRef<T>,
    opts: &VerifyOptions,
) -> Result<VerifiedJws> {
    let d = decode(jws, opts)?;
    check_signature(&d, key)?;
    Ok(VerifiedJws {
        header: d.header,
        payload: d.payload,
        chain: Vec::new(),
    })
}

/// Verify a compact JWS whose `x5c[0]` must chain (through the other `x5c`
/// entries) to one of `anchors` at time `at`, then check the signature with
/// that certificate's key.
///
/// # Errors
/// Parsing errors, [`JwsError::MissingX5c`], [`JwsError::UntrustedChain`],
/// [`JwsError::KeyUsage`], [`JwsError::InvalidSignature`].
pub fn verify_with_anchors(
    jws: &str,
    anchors: &[X509],
    at: DateTime<Utc>,
    opts: &VerifyOptions,
) -> Result<VerifiedJws> {
    let d = decode(jws, opts)?;
    let (leaf, rest) = d.header.x5c.split_first().ok_or(JwsError::MissingX5c)?;
    let chain = verify_chain(leaf, rest, anchors, at)?;
    if let Some(ku) = leaf.key_usage() {
        if !ku.intersects(X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::NON_REPUDIATION) {
            return Err(JwsError::KeyUsage);
        }
    }
    let leaf_key = leaf.public_key()?;
    check_signature(&d, &leaf_key)?;
    Ok(VerifiedJws {
        header: d.header,
        payload: d.payload,
        chain,
    })
}

fn verify_chain(
    leaf: &X509,
    intermediates: &[X509],
    anchors: &[X509],
    at: DateTime<Utc>,
) -> Result<Vec<X509>> {
    let mut store = X509StoreBuilder::new()?;
    for a in anchors {
        store.add_cert(a.clone())?;
    }
    let mut param = X509VerifyParam::new()?;
    param.set_time(at.timestamp());
    store.set_param(&param)?;
    let store = store.build();
    let mut untrusted = Stack::new()?;
    for c in intermediates {
        untrusted.push(c.clone())?;
    }
    let mut ctx = X509StoreContext::new()?;
    let outcome = ctx.init(&store, leaf, &untrusted, |c| {
        let ok = c.verify_cert()?;
        let chain = c
            .chain()
            .map(|s| s.iter().map(ToOwned::to_owned).collect::<Vec<X509>>())
            .unwrap_or_default();
        Ok((ok, c.error().error_string(), chain))
    })?;
    match outcome {
        (true, _, chain) => Ok(chain),
        (false, reason, _) => Err(JwsError::UntrustedChain(reason.to_owned())),
    }
}
