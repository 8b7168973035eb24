//! Signing a document as a JWS and verifying one against an anchor.

use chrono::{DateTime, TimeDelta, Utc};
use ndxp_sign::cert::member_of;
use ndxp_sign::jws::{self, JwsAlgorithm, JwsError, VerifyOptions};
use ndxp_sign::openssl::pkey::{Id, PKeyRef, Private};
use ndxp_sign::openssl::x509::X509;

use super::anchor::ConfAnchor;
use super::document::ConfDocument;
use super::error::ConfError;

/// The JWS `typ` of a global configuration; verification requires it.
pub const JWS_TYP: &str = "ndxp-globalconf+jws";

/// The media type the signed document is served with.
pub const MEDIA_TYPE: &str = "application/jose";

/// Largest signed document accepted, in bytes.
pub const MAX_DOCUMENT_LEN: usize = 16 * 1024 * 1024;

/// How far in the future `generated_at` may be (clock skew allowance).
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// Algorithms accepted in a global configuration. RS256 (PKCS#1 v1.5) is
/// not: RSA keys sign with PSS.
const ALLOWED: [JwsAlgorithm; 3] = [
    JwsAlgorithm::Es256,
    JwsAlgorithm::Ps256,
    JwsAlgorithm::Ps512,
];

/// Signs `doc` as a compact JWS (`ES256` for an EC P-256 key, `PS256` for
/// RSA) with `typ` [`JWS_TYP`] and `x5c` = `chain`: the signer's
/// certificate first, then its intermediates (not the root).
///
/// # Errors
/// [`ConfError::Invalid`] if the document breaks a rule, [`ConfError::Sign`]
/// when the key does not fit an algorithm or does not match `chain[0]`.
pub fn sign(
    doc: &ConfDocument,
    key: &PKeyRef<Private>,
    chain: &[X509],
) -> Result<String, ConfError> {
    doc.validate()?;
    let alg = match key.id() {
        Id::RSA | Id::RSA_PSS => JwsAlgorithm::Ps256,
        _ => JwsAlgorithm::Es256,
    };
    if chain.is_empty() {
        return Err(ConfError::Sign(JwsError::MissingX5c));
    }
    jws::sign(&doc.to_json()?, key, alg, chain, Some(JWS_TYP)).map_err(ConfError::Sign)
}

/// Verifies a signed global configuration against `anchor` at `now` and
/// returns the document.
///
/// In order: the size limit, the JWS envelope, `typ`, the `x5c` chain to
/// one of the anchor's trust anchors at `now`, the signature, the signer's
/// member (when the anchor names one), the document rules, the instance,
/// `expires_at > now`, and `generated_at <= now +` [`MAX_CLOCK_SKEW`].
///
/// # Errors
/// The [`ConfError`] naming the first check that failed.
pub fn verify(
    jws: &str,
    anchor: &ConfAnchor,
    now: DateTime<Utc>,
) -> Result<ConfDocument, ConfError> {
    let doc = verify_allow_expired(jws, anchor, now)?;
    if !doc.is_valid_at(now) {
        return Err(ConfError::Expired {
            expires_at: doc.expires_at,
        });
    }
    Ok(doc)
}

/// [`verify`] without the expiry check: for reading the last-good copy,
/// which a node reports on even once it has expired.
pub(crate) fn verify_allow_expired(
    jws: &str,
    anchor: &ConfAnchor,
    now: DateTime<Utc>,
) -> Result<ConfDocument, ConfError> {
    if jws.len() > MAX_DOCUMENT_LEN {
        return Err(ConfError::TooLarge {
            limit: MAX_DOCUMENT_LEN,
        });
    }
    let opts = VerifyOptions {
        max_len: MAX_DOCUMENT_LEN,
        allowed_algorithms: ALLOWED.to_vec(),
    };
    // Check `typ` before spending time on the chain.
    let (header, _) = jws::decode_unverified(jws, &opts).map_err(ConfError::Envelope)?;
    if header.typ.as_deref() != Some(JWS_TYP) {
        return Err(ConfError::WrongType {
            expected: JWS_TYP,
            found: header.typ,
        });
    }
    let anchors = anchor.trust_anchors()?;
    let verified = jws::verify_with_anchors(jws, &anchors, now, &opts).map_err(|e| match e {
        JwsError::MissingX5c | JwsError::UntrustedChain(_) | JwsError::KeyUsage => {
            ConfError::Untrusted(e)
        }
        JwsError::InvalidSignature | JwsError::UnsuitableKey { .. } | JwsError::Crypto(_) => {
            ConfError::Signature(e)
        }
        other => ConfError::Envelope(other),
    })?;
    if let Some(expected) = &anchor.signer_member {
        let leaf = verified
            .header
            .x5c
            .first()
            .ok_or(ConfError::Untrusted(JwsError::MissingX5c))?;
        match member_of(leaf) {
            Ok(m) if &m == expected => {}
            Ok(m) => {
                return Err(ConfError::WrongSigner {
                    expected: expected.clone(),
                    found: format!("member {m}"),
                })
            }
            Err(e) => {
                return Err(ConfError::WrongSigner {
                    expected: expected.clone(),
                    found: format!("a certificate that names no member ({e})"),
                })
            }
        }
    }
    let doc = ConfDocument::from_json(&verified.payload)?;
    if doc.instance != anchor.instance {
        return Err(ConfError::WrongInstance {
            expected: anchor.instance.clone(),
            found: doc.instance,
        });
    }
    let latest = now
        .checked_add_signed(MAX_CLOCK_SKEW)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if doc.generated_at > latest {
        return Err(ConfError::FromFuture {
            generated_at: doc.generated_at,
        });
    }
    Ok(doc)
}
