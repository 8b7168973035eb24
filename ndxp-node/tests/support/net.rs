//! An in-process test network for the exchange: a platform CA whose
//! certificates name a real OCSP responder served here, the stand-in
//! management server publishing a signed global configuration, a real
//! backend, and two nodes of two members (provider H29/CSDLDC, consumer
//! G22/QLHT) started with `ndxp_node::serve::Node`, each on 127.0.0.1
//! ports of its own. With [`Options::tsa`], the CA's time-stamping
//! authority answers over HTTP too and the global configuration names it,
//! so both nodes timestamp their message logs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{self, post};
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use ndxp_audit::log::{LogOptions, LogRecord, MessageLog, SqlMessageLog};
use ndxp_core::{MemberId, NodeName, ServiceId, SubsystemId};
use ndxp_node::config::NodeConfig;
use ndxp_node::keys::{init_keys, KeysOptions};
use ndxp_node::local::{LocalConfig, LocalError, LocalFile, ServiceEntry};
use ndxp_registry::globalconf::{
    self, ConfAnchor, ConfContent, ConfDocument, ConfGrantee, ConfNode, ConfService, ConfTsa,
};
use ndxp_sign::ca::Pki;
use ndxp_sign::cert::{read_pem_chain, write_pem_chain};
use ndxp_sign::ocsp::OcspResponder;
use ndxp_sign::openssl::pkey::{PKey, Private};
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile::Signer;
use ndxp_sign::tls::TlsIdentity;
use ndxp_test_support::edge::header_text;
use ndxp_test_support::pki::{init_pki, member_signer};
use ndxp_test_support::tsa::TestTsa;
use tokio::sync::oneshot;

use super::MANAGEMENT;

/// The provider member, its node and subsystem.
pub const PROVIDER: &str = "VN/GOV/000.00.00.H29";
pub const PROVIDER_NODE: &str = "node-h29";
pub const PROVIDER_SUB: &str = "VN/GOV/000.00.00.H29/CSDLDC";
/// The consumer member, its node and the calling subsystem.
pub const CONSUMER: &str = "VN/GOV/000.00.00.G22";
pub const CONSUMER_NODE: &str = "node-g22";
pub const CLIENT: &str = "VN/GOV/000.00.00.G22/QLHT";
/// A subsystem of the consumer member that is not on the consumer's node.
pub const NOT_ON_NODE: &str = "VN/GOV/000.00.00.G22/KHAC";

/// Provided, granted to CLIENT, backend routes `/persons/{id}`, `/echo`,
/// `/big`; time-out 10 s.
pub const CITIZEN: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1";
/// In the catalogue, not provided by the provider's node.
pub const CITIZEN_V2: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v2";
/// Not in the catalogue at all.
pub const CITIZEN_V9: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v9";
/// Provided and granted; the same backend with a 1 s time-out (its
/// `/slow` route sleeps 5 s).
pub const SLOW: &str = "VN/GOV/000.00.00.H29/CSDLDC/slow/v1";
/// Provided and granted; its backend address has nothing listening.
pub const DOWN: &str = "VN/GOV/000.00.00.H29/CSDLDC/down/v1";
/// Provided, not granted to anyone.
pub const SECRET: &str = "VN/GOV/000.00.00.H29/CSDLDC/secret/v1";

/// `[exchange] max_body_bytes` of both nodes.
pub const MAX_BODY: u64 = 64 * 1024;
/// The size of the backend's `/big` answer (over [`MAX_BODY`]).
pub const BIG: usize = 200 * 1024;

/// The OpenAPI document registered for [`CITIZEN`].
pub fn citizen_openapi() -> serde_json::Value {
    serde_json::json!({
        "openapi": "3.1.0",
        "info": {"title": "Citizen registry", "version": "1"},
        "paths": {"/persons/{id}": {"get": {"summary": "One person"}}}
    })
}

