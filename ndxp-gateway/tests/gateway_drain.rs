//! The real `ndxp-gateway serve` drains on SIGTERM: `/readyz` on the admin
//! port answers `503` with the reason while a request is still in flight,
//! the public port takes no new connection, and once `[edge]
//! drain_timeout_secs` has passed the process cuts what is left and exits
//! 0.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_support::*;

const DRAIN_SECS: u64 = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `GET http://127.0.0.1:{port}{path}` on a fresh connection: status and
/// body, or `None` when nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}

#[tokio::test]
async fn sigterm_turns_readyz_503_while_a_request_is_in_flight_then_the_process_exits_0() {
    let env = Env::start_with_edge(false, &format!("drain_timeout_secs = {DRAIN_SECS}")).await;
    let (gw_port, admin_port) = (free_port(), free_port());
    let config = env.dir.path().join("drain.toml");
    let text = std::fs::read_to_string(&env.config_path)
        .unwrap()
        .replace(
            "[management]\nlisten = \"127.0.0.1:0\"",
            "[management]\nlisten = \"127.0.0.1:0\"\nenabled = false",
        )
        .replace(
            "[admin]\nlisten = \"127.0.0.1:0\"",
            &format!("[admin]\nlisten = \"127.0.0.1:{admin_port}\""),
        )
        .replace(
            "[gateway]\nlisten = \"127.0.0.1:0\"",
            &format!("[gateway]\nlisten = \"127.0.0.1:{gw_port}\""),
        )
        .replace("gateway-log.db", "drain-log.db");
    assert!(text.contains(&format!("drain_timeout_secs = {DRAIN_SECS}")));
    std::fs::write(&config, text).unwrap();
    let mut serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
            .args(["serve", "--config"])
            .arg(&config)
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

    let result = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        while get(admin_port, "/readyz").map(|r| r.0) != Some(200) {
            assert!(Instant::now() < deadline, "the gateway never became ready");
            std::thread::sleep(Duration::from_millis(50));
        }
        // A token request whose form never finishes: in flight.
        let mut slow = std::net::TcpStream::connect(("127.0.0.1", gw_port)).unwrap();
        write!(
            slow,
            "POST /oauth2/token HTTP/1.1\r\nHost: gw\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\ngrant_type="
        )
        .unwrap();
        slow.flush().unwrap();
        std::thread::sleep(Duration::from_millis(300));

        let status = Command::new("kill")
            .args(["-TERM", &serve.0.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let signalled = Instant::now();
        let mut seen = None;
        while signalled.elapsed() < Duration::from_secs(DRAIN_SECS) {
            if let Some((503, body)) = get(admin_port, "/readyz") {
                seen = Some(body);
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let body = seen.expect("/readyz never answered 503 during the drain");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["ready"], false, "{v}");
        assert!(v["reason"].as_str().unwrap().starts_with("draining: "), "{v}");
        assert_eq!(v["checks"][0]["name"], "draining", "{v}");
        // New connections go elsewhere: the public port is closed.
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", gw_port)).is_err(),
            "the gateway port still accepts connections while draining"
        );
        assert!(serve.0.try_wait().unwrap().is_none(), "exited before the drain time-out");

        // The request never finishes: it is cut after the drain time-out
        // and the process exits 0.
        let deadline = signalled + Duration::from_secs(DRAIN_SECS + 20);
        let status = loop {
            if let Some(s) = serve.0.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "the gateway did not exit after the drain");
            std::thread::sleep(Duration::from_millis(50));
        };
        let took = signalled.elapsed();
        drop(slow);
        (status, took)
    })
    .await
    .unwrap();
    let (status, took) = result;
    let log = log.join().unwrap();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(
        took >= Duration::from_secs(DRAIN_SECS - 1),
        "exited after {took:?}, before the drain time-out: {log}"
    );
    assert!(log.contains("draining"), "{log}");
    assert!(
        log.contains("drain_timeout_secs"),
        "the cut is logged: {log}"
    );
    env.stop().await;
}
