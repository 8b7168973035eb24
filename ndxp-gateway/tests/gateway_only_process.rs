//! The real binary as a gateway-only process (`[management] enabled =
//! false`): everything is set up with command lines against the shared
//! registry, and the running gateway picks each change up by polling.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use ndxp_test_support::tool::succeeds;

use gateway_support::*;

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

#[tokio::test]
async fn a_gateway_only_process_serves_what_the_command_line_sets_up() {
    // The in-process roles of the harness provide the PKI, keys and the
    // registry; the binary below shares the registry file.
    let env = Env::start().await;
    let (gw_port, admin_port) = (free_port(), free_port());
    let config = env.dir.path().join("gateway-only.toml");
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
        .replace("gateway-log.db", "gateway-only-log.db");
    assert!(text.contains("enabled = false"));
    std::fs::write(&config, text).unwrap();
    let mut serve = Serve(
        Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
            .args(["serve", "--config"])
            .arg(&config)
            .env_remove("NDXP_LOG")
            .stdout(Stdio::null())
            // A pipe, as under systemd or `> file`: the log must be plain text.
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut stderr = serve.0.stderr.take().unwrap();
    let log = std::thread::spawn(move || {
        let mut text = Vec::new();
        std::io::Read::read_to_end(&mut stderr, &mut text).unwrap();
        String::from_utf8_lossy(&text).into_owned()
    });
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..200 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .send()
            .await
        {
            up = r.status() == 200;
            if up {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the gateway-only process became ready");

    let gw = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"));
        command.args(args).arg("--config").arg(&config);
        let out = succeeds(command.env("USER", "tester"), &format!("{args:?}"));
        String::from_utf8(out.stdout).unwrap()
    };
    gw(&["members", "add", "--id", PROVIDER, "--name", "provider"]);
    gw(&["members", "add", "--id", CONSUMER, "--name", "consumer"]);
    gw(&["subsystems", "add", "--id", PROVIDER_SUB]);
    gw(&["subsystems", "add", "--id", CONSUMER_SUB]);
    let url = backend(plain("only")).await;
    gw(&[
        "gateway",
        "services",
        "register",
        "--id",
        SERVICE_V1,
        "--backend",
        &url,
        "--description",
        "Citizen lookup",
    ]);
    gw(&["gateway", "services", "publish", "--id", SERVICE_V1]);
    let sub = requested_id(&gw(&[&["gateway"][..], &REQUEST_V1].concat()));
    gw(&["gateway", "subscriptions", "approve", "--id", &sub]);
    let out = gw(&["gateway", "credentials", "create", "--client", CONSUMER_SUB]);
    let field = |k: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap()
            .to_string()
    };
    let (id, secret) = (field("client_id"), field("client_secret"));

    let base = format!("http://127.0.0.1:{gw_port}");
    let mut answered = None;
    for _ in 0..100 {
        let r = http
            .post(format!("{base}/oauth2/token"))
            .basic_auth(&id, Some(&secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let v: serde_json::Value = r.json().await.unwrap();
            let token = v["access_token"].as_str().unwrap().to_string();
            let r = http
                .get(format!("{base}/{SERVICE_V1}/persons/001"))
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            if r.status() == 200 {
                answered = Some(r.headers()["x-backend"].to_str().unwrap().to_string());
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(answered.as_deref(), Some("only"));
    drop(serve);
    let log = log.join().unwrap();
    assert!(
        log.contains("INFO"),
        "the gateway logged to the pipe: {log}"
    );
    assert!(
        !log.contains("\x1b["),
        "a log written to a pipe has no ANSI colour codes: {log}"
    );
    env.stop().await;
}