/// A port that was free a moment ago, for a node to bind by number.
///
/// Taken at random from 20000..32000, below Linux's ephemeral range
/// (32768..60999), so that neither `bind(0)` nor the local end of an
/// outgoing connection, here or in another process, picks it up between
/// this check and the node's bind; never the same twice in this process.
pub fn free_port() -> u16 {
    static TAKEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    for _ in 0..1000 {
        let mut b = [0u8; 2];
        ndxp_sign::openssl::rand::rand_bytes(&mut b).unwrap();
        let port = 20_000 + u16::from_be_bytes(b) % 12_000;
        let mut taken = TAKEN.lock().unwrap();
        if taken.contains(&port) {
            continue;
        }
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            taken.push(port);
            return port;
        }
    }
    panic!("no free port in 20000..32000 after 1000 tries");
}

// ---------------------------------------------------------------------------
// OCSP responder
// ---------------------------------------------------------------------------

struct Ocsp {
    pki: Arc<Pki>,
    responder: OcspResponder,
}

async fn ocsp_post(State(o): State<Arc<Ocsp>>, body: Bytes) -> Response {
    let reply = o
        .responder
        .respond(&body, &|serial| o.pki.status(serial), Utc::now());
    (
        [(header::CONTENT_TYPE, "application/ocsp-response")],
        reply.der,
    )
        .into_response()
}

// ---------------------------------------------------------------------------
// Backend
// ---------------------------------------------------------------------------

async fn person(
    UrlPath(id): UrlPath<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let seen = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    axum::Json(serde_json::json!({
        "id": id,
        "name": "Nguyễn Văn A",
        "seen_client": seen("ndxp-client"),
        "seen_user": seen("ndxp-user-id"),
        "seen_request_id": seen("ndxp-request-id"),
        "seen_accept": seen("accept"),
        "seen_query": uri.query(),
        "seen_traceparent": seen("traceparent"),
        "seen_tracestate": seen("tracestate"),
    }))
    .into_response()
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "too late"
}

async fn big() -> Vec<u8> {
    vec![b'x'; BIG]
}

/// A body of `left` chunks of `size` bytes that announces no length, so
/// HTTP/1.1 sends it chunked. With `hang` it never ends after its chunks:
/// a request refused as too large is then answered while the client is
/// still "sending", without a race between the refusal and the upload.
pub struct Chunks {
    pub left: usize,
    pub size: usize,
    pub hang: bool,
}

impl hyper::body::Body for Chunks {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.left == 0 {
            return if self.hang {
                std::task::Poll::Pending
            } else {
                std::task::Poll::Ready(None)
            };
        }
        self.left -= 1;
        let chunk = Bytes::from(vec![b'z'; self.size]);
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(chunk))))
    }
}

/// [`BIG`] bytes in 16 KiB chunks, no `Content-Length`.
async fn big_chunked() -> Response {
    axum::body::Body::new(Chunks {
        left: BIG / (16 * 1024),
        size: 16 * 1024,
        hang: false,
    })
    .into_response()
}

async fn echo(headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| header::HeaderValue::from_static("application/octet-stream"));
    (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response()
}

