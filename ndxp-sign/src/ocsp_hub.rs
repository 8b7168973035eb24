//! OCSP answers fetched when first needed, verified, held in an
//! [`OcspStatusCache`] until their `nextUpdate`, and refreshed on demand
//! ([`OcspHub::ensure`]) or for every watched certificate at once
//! ([`OcspHub::refresh_all`]). The node (peer certificates) and the central
//! gateway (consumers' client certificates) share it.
//!
//! The hub does no HTTP itself: it is given an [`OcspFetch`], a function
//! that POSTs a DER request to a responder URL and returns the body, so
//! this crate stays free of an HTTP client. Answers larger than
//! [`MAX_RESPONSE_BYTES`] are refused.
//!
//! Requests carry no nonce (RFC 5019 §2.1): the platform responder then
//! serves an answer produced ahead of time, which a flood of requests
//! cannot delay; freshness comes from the answer's `thisUpdate` and
//! `nextUpdate`, which [`OcspClientRequest::verify_response`] checks.
//!
//! Nothing blocks inside a TLS handshake or a signature check: the
//! handshake uses [`Lenient`] (a cached "revoked" refuses, a missing answer
//! is decided right after the handshake by [`OcspHub::ensure`], which may
//! fetch), and signature checks run after [`OcspHub::ensure`] has made sure
//! an answer is held, with the strict cache as checker.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use chrono::{DateTime, Utc};
use openssl::hash::MessageDigest;
use openssl::x509::{X509Ref, X509VerifyResult, X509};

use crate::chain::{BoxError, RevocationChecker};
use crate::ocsp::{IntermediatePolicy, OcspClientRequest, OcspStatusCache};
use crate::revocation::CertStatus;

/// Largest OCSP answer accepted, in bytes.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// What an [`OcspFetch`] returns: the answer's body, or why there is none
/// (unreachable, HTTP error status, timeout), in words.
pub type FetchFuture = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send>>;

/// POSTs an `application/ocsp-request` body to a responder URL and returns
/// the response body. It should apply a timeout and may stop reading past
/// [`MAX_RESPONSE_BYTES`].
pub type OcspFetch = Arc<dyn Fn(String, Vec<u8>) -> FetchFuture + Send + Sync>;

/// Fetches, verifies and holds OCSP answers.
pub struct OcspHub {
    cache: Arc<OcspStatusCache>,
    fetcher: OcspFetch,
    trust: RwLock<Trust>,
    watched: Mutex<HashMap<String, (X509, X509)>>,
    fetch: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Trust {
    anchors: Vec<X509>,
    urls: Vec<String>,
}

impl std::fmt::Debug for OcspHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspHub")
            .field("cache", &self.cache)
            .field("trust", &self.trust)
            .finish_non_exhaustive()
    }
}

/// The handshake's revocation view: a held answer decides; no answer
/// passes (the post-handshake [`OcspHub::ensure`] decides then).
#[derive(Debug, Clone)]
pub struct Lenient(pub Arc<OcspStatusCache>);

impl RevocationChecker for Lenient {
    fn status(&self, cert: &X509Ref, issuer: &X509Ref) -> Result<CertStatus, BoxError> {
        match self.0.get(cert) {
            Some(_) => self.0.status(cert, issuer).or(Ok(CertStatus::Good)),
            None => Ok(CertStatus::Good),
        }
    }
}

/// The outcome of [`OcspHub::ensure`] when a certificate is not good.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationError {
    /// The CA says the certificate is revoked.
    #[error("the certificate of {subject} is revoked")]
    Revoked {
        /// The certificate's subject.
        subject: String,
    },
    /// No answer could be obtained.
    #[error("the revocation status of {subject} cannot be checked: {reason}")]
    Unknown {
        /// The certificate's subject.
        subject: String,
        /// Why.
        reason: String,
    },
}

/// What [`OcspHub::refresh_all`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshOutcome {
    /// Fingerprints of the watched certificates now known revoked.
    pub revoked: Vec<String>,
    /// Subjects of the certificates whose answer could not be refreshed,
    /// with the reason (the previous answer stays until it expires).
    pub failed: Vec<(String, String)>,
}

fn subject(cert: &X509Ref) -> String {
    crate::cert::subject_text(cert.subject_name())
}

impl OcspHub {
    /// A hub asking the responders through `fetcher`.
    pub fn new(fetcher: OcspFetch) -> Self {
        Self {
            cache: Arc::new(OcspStatusCache::new(IntermediatePolicy::TrustIntermediates)),
            fetcher,
            trust: RwLock::new(Trust::default()),
            watched: Mutex::new(HashMap::new()),
            fetch: tokio::sync::Mutex::new(()),
        }
    }

    /// The cache (strict checker for signature verification).
    pub fn cache(&self) -> Arc<OcspStatusCache> {
        self.cache.clone()
    }

    /// The lenient checker for handshakes.
    pub fn lenient(&self) -> Lenient {
        Lenient(self.cache.clone())
    }

