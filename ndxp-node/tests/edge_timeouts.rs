//! Every port of a running node applies the `[edge]` limits: a client
//! that trickles one byte a second is cut off at the header time-out on
//! the plain and HTTPS client ports and the admin port, and at the TLS
//! handshake time-out on the peer port and the HTTPS client port; the
//! per-address connection limit holds and is counted in the metrics; the
//! exchange keeps working.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use ndxp_test_support::slow::{trickle_tcp, trickle_tls, ENDLESS_HEADER, ENDLESS_TLS_RECORD};
use support::net::{http, Network, Options, CITIZEN, CLIENT};

fn assert_cut(what: &str, open: Option<Duration>) {
    ndxp_test_support::slow::assert_cut(what, open, Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_port_cuts_off_a_client_that_trickles_at_the_configured_timeout() {
    let net = Network::start(Options {
        edge: Some(
            "header_timeout_secs = 2\ntls_handshake_timeout_secs = 2\nmax_connections_per_ip = 16",
        ),
        client_tls: true,
        ..Options::default()
    })
    .await;
    let node = &net.consumer;
    let addr = |port: u16| format!("127.0.0.1:{port}").parse().unwrap();
    let (client, https, https_handshake, peer, admin) = tokio::join!(
        trickle_tcp(addr(node.client_port), ENDLESS_HEADER),
        trickle_tls(addr(node.client_tls_port), ENDLESS_HEADER),
        trickle_tcp(addr(node.client_tls_port), ENDLESS_TLS_RECORD),
        trickle_tcp(net.provider.peer_addr(), ENDLESS_TLS_RECORD),
        trickle_tcp(addr(node.admin_port), ENDLESS_HEADER),
    );
    assert_cut("client port", client);
    assert_cut("HTTPS client port (headers)", https);
    assert_cut("HTTPS client port (TLS handshake)", https_handshake);
    assert_cut("peer port", peer);
    assert_cut("admin port", admin);

    // The per-address limit holds on the admin port: a 17th connection
    // from 127.0.0.1 is closed at once (well before the header time-out),
    // counted, and the port serves again once the others are gone.
    let admin_addr: std::net::SocketAddr = addr(node.admin_port);
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(tokio::net::TcpStream::connect(admin_addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut extra = tokio::net::TcpStream::connect(admin_addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    let n = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read(&mut extra, &mut buf),
    )
    .await
    .expect("the extra connection is closed")
    .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = http()
        .get(format!("{}/metrics", node.admin_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("ndxp_node_connections_refused_total{listener=\"admin\"} 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ndxp_node_connections_open{listener=\"peer\"}"),
        "{metrics}"
    );

    // The exchange (client port, then the provider's peer port) still works.
    let r = http()
        .get(net.url(CITIZEN, "/persons/001099012345"))
        .header("NDXP-Client", CLIENT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}
