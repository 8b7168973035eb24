//! `ndxp-node serve`: the node's three ports in one process.
//!
//! | port | default | who calls | what |
//! |---|---|---|---|
//! | client | `127.0.0.1:8201` | the member's information systems | docs/design.md §4: `/r1/{service}/{path}` and the metadata services (consumer role) |
//! | peer | `0.0.0.0:8202` | other nodes, mutual TLS 1.3 only | signed requests for the services this node provides (provider role) |
//! | admin | `127.0.0.1:8203` | operators, monitoring | `/healthz`, `/readyz`, `/metrics`, the local admin API (bearer token) |
//!
//! The exchange, step by step, is in `docs/protocol.md`. In short: the
//! consumer's node checks the client subsystem, finds the provider's node
//! in the verified global configuration, connects with mutual TLS (pooled,
//! kept alive), signs the request (RFC 9421 + `Content-Digest`) with the
//! member's signing key and forwards it; the provider's node verifies the
//! signature, digest, freshness, replay and access right, calls the
//! backend, signs the response (covering the request's signature) and logs;
//! the consumer's node verifies the response, logs, and answers the client.
//! Both log records are durable before the answer leaves the node.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ndxp_node::config::load("node.toml".as_ref())?;
//! let node = ndxp_node::serve::Node::start(config).await?;
//! println!("client port on {}", node.client_addr());
//! node.run_until(async { let _ = tokio::signal::ctrl_c().await; }).await;
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndxp_audit::log::{LogOptions, SqlMessageLog};
use ndxp_audit::timestamp::{HttpTsa, TimestampOptions, Timestamper};
use ndxp_core::{ErrorChain, ErrorCode, Problem};
use ndxp_registry::globalconf::{ConfClient, ConfDocument};
use ndxp_sign::chain::ChainError;
use ndxp_sign::openssl::ssl::SslAcceptor;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile::{ProfileError, ProfilePolicy, ReplayCache, Signer, SignerCache};
use ndxp_sign::tls::{self, PeerPolicy, TlsIdentity};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::NodeConfig;
use crate::local::{LocalFile, LocalHandle};

mod admin;
mod client_auth;
mod consumer;
mod health;
pub mod metrics;
pub mod ocsp;
pub mod pool;
mod provider;
mod record;
mod report;
mod server;
pub mod wire;

use metrics::Metrics;
use ocsp::OcspHub;
use pool::{PeerClients, PeerConnector};

/// Most (transaction id, signer) pairs the replay cache holds; beyond it
/// new messages are refused with `ndxp.rate_limited` until old ones leave
/// the window. One signer member may hold at most
/// `[exchange] replay_entries_per_member` of them.
pub const REPLAY_CACHE_ENTRIES: usize = 4_000_000;

/// Most signer certificates kept validated, by keyid (each re-validated
/// after 60 s; the revocation verdict is reused only until the OCSP cache
/// takes a new answer or the answer expires).
pub const SIGNER_CACHE_ENTRIES: usize = 10_000;

/// Why a signed message was refused.
#[derive(Debug)]
pub(crate) enum VerifyFailure {
    /// The profile's checks failed.
    Profile(ProfileError),
    /// The signer's revocation status could not be obtained.
    Revocation(ocsp::RevocationError),
}

impl std::fmt::Display for VerifyFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Profile(e) => write!(f, "{e}"),
            Self::Revocation(e) => write!(f, "{e}"),
        }
    }
}

impl VerifyFailure {
    /// The problem code (`signature_invalid` unless the profile says
    /// otherwise).
    pub(crate) fn code(&self) -> ErrorCode {
        match self {
            Self::Profile(e) => e.problem_code(),
            Self::Revocation(_) => ErrorCode::SignatureInvalid,
        }
    }
}

