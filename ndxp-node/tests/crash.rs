//! Crash safety of the message log through a node pair (docs/design.md §8): load
//! goes through the consumer's node, running as its own `ndxp-node serve`
//! process; it is SIGKILLed in the middle, restarted, and then every
//! exchange whose client got an answer must be in both nodes' logs, and an
//! archive of the consumer's log must verify with `ndxp-node log verify`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ndxp_test_support::edge::header_text;
use ndxp_test_support::tool::succeeds;
use support::net::{Network, NodeSetup, Options, CITIZEN, CLIENT};

fn spawn_node(node: &NodeSetup) -> Child {
    Command::new(env!("CARGO_BIN_EXE_ndxp-node"))
        .args(["serve", "--config"])
        .arg(&node.config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Every transaction id in a node's message log.
async fn logged(node: &NodeSetup) -> HashSet<String> {
    let records = node.log_records("crash-test-reader").await;
    records
        .iter()
        .map(|r| r.exchange.transaction_id.to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answered_exchange_survives_a_sigkill_of_the_consumer_node() {
    let mut net = Network::prepare(Options::default()).await;
    net.start_node(true).await;
    net.wait_ready(true).await;
    let mut consumer = spawn_node(&net.consumer);
    net.wait_ready(false).await;

    // Load from 16 clients; remember the id of every answered exchange.
    let answered: Arc<Mutex<Vec<String>>> = Arc::default();
    let url = net.url(CITIZEN, "/persons/001099012345");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (http, url, answered) = (http.clone(), url.clone(), answered.clone());
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                if let Ok(r) = http.get(&url).header("NDXP-Client", CLIENT).send().await {
                    let status = r.status();
                    let id = header_text(r.headers(), "ndxp-id");
                    // Only a complete answer counts as acknowledged.
                    if r.bytes().await.is_ok() && status == 200 {
                        if let Some(id) = id {
                            answered.lock().unwrap().push(id);
                        }
                    }
                } else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    // Kill the consumer's node in the middle of the load.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let before_kill = answered.lock().unwrap().len();
    consumer.kill().unwrap();
    consumer.wait().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // Restart it; the load goes on against the new process.
    let mut consumer = spawn_node(&net.consumer);
    net.wait_ready(false).await;
    for t in tasks {
        t.await.unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(before_kill > 0, "no exchange was answered before the kill");
    assert!(
        answered.len() > before_kill,
        "no exchange was answered after the restart"
    );

    // Every answered exchange is in both logs.
    let consumer_log = logged(&net.consumer).await;
    let provider_log = logged(&net.provider).await;
    for id in &answered {
        assert!(
            consumer_log.contains(id),
            "answered exchange {id} is missing from the consumer's log"
        );
        assert!(
            provider_log.contains(id),
            "answered exchange {id} is missing from the provider's log"
        );
    }

    // The consumer's log, two chains (before and after the crash), verifies.
    let archive = net.tmp.path().join("consumer.ndxplog");
    let from = (chrono::Utc::now() - chrono::Duration::hours(1)).to_rfc3339();
    let to = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let mut archive_cmd = Command::new(env!("CARGO_BIN_EXE_ndxp-node"));
    archive_cmd.args(["log", "archive", "--config"]);
    archive_cmd.arg(&net.consumer.config_path);
    archive_cmd
        .args(["--from", &from, "--to", &to, "--out"])
        .arg(&archive);
    succeeds(&mut archive_cmd, "log archive");
    let ca = net.tmp.path().join("ca.pem");
    std::fs::write(
        &ca,
        ndxp_sign::cert::write_pem_chain(std::slice::from_ref(net.pki.root_cert())).unwrap(),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ndxp-node"))
        .args(["log", "verify"])
        .arg(&archive)
        .arg("--ca")
        .arg(&ca)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "log verify failed: {text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("valid"), "{text}");
    consumer.kill().unwrap();
    let _ = consumer.wait();
}
