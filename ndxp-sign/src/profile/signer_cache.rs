//! [`SignerCache`]: signer certificates already validated.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use http::header::HeaderMap;
use ndxp_core::MemberId;
use openssl::x509::X509;

use crate::cert::{self, CertError};
use crate::chain::{self, Purpose, RevocationChecker};
use crate::httpsig::{Algorithm, VerifyingKey};

use super::headers::{parse_cert_list, raw_signer_cert_header};
use super::{ProfileError, ProfilePolicy, Result, SIGNER_CERT};

/// Signer certificates already validated, so that a busy receiver builds
/// and checks a signer's chain once per [`recheck`](SignerCache::new)
/// interval instead of on every message.
///
/// An entry is keyed by the signer certificate's SHA-256 fingerprint (the
/// `keyid` a message names, which binds the certificate) and the
/// algorithm, and holds the validated path, the member, the fingerprint and
/// a ready verifying key. A message whose `keyid` is held is verified with
/// the held certificate without reading its `NDXP-Signer-Cert` field; an
/// entry is only ever stored under the fingerprint computed from the
/// certificate itself, so a message naming another signer's `keyid` with
/// its own certificate is refused ([`ProfileError::KeyIdMismatch`]) and
/// cannot take that signer's place.
///
/// On every use the path's **revocation** is still decided by the
/// policy's checker: a checker that reports a
/// [`generation`](crate::chain::RevocationChecker::generation) (the OCSP
/// cache does) lets the verdict be reused until its answers change or one
/// of them expires, so a revocation the checker learns takes effect on the
/// next message; other checkers are asked every time. The chain itself
/// (signatures, validity period, purpose) is validated again once the
/// entry is older than `recheck` seconds or its leaf expires. The
/// signature of each message is always verified.
pub struct SignerCache {
    entries: Mutex<HashMap<SignerKey, Arc<SignerEntry>>>,
    max_entries: usize,
    recheck_secs: i64,
}

impl fmt::Debug for SignerCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerCache")
            .field("max_entries", &self.max_entries)
            .field("recheck_secs", &self.recheck_secs)
            .finish_non_exhaustive()
    }
}

/// The signer certificate's fingerprint (the `keyid`) and the algorithm.
pub(super) type SignerKey = (String, Algorithm);

/// A validated signer.
pub(super) struct SignerEntry {
    pub(super) path: Vec<X509>,
    pub(super) fingerprint: String,
    pub(super) member: MemberId,
    pub(super) key: VerifyingKey,
    pub(super) leaf_der: Vec<u8>,
    pub(super) chain_der: Vec<Vec<u8>>,
    pub(super) until: i64,
    /// The last revocation verdict "not revoked": the checker generation
    /// it was reached under and until when (Unix seconds) it stands.
    verdict: Mutex<Option<(u64, i64)>>,
}

impl SignerEntry {
    /// Checks the path's revocation at `now`, reusing the last verdict
    /// while the checker's generation is unchanged and the verdict holds.
    fn check_revocation(
        &self,
        now: DateTime<Utc>,
        revocation: &dyn RevocationChecker,
    ) -> Result<()> {
        let generation = revocation.generation();
        let now_s = now.timestamp();
        if let Some(g) = generation {
            let held = *self.verdict.lock().unwrap_or_else(PoisonError::into_inner);
            if held.is_some_and(|(hg, until)| hg == g && now_s < until) {
                return Ok(());
            }
        }
        let until = chain::check_revocation_until(&self.path, now, revocation)
            .map_err(ProfileError::UntrustedSigner)?;
        if let (Some(g), Some(until)) = (generation, until) {
            *self.verdict.lock().unwrap_or_else(PoisonError::into_inner) =
                Some((g, until.timestamp()));
        }
        Ok(())
    }
}

impl SignerCache {
    /// A cache of at most `max_entries` signers, each validated again after
    /// `recheck_secs` seconds.
    #[must_use]
    pub fn new(max_entries: usize, recheck_secs: u64) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_entries,
            recheck_secs: i64::try_from(recheck_secs).unwrap_or(i64::MAX),
        }
    }

    /// How many signers are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, keyid: &str, alg: Algorithm, now: i64) -> Option<Arc<SignerEntry>> {
        let map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(keyid.to_owned(), alg))
            .filter(|e| now < e.until)
            .cloned()
    }

    fn insert(&self, key: SignerKey, entry: Arc<SignerEntry>, now: i64) {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.max_entries {
            map.retain(|_, e| now < e.until);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert(key, entry);
    }
}

/// The validated signer of a message naming `keyid`: from the cache, or
/// parsed from `NDXP-Signer-Cert`, checked against `keyid`, validated now
/// (and then cached).
pub(super) fn signer_entry(
    headers: &HeaderMap,
    keyid: &str,
    alg: Algorithm,
    policy: &ProfilePolicy,
    now: DateTime<Utc>,
) -> Result<Arc<SignerEntry>> {
    let revocation: &dyn RevocationChecker = match &policy.revocation {
        Some(r) => r.as_ref(),
        None => &chain::NoRevocationCheck,
    };
    let now_s = now.timestamp();
    if let Some(cache) = &policy.signer_cache {
        if let Some(e) = cache.get(keyid, alg, now_s) {
            e.check_revocation(now, revocation)?;
            return Ok(e);
        }
    }
    let raw = raw_signer_cert_header(headers, policy.max_field_bytes)?;
    let mut certs = parse_cert_list(&raw)?.into_iter();
    let leaf = certs
        .next()
        .ok_or(ProfileError::MissingHeader(SIGNER_CERT))?;
    let intermediates: Vec<X509> = certs.collect();
    let fingerprint = cert::try_fingerprint_sha256(&leaf).map_err(ProfileError::BadCertificate)?;
    // The keyid binds the certificate: checked before anything is
    // validated or cached under it.
    if keyid != fingerprint {
        return Err(ProfileError::KeyIdMismatch {
            keyid: keyid.to_owned(),
            fingerprint,
        });
    }
    let member = cert::member_of(&leaf).map_err(ProfileError::BadCertificate)?;
    let verified = chain::verify_chain(
        &leaf,
        &intermediates,
        &policy.anchors,
        now,
        Purpose::Sign,
        revocation,
    )
    .map_err(ProfileError::UntrustedSigner)?;
    let public = leaf.public_key().map_err(|e| {
        ProfileError::BadCertificate(CertError::OpenSsl("reading the public key", e))
    })?;
    let key = VerifyingKey::with_algorithm(public, alg, fingerprint.clone())
        .map_err(ProfileError::Signature)?;
    let der = |c: &X509| {
        c.to_der().map_err(|e| {
            ProfileError::BadCertificate(CertError::OpenSsl("encoding a certificate", e))
        })
    };
    let not_after = cert::asn1_to_utc(leaf.not_after())
        .map(|t| t.timestamp())
        .unwrap_or(now_s);
    let entry = Arc::new(SignerEntry {
        path: verified.certs().to_vec(),
        leaf_der: der(&leaf)?,
        chain_der: intermediates.iter().map(der).collect::<Result<_>>()?,
        fingerprint,
        member,
        key,
        until: not_after
            .min(now_s.saturating_add(policy.signer_cache.as_ref().map_or(0, |c| c.recheck_secs))),
        verdict: Mutex::new(None),
    });
    if let Some(cache) = &policy.signer_cache {
        cache.insert((entry.fingerprint.clone(), alg), entry.clone(), now_s);
    }
    Ok(entry)
}