/// Starts the backend; returns its address.
pub async fn start_backend() -> SocketAddr {
    let api = Router::new()
        .route("/persons/{id}", routing::get(person))
        .route("/slow", routing::get(slow))
        .route("/big", routing::get(big))
        .route("/big-chunked", routing::get(big_chunked))
        .route("/echo", post(echo));
    // The services' base URL is `/citizen`; `/internal` is outside every
    // service and must never be reachable through the exchange.
    let app = Router::new().nest("/citizen", api).route(
        "/internal/secret",
        routing::get(|| async { "internal secret" }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

// ---------------------------------------------------------------------------
// Nodes
// ---------------------------------------------------------------------------

/// One node's files and ports (not necessarily started).
pub struct NodeSetup {
    pub member: MemberId,
    pub name: NodeName,
    pub dir: PathBuf,
    pub keys_dir: PathBuf,
    pub config_path: PathBuf,
    pub auth_cert: X509,
    pub client_port: u16,
    /// The HTTPS client port (`[client] tls_listen`), with
    /// [`Options::client_tls`].
    pub client_tls_port: u16,
    pub peer_port: u16,
    pub admin_port: u16,
    pub log_path: PathBuf,
}

impl NodeSetup {
    /// The node's message log (the SQLite file it writes), opened as the
    /// writer `reader` would open it to read.
    pub async fn open_log(&self, reader: &str) -> SqlMessageLog {
        let url = format!("sqlite://{}", self.log_path.display());
        SqlMessageLog::open(&url, reader, &LogOptions::default())
            .await
            .unwrap()
    }

    /// The records of every writer in the node's message log, read by
    /// `reader`.
    pub async fn log_records(&self, reader: &str) -> Vec<LogRecord> {
        let log = self.open_log(reader).await;
        let mut out = Vec::new();
        for w in log.writers().await.unwrap() {
            let last = log.head(&w).await.unwrap().seq;
            out.extend(log.read(&w, 1, last).await.unwrap());
        }
        log.close().await;
        out
    }

    /// `https://127.0.0.1:{peer port}`: its address in the global
    /// configuration.
    pub fn address(&self) -> String {
        format!("https://127.0.0.1:{}", self.peer_port)
    }

    pub fn peer_addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.peer_port))
    }

    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    /// `https://127.0.0.1:{client_tls_port}`, with [`Options::client_tls`].
    pub fn client_tls_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.client_tls_port)
    }

    /// The self-signed certificate of the HTTPS client port (PEM), with
    /// [`Options::client_tls`].
    pub fn client_tls_cert(&self) -> Vec<u8> {
        std::fs::read(self.dir.join("client-tls.pem")).unwrap()
    }

    pub fn admin_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.admin_port)
    }

    pub fn fingerprint(&self) -> String {
        ndxp_sign::cert::fingerprint_sha256(&self.auth_cert)
    }

    pub fn config(&self) -> NodeConfig {
        ndxp_node::config::load(&self.config_path).unwrap()
    }

    pub fn local(&self) -> LocalFile {
        LocalFile::new(self.dir.join("local.json"), self.member.clone())
    }

    /// The admin token `serve` created in `[admin] token_file`.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn chain(&self) -> Vec<X509> {
        read_pem_chain(&std::fs::read(self.keys_dir.join("chain.pem")).unwrap()).unwrap()
    }

    /// The member's signer, from the node's `sign.key` / `sign.pem`.
    pub fn signer(&self) -> Signer {
        let key =
            ndxp_sign::key::read_private_key_file(&self.keys_dir.join("sign.key"), None).unwrap();
        let cert = read_pem_chain(&std::fs::read(self.keys_dir.join("sign.pem")).unwrap())
            .unwrap()
            .remove(0);
        Signer::new(key, cert, self.chain()).unwrap()
    }

    /// The node's TLS identity, from `auth.key` / `auth.pem`.
    pub fn identity(&self) -> TlsIdentity {
        let key =
            ndxp_sign::key::read_private_key_file(&self.keys_dir.join("auth.key"), None).unwrap();
        TlsIdentity::new(key, self.auth_cert.clone(), self.chain()).unwrap()
    }
}

/// `keys init` for `member`/`node` in `keys_dir`, then the CA issues both
/// certificates; returns the authentication certificate.
fn node_keys(pki: &Pki, keys_dir: &Path, member: &MemberId, node: &NodeName) -> X509 {
    init_keys(&KeysOptions::new(
        keys_dir.to_path_buf(),
        member.clone(),
        node.clone(),
    ))
    .unwrap();
    super::issue_node_certs(pki, keys_dir)
}

/// Grants `service` of the node's local configuration `c` to the
/// subsystem `subsystem` (in a [`LocalFile::edit`]).
pub fn grant(c: &mut LocalConfig, service: &str, subsystem: &str) -> Result<(), LocalError> {
    let subsystem = ConfGrantee::Subsystem(subsystem.parse().unwrap());
    c.grant(service.parse().unwrap(), subsystem)
}

