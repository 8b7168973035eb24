//! Scale-out (docs/scale-out.md), with the real processes: this test runs
//! `scripts/scale-out.sh`, which starts two `ndxp-gateway` processes and two
//! `ndxp-node` processes of one provider member on one PostgreSQL database
//! behind HAProxy, and a consumer node that calls the provider through the
//! balancer. Under load through both balancers it checks that both gateway
//! processes and both provider processes served, SIGKILLs one of each, and
//! checks that the survivors carry on and that every exchange whose client
//! got an answer is in the shared message logs, whose chains verify.
//!
//! Needs PostgreSQL (`NDXP_TEST_POSTGRES_URL`), `haproxy` and `psql`, which
//! `.ci/run` installs; without them the test fails and says so. It needs the
//! `ndxp-node` and `citizen-registry` binaries beside `ndxp-gateway`, which a
//! workspace test run builds.
#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndxp_audit::archive::{export_range, ExportRequest, Range};
use ndxp_audit::log::{LogOptions, MessageLog, SqlMessageLog};
use ndxp_test_support::edge::header_text;
use serde_json::Value;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/scale-out.sh");
/// Ports the script uses from its base.
const PORTS: u16 = 63;

fn require_tool(program: &str, arg: &str) {
    let ok = Command::new(program)
        .arg(arg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "`{program}` is not installed or does not run; the scale-out test needs it \
         (bash .ci/run installs it)"
    );
}

/// A base port from which `PORTS` ports are free, below the ephemeral range.
fn free_port_base() -> u16 {
    let seed = std::process::id() as u16;
    for attempt in 0..200u16 {
        let base = 10_000 + (seed.wrapping_add(attempt.wrapping_mul(397)) % 200) * 100;
        let free =
            (base..base + PORTS).all(|p| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return base;
        }
    }
    panic!("no free range of {PORTS} ports between 10000 and 30000");
}

/// The running script; dropping it stops it (SIGTERM: it stops what it
/// started and drops its schemas), and kills its process group if it does
/// not stop in time.
struct Script {
    child: Child,
    output: PathBuf,
}

impl Script {
    fn output(&self) -> String {
        std::fs::read_to_string(&self.output).unwrap_or_default()
    }

    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        signal("-TERM", &self.child.id().to_string());
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        signal("-KILL", &format!("-{}", self.child.id()));
        let _ = self.child.wait();
        None
    }
}

impl Drop for Script {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop();
        }
    }
}

fn signal(sig: &str, target: &str) {
    let _ = Command::new("kill")
        .args([sig, "--", target])
        .stderr(Stdio::null())
        .status();
}

/// Every transaction id in a message log, per writer.
async fn logged(url: &str) -> HashMap<String, HashSet<String>> {
    let log = SqlMessageLog::open(url, "scale-out-test-reader", &LogOptions::default())
        .await
        .unwrap();
    let mut out = HashMap::new();
    for w in log.writers().await.unwrap() {
        let head = log.head(&w).await.unwrap();
        let ids = log
            .read(&w, 1, head.seq)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.exchange.transaction_id.to_string())
            .collect();
        out.insert(w, ids);
    }
    log.close().await;
    out
}

fn run_ok(program: &Path, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{} {} failed: {text}",
        program.display(),
        args.join(" ")
    );
    text
}

/// Answers of one kind of call: the transaction ids of the 200s, and when
/// each came.
#[derive(Default)]
struct Answers {
    ok: Vec<(Instant, String)>,
    failed: Vec<(Instant, String)>,
}

