//! End to end: the exchange between two nodes of two members, with the
//! platform CA and its OCSP responder, the management stand-in, a real
//! backend, and information systems calling with reqwest or curl. Every
//! error code of docs/design.md §4 that a node raises is checked on the wire:
//! status, `application/problem+json`, `code`, and that the problem
//! document is what reaches the client.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use chrono::Utc;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ndxp_audit::log::{LogRecord, Role, SignedMeta};
use ndxp_core::TransactionId;
use ndxp_sign::profile;
use ndxp_sign::revocation::RevocationReason;
use ndxp_sign::tls::{self, PeerPolicy};
use support::net::{
    citizen_openapi, get, http, Answer, Chunks, Network, NodeSetup, Options, BIG, CITIZEN,
    CITIZEN_V2, CITIZEN_V9, CLIENT, CONSUMER, DOWN, MAX_BODY, NOT_ON_NODE, PROVIDER, PROVIDER_SUB,
    SECRET, SLOW,
};

/// The records of every writer in a node's message log (the SQLite file
/// the node writes, opened as a reader would).
async fn log_records(node: &NodeSetup) -> Vec<LogRecord> {
    node.log_records("e2e-test-reader").await
}

/// Re-verifies a logged signature offline; returns the signing member.
fn verify_meta(net: &Network, meta: &SignedMeta) -> String {
    let (member, _created) = profile::verify_logged(
        &meta.base,
        &meta.signature_input,
        &meta.signature,
        &meta.signer_cert_der,
        &meta.chain_der,
        &net.anchors(),
        &*net.pki,
    )
    .unwrap_or_else(|e| panic!("a logged signature does not re-verify: {e}"));
    member.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_exchange_reaches_the_backend_and_both_message_logs() {
    let net = Network::start(Options::default()).await;

    let r = http()
        .get(net.url(
            CITIZEN,
            "/persons/001099012345?full=1&ten=Nguy%E1%BB%85n+A&x=a%2Fb",
        ))
        .header("NDXP-Client", CLIENT)
        .header("Accept", "application/json")
        .header("NDXP-User-Id", "citizen-42")
        .header("NDXP-Request-Id", "is-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let id = r.headers()["ndxp-id"].to_str().unwrap().to_owned();
    let hash = r.headers()["ndxp-request-hash"]
        .to_str()
        .unwrap()
        .to_owned();
    let tx: TransactionId = id.parse().unwrap();
    assert_eq!(
        tx.as_uuid().get_version_num(),
        7,
        "NDXP-Id {id} is not a UUID v7"
    );
    assert!(
        hash.starts_with("sha-256=:") && hash.ends_with(':'),
        "NDXP-Request-Hash {hash}"
    );
    assert_eq!(r.headers()["content-type"], "application/json");
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["id"], "001099012345");
    assert_eq!(body["name"], "Nguyễn Văn A");
    assert_eq!(
        body["seen_client"], CLIENT,
        "NDXP-Client reaches the backend"
    );
    assert_eq!(body["seen_user"], "citizen-42");
    assert_eq!(body["seen_request_id"], "is-req-1");
    assert_eq!(body["seen_accept"], "application/json");
    assert_eq!(
        body["seen_query"], "full=1&ten=Nguy%E1%BB%85n+A&x=a%2Fb",
        "the query reaches the backend unchanged"
    );

    // A POST body and its content type reach the backend and come back.
    let payload = serde_json::json!({"query": "Trần Thị B", "pad": "y".repeat(4000)});
    let r = http()
        .post(net.url(CITIZEN, "/echo"))
        .header("NDXP-Client", CLIENT)
        .json(&payload)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap(), payload);

    // Both nodes hold a durable record of the first exchange, with the
    // same transaction id, and its signatures re-verify offline.
    let consumer = log_records(&net.consumer).await;
    let provider = log_records(&net.provider).await;
    let find = |records: &[LogRecord], what: &str| {
        records
            .iter()
            .find(|r| r.exchange.transaction_id == tx)
            .unwrap_or_else(|| panic!("the {what} log has no record of {tx}"))
            .clone()
    };
    let c = find(&consumer, "consumer");
    let p = find(&provider, "provider");
    assert!(
        c.writer.starts_with("VN/GOV/000.00.00.G22/node-g22/"),
        "{}",
        c.writer
    );
    assert!(
        p.writer.starts_with("VN/GOV/000.00.00.H29/node-h29/"),
        "{}",
        p.writer
    );
    assert_eq!(c.exchange.role, Role::Consumer);
    assert_eq!(p.exchange.role, Role::Provider);
    for rec in [&c, &p] {
        let e = &rec.exchange;
        assert_eq!(e.client.to_string(), CLIENT);
        assert_eq!(e.service.to_string(), CITIZEN);
        assert_eq!(e.status, 200);
        assert_eq!(e.problem_code, None);
        assert!(e.response_bytes > 0);
        let resp = e
            .response
            .as_ref()
            .expect("the response's signature is logged");
        assert_eq!(verify_meta(&net, &e.request), CONSUMER);
        assert_eq!(verify_meta(&net, resp), PROVIDER);
        assert!(
            e.request.base.contains(&format!("\"ndxp-id\": {tx}")),
            "the logged request base covers the transaction id: {}",
            e.request.base
        );
    }
    // The end user and the IS's request id are covered, hence logged.
    for rec in [&c, &p] {
        let base = &rec.exchange.request.base;
        assert!(base.contains("\"ndxp-user-id\": citizen-42"), "{base}");
        assert!(base.contains("\"ndxp-request-id\": is-req-1"), "{base}");
    }
    // The same signed request and response on both sides.
    assert_eq!(c.exchange.request.signature, p.exchange.request.signature);
    assert_eq!(
        c.exchange.response.as_ref().unwrap().signature,
        p.exchange.response.as_ref().unwrap().signature
    );
    // NDXP-Request-Hash is the digest of the signed request, as logged.
    let logged = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(ndxp_sign::openssl::sha::sha256(
            c.exchange.request.base.as_bytes()
        ))
    );
    assert_eq!(hash, logged);

    // Concurrent exchanges over the pooled connections: each answered,
    // each with its own transaction id, each in both logs.
    let calls = (0..32).map(|i| {
        let url = net.url(CITIZEN, &format!("/persons/{i}"));
        async move {
            let r = http()
                .get(url)
                .header("NDXP-Client", CLIENT)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let id = r.headers()["ndxp-id"].to_str().unwrap().to_owned();
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["id"], i.to_string());
            id.parse::<TransactionId>().unwrap()
        }
    });
    let mut ids = Vec::new();
    for call in calls.map(tokio::spawn) {
        ids.push(call.await.unwrap());
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());
    for node in [&net.consumer, &net.provider] {
        let logged: std::collections::HashSet<_> = log_records(node)
            .await
            .into_iter()
            .map(|r| r.exchange.transaction_id)
            .collect();
        assert!(ids.iter().all(|id| logged.contains(id)));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_reaches_the_client_as_its_problem_code() {
    let net = Network::start(Options::default()).await;
    let person = "/persons/1";

    // Unknown client: a subsystem of the member, but not on this node.
    let a = get(&net.url(CITIZEN, person), Some(NOT_ON_NODE)).await;
    let p = a.problem(403, "ndxp.client_unknown");
    assert!(p["detail"].as_str().unwrap().contains(NOT_ON_NODE), "{p}");
    assert!(a.ndxp_id.is_some(), "a refusal carries the transaction id");

    // Unknown service, and unknown version: not in the catalogue at all.
    let a = get(
        &net.url("VN/GOV/000.00.00.H29/CSDLDC/nothing/v1", person),
        Some(CLIENT),
    )
    .await;
    a.problem(404, "ndxp.service_unknown");
    let a = get(&net.url(CITIZEN_V9, person), Some(CLIENT)).await;
    let p = a.problem(404, "ndxp.service_unknown");
    assert!(p["detail"].as_str().unwrap().contains("catalogue"), "{p}");
    // In the catalogue, but the provider's node does not provide it: the
    // provider's signed refusal is relayed.
    let a = get(&net.url(CITIZEN_V2, person), Some(CLIENT)).await;
    let p = a.problem(404, "ndxp.service_unknown");
    assert!(
        p["detail"].as_str().unwrap().contains("does not provide"),
        "{p}"
    );

    // No right to the service.
    let a = get(&net.url(SECRET, person), Some(CLIENT)).await;
    let p = a.problem(403, "ndxp.access_denied");
    assert!(p["detail"].as_str().unwrap().contains(CLIENT), "{p}");

    // Backend down.
    let a = get(&net.url(DOWN, person), Some(CLIENT)).await;
    a.problem(502, "ndxp.provider_unreachable");

    // Backend slower than the service's 1 s time-out.
    let started = std::time::Instant::now();
    let a = get(&net.url(SLOW, "/slow"), Some(CLIENT)).await;
    a.problem(504, "ndxp.provider_timeout");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "the time-out did not cut the 5 s backend: {:?}",
        started.elapsed()
    );
    assert!(!a.text().contains("too late"));

    // A request body over [exchange] max_body_bytes, announced by
    // Content-Length, and sent chunked (refused once the limit is passed).
    let too_large = [
        (
            Some(MAX_BODY + 1),
            Chunks {
                left: 0,
                size: 0,
                hang: true,
            },
        ),
        (
            None,
            Chunks {
                left: 5,
                size: MAX_BODY as usize / 4,
                hang: true,
            },
        ),
    ];
    for (length, body) in too_large {
        let mut req = Request::post(format!("/r1/{CITIZEN}/echo"))
            .header("ndxp-client", CLIENT)
            .header("content-type", "text/plain");
        if let Some(n) = length {
            req = req.header("content-length", n);
        }
        let sent = raw_request(
            ("127.0.0.1", net.consumer.client_port),
            req.body(body).unwrap(),
        )
        .await;
        sent.problem(413, "ndxp.payload_too_large");
    }

    // A backend response over it, announced and chunked.
    for route in ["/big", "/big-chunked"] {
        let a = get(&net.url(CITIZEN, route), Some(CLIENT)).await;
        a.problem(413, "ndxp.payload_too_large");
        assert!(a.body.len() < BIG);
    }

    // Malformed path and headers.
    let client = net.consumer.client_url();
    for (url, hdr) in [
        (format!("{client}/r1/VN/GOV"), Some(CLIENT)),
        (format!("{client}/r2/{CITIZEN}/persons/1"), Some(CLIENT)),
        (
            net.url("VN/GOV/000.00.00.H29/CSDLDC/citizen/x1", person),
            Some(CLIENT),
        ),
        (net.url(CITIZEN, person), None),
        (net.url(CITIZEN, person), Some("not a subsystem")),
    ] {
        let a = get(&url, hdr).await;
        a.problem(400, "ndxp.bad_request");
    }
    let r = http()
        .get(net.url(CITIZEN, person))
        .header("NDXP-Client", CLIENT)
        .header("NDXP-User-Id", "u".repeat(300))
        .send()
        .await
        .unwrap();
    Answer::of(r).await.problem(400, "ndxp.bad_request");
    let r = http()
        .get(net.url(CITIZEN, person))
        .header("NDXP-Client", CLIENT)
        .header("NDXP-Client", CLIENT)
        .send()
        .await
        .unwrap();
    Answer::of(r).await.problem(400, "ndxp.bad_request");

    // Dot segments in the path rest never take the request outside the
    // service's backend base URL.
    for rest in [
        "/../internal/secret",
        "/%2e%2e/internal/secret",
        "/persons/%2E%2e/../internal/secret",
        "/./%2e/../internal/secret",
    ] {
        let req = Request::get(format!("/r1/{CITIZEN}{rest}"))
            .header("ndxp-client", CLIENT)
            .body(Full::new(Bytes::new()))
            .unwrap();
        let sent = raw_request(("127.0.0.1", net.consumer.client_port), req).await;
        let text = String::from_utf8_lossy(&sent.body);
        assert!(
            !text.contains("internal secret"),
            "{rest} escaped the backend base URL"
        );
        sent.problem(400, "ndxp.bad_request");
    }

    // The backend's own errors are not the platform's: relayed as they are.
    let a = get(&net.url(CITIZEN, "/no-such-route"), Some(CLIENT)).await;
    assert_eq!(a.status, 404);
    assert_ne!(a.content_type, "application/problem+json");
    assert!(a.ndxp_id.is_some());

    // After all of these the exchange still works.
    let a = get(&net.url(CITIZEN, person), Some(CLIENT)).await;
    assert_eq!(a.status, 200, "{}", a.text());

    // Refusals after the request was signed are in the message logs,
    // with their codes: the consumer's record of the access refusal, the
    // provider's of the backend time-out.
    let logged = |records: &[LogRecord], service: &str, code: &str| {
        records.iter().any(|r| {
            r.exchange.service.to_string() == service
                && r.exchange.problem_code.as_deref() == Some(code)
        })
    };
    let consumer = log_records(&net.consumer).await;
    let provider = log_records(&net.provider).await;
    assert!(logged(&consumer, SECRET, "ndxp.access_denied"));
    assert!(logged(&consumer, SLOW, "ndxp.provider_timeout"));
    assert!(logged(&provider, SLOW, "ndxp.provider_timeout"));
    assert!(logged(&provider, DOWN, "ndxp.provider_unreachable"));
}

