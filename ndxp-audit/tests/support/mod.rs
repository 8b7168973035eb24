//! Shared by the message log tests: a test PKI with a member signer, signed
//! exchanges as a consumer node logs them, and an in-process RFC 3161 TSA
//! over HTTP that can be switched off.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use ndxp_audit::log::{Exchange, Role, SignedMeta};
use ndxp_core::TransactionId;
use ndxp_sign::ca::Pki;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::tsa::{TimestampAuthority, TsaTrust};
use ndxp_sign::{digest, profile};
use ndxp_test_support::pki;

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub pki: Pki,
    pub root: X509,
    pub signer: profile::Signer,
}

pub fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let ca = pki::init_pki(&dir.path().join("pki"), "http://127.0.0.1:1/ocsp");
        let member = "VN/GOV/000.00.00.G22".parse().unwrap();
        let s = pki::member_signer(&ca, &member);
        let cert = s.chain[0].clone();
        let chain = s.chain[1..].to_vec();
        let signer = profile::Signer::new(s.key, cert, chain).unwrap();
        Fixture {
            root: ca.root_cert().clone(),
            pki: ca,
            dir,
            signer,
        }
    })
}

/// Trust for the fixture's TSA.
pub fn tsa_trust() -> TsaTrust {
    let f = fixture();
    TsaTrust::new(vec![f.root.clone()]).with_untrusted(f.pki.chain().to_vec())
}

/// A signed request as a consumer node logs it.
pub fn exchange(n: u32) -> Exchange {
    let f = fixture();
    let body = format!("{{\"n\":{n}}}");
    let id = TransactionId::new();
    let (mut parts, ()) = http::Request::post(
        "https://provider.example/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/lookup",
    )
    .header(profile::NDXP_CLIENT, "VN/GOV/000.00.00.G22/QLHT")
    .header(profile::NDXP_ID, id.to_string())
    .body(())
    .unwrap()
    .into_parts();
    let cd = digest::content_digest(body.as_bytes());
    let info = profile::sign_request(&mut parts, &cd, &f.signer, Utc::now()).unwrap();
    let meta = SignedMeta {
        signature_input: info.signature_input,
        signature: info.signature,
        content_digest: cd,
        base: info.base,
        signer_cert_der: f.signer.certificate().to_der().unwrap(),
        chain_der: f
            .signer
            .chain()
            .iter()
            .map(|c| c.to_der().unwrap())
            .collect(),
    };
    let now = Utc::now();
    Exchange {
        transaction_id: id,
        client: "VN/GOV/000.00.00.G22/QLHT".parse().unwrap(),
        service: "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1".parse().unwrap(),
        role: Role::Consumer,
        received_at: now,
        forwarded_at: Some(now),
        backend_answered_at: Some(now),
        responded_at: now,
        status: 200,
        problem_code: None,
        request_bytes: body.len() as u64,
        response_bytes: 0,
        user_id: Some(format!("citizen-{n}")),
        request_id: Some(format!("req-{n}")),
        request: meta,
        response: None,
        body: None,
    }
}

/// An RFC 3161 TSA on 127.0.0.1 (the fixture's TSA key), answering 503
/// while switched off.
pub struct TestTsa {
    pub url: String,
    pub up: Arc<AtomicBool>,
    pub queries: Arc<std::sync::atomic::AtomicU64>,
    _task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct TsaState {
    tsa: Arc<TimestampAuthority>,
    up: Arc<AtomicBool>,
    queries: Arc<std::sync::atomic::AtomicU64>,
}

async fn tsa_post(State(s): State<TsaState>, body: Bytes) -> Response {
    s.queries.fetch_add(1, Ordering::Relaxed);
    if !s.up.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let tsa = s.tsa.clone();
    let der = tokio::task::spawn_blocking(move || tsa.respond(&body).der)
        .await
        .unwrap();
    ([(header::CONTENT_TYPE, "application/timestamp-reply")], der).into_response()
}

impl TestTsa {
    pub async fn start() -> TestTsa {
        let f = fixture();
        let tsa = TimestampAuthority::new(f.pki.tsa_cert(), f.pki.tsa_key())
            .unwrap()
            .with_chain(f.pki.chain().to_vec());
        let up = Arc::new(AtomicBool::new(true));
        let queries = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let app = axum::Router::new()
            .route("/tsa", post(tsa_post))
            .with_state(TsaState {
                tsa: Arc::new(tsa),
                up: up.clone(),
                queries: queries.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestTsa {
            url: format!("http://{addr}/tsa"),
            up,
            queries,
            _task: task,
        }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }
}
