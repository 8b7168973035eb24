//! An RFC 3161 time-stamping authority over HTTP on 127.0.0.1 (feature
//! `tsa`, also part of `audit`): the test PKI's TSA key answering
//! `POST /tsa`, switchable off (it then answers 503) to test what a
//! message log does while its TSA is unreachable.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use ndxp_sign::ca::Pki;
use ndxp_sign::tsa::TimestampAuthority;

/// The TSA of a test PKI on `http://127.0.0.1:{port}/tsa`; stops when
/// dropped.
#[derive(Debug)]
pub struct TestTsa {
    /// `http://127.0.0.1:{port}/tsa`.
    pub url: String,
    /// Whether it answers (503 while `false`).
    pub up: Arc<AtomicBool>,
    /// Queries received, answered or not.
    pub queries: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Clone)]
struct TsaState {
    tsa: Arc<TimestampAuthority>,
    up: Arc<AtomicBool>,
    queries: Arc<AtomicU64>,
}

async fn tsa_post(State(s): State<TsaState>, body: Bytes) -> Response {
    s.queries.fetch_add(1, Ordering::Relaxed);
    if !s.up.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "down").into_response();
    }
    let tsa = s.tsa.clone();
    match tokio::task::spawn_blocking(move || tsa.respond(&body).der).await {
        Ok(der) => ([(header::CONTENT_TYPE, "application/timestamp-reply")], der).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

impl TestTsa {
    /// Starts the TSA of `pki` (its TSA certificate and key, answering
    /// with the chain), up. Must be called inside a Tokio runtime.
    pub async fn start(pki: &Pki) -> TestTsa {
        let tsa = TimestampAuthority::new(pki.tsa_cert(), pki.tsa_key())
            .expect("the test PKI's TSA")
            .with_chain(pki.chain().to_vec());
        let up = Arc::new(AtomicBool::new(true));
        let queries = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new()
            .route("/tsa", post(tsa_post))
            .with_state(TsaState {
                tsa: Arc::new(tsa),
                up: up.clone(),
                queries: queries.clone(),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on 127.0.0.1 for the TSA");
        let addr = listener.local_addr().expect("the TSA's address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestTsa {
            url: format!("http://{addr}/tsa"),
            up,
            queries,
            task,
        }
    }

    /// Switches it on (`true`) or off: off, every query gets 503.
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    /// Queries received so far.
    pub fn queries(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for TestTsa {
    fn drop(&mut self) {
        self.task.abort();
    }
}
