//! The message log's operational features, end to end on the test network
//! of `support/net.rs`: batch timestamping against the CA's TSA over HTTP
//! and the refusal of new exchanges once it lags too far behind, the
//! transaction query of the admin port, and the log metrics of `/metrics`.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ndxp_audit::log::MessageLog;
use ndxp_audit::timestamp;
use support::net::{
    get, http, Answer, Network, NodeSetup, Options, CITIZEN, CLIENT, CONSUMER, SECRET,
};

/// Every sample of the node's `/metrics`: (name, labels) and value.
async fn metrics(node: &NodeSetup) -> Vec<(String, HashMap<String, String>, f64)> {
    let r = http()
        .get(format!("{}/metrics", node.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (name, labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        let labels = labels
            .split(',')
            .filter(|l| !l.is_empty())
            .map(|l| {
                let (k, v) = l.split_once('=').unwrap();
                (k.to_owned(), v.trim_matches('"').to_owned())
            })
            .collect();
        out.push((name.to_owned(), labels, value.parse().unwrap()));
    }
    out
}

/// The value of the sample `name` whose labels include `labels`.
async fn metric(node: &NodeSetup, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    metrics(node)
        .await
        .into_iter()
        .find(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
}

/// Polls `check` every 100 ms for up to `secs`; panics with `what`.
async fn wait_for<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not after {secs} s");
}

/// Whether every record of the node's log is covered by a time-stamp
/// token, read from the log database the node writes.
async fn all_stamped(node: &NodeSetup) -> bool {
    let log = node.open_log("log-ops-test-reader").await;
    let mut all = true;
    let writers = log.writers().await.unwrap();
    assert!(!writers.is_empty(), "the log of {} is empty", node.name);
    for w in writers {
        let head = log.head(&w).await.unwrap();
        let covered = timestamp::covering(log.pool(), &w, head.seq)
            .await
            .unwrap()
            .is_some();
        all &= covered;
    }
    log.close().await;
    all
}

/// `GET /r1/{CITIZEN}/persons/{n}` as [`CLIENT`].
async fn person(net: &Network, n: u32) -> Answer {
    get(&net.url(CITIZEN, &format!("/persons/{n}")), Some(CLIENT)).await
}

/// Waits until both logs are timestamped to their heads and the
/// consumer's `/metrics` shows no lag.
async fn caught_up(net: &Network) {
    wait_for(10, "both logs timestamped", || async {
        all_stamped(&net.consumer).await && all_stamped(&net.provider).await
    })
    .await;
    wait_for(5, "no timestamp lag in /metrics", || async {
        lag(net).await == (0.0, 0.0)
    })
    .await;
}

/// Timestamping lag on the consumer's node.
async fn lag(net: &Network) -> (f64, f64) {
    let lag = metric(&net.consumer, "ndxp_node_timestamp_lag_seconds", &[]).await;
    let unstamped = metric(&net.consumer, "ndxp_node_unstamped_records", &[]).await;
    (lag.unwrap(), unstamped.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_tsa_stops_the_exchange_after_the_allowed_lag() {
    const MAX_LAG: u64 = 2;
    let started = Utc::now() - chrono::TimeDelta::seconds(1);
    let net = Network::start(Options {
        tsa: true,
        timestamp_interval_secs: Some(1),
        timestamp_max_lag_secs: Some(MAX_LAG),
        ..Options::default()
    })
    .await;
    let tsa = net.tsa.as_ref().unwrap();

    // TSA up: the exchange is logged and stamped on both nodes, and the
    // consumer's metrics say nothing is waiting.
    assert_eq!(person(&net, 1).await.status, 200);
    caught_up(&net).await;
    assert!(tsa.queries() >= 2, "one query per node at least");

    // TSA down: the node keeps serving while the oldest unstamped record is
    // younger than the allowed lag...
    tsa.set_up(false);
    let first_unstamped = Instant::now();
    assert_eq!(person(&net, 2).await.status, 200);
    let mut served = 1;
    let refusal = loop {
        assert!(
            first_unstamped.elapsed() < Duration::from_secs(15),
            "still serving {:?} after the TSA went down",
            first_unstamped.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let a = person(&net, 3).await;
        if a.status == 200 {
            served += 1;
            continue;
        }
        break a;
    };
    let refused_after = first_unstamped.elapsed();
    assert!(
        refused_after >= Duration::from_secs(MAX_LAG),
        "refused {refused_after:?} after the first unstamped record, before the {MAX_LAG} s allowed"
    );
    assert!(served >= 3, "only {served} exchanges served while lagging");
    // ... then refuses with ndxp.internal, saying why.
    let p = refusal.problem(500, "ndxp.internal");
    assert!(
        refusal.ndxp_id.is_some(),
        "the refusal has a transaction id"
    );
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains("not being timestamped") && detail.contains("2 s allowed"),
        "{detail}"
    );
    assert!(
        detail.contains("503"),
        "the TSA's answer is named: {detail}"
    );
    // /metrics (sampled every 0.5 s) shows the lag over the maximum.
    wait_for(2, "the lag over the maximum in /metrics", || async {
        let (lag_secs, unstamped) = lag(&net).await;
        lag_secs > MAX_LAG as f64 && unstamped >= 1.0
    })
    .await;
    let refused = metric(
        &net.consumer,
        "ndxp_node_exchanges_total",
        &[
            ("role", "consumer"),
            ("status", "500"),
            ("code", "ndxp.internal"),
        ],
    )
    .await;
    assert!(refused >= Some(1.0), "{refused:?}");
    // Still refused a moment later: nothing was stamped.
    person(&net, 4).await.problem(500, "ndxp.internal");
    // Meanwhile /readyz says the node is not ready, naming the lag.
    let ready = get(&format!("{}/readyz", net.consumer.admin_url()), None).await;
    assert_eq!(ready.status, 503, "{}", ready.text());
    let v = ready.json();
    let failed: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["timestamping"], "{v}");
    assert!(
        v["checks"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("not being timestamped"),
        "{v}"
    );
    assert!(v["reasons"][0]
        .as_str()
        .unwrap()
        .starts_with("timestamping: "));

    // TSA back: within a few seconds the node serves again and the lag
    // returns to 0.
    tsa.set_up(true);
    let back = Instant::now();
    wait_for(10, "exchanges accepted again", || async {
        person(&net, 5).await.status == 200
    })
    .await;
    assert!(
        back.elapsed() < Duration::from_secs(5),
        "{:?}",
        back.elapsed()
    );
    caught_up(&net).await;
    let ready = get(&format!("{}/readyz", net.consumer.admin_url()), None).await;
    assert_eq!(ready.status, 200, "{}", ready.text());

    // The consumer's log archives and verifies, every record timestamped.
    let config = net.consumer.config_path.to_str().unwrap().to_owned();
    let out = net.consumer.dir.join("ops.ndxplog");
    let out = out.to_str().unwrap().to_owned();
    let to = (Utc::now() + chrono::TimeDelta::seconds(1)).to_rfc3339();
    let o = support::node(support::args(
        &[
            "log",
            "archive",
            "--from",
            &started.to_rfc3339(),
            "--to",
            &to,
            "--out",
            &out,
        ],
        net.consumer.config_path.as_path(),
    ))
    .await;
    let (stdout, stderr) = support::text(&o);
    assert!(o.status.success(), "{config}: {stdout}{stderr}");
    assert!(!stdout.contains("not timestamped yet"), "{stdout}");
    let ca = net.consumer.dir.join("ca.pem");
    std::fs::write(&ca, ndxp_test_support::pki::pem(net.pki.root_cert())).unwrap();
    let o = support::node(vec![
        "log".into(),
        "verify".into(),
        out,
        "--ca".into(),
        ca.to_str().unwrap().into(),
    ])
    .await;
    let (stdout, stderr) = support::text(&o);
    assert!(o.status.success(), "{stdout}{stderr}");
    // Exchanges 1 and 5 besides those served while lagging (and, should
    // the provider's node have refused one first, its refusal).
    let records = items(&net.consumer, "").await.len();
    assert!(records >= served + 2, "{records} records, {served} served");
    assert!(
        stdout.contains(&format!("{records} records in 1 chains; ")),
        "{stdout}"
    );
    let chain = stdout
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{CONSUMER}/node-g22/")))
        .unwrap_or_else(|| panic!("no chain line: {stdout}"));
    assert!(
        chain.ends_with(&format!(
            "records 1..={records}, timestamped through {records}, 0 unstamped"
        )),
        "{chain}"
    );
}

/// `GET /api/v1/transactions?{query}` on a node's admin port with its
/// token.
async fn transactions(node: &NodeSetup, query: &str) -> Answer {
    let r = http()
        .get(format!("{}/api/v1/transactions?{query}", node.admin_url()))
        .bearer_auth(node.admin_token())
        .send()
        .await
        .unwrap();
    Answer::of(r).await
}

/// The items of a successful query.
async fn items(node: &NodeSetup, query: &str) -> Vec<serde_json::Value> {
    let a = transactions(node, query).await;
    assert_eq!(a.status, 200, "{query}: {}", a.text());
    a.json()["items"].as_array().unwrap().clone()
}

fn ids(items: &[serde_json::Value]) -> Vec<String> {
    items
        .iter()
        .map(|i| i["transaction_id"].as_str().unwrap().to_owned())
        .collect()
}

fn time(v: &serde_json::Value) -> DateTime<Utc> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a time: {v}"))
        .parse()
        .unwrap()
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_and_metrics_on_the_admin_ports() {
    let net = Network::start(Options::default()).await;
    let payload = "x".repeat(1234);

    // Two lookups, a POST, then (after `middle`) a lookup and a refusal.
    let mut ok = Vec::new();
    for n in 1..=2 {
        let r = http()
            .get(net.url(CITIZEN, &format!("/persons/{n}")))
            .header("NDXP-Client", CLIENT)
            .header("NDXP-User-Id", format!("citizen-{n}"))
            .header("NDXP-Request-Id", format!("req-{n}"))
            .send()
            .await
            .unwrap();
        let a = Answer::of(r).await;
        assert_eq!(a.status, 200, "{}", a.text());
        ok.push((a.ndxp_id.clone().unwrap(), 0, a.body.len()));
    }
    let r = http()
        .post(net.url(CITIZEN, "/echo"))
        .header("NDXP-Client", CLIENT)
        .header("Content-Type", "text/plain")
        .body(payload.clone())
        .send()
        .await
        .unwrap();
    let a = Answer::of(r).await;
    assert_eq!(a.status, 200, "{}", a.text());
    ok.push((a.ndxp_id.clone().unwrap(), payload.len(), payload.len()));
    let middle = Utc::now();
    let a = person(&net, 4).await;
    assert_eq!(a.status, 200, "{}", a.text());
    ok.push((a.ndxp_id.clone().unwrap(), 0, a.body.len()));
    let refused = get(&net.url(SECRET, "/persons/5"), Some(CLIENT)).await;
    refused.problem(403, "ndxp.access_denied");
    let refused_id = refused.ndxp_id.clone().unwrap();

    // The consumer's log, newest first: the refusal, then the four.
    let all = items(&net.consumer, "").await;
    let mut expected: Vec<String> = ok.iter().map(|(id, _, _)| id.clone()).collect();
    expected.push(refused_id.clone());
    expected.reverse();
    assert_eq!(ids(&all), expected);
    for i in &all {
        assert_eq!(i["role"], "consumer", "{i}");
        assert_eq!(i["client"], CLIENT, "{i}");
        assert!(
            i["writer"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/node-g22/", CONSUMER)),
            "{i}"
        );
    }
    let r = &all[0];
    assert_eq!(
        (&r["service"], &r["status"], &r["problem_code"]),
        (
            &serde_json::json!(SECRET),
            &serde_json::json!(403),
            &serde_json::json!("ndxp.access_denied")
        ),
        "{r}"
    );

    // The provider's log holds the four that reached it (a refusal of
    // access is not logged there), with the same transaction ids.
    let provided = items(&net.provider, "").await;
    assert_eq!(ids(&provided), ids(&all[1..]));

    // Per-hop times and sizes, on both sides.
    for (id, request_bytes, response_bytes) in &ok {
        let c = all.iter().find(|i| i["transaction_id"] == *id).unwrap();
        let p = provided
            .iter()
            .find(|i| i["transaction_id"] == *id)
            .unwrap();
        assert_eq!(p["role"], "provider", "{p}");
        assert_eq!(p["service"], CITIZEN, "{p}");
        for i in [c, p] {
            assert_eq!(i["status"], 200, "{i}");
            assert_eq!(i["problem_code"], serde_json::Value::Null, "{i}");
            assert_eq!(i["request_bytes"], *request_bytes, "{i}");
            assert_eq!(i["response_bytes"], *response_bytes, "{i}");
            let took = time(&i["responded_at"]) - time(&i["received_at"]);
            assert_eq!(i["duration_ms"], took.num_milliseconds(), "{i}");
        }
        // consumer received -> forwarded -> provider received -> forwarded
        // to the backend -> backend answered -> provider responded ->
        // consumer responded.
        let hops = [
            time(&c["received_at"]),
            time(&c["forwarded_at"]),
            time(&p["received_at"]),
            time(&p["forwarded_at"]),
            time(&p["backend_answered_at"]),
            time(&p["responded_at"]),
            time(&c["responded_at"]),
        ];
        assert!(
            hops.windows(2).all(|w| w[0] <= w[1]),
            "hops out of order: {c} {p}"
        );
        assert_eq!(c["backend_answered_at"], serde_json::Value::Null, "{c}");
    }
    let first = all.iter().find(|i| i["transaction_id"] == ok[0].0).unwrap();
    assert_eq!(
        (&first["user_id"], &first["request_id"]),
        (&serde_json::json!("citizen-1"), &serde_json::json!("req-1"))
    );

    // Filters.
    let secret = enc(SECRET);
    let citizen = enc(CITIZEN);
    let client = enc(CLIENT);
    let ok_ids: Vec<String> = expected[1..].to_vec();
    for (query, want) in [
        (format!("client={client}&service={citizen}"), ok_ids.clone()),
        (format!("service={secret}"), vec![refused_id.clone()]),
        ("status=403".into(), vec![refused_id.clone()]),
        ("status=200".into(), ok_ids.clone()),
        (
            "problem_code=ndxp.access_denied".into(),
            vec![refused_id.clone()],
        ),
        ("client=VN%2FGOV%2F000.00.00.G22%2FKHAC".into(), vec![]),
        (
            format!("from={}", enc(&middle.to_rfc3339())),
            expected[..2].to_vec(),
        ),
        (
            format!("to={}", enc(&middle.to_rfc3339())),
            expected[2..].to_vec(),
        ),
        (
            format!(
                "from={}&to={}&status=200",
                enc(&middle.to_rfc3339()),
                enc(&Utc::now().to_rfc3339())
            ),
            vec![ok[3].0.clone()],
        ),
    ] {
        assert_eq!(ids(&items(&net.consumer, &query).await), want, "{query}");
    }
    assert_eq!(
        ids(&items(&net.provider, "status=403").await),
        Vec::<String>::new()
    );

    // Paging: 2 + 2 + 1, following `next`, the same order as one page.
    let mut paged = Vec::new();
    let mut query = "limit=2".to_owned();
    let mut pages = 0;
    loop {
        let a = transactions(&net.consumer, &query).await;
        assert_eq!(a.status, 200, "{}", a.text());
        let page = a.json();
        let got = page["items"].as_array().unwrap().clone();
        assert!(got.len() <= 2);
        paged.extend(ids(&got));
        pages += 1;
        match page["next"].as_str() {
            Some(next) => query = format!("limit=2&after={}", enc(next)),
            None => break,
        }
    }
    assert_eq!((pages, paged), (3, expected.clone()));
    // A filter holds across pages.
    let a = transactions(&net.consumer, "status=200&limit=3").await;
    let page = a.json();
    let next = page["next"].as_str().unwrap();
    let rest = items(
        &net.consumer,
        &format!("status=200&limit=3&after={}", enc(next)),
    )
    .await;
    assert_eq!(ids(&rest), vec![ok[0].0.clone()]);

    // The admin token is required.
    let url = format!("{}/api/v1/transactions", net.consumer.admin_url());
    let r = http().get(&url).send().await.unwrap();
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    Answer::of(r).await.problem(401, "ndxp.unauthorized");
    let r = http()
        .get(&url)
        .bearer_auth(net.provider.admin_token())
        .send()
        .await
        .unwrap();
    Answer::of(r).await.problem(401, "ndxp.unauthorized");

    // Bad filters: 400 problem+json naming what is wrong.
    for (query, says) in [
        ("status=abc", "status"),
        ("from=yesterday", "from"),
        ("limit=0", "limit=0"),
        ("limit=1001", "limit=1001"),
        ("after=not-a-cursor", "after="),
        ("colour=red", "colour"),
        // The problem code's filter is `problem_code`, as in the answer.
        ("code=ndxp.access_denied", "problem_code"),
        (
            "from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "is after",
        ),
    ] {
        let a = transactions(&net.consumer, query).await;
        let p = a.problem(400, "ndxp.bad_request");
        let detail = p["detail"].as_str().unwrap();
        assert!(detail.contains(says), "{query}: {detail}");
    }

    // /metrics: answers by code, append waits per role, pending appends.
    let count = |node, role, status, code| async move {
        metric(
            node,
            "ndxp_node_exchanges_total",
            &[("role", role), ("status", status), ("code", code)],
        )
        .await
    };
    assert_eq!(count(&net.consumer, "consumer", "200", "").await, Some(4.0));
    assert_eq!(
        count(&net.consumer, "consumer", "403", "ndxp.access_denied").await,
        Some(1.0)
    );
    assert_eq!(count(&net.provider, "provider", "200", "").await, Some(4.0));
    assert_eq!(
        count(&net.provider, "provider", "403", "ndxp.access_denied").await,
        Some(1.0)
    );
    let appends = |node, role| async move {
        metric(
            node,
            "ndxp_node_log_append_duration_seconds_count",
            &[("role", role)],
        )
        .await
    };
    // One append per logged exchange: five on the consumer, four on the
    // provider.
    assert_eq!(appends(&net.consumer, "consumer").await, Some(5.0));
    assert_eq!(appends(&net.provider, "provider").await, Some(4.0));
    assert_eq!(appends(&net.consumer, "provider").await, None);
    for node in [&net.consumer, &net.provider] {
        let sum = metric(node, "ndxp_node_log_append_duration_seconds_sum", &[]).await;
        assert!(sum.unwrap() > 0.0, "{sum:?}");
        wait_for(5, "no appends pending", || async {
            metric(node, "ndxp_node_log_pending_appends", &[]).await == Some(0.0)
        })
        .await;
    }
    // No TSA in this network: no timestamper, nothing reported as lagging.
    assert_eq!(
        metric(&net.consumer, "ndxp_node_timestamp_lag_seconds", &[]).await,
        Some(0.0)
    );
}
