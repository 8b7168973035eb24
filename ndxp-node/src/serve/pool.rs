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
pub struct PeerConn {
    io: TokioIo<SslStream<TcpStream>>,
    peer: PeerIdentity,
    h2: bool,
    _live: Option<LiveH2>,
}

impl std::fmt::Debug for PeerConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConn")
            .field("peer", &self.peer)
            .field("h2", &self.h2)
            .finish_non_exhaustive()
    }
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
    gate: Arc<DialGate>,
}

/// The dials of one pooled client: one at a time, and none while the
/// client holds a live HTTP/2 connection to the same address.
///
/// hyper dials for every request that finds no idle connection, so a burst
/// of requests at a cold client dials many connections at once and keeps
/// whichever HTTP/2 connection completes first. Behind a balancer that is a
/// random process; dialing one at a time keeps the first one, so that the
/// clients of [`PeerClients`] land on different processes in turn.
#[derive(Default)]
struct DialGate {
    turn: tokio::sync::Mutex<()>,
    live_h2: std::sync::Mutex<HashMap<String, usize>>,
}

impl DialGate {
    fn live(&self, addr: &str) -> usize {
        let live = self
            .live_h2
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        live.get(addr).copied().unwrap_or(0)
    }

    fn add(self: &Arc<Self>, addr: &str) -> LiveH2 {
        let mut live = self
            .live_h2
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *live.entry(addr.to_owned()).or_default() += 1;
        LiveH2 {
            gate: self.clone(),
            addr: addr.to_owned(),
        }
    }
}

/// Counts one live HTTP/2 connection of a [`DialGate`] until dropped.
struct LiveH2 {
    gate: Arc<DialGate>,
    addr: String,
}

impl Drop for LiveH2 {
    fn drop(&mut self) {
        let mut live = self
            .gate
            .live_h2
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = live.get_mut(&self.addr) {
            *n = n.saturating_sub(1);
        }
    }
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
            gate: Arc::default(),
        }
    }

    /// The same connector with dials of its own (for another client).
    fn separate(&self) -> Self {
        Self {
            gate: Arc::default(),
            ..self.clone()
        }
    }

    async fn dial(self, uri: Uri) -> Result<PeerConn, ConnectError> {
        let addr =
            authority_key(&uri).ok_or_else(|| ConnectError::UnknownAddress(uri.to_string()))?;
        let _turn = self.gate.turn.lock().await;
        // A dial hyper started while another one of this client was under
        // way: the connection made meanwhile serves its request. Wait for
        // that connection to go (then dial) or give up after the connect
        // time-out (hyper ignores the error of a dial nobody waits for).
        let waited = tokio::time::Instant::now();
        while self.gate.live(&addr) > 0 {
            if waited.elapsed() >= self.timeout {
                return Err(ConnectError::Io {
                    addr,
                    source: io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "an HTTP/2 connection to this address is already open",
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
            _live: h2.then(|| self.gate.add(&addr)),
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

/// The HPACK dynamic table the consumer's node offers the provider's node
/// on a peer connection, in bytes (`SETTINGS_HEADER_TABLE_SIZE`; HTTP/2's
/// default is 4 KiB). Signed answers carry the same ~1.7 KiB
/// `NDXP-Signer-Cert` value every time next to ~500 bytes of fresh values
/// (`Signature`, `Signature-Input`, `NDXP-Id`): in 4 KiB the certificate
/// falls out of the table every few answers and is sent and Huffman-coded
/// again in full; in 16 KiB it stays indexed for dozens. This is decoder
/// state of this node, at most this much per pooled connection. (The
/// other direction is the provider's listener setting; hyper-util's
/// server builder does not expose it yet.)
pub const PEER_HEADER_TABLE_BYTES: u32 = 16 * 1024;

/// A client over `connector` that keeps idle connections for 90 s and
/// offers a [`PEER_HEADER_TABLE_BYTES`] HPACK table.
pub fn peer_client(connector: PeerConnector) -> PeerClient {
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .http2_header_table_size(PEER_HEADER_TABLE_BYTES)
        .build(connector)
}

/// Several pooled clients over one connector, taken in turn.
///
/// Over HTTP/2 one client keeps a single connection per peer address, and
/// a load balancer in TCP mode sends all of it to one process behind the
/// address. `n` clients keep `n` connections, so `n` at least the number
/// of processes behind a balancer lets each of them serve this node.
pub struct PeerClients {
    clients: Vec<PeerClient>,
    next: std::sync::atomic::AtomicUsize,
}

impl PeerClients {
    /// `n` clients (at least one) over `connector`.
    pub fn new(connector: PeerConnector, n: usize) -> Self {
        Self {
            clients: (0..n.max(1))
                .map(|_| peer_client(connector.separate()))
                .collect(),
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The client for the next request.
    pub fn pick(&self) -> &PeerClient {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.clients[i % self.clients.len()]
    }
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
