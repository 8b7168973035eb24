//! The node's edge, end to end on loopback through a node pair: the path
//! rule on the client port and the header policy of the backend
//! forwarder, seen from a backend that records everything it receives.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;

use ndxp_node::local::ServiceEntry;
use ndxp_test_support::edge::{assert_bad_paths_refused, raw_request, RecordingBackend};
use support::net::{Network, Options, CITIZEN, CLIENT};

/// A node pair whose provider serves [`CITIZEN`] from `backend` (base
/// path `/base`), changed by `entry` before the nodes start.
async fn network(backend: &RecordingBackend, entry: impl FnOnce(&mut ServiceEntry)) -> Network {
    let mut net = Network::prepare(Options::default()).await;
    let url = backend.url("/base");
    net.provider
        .local()
        .edit(|c, m| {
            let mut e = ServiceEntry::new(CITIZEN.parse().unwrap(), url);
            entry(&mut e);
            c.put_service(m, e)
        })
        .unwrap();
    net.start_node(true).await;
    net.start_node(false).await;
    net.wait_ready(true).await;
    net.wait_ready(false).await;
    net
}

fn client_port(net: &Network) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], net.consumer.client_port))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encoded_path_tricks_are_refused_on_the_client_port() {
    let backend = RecordingBackend::start().await;
    let net = network(&backend, |_| {}).await;
    let client = [("ndxp-client", CLIENT)];

    // The control: an ordinary path reaches the backend under its base.
    let ok = raw_request(
        client_port(&net),
        &format!("/r1/{CITIZEN}/persons/1?x=1"),
        &client,
    )
    .await;
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    assert_eq!(backend.exchanges().len(), 1);
    assert_eq!(backend.exchanges()[0].path_and_query, "/base/persons/1?x=1");

    assert_bad_paths_refused(
        client_port(&net),
        &format!("/r1/{CITIZEN}"),
        &client,
        &backend,
    )
    .await;
}
