//! The node's edge, end to end on loopback through a node pair: the path
//! rule on the client port and the header policy of the backend
//! forwarder, seen from a backend that records everything it receives.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;

use ndxp_edge::forward::ExtraHeaders;
use ndxp_node::local::ServiceEntry;
use ndxp_test_support::edge::{
    assert_bad_paths_refused, assert_header_policy, raw_request, RecordingBackend, CALLER_HEADERS,
};
use support::net::{Network, Options, CITIZEN, CLIENT, SLOW};

/// A node pair whose provider serves [`CITIZEN`] from `backend` (base
/// path `/base`), changed by `entry` before the nodes start, and [`SLOW`]
/// from the same backend as it is.
async fn network(backend: &RecordingBackend, entry: impl FnOnce(&mut ServiceEntry)) -> Network {
    let mut net = Network::prepare(Options::default()).await;
    let url = backend.url("/base");
    net.provider
        .local()
        .edit(|c, m| {
            let mut e = ServiceEntry::new(CITIZEN.parse().unwrap(), url.clone());
            entry(&mut e);
            c.put_service(m, e)?;
            c.put_service(m, ServiceEntry::new(SLOW.parse().unwrap(), url))
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
    let path = format!("/r1/{CITIZEN}/persons/1?x=1");
    let ok = raw_request(client_port(&net), &path, &client).await;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_headers_reach_the_backend_and_the_provider_says_who_called() {
    let backend = RecordingBackend::start().await;
    let net = network(&backend, |e| {
        e.forward_headers = ExtraHeaders {
            request: vec!["x-tenant".into()],
            response: vec!["x-backend-only".into()],
        };
    })
    .await;
    let mut sent = CALLER_HEADERS.to_vec();
    sent.push(("ndxp-client", CLIENT));
    // citizen/v1 lets X-Tenant in and X-Backend-Only out; slow/v1, on the
    // same backend, has no extra header.
    let path = format!("/r1/{CITIZEN}/persons/1");
    let a = raw_request(client_port(&net), &path, &sent).await;
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(
        a.headers["x-backend-only"], "1",
        "a configured response extra"
    );
    assert_eq!(a.headers["content-type"], "application/json");
    let b = raw_request(client_port(&net), &format!("/r1/{SLOW}/persons/1"), &sent).await;
    assert_eq!(b.status, 200, "{:?}", b.body);
    assert!(!b.headers.contains_key("x-backend-only"));

    let seen = backend.exchanges();
    assert_eq!(seen.len(), 2);
    let forwarded = format!(
        "for=127.0.0.1;proto=https;host=\"127.0.0.1:{}\"",
        net.provider.peer_port
    );
    // The consumer's node called the provider's peer port.
    assert_header_policy(&seen[0], &seen[1], &forwarded);
    for s in &seen {
        assert_eq!(s.headers["ndxp-client"], CLIENT);
    }
}
