//! Every listener of `ndxp-gateway` applies the `[edge]` limits: a client
//! that trickles one byte a second is cut off at the configured time-out on
//! the management API, its admin port, the central gateway (plain HTTP, and
//! HTTPS both inside and during the TLS handshake) and the PKI service,
//! while each keeps answering other clients.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::sync::Arc;
use std::time::Duration;

use gateway_support::Env;
use ndxp_test_support::slow::{trickle_tcp, trickle_tls, ENDLESS_HEADER, ENDLESS_TLS_RECORD};

const EDGE: &str = "header_timeout_secs = 2\ntls_handshake_timeout_secs = 2";

fn assert_cut(what: &str, open: Option<Duration>) {
    ndxp_test_support::slow::assert_cut(what, open, Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_management_api_its_admin_port_and_the_plain_gateway_cut_off_slow_headers() {
    let env = Env::start_with_edge(false, EDGE).await;
    let (mgmt, admin, gateway) = tokio::join!(
        trickle_tcp(env.mgmt, ENDLESS_HEADER),
        trickle_tcp(env.admin, ENDLESS_HEADER),
        trickle_tcp(env.gateway, ENDLESS_HEADER),
    );
    assert_cut("management API", mgmt);
    assert_cut("admin port", admin);
    assert_cut("central gateway", gateway);

    // Both keep answering other clients.
    let openapi = format!("http://{}/openapi.json", env.mgmt);
    for url in [openapi, format!("http://{}/healthz", env.admin)] {
        let r = env.http.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
    }
    let (status, _) = env.token_request("nobody", "wrong").await;
    assert!(status == 400 || status == 401, "{status}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_https_gateway_cuts_off_slow_headers_and_slow_handshakes() {
    let env = Env::start_with_edge(true, EDGE).await;
    let (inside, handshake) = tokio::join!(
        trickle_tls(env.gateway, ENDLESS_HEADER),
        trickle_tcp(env.gateway, ENDLESS_TLS_RECORD)
    );
    assert_cut("HTTPS gateway (headers)", inside);
    assert_cut("HTTPS gateway (TLS handshake)", handshake);
    // The handshake that timed out is counted.
    let metrics = env.admin_text("/metrics").await;
    let failed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ndxp_gateway_handshakes_failed_total{listener=\"gateway\"} "))
        .unwrap_or_else(|| panic!("{metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(failed >= 1, "{metrics}");
    assert!(
        metrics.contains("ndxp_gateway_connections_open{listener=\"admin\"} 1\n"),
        "{metrics}"
    );

    let (status, _) = env.token_request("nobody", "wrong").await;
    assert!(status == 400 || status == 401, "{status}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pki_service_cuts_off_slow_headers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = ndxp_test_support::pki::init_pki(&dir.path().join("pki"), "http://127.0.0.1:1/ocsp");
    drop(pki);
    let service = Arc::new(
        ndxp_gateway::pki::PkiService::new(
            ndxp_sign::ca::Pki::open(&dir.path().join("pki"), None).unwrap(),
        )
        .unwrap(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let settings: ndxp_edge::EdgeSettings = toml::from_str(EDGE).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        ndxp_gateway::pki::serve_with(listener, service, &settings, async move {
            let _ = rx.await;
        })
        .await;
    });
    assert_cut("PKI service", trickle_tcp(addr, ENDLESS_HEADER).await);
    let r = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let _ = tx.send(());
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap();
}