/// What a network looks like.
#[derive(Clone, Copy, Default)]
pub struct Options {
    /// Publish (and pre-install as last-good) a global configuration that
    /// expired yesterday.
    pub expired_conf: bool,
    /// `[exchange] timeout_secs` of both nodes (default 20).
    pub exchange_timeout_secs: Option<u64>,
    /// `[exchange] ocsp_refresh_secs` of both nodes (default 300).
    pub ocsp_refresh_secs: Option<u64>,
    /// Start the CA's TSA ([`Network::tsa`]) and name it in the global
    /// configuration: both nodes then timestamp their logs.
    pub tsa: bool,
    /// `[log] timestamp_interval_secs` of both nodes (default 10).
    pub timestamp_interval_secs: Option<u64>,
    /// `[log] timestamp_max_lag_secs` of both nodes (default 600).
    pub timestamp_max_lag_secs: Option<u64>,
    /// Give both nodes an HTTPS client port beside the plain one
    /// (`[client] tls_listen`, a self-signed certificate for 127.0.0.1 and
    /// localhost) and `[client] hosts = ["node.example.vn"]`.
    pub client_tls: bool,
    /// `[exchange] replay_entries_per_member` of both nodes (default
    /// 1000000).
    pub replay_entries_per_member: Option<u64>,
    /// The body of both nodes' `[edge]` table (default: none).
    pub edge: Option<&'static str>,
}

/// The whole network. Dropping it (at the end of the test's runtime)
/// stops everything.
pub struct Network {
    pub tmp: tempfile::TempDir,
    pub pki: Arc<Pki>,
    pub ocsp_url: String,
    pub mgmt: Arc<super::Server>,
    pub mgmt_url: String,
    mgmt_key: PKey<Private>,
    mgmt_chain: Vec<X509>,
    pub backend: SocketAddr,
    /// The CA's TSA, with [`Options::tsa`].
    pub tsa: Option<TestTsa>,
    pub provider: NodeSetup,
    pub consumer: NodeSetup,
    /// Per started node: whether it is the provider, and its stop.
    stops: Vec<(bool, oneshot::Sender<()>)>,
}

impl Network {
    /// Prepares everything and starts the CA's OCSP responder, the
    /// management stand-in and the backend; the nodes are configured (keys,
    /// node.toml, local.json) but not started.
    pub async fn prepare(opts: Options) -> Network {
        let tmp = tempfile::tempdir().unwrap();

        // The OCSP responder's port first: the CA names it in every
        // certificate it issues.
        let ocsp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ocsp_url = format!("http://{}/ocsp", ocsp_listener.local_addr().unwrap());
        let pki = Arc::new(init_pki(&tmp.path().join("pki"), &ocsp_url));
        let responder =
            OcspResponder::new(pki.issuing_cert(), pki.issuing_cert(), pki.issuing_key()).unwrap();
        let ocsp = Arc::new(Ocsp {
            pki: pki.clone(),
            responder,
        });
        let app = Router::new()
            .route("/ocsp", post(ocsp_post))
            .with_state(ocsp);
        tokio::spawn(async move { axum::serve(ocsp_listener, app).await.unwrap() });

        let mgmt_signer = member_signer(&pki, &MANAGEMENT.parse().unwrap());
        let mgmt = Arc::new(super::Server::default());
        let mgmt_url = super::start(mgmt.clone()).await;
        let backend = start_backend().await;
        let tsa = if opts.tsa {
            Some(TestTsa::start(&pki).await)
        } else {
            None
        };

        let setup = |member: &str, node: &str| {
            let member: MemberId = member.parse().unwrap();
            let name: NodeName = node.parse().unwrap();
            let dir = tmp.path().join(node);
            let keys_dir = dir.join("keys");
            let auth_cert = node_keys(&pki, &keys_dir, &member, &name);
            NodeSetup {
                member,
                name,
                log_path: dir.join("log.db"),
                config_path: dir.join("node.toml"),
                dir,
                keys_dir,
                auth_cert,
                client_port: free_port(),
                client_tls_port: free_port(),
                peer_port: free_port(),
                admin_port: free_port(),
            }
        };
        let provider = setup(PROVIDER, PROVIDER_NODE);
        let consumer = setup(CONSUMER, CONSUMER_NODE);

        let net = Network {
            tmp,
            pki,
            ocsp_url,
            mgmt,
            mgmt_url,
            mgmt_key: mgmt_signer.key,
            mgmt_chain: mgmt_signer.chain,
            backend,
            tsa,
            provider,
            consumer,
            stops: Vec::new(),
        };
        for n in [&net.provider, &net.consumer] {
            net.write_config(n, &opts);
        }
        net.write_local();

        let doc = if opts.expired_conf {
            net.doc(1, Utc::now() - TimeDelta::days(2))
        } else {
            net.doc(1, Utc::now())
        };
        let jws = globalconf::sign(&doc, &net.mgmt_key, &net.mgmt_chain).unwrap();
        if opts.expired_conf {
            for n in [&net.provider, &net.consumer] {
                let dir = n.dir.join("state/conf");
                std::fs::create_dir_all(&dir).unwrap();
                std::fs::write(dir.join("globalconf.jws"), &jws).unwrap();
            }
        }
        *net.mgmt.conf.lock().unwrap() = Some(jws);
        net
    }

