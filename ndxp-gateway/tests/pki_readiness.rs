//! `/readyz` of the PKI service (`pki serve --admin-listen`): ready while
//! its certificates can be used, `503` naming the certificate once the TSA
//! certificate or the OCSP signer is expired (or not valid yet), and
//! `503 draining` after SIGTERM while requests in flight finish; the real
//! binary then exits 0.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use ndxp_gateway::pki::{names, PkiService};
use ndxp_sign::ca::{InitOptions, Pki};

/// A PKI whose TSA certificate is valid for one day only.
fn short_tsa_pki(dir: &std::path::Path) -> Pki {
    Pki::init(
        dir,
        &InitOptions {
            ocsp_url: "http://127.0.0.1:9/ocsp".into(),
            tsa_validity_days: 1,
            ..InitOptions::default()
        },
    )
    .unwrap()
}

fn names_of(failed: &[ndxp_core::check::Check]) -> Vec<&str> {
    failed.iter().map(|c| c.name.as_str()).collect()
}

#[test]
fn an_expired_or_not_yet_valid_signing_certificate_makes_the_service_unready() {
    let dir = tempfile::tempdir().unwrap();
    let service = PkiService::new(short_tsa_pki(&dir.path().join("pki"))).unwrap();
    let now = Utc::now();
    assert!(
        service.not_ready(now).is_empty(),
        "{:?}",
        service.not_ready(now)
    );

    // Two days on, the TSA certificate has expired; the CA has not.
    let failed = service.not_ready(now + TimeDelta::days(2));
    assert_eq!(names_of(&failed), [names::TSA_CERTIFICATE], "{failed:?}");
    assert!(
        failed[0].detail.contains("expired at"),
        "{}",
        failed[0].detail
    );
    assert!(failed[0].detail.contains("TSA"), "{}", failed[0].detail);
    assert!(failed[0].hint.is_some());

    // Thirty years on, nothing can be used: the OCSP signer (the issuing
    // CA) and the root have expired too.
    let failed = service.not_ready(now + TimeDelta::days(365 * 30));
    let found = names_of(&failed);
    for name in [
        names::OCSP_SIGNER,
        names::TSA_CERTIFICATE,
        names::CA_CERTIFICATES,
    ] {
        assert!(found.contains(&name), "{name} not in {found:?}");
    }
    // A clock behind the certificates is refused as well.
    let failed = service.not_ready(now - TimeDelta::days(2));
    assert!(
        failed.iter().any(|c| c.detail.contains("not valid before")),
        "{failed:?}"
    );

    // Draining is reported with the certificates' state.
    service.drain();
    assert_eq!(names_of(&service.not_ready(now)), [names::DRAINING]);
}

#[tokio::test]
async fn the_admin_port_answers_readyz_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let service = Arc::new(PkiService::new(short_tsa_pki(&dir.path().join("pki"))).unwrap());
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", admin.local_addr().unwrap());
    tokio::spawn({
        let service = service.clone();
        async move {
            ndxp_gateway::pki::serve_admin(
                admin,
                service,
                &ndxp_edge::EdgeSettings::default(),
                std::future::pending(),
            )
            .await;
        }
    });
    let http = reqwest::Client::new();
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ready\n");
    service.drain();
    let r = http.get(format!("{url}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["ready"], false);
    assert!(
        v["reason"].as_str().unwrap().starts_with("draining: "),
        "{v}"
    );
    assert_eq!(v["checks"][0]["name"], names::DRAINING);
    // Liveness is not readiness: /healthz still answers.
    let r = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The running binary; dropping it kills it (a failed test leaves nothing).
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `GET http://127.0.0.1:{port}{path}` on a fresh connection: status and
/// body, or `None` when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: pki\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

#[test]
fn pki_serve_reports_the_drain_on_readyz_after_sigterm_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    ndxp_test_support::pki::init_pki(&pki_dir, "http://127.0.0.1:9/ocsp");
    let (port, admin) = (free_port(), free_port());
    let mut serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
            .args(["pki", "serve", "--dir"])
            .arg(&pki_dir)
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--admin-listen", &format!("127.0.0.1:{admin}")])
            .env_remove("NDXP_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = serve.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while get(admin, "/readyz").map(|r| r.0) != Some(200) {
        assert!(Instant::now() < deadline, "pki serve never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(get(admin, "/healthz").unwrap().0, 200);
    assert_eq!(get(admin, "/readyz").unwrap().1, "ready\n");

    // A timestamp request whose body is still coming: in flight during
    // the drain.
    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        slow,
        "POST /tsa HTTP/1.1\r\nHost: pki\r\nContent-Type: application/timestamp-query\r\nContent-Length: 100\r\n\r\n0123"
    )
    .unwrap();
    slow.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));

    sigterm(&serve.0);
    let mut seen = None;
    let deadline = Instant::now() + Duration::from_secs(8);
    while Instant::now() < deadline {
        if let Some((503, body)) = get(admin, "/readyz") {
            seen = Some(body);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let body = seen.expect("/readyz never answered 503 during the drain");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["ready"], false, "{v}");
    assert!(
        v["reason"].as_str().unwrap().starts_with("draining: "),
        "{v}"
    );
    // Still draining a moment later: the slow request holds it open.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(admin, "/readyz").map(|r| r.0), Some(503));
    assert!(
        serve.0.try_wait().unwrap().is_none(),
        "exited before the drain ended"
    );

    // Finish the request: the drain ends and the process exits 0.
    slow.write_all(&[b'x'; 96]).unwrap();
    slow.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = serve.0.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "pki serve did not exit after the drain"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(log.contains("draining"), "{log}");
    // The request in flight got its answer (a rejection of the junk
    // query, but an answer, not a cut connection).
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut answer = String::new();
    let _ = slow.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
