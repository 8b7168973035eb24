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
use ndxp_sign::ca::{InitOptions, Pki};
use ndxp_sign::cert::Profile;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::openssl::pkey::{PKey, Private};
use ndxp_sign::openssl::x509::X509;
use serde_json::Value;
use tempfile::TempDir;

/// Which database the server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// SQLite always; PostgreSQL too when `NDXP_TEST_POSTGRES_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if std::env::var("NDXP_TEST_POSTGRES_URL").is_ok() {
        v.push(Backend::Postgres);
    }
    v
}

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
    pg: Option<(sqlx::PgPool, String)>,
}

/// A member's keys: signing key + chain, and a node's auth certificate.
pub struct MemberKeys {
    pub id: MemberId,
    pub sign_key: PKey<Private>,
    pub sign_chain: Vec<X509>,
}

impl Env {
    pub async fn start(backend: Backend) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(
            &dir.path().join("pki"),
            &InitOptions {
                ocsp_url: "http://127.0.0.1:1/ocsp".into(),
                ..InitOptions::default()
            },
        )
        .unwrap();
        // The management signing key and certificate.
        let mgmt: MemberId = MGMT_MEMBER.parse().unwrap();
        let key = KeyAlgorithm::EcP256.generate().unwrap();
        let csr = ndxp_sign::csr::build_sign_csr(&mgmt, &key).unwrap();
        let mut chain = vec![pki.issue(&csr, Profile::Sign, 30).unwrap()];
        chain.extend(pki.chain().iter().cloned());
        ndxp_sign::key::write_private_key_file(&dir.path().join("sign.key"), &key, None, false)
            .unwrap();
        std::fs::write(
            dir.path().join("sign.pem"),
            ndxp_sign::cert::write_pem_chain(&chain).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("ca.pem"), pki.root_cert().to_pem().unwrap()).unwrap();
        std::fs::write(dir.path().join("tsa.pem"), pki.tsa_cert().to_pem().unwrap()).unwrap();

        let (url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}", dir.path().join("registry.db").display()),
                None,
            ),
            Backend::Postgres => {
                let base = std::env::var("NDXP_TEST_POSTGRES_URL").unwrap();
                let admin = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&base)
                    .await
                    .unwrap();
                let schema = format!("mgmt_{}", uuid::Uuid::now_v7().simple());
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                    .execute(&admin)
                    .await
                    .unwrap();
                let sep = if base.contains('?') { '&' } else { '?' };
                (
                    format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                    Some((admin, schema)),
                )
            }
        };
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
ocsp_urls = ["http://127.0.0.1:1/ocsp"]
[[globalconf.tsas]]
name = "NDXP TSA"
url = "http://127.0.0.1:1/tsa"
cert = "tsa.pem"
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

        let ml = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let al = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (mgmt, admin) = (ml.local_addr().unwrap(), al.local_addr().unwrap());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(ndxp_gateway::server::run_with_listeners(
            config.clone(),
            store.clone(),
            ml,
            al,
            async move {
                let _ = rx.await;
            },
        ));
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
            pg,
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
        if let Some((admin, schema)) = self.pg.take() {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
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
        let id: MemberId = id.parse().unwrap();
        let sign_key = KeyAlgorithm::EcP256.generate().unwrap();
        let csr = ndxp_sign::csr::build_sign_csr(&id, &sign_key).unwrap();
        let mut sign_chain = vec![self.pki.issue(&csr, Profile::Sign, 30).unwrap()];
        sign_chain.extend(self.pki.chain().iter().cloned());
        MemberKeys {
            id,
            sign_key,
            sign_chain,
        }
    }

    /// A signed registration request for `node` of the member, with a
    /// fresh authentication certificate.
    pub fn registration(&self, m: &MemberKeys, node: &str, address: &str) -> String {
        let node: NodeName = node.parse().unwrap();
        let auth_key = KeyAlgorithm::EcP256.generate().unwrap();
        let csr = ndxp_sign::csr::build_auth_csr(&m.id, &node, &[], &[], &auth_key).unwrap();
        let auth = self.pki.issue(&csr, Profile::Auth, 30).unwrap();
        let payload = RegistrationPayload::new(
            m.id.clone(),
            node,
            address.into(),
            String::from_utf8(auth.to_pem().unwrap()).unwrap(),
            Utc::now(),
        );
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