/// Calls `url` from `tasks` tasks until `until`, recording the answers.
fn load(
    http: &reqwest::Client,
    url: String,
    headers: Vec<(&'static str, String)>,
    tasks: usize,
    until: Instant,
    into: Arc<Mutex<Answers>>,
) -> Vec<tokio::task::JoinHandle<()>> {
    (0..tasks)
        .map(|_| {
            let (http, url, headers, into) =
                (http.clone(), url.clone(), headers.clone(), into.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    let mut req = http.get(&url);
                    for (k, v) in &headers {
                        req = req.header(*k, v);
                    }
                    let outcome = match req.send().await {
                        Ok(r) => {
                            let status = r.status();
                            let id = header_text(r.headers(), "ndxp-id");
                            // Only a complete answer counts as answered.
                            match (r.bytes().await, id) {
                                (Ok(_), Some(id)) if status == 200 => Ok(id),
                                (_, id) => Err(format!("HTTP {status} {id:?}")),
                            }
                        }
                        Err(e) => Err(e.to_string()),
                    };
                    let mut a = into.lock().unwrap();
                    match outcome {
                        Ok(id) => a.ok.push((Instant::now(), id)),
                        Err(e) => a.failed.push((Instant::now(), e)),
                    }
                }
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_and_two_provider_nodes_share_postgres_and_survive_a_sigkill() {
    let pg = std::env::var("NDXP_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "NDXP_TEST_POSTGRES_URL is not set; the scale-out test needs PostgreSQL \
             (bash .ci/run starts it and sets the variable)"
        )
    });
    require_tool("haproxy", "-v");
    require_tool("psql", "--version");
    let bin = Path::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
        .parent()
        .unwrap()
        .to_path_buf();
    for b in ["ndxp-node", "citizen-registry"] {
        assert!(
            bin.join(b).exists(),
            "{} is missing: build the workspace's binaries first \
             (cargo build --workspace --bins; cargo xtask ci does)",
            bin.join(b).display()
        );
    }

    // Set up with the script, as an operator would.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let output = tmp.path().join("script.out");
    let out_file = std::fs::File::create(&output).unwrap();
    let child = Command::new("bash")
        .arg(SCRIPT)
        .arg("--dir")
        .arg(&dir)
        .arg("--bin")
        .arg(&bin)
        .args(["--pg-url", &pg])
        .args(["--port-base", &free_port_base().to_string()])
        .stdin(Stdio::null())
        .stdout(out_file.try_clone().unwrap())
        .stderr(out_file)
        .process_group(0)
        .spawn()
        .unwrap();
    let mut script = Script { child, output };
    let state_file = dir.join("scale-out.json");
    let deadline = Instant::now() + Duration::from_secs(120);
    while !state_file.exists() {
        if let Ok(Some(status)) = script.child.try_wait() {
            panic!("the script stopped ({status}):\n{}", script.output());
        }
        assert!(
            Instant::now() < deadline,
            "the script did not finish setting up:\n{}",
            script.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let s: Value = serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
    let text = |k: &str| s[k].as_str().unwrap().to_owned();
    let pid = |k: &str| s["pids"][k].as_u64().unwrap().to_string();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let token_at = |base: String| {
        let http = http.clone();
        let (id, secret) = (text("client_id"), text("client_secret"));
        async move {
            let v: Value = http
                .post(format!("{base}/oauth2/token"))
                .basic_auth(id, Some(secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v["access_token"].as_str().unwrap().to_owned()
        }
    };
    let service_path = format!("{}{}", text("service"), text("sample_path"));

    // A token issued by one gateway process is accepted by the other: both
    // sign and verify with the platform key, and read the credentials from
    // the shared registry.
    let direct: Vec<String> = s["gateway_urls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u.as_str().unwrap().to_owned())
        .collect();
    for (issuer, user) in [(0, 1), (1, 0)] {
        let token = token_at(direct[issuer].clone()).await;
        let r = http
            .get(format!("{}/{service_path}", direct[user]))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "a token of gateway process {issuer} at process {user}: {}",
            r.text().await.unwrap_or_default()
        );
    }

    // Load through both balancers.
    let token = token_at(text("gateway_url")).await;
    let gateway_answers = Arc::new(Mutex::new(Answers::default()));
    let node_answers = Arc::new(Mutex::new(Answers::default()));
    let until = Instant::now() + Duration::from_secs(6);
    let mut tasks = load(
        &http,
        format!("{}/{service_path}", text("gateway_url")),
        vec![("authorization", format!("Bearer {token}"))],
        6,
        until,
        gateway_answers.clone(),
    );
    tasks.extend(load(
        &http,
        format!("{}/r1/{service_path}", text("consumer_url")),
        vec![("ndxp-client", text("client"))],
        6,
        until,
        node_answers.clone(),
    ));

    // Both processes of each pair serve: each has a chain with records.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let writers_with_records = |logs: &HashMap<String, HashSet<String>>, prefix: &str| {
        logs.iter()
            .filter(|(w, ids)| w.starts_with(prefix) && !ids.is_empty())
            .count()
    };
    let gw_before = logged(&text("gateway_log_url")).await;
    let node_before = logged(&text("node_log_url")).await;
    assert_eq!(
        writers_with_records(&gw_before, "gateway/"),
        2,
        "both gateway processes should have served: {:?}",
        gw_before.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        writers_with_records(&node_before, "VN/GOV/000.00.00.H29/node-h29/"),
        2,
        "both provider node processes should have served: {:?}",
        node_before.keys().collect::<Vec<_>>()
    );

    // SIGKILL one process of each pair in the middle of the load.
    signal("-KILL", &pid("gateway-a"));
    signal("-KILL", &pid("node-h29-a"));
    let killed = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }

    // The survivors carry on: answers kept coming after the kill, and once
    // the balancer has noticed (health checks every 500 ms), every call
    // succeeds.
    let settled = killed + Duration::from_secs(2);
    for (what, answers) in [("gateway", &gateway_answers), ("node", &node_answers)] {
        let a = answers.lock().unwrap();
        let after = a.ok.iter().filter(|(t, _)| *t > settled).count();
        assert!(
            after > 0,
            "no {what} call was answered after the kill; failures: {:?}",
            a.failed.iter().map(|(_, e)| e).take(5).collect::<Vec<_>>()
        );
        let late_failures: Vec<_> = a.failed.iter().filter(|(t, _)| *t > settled).collect();
        assert!(
            late_failures.is_empty(),
            "{what} calls failed well after the kill: {late_failures:?}"
        );
    }
    for _ in 0..10 {
        let r = http
            .get(format!("{}/{service_path}", text("gateway_url")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "gateway after the kill");
        let id = r.headers()["ndxp-id"].to_str().unwrap().to_owned();
        gateway_answers
            .lock()
            .unwrap()
            .ok
            .push((Instant::now(), id));
        let r = http
            .get(format!("{}/r1/{service_path}", text("consumer_url")))
            .header("ndxp-client", text("client"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "consumer node after the kill");
        let id = r.headers()["ndxp-id"].to_str().unwrap().to_owned();
        node_answers.lock().unwrap().ok.push((Instant::now(), id));
    }

    // No record lost: every answered exchange is in the shared log.
    for (what, url, answers) in [
        ("gateway", text("gateway_log_url"), &gateway_answers),
        ("provider node", text("node_log_url"), &node_answers),
    ] {
        let logs = logged(&url).await;
        let all: HashSet<&String> = logs.values().flatten().collect();
        let a = answers.lock().unwrap();
        assert!(a.ok.len() > 20, "too few {what} answers: {}", a.ok.len());
        for (_, id) in &a.ok {
            assert!(
                all.contains(id),
                "answered exchange {id} is missing from the shared {what} log"
            );
        }
    }

    // The chains verify: the provider's log with `ndxp-node log archive` of
    // the surviving process (it archives every chain of the database), the
    // gateway log through ndxp-audit's export; both with `ndxp-node log
    // verify` against the platform CA.
    let node_bin = bin.join("ndxp-node");
    let ca = text("ca");
    let from = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let to = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let provider_b = s["provider_configs"][1].as_str().unwrap().to_owned();
    let node_archive = tmp.path().join("node-h29.ndxplog");
    run_ok(
        &node_bin,
        &[
            "log",
            "archive",
            "--config",
            &provider_b,
            "--from",
            &from,
            "--to",
            &to,
            "--out",
            node_archive.to_str().unwrap(),
        ],
    );
    let log = SqlMessageLog::open(
        &text("gateway_log_url"),
        "scale-out-test-reader",
        &LogOptions::default(),
    )
    .await
    .unwrap();
    let request = ExportRequest {
        range: Range::Time {
            from: chrono::Utc::now() - chrono::Duration::hours(1),
            to: chrono::Utc::now() + chrono::Duration::hours(1),
        },
        certificates: Vec::new(),
    };
    let gateway_archive = tmp.path().join("gateway.ndxplog");
    export_range(&log, &request, None)
        .await
        .unwrap()
        .write_to(&gateway_archive)
        .unwrap();
    log.close().await;
    for archive in [&node_archive, &gateway_archive] {
        let verdict = run_ok(
            &node_bin,
            &["log", "verify", archive.to_str().unwrap(), "--ca", &ca],
        );
        assert!(verdict.contains(": valid"), "{verdict}");
        assert!(
            verdict.contains("in 2 chains"),
            "both processes' chains: {verdict}"
        );
    }

    // Stopping the script stops the rest and drops its schemas.
    let status = script.stop();
    assert!(status.is_some(), "the script did not stop on SIGTERM");
    let out = script.output();
    assert!(out.contains("dropped the schemas"), "{out}");
}
