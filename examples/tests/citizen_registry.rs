//! The sample backend over real HTTP: the library's `serve` and the
//! `citizen-registry` binary.

#![allow(clippy::unwrap_used)]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ndxp_examples::citizen_registry::{serve, PERSON_IDS};
use serde_json::Value;
use tokio::net::TcpListener;

async fn start() -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<std::io::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, async {
        let _ = rx.await;
    }));
    (base, tx, task)
}

/// `GET base + path` with `http`.
async fn get(http: &reqwest::Client, base: &str, path: &str) -> reqwest::Response {
    http.get(format!("{base}{path}")).send().await.unwrap()
}

/// `GET base + path` with `http`: the JSON body.
async fn get_json(http: &reqwest::Client, base: &str, path: &str) -> Value {
    get(http, base, path).await.json().await.unwrap()
}

/// A free port on 127.0.0.1 for the binary to listen on.
fn free_listen_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("127.0.0.1:{}", listener.local_addr().unwrap().port())
}

/// A blocking client that gives up after two seconds.
fn blocking_client() -> reqwest::blocking::Client {
    let b = reqwest::blocking::Client::builder().timeout(Duration::from_secs(2));
    b.build().unwrap()
}

#[tokio::test]
async fn answers_persons_openapi_and_health() {
    let (base, stop, task) = start().await;
    let http = reqwest::Client::new();

    let r = get(&http, &base, "/persons/001099012345").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let body = r.bytes().await.unwrap();
    assert!((800..=1500).contains(&body.len()), "{} bytes", body.len());
    let person: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(person["id"], "001099012345");
    assert_eq!(person["full_name"], "Nguyễn Văn An");
    assert_eq!(person["permanent_residence"]["province"], "Hà Nội");

    for id in PERSON_IDS {
        let p = get_json(&http, &base, &format!("/persons/{id}")).await;
        assert_eq!(p["id"], id);
    }

    let r = get(&http, &base, "/persons/009999999999").await;
    assert_eq!(r.status(), 404);
    let e: Value = r.json().await.unwrap();
    assert_eq!(e["error"], "person_not_found");
    assert!(e["detail"].as_str().unwrap().contains("009999999999"));
    // A malformed id is not echoed back.
    let r = get(&http, &base, "/persons/%3Cscript%3E").await;
    assert_eq!(r.status(), 404);
    assert!(!r.text().await.unwrap().contains("script"));

    let doc = get_json(&http, &base, "/openapi.json").await;
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/persons/{id}"]["get"]["responses"]["200"].is_object());

    let r = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");

    let r = http
        .delete(format!("{base}/persons/001099012345"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, HEAD");
    let r = http.get(format!("{base}/nothing")).send().await.unwrap();
    assert_eq!(r.status(), 404);

    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .is_err());
}

#[tokio::test]
async fn keeps_connections_alive_and_survives_garbage() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (base, _stop, _task) = start().await;
    let addr = base.trim_start_matches("http://").to_string();

    // Two requests on one connection, both answered.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), s.read_to_string(&mut out))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");

    // Garbage gets a 400 or a closed connection, and the server carries on.
    let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
    s.write_all(b"\x00\x01 not http\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .unwrap();
    let r = reqwest::get(format!("{base}/healthz")).await.unwrap();
    assert_eq!(r.status(), 200);
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_person(http: &reqwest::blocking::Client, listen: &str) -> Value {
    let start = Instant::now();
    loop {
        match http
            .get(format!("http://{listen}/persons/001099012345"))
            .send()
        {
            Ok(r) => break r.json().unwrap(),
            Err(_) if start.elapsed() < Duration::from_secs(20) => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("citizen-registry did not answer: {e}"),
        }
    }
}

#[cfg(unix)]
#[test]
fn the_binary_with_a_runtime_per_thread_serves_and_stops_on_sigterm() {
    let listen = free_listen_address();
    let mut child = Command::new(env!("CARGO_BIN_EXE_citizen-registry"))
        .args(["--listen", &listen, "--threads", "2", "--reuseport"])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let http = blocking_client();
    assert_eq!(wait_for_person(&http, &listen)["id"], "001099012345");
    // Fresh connections land on both threads' listeners; all are answered.
    for _ in 0..20 {
        let fresh = blocking_client();
        let r = fresh
            .get(format!("http://{listen}/healthz"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "citizen-registry did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
}

#[test]
fn the_binary_serves_on_the_given_address() {
    let listen = free_listen_address();
    let _child = Kill(
        Command::new(env!("CARGO_BIN_EXE_citizen-registry"))
            .args(["--listen", &listen, "--threads", "1"])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let http = blocking_client();
    let person = wait_for_person(&http, &listen);
    assert_eq!(person["id"], "001099012345");

    let out = Command::new(env!("CARGO_BIN_EXE_citizen-registry"))
        .args(["--listen", "not-an-address"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}
