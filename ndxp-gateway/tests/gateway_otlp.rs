//! OTLP trace export from a real `ndxp-gateway serve` process to an
//! in-test OTLP/HTTP receiver (`docs/monitoring.md`, "Tracing"): the
//! gateway's span has the caller's trace id and span as parent, the
//! `service.name` of the configuration, the transaction id that its message
//! log records, and the problem code of a refused call; `[telemetry]` set
//! by the environment alone works the same.
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gateway_support::{Env, SERVICE_V1};
use ndxp_audit::log::{LogOptions, SqlMessageLog};
use ndxp_audit::query::TransactionQuery;
use ndxp_core::trace::TraceParent;
use ndxp_test_support::edge::RecordingBackend;
use ndxp_test_support::otlp::Collector;
use serde_json::json;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

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

impl Serve {
    /// SIGTERM, then waits (up to 20 s) for the exit; how long it took.
    fn stop(&mut self) -> Duration {
        let started = Instant::now();
        let pid = self.0.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        while self.0.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(20));
            std::thread::sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }
}

/// A gateway-only process on the harness's registry with `telemetry`
/// appended to its configuration and `env` set; its gateway's base URL
/// and log URL once it is ready.
async fn gateway_process(
    env: &Env,
    telemetry: &str,
    vars: &[(&str, &str)],
) -> (Serve, String, String) {
    let (gw_port, admin_port) = (free_port(), free_port());
    let config = env.dir.path().join("gateway-otlp.toml");
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
        .replace("gateway-log.db", "gateway-otlp-log.db");
    assert!(text.contains("enabled = false"));
    std::fs::write(&config, format!("{text}\n[telemetry]\n{telemetry}\n")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"));
    cmd.args(["serve", "--config"])
        .arg(&config)
        .env_remove("NDXP_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in vars {
        cmd.env(k, v);
    }
    let serve = Serve(cmd.spawn().unwrap());
    let http = reqwest::Client::new();
    let mut up = false;
    for _ in 0..300 {
        if let Ok(r) = http
            .get(format!("http://127.0.0.1:{admin_port}/readyz"))
            .send()
            .await
        {
            if r.status() == 200 {
                up = true;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(up, "the gateway process became ready");
    let log_url = format!(
        "sqlite://{}",
        env.dir.path().join("gateway-otlp-log.db").display()
    );
    (serve, format!("http://127.0.0.1:{gw_port}"), log_url)
}

/// A token from the process's token endpoint (it polls the registry, so
/// the credentials may take a moment to be known).
async fn token(base: &str, id: &str, secret: &str) -> String {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let r = http
            .post(format!("{base}/oauth2/token"))
            .basic_auth(id, Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
            .await
            .unwrap();
        if r.status() == 200 {
            let v: serde_json::Value = r.json().await.unwrap();
            return v["access_token"].as_str().unwrap().to_string();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no token from the gateway process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_exports_its_span_under_the_callers_trace() {
    let collector = Collector::start().await;
    let env = Env::start().await;
    let backend = RecordingBackend::start().await;
    let (provider, consumer) = env.parties().await;
    env.offer(&provider, SERVICE_V1, &backend.url("/base"), json!({}))
        .await;
    env.subscribe(&consumer, &provider, SERVICE_V1).await;
    let (id, secret) = env.credentials(&consumer).await;

    // The endpoint from the environment, the rest from the file.
    let endpoint = collector.endpoint();
    let (mut serve, base, log_url) = gateway_process(
        &env,
        "service_name = \"central-gateway\"\nsample_ratio = 1.0",
        &[("NDXP_TELEMETRY__OTLP_ENDPOINT", &endpoint)],
    )
    .await;
    let token = token(&base, &id, &secret).await;
    let http = reqwest::Client::new();
    let ok = http
        .get(format!("{base}/{SERVICE_V1}/persons/001"))
        .bearer_auth(&token)
        .header("traceparent", format!("00-{TRACE}-{CALLER_SPAN}-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let txid = ok.headers()["ndxp-id"].to_str().unwrap().to_owned();
    // Refused: a bad token, on a trace of its own.
    let refused_trace = "0af7651916cd43dd8448eb211c80319c";
    let refused = http
        .get(format!("{base}/{SERVICE_V1}/persons/001"))
        .bearer_auth("not-a-token")
        .header(
            "traceparent",
            format!("00-{refused_trace}-b7ad6b7169203331-01"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let refused_body: serde_json::Value = refused.json().await.unwrap();

    let took = serve.stop();
    assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    let spans = collector
        .wait_for(Duration::from_secs(10), "two gateway spans", |s| {
            s.len() >= 2
        })
        .await;

    let find = |trace: &str| {
        let found: Vec<_> = spans
            .iter()
            .filter(|s| s.trace_id == trace && s.name == "ndxp gateway")
            .collect();
        assert_eq!(found.len(), 1, "{spans:#?}");
        found[0].clone()
    };
    let g = find(TRACE);
    assert_eq!(g.service_name, "central-gateway");
    assert_eq!(g.parent_span_id, CALLER_SPAN);
    assert_eq!(g.kind, 2);
    assert_eq!(g.attributes["ndxp.transaction_id"], txid);
    assert_eq!(g.attributes["ndxp.service"], SERVICE_V1);
    assert_eq!(g.attributes["http.response.status_code"], "200");
    assert!(!g.attributes.contains_key("ndxp.problem_code"));
    // The backend's parent is the exported span.
    let seen = &backend.exchanges()[0];
    let sent = TraceParent::parse(
        &ndxp_test_support::edge::header_text(&seen.headers, "traceparent").unwrap(),
    )
    .unwrap();
    assert_eq!(sent.trace_id.to_string(), TRACE);
    assert_eq!(sent.parent_id.to_string(), g.span_id);

    // The message log's record of the trace has the span's transaction id.
    let log = SqlMessageLog::open(&log_url, "test-reader", &LogOptions::default())
        .await
        .unwrap();
    let page = log
        .transactions(&TransactionQuery {
            trace_id: Some(TRACE.into()),
            ..TransactionQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(
        page.items[0].transaction_id.to_string(),
        g.attributes["ndxp.transaction_id"]
    );
    log.close().await;

    let r = find(refused_trace);
    assert_eq!(r.parent_span_id, "b7ad6b7169203331");
    assert_eq!(r.attributes["http.response.status_code"], "401");
    assert_eq!(
        r.attributes["ndxp.problem_code"],
        refused_body["code"].as_str().unwrap()
    );
    env.stop().await;
}
