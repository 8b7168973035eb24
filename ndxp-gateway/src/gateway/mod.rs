//! The central gateway role (centralized model, docs/design.md §9;
//! `docs/gateway.md`).
//!
//! Consumers get an access token at `POST /oauth2/token` (OAuth2 client
//! credentials, RFC 6749 §4.4) and call
//! `{gateway}/{provider service id}/{path}`, or, over HTTPS
//! (`[gateway] tls_cert`), present a registered client certificate instead
//! of a token. For each call the gateway
//! checks the token, the application's source address ranges, an approved
//! subscription and its rate limit and quota; forwards to the provider's
//! backend over pooled keep-alive connections, optionally signing the
//! request and verifying a signed response (DigiSign adapter, RFC 9421 in
//! the NDXP profile); appends the exchange to the message log (durable
//! before the response leaves); and answers with the backend's response
//! plus `NDXP-Id` and `NDXP-Request-Hash`, or a problem+json with the codes
//! of docs/design.md §4.
//!
//! | module | what |
//! |---|---|
//! | [`token`] | client secrets (HMAC-SHA256 hashes), ES256 JWT access tokens, the verified-token cache |
//! | [`certauth`] | client certificates as credentials: chain, expiry and OCSP checks with their cache |
//! | [`limits`] | per-subscription token buckets and daily quotas |
//! | [`metrics`] | request, duration, rate-limit and token metrics |
//! | [`routing`] | the in-memory table built from the registry |
//! | [`service`] | the catalogue, subscription and credential operations the management API and the `ndxp-gateway gateway ...` commands both call |
//!
//! **Freshness.** The request path never queries the registry. The table
//! is rebuilt when the registry version changes: a background task checks
//! the version every `[gateway] registry_poll_ms` (changes made by command
//! lines or other processes), and when the management role runs in the
//! same process, every successful change through its API rebuilds the
//! table before the API answers ([`Gateway::refresh`]), so the next
//! request already sees it.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use ndxp_audit::log::{LogOptions, SqlMessageLog};
use ndxp_registry::store::gateway::GatewayStore;
use ndxp_registry::store::StoreError;
use ndxp_sign::openssl::pkey::{PKey, Public};
use ndxp_sign::openssl::ssl::SslAcceptor;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile::{ProfilePolicy, ReplayCache, Signer, SignerRole};
use ndxp_sign::tls::ClientCertificates;

use crate::config::GatewayConfig;

pub(crate) mod backoff;
pub mod certauth;
pub mod limits;
pub mod metrics;
mod oauth;
mod proxy;
pub mod routing;
pub mod service;
pub mod token;