    /// A network with both nodes serving and ready.
    pub async fn start(opts: Options) -> Network {
        let mut net = Self::prepare(opts).await;
        net.start_node(true).await;
        net.start_node(false).await;
        net.wait_ready(true).await;
        net.wait_ready(false).await;
        net
    }

    fn node(&self, provider: bool) -> &NodeSetup {
        if provider {
            &self.provider
        } else {
            &self.consumer
        }
    }

    fn write_config(&self, n: &NodeSetup, opts: &Options) {
        let exchange_timeout_secs = opts.exchange_timeout_secs.unwrap_or(20);
        let ocsp_refresh_secs = opts.ocsp_refresh_secs.unwrap_or(300);
        let timestamp_interval_secs = opts.timestamp_interval_secs.unwrap_or(10);
        let timestamp_max_lag_secs = opts.timestamp_max_lag_secs.unwrap_or(600);
        let replay_entries_per_member = opts.replay_entries_per_member.unwrap_or(1_000_000);
        let anchor = ConfAnchor::new(
            "VN".parse().unwrap(),
            format!("{}/globalconf", self.mgmt_url),
            &[self.pki.root_cert().clone()],
            Some(MANAGEMENT.parse().unwrap()),
            Utc::now(),
        )
        .unwrap();
        std::fs::write(n.dir.join("anchor.json"), anchor.to_json().unwrap()).unwrap();
        let client_tls = if opts.client_tls {
            let key = ndxp_sign::key::KeyAlgorithm::EcP256.generate().unwrap();
            let cert = ndxp_sign::cert::self_signed(
                "client port",
                &key,
                &["localhost"],
                &["127.0.0.1".parse().unwrap()],
                30,
            )
            .unwrap();
            std::fs::write(n.dir.join("client-tls.pem"), cert.to_pem().unwrap()).unwrap();
            ndxp_sign::key::write_private_key_file(&n.dir.join("client-tls.key"), &key, None, true)
                .unwrap();
            format!(
                "tls_listen = \"127.0.0.1:{}\"\ntls_cert = \"client-tls.pem\"\ntls_key = \"client-tls.key\"\nhosts = [\"node.example.vn\"]\n",
                n.client_tls_port
            )
        } else {
            String::new()
        };
        std::fs::write(
            &n.config_path,
            format!(
                r#"[node]
member = "{member}"
name = "{name}"
address = "{address}"
keys_dir = "keys"

[management]
url = "{mgmt}"
timeout_secs = 5

[conf]
anchor = "anchor.json"
dir = "state/conf"
refresh_secs = 1
fetch_timeout_secs = 5

[client]
listen = "127.0.0.1:{client}"
{client_tls}
[peer]
listen = "127.0.0.1:{peer}"

[admin]
listen = "127.0.0.1:{admin}"
token_file = "admin.token"

[exchange]
max_body_bytes = {MAX_BODY}
timeout_secs = {exchange_timeout_secs}
connect_timeout_secs = 5
ocsp_refresh_secs = {ocsp_refresh_secs}
replay_entries_per_member = {replay_entries_per_member}

[log]
url = "sqlite://{log}"
timestamp_interval_secs = {timestamp_interval_secs}
timestamp_max_lag_secs = {timestamp_max_lag_secs}

[local]
file = "local.json"

[edge]
{edge}
"#,
                edge = opts.edge.unwrap_or_default(),
                member = n.member,
                name = n.name,
                address = n.address(),
                mgmt = self.mgmt_url,
                client = n.client_port,
                peer = n.peer_port,
                admin = n.admin_port,
                log = n.log_path.display(),
            ),
        )
        .unwrap();
    }

