//! OTLP trace export end to end through two `ndxp-node serve` processes
//! and an in-test OTLP/HTTP receiver (`docs/monitoring.md`, "Tracing"):
//! both nodes export their hop's span under the trace id of the caller's
//! `traceparent`, the provider's span is the child of the consumer's, the
//! spans carry the service name and the exchange's attributes; a collector
//! that is down changes nothing for the exchange, and without
//! `[telemetry]` nothing is exported.
#![allow(clippy::unwrap_used)]

mod support;

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ndxp_core::trace::TraceParent;
use ndxp_test_support::otlp::{Collector, ReceivedSpan};
use support::net::{free_port, http, Network, NodeSetup, Options, CITIZEN, CLIENT, SECRET};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

/// A node process, stopped with SIGTERM (as systemd does) when dropped.
struct Serve(Child);

impl Serve {
    /// Starts `node`, its log in `stderr.log` of its directory.
    fn spawn(node: &NodeSetup, env: &[(&str, &str)]) -> Self {
        let log = std::fs::File::create(node.dir.join("stderr.log")).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ndxp-node"));
        cmd.args(["serve", "--config"])
            .arg(&node.config_path)
            .env_remove("NDXP_LOG")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Self(cmd.spawn().unwrap())
    }

    /// SIGTERM, then waits (up to 20 s) for the process to exit; how long
    /// it took.
    fn stop(&mut self) -> Duration {
        let started = Instant::now();
        let pid = self.0.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        while self.0.try_wait().unwrap().is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the node did not stop within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        started.elapsed()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn add_telemetry(node: &NodeSetup, table: &str) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&node.config_path)
        .unwrap();
    write!(f, "\n[telemetry]\n{table}\n").unwrap();
}

/// Starts both nodes as processes, the provider with `provider_env`, the
/// consumer with `consumer_env`.
async fn serve_both(
    net: &Network,
    provider_env: &[(&str, &str)],
    consumer_env: &[(&str, &str)],
) -> (Serve, Serve) {
    let provider = Serve::spawn(&net.provider, provider_env);
    let consumer = Serve::spawn(&net.consumer, consumer_env);
    net.wait_ready(true).await;
    net.wait_ready(false).await;
    (provider, consumer)
}

/// Calls `service` with `headers`; the answer's status, NDXP-Id and the
/// `traceparent` the backend saw (when it was reached).
async fn call(
    net: &Network,
    service: &str,
    headers: &[(&str, &str)],
) -> (u16, String, Option<TraceParent>) {
    let mut req = http()
        .get(net.url(service, "/persons/001099012345"))
        .header("NDXP-Client", CLIENT);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let id = r.headers()["ndxp-id"].to_str().unwrap().to_owned();
    let body: serde_json::Value = r.json().await.unwrap_or_default();
    let seen = body["seen_traceparent"]
        .as_str()
        .and_then(TraceParent::parse);
    (status, id, seen)
}