use certauth::ClientCert;
use limits::Limiter;
use metrics::GatewayMetrics;
use routing::{ClientFactory, Routing};
use token::{TokenIssuer, TokenVerifier};

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    /// The configuration has no `[gateway]` table.
    #[error("the configuration has no [gateway] table")]
    NotConfigured,
    /// A key or certificate file could not be used.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The message log could not be opened.
    #[error("cannot open the gateway message log")]
    Log(#[source] ndxp_audit::log::LogError),
    /// The registry failed.
    #[error("the registry could not be read")]
    Store(#[source] StoreError),
    /// The HTTP client could not be built.
    #[error("cannot build the backend HTTP client")]
    Client(#[source] reqwest::Error),
    /// The backend forwarder could not be built.
    #[error("cannot build the backend forwarder")]
    Forwarder(#[source] ndxp_edge::forward::ForwardError),
    /// The HTTPS listener could not be set up (`[gateway] tls_cert`,
    /// `tls_key`, `client_ca`).
    #[error("cannot set up the gateway's HTTPS listener")]
    Tls(#[source] ndxp_sign::tls::TlsError),
    /// The client CA certificates could not be read.
    #[error("cannot read the client CA certificates: {0}")]
    ClientCa(String),
}

/// Most signed backend responses the DigiSign adapter remembers for its
/// replay check.
pub const RESPONSE_REPLAY_ENTRIES: usize = 1_000_000;

/// Most of those one provider member may hold: past it only that member's
/// signed responses are refused (502 `ndxp.signature_invalid`, the replay
/// cache being full for it), other providers are not affected.
pub const RESPONSE_REPLAY_ENTRIES_PER_MEMBER: usize = 250_000;

/// The gateway role: shared by every request.
pub struct Gateway {
    store: Arc<dyn GatewayStore>,
    routing: RwLock<Arc<Routing>>,
    reload: tokio::sync::Mutex<()>,
    clients: ClientFactory,
    issuer: TokenIssuer,
    verifier: TokenVerifier,
    limiter: Limiter,
    secrets: oauth::SecretChecks,
    certs: certauth::CertChecker,
    tls: Option<SslAcceptor>,
    log: SqlMessageLog,
    signer: Signer,
    response_policy: ProfilePolicy,
    /// OCSP answers about the signers of backend responses.
    response_ocsp: ndxp_sign::ocsp_hub::OcspHub,
    max_body: usize,
    log_bodies: bool,
    poll: Duration,
    metrics: GatewayMetrics,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

fn file_err(path: &std::path::Path, reason: impl std::fmt::Display) -> GatewayError {
    GatewayError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

fn read_certs(path: &std::path::Path) -> Result<Vec<X509>, GatewayError> {
    let pem = std::fs::read(path).map_err(|e| file_err(path, e))?;
    ndxp_sign::cert::read_pem_chain(&pem).map_err(|e| file_err(path, e))
}

impl Gateway {
    /// Sets the gateway up from the configuration: the platform signing key
    /// and certificate of `[globalconf]` (token signing and the DigiSign
    /// adapter), the trusted CAs (verifying backend responses), the message
    /// log of `[gateway] log_url` (writer `gateway/<uuid v7>`), and loads
    /// the routing table.
    ///
    /// # Errors
    /// See [`GatewayError`].
    pub async fn new(
        config: &GatewayConfig,
        store: Arc<dyn GatewayStore>,
    ) -> Result<Self, GatewayError> {
        let gw = config.gateway.as_ref().ok_or(GatewayError::NotConfigured)?;
        let g = &config.globalconf;
        let passphrase = g
            .passphrase_file
            .as_deref()
            .map(|p| ndxp_sign::key::read_passphrase_file(p).map_err(|e| file_err(p, e)))
            .transpose()?;
        let key = ndxp_sign::key::read_private_key_file(&g.signing_key, passphrase.as_deref())
            .map_err(|e| file_err(&g.signing_key, e))?;
        let mut certs = read_certs(&g.signing_cert)?;
        if let Some(extra) = &g.signing_chain {
            certs.extend(read_certs(extra)?);
        }
        if certs.is_empty() {
            return Err(file_err(&g.signing_cert, "holds no certificate"));
        }
        let leaf = certs.remove(0);
        let public_pem = key
            .public_key_to_pem()
            .map_err(|e| file_err(&g.signing_key, e))?;
        let public: PKey<Public> =
            PKey::public_key_from_pem(&public_pem).map_err(|e| file_err(&g.signing_key, e))?;
        let issuer_name = config.gateway_issuer();
        let issuer = TokenIssuer::new(key.clone(), issuer_name.clone(), gw.token_lifetime_secs);
        let verifier = TokenVerifier::new(public, issuer_name);
        // The gateway signs for clients of other members (DigiSign adapter).
        let signer = Signer::new(key, leaf, certs)
            .map_err(|e| file_err(&g.signing_cert, e))?
            .with_role(SignerRole::Intermediary);
        let mut anchors = Vec::new();
        for ca in &g.cas {
            anchors.extend(read_certs(&ca.cert)?);
        }
        let ocsp_urls: Vec<String> = g.cas.iter().flat_map(|c| c.ocsp_urls.clone()).collect();
        let ocsp_http = reqwest::Client::builder()
            .no_proxy()
            .build()
            .map_err(GatewayError::Client)?;
        // Signers of backend responses are checked against the platform
        // CAs' OCSP answers, strictly (no answer, no response), as a node
        // checks its peers.
        let response_ocsp = ndxp_sign::ocsp_hub::OcspHub::new(
            ndxp_registry::globalconf::ocsp_fetcher(ocsp_http.clone()),
        );
        response_ocsp.set_trust(anchors.clone(), ocsp_urls.clone());
        let response_policy = ProfilePolicy::new(anchors)
            .with_revocation(response_ocsp.cache())
            .with_replay_cache(Arc::new(
                // One provider member signing many responses fills its
                // own share only (docs/design.md §5).
                ReplayCache::new(300, RESPONSE_REPLAY_ENTRIES)
                    .with_max_per_member(RESPONSE_REPLAY_ENTRIES_PER_MEMBER),
            ));
        let writer = format!("gateway/{}", uuid::Uuid::now_v7());
        let log = SqlMessageLog::open(&gw.log_url, &writer, &LogOptions::default())
            .await
            .map_err(GatewayError::Log)?;
        let extra = gw
            .forward_headers
            .iter()
            .filter_map(|f| {
                let headers = ndxp_edge::forward::ExtraHeaders {
                    request: f.request.clone(),
                    response: f.response.clone(),
                };
                f.service.parse().ok().map(|id| (id, headers))
            })
            .collect();
        let clients = ClientFactory::new(gw.pool_max_idle_per_host, extra)
            .map_err(GatewayError::Forwarder)?;
        let client_anchors = config
            .client_cert_anchors()
            .map_err(GatewayError::ClientCa)?;
        let tls = match (&gw.tls_cert, &gw.tls_key) {
            (Some(cert), Some(key)) => Some(
                ndxp_sign::tls::https_acceptor(
                    cert,
                    key,
                    ClientCertificates::Requested(&client_anchors),
                )
                .map_err(GatewayError::Tls)?,
            ),
            _ => None,
        };
        let certs = certauth::CertChecker::new(client_anchors, ocsp_urls, ocsp_http);
        let gateway = Self {
            store,
            routing: RwLock::new(Arc::new(Routing {
                version: -1,
                ..Routing::default()
            })),
            reload: tokio::sync::Mutex::new(()),
            clients,
            issuer,
            verifier,
            limiter: Limiter::new(),
            secrets: oauth::SecretChecks::new(oauth::CheckLimits {
                queue: gw.token_check_queue,
                free_failures: gw.token_failures_before_backoff,
                max_backoff: Duration::from_secs(gw.token_backoff_max_secs),
            }),
            certs,
            tls,
            log,
            signer,
            response_policy,
            response_ocsp,
            max_body: gw.max_body_bytes,
            log_bodies: gw.log_bodies,
            poll: Duration::from_millis(gw.registry_poll_ms),
            metrics: GatewayMetrics::new(),
        };
        gateway.refresh().await.map_err(GatewayError::Store)?;
        Ok(gateway)
    }

    /// The current routing table.
    pub fn routing(&self) -> Arc<Routing> {
        self.routing
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Rebuilds the routing table if the registry version changed; returns
    /// whether it did.
    ///
    /// # Errors
    /// When the registry cannot be read (the old table stays).
    pub async fn refresh(&self) -> Result<bool, StoreError> {
        let _guard = self.reload.lock().await;
        let current = self.routing().version;
        if self.store.gateway_registry_version().await? == current {
            return Ok(false);
        }
        let snapshot = self.store.gateway_snapshot().await?;
        let (table, problems) = Routing::build(snapshot, &self.clients);
        for p in problems {
            tracing::warn!(error = %p, "gateway service left out of the routing table");
        }
        let table = Arc::new(table);
        let keep = table.clone();
        self.limiter.retain(&|id| keep.has_subscription(id));
        tracing::debug!(version = table.version, "gateway routing table loaded");
        *self.routing.write().unwrap_or_else(PoisonError::into_inner) = table;
        Ok(true)
    }

    /// Checks the registry version every `[gateway] registry_poll_ms` until
    /// `stop` completes.
    pub async fn poll_until(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(self.poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(stop);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = self.refresh().await {
                        tracing::warn!(error = %e, "gateway could not re-read the registry; keeping the current routing table");
                    }
                }
                () = &mut stop => break,
            }
        }
    }

    /// The token verifier (its cache size is a useful metric).
    pub fn verifier(&self) -> &TokenVerifier {
        &self.verifier
    }

    /// The role's request and token metrics (register them in the
    /// process's registry to serve them).
    pub fn metrics(&self) -> &GatewayMetrics {
        &self.metrics
    }

    /// The message log writer id.
    pub fn log_writer(&self) -> &str {
        ndxp_audit::log::MessageLog::writer(&self.log)
    }

    /// Stops the message log after every queued record is committed.
    pub async fn close(self) {
        self.log.close().await;
    }
}

/// Serves the gateway on `listener` with the serve loop `edge` (built
/// with the `[edge]` limits) until `stop` completes: plain HTTP, or HTTPS when
/// `[gateway] tls_cert` is set. Every request carries the remote address as
/// axum's `ConnectInfo<SocketAddr>` and, over HTTPS, the connection's client
/// certificate, if any, as a [`ClientCert`] extension; a failed handshake
/// closes that connection only.
pub async fn serve(
    gw: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    edge: ndxp_edge::serve::Edge,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    let app = router(gw.clone());
    let service = move |remote: SocketAddr, cert: Option<ClientCert>| {
        let mut ext = axum::http::Extensions::new();
        ext.insert(ConnectInfo(remote));
        if let Some(c) = cert {
            ext.insert(c);
        }
        ndxp_edge::serve::tower(app.clone(), ext)
    };
    match gw.tls.clone() {
        None => {
            edge.serve(
                listener,
                ndxp_edge::serve::Plain,
                move |c| service(c.remote, None),
                stop,
            )
            .await;
        }
        Some(acceptor) => {
            let make = move |c: ndxp_edge::serve::Connected<Vec<X509>>| {
                service(c.remote, ClientCert::from_chain(c.info))
            };
            edge.serve(listener, ndxp_edge::serve::Https::new(acceptor), make, stop)
                .await;
        }
    }
}

impl Gateway {
    /// Whether `[gateway] tls_cert` is set (the listener speaks HTTPS).
    pub fn serves_https(&self) -> bool {
        self.tls.is_some()
    }
}

/// The gateway's HTTP router: `POST /oauth2/token` and every service call.
/// Serve it with [`serve`], or with
/// `into_make_service_with_connect_info::<SocketAddr>()` (source address
/// checks need the peer address).
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route("/oauth2/token", post(token))
        .fallback(call)
        .with_state(gateway)
}

async fn token(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let resp = oauth::token(State(gw.clone()), req).await;
    gw.metrics.observe_token(resp.status());
    resp
}

async fn call(
    State(gw): State<Arc<Gateway>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: Request,
) -> Response {
    let start = Instant::now();
    let uri = req.uri().clone();
    let resp = proxy::handle(&gw, peer, req).await;
    // A call refused before the proxy labelled it (bad path, unknown
    // service, no valid credentials) is counted under the offered service
    // it named, if any.
    let named = || {
        let path = uri.path().strip_prefix('/')?;
        let (service, _) = ndxp_core::ServiceId::split_path(path).ok()?;
        gw.routing()
            .services
            .contains_key(&service)
            .then(|| gw.metrics.service(&service))
    };
    let service = if resp.extensions().get::<metrics::CallSeen>().is_some() {
        None
    } else {
        named()
    };
    gw.metrics.observe_call(&resp, service, start.elapsed());
    resp
}
