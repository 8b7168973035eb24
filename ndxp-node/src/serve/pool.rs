//! Pooled, kept-alive mutual-TLS connections to peer nodes.
//!
//! A [`PeerConnector`] dials the address a node has in the global
//! configuration and accepts exactly the authentication certificates
//! registered there for it ([`ndxp_sign::tls::connect`]), then makes sure
//! the peer's certificate is not revoked ([`OcspHub::ensure`]) before the
//! connection is used. The hyper client on top keeps connections alive and
//! reuses them (HTTP/2 when both ends offer it by ALPN, else HTTP/1.1).

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::Utc;
use http::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ndxp_sign::openssl::ssl::SslConnector;
use ndxp_sign::tls::{self, PeerIdentity, TlsError};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

use super::ocsp::{OcspHub, RevocationError};
use super::wire::Body;

/// Why a connection to a peer node failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The address is not one of a node in the global configuration.
    #[error("{0} is not the address of a node in the global configuration")]
    UnknownAddress(String),
    /// TCP failed or timed out.
    #[error("cannot connect to {addr}: {source}")]
    Io {
        /// host:port.
        addr: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The TLS handshake failed or the peer was refused.
    #[error("mutual TLS with {addr} failed: {source}")]
    Tls {
        /// host:port.
        addr: String,
        /// The cause.
        #[source]
        source: TlsError,
    },
    /// The peer's certificate is revoked or its status unknown.
    #[error("the peer node at {addr} cannot be trusted: {source}")]
    Revocation {
        /// host:port.
        addr: String,
        /// The cause.
        #[source]
        source: RevocationError,
    },
}

impl ConnectError {
    /// Whether the failure is about trust (certificate, revocation) rather
    /// than reachability.
    pub fn is_trust(&self) -> bool {
        match self {
            Self::Revocation { .. } => true,
            Self::Tls { source, .. } => !matches!(source, TlsError::Io(_) | TlsError::Timeout(_)),
            _ => false,
        }
    }
}

/// An established connection to a peer node.
#[derive(Debug)]
pub struct PeerConn {
    io: TokioIo<SslStream<TcpStream>>,
    peer: PeerIdentity,
    h2: bool,
}

impl Connection for PeerConn {
    fn connected(&self) -> Connected {
        let c = Connected::new().extra(self.peer.clone());
        if self.h2 {
            c.negotiated_h2()
        } else {
            c
        }
    }
}

impl hyper::rt::Read for PeerConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for PeerConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// Dials peer nodes (a `tower` service from URI to connection).
#[derive(Clone)]
pub struct PeerConnector {
    connector: Arc<SslConnector>,
    pins: Arc<HashMap<String, Vec<String>>>,
    timeout: Duration,
    ocsp: Arc<OcspHub>,
}

impl std::fmt::Debug for PeerConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConnector")
            .field("nodes", &self.pins.len())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// `host:port` of an `https` URI (port 443 when absent).
pub fn authority_key(uri: &Uri) -> Option<String> {
    let host = uri.host()?;
    let port = uri.port_u16().unwrap_or(443);
    Some(format!(
        "{}:{port}",
        host.trim_start_matches('[').trim_end_matches(']')
    ))
}

impl PeerConnector {
    /// A connector presenting the node's identity through `connector`,
    /// accepting for each `host:port` the fingerprints in `pins`.
    pub fn new(
        connector: SslConnector,
        pins: HashMap<String, Vec<String>>,
        timeout: Duration,
        ocsp: Arc<OcspHub>,
    ) -> Self {
        Self {
            connector: Arc::new(connector),
            pins: Arc::new(pins),
            timeout,
            ocsp,
        }
    }

    async fn dial(self, uri: Uri) -> Result<PeerConn, ConnectError> {
        let addr =
            authority_key(&uri).ok_or_else(|| ConnectError::UnknownAddress(uri.to_string()))?;
        let pins = self
            .pins
            .get(&addr)
            .cloned()
            .ok_or_else(|| ConnectError::UnknownAddress(addr.clone()))?;
        let host = uri
            .host()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect((host.as_str(), port)))
            .await
            .map_err(|_| ConnectError::Io {
                addr: addr.clone(),
                source: io::Error::new(io::ErrorKind::TimedOut, "connection timed out"),
            })?
            .map_err(|source| ConnectError::Io {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let (stream, peer) = tls::connect(&self.connector, tcp, &pins, self.timeout)
            .await
            .map_err(|source| ConnectError::Tls {
                addr: addr.clone(),
                source,
            })?;
        let chain = ndxp_sign::tls::presented_chain(stream.ssl());
        self.ocsp
            .ensure(&chain, Utc::now())
            .await
            .map_err(|source| ConnectError::Revocation {
                addr: addr.clone(),
                source,
            })?;
        let h2 = stream.ssl().selected_alpn_protocol() == Some(b"h2");
        Ok(PeerConn {
            io: TokioIo::new(stream),
            peer,
            h2,
        })
    }
}

impl tower_service::Service<Uri> for PeerConnector {
    type Response = PeerConn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<PeerConn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        Box::pin(self.clone().dial(uri))
    }
}

/// The pooled client towards peer nodes.
pub type PeerClient = Client<PeerConnector, Body>;

/// A client over `connector` that keeps idle connections for 90 s.
pub fn peer_client(connector: PeerConnector) -> PeerClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(connector)
}

/// Finds a [`ConnectError`] among the causes of a client error.
pub fn connect_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ConnectError> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(c) = err.downcast_ref::<ConnectError>() {
            return Some(c);
        }
        cur = err.source();
    }
    None
}