/// The consumer's record of `trace` from its admin query API.
async fn record_of(node: &NodeSetup, trace: &str) -> serde_json::Value {
    let r = http()
        .get(format!(
            "{}/api/v1/transactions?trace_id={trace}",
            node.admin_url()
        ))
        .bearer_auth(node.admin_token())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let page: serde_json::Value = r.json().await.unwrap();
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    items[0].clone()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str, trace: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.name == name && s.trace_id == trace)
        .collect();
    assert_eq!(found.len(), 1, "one {name} span of {trace}: {spans:#?}");
    found[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_nodes_export_their_spans_as_parent_and_child() {
    let collector = Collector::start().await;
    let net = Network::prepare(Options::default()).await;
    // The provider from its file, with a service name and an auth header;
    // the consumer by the environment only, with the default name.
    add_telemetry(
        &net.provider,
        &format!(
            "otlp_endpoint = \"{}\"\nservice_name = \"provider-node\"\nheaders = {{ authorization = \"Bearer collector-token\" }}",
            collector.endpoint()
        ),
    );
    let endpoint = collector.endpoint();
    let (mut provider, mut consumer) =
        serve_both(&net, &[], &[("NDXP_TELEMETRY__OTLP_ENDPOINT", &endpoint)]).await;

    let caller = format!("00-{TRACE}-{CALLER_SPAN}-01");
    let (status, id, seen) = call(&net, CITIZEN, &[("traceparent", &caller)]).await;
    assert_eq!(status, 200);
    let seen = seen.expect("the backend saw a traceparent");
    // A refused call: the problem code is on the spans.
    let refused_trace = "0af7651916cd43dd8448eb211c80319c";
    let (status, refused_id, _) = call(
        &net,
        SECRET,
        &[(
            "traceparent",
            &format!("00-{refused_trace}-b7ad6b7169203331-01"),
        )],
    )
    .await;
    assert_eq!(status, 403);

    let record = record_of(&net.consumer, TRACE).await;
    assert_eq!(record["transaction_id"], id.as_str());

    // SIGTERM: each node sends what it still holds before it exits.
    for p in [&mut consumer, &mut provider] {
        let took = p.stop();
        assert!(took < Duration::from_secs(10), "stopping took {took:?}");
    }
    let spans = collector
        .wait_for(Duration::from_secs(10), "four hop spans", |s| s.len() >= 4)
        .await;

    let c = one(&spans, "ndxp consumer", TRACE);
    let p = one(&spans, "ndxp provider", TRACE);
    assert_eq!(c.service_name, "ndxp-node", "the default service name");
    assert_eq!(p.service_name, "provider-node");
    assert_eq!(
        c.parent_span_id, CALLER_SPAN,
        "the consumer's span is the child of the information system's"
    );
    assert_eq!(
        p.parent_span_id, c.span_id,
        "the provider's span is the child of the consumer's"
    );
    assert_eq!(
        seen.parent_id.to_string(),
        p.span_id,
        "the backend's parent is the provider's exported span"
    );
    for s in [c, p] {
        assert_eq!(s.kind, 2, "server span: {s:?}");
        assert_eq!(
            s.attributes["ndxp.transaction_id"],
            record["transaction_id"].as_str().unwrap(),
            "{s:?}"
        );
        assert_eq!(s.attributes["ndxp.client"], CLIENT, "{s:?}");
        assert_eq!(s.attributes["ndxp.service"], CITIZEN, "{s:?}");
        assert_eq!(s.attributes["http.response.status_code"], "200", "{s:?}");
        assert!(!s.attributes.contains_key("ndxp.problem_code"), "{s:?}");
    }

    let c = one(&spans, "ndxp consumer", refused_trace);
    let p = one(&spans, "ndxp provider", refused_trace);
    assert_eq!(p.parent_span_id, c.span_id);
    for s in [c, p] {
        assert_eq!(s.attributes["ndxp.transaction_id"], refused_id);
        assert_eq!(s.attributes["http.response.status_code"], "403", "{s:?}");
        assert_eq!(
            s.attributes["ndxp.problem_code"], "ndxp.access_denied",
            "{s:?}"
        );
    }

    // OTLP/HTTP protobuf, with the configured header on the provider's
    // exports only.
    assert!(collector
        .content_types()
        .iter()
        .all(|t| t == "application/x-protobuf"));
    let auth = collector.authorization();
    assert!(
        auth.iter().any(|a| a == "Bearer collector-token"),
        "{auth:?}"
    );
    assert!(auth.iter().any(String::is_empty), "{auth:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_or_absent_changes_nothing() {
    let collector = Collector::start().await;
    let net = Network::prepare(Options::default()).await;
    // The provider exports to a port nothing listens on; the consumer has
    // no [telemetry] (export off by default), only the standard OTel
    // variable naming a running collector, which does not turn it on.
    let down = format!("http://127.0.0.1:{}", free_port());
    add_telemetry(
        &net.provider,
        &format!("otlp_endpoint = \"{down}\"\ntimeout_ms = 500"),
    );
    // Export at once rather than every 5 s, so that exports fail during
    // the calls.
    let (mut provider, mut consumer) = serve_both(
        &net,
        &[("OTEL_BSP_SCHEDULE_DELAY", "10")],
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", &collector.endpoint())],
    )
    .await;

    let started = Instant::now();
    for i in 0..20 {
        let tp = format!("00-{TRACE}-{:016x}-01", i + 1);
        let (status, _, seen) = call(&net, CITIZEN, &[("traceparent", &tp)]).await;
        assert_eq!(status, 200);
        assert_eq!(seen.unwrap().trace_id.to_string(), TRACE);
    }
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "20 exchanges took {took:?} with the collector down"
    );
    // The provider, whose export fails, logs the exchanges all the same.
    let r = http()
        .get(format!(
            "{}/api/v1/transactions?trace_id={TRACE}",
            net.provider.admin_url()
        ))
        .bearer_auth(net.provider.admin_token())
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page["items"].as_array().unwrap().len(), 20);

    // Stopping waits for the last export a bounded time only.
    let took = provider.stop();
    assert!(took < Duration::from_secs(8), "stopping took {took:?}");
    consumer.stop();
    // Many exports failed; one warning says so (at most one a minute).
    let log = std::fs::read_to_string(net.provider.dir.join("stderr.log")).unwrap();
    assert_eq!(log.matches("OTLP trace export failed").count(), 1, "{log}");
    assert!(
        log.contains(&down),
        "the warning names the collector: {log}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        collector.requests(),
        0,
        "export is off without [telemetry]: {:?}",
        collector.spans()
    );
}
