//! What `/readyz` reports: the conditions under which the node refuses
//! exchanges, asked through the same functions the client and peer ports
//! call before an exchange ([`NodeState::trust`],
//! [`NodeState::check_timestamp_lag`]), the revocation status of the
//! node's own certificates (without a good OCSP answer for them every peer
//! refuses this node's messages and connections), the message log, and
//! the drain after SIGTERM, and the PKCS#11 token of the member signing
//! key when it is on one (one signature on the token per probe).

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use ndxp_audit::log::MessageLog as _;
use ndxp_core::check::Check;
use ndxp_sign::openssl::x509::X509;

use super::NodeState;

/// Longest `/readyz` waits for an OCSP answer about the node's own
/// certificates when none is held.
const OCSP_WAIT: Duration = Duration::from_secs(3);

/// The check names `/readyz` reports (its `checks[].name`).
pub mod names {
    /// The process is stopping.
    pub const DRAINING: &str = "draining";
    /// No valid global configuration.
    pub const GLOBAL_CONFIGURATION: &str = "global configuration";
    /// Timestamping lags past `[log] timestamp_max_lag_secs`.
    pub const TIMESTAMPING: &str = "timestamping";
    /// No good OCSP answer for one of the node's own certificates.
    pub const OWN_CERTIFICATES: &str = "own certificates";
    /// The message log does not answer.
    pub const MESSAGE_LOG: &str = "message log";
    /// The PKCS#11 token of the member signing key does not sign.
    pub const SIGN_TOKEN: &str = crate::diagnose::names::SIGN_TOKEN;
}

impl NodeState {
    /// The node's own certificates with the CA certificates sent with
    /// them: the signing certificate, then the authentication certificate.
    pub(crate) fn own_chains(&self) -> [(&'static str, Vec<X509>); 2] {
        crate::diagnose::own_chains(&self.signer, &self.identity)
    }

    /// The failed readiness checks; empty when the node is ready.
    pub(crate) async fn not_ready(&self) -> Vec<Check> {
        let mut failed = Vec::new();
        if self.draining.load(Ordering::Relaxed) {
            failed.push(
                Check::failed(
                    names::DRAINING,
                    "the node is stopping: requests in flight finish, new ones go elsewhere",
                )
                .with_hint("expected after SIGTERM; the process exits when the drain is over"),
            );
        }
        let now = Utc::now();
        let trusted = match self.trust(now) {
            Ok(_) => true,
            Err(p) => {
                failed.push(
                    Check::failed(names::GLOBAL_CONFIGURATION, p.detail.unwrap_or_default())
                        .with_hint(
                            "run `ndxp-node diagnose` to see why it cannot be fetched or verified",
                        ),
                );
                false
            }
        };
        if let Err(p) = self.check_timestamp_lag() {
            failed.push(
                Check::failed(names::TIMESTAMPING, p.detail.unwrap_or_default())
                    .with_hint("the TSA named in the global configuration must answer; run `ndxp-node diagnose`"),
            );
        }
        // The responders and the trusted CAs come with the trust: without
        // it there is nothing to ask.
        if trusted {
            for (what, chain) in self.own_chains() {
                let answer = tokio::time::timeout(OCSP_WAIT, self.ocsp.ensure(&chain, now)).await;
                let why = match answer {
                    Ok(Ok(())) => continue,
                    Ok(Err(e)) => e.to_string(),
                    Err(_) => format!("no OCSP answer within {} s", OCSP_WAIT.as_secs()),
                };
                failed.push(
                    Check::failed(names::OWN_CERTIFICATES, format!("{what}: {why}"))
                        .with_hint("peers refuse this node's messages without a good OCSP answer; check the OCSP responder of the global configuration"),
                );
            }
        }
        if let Some(token) = &self.sign_token {
            let token = token.clone();
            let checked = tokio::task::spawn_blocking(move || token.check()).await;
            let why = match checked {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(ndxp_core::ErrorChain(&e).to_string()),
                Err(e) => Some(format!("the token check did not finish: {e}")),
            };
            if let Some(why) = why {
                failed.push(
                    Check::failed(names::SIGN_TOKEN, why)
                        .with_hint("the node cannot sign messages: check that the token is present and the PIN valid, then restart the node"),
                );
            }
        }
        match self.log.head(self.log.writer()).await {
            Ok(_) => self.ready_log.store(true, Ordering::Relaxed),
            Err(e) => {
                self.ready_log.store(false, Ordering::Relaxed);
                failed.push(Check::failed(
                    names::MESSAGE_LOG,
                    format!("the message log is not reachable: {e}"),
                ));
            }
        }
        failed
    }
}
