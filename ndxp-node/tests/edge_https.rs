//! The provider node's forwarder to an HTTPS backend, through a node pair.
//! The node trusts the system's CAs (OpenSSL's default store); this test,
//! alone in its binary so that no other test sees the variable, points
//! that store at the test CA with `SSL_CERT_FILE` before any node starts.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;

use ndxp_node::local::ServiceEntry;
use ndxp_test_support::edge::{raw_request, RecordingBackend};
use support::net::{Network, Options, CITIZEN, CLIENT, PROVIDER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_backend_is_reached_over_tls() {
    let mut net = Network::prepare(Options::default()).await;
    let ca = net.tmp.path().join("system-ca.pem");
    std::fs::write(&ca, net.pki.root_cert().to_pem().unwrap()).unwrap();
    std::env::set_var("SSL_CERT_FILE", &ca);
    let backend =
        RecordingBackend::start_tls_issued(&net.pki, &PROVIDER.parse().unwrap(), net.tmp.path())
            .await;
    let url = backend.url("/base");
    assert!(url.starts_with("https://127.0.0.1:"));
    net.provider
        .local()
        .edit(|c, m| c.put_service(m, ServiceEntry::new(CITIZEN.parse().unwrap(), url)))
        .unwrap();
    net.start_node(true).await;
    net.start_node(false).await;
    net.wait_ready(true).await;
    net.wait_ready(false).await;

    let client_port = SocketAddr::from(([127, 0, 0, 1], net.consumer.client_port));
    let a = raw_request(
        client_port,
        &format!("/r1/{CITIZEN}/persons/1?x=1"),
        &[("ndxp-client", CLIENT)],
    )
    .await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.json()["path"], "/base/persons/1?x=1");
    assert_eq!(backend.exchanges().len(), 1);
}
