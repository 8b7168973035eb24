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
use ndxp_registry::globalconf::{self, ConfAnchor, ConfDocument};
use ndxp_registry::registration::{sign_registration, RegistrationPayload};
use ndxp_registry::store::{RegistryStore, SqlStore};
use ndxp_sign::ca::Pki;
use ndxp_sign::openssl::pkey::{PKey, Private};
use ndxp_sign::openssl::x509::X509;
use ndxp_test_support::db::TestDatabase;
use ndxp_test_support::pki::{member_signer, node_auth_cert, pem};
use serde_json::Value;
use tempfile::TempDir;

#[path = "../common/harness.rs"]
mod harness;
#[path = "../common/ocsp.rs"]
mod ocsp;

#[allow(unused_imports)] // not every test binary asks for the backends
pub use ndxp_test_support::db::{backends, Backend};

pub const MGMT_MEMBER: &str = "VN/GOV/000.00.00.A01";
pub const MAX_BODY: usize = 32 * 1024;
/// The provider member most tests seed.
pub const H29: &str = "VN/GOV/000.00.00.H29";
/// The client member most tests seed.
pub const G22: &str = "VN/GOV/000.00.00.G22";

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
    task: Option<harness::RolesTask>,
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

/// The `Content-Type` of an answer, when it has one.
fn content_type_of(r: &reqwest::Response) -> Option<String> {
    let ct = r.headers().get("content-type")?;
    Some(ct.to_str().unwrap().to_string())
}

/// Asserts that an answer `(s, v)` is the problem `(status, code)` and
/// that its detail contains `detail` (`what` names the case).
pub fn assert_problem(what: &str, (s, v): (u16, &Value), want: (u16, &str), detail: &str) {
    assert_eq!(
        (s, v["code"].as_str()),
        (want.0, Some(want.1)),
        "{what}: {v}"
    );
    let text = v["detail"].as_str().unwrap();
    assert!(text.contains(detail), "{what}: {v}");
}

/// Runs the stock `curl` command line with `args` (on a blocking thread);
/// returns (status, body).
pub async fn curl(args: &[&str]) -> (u16, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .args(["-sS", "-w", "\n%{http_code}"])
            .args(args)
            .output()
            .expect("the curl command line is installed")
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {err}");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
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
        harness::write_signing_files(dir.path(), &pki, MGMT_MEMBER);
        std::fs::write(dir.path().join("tsa.pem"), pki.tsa_cert().to_pem().unwrap()).unwrap();

        let db = TestDatabase::create(backend, dir.path()).await;
        let url = db.url.clone();
        let globalconf = harness::GLOBALCONF;
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
{globalconf}
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
        let (sql, operator) = harness::registry_with_operator(&url).await;
        let store: Arc<dyn RegistryStore> = sql.clone();

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
        let (stop, task, db) = (self.stop.take(), self.task.take(), self.db.take());
        harness::shut_down(stop, task, &self.sql, db).await;
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
        let ct = content_type_of(&r);
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

    /// [`Env::call`] that asserts the answer's status (the answer is in
    /// the message); returns the body.
    pub async fn expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Value {
        let (s, v) = self.call(method, path, token, body).await;
        assert_eq!(s, status, "{method} {path}: {v}");
        v
    }

    /// [`Env::expect`] with the operator's token.
    pub async fn op_expect(
        &self,
        status: u16,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Value {
        let token = self.operator.clone();
        self.expect(status, method, path, Some(&token), body).await
    }

    /// Submits a signed registration request (`application/jose`, no
    /// token) as `ndxp-node register` does; returns status and answer.
    pub async fn submit_registration(&self, jws: String) -> (u16, Value) {
        let jose = Some("application/jose");
        let (s, _, v) = self
            .raw(
                "POST",
                "/api/v1/registrations",
                None,
                jose,
                jws.into_bytes(),
            )
            .await;
        (s, v)
    }

    /// Approves registration request `id` as the operator (asserting 200);
    /// returns the node.
    pub async fn approve_registration(&self, id: &str) -> Value {
        let path = format!("/api/v1/registrations/{id}/approve");
        self.op_expect(200, "POST", &path, None).await
    }

    /// Registers the member's node `node` at `address` with a signed
    /// request and approves it (asserting 201 and 200); returns the node.
    pub async fn register_node(&self, keys: &MemberKeys, node: &str, address: &str) -> Value {
        let (s, v) = self
            .submit_registration(self.registration(keys, node, address))
            .await;
        assert_eq!(s, 201, "{v}");
        self.approve_registration(v["id"].as_str().unwrap()).await
    }

    /// Adds subsystem `code` to `member` with the member's `token`
    /// (asserting 201).
    pub async fn add_subsystem(&self, token: &str, member: &str, code: &str) {
        let path = format!("/api/v1/members/{member}/subsystems");
        let body = serde_json::json!({ "code": code });
        self.expect(201, "POST", &path, Some(token), Some(body))
            .await;
    }

    /// Adds service `id` (an empty OpenAPI document titled `title`) with
    /// its owner's `token` (asserting 201).
    pub async fn add_service(&self, token: &str, id: &str, description: &str, title: &str) {
        let openapi = serde_json::json!({"openapi": "3.1.0", "info": {"title": title, "version": "1"}, "paths": {}});
        let body = serde_json::json!({"id": id, "description": description, "openapi": openapi});
        self.expect(201, "POST", "/api/v1/services", Some(token), Some(body))
            .await;
    }

    /// Fetches `url` (e.g. the admin port's `/metrics`) and returns the
    /// body as text.
    pub async fn text(&self, url: String) -> String {
        let r = self.http.get(url).send().await.unwrap();
        r.text().await.unwrap()
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
        let ct = content_type_of(&r).unwrap_or_default();
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
