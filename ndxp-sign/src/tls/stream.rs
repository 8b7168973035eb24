//! Async handshakes on tokio streams ([`accept`], [`connect`],
//! [`accept_https`]); with the `tokio` feature.

use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use openssl::ssl::{self, Ssl, SslAcceptor, SslConnector, SslRef};
use openssl::x509::X509VerifyResult;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use crate::cert;
use crate::chain::ChainError;

use super::handshake::{check_version, state_index, state_of, verify_peer, HandshakeState};
use super::policy::{normalize_fingerprint, PeerIdentity, PeerPolicy};
use super::{config, TlsError};

impl HandshakeState {
    fn new(pinned: Option<Vec<String>>) -> Self {
        Self {
            pinned,
            outcome: Mutex::new(None),
        }
    }

    fn take_error(&self) -> Option<TlsError> {
        let mut slot = self.outcome.lock().ok()?;
        match slot.take() {
            Some(Err(e)) => Some(e),
            other => {
                *slot = other;
                None
            }
        }
    }

    fn accepted(&self) -> Option<PeerIdentity> {
        match self.outcome.lock().ok()?.as_ref() {
            Some(Ok(p)) => Some(p.clone()),
            _ => None,
        }
    }
}
/// After a successful handshake: the in-handshake decision must exist, have
/// accepted, and be about the certificate the peer actually presented.
pub(super) fn decided_peer(ssl: &SslRef) -> Result<PeerIdentity, TlsError> {
    check_version(ssl)?;
    let leaf = ssl.peer_certificate().ok_or(TlsError::NoPeerCertificate)?;
    let found =
        cert::try_fingerprint_sha256(&leaf).map_err(|e| TlsError::Certificate(Box::new(e)))?;
    let peer = state_of(ssl)
        .and_then(HandshakeState::accepted)
        .ok_or_else(|| {
            TlsError::PeerUntrusted(ChainError::Untrusted {
                subject: cert::subject_text(leaf.subject_name()),
                reason: "the peer was not checked during the handshake",
                code: X509VerifyResult::APPLICATION_VERIFICATION.as_raw(),
            })
        })?;
    if peer.fingerprint != found {
        return Err(TlsError::FingerprintMismatch {
            expected: vec![peer.fingerprint],
            found,
        });
    }
    Ok(peer)
}

// OpenSSL SSL-library reason codes (sslerr.h).
pub(super) const ERR_LIB_SSL: i32 = 20;
pub(super) const SSL_R_NO_PROTOCOLS_AVAILABLE: i32 = 191;
pub(super) const SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE: i32 = 199;
pub(super) const SSL_R_UNSUPPORTED_PROTOCOL: i32 = 258;
pub(super) const SSL_R_TLSV1_ALERT_PROTOCOL_VERSION: i32 = 1070;

pub(super) fn handshake_error(ssl: &SslRef, error: ssl::Error, server: bool) -> TlsError {
    if let Some(e) = state_of(ssl).and_then(HandshakeState::take_error) {
        return e;
    }
    let reasons: Vec<i32> = error
        .ssl_error()
        .map(|s| {
            s.errors()
                .iter()
                .filter(|e| e.library_code() == ERR_LIB_SSL)
                .map(|e| e.reason_code())
                .collect()
        })
        .unwrap_or_default();
    if reasons.iter().any(|r| {
        matches!(
            *r,
            SSL_R_NO_PROTOCOLS_AVAILABLE
                | SSL_R_UNSUPPORTED_PROTOCOL
                | SSL_R_TLSV1_ALERT_PROTOCOL_VERSION
        )
    }) {
        return TlsError::WrongProtocolVersion {
            detail: error.to_string(),
        };
    }
    if server && reasons.contains(&SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        return TlsError::NoPeerCertificate;
    }
    if error.ssl_error().is_some() {
        return TlsError::Handshake {
            reason: error.to_string(),
            source: error,
        };
    }
    match error.into_io_error() {
        Ok(io) => TlsError::Io(io),
        Err(error) => TlsError::Handshake {
            reason: error.to_string(),
            source: error,
        },
    }
}

