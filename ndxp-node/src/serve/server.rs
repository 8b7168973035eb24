//! The client and peer ports on the shared serve loop
//! ([`ndxp_edge::serve`]): plain HTTP or HTTPS on the client port, mutual
//! TLS 1.3 with the global configuration's nodes on the peer port.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hyper::service::service_fn;
use ndxp_core::ErrorChain;
use ndxp_edge::serve::{Accept, AcceptError, Connected, Edge, Https, Plain};
use ndxp_sign::openssl::ssl::SslAcceptor;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::tls::{https_acceptor, ClientCertificates, PeerIdentity};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_openssl::SslStream;

use super::client_auth::CallerConnection;
use super::{consumer, provider, NodeState, StartError};
use crate::config::NodeConfig;

/// The client port's TLS acceptor, when `[client] tls_cert` is set: TLS
/// 1.2 or 1.3, and a required client certificate from `tls_client_ca`
/// when that is set; otherwise a client certificate is asked for but
/// optional, and `https-cert` subsystems pin theirs
/// ([`super::client_auth::authorize`]).
pub(crate) fn client_acceptor(config: &NodeConfig) -> Result<Option<SslAcceptor>, StartError> {
    let (Some(cert), Some(key)) = (&config.client.tls_cert, &config.client.tls_key) else {
        return Ok(None);
    };
    let clients = match &config.client.tls_client_ca {
        Some(ca) => ClientCertificates::Required(ca),
        None => ClientCertificates::Requested(&[]),
    };
    https_acceptor(cert, key, clients)
        .map(Some)
        .map_err(|e| StartError::ClientTls(ErrorChain(&e).to_string()))
}

/// Completes when the node is told to stop.
pub(crate) async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// The client port: the member's information systems (plain HTTP, or
/// HTTPS with `tls`).
pub(crate) async fn serve_client(
    state: Arc<NodeState>,
    listener: TcpListener,
    tls: Option<SslAcceptor>,
    stop: watch::Receiver<bool>,
) {
    let (name, port) = if tls.is_some() {
        ("HTTPS client port", "client_https")
    } else {
        ("client port", "client")
    };
    let edge = Edge::new(name, &state.config.edge);
    state.metrics.watch_edge(port, edge.stats());
    let service = move |caller: CallerConnection| {
        let st = state.clone();
        let caller = Arc::new(caller);
        service_fn(move |req| {
            let st = st.clone();
            let caller = caller.clone();
            async move { Ok::<_, Infallible>(consumer::handle(st, req, caller).await) }
        })
    };
    match tls {
        None => {
            let make = move |c: Connected<()>| {
                service(CallerConnection {
                    remote: c.remote,
                    tls: false,
                    cert_sha256: None,
                })
            };
            edge.serve(listener, Plain, make, stopped(stop)).await;
        }
        Some(acceptor) => {
            let make = move |c: Connected<Vec<X509>>| {
                service(CallerConnection {
                    remote: c.remote,
                    tls: true,
                    cert_sha256: c
                        .info
                        .first()
                        .map(|cert| ndxp_sign::cert::fingerprint_sha256(cert)),
                })
            };
            edge.serve(listener, Https::new(acceptor), make, stopped(stop))
                .await;
        }
    }
}

/// The peer port's accept step: mutual TLS 1.3 with the acceptor and peer
/// policy of the trust in force, then an OCSP answer for the peer's chain.
struct PeerAccept(Arc<NodeState>);

impl PeerAccept {
    async fn run(
        &self,
        tcp: TcpStream,
        remote: SocketAddr,
        timeout: Duration,
    ) -> Result<(SslStream<TcpStream>, PeerIdentity), AcceptError> {
        let st = &self.0;
        let trust = st.trust(Utc::now()).map_err(|p| {
            tracing::warn!(%remote, problem = %p, "peer connection refused: no valid global configuration");
            AcceptError::Refused {
                reason: "this node has no valid global configuration".into(),
                source: None,
            }
        })?;
        let (stream, peer) =
            match ndxp_sign::tls::accept(&trust.acceptor, tcp, &trust.peer_policy, timeout).await {
                Ok(x) => x,
                Err(e) => {
                    tracing::info!(%remote, error = %e, "peer refused in the TLS handshake");
                    st.metrics.peer_refused();
                    return Err(AcceptError::Tls(e));
                }
            };
        let chain = ndxp_sign::tls::presented_chain(stream.ssl());
        if let Err(e) = st.ocsp.ensure(&chain, Utc::now()).await {
            tracing::info!(%remote, peer = %peer.node, error = %e, "peer refused after the handshake");
            st.metrics.peer_refused();
            return Err(AcceptError::Refused {
                reason: format!("no revocation status for node {}", peer.node),
                source: Some(Box::new(e)),
            });
        }
        Ok((stream, peer))
    }
}

impl Accept for PeerAccept {
    type Io = SslStream<TcpStream>;
    type Info = PeerIdentity;

    fn accept(
        &self,
        tcp: TcpStream,
        remote: SocketAddr,
        timeout: Duration,
    ) -> impl std::future::Future<Output = Result<(Self::Io, PeerIdentity), AcceptError>> + Send
    {
        self.run(tcp, remote, timeout)
    }
}

/// The peer port: other nodes, mutual TLS 1.3.
pub(crate) async fn serve_peer(
    state: Arc<NodeState>,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) {
    let edge = Edge::new("peer port", &state.config.edge);
    state.metrics.watch_edge("peer", edge.stats());
    let accept = PeerAccept(state.clone());
    let make = move |c: Connected<PeerIdentity>| {
        let st = state.clone();
        let peer = Arc::new(c.info);
        let remote = c.remote;
        service_fn(move |req| {
            let st = st.clone();
            let peer = peer.clone();
            async move { Ok::<_, Infallible>(provider::handle(st, peer, remote, req).await) }
        })
    };
    edge.serve(listener, accept, make, stopped(stop)).await;
}
