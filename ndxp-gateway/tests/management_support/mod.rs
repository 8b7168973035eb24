//! Shared harness of the management tests: a PKI, a configuration, a store
//! (SQLite in a temp dir, or PostgreSQL in a fresh schema when
//! `NDXP_TEST_POSTGRES_URL` is set), the server on 127.0.0.1:0 and an
//! operator token made directly through the store.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use chrono::Utc;
use ndxp_core::{MemberId, NodeName};
use ndxp_gateway::config::GatewayConfig;
use ndxp_gateway::management::auth::{generate_token, hash_token};
use ndxp_registry::globalconf::{self, ConfAnchor, ConfDocument};
use ndxp_registry::model::{Actor, CredentialKind};
use ndxp_registry::registration::{sign_registration, RegistrationPayload};
use ndxp_registry::store::{RegistryStore, SqlStore, StoreOptions};
use ndxp_sign::ca::Pki;
use ndxp_sign::openssl::pkey::{PKey, Private};
use ndxp_sign::openssl::x509::X509;
use ndxp_test_support::db::TestDatabase;
use ndxp_test_support::pki::{member_signer, node_auth_cert, pem};
use serde_json::Value;
use tempfile::TempDir;

#[path = "../common/ocsp.rs"]
mod ocsp;

#[allow(unused_imports)] // not every test binary asks for the backends
pub use ndxp_test_support::db::{backends, Backend};

pub const MGMT_MEMBER: &str = "VN/GOV/000.00.00.A01";
pub const MAX_BODY: usize = 32 * 1024;

pub struct Env {
    pub dir: TempDir,
    pub pki: Pki,
    pub config: GatewayConfig,
    pub mgmt: SocketAddr,
    pub admin: SocketAddr,
    pub store: Arc<dyn RegistryStore>,
    pub operator: String,
    pub http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<Result<(), ndxp_gateway::server::ServerError>>>,
    pub sql: Arc<SqlStore>,
    db: Option<TestDatabase>,
}

/// The management role running in this process on 127.0.0.1:0.
pub struct Server {
    pub mgmt: SocketAddr,
    pub admin: SocketAddr,
    /// Fire (or drop) to stop it.
    pub stop: tokio::sync::oneshot::Sender<()>,
    pub task: tokio::task::JoinHandle<Result<(), ndxp_gateway::server::ServerError>>,
}

/// The shutdown signal handed to a role runner.
type Shutdown = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

impl Server {
    /// Binds the management and admin ports and runs the role on `store`.
    pub async fn spawn(config: &GatewayConfig, store: Arc<dyn RegistryStore>) -> Server {
        let config = config.clone();
        Self::spawn_with(move |ml, al, stop| {
            ndxp_gateway::server::run_with_listeners(config, store, ml, al, stop)
        })
        .await
    }

    /// Like [`Server::spawn`], through `server::run_roles` (as `serve`
    /// does): the gateway routes of the management API have their store.
    pub async fn spawn_roles(config: &GatewayConfig, store: Arc<SqlStore>) -> Server {
        let config = config.clone();
        Self::spawn_with(move |ml, al, stop| {
            let listeners = ndxp_gateway::server::Listeners {
                management: Some(ml),
                admin: al,
                gateway: None,
            };
            ndxp_gateway::server::run_roles(config, store, listeners, stop)
        })
        .await
    }

    async fn spawn_with<F, Fut>(run: F) -> Server
    where
        F: FnOnce(tokio::net::TcpListener, tokio::net::TcpListener, Shutdown) -> Fut,
        Fut: std::future::Future<Output = Result<(), ndxp_gateway::server::ServerError>>
            + Send
            + 'static,
    {
        let ml = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let al = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mgmt, admin) = (ml.local_addr().unwrap(), al.local_addr().unwrap());
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(run(
            ml,
            al,
            Box::pin(async move {
                let _ = rx.await;
            }),
        ));
        Server {
            mgmt,
            admin,
            stop,
            task,
        }
    }
}

/// A member's keys: signing key + chain, and a node's auth certificate.
pub struct MemberKeys {
    pub id: MemberId,
    pub sign_key: PKey<Private>,
    pub sign_chain: Vec<X509>,
}

impl Env {
    pub async fn start(backend: Backend) -> Env {
        Self::start_with(backend, "").await
    }

    /// [`Env::start`] with `extra` appended to the configuration file
    /// (e.g. a `[monitoring]` table).
    pub async fn start_with(backend: Backend, extra: &str) -> Env {
        Self::start_inner(backend, extra, false).await
    }

    /// [`Env::start`] as `ndxp-gateway serve` runs it: the management
    /// role with the SQL registry behind its `/api/v1/gateway` routes.
    pub async fn start_as_served(backend: Backend) -> Env {
        Self::start_inner(backend, "", true).await
    }