pub(super) async fn handshake<S>(
    ssl: Ssl,
    stream: S,
    timeout: Duration,
    server: bool,
) -> Result<SslStream<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut tls = SslStream::new(ssl, stream).map_err(config("creating a TLS stream"))?;
    let result = if server {
        tokio::time::timeout(timeout, Pin::new(&mut tls).accept()).await
    } else {
        tokio::time::timeout(timeout, Pin::new(&mut tls).connect()).await
    };
    match result {
        Err(_) => Err(TlsError::Timeout(timeout)),
        Ok(Err(e)) => Err(handshake_error(tls.ssl(), e, server)),
        Ok(Ok(())) => Ok(tls),
    }
}

/// Runs the server side of an HTTPS handshake with an acceptor of
/// [`https_acceptor`](super::https_acceptor) within `timeout`. Identity checks, if any, are the
/// caller's (see [`ClientCertificates`](super::ClientCertificates)).
///
/// # Errors
/// The handshake failed or timed out.
pub async fn accept_https<S>(
    acceptor: &SslAcceptor,
    stream: S,
    timeout: Duration,
) -> Result<SslStream<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ssl = Ssl::new(acceptor.context()).map_err(config("creating a TLS session"))?;
    handshake(ssl, stream, timeout, true).await
}

/// Runs the server side of a handshake on `stream` (normally a
/// `tokio::net::TcpStream`) within `timeout`, and returns the TLS stream and
/// the authenticated client. The client is checked inside the handshake by
/// the acceptor's policy, then once more with [`verify_peer`] against
/// `policy` (normally the one given to [`server_acceptor`](super::server_acceptor)).
pub async fn accept<S>(
    acceptor: &SslAcceptor,
    stream: S,
    policy: &PeerPolicy,
    timeout: Duration,
) -> Result<(SslStream<S>, PeerIdentity), TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let index = state_index()?;
    let mut ssl = Ssl::new(acceptor.context()).map_err(config("creating a TLS session"))?;
    ssl.set_ex_data(index, HandshakeState::new(None));
    let tls = handshake(ssl, stream, timeout, true).await?;
    let decided = decided_peer(tls.ssl())?;
    let peer = verify_peer(tls.ssl(), policy)?;
    if peer != decided {
        return Err(TlsError::FingerprintMismatch {
            expected: vec![decided.fingerprint],
            found: peer.fingerprint,
        });
    }
    Ok((tls, peer))
}

/// Runs the client side of a handshake on `stream` (normally a
/// `tokio::net::TcpStream`) within `timeout`, accepting only the server
/// whose certificate has one of `expected_fingerprints` (those registered
/// for the node dialled, e.g. `auth_cert_sha256` of the global
/// configuration; hex, case and `:` separators ignored) and which the connector's policy accepts. No SNI, no
/// hostname check.
pub async fn connect<S>(
    connector: &SslConnector,
    stream: S,
    expected_fingerprints: &[impl AsRef<str>],
    timeout: Duration,
) -> Result<(SslStream<S>, PeerIdentity), TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let index = state_index()?;
    let mut cfg = connector
        .configure()
        .map_err(config("creating a TLS session"))?;
    cfg.set_verify_hostname(false);
    cfg.set_use_server_name_indication(false);
    let mut ssl = cfg.into_ssl("").map_err(config("creating a TLS session"))?;
    ssl.set_ex_data(
        index,
        HandshakeState::new(Some(
            expected_fingerprints
                .iter()
                .map(|f| normalize_fingerprint(f.as_ref()))
                .collect(),
        )),
    );
    let tls = handshake(ssl, stream, timeout, false).await?;
    let peer = decided_peer(tls.ssl())?;
    Ok((tls, peer))
}
