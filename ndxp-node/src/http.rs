//! The HTTP client the node uses towards the platform (management API,
//! global configuration): OpenSSL TLS (reqwest with `native-tls`), the
//! system's trusted roots plus `management.tls_ca_file`, and a time limit.

use std::path::PathBuf;
use std::time::Duration;

use crate::config::NodeConfig;

/// Why the HTTP client could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpSetupError {
    /// `management.tls_ca_file` could not be read.
    #[error("management.tls_ca_file: cannot read {path}")]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `management.tls_ca_file` holds no usable certificate.
    #[error("management.tls_ca_file: {path} holds no PEM certificate that can be used")]
    BadCa {
        /// The file.
        path: PathBuf,
        /// The cause, when the TLS library gave one.
        #[source]
        source: Option<reqwest::Error>,
    },
    /// The TLS library refused the client settings.
    #[error("cannot set up the HTTP client")]
    Build(#[source] reqwest::Error),
}

/// A client for the platform's services: trusts the system roots and the
/// certificates of `management.tls_ca_file`, gives up after
/// `management.timeout_secs`.
///
/// # Errors
/// [`HttpSetupError`].
pub fn platform_client(config: &NodeConfig) -> Result<reqwest::Client, HttpSetupError> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(config.management.timeout_secs))
        .user_agent(concat!("ndxp-node/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = &config.management.tls_ca_file {
        let pem = std::fs::read(path).map_err(|source| HttpSetupError::ReadCa {
            path: path.clone(),
            source,
        })?;
        let certs =
            reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpSetupError::BadCa {
                path: path.clone(),
                source: Some(e),
            })?;
        if certs.is_empty() {
            return Err(HttpSetupError::BadCa {
                path: path.clone(),
                source: None,
            });
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder.build().map_err(HttpSetupError::Build)
}

/// One line explaining a failed request to `url`, in words an operator can
/// act on.
pub(crate) fn describe_send_error(e: &reqwest::Error, what: &str, timeout: Duration) -> String {
    if e.is_timeout() {
        format!(
            "{what} did not answer within {} s; check that it runs and that nothing in between drops the connection",
            timeout.as_secs()
        )
    } else if e.is_connect() {
        format!("could not connect to {what}; check the URL, that the server runs and listens there, and for TLS that its certificate is trusted (management.tls_ca_file)")
    } else {
        format!("the request to {what} failed")
    }
}