    /// Sets the trusted CAs (which sign or delegate OCSP answers) and the
    /// responder URLs of the global configuration, used when a
    /// certificate names none.
    pub fn set_trust(&self, anchors: Vec<X509>, urls: Vec<String>) {
        *self.trust.write().unwrap_or_else(PoisonError::into_inner) = Trust { anchors, urls };
    }

    /// How many certificates are watched.
    pub fn watched(&self) -> usize {
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn issuer_of(&self, leaf: &X509Ref, chain: &[X509]) -> Option<X509> {
        let trust = self.trust.read().unwrap_or_else(PoisonError::into_inner);
        chain
            .iter()
            .chain(trust.anchors.iter())
            .find(|c| c.issued(leaf) == X509VerifyResult::OK)
            .cloned()
    }

    /// Makes sure an answer about `chain[0]` (issued by `chain[1]` or a
    /// trusted CA) is held, fetching it when missing or expired, and
    /// returns it. Certificates checked here are refreshed in the
    /// background by [`OcspHub::refresh_all`].
    ///
    /// # Errors
    /// [`RevocationError`].
    pub async fn ensure(&self, chain: &[X509], now: DateTime<Utc>) -> Result<(), RevocationError> {
        let Some(leaf) = chain.first() else {
            return Err(RevocationError::Unknown {
                subject: "(none)".into(),
                reason: "no certificate".into(),
            });
        };
        if !self.cache.needs_refresh(leaf, now) {
            return self.decide(leaf);
        }
        let issuer = self
            .issuer_of(leaf, &chain[1..])
            .ok_or_else(|| RevocationError::Unknown {
                subject: subject(leaf),
                reason: "its issuer is not a trusted CA".into(),
            })?;
        let _one = self.fetch.lock().await;
        if self.cache.needs_refresh(leaf, now) {
            self.fetch_one(leaf, &issuer, now).await.map_err(|reason| {
                RevocationError::Unknown {
                    subject: subject(leaf),
                    reason,
                }
            })?;
        }
        self.watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                crate::cert::fingerprint_sha256(leaf),
                (leaf.clone(), issuer),
            );
        self.decide(leaf)
    }

    fn decide(&self, leaf: &X509) -> Result<(), RevocationError> {
        match self.cache.get(leaf).map(|c| c.status) {
            Some(CertStatus::Good) => Ok(()),
            Some(CertStatus::Revoked { .. }) => Err(RevocationError::Revoked {
                subject: subject(leaf),
            }),
            Some(other) => Err(RevocationError::Unknown {
                subject: subject(leaf),
                reason: format!("the responder answered {other:?}"),
            }),
            None => Err(RevocationError::Unknown {
                subject: subject(leaf),
                reason: "no answer is held".into(),
            }),
        }
    }

    fn urls_for(&self, leaf: &X509Ref) -> Vec<String> {
        let mut urls: Vec<String> = leaf
            .ocsp_responders()
            .map(|s| s.iter().map(|u| u.to_string()).collect())
            .unwrap_or_default();
        let trust = self.trust.read().unwrap_or_else(PoisonError::into_inner);
        for u in &trust.urls {
            if !urls.contains(u) {
                urls.push(u.clone());
            }
        }
        urls
    }

    async fn fetch_one(
        &self,
        leaf: &X509,
        issuer: &X509,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let anchors = self
            .trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .anchors
            .clone();
        let mut last = "no OCSP responder URL is known".to_owned();
        for url in self.urls_for(leaf) {
            let req = OcspClientRequest::with_options(leaf, issuer, MessageDigest::sha1(), false)
                .map_err(|e| e.to_string())?;
            let body = match (self.fetcher)(url.clone(), req.der().to_vec()).await {
                Ok(b) if b.len() <= MAX_RESPONSE_BYTES => b,
                Ok(_) => {
                    last = format!("{url} sent an answer over {MAX_RESPONSE_BYTES} bytes");
                    continue;
                }
                Err(e) => {
                    last = format!("{url}: {e}");
                    continue;
                }
            };
            match req.verify_response(&body, &anchors, now) {
                Ok(check) => {
                    self.cache.insert(leaf, check);
                    return Ok(());
                }
                Err(e) => last = format!("{url} sent an answer that does not verify ({e})"),
            }
        }
        Err(last)
    }

    /// Fetches a fresh answer for every watched certificate (normally on an
    /// interval). Returns the fingerprints of those now known revoked, and
    /// the subjects of those whose refresh failed with the reason.
    pub async fn refresh_all(&self, now: DateTime<Utc>) -> RefreshOutcome {
        let watched: Vec<(String, X509, X509)> = self
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, (c, i))| (k.clone(), c.clone(), i.clone()))
            .collect();
        let mut out = RefreshOutcome::default();
        for (fp, cert, issuer) in watched {
            let _one = self.fetch.lock().await;
            if let Err(e) = self.fetch_one(&cert, &issuer, now).await {
                out.failed.push((subject(&cert), e));
            }
            if matches!(
                self.cache.get(&cert).map(|c| c.status),
                Some(CertStatus::Revoked { .. })
            ) {
                out.revoked.push(fp);
            }
        }
        out
    }
}