    async fn start_inner(backend: Backend, extra: &str, as_served: bool) -> Env {
        let dir = tempfile::tempdir().unwrap();
        // The CA's OCSP responder runs: the management role asks it whether
        // the signers of registration requests and uploads are revoked.
        let (pki, ocsp_url) = ocsp::pki_with_ocsp(&dir.path().join("pki")).await;
        // The management signing key and certificate.
        let mgmt = member_signer(&pki, &MGMT_MEMBER.parse().unwrap());
        ndxp_sign::key::write_private_key_file(
            &dir.path().join("sign.key"),
            &mgmt.key,
            None,
            false,
        )
        .unwrap();
        std::fs::write(
            dir.path().join("sign.pem"),
            ndxp_sign::cert::write_pem_chain(&mgmt.chain).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.pem"), pki.root_cert().to_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("tsa.pem"), pki.tsa_cert().to_pem().unwrap()).unwrap();

        let db = TestDatabase::create(backend, dir.path()).await;
        let url = db.url.clone();
        let toml = format!(
            r#"
instance = "VN"
[storage]
url = "sqlite://unused.db"
[management]
listen = "127.0.0.1:0"
public_url = "http://127.0.0.1:8100/"
max_body_bytes = {MAX_BODY}
[admin]
listen = "127.0.0.1:0"
[globalconf]
signing_key = "sign.key"
signing_cert = "sign.pem"
validity_secs = 3600
[[globalconf.cas]]
name = "NDXP Root CA"
cert = "ca.pem"
ocsp_urls = ["{ocsp_url}"]
[[globalconf.tsas]]
name = "NDXP TSA"
url = "http://127.0.0.1:1/tsa"
cert = "tsa.pem"
{extra}
"#
        );
        let mut config = GatewayConfig::from_toml(&toml, dir.path()).unwrap();
        config.storage.url = url.clone();
        let sql = Arc::new(
            SqlStore::open(
                &url,
                &StoreOptions {
                    max_connections: 4,
                    ..StoreOptions::default()
                },
            )
            .await
            .unwrap(),
        );
        let store: Arc<dyn RegistryStore> = sql.clone();
        let operator = generate_token().unwrap();
        store
            .create_credential(
                &CredentialKind::Operator,
                "admin",
                &hash_token(&operator),
                &Actor::cli("test"),
            )
            .await
            .unwrap();

        let Server {
            mgmt,
            admin,
            stop: tx,
            task,
        } = if as_served {
            Server::spawn_roles(&config, sql.clone()).await
        } else {
            Server::spawn(&config, store.clone()).await
        };
        let env = Env {
            dir,
            pki,
            config,
            mgmt,
            admin,
            store,
            operator,
            http: reqwest::Client::new(),
            stop: Some(tx),
            task: Some(task),
            sql,
            db: Some(db),
        };
        env.wait_ready().await;
        env
    }

    /// Polls /healthz until the server answers.
    async fn wait_ready(&self) {
        for _ in 0..500 {
            if let Ok(r) = self.http.get(self.admin_url("/healthz")).send().await {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("server did not become healthy");
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
        self.sql.close().await;
        if let Some(db) = self.db.take() {
            db.drop_now().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.mgmt)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// Sends a request; `body` as JSON when given.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let text = r.text().await.unwrap();
        let v = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status >= 400 {
            assert_eq!(
                ct.as_deref(),
                Some("application/problem+json"),
                "{method} {path}: error without problem+json: {v}"
            );
            assert_eq!(v["status"], status, "{v}");
        }
        (status, v)
    }

    pub async fn op(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let token = self.operator.clone();
        self.call(method, path, Some(&token), body).await
    }

    /// Sends raw bytes with a content type.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, String, Value) {
        let mut rb = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .body(body);
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        if let Some(ct) = content_type {
            rb = rb.header("content-type", ct);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, ct, v)
    }

    /// Adds a member and its token (as the operator); returns the token.
    pub async fn add_member_with_token(&self, id: &str, name: &str) -> String {
        let (s, _) = self
            .op(
                "POST",
                "/api/v1/members",
                Some(serde_json::json!({"id": id, "name": name})),
            )
            .await;
        assert_eq!(s, 201);
        let (s, v) = self
            .op(
                "POST",
                "/api/v1/credentials",
                Some(serde_json::json!({"kind": {"member": id}, "name": format!("{name} token")})),
            )
            .await;
        assert_eq!(s, 201, "{v}");
        v["token"].as_str().unwrap().to_string()
    }

    pub fn member_keys(&self, id: &str) -> MemberKeys {
        let signer = member_signer(&self.pki, &id.parse().unwrap());
        MemberKeys {
            id: signer.member,
            sign_key: signer.key,
            sign_chain: signer.chain,
        }
    }

    /// A signed registration request for `node` of the member, with a
    /// fresh authentication certificate.
    pub fn registration(&self, m: &MemberKeys, node: &str, address: &str) -> String {
        let node: NodeName = node.parse().unwrap();
        let auth = node_auth_cert(&self.pki, &m.id, &node);
        let payload =
            RegistrationPayload::new(m.id.clone(), node, address.into(), pem(&auth), Utc::now());
        sign_registration(&payload, &m.sign_key, &m.sign_chain).unwrap()
    }

    /// Fetches and verifies `/globalconf` against an anchor from the CA.
    pub async fn globalconf(&self) -> ConfDocument {
        let r = self.http.get(self.url("/globalconf")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/jose");
        assert_eq!(r.headers()["cache-control"], "no-cache");
        let jws = r.text().await.unwrap();
        let anchor = ConfAnchor::new(
            "VN".parse().unwrap(),
            self.url("/globalconf"),
            &[self.pki.root_cert().clone()],
            Some(MGMT_MEMBER.parse().unwrap()),
            Utc::now(),
        )
        .unwrap();
        globalconf::verify(&jws, &anchor, Utc::now()).unwrap()
    }

    pub async fn registry_version(&self) -> i64 {
        self.store.registry_version().await.unwrap()
    }
}