    /// The provider's services and rights, the consumer's subsystem,
    /// written with `LocalFile` (what `ndxp-node services|access` do).
    fn write_local(&self) {
        let backend = format!("http://{}/citizen", self.backend);
        let down = format!("http://127.0.0.1:{}", free_port());
        self.provider
            .local()
            .edit(|c, m| {
                c.add_subsystem(m, PROVIDER_SUB.parse().unwrap())?;
                let mut citizen = ServiceEntry::new(CITIZEN.parse().unwrap(), backend.clone());
                citizen.timeout_secs = 10;
                citizen.openapi = Some(citizen_openapi());
                c.put_service(m, citizen)?;
                let mut slow = ServiceEntry::new(SLOW.parse().unwrap(), backend.clone());
                slow.timeout_secs = 1;
                c.put_service(m, slow)?;
                let mut down = ServiceEntry::new(DOWN.parse().unwrap(), down);
                down.timeout_secs = 5;
                c.put_service(m, down)?;
                c.put_service(m, ServiceEntry::new(SECRET.parse().unwrap(), backend))?;
                for s in [CITIZEN, SLOW, DOWN] {
                    grant(c, s, CLIENT)?;
                }
                Ok(())
            })
            .unwrap();
        self.consumer
            .local()
            .edit(|c, m| c.add_subsystem(m, CLIENT.parse().unwrap()))
            .unwrap();
    }

    /// The global configuration: both members with their subsystems, both
    /// nodes, the CA with its OCSP URL, the TSA when there is one, the
    /// service catalogue.
    pub fn doc(&self, version: u64, at: DateTime<Utc>) -> ConfDocument {
        let service = |id: &str, description: &str| ConfService {
            id: id.parse::<ServiceId>().unwrap(),
            description: description.into(),
            openapi_url: None,
            deprecated_at: None,
            sunset_at: None,
        };
        let node = |n: &NodeSetup| ConfNode {
            member: n.member.clone(),
            name: n.name.clone(),
            address: n.address(),
            auth_cert_sha256: vec![n.fingerprint()],
        };
        let content = ConfContent {
            members: vec![
                super::conf_member(MANAGEMENT, "Management", &[]),
                super::conf_member(PROVIDER, "Bộ Công an", &["CSDLDC"]),
                super::conf_member(CONSUMER, "Bộ Tư pháp", &["QLHT", "KHAC"]),
            ],
            nodes: vec![node(&self.provider), node(&self.consumer)],
            cas: vec![super::conf_root_ca(&self.pki, &self.ocsp_url)],
            tsas: self
                .tsa
                .iter()
                .map(|t| ConfTsa {
                    name: "NDXP TSA".into(),
                    url: t.url.clone(),
                    cert_pem: String::from_utf8(
                        write_pem_chain(std::slice::from_ref(self.pki.tsa_cert())).unwrap(),
                    )
                    .unwrap(),
                })
                .collect(),
            services: vec![
                service(CITIZEN, "Citizen registry"),
                service(CITIZEN_V2, "Citizen registry, next version"),
                service(SLOW, "A slow service"),
                service(DOWN, "A service whose backend is down"),
                service(SECRET, "A service nobody may call"),
            ],
            ..ConfContent::default()
        };
        super::conf_document(content, version, at)
    }

