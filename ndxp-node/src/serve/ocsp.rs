//! Revocation for the node: OCSP answers fetched in the background, held in
//! an [`OcspStatusCache`], refreshed before they expire.
//!
//! Nothing blocks inside a TLS handshake or a signature check: the
//! handshake uses [`Lenient`] (a cached "revoked" refuses, a missing answer
//! is decided right after the handshake by [`OcspHub::ensure`], which may
//! fetch), and signature checks run after [`OcspHub::ensure`] has made sure
//! an answer is held, with the strict cache as checker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndxp_sign::chain::{BoxError, RevocationChecker};
use ndxp_sign::ocsp::{IntermediatePolicy, OcspClientRequest, OcspStatusCache};
use ndxp_sign::openssl::x509::{X509Ref, X509VerifyResult, X509};
use ndxp_sign::revocation::CertStatus;

/// Fetches, verifies and holds OCSP answers.
#[derive(Debug)]
pub struct OcspHub {
    cache: Arc<OcspStatusCache>,
    http: reqwest::Client,
    trust: RwLock<Trust>,
    watched: Mutex<HashMap<String, (X509, X509)>>,
    fetch: tokio::sync::Mutex<()>,
}

#[derive(Debug, Default)]
struct Trust {
    anchors: Vec<X509>,
    urls: Vec<String>,
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

fn subject(cert: &X509Ref) -> String {
    ndxp_sign::cert::subject_text(cert.subject_name())
}

impl OcspHub {
    /// A hub using `http` for the responders.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            cache: Arc::new(OcspStatusCache::new(IntermediatePolicy::TrustIntermediates)),
            http,
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
                ndxp_sign::cert::fingerprint_sha256(leaf),
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
            let req = OcspClientRequest::new(leaf, issuer).map_err(|e| e.to_string())?;
            let resp = self
                .http
                .post(&url)
                .header("content-type", "application/ocsp-request")
                .body(req.der().to_vec())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            let resp = match resp {
                Ok(r) if r.status().is_success() => r,
                Ok(r) => {
                    last = format!("{url} answered HTTP {}", r.status());
                    continue;
                }
                Err(e) => {
                    last = format!("{url} cannot be reached ({e})");
                    continue;
                }
            };
            let body = match resp.bytes().await {
                Ok(b) if b.len() <= 64 * 1024 => b,
                Ok(_) => {
                    last = format!("{url} sent an answer over 64 KiB");
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
    /// interval). Returns the fingerprints of those now known revoked.
    pub async fn refresh_all(&self, now: DateTime<Utc>) -> Vec<String> {
        let watched: Vec<(String, X509, X509)> = self
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(k, (c, i))| (k.clone(), c.clone(), i.clone()))
            .collect();
        let mut revoked = Vec::new();
        for (fp, cert, issuer) in watched {
            let _one = self.fetch.lock().await;
            if let Err(e) = self.fetch_one(&cert, &issuer, now).await {
                tracing::warn!(certificate = %subject(&cert), error = %e, "OCSP refresh failed");
            }
            if matches!(
                self.cache.get(&cert).map(|c| c.status),
                Some(CertStatus::Revoked { .. })
            ) {
                revoked.push(fp);
            }
        }
        revoked
    }
}
