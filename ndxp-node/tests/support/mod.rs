//! Shared by the node's integration tests: a platform CA, a node's key
//! directory with issued certificates, a configuration file, a management
//! signer for global configurations, and a stand-in management server on
//! 127.0.0.1:0.
#![allow(dead_code, clippy::unwrap_used)]

pub mod net;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::{DateTime, TimeDelta, Utc};
use ndxp_core::{MemberId, NodeName};
use ndxp_node::config::NodeConfig;
use ndxp_node::keys::{init_keys, KeysOptions};
use ndxp_registry::globalconf::{
    self, ConfAnchor, ConfCa, ConfContent, ConfDocument, ConfMember, ConfNode,
};
use ndxp_registry::registration::{verify_registration, VerifiedRegistration};
use ndxp_sign::ca::Pki;
use ndxp_sign::cert::{write_pem_chain, Profile};
use ndxp_sign::csr;
use ndxp_sign::openssl::pkey::{PKey, Private};
use ndxp_sign::openssl::x509::X509;
use ndxp_test_support::pki::{init_pki, member_signer};

pub const MEMBER: &str = "VN/GOV/000.00.00.G22";
pub const NODE: &str = "node-g22";
pub const ADDRESS: &str = "https://node.g22.example.vn:8443";
pub const MANAGEMENT: &str = "VN/GOV/MGMT";

/// The CA issues the certificates of the requests `keys init` left in
/// `keys_dir` (`auth.csr`, `sign.csr`) and writes them, with the CA chain,
/// beside them; returns the authentication certificate.
pub fn issue_node_certs(pki: &Pki, keys_dir: &Path) -> X509 {
    let issue = |name: &str, profile| {
        let pem = std::fs::read(keys_dir.join(format!("{name}.csr"))).unwrap();
        let cert = pki
            .issue(&csr::parse_csr(&pem).unwrap(), profile, 30)
            .unwrap();
        std::fs::write(
            keys_dir.join(format!("{name}.pem")),
            write_pem_chain(std::slice::from_ref(&cert)).unwrap(),
        )
        .unwrap();
        cert
    };
    let auth = issue("auth", Profile::Auth);
    issue("sign", Profile::Sign);
    let chain = write_pem_chain(pki.chain()).unwrap();
    std::fs::write(keys_dir.join("chain.pem"), chain).unwrap();
    auth
}

/// A member's entry in a global configuration.
pub fn conf_member(id: &str, name: &str, subsystems: &[&str]) -> ConfMember {
    ConfMember {
        id: id.parse().unwrap(),
        name: name.into(),
        subsystems: subsystems.iter().map(|s| s.to_string()).collect(),
    }
}

/// The root CA's entry in a global configuration, with one OCSP URL.
pub fn conf_root_ca(pki: &Pki, ocsp_url: &str) -> ConfCa {
    let root = write_pem_chain(std::slice::from_ref(pki.root_cert())).unwrap();
    ConfCa {
        name: "NDXP Root CA".into(),
        cert_pem: String::from_utf8(root).unwrap(),
        ocsp_urls: vec![ocsp_url.into()],
    }
}

/// A global configuration of `version` with `content`, generated at `at`
/// and valid for a day.
pub fn conf_document(content: ConfContent, version: u64, at: DateTime<Utc>) -> ConfDocument {
    let instance = "VN".parse().unwrap();
    ConfDocument::new(content, instance, version, at, TimeDelta::days(1)).unwrap()
}

