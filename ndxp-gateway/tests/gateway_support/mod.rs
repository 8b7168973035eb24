//! Harness of the gateway tests: a PKI, a configuration file with a
//! `[gateway]` table, a registry (SQLite, or PostgreSQL in a fresh schema
//! when asked), `ndxp-gateway serve`'s roles on 127.0.0.1:0 ports, an
//! operator token, and real backends (small axum servers).
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ndxp_gateway::config::GatewayConfig;
use ndxp_registry::store::SqlStore;
use ndxp_sign::ca::Pki;
use ndxp_sign::profile;
use ndxp_test_support::db::{Backend, TestDatabase};
use serde_json::{json, Value};
use tempfile::TempDir;

#[path = "../common/harness.rs"]
mod harness;
#[path = "../common/ocsp.rs"]
mod ocsp;

pub const PLATFORM: &str = "VN/GOV/000.00.00.A01";
pub const PROVIDER: &str = "VN/GOV/000.00.00.H29";
pub const PROVIDER_SUB: &str = "VN/GOV/000.00.00.H29/CSDLDC";
pub const CONSUMER: &str = "VN/GOV/000.00.00.G22";
pub const CONSUMER_SUB: &str = "VN/GOV/000.00.00.G22/QLHT";
pub const SERVICE_V1: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1";
pub const SERVICE_V2: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v2";
pub const MAX_BODY: usize = 64 * 1024;
/// The operator's `subscriptions request` of [`SERVICE_V1`] for the
/// consumer's subsystem (arguments of `ndxp-gateway`).
pub const REQUEST_V1: [&str; 6] = [
    "subscriptions",
    "request",
    "--service",
    SERVICE_V1,
    "--client",
    CONSUMER_SUB,
];

/// The subscription id in what `subscriptions request` printed.
pub fn requested_id(out: &str) -> String {
    out.split_whitespace().nth(2).unwrap().to_string()
}

/// What [`Env::offered`] set up.
pub struct Offered {
    /// The provider's member token.
    pub provider: String,
    /// The consumer's member token.
    pub consumer: String,
    /// The backend's URL.
    pub url: String,
    /// The subscription id.
    pub sub: String,
}

/// What [`Env::calling`] set up.
pub struct Calling {
    /// The provider's member token.
    pub provider: String,
    /// The consumer's member token.
    pub consumer: String,
    /// The backend's URL.
    pub url: String,
    /// The subscription id.
    pub sub: String,
    /// The consumer's client id and secret.
    pub id: String,
    pub secret: String,
    /// An access token for `id`.
    pub token: String,
}

pub struct Env {
    /// `https` when the gateway serves HTTPS ([`Env::start_tls`]).
    pub scheme: &'static str,
    pub dir: TempDir,
    pub pki: Pki,
    pub config_path: PathBuf,
    pub config: GatewayConfig,
    pub mgmt: SocketAddr,
    pub gateway: SocketAddr,
    pub admin: SocketAddr,
    pub store: Arc<SqlStore>,
    pub operator: String,
    pub http: reqwest::Client,
    pub log_url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<harness::RolesTask>,
    db: Option<TestDatabase>,
}

impl Env {
    pub async fn start() -> Env {
        Env::start_on(Backend::Sqlite).await
    }

    pub async fn start_on(backend: Backend) -> Env {
        Env::start_with(backend, false).await
    }

    /// The gateway over HTTPS (`tls_cert`, `tls_key`; client CAs default to
    /// the platform CA), with the CA's OCSP responder running: the
    /// certificates issued name it.
    pub async fn start_tls() -> Env {
        Env::start_with(Backend::Sqlite, true).await
    }

    pub async fn start_with(backend: Backend, tls: bool) -> Env {
        Env::start_full(backend, tls, "").await
    }

    /// [`Env::start_with`] on SQLite with `edge` as the body of the
    /// `[edge]` table.
    pub async fn start_with_edge(tls: bool, edge: &str) -> Env {
        Env::start_full(Backend::Sqlite, tls, edge).await
    }

