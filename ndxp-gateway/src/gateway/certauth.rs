//! Client certificates as consumer credentials (over the HTTPS listener).
//!
//! The TLS handshake takes any client certificate whose key the client
//! holds ([`ClientCertificates::Requested`](ndxp_sign::tls::ClientCertificates));
//! the request path then decides, so a refused certificate gets a
//! problem+json answer rather than a bare TLS alert:
//!
//! 1. the certificate's SHA-256 fingerprint must be registered and not
//!    revoked — an in-memory lookup in the routing table (no database);
//! 2. its chain must lead to a client CA (`[gateway] client_ca`, default
//!    the platform CAs), be valid now and fit for TLS client
//!    authentication ([`Purpose::ClientAuth`]);
//! 3. it must not be revoked: an OCSP answer is fetched from the
//!    responder the certificate names (or the `ocsp_urls` of
//!    `[[globalconf.cas]]`) when none is held, verified, and kept until its
//!    `nextUpdate` (or one hour without one); the chain is then checked
//!    with [`chain::check_revocation`] against the held answers.
//!
//! A certificate that passed 2 and 3 is remembered until the earliest of
//! its expiry and its OCSP answer's `nextUpdate`, so a call costs a hash
//! lookup; after that one call fetches a fresh answer. At most one OCSP
//! request runs at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, Utc};
use ndxp_core::ErrorChain;
use ndxp_sign::chain::{self, NoRevocationCheck, Purpose};
use ndxp_sign::ocsp::DEFAULT_VALIDITY;
use ndxp_sign::ocsp_hub::OcspHub;
use ndxp_sign::openssl::x509::X509;

/// Most certificates remembered as verified.
const MAX_VERIFIED: usize = 10_000;

/// The client certificate of a connection, put into each request's
/// extensions by the HTTPS listener.
#[derive(Debug, Clone)]
pub struct ClientCert {
    /// SHA-256 of the certificate's DER, lowercase hex.
    pub sha256: String,
    /// The certificates the client sent, its own first.
    pub chain: Arc<Vec<X509>>,
}

impl ClientCert {
    /// The client certificate of an established session, if one was sent.
    pub fn of(ssl: &ndxp_sign::openssl::ssl::SslRef) -> Option<Self> {
        Self::from_chain(ndxp_sign::tls::presented_chain(ssl))
    }

    /// The client certificate from the chain the client presented (its own
    /// first), if it sent one.
    pub fn from_chain(chain: Vec<X509>) -> Option<Self> {
        let sha256 = ndxp_sign::cert::try_fingerprint_sha256(chain.first()?).ok()?;
        Some(Self {
            sha256,
            chain: Arc::new(chain),
        })
    }
}

/// Checks presented client certificates; see the module documentation.
pub(super) struct CertChecker {
    anchors: Vec<X509>,
    ocsp: OcspHub,
    verified: Mutex<HashMap<String, DateTime<Utc>>>,
}

impl std::fmt::Debug for CertChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertChecker")
            .field("anchors", &self.anchors.len())
            .finish_non_exhaustive()
    }
}

impl CertChecker {
    /// A checker trusting `anchors`, asking `ocsp_urls` when a certificate
    /// names no responder.
    pub(super) fn new(anchors: Vec<X509>, ocsp_urls: Vec<String>, http: reqwest::Client) -> Self {
        let ocsp = OcspHub::new(ndxp_registry::globalconf::ocsp_fetcher(http));
        ocsp.set_trust(anchors.clone(), ocsp_urls);
        Self {
            anchors,
            ocsp,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `cert` may authenticate a call at `now`; the error says why
    /// not, for the caller.
    pub(super) async fn check(&self, cert: &ClientCert, now: DateTime<Utc>) -> Result<(), String> {
        {
            let v = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
            if v.get(&cert.sha256).is_some_and(|until| *until > now) {
                return Ok(());
            }
        }
        let Some((leaf, rest)) = cert.chain.split_first() else {
            return Err("no client certificate".into());
        };
        let path = chain::verify_chain(
            leaf,
            rest,
            &self.anchors,
            now,
            Purpose::ClientAuth,
            &NoRevocationCheck,
        )
        .map_err(|e| format!("the client certificate is not accepted: {}", ErrorChain(&e)))?;
        self.ocsp
            .ensure(path.certs(), now)
            .await
            .map_err(|e| format!("the client certificate is not accepted: {e}"))?;
        let cache = self.ocsp.cache();
        chain::check_revocation(path.certs(), now, cache.as_ref())
            .map_err(|e| format!("the client certificate is not accepted: {}", ErrorChain(&e)))?;
        let answer_until = cache
            .get(leaf)
            .map(|c| c.next_update.unwrap_or(c.this_update + DEFAULT_VALIDITY));
        let not_after = ndxp_sign::cert::asn1_to_utc(leaf.not_after()).unwrap_or(now);
        let until = answer_until.map_or(not_after, |a| a.min(not_after));
        let mut v = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if v.len() >= MAX_VERIFIED {
            v.retain(|_, u| *u > now);
            if v.len() >= MAX_VERIFIED {
                v.clear();
            }
        }
        v.insert(cert.sha256.clone(), until);
        Ok(())
    }
}
