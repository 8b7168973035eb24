//! The serve loop end to end on loopback: slow headers, idle keep-alive
//! connections (HTTP/1 and HTTP/2), trickling bodies, connection limits in
//! all and per address, header count on both protocols, drain on shutdown.
#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ndxp_edge::serve::{BodyTimeout, Edge, EdgeStats, Plain, RequestBody};
use ndxp_edge::EdgeSettings;
use ndxp_test_support::slow::{assert_cut, trickle_tcp, ENDLESS_HEADER};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::oneshot;

/// `/` answers `ok`; `/slow` after 1.5 s; `/sleep` after 5 s; `/body`
/// reads the body and answers 408 when it timed out.
async fn handle(
    req: http::Request<RequestBody>,
) -> Result<http::Response<Full<Bytes>>, Infallible> {
    let text = match req.uri().path() {
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            "slow ok".to_string()
        }
        "/sleep" => {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "slept".to_string()
        }
        "/body" => match req.into_body().collect().await {
            Ok(b) => format!("{} bytes", b.to_bytes().len()),
            Err(e) if e.downcast_ref::<BodyTimeout>().is_some() => {
                let mut r = http::Response::new(Full::new(Bytes::from(format!("{e}\n"))));
                *r.status_mut() = http::StatusCode::REQUEST_TIMEOUT;
                return Ok(r);
            }
            Err(e) => format!("other error: {e}"),
        },
        _ => "ok".to_string(),
    };
    Ok(http::Response::new(Full::new(Bytes::from(text))))
}

struct Server {
    addr: SocketAddr,
    stats: EdgeStats,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(settings: EdgeSettings) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let edge = Edge::new("test port", &settings);
        let stats = edge.stats();
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(
            edge.serve(listener, Plain, |_| service_fn(handle), async move {
                let _ = rx.await;
            }),
        );
        Server {
            addr,
            stats,
            stop: Some(tx),
            task,
        }
    }

    fn stop(&mut self) {
        let _ = self.stop.take().unwrap().send(());
    }
}

fn settings() -> EdgeSettings {
    EdgeSettings {
        header_timeout_secs: 2,
        ..EdgeSettings::default()
    }
}

/// One HTTP/1.1 request on `stream`; returns the response head and body
/// text once `Content-Length` bytes of body arrived.
async fn request(stream: &mut TcpStream, path: &str) -> String {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: ndxp.test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap();
        assert!(
            n > 0,
            "the server closed before answering: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= len {
                return text;
            }
        }
    }
}