    async fn start_full(backend: Backend, tls: bool, edge: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let (pki, _) = ocsp::pki_with_ocsp(&dir.path().join("pki")).await;
        let tls_keys = if tls {
            let (cert, key) = tls_identity(&pki, PLATFORM, "gateway");
            std::fs::write(dir.path().join("gw.pem"), cert).unwrap();
            std::fs::write(dir.path().join("gw.key"), key).unwrap();
            "tls_cert = \"gw.pem\"\ntls_key = \"gw.key\"\n"
        } else {
            ""
        };
        harness::write_signing_files(dir.path(), &pki, PLATFORM);
        let db = TestDatabase::create(backend, dir.path()).await;
        let url = db.url.clone();
        let globalconf = harness::GLOBALCONF;
        let log_url = format!("sqlite://{}", dir.path().join("gateway-log.db").display());
        let text = format!(
            r#"
instance = "VN"
[storage]
url = "{url}"
[management]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[gateway]
listen = "127.0.0.1:0"
{tls_keys}max_body_bytes = {MAX_BODY}
token_lifetime_secs = 300
log_url = "{log_url}"
registry_poll_ms = 100
[[gateway.forward_headers]]
service = "{SERVICE_V1}"
request = ["x-tenant"]
response = ["x-backend", "x-backend-only"]
[[gateway.forward_headers]]
service = "{SERVICE_V2}"
response = ["x-backend"]
{globalconf}
[edge]
{edge}
"#
        );
        let config_path = dir.path().join("gateway.toml");
        std::fs::write(&config_path, &text).unwrap();
        let config = GatewayConfig::load(&config_path).unwrap();
        let (store, operator) = harness::registry_with_operator(&url).await;
        let bind = || async { tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap() };
        let (ml, gl, al) = (bind().await, bind().await, bind().await);
        let (mgmt, gateway, admin) = (
            ml.local_addr().unwrap(),
            gl.local_addr().unwrap(),
            al.local_addr().unwrap(),
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ndxp_gateway::server::run_roles(
            config.clone(),
            store.clone(),
            ndxp_gateway::server::Listeners {
                management: Some(ml),
                admin: al,
                gateway: Some(gl),
            },
            async move {
                let _ = rx.await;
            },
        ));
        let http = if tls {
            reqwest::Client::builder()
                .add_root_certificate(
                    reqwest::Certificate::from_pem(&pki.root_cert().to_pem().unwrap()).unwrap(),
                )
                .build()
                .unwrap()
        } else {
            reqwest::Client::new()
        };
        let env = Env {
            scheme: if tls { "https" } else { "http" },
            dir,
            pki,
            config_path,
            config,
            mgmt,
            gateway,
            admin,
            store,
            operator,
            http,
            log_url,
            stop: Some(tx),
            task: Some(task),
            db: Some(db),
        };
        env.wait_ready().await;
        env
    }

