//! `ndxp-node diagnose` through the binary, and `/api/v1/diagnose` of the
//! admin port, on the test network of `support/net.rs` (with its TSA):
//! everything ok in the working network; with the TSA down, the provider's
//! node stopped or a backend on the wrong port, the failing check names
//! the broken part and gives a hint.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::net::{http, Network, NodeSetup, Options, DOWN, PROVIDER, PROVIDER_NODE};

/// Runs `ndxp-node diagnose --json` for `node`: exit status and report.
async fn diagnose(node: &NodeSetup) -> (i32, Value) {
    let started = Instant::now();
    let out = support::node(support::args(
        &["diagnose", "--json", "--timeout-secs", "3"],
        &node.config_path,
    ))
    .await;
    let (stdout, stderr) = support::text(&out);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "diagnose took {:?}: {stderr}",
        started.elapsed()
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}{stderr}"));
    (out.status.code().unwrap(), report)
}

/// The names of the failed checks.
fn failed(report: &Value) -> Vec<String> {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] != "ok")
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect()
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report}"))
}

fn handshake_name(net: &Network) -> String {
    format!(
        "TLS handshake with {PROVIDER}/{PROVIDER_NODE} ({})",
        net.provider.address()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_names_the_broken_part() {
    let mut net = Network::start(Options {
        tsa: true,
        ..Options::default()
    })
    .await;

    // The working network: every check of the consumer's node passes.
    let (code, report) = diagnose(&net.consumer).await;
    assert_eq!((code, failed(&report)), (0, vec![]), "{report:#}");
    assert_eq!(report["ok"], true);
    for name in [
        "keys",
        "global configuration",
        "this node in the global configuration",
        "OCSP signing certificate",
        "OCSP authentication certificate",
        "timestamp round trip",
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{report:#}");
    }
    assert_eq!(
        check(&report, &handshake_name(&net))["status"],
        "ok",
        "{report:#}"
    );
    // The provider's node: one of its services has its backend on a port
    // where nothing listens, and that is the one failure.
    let (code, report) = diagnose(&net.provider).await;
    assert_eq!(code, 1);
    assert_eq!(failed(&report), [format!("backend {DOWN}")], "{report:#}");
    let c = check(&report, &format!("backend {DOWN}"));
    assert!(
        c["detail"].as_str().unwrap().contains("cannot connect"),
        "{c}"
    );
    assert!(c["hint"].as_str().unwrap().contains("backend"), "{c}");
    // The text form says the same, one line a check, with the hint.
    let out = support::node(support::args(&["diagnose"], &net.provider.config_path)).await;
    let (stdout, _) = support::text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout.contains(&format!("[FAIL] backend {DOWN}: ")),
        "{stdout}"
    );
    assert!(stdout.contains("hint: "), "{stdout}");
    assert!(stdout.ends_with("checks failed\n"), "{stdout}");

    // The TSA answers 503: the timestamp check fails, and only it.
    let tsa = net.tsa.as_ref().unwrap();
    tsa.set_up(false);
    let (code, report) = diagnose(&net.consumer).await;
    assert_eq!(
        (code, failed(&report)),
        (1, vec!["timestamp round trip".to_owned()]),
        "{report:#}"
    );
    let c = check(&report, "timestamp round trip");
    assert!(c["detail"].as_str().unwrap().contains("503"), "{c}");
    assert!(c["hint"].as_str().unwrap().contains("TSA"), "{c}");
    tsa.set_up(true);

    // The same report on the node's admin API, for its token only.
    let url = format!("{}/api/v1/diagnose", net.consumer.admin_url());
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .get(&url)
        .bearer_auth("ndxpn_not-the-token-of-this-node")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http()
        .get(&url)
        .bearer_auth(net.consumer.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.unwrap();
    assert_eq!(
        (report["ok"].as_bool(), failed(&report)),
        (Some(true), vec![]),
        "{report:#}"
    );

    // The provider's node stops: the handshake with it fails, by name,
    // within the time-out.
    net.stop_node(true);
    let name = handshake_name(&net);
    let mut last = Value::Null;
    for _ in 0..20 {
        let (code, report) = diagnose(&net.consumer).await;
        if code == 1 {
            last = report;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(failed(&last), std::slice::from_ref(&name), "{last:#}");
    let c = check(&last, &name);
    assert!(
        c["detail"].as_str().unwrap().contains("cannot connect"),
        "{c}"
    );
    assert!(c["hint"].as_str().unwrap().contains("peer node"), "{c}");
}