// ---------------------------------------------------------------------------
// Talking to the provider's peer port directly, as the consumer's node.
// ---------------------------------------------------------------------------

/// Sends `req` as it is (no URL normalisation, any body) over a fresh
/// HTTP/1.1 connection to `addr`.
async fn raw_request<B>(addr: (&str, u16), mut req: Request<B>) -> Sent
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    if !req.headers().contains_key("host") {
        let host = format!("{}:{}", addr.0, addr.1);
        req.headers_mut().insert("host", host.parse().unwrap());
    }
    let resp = sender.send_request(req).await.unwrap();
    Sent::of(resp).await
}

struct Sent {
    status: u16,
    content_type: String,
    body: Bytes,
}

impl Sent {
    async fn of(resp: Response<hyper::body::Incoming>) -> Sent {
        let (parts, body) = resp.into_parts();
        Sent {
            status: parts.status.as_u16(),
            content_type: parts
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    #[track_caller]
    fn problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(
            (self.status, self.content_type.as_str()),
            (status, "application/problem+json"),
            "{}",
            String::from_utf8_lossy(&self.body)
        );
        let p: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        assert_eq!(p["code"], code, "{p}");
        p
    }
}

/// A request head as the consumer's node signs it: `NDXP-Client`,
/// `NDXP-Id`, the provider's address as target URI, signed over `body`.
fn signed_head(net: &Network, method: &str, rest: &str, body: &[u8]) -> http::request::Parts {
    signed_head_by(net, &net.consumer, CLIENT, method, rest, body, Utc::now())
}

/// [`signed_head`] by `node`'s member for `client`, created at `at`.
fn signed_head_by(
    net: &Network,
    node: &NodeSetup,
    client: &str,
    method: &str,
    rest: &str,
    body: &[u8],
    at: chrono::DateTime<Utc>,
) -> http::request::Parts {
    let (mut parts, ()) = Request::builder()
        .method(method)
        .uri(format!("{}/r1/{CITIZEN}{rest}", net.provider.address()))
        .header("ndxp-client", client)
        .header("ndxp-id", TransactionId::new().to_string())
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    profile::sign_request(
        &mut parts,
        &ndxp_sign::digest::content_digest(body),
        &node.signer(),
        at,
    )
    .unwrap();
    parts
}

/// Sends `head` with `body` over a fresh mutual-TLS connection made with
/// the consumer node's authentication identity.
async fn send_to_provider(net: &Network, head: &http::request::Parts, body: &[u8]) -> Sent {
    send_body_to_provider(net, head, Full::new(Bytes::copy_from_slice(body))).await
}

/// [`send_to_provider`] with any body.
async fn send_body_to_provider<B>(net: &Network, head: &http::request::Parts, body: B) -> Sent
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    send_body_as(net, &net.consumer, head, body).await
}

