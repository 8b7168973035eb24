//! Every port of a running node applies the `[edge]` limits: a client
//! that trickles one byte a second is cut off at the header time-out on
//! the plain and HTTPS client ports and the admin port, and at the TLS
//! handshake time-out on the peer port and the HTTPS client port, while
//! the exchange keeps working.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use ndxp_test_support::slow::{
    tls_connect, trickle, trickle_tcp, ENDLESS_HEADER, ENDLESS_TLS_RECORD,
};
use support::net::{http, Network, Options, CITIZEN, CLIENT};

fn assert_cut(what: &str, open: Option<Duration>) {
    ndxp_test_support::slow::assert_cut(what, open, Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_cuts_off_a_client_that_trickles_at_the_configured_timeout() {
    let net = Network::start(Options {
        edge: Some("header_timeout_secs = 2\ntls_handshake_timeout_secs = 2"),
        client_tls: true,
        ..Options::default()
    })
    .await;
    let node = &net.consumer;
    let addr = |port: u16| format!("127.0.0.1:{port}").parse().unwrap();
    let https_headers = async {
        let stream = tls_connect(addr(node.client_tls_port), None).await;
        trickle(
            stream,
            ENDLESS_HEADER,
            Duration::from_secs(1),
            Duration::from_secs(60),
        )
        .await
    };
    let (client, https, https_handshake, peer, admin) = tokio::join!(
        trickle_tcp(addr(node.client_port), ENDLESS_HEADER),
        https_headers,
        trickle_tcp(addr(node.client_tls_port), ENDLESS_TLS_RECORD),
        trickle_tcp(net.provider.peer_addr(), ENDLESS_TLS_RECORD),
        trickle_tcp(addr(node.admin_port), ENDLESS_HEADER),
    );
    assert_cut("client port", client);
    assert_cut("HTTPS client port (headers)", https);
    assert_cut("HTTPS client port (TLS handshake)", https_handshake);
    assert_cut("peer port", peer);
    assert_cut("admin port", admin);

    // The exchange (client port, then the provider's peer port) still works.
    let r = http()
        .get(net.url(CITIZEN, "/persons/001099012345"))
        .header("NDXP-Client", CLIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}