    async fn wait_ready(&self) {
        for _ in 0..500 {
            if let Ok(r) = self
                .http
                .get(format!("http://{}/healthz", self.admin))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("server did not become healthy");
    }

    pub async fn stop(mut self) {
        let (stop, task, db) = (self.stop.take(), self.task.take(), self.db.take());
        harness::shut_down(stop, task, &self.store, db).await;
    }

    /// A management API call; returns status and JSON.
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut rb = self
            .http
            .request(
                method.parse().unwrap(),
                format!("http://{}{path}", self.mgmt),
            )
            .bearer_auth(token);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await.unwrap();
        let status = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn op(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let t = self.operator.clone();
        self.api(method, path, &t, body).await
    }

    /// Asserts a management call answered `want`.
    pub async fn ok(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Option<Value>,
        want: u16,
    ) -> Value {
        let (s, v) = self.api(method, path, token, body).await;
        assert_eq!(s, want, "{method} {path}: {v}");
        v
    }

    /// [`Env::ok`] with the operator's token.
    pub async fn op_ok(&self, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
        let op = self.operator.clone();
        self.ok(method, path, &op, body, want).await
    }

    /// Adds a member with one subsystem and a member token; returns it.
    pub async fn member(&self, member: &str, subsystem: &str) -> String {
        let body = json!({"id": member, "name": member});
        self.op_ok("POST", "/api/v1/members", Some(body), 201).await;
        let code = subsystem.rsplit('/').next().unwrap();
        let path = format!("/api/v1/members/{member}/subsystems");
        self.op_ok("POST", &path, Some(json!({ "code": code })), 201)
            .await;
        let body = json!({"kind": {"member": member}, "name": format!("{member} token")});
        let v = self
            .op_ok("POST", "/api/v1/credentials", Some(body), 201)
            .await;
        v["token"].as_str().unwrap().to_string()
    }

    /// The provider (H29/CSDLDC) and the consumer (G22/QLHT) with their
    /// member tokens.
    pub async fn parties(&self) -> (String, String) {
        (
            self.member(PROVIDER, PROVIDER_SUB).await,
            self.member(CONSUMER, CONSUMER_SUB).await,
        )
    }

    /// Registers `service` (as `token`) with `extra` settings and
    /// publishes it (as the operator).
    pub async fn offer(&self, token: &str, service: &str, backend: &str, extra: Value) {
        let mut body = json!({
            "service": service,
            "description": "Citizen lookup",
            "openapi": {"openapi": "3.1.0", "info": {"title": "citizen", "version": "1"}},
            "backend_url": backend,
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        self.ok("POST", "/api/v1/gateway/services", token, Some(body), 201)
            .await;
        self.publish(service).await;
    }

    /// The operator publishes `service` (asserting 200).
    pub async fn publish(&self, service: &str) {
        let path = format!("/api/v1/gateway/services/{service}/publish");
        self.op_ok("POST", &path, None, 200).await;
    }

    /// The operator points `service` at `backend_url` (asserting 200).
    pub async fn move_backend(&self, service: &str, backend_url: &str) {
        let path = format!("/api/v1/gateway/services/{service}");
        let body = json!({ "backend_url": backend_url });
        self.op_ok("PATCH", &path, Some(body), 200).await;
    }

    /// The consumer requests `service` for its subsystem (asserting 201);
    /// returns the subscription id.
    pub async fn request(&self, consumer: &str, service: &str) -> String {
        let body = json!({"service": service, "client": CONSUMER_SUB});
        let v = self
            .ok("POST", "/api/v1/subscriptions", consumer, Some(body), 201)
            .await;
        v["id"].as_str().unwrap().to_string()
    }

    /// The consumer requests `service`, the provider approves; returns the
    /// subscription id.
    pub async fn subscribe(&self, consumer: &str, provider: &str, service: &str) -> String {
        let id = self.request(consumer, service).await;
        let path = format!("/api/v1/subscriptions/{id}/approve");
        self.ok("POST", &path, provider, None, 200).await;
        id
    }

    /// The consumer cancels subscription `sub` (asserting 200).
    pub async fn cancel(&self, consumer: &str, sub: &str) {
        let path = format!("/api/v1/subscriptions/{sub}/cancel");
        self.ok("POST", &path, consumer, None, 200).await;
    }

    /// The consumer creates credentials; returns (client_id, secret).
    pub async fn credentials(&self, consumer: &str) -> (String, String) {
        let body = json!({ "client": CONSUMER_SUB });
        let v = self
            .ok(
                "POST",
                "/api/v1/gateway/credentials",
                consumer,
                Some(body),
                201,
            )
            .await;
        (
            v["client_id"].as_str().unwrap().to_string(),
            v["client_secret"].as_str().unwrap().to_string(),
        )
    }

    /// The parties, [`SERVICE_V1`] offered with `extra` settings on a
    /// backend that answers `a`, and the consumer subscribed to it.
    pub async fn offered(&self, extra: Value) -> Offered {
        let (provider, consumer) = self.parties().await;
        let url = backend(plain("a")).await;
        self.offer(&provider, SERVICE_V1, &url, extra).await;
        let sub = self.subscribe(&consumer, &provider, SERVICE_V1).await;
        Offered {
            provider,
            consumer,
            url,
            sub,
        }
    }

    /// [`Env::offered`], then the consumer's credentials and an access
    /// token: the usual start of a call test. the parties, [`SERVICE_V1`] offered
    /// with `extra` settings on a backend that answers `a`, the consumer
    /// subscribed, its credentials and an access token.
    pub async fn calling(&self, extra: Value) -> Calling {
        let Offered {
            provider,
            consumer,
            url,
            sub,
        } = self.offered(extra).await;
        let (id, secret) = self.credentials(&consumer).await;
        let token = self.token(&id, &secret).await;
        Calling {
            provider,
            consumer,
            url,
            sub,
            id,
            secret,
            token,
        }
    }

    /// `GET path` on the admin port (e.g. `/metrics`) with the harness's
    /// client; the body as text.
    pub async fn admin_text(&self, path: &str) -> String {
        let url = format!("http://{}{path}", self.admin);
        let r = self.http.get(url).send().await.unwrap();
        r.text().await.unwrap()
    }

    pub fn gateway_url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.gateway)
    }

    /// An HTTPS client trusting the platform CA that presents `identity`
    /// (certificate PEM, PKCS#8 key PEM), or no certificate.
    pub fn https_client(&self, identity: Option<(&str, &str)>) -> reqwest::Client {
        let mut b = reqwest::Client::builder().add_root_certificate(
            reqwest::Certificate::from_pem(&self.pki.root_cert().to_pem().unwrap()).unwrap(),
        );
        if let Some((cert, key)) = identity {
            b = b.identity(
                reqwest::Identity::from_pkcs8_pem(cert.as_bytes(), key.as_bytes()).unwrap(),
            );
        }
        b.build().unwrap()
    }

    /// `POST /oauth2/token` with form credentials; status and JSON.
    pub async fn token_request(&self, client_id: &str, secret: &str) -> (u16, Value) {
        let (s, _, v) = self.token_request_by(&self.http, client_id, secret).await;
        (s, v)
    }

    /// [`Env::token_request`] sent by `http` (e.g. from another source
    /// address); status, `Retry-After` and JSON.
    pub async fn token_request_by(
        &self,
        http: &reqwest::Client,
        client_id: &str,
        secret: &str,
    ) -> (u16, Option<String>, Value) {
        token_request_to(http, &self.gateway_url("/oauth2/token"), client_id, secret).await
    }

    pub async fn token(&self, client_id: &str, secret: &str) -> String {
        let (s, v) = self.token_request(client_id, secret).await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    /// A call through the gateway: the response.
    pub async fn call(&self, token: &str, service: &str, path: &str) -> reqwest::Response {
        self.http
            .get(self.gateway_url(&format!("/{service}{path}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// A call through the gateway: status and JSON body.
    pub async fn call_json(&self, token: &str, service: &str, path: &str) -> (u16, Value) {
        let r = self.call(token, service, path).await;
        let s = r.status().as_u16();
        let text = r.text().await.unwrap();
        (
            s,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Runs `ndxp-gateway gateway ARGS --config gateway.toml`.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
            .arg("gateway")
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env("USER", "tester")
            .env_remove("NDXP_LOG")
            .output()
            .unwrap()
    }

    /// [`Env::cli`], asserting success; stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "gateway {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// A TLS certificate of `member`'s node `node` issued by the test CA, for
/// 127.0.0.1 and localhost, then the CA's intermediates (PEM), and its key
/// (PKCS#8 PEM). Fit for TLS clients and servers.
pub fn tls_identity(pki: &Pki, member: &str, node: &str) -> (String, String) {
    let key = ndxp_test_support::pki::ec_key();
    let req = ndxp_sign::csr::build_auth_csr(
        &member.parse().unwrap(),
        &node.parse().unwrap(),
        &["localhost".to_string()],
        &["127.0.0.1".parse().unwrap()],
        &key,
    )
    .unwrap();
    let cert = pki.issue(&req, ndxp_sign::cert::Profile::Auth, 30).unwrap();
    let mut chain = vec![cert];
    chain.extend(pki.chain().iter().cloned());
    (
        String::from_utf8(ndxp_sign::cert::write_pem_chain(&chain).unwrap()).unwrap(),
        String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
    )
}

/// Polls `check` until it returns true (changes made by another process
/// reach the gateway within `registry_poll_ms`).
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what} did not happen within 5 s");
}

/// `POST` of form client credentials to the token endpoint `url` by
/// `http`; status, `Retry-After` and JSON.
pub async fn token_request_to(
    http: &reqwest::Client,
    url: &str,
    client_id: &str,
    secret: &str,
) -> (u16, Option<String>, Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_id", client_id)
        .append_pair("client_secret", secret)
        .finish();
    let r = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (s, retry, r.json().await.unwrap())
}

/// How a test backend answers.
#[derive(Clone)]
pub struct BackendMode {
    /// A name echoed in every answer.
    pub name: &'static str,
    /// Verify the gateway's signature and sign responses as this member.
    pub signer: Option<Arc<profile::Signer>>,
    /// Trust anchors for verifying the gateway's signature.
    pub anchors: Vec<ndxp_sign::openssl::x509::X509>,
}

/// Starts a backend; returns its base URL.
pub async fn backend(mode: BackendMode) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(move |req: Request| {
        let mode = mode.clone();
        async move { answer(mode, req).await }
    });
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}

pub fn plain(name: &'static str) -> BackendMode {
    BackendMode {
        name,
        signer: None,
        anchors: Vec::new(),
    }
}

async fn answer(mode: BackendMode, req: Request) -> Response {
    let (mut parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 16 * 1024 * 1024).await.unwrap();
    let path = parts.uri.path().to_string();
    if path.ends_with("/slow") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    let header = |n: &str| {
        parts
            .headers
            .get(n)
            .map(|v| v.to_str().unwrap_or("").to_string())
    };
    let mut verified_by = None;
    if let Some(signer) = &mode.signer {
        let host = header("host").unwrap();
        let pq = parts.uri.path_and_query().unwrap().to_string();
        parts.uri = format!("http://{host}{pq}").parse().unwrap();
        let policy = profile::ProfilePolicy::new(mode.anchors.clone());
        match profile::verify_request_from_intermediary(
            &parts,
            &policy,
            &[PLATFORM.parse().unwrap()],
            chrono::Utc::now(),
        ) {
            Ok(vm) => {
                ndxp_sign::digest::verify_content_digest(&vm.content_digest, &body).unwrap();
                verified_by = Some(vm.signer.to_string());
            }
            Err(e) => {
                return (StatusCode::UNAUTHORIZED, format!("not signed: {e}")).into_response()
            }
        }
        let _ = signer;
    }
    let doc = json!({
        "backend": mode.name,
        "method": parts.method.as_str(),
        "path": parts.uri.path_and_query().map(ToString::to_string),
        "ndxp_client": header("ndxp-client"),
        "ndxp_id": header("ndxp-id"),
        "authorization": header("authorization"),
        "content_digest": header("content-digest"),
        "verified_by": verified_by,
        "body_len": body.len(),
        "person": {"id": "001099012345", "name": "Nguyễn Văn A"},
    });
    let out = serde_json::to_vec(&doc).unwrap();
    let mut resp = Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("x-backend", mode.name)
        .body(())
        .unwrap();
    if let Some(signer) = &mode.signer {
        let (mut head, ()) = resp.into_parts();
        profile::sign_response(
            &mut head,
            &parts,
            &ndxp_sign::digest::content_digest(&out),
            signer,
            chrono::Utc::now(),
        )
        .unwrap();
        resp = Response::from_parts(head, ());
    }
    let (head, ()) = resp.into_parts();
    let mut r = Response::from_parts(head, Body::from(out));
    r.headers_mut()
        .insert("cache-control", HeaderValue::from_static("no-store"));
    r
}