/// Waits up to `limit` for the server to close `stream`; returns how long
/// it took, or `None`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(limit.saturating_sub(start.elapsed()), stream.read(&mut buf))
            .await
        {
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

async fn get_ok(addr: SocketAddr) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let answer = request(&mut s, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn the_default_header_timeout_is_10_s_and_the_table_refuses_unknown_keys() {
    let d = EdgeSettings::default();
    assert_eq!(d.header_timeout_secs, 10);
    assert!(d.check().is_ok());
    let parsed: EdgeSettings = toml::from_str("").unwrap();
    assert_eq!(parsed, d);
    let parsed: EdgeSettings = toml::from_str("idle_timeout_secs = 5").unwrap();
    assert_eq!(parsed.idle_timeout_secs, 5);
    assert_eq!(parsed.header_timeout_secs, 10);
    let err = toml::from_str::<EdgeSettings>("header_timeout = 5").unwrap_err();
    assert!(err.to_string().contains("header_timeout"), "{err}");
    let zero = EdgeSettings {
        max_connections: 0,
        ..EdgeSettings::default()
    };
    assert!(zero
        .check()
        .unwrap_err()
        .to_string()
        .contains("edge.max_connections"));
    let small = EdgeSettings {
        max_header_bytes: 100,
        ..EdgeSettings::default()
    };
    assert!(small
        .check()
        .unwrap_err()
        .to_string()
        .contains("edge.max_header_bytes"));
}

#[tokio::test]
async fn a_client_sending_one_header_byte_a_second_is_cut_off_at_the_header_timeout() {
    let server = Server::start(settings()).await;
    let open = trickle_tcp(server.addr, ENDLESS_HEADER).await;
    assert_cut("test port", open, Duration::from_secs(2));
    // A client that sends nothing at all is closed too.
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let open = closed_within(&mut silent, Duration::from_secs(10)).await;
    assert!(open.is_some_and(|d| d < Duration::from_secs(6)), "{open:?}");
    get_ok(server.addr).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed_after_the_idle_timeout_on_http1_and_http2() {
    // The header time-out is long, so only the idle time-out can close.
    let server = Server::start(EdgeSettings {
        header_timeout_secs: 30,
        idle_timeout_secs: 2,
        ..EdgeSettings::default()
    })
    .await;

    let mut h1 = TcpStream::connect(server.addr).await.unwrap();
    let answer = request(&mut h1, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Kept alive: a second request on the same connection is answered.
    let answer = request(&mut h1, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let open = closed_within(&mut h1, Duration::from_secs(15)).await;
    assert!(
        open.is_some_and(|d| d >= Duration::from_millis(1500) && d < Duration::from_secs(8)),
        "HTTP/1 idle connection closed after {open:?}, idle time-out 2 s"
    );

    // HTTP/2 with prior knowledge.
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let req = http::Request::get(format!("http://{}/", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"ok");
    let start = Instant::now();
    tokio::time::timeout(Duration::from_secs(15), conn)
        .await
        .expect("the idle HTTP/2 connection was still open after 15 s")
        .unwrap()
        .ok();
    assert!(
        start.elapsed() < Duration::from_secs(8),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_trickling_body_is_cut_after_the_body_timeout() {
    let server = Server::start(EdgeSettings {
        body_timeout_secs: 2,
        ..EdgeSettings::default()
    })
    .await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    wr.write_all(b"POST /body HTTP/1.1\r\nHost: ndxp.test\r\nContent-Length: 100\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if wr.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&got).contains("within") {
        let n = tokio::time::timeout(Duration::from_secs(20), rd.read(&mut buf))
            .await
            .expect("an answer within 20 s")
            .unwrap();
        assert!(
            n > 0,
            "closed without an answer: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1500) && elapsed < Duration::from_secs(8),
        "cut after {elapsed:?}, body time-out 2 s"
    );
    writer.abort();
    // A body that arrives in time is read in full.
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"POST /body HTTP/1.1\r\nHost: ndxp.test\r\nContent-Length: 3\r\n\r\nabc")
        .await
        .unwrap();
    let answer = read_response(&mut s).await;
    assert!(answer.ends_with("3 bytes"), "{answer}");
}

async fn connect_from(source: &str, addr: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    socket.connect(addr).await.unwrap()
}

async fn wait_open(stats: &EdgeStats, n: usize) {
    for _ in 0..100 {
        if stats.open_connections() == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "{} connections open, expected {n}",
        stats.open_connections()
    );
}

#[tokio::test]
async fn connections_over_the_per_address_limit_are_closed_while_other_clients_are_answered() {
    let server = Server::start(EdgeSettings {
        header_timeout_secs: 30,
        max_connections_per_ip: 3,
        ..EdgeSettings::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from("127.0.0.1", server.addr).await);
    }
    wait_open(&server.stats, 3).await;
    let mut extra = connect_from("127.0.0.1", server.addr).await;
    let closed = closed_within(&mut extra, Duration::from_secs(5)).await;
    assert!(
        closed.is_some_and(|d| d < Duration::from_secs(2)),
        "{closed:?}"
    );
    assert_eq!(server.stats.refused_connections(), 1);
    // Another address is still served at once.
    let mut other = connect_from("127.0.0.2", server.addr).await;
    let answer = request(&mut other, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The held connections were not disturbed: they are still served.
    let answer = request(&mut held[0], "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // Once one closes, the address gets a place again.
    held.pop();
    drop(other);
    wait_open(&server.stats, 2).await;
    let mut again = connect_from("127.0.0.1", server.addr).await;
    let answer = request(&mut again, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn connections_over_the_listener_limit_are_closed_and_a_freed_place_is_served() {
    let server = Server::start(EdgeSettings {
        header_timeout_secs: 30,
        max_connections: 4,
        ..EdgeSettings::default()
    })
    .await;
    let mut held = Vec::new();
    for i in 0..4 {
        let source = if i % 2 == 0 { "127.0.0.1" } else { "127.0.0.3" };
        held.push(connect_from(source, server.addr).await);
    }
    wait_open(&server.stats, 4).await;
    for source in ["127.0.0.1", "127.0.0.4"] {
        let mut extra = connect_from(source, server.addr).await;
        let closed = closed_within(&mut extra, Duration::from_secs(5)).await;
        assert!(
            closed.is_some_and(|d| d < Duration::from_secs(2)),
            "{closed:?}"
        );
    }
    assert_eq!(server.stats.refused_connections(), 2);
    // The held connections are answered within bounds meanwhile.
    let answer = request(&mut held[1], "/").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    held.truncate(3);
    wait_open(&server.stats, 3).await;
    get_ok(server.addr).await;
}

#[tokio::test]
async fn too_many_header_fields_are_refused_with_431_on_http1_and_http2() {
    let server = Server::start(EdgeSettings {
        max_headers: 20,
        ..settings()
    })
    .await;
    let mut many = String::from("GET / HTTP/1.1\r\nHost: ndxp.test\r\n");
    for i in 0..30 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(many.as_bytes()).await.unwrap();
    let answer = read_response(&mut s).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = http::Request::get(format!("http://{}/", server.addr));
    for i in 0..30 {
        req = req.header(format!("x-h{i}"), "v");
    }
    let resp = send
        .send_request(req.body(Empty::<Bytes>::new()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 431);
    let req = http::Request::get(format!("http://{}/", server.addr))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn shutdown_lets_requests_in_flight_finish_and_stops_accepting() {
    let mut server = Server::start(settings()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: ndxp.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.stop();
    let answer = read_response(&mut s).await;
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("slow ok"),
        "{answer}"
    );
    tokio::time::timeout(Duration::from_secs(5), &mut server.task)
        .await
        .expect("the serve loop ends once the request finished")
        .unwrap();
    assert!(
        TcpStream::connect(server.addr).await.is_err(),
        "still accepting"
    );
}

#[tokio::test]
async fn requests_still_running_after_the_drain_timeout_are_cut() {
    let mut server = Server::start(EdgeSettings {
        drain_timeout_secs: 1,
        ..settings()
    })
    .await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    s.write_all(b"GET /sleep HTTP/1.1\r\nHost: ndxp.test\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    server.stop();
    tokio::time::timeout(Duration::from_secs(4), &mut server.task)
        .await
        .expect("the serve loop ends after the drain time-out")
        .unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(800),
        "{:?}",
        start.elapsed()
    );
    let closed = closed_within(&mut s, Duration::from_secs(3)).await;
    assert!(closed.is_some(), "the cut connection is closed");
}
