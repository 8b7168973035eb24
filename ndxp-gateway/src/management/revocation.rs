//! Revocation of the member signing certificates that sign what nodes send
//! to the management role: registration requests and monitoring uploads
//! (status reports, reconciliation summaries, drill-down polls and answers).
//!
//! The signer's certificate (the JWS `x5c`, already verified) is looked up
//! with [`OcspHub`]: an answer is fetched from the responder the certificate
//! names (or the `ocsp_urls` of `[[globalconf.cas]]`) when none is held,
//! verified against the platform CAs and kept until its `nextUpdate`, so
//! the next upload of that signer costs a hash lookup. A certificate the CA
//! says is revoked is refused (`ndxp.signature_invalid`). When no answer
//! can be had (the responder is down), the upload is accepted and a warning
//! is logged: the management role keeps taking reports while the OCSP
//! service is restarted, and the node's own exchange partners still refuse
//! a revoked key (they check revocation strictly).

use chrono::{DateTime, Utc};
use ndxp_sign::jws::{self, VerifyOptions};
use ndxp_sign::ocsp_hub::{OcspHub, RevocationError};
use ndxp_sign::openssl::x509::X509;

/// Checks that signers of uploads are not revoked; see the module
/// documentation.
#[derive(Debug)]
pub struct SignerRevocation {
    hub: OcspHub,
}

impl SignerRevocation {
    /// A checker trusting `anchors` (the platform CAs, which sign the OCSP
    /// answers), asking `ocsp_urls` when a certificate names no responder.
    pub fn new(anchors: Vec<X509>, ocsp_urls: Vec<String>, http: reqwest::Client) -> Self {
        let hub = OcspHub::new(ndxp_registry::globalconf::ocsp_fetcher(http));
        hub.set_trust(anchors, ocsp_urls);
        Self { hub }
    }

    /// Refuses a `chain` (signer first, then its intermediates) whose
    /// signer the CA has revoked; the error is the sentence for the caller.
    ///
    /// # Errors
    /// The signer's certificate is revoked.
    pub async fn check_chain(&self, chain: &[X509], now: DateTime<Utc>) -> Result<(), String> {
        match self.hub.ensure(chain, now).await {
            Ok(()) => Ok(()),
            Err(e @ RevocationError::Revoked { .. }) => Err(format!(
                "{e}: the request is refused; have a new signing certificate issued"
            )),
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    "a signed upload was accepted without knowing whether its signer is revoked; \
                     check that the OCSP responder of [[globalconf.cas]] is running and reachable"
                );
                Ok(())
            }
        }
    }

    /// [`check_chain`](Self::check_chain) for the `x5c` chain of a compact
    /// JWS that has already been verified.
    ///
    /// # Errors
    /// The signer's certificate is revoked.
    pub async fn check_jws(
        &self,
        jws_text: &str,
        max_len: usize,
        now: DateTime<Utc>,
    ) -> Result<(), String> {
        let opts = VerifyOptions {
            max_len,
            ..VerifyOptions::default()
        };
        // The signature and the chain were verified by the caller; only
        // the header's certificates are needed here.
        match jws::decode_unverified(jws_text.trim(), &opts) {
            Ok((header, _)) => self.check_chain(&header.x5c, now).await,
            Err(e) => Err(format!("the signed request cannot be read again: {e}")),
        }
    }
}
