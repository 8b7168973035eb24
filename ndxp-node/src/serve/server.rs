//! Accept loops of the client and peer ports: TLS where configured,
//! HTTP/1.1 and HTTP/2 on each connection, graceful shutdown.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use ndxp_core::ErrorChain;
use ndxp_sign::openssl::ssl::SslAcceptor;
use ndxp_sign::tls::{accept_https, https_acceptor, ClientCertificates};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::client_auth::CallerConnection;
use super::{consumer, provider, NodeState, StartError};
use crate::config::NodeConfig;

/// Time allowed for a TLS handshake on the client and peer ports.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed for exchanges in flight when the node stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

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

fn builder() -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(Duration::from_secs(30));
    b.http2().timer(hyper_util::rt::TokioTimer::new());
    b.http2().max_concurrent_streams(1024);
    b
}

async fn drain(graceful: GracefulShutdown) {
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("exchanges still in flight after the drain time were cut");
    }
}

/// The client port: the member's information systems.
pub(crate) async fn serve_client(
    state: Arc<NodeState>,
    listener: TcpListener,
    tls: Option<SslAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let http = builder();
    let tls = tls.map(Arc::new);
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "client port accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let st = state.clone();
        match &tls {
            None => {
                let caller = Arc::new(CallerConnection {
                    remote,
                    tls: false,
                    cert_sha256: None,
                });
                let svc = service_fn(move |req| {
                    let st = st.clone();
                    let caller = caller.clone();
                    async move {
                        Ok::<_, std::convert::Infallible>(consumer::handle(st, req, caller).await)
                    }
                });
                let conn = http.serve_connection(TokioIo::new(tcp), svc).into_owned();
                let fut = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = fut.await;
                });
            }
            Some(acceptor) => {
                let acceptor = acceptor.clone();
                let http = http.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let stream = match accept_https(&acceptor, tcp, HANDSHAKE_TIMEOUT).await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%remote, error = %e, "client port TLS handshake failed");
                            return;
                        }
                    };
                    let caller = Arc::new(CallerConnection {
                        remote,
                        tls: true,
                        cert_sha256: stream
                            .ssl()
                            .peer_certificate()
                            .map(|c| ndxp_sign::cert::fingerprint_sha256(&c)),
                    });
                    let svc = service_fn(move |req| {
                        let st = st.clone();
                        let caller = caller.clone();
                        async move {
                            Ok::<_, std::convert::Infallible>(
                                consumer::handle(st, req, caller).await,
                            )
                        }
                    });
                    let conn = http
                        .serve_connection(TokioIo::new(stream), svc)
                        .into_owned();
                    let _ = watcher.watch(conn).await;
                });
            }
        }
    }
    drain(graceful).await;
}

/// The peer port: other nodes, mutual TLS 1.3.
pub(crate) async fn serve_peer(
    state: Arc<NodeState>,
    listener: TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    let graceful = GracefulShutdown::new();
    let http = builder();
    loop {
        let (tcp, remote) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "peer port accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = tcp.set_nodelay(true);
        let st = state.clone();
        let http = http.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let trust = match st.trust(Utc::now()) {
                Ok(t) => t,
                Err(p) => {
                    tracing::warn!(%remote, problem = %p, "peer connection refused: no valid global configuration");
                    return;
                }
            };
            let (stream, peer) = match ndxp_sign::tls::accept(
                &trust.acceptor,
                tcp,
                &trust.peer_policy,
                HANDSHAKE_TIMEOUT,
            )
            .await
            {
                Ok(x) => x,
                Err(e) => {
                    tracing::info!(%remote, error = %e, "peer refused in the TLS handshake");
                    st.metrics.peer_refused();
                    return;
                }
            };
            let chain = ndxp_sign::tls::presented_chain(stream.ssl());
            if let Err(e) = st.ocsp.ensure(&chain, Utc::now()).await {
                tracing::info!(%remote, peer = %peer.node, error = %e, "peer refused after the handshake");
                st.metrics.peer_refused();
                return;
            }
            let peer = Arc::new(peer);
            let svc = service_fn(move |req| {
                let st = st.clone();
                let peer = peer.clone();
                async move { Ok::<_, std::convert::Infallible>(provider::handle(st, peer, req).await) }
            });
            let conn = http
                .serve_connection(TokioIo::new(stream), svc)
                .into_owned();
            let _ = watcher.watch(conn).await;
        });
    }
    drain(graceful).await;
}