impl NodeState {
    /// Runs `verify`; when it fails only because no OCSP answer is held for
    /// the signer's certificate, fetches one and runs it once more.
    pub(crate) async fn verify_signed<T>(
        &self,
        headers: &http::HeaderMap,
        max_field_bytes: usize,
        verify: impl Fn() -> Result<T, ProfileError>,
    ) -> Result<T, VerifyFailure> {
        match verify() {
            Err(ProfileError::UntrustedSigner(ChainError::RevocationCheckFailed { .. })) => {
                let certs = ndxp_sign::profile::parse_signer_cert_header(headers, max_field_bytes)
                    .map_err(VerifyFailure::Profile)?;
                self.ocsp
                    .ensure(&certs, Utc::now())
                    .await
                    .map_err(VerifyFailure::Revocation)?;
                verify().map_err(VerifyFailure::Profile)
            }
            other => other.map_err(VerifyFailure::Profile),
        }
    }
}

/// Why the node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A key or certificate file could not be used.
    #[error("{what}: {detail}")]
    Keys {
        /// Which file or setting.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// The message log could not be opened.
    #[error("cannot open the message log")]
    Log(#[source] ndxp_audit::log::LogError),
    /// The local configuration file is not valid.
    #[error(transparent)]
    Local(#[from] crate::local::LocalError),
    /// The global configuration client could not be set up.
    #[error(transparent)]
    Conf(#[from] crate::conf::ConfCommandError),
    /// A port could not be opened.
    #[error("cannot listen on {addr} ({what})")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Which port.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The admin token file could not be read or created.
    #[error("admin.token_file {path}: {detail}")]
    Token {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
    /// The client port's TLS settings could not be used.
    #[error("client port TLS: {0}")]
    ClientTls(String),
}

/// What the node trusts under one version of the global configuration;
/// rebuilt when a newer version arrives.
pub(crate) struct Trust {
    pub(crate) doc: Arc<ConfDocument>,
    pub(crate) acceptor: SslAcceptor,
    pub(crate) peer_policy: PeerPolicy,
    pub(crate) client: PeerClients,
    pub(crate) profile: ProfilePolicy,
}

/// Everything the ports share.
pub(crate) struct NodeState {
    pub(crate) config: NodeConfig,
    pub(crate) signer: Signer,
    /// The PKCS#11 token of the signing key, when it is on one.
    pub(crate) sign_token: Option<Arc<ndxp_sign::pkcs11::Pkcs11KeyStore>>,
    pub(crate) own_cert_der: Vec<u8>,
    pub(crate) own_chain_der: Vec<Vec<u8>>,
    pub(crate) identity: TlsIdentity,
    pub(crate) conf: Arc<ConfClient>,
    trust: RwLock<Option<(u64, Arc<Trust>)>>,
    pub(crate) ocsp: Arc<OcspHub>,
    replay: Arc<ReplayCache>,
    pub(crate) local: LocalHandle,
    pub(crate) log: Arc<SqlMessageLog>,
    /// The batch timestamper, started once a valid global configuration
    /// names a TSA.
    pub(crate) timestamper: std::sync::OnceLock<Timestamper>,
    log_pool: sqlx::AnyPool,
    pub(crate) backend: ndxp_edge::forward::Forwarder,
    pub(crate) metrics: Metrics,
    pub(crate) admin_token_sha256: [u8; 32],
    pub(crate) ready_log: std::sync::atomic::AtomicBool,
    /// Set on shutdown: `/readyz` answers 503 while in-flight exchanges
    /// finish.
    pub(crate) draining: std::sync::atomic::AtomicBool,
}

impl NodeState {
    /// The trust in force, rebuilt when the global configuration changed;
    /// `ndxp.conf_expired` when there is no valid configuration.
    pub(crate) fn trust(&self, now: DateTime<Utc>) -> Result<Arc<Trust>, Problem> {
        let doc = self.conf.current_valid(now).map_err(|e| {
            Problem::new(
                ErrorCode::ConfExpired,
                format!("this node has no valid global configuration: {e}"),
            )
        })?;
        if let Some((v, t)) = self
            .trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            if *v == doc.version {
                return Ok(t.clone());
            }
        }
        let built = Arc::new(self.build_trust(doc.clone()).map_err(|e| {
            Problem::new(
                ErrorCode::ConfExpired,
                format!("the global configuration cannot be used: {e}"),
            )
        })?);
        let mut slot = self.trust.write().unwrap_or_else(PoisonError::into_inner);
        *slot = Some((doc.version, built.clone()));
        self.metrics.set_conf_version(doc.version);
        Ok(built)
    }

    /// Forgets the trust (and with it the pooled connections), e.g. after
    /// a peer's certificate was found revoked.
    pub(crate) fn reset_trust(&self) {
        *self.trust.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn build_trust(&self, doc: Arc<ConfDocument>) -> Result<Trust, String> {
        let anchors: Vec<X509> = doc.trusted_ca_certs().map_err(|e| e.to_string())?;
        let urls = doc
            .cas
            .iter()
            .flat_map(|c| c.ocsp_urls.iter().cloned())
            .collect();
        self.ocsp.set_trust(anchors.clone(), urls);
        let lenient = Arc::new(self.ocsp.lenient());
        let registry = doc.clone();
        let peer_policy = PeerPolicy::registered(anchors.clone(), move |member, node, fp| {
            registry
                .node(member, node)
                .is_some_and(|n| n.auth_cert_sha256.iter().any(|f| f == fp))
        })
        .with_revocation(lenient.clone());
        let acceptor =
            tls::server_acceptor(&self.identity, peer_policy.clone()).map_err(|e| e.to_string())?;
        let client_policy =
            PeerPolicy::pinned_per_connection(anchors.clone()).with_revocation(lenient);
        let connector =
            tls::client_connector(&self.identity, client_policy).map_err(|e| e.to_string())?;
        let mut pins: HashMap<String, Vec<String>> = HashMap::new();
        for n in &doc.nodes {
            if let Some(key) = n
                .address
                .parse()
                .ok()
                .as_ref()
                .and_then(pool::authority_key)
            {
                pins.entry(key)
                    .or_default()
                    .extend(n.auth_cert_sha256.iter().cloned());
            }
        }
        let client = PeerClients::new(
            PeerConnector::new(
                connector,
                pins,
                Duration::from_secs(self.config.exchange.connect_timeout_secs),
                self.ocsp.clone(),
            ),
            usize::try_from(self.config.exchange.peer_connections).unwrap_or(1),
        );
        let profile = ProfilePolicy::new(anchors)
            .with_signer_cache(Arc::new(SignerCache::new(SIGNER_CACHE_ENTRIES, 60)))
            .with_revocation(self.ocsp.cache())
            .with_replay_cache(self.replay.clone())
            .with_window(self.config.exchange.window_secs);
        Ok(Trust {
            doc,
            acceptor,
            peer_policy,
            client,
            profile,
        })
    }

    /// Appends `exchange` to the message log, recording how long it waited
    /// for its commit.
    pub(crate) async fn log_append(
        &self,
        exchange: ndxp_audit::log::Exchange,
    ) -> Result<ndxp_audit::log::LogRecord, ndxp_audit::log::LogError> {
        let role = match exchange.role {
            ndxp_audit::log::Role::Consumer => "consumer",
            ndxp_audit::log::Role::Provider => "provider",
            ndxp_audit::log::Role::Gateway => "gateway",
        };
        let started = std::time::Instant::now();
        let result = ndxp_audit::log::MessageLog::append(self.log.as_ref(), exchange).await;
        self.metrics.observe_log_append(role, started.elapsed());
        result
    }

    /// Refuses new exchanges while timestamping is further behind than
    /// `[log] timestamp_max_lag_secs` (`ndxp.internal`, with the reason).
    pub(crate) fn check_timestamp_lag(&self) -> Result<(), Problem> {
        match self.timestamper.get() {
            Some(ts) => ts
                .check_lag(Duration::from_secs(self.config.log.timestamp_max_lag_secs))
                .map_err(|e| Problem::new(ErrorCode::Internal, e.to_string())),
            None => Ok(()),
        }
    }

    /// Starts the batch timestamper once the global configuration names a
    /// TSA (the first one listed).
    fn start_timestamper(&self, doc: &ConfDocument) {
        if self.timestamper.get().is_some() {
            return;
        }
        let Some(tsa) = doc.tsas.first() else {
            return;
        };
        let (Ok(cas), Ok(tsa_certs)) = (doc.trusted_ca_certs(), doc.trusted_tsa_certs()) else {
            tracing::warn!(
                "the global configuration's CA or TSA certificates cannot be read; no timestamping"
            );
            return;
        };
        let transport = match HttpTsa::new(&tsa.url, Duration::from_secs(30)) {
            Ok(t) => Arc::new(t),
            Err(e) => {
                tracing::warn!(url = %tsa.url, error = %e, "the TSA cannot be used; no timestamping");
                return;
            }
        };
        let mut options =
            TimestampOptions::new(ndxp_sign::tsa::TsaTrust::new(cas).with_untrusted(tsa_certs));
        options.interval = Duration::from_secs(self.config.log.timestamp_interval_secs.max(1));
        let ts = Timestamper::spawn(&self.log, transport, options);
        if self.timestamper.set(ts).is_ok() {
            tracing::info!(tsa = %tsa.url, "batch timestamping of the message log started");
        }
    }

    /// Whether bodies of `service` are kept in the log.
    pub(crate) fn keep_bodies(&self, entry: Option<&crate::local::ServiceEntry>) -> bool {
        entry
            .and_then(|e| e.keep_bodies)
            .unwrap_or(self.config.log.keep_bodies)
    }
}

fn keys_err(what: impl Into<String>, detail: impl std::fmt::Display) -> StartError {
    StartError::Keys {
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// The member signing key's PKCS#11 token, opened and logged in, with the
/// key found: `None` when `[node.sign_pkcs11]` is not set.
pub(crate) fn open_sign_token(
    config: &NodeConfig,
) -> Result<Option<Arc<ndxp_sign::pkcs11::Pkcs11KeyStore>>, StartError> {
    let Some(token) = config.sign_token() else {
        return Ok(None);
    };
    let what = "node.sign_pkcs11";
    let token = token.map_err(|e| keys_err(what, e))?;
    let store = ndxp_sign::pkcs11::Pkcs11KeyStore::open(&token)
        .map_err(|e| keys_err(what, ErrorChain(&e)))?;
    store
        .find_key()
        .map_err(|e| keys_err(what, ErrorChain(&e)))?;
    Ok(Some(Arc::new(store)))
}

/// The member's signer, the node's TLS identity, and the token of the
/// signing key when it is on one.
pub(crate) type LoadedKeys = (
    Signer,
    TlsIdentity,
    Option<Arc<ndxp_sign::pkcs11::Pkcs11KeyStore>>,
);

/// Loads the member's signer and the node's TLS identity from
/// `[node] keys_dir` (the signing key from the PKCS#11 token of
/// `[node.sign_pkcs11]` when set), checking that they belong to this node.
pub(crate) fn load_signer(config: &NodeConfig) -> Result<LoadedKeys, StartError> {
    let pass = match &config.node.passphrase_file {
        Some(p) => Some(
            ndxp_sign::key::read_passphrase_file(p)
                .map_err(|e| keys_err(p.display().to_string(), e))?,
        ),
        None => None,
    };
    let chain = read_optional_chain(&config.chain_path())?;
    let token = open_sign_token(config)?;
    let sign_certs = read_certs(&config.sign_cert_path())?;
    let mut it = sign_certs.into_iter();
    let sign_cert = it.next().ok_or_else(|| {
        keys_err(
            config.sign_cert_path().display().to_string(),
            "holds no certificate; install the signing certificate the CA issued",
        )
    })?;
    let mut sign_chain: Vec<X509> = it.collect();
    if sign_chain.is_empty() {
        sign_chain = chain.clone();
    }
    let signer = match &token {
        Some(store) => {
            let name = store.key_name().to_string();
            let store_dyn: Arc<dyn ndxp_sign::key::KeyStore> = store.clone();
            Signer::from_store(store_dyn, &name, sign_cert, sign_chain).map_err(|e| {
                keys_err(
                    config.sign_cert_path().display().to_string(),
                    format!(
                        "{e} (the key is {name} on PKCS#11 token {}: install the certificate the CA issued for the sign.csr made on the token)",
                        store.token_label()
                    ),
                )
            })?
        }
        None => {
            let sign_key =
                ndxp_sign::key::read_private_key_file(&config.sign_key_path(), pass.as_deref())
                    .map_err(|e| keys_err(config.sign_key_path().display().to_string(), e))?;
            Signer::new(sign_key, sign_cert, sign_chain)
                .map_err(|e| keys_err(config.sign_cert_path().display().to_string(), e))?
        }
    };
    if signer.member() != &config.node.member {
        return Err(keys_err(
            config.sign_cert_path().display().to_string(),
            format!(
                "the signing certificate is for member {}, but node.member is {}",
                signer.member(),
                config.node.member
            ),
        ));
    }
    let auth_key = ndxp_sign::key::read_private_key_file(&config.auth_key_path(), pass.as_deref())
        .map_err(|e| keys_err(config.auth_key_path().display().to_string(), e))?;
    let auth_certs = read_certs(&config.auth_cert_path())?;
    let mut it = auth_certs.into_iter();
    let auth_cert = it.next().ok_or_else(|| {
        keys_err(
            config.auth_cert_path().display().to_string(),
            "holds no certificate; install the authentication certificate the CA issued",
        )
    })?;
    let mut auth_chain: Vec<X509> = it.collect();
    if auth_chain.is_empty() {
        auth_chain = chain;
    }
    let identity = TlsIdentity::new(auth_key, auth_cert, auth_chain)
        .map_err(|e| keys_err(config.auth_cert_path().display().to_string(), e))?;
    if identity.member() != &config.node.member || identity.node() != &config.node.name {
        return Err(keys_err(
            config.auth_cert_path().display().to_string(),
            format!(
                "the authentication certificate is for node {}/{}, but this node is {}/{}",
                identity.member(),
                identity.node(),
                config.node.member,
                config.node.name
            ),
        ));
    }
    Ok((signer, identity, token))
}

fn read_certs(path: &Path) -> Result<Vec<X509>, StartError> {
    let pem = std::fs::read(path).map_err(|e| keys_err(path.display().to_string(), e))?;
    ndxp_sign::cert::read_pem_chain(&pem).map_err(|e| keys_err(path.display().to_string(), e))
}

fn read_optional_chain(path: &Path) -> Result<Vec<X509>, StartError> {
    if path.exists() {
        read_certs(path)
    } else {
        Ok(Vec::new())
    }
}

/// Reads the admin token file, creating it (mode 0600, a fresh random
/// token) when missing; returns the token's SHA-256.
fn admin_token(path: &Path) -> Result<[u8; 32], StartError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let err = |detail: String| StartError::Token {
        path: path.display().to_string(),
        detail,
    };
    if !path.exists() {
        let token = admin::generate_token().map_err(|e| err(e.to_string()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            ndxp_sign::files::create_private_dir_all(dir).map_err(|e| err(e.to_string()))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(ndxp_sign::files::PRIVATE_FILE_MODE)
            .open(path)
            .map_err(|e| err(format!("cannot create it: {e}")))?;
        writeln!(f, "{token}").map_err(|e| err(e.to_string()))?;
    }
    ndxp_sign::files::check_mode(path, ndxp_sign::files::Readers::Owner)
        .map_err(|e| err(e.to_string()))?;
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = text.lines().next().unwrap_or_default().trim();
    if token.len() < 16 {
        return Err(err("the token must be at least 16 characters".into()));
    }
    Ok(ndxp_sign::openssl::sha::sha256(token.as_bytes()))
}

/// A started node: its ports are open; [`Node::run_until`] serves them.
pub struct Node {
    state: Arc<NodeState>,
    client: TcpListener,
    peer: TcpListener,
    admin: TcpListener,
    client_tls: Option<SslAcceptor>,
    /// The HTTPS client port of `[client] tls_listen`, beside the plain one.
    client_https: Option<(TcpListener, SslAcceptor)>,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("member", &self.state.config.node.member)
            .field("name", &self.state.config.node.name)
            .finish()
    }
}

impl Node {
    /// Loads keys, the local configuration and the last-good global
    /// configuration, opens the message log, and binds the three ports.
    ///
    /// # Errors
    /// [`StartError`].
    pub async fn start(config: NodeConfig) -> Result<Node, StartError> {
        let (signer, identity, sign_token) = load_signer(&config)?;
        if let Some(t) = &sign_token {
            tracing::info!(
                token = t.token_label(),
                key = t.key_name(),
                "the member signing key is on a PKCS#11 token"
            );
        }
        let own_cert_der = signer
            .certificate()
            .to_der()
            .map_err(|e| keys_err("signing certificate", e))?;
        let own_chain_der = signer
            .chain()
            .iter()
            .map(|c| c.to_der().map_err(|e| keys_err("signing chain", e)))
            .collect::<Result<_, _>>()?;
        let admin_token_sha256 = admin_token(&config.admin.token_file)?;
        let local = LocalHandle::open(LocalFile::new(
            config.local.file.clone(),
            config.node.member.clone(),
        ))?;
        let conf = Arc::new(crate::conf::client(&config)?);
        if let Err(e) = conf.load_last_good(Utc::now()) {
            tracing::warn!(error = %e, "the last-good global configuration cannot be used; fetching a new one");
        }
        let writer = format!(
            "{}/{}/{}",
            config.node.member,
            config.node.name,
            ndxp_core::TransactionId::new()
        );
        let log = SqlMessageLog::open(&config.log.url, &writer, &LogOptions::default())
            .await
            .map_err(StartError::Log)?;
        let log_pool = log.pool().clone();
        let http = crate::http::platform_client(&config)
            .map_err(|e| StartError::Conf(crate::conf::ConfCommandError::from(e)))?;
        let backend =
            ndxp_edge::forward::Forwarder::new(&ndxp_edge::forward::ForwarderOptions::default())
                .map_err(|e| keys_err("backend forwarder", e))?;
        let mut client_tls = server::client_acceptor(&config)?;
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| StartError::Listen { addr, what, source })
        };
        let client = bind(config.client.listen, "client port").await?;
        // With `tls_listen`, `listen` stays plain HTTP and HTTPS gets a
        // port of its own.
        let client_https = match (config.client.tls_listen, client_tls.take()) {
            (Some(addr), Some(acceptor)) => {
                Some((bind(addr, "HTTPS client port").await?, acceptor))
            }
            (None, acceptor) => {
                client_tls = acceptor;
                None
            }
            (Some(_), None) => {
                return Err(StartError::ClientTls(
                    "client.tls_listen needs client.tls_cert and client.tls_key".into(),
                ))
            }
        };
        let peer = bind(config.peer.listen, "peer port").await?;
        let admin = bind(config.admin.listen, "admin port").await?;
        let window = config.exchange.window_secs;
        let state = Arc::new(NodeState {
            signer,
            sign_token,
            own_cert_der,
            own_chain_der,
            identity,
            conf,
            trust: RwLock::new(None),
            ocsp: Arc::new(OcspHub::new(ndxp_registry::globalconf::ocsp_fetcher(http))),
            replay: Arc::new(
                ReplayCache::new(window, REPLAY_CACHE_ENTRIES).with_max_per_member(
                    usize::try_from(config.exchange.replay_entries_per_member)
                        .unwrap_or(REPLAY_CACHE_ENTRIES),
                ),
            ),
            local,
            log: Arc::new(log),
            timestamper: std::sync::OnceLock::new(),
            log_pool,
            backend,
            metrics: Metrics::new(),
            admin_token_sha256,
            ready_log: std::sync::atomic::AtomicBool::new(true),
            draining: std::sync::atomic::AtomicBool::new(false),
            config,
        });
        Ok(Node {
            state,
            client,
            peer,
            admin,
            client_tls,
            client_https,
        })
    }

    /// The bound HTTPS client port of `[client] tls_listen`, if any.
    pub fn client_tls_addr(&self) -> Option<SocketAddr> {
        self.client_https
            .as_ref()
            .and_then(|(l, _)| l.local_addr().ok())
    }

    /// The bound client port.
    pub fn client_addr(&self) -> SocketAddr {
        self.client
            .local_addr()
            .unwrap_or(self.state.config.client.listen)
    }

    /// The bound peer port.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
            .local_addr()
            .unwrap_or(self.state.config.peer.listen)
    }

    /// The bound admin port.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or(self.state.config.admin.listen)
    }

    /// Serves until `shutdown` completes, then drains: `/readyz` answers
    /// 503 `draining`, the client and peer ports stop accepting and let
    /// exchanges in flight finish (up to `[edge] drain_timeout_secs`), and
    /// the admin port closes last.
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        // The admin port stops after the others, so that load balancers
        // and operators see the drain on /readyz.
        let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
        let state = self.state;
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(server::serve_client(
            state.clone(),
            self.client,
            self.client_tls,
            stop_rx.clone(),
        ));
        if let Some((listener, acceptor)) = self.client_https {
            tasks.spawn(server::serve_client(
                state.clone(),
                listener,
                Some(acceptor),
                stop_rx.clone(),
            ));
        }
        tasks.spawn(server::serve_peer(
            state.clone(),
            self.peer,
            stop_rx.clone(),
        ));
        let admin_task = tokio::spawn(admin::serve(state.clone(), self.admin, admin_stop_rx));
        tasks.spawn(background(state.clone(), stop_rx.clone()));
        if state.config.report.enabled {
            tasks.spawn(report::run(state.clone(), stop_rx.clone()));
        }
        tracing::info!(
            member = %state.config.node.member,
            node = %state.config.node.name,
            "node serving"
        );
        shutdown.await;
        state
            .draining
            .store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::info!("shutting down: draining the exchanges in flight");
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        let _ = admin_stop_tx.send(true);
        let _ = admin_task.await;
    }
}

/// The node's periodic work: global configuration refresh, local
/// configuration reload, OCSP refresh.
async fn background(state: Arc<NodeState>, mut stop: watch::Receiver<bool>) {
    let conf_every = Duration::from_secs(state.config.conf.refresh_secs);
    let ocsp_every = Duration::from_secs(state.config.exchange.ocsp_refresh_secs);
    let mut next_conf = tokio::time::Instant::now();
    let mut next_ocsp = tokio::time::Instant::now() + ocsp_every;
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        if let Err(e) = state.local.reload_if_changed() {
            tracing::error!(error = %e, "the local configuration file is invalid; the previous one stays in force");
        }
        let now = tokio::time::Instant::now();
        if now >= next_conf {
            next_conf = now + conf_every;
            match state.conf.refresh(Utc::now()).await {
                Ok(outcome) => tracing::debug!(?outcome, "global configuration checked"),
                Err(e) => tracing::warn!(error = %e, "global configuration refresh failed"),
            }
            if state.trust(Utc::now()).is_ok() {
                if let Ok(doc) = state.conf.current_valid(Utc::now()) {
                    state.start_timestamper(&doc);
                }
            }
        }
        if let Some(ts) = state.timestamper.get() {
            state.metrics.observe_timestamps(&ts.lag());
        }
        state.metrics.set_log_pending(state.log.pending());
        if now >= next_ocsp {
            next_ocsp = now + ocsp_every;
            let outcome = state.ocsp.refresh_all(Utc::now()).await;
            for (certificate, error) in &outcome.failed {
                tracing::warn!(%certificate, %error, "OCSP refresh failed");
            }
            let revoked = outcome.revoked;
            if !revoked.is_empty() {
                tracing::warn!(certificates = ?revoked, "revoked certificates seen; dropping pooled connections");
                state.reset_trust();
            }
        }
        let now = Utc::now();
        state.metrics.observe_conf(&state.conf.status(now));
        for (cert, c) in [
            ("auth", state.identity.certificate()),
            ("signing", state.signer.certificate()),
        ] {
            if let Ok(t) = ndxp_sign::cert::asn1_to_utc(c.not_after()) {
                state.metrics.observe_cert(cert, t, now);
            }
        }
    }
}