/// [`send_body_to_provider`] over a connection made with `from`'s
/// authentication identity.
async fn send_body_as<B>(
    net: &Network,
    from: &NodeSetup,
    head: &http::request::Parts,
    body: B,
) -> Sent
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let connector = tls::client_connector(
        &from.identity(),
        PeerPolicy::pinned_per_connection(net.anchors()),
    )
    .unwrap();
    let tcp = tokio::net::TcpStream::connect(net.provider.peer_addr())
        .await
        .unwrap();
    let (stream, peer) = tls::connect(
        &connector,
        tcp,
        &[net.provider.fingerprint()],
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    assert_eq!(peer.member.to_string(), PROVIDER);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.path_and_query().unwrap().as_str().parse().unwrap();
    *req.headers_mut() = head.headers.clone();
    req.headers_mut().insert(
        "host",
        head.uri.authority().unwrap().as_str().parse().unwrap(),
    );
    Sent::of(sender.send_request(req).await.unwrap()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_replayed_requests_are_refused_by_the_provider() {
    let net = Network::start(Options::default()).await;

    // Correctly signed: the provider serves it.
    let head = signed_head(&net, "GET", "/persons/7", b"");
    let ok = send_to_provider(&net, &head, b"").await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    assert!(String::from_utf8_lossy(&ok.body).contains("Nguyễn Văn A"));

    // The body changed after signing: the digest no longer matches.
    let signed_body = br#"{"query":"A"}"#;
    let head = signed_head(&net, "POST", "/echo", signed_body);
    let sent = send_to_provider(&net, &head, br#"{"query":"B"}"#).await;
    let p = sent.problem(400, "ndxp.signature_invalid");
    assert!(
        !String::from_utf8_lossy(&sent.body).contains("query"),
        "{p}"
    );

    // A covered header changed after signing.
    let mut head = signed_head(&net, "GET", "/persons/7", b"");
    head.headers
        .insert("ndxp-client", NOT_ON_NODE.parse().unwrap());
    send_to_provider(&net, &head, b"")
        .await
        .problem(400, "ndxp.signature_invalid");
    let mut head = signed_head(&net, "GET", "/persons/7", b"");
    head.uri = format!("{}/r1/{CITIZEN}/persons/8", net.provider.address())
        .parse()
        .unwrap();
    send_to_provider(&net, &head, b"")
        .await
        .problem(400, "ndxp.signature_invalid");

    // Not signed at all: a required header is missing (the profile's
    // MissingHeader is a malformed request, not a failed verification).
    let mut head = signed_head(&net, "GET", "/persons/7", b"");
    for h in ["signature", "signature-input"] {
        head.headers.remove(h);
    }
    let p = send_to_provider(&net, &head, b"")
        .await
        .problem(400, "ndxp.bad_request");
    assert!(p["detail"].as_str().unwrap().contains("signature"), "{p}");

    // Signed an hour ago: outside the acceptance window.
    let head = signed_head_by(
        &net,
        &net.consumer,
        CLIENT,
        "GET",
        "/persons/7",
        b"",
        Utc::now() - chrono::TimeDelta::hours(1),
    );
    send_to_provider(&net, &head, b"")
        .await
        .problem(400, "ndxp.signature_invalid");

    // Signed by another member than the node that sends it.
    let head = signed_head_by(
        &net,
        &net.provider,
        PROVIDER_SUB,
        "GET",
        "/persons/7",
        b"",
        Utc::now(),
    );
    let p = send_to_provider(&net, &head, b"")
        .await
        .problem(400, "ndxp.signature_invalid");
    assert!(p["detail"].as_str().unwrap().contains(CONSUMER), "{p}");

    // A signed body over the limit.
    let big = vec![b'b'; MAX_BODY as usize + 1];
    let mut head = signed_head(&net, "POST", "/echo", &big);
    head.headers.insert("content-length", big.len().into());
    let hanging = Chunks {
        left: 0,
        size: 0,
        hang: true,
    };
    send_body_to_provider(&net, &head, hanging)
        .await
        .problem(413, "ndxp.payload_too_large");

    // The same signed request twice: the second is a replay.
    let head = signed_head(&net, "GET", "/persons/9", b"");
    let first = send_to_provider(&net, &head, b"").await;
    assert_eq!(first.status, 200);
    let again = send_to_provider(&net, &head, b"").await;
    let p = again.problem(400, "ndxp.signature_invalid");
    assert!(
        p["detail"].as_str().unwrap().contains("replay"),
        "the detail names the replay: {p}"
    );
}

/// The provider's replay cache gives each signer member a share
/// (`[exchange] replay_entries_per_member`, 3 here): the consumer member
/// filling its share is refused with `429 ndxp.rate_limited`, while
/// another member (the provider's own member, calling over its node's
/// identity) still gets through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_peer_filling_its_replay_share_does_not_lock_out_another() {
    let mut net = Network::prepare(Options {
        replay_entries_per_member: Some(3),
        ..Options::default()
    })
    .await;
    // The provider's own subsystem may call the citizen service too.
    net.provider
        .local()
        .edit(|c, _| {
            c.grant(
                CITIZEN.parse().unwrap(),
                ndxp_registry::globalconf::ConfGrantee::Subsystem(PROVIDER_SUB.parse().unwrap()),
            )
        })
        .unwrap();
    net.start_node(true).await;
    net.wait_ready(true).await;

    for i in 0..3 {
        let head = signed_head(&net, "GET", &format!("/persons/{i}"), b"");
        let ok = send_to_provider(&net, &head, b"").await;
        assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
    }
    // The consumer member's share is full: refused, as a full cache is.
    let head = signed_head(&net, "GET", "/persons/4", b"");
    let p = send_to_provider(&net, &head, b"")
        .await
        .problem(429, "ndxp.rate_limited");
    let detail = p["detail"].as_str().unwrap();
    assert!(detail.contains(CONSUMER) && detail.contains("share"), "{p}");

    // Another member is not affected.
    let head = signed_head_by(
        &net,
        &net.provider,
        PROVIDER_SUB,
        "GET",
        "/persons/5",
        b"",
        Utc::now(),
    );
    let ok = send_body_as(&net, &net.provider, &head, Full::new(Bytes::new())).await;
    assert_eq!(ok.status, 200, "{}", String::from_utf8_lossy(&ok.body));
}

// ---------------------------------------------------------------------------
// A fake provider node that signs and then alters its answers.
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_that_fails_verification_never_reaches_the_client() {
    let mut net = Network::prepare(Options {
        exchange_timeout_secs: Some(2),
        ..Options::default()
    })
    .await;
    net.start_node(false).await;
    net.wait_ready(false).await;

    // Nothing listens on the provider's address yet.
    get(&net.url(CITIZEN, "/persons/1"), Some(CLIENT))
        .await
        .problem(502, "ndxp.provider_unreachable");

    // On the provider's registered address, with its real authentication
    // identity and signing key.
    let listener = tokio::net::TcpListener::bind(net.provider.peer_addr())
        .await
        .unwrap();
    let policy = PeerPolicy::pinned(net.anchors(), &[net.consumer.fingerprint()]);
    let acceptor = tls::server_acceptor(&net.provider.identity(), policy.clone()).unwrap();
    let signer = Arc::new(net.provider.signer());
    let address = net.provider.address();
    let served = Arc::new(AtomicUsize::new(0));
    let count = served.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let (acceptor, policy, signer, address, count) = (
                acceptor.clone(),
                policy.clone(),
                signer.clone(),
                address.clone(),
                count.clone(),
            );
            tokio::spawn(async move {
                let Ok((stream, _peer)) =
                    tls::accept(&acceptor, tcp, &policy, Duration::from_secs(10)).await
                else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (signer, address, count) = (signer.clone(), address.clone(), count.clone());
                    async move {
                        count.fetch_add(1, Ordering::SeqCst);
                        let (mut head, body) = req.into_parts();
                        let _ = body.collect().await;
                        let pq = head.uri.path_and_query().unwrap().as_str().to_owned();
                        if pq.contains("hang") {
                            tokio::time::sleep(Duration::from_secs(30)).await;
                        }
                        head.uri = format!("{address}{pq}").parse().unwrap();
                        let genuine = br#"{"id":"1","name":"genuine"}"#;
                        let altered = Bytes::from_static(br#"{"id":"1","name":"ALTERED"}"#);
                        let (mut parts, ()) = Response::builder()
                            .status(200)
                            .header("content-type", "application/json")
                            .body(())
                            .unwrap()
                            .into_parts();
                        if !pq.contains("unsigned") {
                            profile::sign_response(
                                &mut parts,
                                &head,
                                &ndxp_sign::digest::content_digest(genuine),
                                &signer,
                                Utc::now(),
                            )
                            .unwrap();
                        }
                        Ok::<_, std::convert::Infallible>(Response::from_parts(
                            parts,
                            Full::new(altered),
                        ))
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    // Signed over another body than the one sent.
    let a = get(&net.url(CITIZEN, "/persons/1"), Some(CLIENT)).await;
    let p = a.problem(502, "ndxp.signature_invalid");
    assert!(
        !a.text().contains("ALTERED"),
        "the altered body leaked: {p}"
    );
    // Not signed at all.
    let a = get(&net.url(CITIZEN, "/persons/unsigned"), Some(CLIENT)).await;
    let p = a.problem(502, "ndxp.signature_invalid");
    assert!(
        !a.text().contains("ALTERED"),
        "the altered body leaked: {p}"
    );
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("without a signature"),
        "{p}"
    );
    assert_eq!(
        served.load(Ordering::SeqCst),
        2,
        "the fake provider answered both"
    );
    // A provider node that does not answer within [exchange] timeout_secs.
    let started = std::time::Instant::now();
    get(&net.url(CITIZEN, "/persons/hang"), Some(CLIENT))
        .await
        .problem(504, "ndxp.provider_timeout");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_peer_certificate_is_refused() {
    let net = Network::start(Options::default()).await;
    net.pki
        .revoke(
            &net.provider.auth_cert,
            RevocationReason::KeyCompromise,
            Utc::now(),
        )
        .unwrap();
    let a = get(&net.url(CITIZEN, "/persons/1"), Some(CLIENT)).await;
    let p = a.problem(502, "ndxp.signature_invalid");
    assert!(
        p["detail"].as_str().unwrap().contains("revoked"),
        "the detail names the revocation: {p}"
    );
    assert!(!a.text().contains("Nguyễn"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_reaches_pooled_connections() {
    let net = Network::start(Options {
        ocsp_refresh_secs: Some(1),
        ..Options::default()
    })
    .await;
    let url = net.url(CITIZEN, "/persons/1");
    let a = get(&url, Some(CLIENT)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    net.pki
        .revoke(
            &net.provider.auth_cert,
            RevocationReason::KeyCompromise,
            Utc::now(),
        )
        .unwrap();
    // The consumer's node learns it from its OCSP refresh and stops using
    // the connection it holds.
    let mut last = String::new();
    for _ in 0..150 {
        let a = get(&url, Some(CLIENT)).await;
        if a.status != 200 {
            let p = a.problem(502, "ndxp.signature_invalid");
            assert!(!a.text().contains("Nguyễn"));
            assert!(p["detail"].as_str().unwrap().contains("revoked"), "{p}");
            return;
        }
        last = a.text();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the revoked provider node is still used after 15 s: {last}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_signing_certificate_is_refused() {
    let net = Network::start(Options::default()).await;
    let sign = net.consumer.signer().certificate().clone();
    net.pki
        .revoke(&sign, RevocationReason::KeyCompromise, Utc::now())
        .unwrap();
    // The provider's node refuses the request; its signed refusal is what
    // the client gets.
    let a = get(&net.url(CITIZEN, "/persons/1"), Some(CLIENT)).await;
    let p = a.problem(400, "ndxp.signature_invalid");
    assert!(
        p["detail"].as_str().unwrap().contains("revoked"),
        "the detail names the revocation: {p}"
    );
    assert!(!a.text().contains("Nguyễn"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_global_configuration_stops_the_exchange() {
    let mut net = Network::prepare(Options {
        expired_conf: true,
        ..Options::default()
    })
    .await;
    net.start_node(false).await;
    net.wait_up(false).await;
    let a = get(&net.url(CITIZEN, "/persons/1"), Some(CLIENT)).await;
    let p = a.problem(503, "ndxp.conf_expired");
    assert!(p["detail"].as_str().unwrap().contains("expired"), "{p}");
    let ready = get(&format!("{}/readyz", net.consumer.admin_url()), None).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let v = ready.json();
    assert_eq!(v["checks"][0]["name"], "global configuration", "{v}");
    assert!(
        v["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("no valid global configuration"),
        "{v}"
    );
    // Alive all the same.
    assert_eq!(
        get(&format!("{}/healthz", net.consumer.admin_url()), None)
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_node_is_not_ready_while_it_drains() {
    let mut net = Network::start(Options::default()).await;
    let admin = net.consumer.admin_url();
    // An exchange whose backend answers after 5 s is in flight...
    let slow_url = net.url(CITIZEN, "/slow");
    let slow = tokio::spawn(async move { get(&slow_url, Some(CLIENT)).await });
    // (the consumer's node has it once it holds a connection to the
    // provider's: nothing else made one)
    let provider_metrics = format!("{}/metrics", net.provider.admin_url());
    let mut forwarded = false;
    for _ in 0..100 {
        let text = get(&provider_metrics, None).await.text();
        if text.contains("ndxp_node_connections_open{listener=\"peer\"} 1") {
            forwarded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(forwarded, "the exchange did not reach the provider in 5 s");
    assert!(!slow.is_finished());
    // ... when the consumer's node is told to stop (SIGTERM does this).
    net.stop_node(false);
    let mut draining = None;
    for _ in 0..30 {
        let a = get(&format!("{admin}/readyz"), None).await;
        if a.status == 503 {
            draining = Some(a.json());
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let v = draining.expect("/readyz still 200 after the stop");
    assert_eq!(v["checks"][0]["name"], "draining", "{v}");
    assert!(!slow.is_finished(), "the readiness change came first");
    assert_eq!(get(&format!("{admin}/healthz"), None).await.status, 200);
    // New exchanges go elsewhere: the client port no longer accepts.
    assert!(reqwest::Client::new()
        .get(net.url(CITIZEN, "/persons/1"))
        .header("NDXP-Client", CLIENT)
        .send()
        .await
        .is_err());
    // The one in flight finishes.
    let a = slow.await.unwrap();
    assert_eq!(a.status, 200, "{}", a.text());
    // Then the admin port closes too.
    let mut closed = false;
    for _ in 0..100 {
        if reqwest::Client::new()
            .get(format!("{admin}/healthz"))
            .send()
            .await
            .is_err()
        {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(closed, "the admin port stays open after the drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_services_answer_through_the_node_pair() {
    let net = Network::start(Options::default()).await;
    let meta = |name: &str| format!("{}/r1/{PROVIDER_SUB}/{name}", net.consumer.client_url());
    let ids = |v: &serde_json::Value| {
        let mut ids: Vec<String> = v["services"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["service"].as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let sorted = |v: &[&str]| {
        let mut v: Vec<String> = v.iter().map(|s| (*s).to_owned()).collect();
        v.sort();
        v
    };

    let a = get(&meta("listMethods"), Some(CLIENT)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let list = a.json();
    assert_eq!(list["provider"], PROVIDER_SUB);
    assert_eq!(ids(&list), sorted(&[CITIZEN, SLOW, DOWN, SECRET]));
    let citizen = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["service"] == CITIZEN)
        .unwrap();
    assert_eq!(citizen["openapi"], true);
    assert_eq!(citizen["description"], "Citizen registry");

    let a = get(&meta("allowedMethods"), Some(CLIENT)).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let allowed = a.json();
    assert_eq!(allowed["client"], CLIENT);
    assert_eq!(ids(&allowed), sorted(&[CITIZEN, SLOW, DOWN]));

    let a = get(
        &format!("{}?service=citizen/v1", meta("openapi")),
        Some(CLIENT),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text());
    assert_eq!(a.json(), citizen_openapi());
    let a = get(
        &format!("{}?service=slow/v1", meta("openapi")),
        Some(CLIENT),
    )
    .await;
    a.problem(404, "ndxp.service_unknown");
    get(&meta("openapi"), Some(CLIENT))
        .await
        .problem(400, "ndxp.bad_request");
    // A member the global configuration does not know.
    let a = get(
        &format!(
            "{}/r1/VN/GOV/000.00.00.X99/ABC/listMethods",
            net.consumer.client_url()
        ),
        Some(CLIENT),
    )
    .await;
    a.problem(404, "ndxp.service_unknown");
    // The metadata services need a registered client too.
    get(&meta("listMethods"), Some(NOT_ON_NODE))
        .await
        .problem(403, "ndxp.client_unknown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn local_configuration_changes_apply_without_restart() {
    let net = Network::start(Options::default()).await;
    let admin = net.provider.admin_url();
    let token = net.provider.admin_token();
    let secret = net.url(SECRET, "/persons/5");
    let access = format!("{admin}/api/v1/local/access");
    let body = serde_json::json!({"service": SECRET, "client": CLIENT});

    get(&secret, Some(CLIENT))
        .await
        .problem(403, "ndxp.access_denied");

    // The admin API refuses calls without the token, or with another one.
    let r = http().post(&access).json(&body).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    Answer::of(r).await.problem(401, "ndxp.unauthorized");
    let r = http()
        .post(&access)
        .bearer_auth("ndxpn_not-the-token-of-this-node")
        .json(&body)
        .send()
        .await
        .unwrap();
    Answer::of(r).await.problem(401, "ndxp.unauthorized");
    get(&secret, Some(CLIENT))
        .await
        .problem(403, "ndxp.access_denied");

    // Grant through the admin API: the next call is allowed.
    let r = http()
        .post(&access)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let a = get(&secret, Some(CLIENT)).await;
    assert_eq!(a.status, 200, "{}", a.text());

    // Revoke: the next call is denied.
    let r = http()
        .delete(&access)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    get(&secret, Some(CLIENT))
        .await
        .problem(403, "ndxp.access_denied");

    // An edit of the file itself (what `ndxp-node access grant` does) is
    // picked up by the running node.
    net.provider
        .local()
        .edit(|c, _| {
            c.grant(
                SECRET.parse().unwrap(),
                ndxp_registry::globalconf::ConfGrantee::Subsystem(CLIENT.parse().unwrap()),
            )
        })
        .unwrap();
    let mut last = String::new();
    let mut allowed = false;
    for _ in 0..100 {
        let a = get(&secret, Some(CLIENT)).await;
        if a.status == 200 {
            allowed = true;
            break;
        }
        last = a.text();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(allowed, "the file edit was not picked up in 10 s: {last}");

    // Health, readiness and metrics.
    let a = get(&format!("{admin}/healthz"), None).await;
    assert_eq!((a.status, a.text().trim()), (200, "ok"));
    let a = get(&format!("{admin}/readyz"), None).await;
    assert_eq!(a.status, 200, "{}", a.text());
    let a = get(&format!("{admin}/metrics"), None).await;
    assert_eq!(a.status, 200);
    assert!(a.content_type.starts_with("application/openmetrics-text"));
    let text = a.text();
    assert!(text.contains("ndxp_node_exchanges_total"), "{text}");
    assert!(text.contains("ndxp.access_denied"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_alone_drives_the_consumer_node() {
    let net = Network::start(Options::default()).await;
    let curl = |client: &'static str, url: String| async move {
        tokio::task::spawn_blocking(move || {
            ndxp_test_support::tool::run_tool(
                "curl",
                &[
                    "-sS",
                    "--max-time",
                    "30",
                    "-D",
                    "-",
                    "-H",
                    &format!("NDXP-Client: {client}"),
                    "-w",
                    "\nstatus=%{http_code}\n",
                    &url,
                ],
            )
        })
        .await
        .unwrap()
    };

    let (ok, out) = curl(CLIENT, net.url(CITIZEN, "/persons/001099012345")).await;
    assert!(ok, "{out}");
    assert!(out.contains("status=200"), "{out}");
    assert!(out.contains("Nguyễn Văn A"), "{out}");
    let lower = out.to_ascii_lowercase();
    assert!(lower.contains("ndxp-id: "), "{out}");
    assert!(lower.contains("ndxp-request-hash: sha-256=:"), "{out}");

    let (ok, out) = curl(NOT_ON_NODE, net.url(CITIZEN, "/persons/001099012345")).await;
    assert!(ok, "{out}");
    assert!(out.contains("status=403"), "{out}");
    assert!(
        out.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{out}"
    );
    assert!(out.contains("\"code\":\"ndxp.client_unknown\""), "{out}");
    assert!(!out.contains("Nguyễn"), "{out}");
}
