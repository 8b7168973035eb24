//! Shared by the message log tests: a test PKI with a member signer, signed
//! exchanges as a consumer node logs them, and its RFC 3161 TSA over HTTP
//! that can be switched off ([`TestTsa`] of `ndxp-test-support`).
#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::OnceLock;

use chrono::Utc;
use ndxp_audit::log::{Exchange, LogOptions, Role, SignedMeta, SqlMessageLog};
use ndxp_core::TransactionId;
use ndxp_sign::ca::Pki;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::tsa::TsaTrust;
use ndxp_sign::{digest, profile};
use ndxp_test_support::db::{Backend, TestDatabase};
use ndxp_test_support::pki;
pub use ndxp_test_support::tsa::TestTsa;

pub mod tamper;

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
    let meta = SignedMeta::signed_by(info, cd, &f.signer).unwrap();
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
        trace_id: None,
    }
}

/// The fixture's TSA over HTTP on 127.0.0.1 (switchable off), from
/// `ndxp-test-support`.
pub async fn start_tsa() -> TestTsa {
    TestTsa::start(&fixture().pki).await
}

/// An exchange of `role` with made-up signature metadata (nothing
/// verifies it): for tests of the log's storage and chaining.
pub fn fake_exchange(n: u32, role: Role) -> Exchange {
    let meta = SignedMeta {
        signature_input: format!("ndxp=(\"@method\");created={n}"),
        signature: "ndxp=:AAAA:".into(),
        content_digest: "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:".into(),
        base: format!("\"@method\": POST\n\"@signature-params\": (\"@method\");created={n}"),
        signer_cert_der: vec![0x30, 0x03, 1, 2, 3],
        chain_der: vec![],
    };
    Exchange {
        transaction_id: TransactionId::new(),
        client: "VN/GOV/000.00.00.G22/QLHT".parse().unwrap(),
        service: "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1".parse().unwrap(),
        role,
        received_at: Utc::now(),
        forwarded_at: None,
        backend_answered_at: None,
        responded_at: Utc::now(),
        status: 200,
        problem_code: None,
        request_bytes: u64::from(n),
        response_bytes: 42,
        user_id: None,
        request_id: None,
        request: meta.clone(),
        response: Some(meta),
        body: None,
        trace_id: None,
    }
}

/// The message log of `writer` at `url`, with the default options.
pub async fn open_log(url: &str, writer: &str) -> SqlMessageLog {
    SqlMessageLog::open(url, writer, &LogOptions::default())
        .await
        .unwrap()
}

/// A new database of `backend` in a new temporary directory, and the
/// message log of `writer` on it. Keep the directory and the database
/// while the log is in use.
pub async fn new_log(
    backend: Backend,
    writer: &str,
) -> (tempfile::TempDir, TestDatabase, SqlMessageLog) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDatabase::create(backend, dir.path()).await;
    let log = open_log(&db.url, writer).await;
    (dir, db, log)
}

/// The message log of `writer` in a new SQLite file: its directory (keep
/// it while the log is in use), its URL and the log.
pub async fn sqlite_log(writer: &str) -> (tempfile::TempDir, String, SqlMessageLog) {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let log = open_log(&url, writer).await;
    (dir, url, log)
}

/// The URL of a SQLite message log file, `log.db` in `dir`.
pub fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("log.db").display())
}