    /// Starts the provider's (`true`) or the consumer's node.
    pub async fn start_node(&mut self, provider: bool) {
        let config = self.node(provider).config();
        let node = ndxp_node::serve::Node::start(config)
            .await
            .unwrap_or_else(|e| panic!("the node does not start: {e}"));
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(node.run_until(async move {
            let _ = rx.await;
        }));
        self.stops.push((provider, tx));
    }

    /// Tells the provider's (`true`) or the consumer's node to stop, as
    /// SIGTERM does: it drains, then exits.
    pub fn stop_node(&mut self, provider: bool) {
        if let Some(i) = self.stops.iter().rposition(|(p, _)| *p == provider) {
            let (_, tx) = self.stops.remove(i);
            let _ = tx.send(());
        }
    }

    /// Waits (polling, up to 30 s) until the node's `/readyz` answers 200.
    pub async fn wait_ready(&self, provider: bool) {
        let url = format!("{}/readyz", self.node(provider).admin_url());
        let http = reqwest::Client::new();
        let mut last = String::new();
        for _ in 0..300 {
            match http.get(&url).send().await {
                Ok(r) if r.status() == 200 => return,
                Ok(r) => last = format!("{} {}", r.status(), r.text().await.unwrap_or_default()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{url} is not ready after 30 s: {last}");
    }

    /// Waits (polling, up to 30 s) until the node's admin API answers.
    pub async fn wait_up(&self, provider: bool) {
        let url = format!("{}/healthz", self.node(provider).admin_url());
        let http = reqwest::Client::new();
        for _ in 0..300 {
            if let Ok(r) = http.get(&url).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{url} does not answer after 30 s");
    }

    /// `{consumer client port}/r1/{service}{rest}`.
    pub fn url(&self, service: &str, rest: &str) -> String {
        format!("{}/r1/{service}{rest}", self.consumer.client_url())
    }

    /// The trust anchors of the platform.
    pub fn anchors(&self) -> Vec<X509> {
        vec![self.pki.root_cert().clone()]
    }

    pub fn client_id() -> SubsystemId {
        CLIENT.parse().unwrap()
    }
}

/// An HTTP client for information systems and operators (30 s time-out).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// `GET url`, as the subsystem `client` when given.
pub async fn get(url: &str, client: Option<&str>) -> Answer {
    let mut r = http().get(url);
    if let Some(c) = client {
        r = r.header("NDXP-Client", c);
    }
    Answer::of(r.send().await.unwrap()).await
}

/// A platform answer: status, `NDXP-Id`, content type, the problem
/// document.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub ndxp_id: Option<String>,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub async fn of(r: reqwest::Response) -> Answer {
        let status = r.status().as_u16();
        let ndxp_id = header_text(r.headers(), "ndxp-id");
        let content_type = header_text(r.headers(), "content-type").unwrap_or_default();
        let body = r.bytes().await.unwrap().to_vec();
        Answer {
            status,
            ndxp_id,
            content_type,
            body,
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Asserts an RFC 9457 problem answer with `status` and `code`, whose
    /// document agrees with the status line and carries the transaction id
    /// of `NDXP-Id` when the node set one; returns the document.
    #[track_caller]
    pub fn problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(
            (self.status, self.content_type.as_str()),
            (status, "application/problem+json"),
            "expected {status} {code}, got: {}",
            self.text()
        );
        let p = self.json();
        assert_eq!(p["code"], code, "{p}");
        assert_eq!(p["status"], status, "{p}");
        assert_eq!(
            p["type"],
            format!("urn:ndxp:problem:{}", code.trim_start_matches("ndxp.")),
            "{p}"
        );
        if let Some(id) = &self.ndxp_id {
            assert_eq!(p["transaction_id"], id.as_str(), "{p}");
        }
        p
    }
}