/// A platform CA with a management signer, and a node prepared by
/// `keys init` whose certificates the CA issued.
pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub pki: Pki,
    pub mgmt_key: PKey<Private>,
    pub mgmt_chain: Vec<X509>,
    pub keys_dir: PathBuf,
    pub auth_cert: X509,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_passphrase(None)
    }

    pub fn with_passphrase(pass: Option<&str>) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let pki = init_pki(&tmp.path().join("pki"), "http://ocsp.example");
        let mgmt = member_signer(&pki, &MANAGEMENT.parse().unwrap());
        let (mgmt_key, mgmt_chain) = (mgmt.key, mgmt.chain);

        let keys_dir = tmp.path().join("node").join("keys");
        let mut opts = KeysOptions::new(
            keys_dir.clone(),
            MEMBER.parse().unwrap(),
            NODE.parse().unwrap(),
        );
        if let Some(p) = pass {
            opts.passphrase = Some(p.as_bytes().to_vec());
        }
        init_keys(&opts).unwrap();
        if let Some(p) = pass {
            std::fs::write(tmp.path().join("node").join("pass.txt"), format!("{p}\n")).unwrap();
        }
        let auth_cert = issue_node_certs(&pki, &keys_dir);
        Fixture {
            tmp,
            pki,
            mgmt_key,
            mgmt_chain,
            keys_dir,
            auth_cert,
        }
    }

    pub fn node_dir(&self) -> PathBuf {
        self.tmp.path().join("node")
    }

    pub fn auth_fingerprint(&self) -> String {
        ndxp_sign::cert::fingerprint_sha256(&self.auth_cert)
    }

    /// Writes the anchor (for `conf_url`) and a configuration file using
    /// relative paths; returns the configuration file's path.
    pub fn write_config(&self, management_url: &str, extra_node: &str) -> PathBuf {
        let anchor = ConfAnchor::new(
            "VN".parse().unwrap(),
            format!("{management_url}/globalconf"),
            &[self.pki.root_cert().clone()],
            Some(MANAGEMENT.parse().unwrap()),
            Utc::now(),
        )
        .unwrap();
        let dir = self.node_dir();
        std::fs::write(dir.join("anchor.json"), anchor.to_json().unwrap()).unwrap();
        let path = dir.join("node.toml");
        std::fs::write(
            &path,
            format!(
                r#"[node]
member = "{MEMBER}"
name = "{NODE}"
address = "{ADDRESS}"
keys_dir = "keys"
{extra_node}
[management]
url = "{management_url}"
timeout_secs = 5

[conf]
anchor = "anchor.json"
dir = "state/conf"
"#
            ),
        )
        .unwrap();
        path
    }

    pub fn config(&self, management_url: &str) -> NodeConfig {
        ndxp_node::config::load(&self.write_config(management_url, "")).unwrap()
    }

    /// A global configuration of `version`, generated at `at` and valid for
    /// a day, listing this node when `with_node`.
    pub fn doc(&self, version: u64, at: DateTime<Utc>, with_node: bool) -> ConfDocument {
        let member: MemberId = MEMBER.parse().unwrap();
        let mut content = ConfContent {
            members: vec![
                conf_member(MANAGEMENT, "Management", &[]),
                conf_member(MEMBER, "Bộ Tư pháp", &[]),
            ],
            cas: vec![conf_root_ca(&self.pki, "http://ocsp.example/")],
            ..ConfContent::default()
        };
        if with_node {
            content.nodes.push(ConfNode {
                member,
                name: NODE.parse::<NodeName>().unwrap(),
                address: ADDRESS.into(),
                auth_cert_sha256: vec![self.auth_fingerprint()],
            });
        }
        conf_document(content, version, at)
    }

    pub fn sign(&self, doc: &ConfDocument) -> String {
        globalconf::sign(doc, &self.mgmt_key, &self.mgmt_chain).unwrap()
    }

    pub fn signed(&self, version: u64) -> String {
        self.sign(&self.doc(version, Utc::now(), true))
    }

    pub fn last_good(&self) -> PathBuf {
        self.node_dir().join("state/conf/globalconf.jws")
    }
}

/// What the stand-in management server holds and answers.
#[derive(Default)]
pub struct Server {
    /// The signed global configuration served at `/globalconf`.
    pub conf: Mutex<Option<String>>,
    /// When set, registrations are answered with this status and problem
    /// document instead of being checked.
    pub refuse: Mutex<Option<(u16, serde_json::Value)>>,
    /// Trusted CAs for checking registrations.
    pub trusted: Mutex<Vec<X509>>,
    /// Registrations that passed `verify_registration`.
    pub accepted: Mutex<Vec<VerifiedRegistration>>,
    /// Content types of the registration requests received.
    pub content_types: Mutex<Vec<String>>,
}

fn problem(status: u16, body: serde_json::Value) -> Response {
    (
        StatusCode::from_u16(status).unwrap(),
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

async fn registrations(State(s): State<Arc<Server>>, headers: HeaderMap, body: String) -> Response {
    s.content_types.lock().unwrap().push(
        headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned(),
    );
    if let Some((status, body)) = s.refuse.lock().unwrap().clone() {
        return problem(status, body);
    }
    let trusted = s.trusted.lock().unwrap().clone();
    match verify_registration(&body, &trusted, Utc::now()) {
        Ok(v) => {
            s.accepted.lock().unwrap().push(v);
            (
                StatusCode::CREATED,
                axum::Json(serde_json::json!({
                    "id": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
                    "state": "pending",
                    "member": MEMBER,
                    "node": NODE,
                })),
            )
                .into_response()
        }
        Err(e) => problem(
            400,
            serde_json::json!({
                "type": "urn:ndxp:problem:bad_request", "title": "Bad request",
                "status": 400, "code": "ndxp.bad_request", "detail": e.to_string(),
            }),
        ),
    }
}

async fn globalconf(State(s): State<Arc<Server>>) -> Response {
    match s.conf.lock().unwrap().clone() {
        Some(jws) => ([(header::CONTENT_TYPE, "application/jose")], jws).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Starts the stand-in management server; returns its base URL.
pub async fn start(server: Arc<Server>) -> String {
    let app = Router::new()
        .route("/api/v1/registrations", post(registrations))
        .route("/globalconf", get(globalconf))
        .with_state(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Runs the `ndxp-node` binary (off the async runtime, so that a server in
/// the test keeps answering).
pub async fn node(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ndxp-node"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

pub fn args(a: &[&str], config: &Path) -> Vec<String> {
    let mut v: Vec<String> = a.iter().map(|s| (*s).to_owned()).collect();
    v.push("--config".into());
    v.push(config.to_str().unwrap().to_owned());
    v
}

pub fn text(out: &std::process::Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
