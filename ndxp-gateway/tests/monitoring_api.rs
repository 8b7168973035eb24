//! Connection status and reconciliation through the real management server
//! over HTTP: two fake nodes (a message log each, filled directly) and the
//! central gateway's own log, uploads and drill-down answers made by
//! `ndxp_node::report::Reporter`, planted disagreements named exactly in
//! the report (API, curl, CLI), forged uploads refused and stored nowhere,
//! and node states ok / degraded / stale / down.
#![allow(clippy::unwrap_used)]

mod management_support;

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use management_support::{assert_problem, backends, curl, Backend, Env, MemberKeys};
use ndxp_audit::log::{Exchange, LogOptions, MessageLog, Role, SignedMeta, SqlMessageLog};
use ndxp_audit::monitor::{
    sign_envelope, Envelope, NodeStatus, ServiceStatus, STATUS_TYP, SUMMARY_TYP,
};
use ndxp_audit::reconcile::{summarize, Entry, Outcome, Period, Side};
use ndxp_core::{MemberId, TransactionId};
use ndxp_node::report::{Reporter, ReporterOptions};
use ndxp_registry::store::MonitoringStore;
use ndxp_sign::profile::Signer;
use serde_json::Value;

const PROVIDER: &str = "VN/GOV/000.00.00.H29";
const CONSUMER: &str = "VN/GOV/000.00.00.G22";
const CLIENT: &str = "VN/GOV/000.00.00.G22/QLHT";
const SERVICE: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1";
/// A member without a node, calling through the central gateway.
const GW_CLIENT: &str = "VN/GOV/000.00.00.B01/APP";

fn id_at(t: DateTime<Utc>, n: u64) -> TransactionId {
    let mut r = [0u8; 10];
    r[2..].copy_from_slice(&n.to_be_bytes());
    let u =
        uuid::Builder::from_unix_timestamp_millis(u64::try_from(t.timestamp_millis()).unwrap(), &r)
            .into_uuid();
    TransactionId::from_uuid(u).unwrap()
}

fn exchange(id: TransactionId, client: &str, role: Role, status: u16) -> Exchange {
    let meta = SignedMeta {
        signature_input: "ndxp=(\"@method\");created=1".into(),
        signature: "ndxp=:AAAA:".into(),
        content_digest: "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:".into(),
        base: "\"@method\": GET".into(),
        signer_cert_der: vec![0x30, 0x03, 1, 2, 3],
        chain_der: vec![],
    };
    let at =
        chrono::DateTime::from_timestamp_millis(i64::try_from(id.unix_millis()).unwrap()).unwrap();
    Exchange {
        transaction_id: id,
        client: client.parse().unwrap(),
        service: SERVICE.parse().unwrap(),
        role,
        received_at: at,
        forwarded_at: None,
        backend_answered_at: None,
        responded_at: at,
        user_id: None,
        request_id: None,
        status,
        problem_code: (status == 504).then(|| "ndxp.provider_timeout".into()),
        request_bytes: 0,
        response_bytes: 0,
        request: meta.clone(),
        response: Some(meta),
        body: None,
        trace_id: None,
    }
}

fn profile_signer(k: &MemberKeys) -> Signer {
    Signer::new(
        k.sign_key.clone(),
        k.sign_chain[0].clone(),
        k.sign_chain[1..].to_vec(),
    )
    .unwrap()
}

fn ok_status(expires: DateTime<Utc>, services: Vec<ServiceStatus>) -> NodeStatus {
    NodeStatus {
        software_version: "0.1.0".into(),
        globalconf_version: Some(3),
        globalconf_age_secs: Some(20),
        auth_cert_expires_at: Some(expires),
        sign_cert_expires_at: Some(expires),
        log_lag_secs: Some(0.01),
        timestamp_lag_secs: Some(1.0),
        services,
    }
}

async fn register_node(env: &Env, keys: &MemberKeys, node: &str) {
    env.register_node(keys, node, "https://127.0.0.1:8443")
        .await;
}

/// Runs the `ndxp-gateway` binary; returns (success, stdout, stderr).
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The differing transactions of the pair (provider, consumer) in a JSON
/// report: id → kind with outcomes.
fn items(report: &Value, consumer: &str) -> (String, BTreeMap<String, String>) {
    let pair = report["pairs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["provider"] == PROVIDER && p["consumer"] == consumer)
        .unwrap_or_else(|| panic!("no pair with {consumer}: {report}"));
    let mut out = BTreeMap::new();
    for i in pair["report"]["items"].as_array().into_iter().flatten() {
        let kind = match i["kind"].as_str().unwrap() {
            "outcome_differs" => format!(
                "outcome_differs {} {}",
                i["provider"].as_str().unwrap(),
                i["consumer"].as_str().unwrap()
            ),
            k => format!("{k} {}", i["outcome"].as_str().unwrap_or("")),
        };
        out.insert(i["transaction_id"].as_str().unwrap().to_string(), kind);
    }
    (pair["state"].as_str().unwrap().to_string(), out)
}

#[tokio::test]
async fn planted_disagreements_are_named_exactly_and_agreement_is_clean() {
    for backend in backends() {
        planted(backend).await;
    }
}

async fn planted(backend: Backend) {
    let logs = tempfile::tempdir().unwrap();
    let url = |name: &str| format!("sqlite://{}", logs.path().join(name).display());
    let opts = LogOptions::default();
    let plog = SqlMessageLog::open(&url("provider.db"), "node-h29/1", &opts)
        .await
        .unwrap();
    let clog = SqlMessageLog::open(&url("consumer.db"), "node-g22/1", &opts)
        .await
        .unwrap();
    let glog = SqlMessageLog::open(&url("gateway.db"), "gateway/1", &opts)
        .await
        .unwrap();
    let env = Env::start_with(
        backend,
        &format!(
            "[monitoring]\ngateway_log_url = \"{}\"\n",
            url("gateway.db")
        ),
    )
    .await;
    env.add_member_with_token(PROVIDER, "Bo Cong an").await;
    env.add_member_with_token(CONSUMER, "Bo Tu phap").await;
    let (pk, ck) = (env.member_keys(PROVIDER), env.member_keys(CONSUMER));
    register_node(&env, &pk, "node-h29").await;
    register_node(&env, &ck, "node-g22").await;

    let now = Utc::now();
    let day = Period::day(now - Duration::days(2));
    let clean_day = Period::day(now - Duration::days(3));
    let at = |p: Period, k: i64| p.start() + Duration::hours(2) + Duration::minutes(k);
    let mut n = 0u64;
    let mut next = |p: Period| {
        n += 1;
        id_at(at(p, i64::try_from(n).unwrap()), n)
    };
    // Agreeing exchanges on both days.
    for p in [clean_day, day, day, clean_day, day] {
        let id = next(p);
        plog.append(exchange(id, CLIENT, Role::Provider, 200))
            .await
            .unwrap();
        clog.append(exchange(id, CLIENT, Role::Consumer, 200))
            .await
            .unwrap();
    }
    // 1. Dropped on the consumer's side.
    let dropped = next(day);
    plog.append(exchange(dropped, CLIENT, Role::Provider, 200))
        .await
        .unwrap();
    // 2. The consumer timed out after the provider answered.
    let timed_out = next(day);
    plog.append(exchange(timed_out, CLIENT, Role::Provider, 200))
        .await
        .unwrap();
    clog.append(exchange(timed_out, CLIENT, Role::Consumer, 504))
        .await
        .unwrap();
    // 3. A different outcome on each side.
    let differs = next(day);
    plog.append(exchange(differs, CLIENT, Role::Provider, 404))
        .await
        .unwrap();
    clog.append(exchange(differs, CLIENT, Role::Consumer, 502))
        .await
        .unwrap();
    // Through the central gateway: one agreeing, one the gateway never logged.
    let via_gw = next(day);
    plog.append(exchange(via_gw, GW_CLIENT, Role::Provider, 200))
        .await
        .unwrap();
    glog.append(exchange(via_gw, GW_CLIENT, Role::Gateway, 200))
        .await
        .unwrap();
    let gw_missing = next(day);
    plog.append(exchange(gw_missing, GW_CLIENT, Role::Provider, 200))
        .await
        .unwrap();

    let status_of = |s: NodeStatus| -> Arc<dyn Fn() -> NodeStatus + Send + Sync> {
        Arc::new(move || s.clone())
    };
    let far = now + Duration::days(365);
    let options = |name: &str| ReporterOptions {
        grace: Duration::minutes(10),
        ..ReporterOptions::new(logs.path().join(name))
    };
    let preporter = Reporter::new(
        env.url(""),
        reqwest::Client::new(),
        "node-h29".parse().unwrap(),
        &profile_signer(&pk),
        plog.pool().clone(),
        status_of(ok_status(far, vec![])),
        options("p-state.json"),
    );
    let creporter = Reporter::new(
        env.url(""),
        reqwest::Client::new(),
        "node-g22".parse().unwrap(),
        &profile_signer(&ck),
        clog.pool().clone(),
        status_of(ok_status(far, vec![])),
        options("c-state.json"),
    );

    // Both nodes upload every closed period; a second round has nothing left.
    let up = preporter.upload_summaries_once(now).await.unwrap();
    assert!(
        up.periods.contains(&day) && up.periods.contains(&clean_day),
        "{up:?}"
    );
    assert!(up.conflicts.is_empty());
    creporter.upload_summaries_once(now).await.unwrap();
    assert!(preporter
        .upload_summaries_once(now)
        .await
        .unwrap()
        .periods
        .is_empty());

    // Before the drill-down answers, the differing pairs are pending.
    let period_arg = day.start().format("%Y-%m-%d").to_string();
    let report = format!("/api/v1/reconciliation/report?period={period_arg}");
    let v = env.op_expect(200, "GET", &report, None).await;
    assert_eq!(items(&v, CONSUMER).0, "pending", "{v}");
    assert_eq!(items(&v, "VN/GOV/000.00.00.B01").0, "pending", "{v}");

    // The nodes answer their drill-down requests (the provider for both pairs).
    assert!(preporter.answer_drilldowns_once().await.unwrap() >= 2);
    assert!(creporter.answer_drilldowns_once().await.unwrap() >= 1);
    assert_eq!(preporter.answer_drilldowns_once().await.unwrap(), 0);

    let report = format!("/api/v1/reconciliation/report?period={period_arg}");
    let v = env.op_expect(200, "GET", &report, None).await;
    let (state, got) = items(&v, CONSUMER);
    assert_eq!(state, "differences", "{v}");
    let want: BTreeMap<String, String> = [
        (dropped.to_string(), "only_provider ok".to_string()),
        (
            timed_out.to_string(),
            "outcome_differs ok timeout".to_string(),
        ),
        (
            differs.to_string(),
            "outcome_differs client_error server_error".to_string(),
        ),
    ]
    .into();
    assert_eq!(got, want, "{v}");
    let (state, got) = items(&v, "VN/GOV/000.00.00.B01");
    assert_eq!(state, "differences");
    assert_eq!(
        got,
        [(gw_missing.to_string(), "only_provider ok".to_string())].into(),
        "{v}"
    );

    // Two sides in agreement reconcile clean.
    let clean_arg = clean_day.start().format("%Y-%m-%d").to_string();
    let report = format!("/api/v1/reconciliation/report?period={clean_arg}");
    let v = env.op_expect(200, "GET", &report, None).await;
    let pairs = v["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), 1, "{v}");
    assert_eq!(pairs[0]["state"], "clean", "{v}");
    assert_eq!(pairs[0]["report"]["items"].as_array().unwrap().len(), 0);

    // The same report as CSV with the stock curl: exactly the planted ids.
    let csv_report = format!("/api/v1/reconciliation/report?period={period_arg}&format=csv");
    let auth = format!("Authorization: Bearer {}", env.operator);
    let (code, csv) = curl(&["-H", &auth, &env.url(&csv_report)]).await;
    assert_eq!(code, 200, "{csv}");
    let lines: Vec<&str> = csv.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert!(lines[0].starts_with("period_start,period_end,provider_member"));
    assert_eq!(lines.len(), 5, "{csv}");
    for id in [dropped, timed_out, differs, gw_missing] {
        assert_eq!(
            lines.iter().filter(|l| l.contains(&id.to_string())).count(),
            1,
            "{csv}"
        );
    }

    // The operator command prints the same from the database.
    let cfg = env.dir.path().join("cli.toml");
    std::fs::write(
        &cfg,
        format!(
            "instance = \"VN\"\n[storage]\nurl = \"{}\"\n[globalconf]\nsigning_key = \"sign.key\"\nsigning_cert = \"sign.pem\"\n[[globalconf.cas]]\nname = \"Root\"\ncert = \"ca.pem\"\n[monitoring]\ngateway_log_url = \"{}\"\n",
            env.config.storage.url,
            url("gateway.db")
        ),
    )
    .unwrap();
    let cfg_s = cfg.to_str().unwrap().to_string();
    let (ok, out, err) = tokio::task::spawn_blocking({
        let (c, p) = (cfg_s.clone(), period_arg.clone());
        move || {
            cli(&[
                "reconcile",
                "--config",
                &c,
                "--period",
                &p,
                "--format",
                "csv",
            ])
        }
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert_eq!(out, csv);
    let (ok, out, err) = tokio::task::spawn_blocking({
        let (c, p) = (cfg_s.clone(), period_arg.clone());
        move || cli(&["reconcile", "--config", &c, "--period", &p])
    })
    .await
    .unwrap();
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("{timed_out}")) && out.contains("provider ok, consumer timeout"),
        "{out}"
    );
    let (ok, _, err) = tokio::task::spawn_blocking({
        let c = cfg_s.clone();
        move || cli(&["reconcile", "--config", &c, "--period", "2026-13-01"])
    })
    .await
    .unwrap();
    assert!(!ok && err.contains("is not a UTC day"), "{err}");

    plog.close().await;
    clog.close().await;
    glog.close().await;
    env.stop().await;
}

#[tokio::test]
async fn forged_and_malformed_uploads_are_refused_and_stored_nowhere() {
    let env = Env::start(Backend::Sqlite).await;
    env.add_member_with_token(PROVIDER, "Bo Cong an").await;
    env.add_member_with_token(CONSUMER, "Bo Tu phap").await;
    let (pk, ck) = (env.member_keys(PROVIDER), env.member_keys(CONSUMER));
    register_node(&env, &pk, "node-h29").await;
    register_node(&env, &ck, "node-g22").await;
    let now = Utc::now();
    let post = |path: &'static str, body: String| {
        let env = &env;
        async move {
            env.raw(
                "POST",
                path,
                None,
                Some("application/jose"),
                body.into_bytes(),
            )
            .await
        }
    };
    let provider: MemberId = PROVIDER.parse().unwrap();
    let consumer: MemberId = CONSUMER.parse().unwrap();
    let past = Period::day(now - Duration::days(2));
    let entry = |p: Period, client: &str, service: &str| Entry {
        transaction_id: id_at(p.start() + Duration::hours(1), 1),
        client: client.parse().unwrap(),
        service: service.parse().unwrap(),
        outcome: Outcome::Ok,
        at: p.start(),
    };
    let summary = |side, p: Period, client: &str, service: &str| {
        summarize(side, p, [entry(p, client, service)])
    };
    let good = summary(Side::Provider, past, CLIENT, SERVICE);
    fn env_of<T>(m: &MemberId, node: &str, body: T) -> Envelope<T> {
        Envelope::new(m.clone(), Some(node.parse().unwrap()), Utc::now(), body)
    }
    let problem = |s: u16, ct: &str, v: &Value, code: &str| {
        assert_eq!(ct, "application/problem+json", "{v}");
        assert_eq!(v["status"], s, "{v}");
        assert_eq!(v["code"], code, "{v}");
    };

    // Wrong signer: the provider's envelope signed with the consumer's key.
    let jws = sign_envelope(
        &env_of(&provider, "node-h29", good.clone()),
        SUMMARY_TYP,
        &ck.sign_key,
        &ck.sign_chain,
    )
    .unwrap();
    let (s, ct, v) = post("/api/v1/reconciliation/summaries", jws).await;
    assert_eq!(s, 400);
    problem(400, &ct, &v, "ndxp.signature_invalid");
    assert!(
        v["detail"]
            .as_str()
            .unwrap()
            .contains("not by a signing certificate of member"),
        "{v}"
    );

    // A period in the future, and the current (not yet closed) one.
    for p in [Period::day(now + Duration::days(1)), Period::day(now)] {
        let s_ = summary(Side::Provider, p, CLIENT, SERVICE);
        let jws = sign_envelope(
            &env_of(&provider, "node-h29", s_),
            SUMMARY_TYP,
            &pk.sign_key,
            &pk.sign_chain,
        )
        .unwrap();
        let (s, ct, v) = post("/api/v1/reconciliation/summaries", jws).await;
        assert_eq!(s, 400, "{v}");
        problem(400, &ct, &v, "ndxp.bad_request");
        assert!(v["detail"].as_str().unwrap().contains("not closed"), "{v}");
    }

    // A member reporting for another member's service (provider side) or
    // another member's clients (consumer side).
    let theirs = summary(Side::Provider, past, CLIENT, SERVICE);
    let jws = sign_envelope(
        &env_of(&consumer, "node-g22", theirs),
        SUMMARY_TYP,
        &ck.sign_key,
        &ck.sign_chain,
    )
    .unwrap();
    let (s, ct, v) = post("/api/v1/reconciliation/summaries", jws).await;
    assert_eq!(s, 403, "{v}");
    problem(403, &ct, &v, "ndxp.access_denied");
    let theirs = summary(Side::Consumer, past, CLIENT, SERVICE);
    let jws = sign_envelope(
        &env_of(&provider, "node-h29", theirs),
        SUMMARY_TYP,
        &pk.sign_key,
        &pk.sign_chain,
    )
    .unwrap();
    let (s, _, v) = post("/api/v1/reconciliation/summaries", jws).await;
    assert_eq!(s, 403, "{v}");

    // A node that is not registered for the member.
    let jws = sign_envelope(
        &env_of(&provider, "node-g22", good.clone()),
        SUMMARY_TYP,
        &pk.sign_key,
        &pk.sign_chain,
    )
    .unwrap();
    let (s, _, v) = post("/api/v1/reconciliation/summaries", jws).await;
    assert_eq!(s, 403, "{v}");

    // A member that runs nodes may not submit a summary without one.
    let jws = sign_envelope(
        &Envelope::new(provider.clone(), None, Utc::now(), good.clone()),
        SUMMARY_TYP,
        &pk.sign_key,
        &pk.sign_chain,
    )
    .unwrap();
    let (s, _, v) = post("/api/v1/reconciliation/summaries", jws).await;
    assert_eq!(s, 403, "{v}");

    // A stale iat.
    let mut old = env_of(&provider, "node-h29", good.clone());
    old.iat -= 3600;
    let jws = sign_envelope(&old, SUMMARY_TYP, &pk.sign_key, &pk.sign_chain).unwrap();
    let (s, _, v) = post("/api/v1/reconciliation/summaries", jws).await;
    assert_eq!(s, 400, "{v}");

    // A status document posted as a summary (wrong typ).
    let jws = sign_envelope(
        &env_of(&provider, "node-h29", good.clone()),
        STATUS_TYP,
        &pk.sign_key,
        &pk.sign_chain,
    )
    .unwrap();
    let (s, _, v) = post("/api/v1/reconciliation/summaries", jws).await;
    assert_eq!(s, 400, "{v}");

    // Garbage bodies and a wrong media type.
    for garbage in [
        "",
        "not a jws",
        "a.b.c",
        "eyJhbGciOiJub25lIn0.e30.",
        &"x".repeat(10_000),
    ] {
        let (s, ct, v) = post("/api/v1/reconciliation/summaries", garbage.to_string()).await;
        assert_eq!(s, 400, "{garbage:.20}: {v}");
        assert_eq!(ct, "application/problem+json");
        let (s, _, _) = post("/api/v1/monitoring/status", garbage.to_string()).await;
        assert_eq!(s, 400);
        let (s, _, _) = post(
            "/api/v1/reconciliation/drilldowns/poll",
            garbage.to_string(),
        )
        .await;
        assert_eq!(s, 400);
    }
    let (s, _, _) = env
        .raw(
            "POST",
            "/api/v1/monitoring/status",
            None,
            Some("application/json"),
            b"{}".to_vec(),
        )
        .await;
    assert_eq!(s, 415);

    // Nothing of the above was stored.
    let stored = env
        .sql
        .list_summaries(now - Duration::days(30), now + Duration::days(30))
        .await
        .unwrap();
    assert!(stored.is_empty(), "{stored:?}");

    // A good upload is stored once; its replay (same jti) is refused.
    let jws = sign_envelope(
        &env_of(&provider, "node-h29", good.clone()),
        SUMMARY_TYP,
        &pk.sign_key,
        &pk.sign_chain,
    )
    .unwrap();
    let (s, _, v) = post("/api/v1/reconciliation/summaries", jws.clone()).await;
    assert_eq!(s, 201, "{v}");
    let (s, ct, v) = post("/api/v1/reconciliation/summaries", jws).await;
    assert_eq!(s, 409, "{v}");
    problem(409, &ct, &v, "ndxp.bad_request");
    let status = ok_status(now + Duration::days(365), vec![]);
    let jws = sign_envelope(
        &env_of(&provider, "node-h29", status),
        STATUS_TYP,
        &pk.sign_key,
        &pk.sign_chain,
    )
    .unwrap();
    let (s, _, v) = post("/api/v1/monitoring/status", jws.clone()).await;
    assert_eq!(s, 201, "{v}");
    let (s, _, v) = post("/api/v1/monitoring/status", jws).await;
    assert_eq!(s, 409, "{v}");
    let hist = env
        .sql
        .status_history(&provider, &"node-h29".parse().unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(hist.len(), 1);
    // A different summary for the same period from the same node: refused.
    let other = summary(Side::Provider, past, "VN/GOV/000.00.00.G22/OTHER", SERVICE);
    let jws = sign_envelope(
        &env_of(&provider, "node-h29", other),
        SUMMARY_TYP,
        &pk.sign_key,
        &pk.sign_chain,
    )
    .unwrap();
    let (s, _, v) = post("/api/v1/reconciliation/summaries", jws).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(
        env.sql
            .list_summaries(now - Duration::days(30), now + Duration::days(30))
            .await
            .unwrap()
            .len(),
        1
    );
    // A status naming another member's service.
    let status = ok_status(
        now + Duration::days(365),
        vec![ServiceStatus {
            service: "VN/GOV/000.00.00.G22/QLHT/x/v1".parse().unwrap(),
            backend_reachable: true,
            latency_ms: Some(3),
            detail: None,
        }],
    );
    let jws = sign_envelope(
        &env_of(&provider, "node-h29", status),
        STATUS_TYP,
        &pk.sign_key,
        &pk.sign_chain,
    )
    .unwrap();
    let (s, _, v) = post("/api/v1/monitoring/status", jws).await;
    assert_eq!(s, 403, "{v}");
    env.stop().await;
}

#[tokio::test]
async fn node_states_ok_degraded_stale_and_down() {
    let env = Env::start(Backend::Sqlite).await;
    let ptoken = env.add_member_with_token(PROVIDER, "Bo Cong an").await;
    env.add_member_with_token(CONSUMER, "Bo Tu phap").await;
    let (pk, ck) = (env.member_keys(PROVIDER), env.member_keys(CONSUMER));
    register_node(&env, &pk, "node-h29").await;
    register_node(&env, &ck, "node-g22").await;
    register_node(&env, &ck, "node-silent").await;
    let logs = tempfile::tempdir().unwrap();
    let log = SqlMessageLog::open(
        &format!("sqlite://{}", logs.path().join("l.db").display()),
        "w/1",
        &LogOptions::default(),
    )
    .await
    .unwrap();
    let now = Utc::now();
    let current = Arc::new(Mutex::new(ok_status(
        now + Duration::days(365),
        vec![ServiceStatus {
            service: SERVICE.parse().unwrap(),
            backend_reachable: true,
            latency_ms: Some(12),
            detail: None,
        }],
    )));
    let source = {
        let c = current.clone();
        Arc::new(move || c.lock().unwrap().clone())
    };
    let reporter =
        |keys: &MemberKeys, node: &str, src: Arc<dyn Fn() -> NodeStatus + Send + Sync>| {
            Reporter::new(
                env.url(""),
                reqwest::Client::new(),
                node.parse().unwrap(),
                &profile_signer(keys),
                log.pool().clone(),
                src,
                ReporterOptions::new(logs.path().join(format!("{node}.json"))),
            )
        };
    let p = reporter(&pk, "node-h29", source);
    // The consumer's signing certificate expires in 10 days.
    let c = reporter(
        &ck,
        "node-g22",
        Arc::new(move || {
            let mut s = ok_status(now + Duration::days(365), vec![]);
            s.sign_cert_expires_at = Some(now + Duration::days(10));
            s
        }),
    );
    p.report_status_once().await.unwrap();
    c.report_status_once().await.unwrap();
    // A node whose log is empty uploads nothing yet, but remembers where it
    // starts, so the periods from now on are uploaded once they close.
    assert!(p
        .upload_summaries_once(now)
        .await
        .unwrap()
        .periods
        .is_empty());
    let state: Value =
        serde_json::from_slice(&std::fs::read(logs.path().join("node-h29.json")).unwrap()).unwrap();
    assert_eq!(
        state["uploaded_through"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap(),
        Period::day(now - ndxp_audit::reconcile::LOG_TIME_MARGIN).start()
    );

    let row = |v: &Value, node: &str, service: Option<&str>| -> Value {
        v.as_array()
            .unwrap()
            .iter()
            .find(|r| r["node"] == node && r["service"].as_str() == service)
            .unwrap_or_else(|| panic!("no row {node} {service:?}: {v}"))
            .clone()
    };
    let (s, v) = env.op("GET", "/api/v1/monitoring/status", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(row(&v, "node-h29", None)["state"], "ok", "{v}");
    assert_eq!(row(&v, "node-h29", Some(SERVICE))["state"], "ok");
    let g = row(&v, "node-g22", None);
    assert_eq!(g["state"], "degraded", "{v}");
    assert!(
        g["reasons"][0]
            .as_str()
            .unwrap()
            .contains("signing certificate expires"),
        "{g}"
    );
    let silent = row(&v, "node-silent", None);
    assert_eq!(silent["state"], "down");
    assert!(silent["reasons"][0]
        .as_str()
        .unwrap()
        .contains("no status report"));

    // The backend becomes unreachable: the service and its node are degraded.
    {
        let mut s = current.lock().unwrap();
        s.services[0].backend_reachable = false;
        s.services[0].detail = Some("connection refused".into());
    }
    p.report_status_once().await.unwrap();
    let (_, v) = env.op("GET", "/api/v1/monitoring/status", None).await;
    let svc = row(&v, "node-h29", Some(SERVICE));
    assert_eq!(svc["state"], "degraded");
    assert!(
        svc["reasons"][0]
            .as_str()
            .unwrap()
            .contains("connection refused"),
        "{svc}"
    );
    assert_eq!(row(&v, "node-h29", None)["state"], "degraded");

    // Only operators see the listing.
    let (s, _) = env
        .call("GET", "/api/v1/monitoring/status", Some(&ptoken), None)
        .await;
    assert_eq!(s, 403);
    let (s, _) = env
        .call("GET", "/api/v1/monitoring/status", None, None)
        .await;
    assert_eq!(s, 401);

    // Time passes without reports (injected clock): stale, then down.
    let cfg = &env.config.monitoring;
    let interval = Duration::seconds(i64::try_from(cfg.status_interval_secs).unwrap());
    let later = |k: u32| now + interval * i32::try_from(k).unwrap() + Duration::seconds(5);
    let rows = ndxp_gateway::monitoring::connection_states(
        env.store.as_ref(),
        cfg,
        later(cfg.stale_after_intervals),
    )
    .await
    .unwrap();
    let st = |rows: &[ndxp_gateway::monitoring::ConnectionState], node: &str| {
        rows.iter()
            .find(|r| r.node.as_str() == node && r.service.is_none())
            .unwrap()
            .state
            .as_str()
    };
    assert_eq!(st(&rows, "node-h29"), "stale");
    assert_eq!(st(&rows, "node-g22"), "stale");
    let rows = ndxp_gateway::monitoring::connection_states(
        env.store.as_ref(),
        cfg,
        later(cfg.down_after_intervals),
    )
    .await
    .unwrap();
    assert_eq!(st(&rows, "node-h29"), "down");
    assert!(rows
        .iter()
        .filter(|r| r.node.as_str() == "node-h29")
        .all(|r| r.state.as_str() == "down"));

    // The operator command shows the table.
    let cfg_path = env.dir.path().join("cli.toml");
    std::fs::write(
        &cfg_path,
        format!(
            "instance = \"VN\"\n[storage]\nurl = \"{}\"\n[globalconf]\nsigning_key = \"sign.key\"\nsigning_cert = \"sign.pem\"\n[[globalconf.cas]]\nname = \"Root\"\ncert = \"ca.pem\"\n",
            env.config.storage.url
        ),
    )
    .unwrap();
    let c = cfg_path.to_str().unwrap().to_string();
    let (ok, out, err) = tokio::task::spawn_blocking(move || cli(&["status", "--config", &c]))
        .await
        .unwrap();
    assert!(ok, "{err}");
    assert!(out.starts_with("MEMBER"), "{out}");
    let line = out.lines().find(|l| l.contains("node-silent")).unwrap();
    assert!(line.contains("down") && line.contains("never"), "{line}");
    assert!(
        out.lines()
            .any(|l| l.contains("node-g22") && l.contains("degraded")),
        "{out}"
    );
    log.close().await;
    env.stop().await;
}

/// A provider without a node submits its own summary (signed by its member
/// key, no node) and answers its drill-down the same way; the gateway's
/// log is the other side.
#[tokio::test]
async fn provider_without_a_node_reconciles_against_the_gateway() {
    const P2: &str = "VN/GOV/000.00.00.C03";
    const P2_SERVICE: &str = "VN/GOV/000.00.00.C03/REG/lookup/v1";
    let logs = tempfile::tempdir().unwrap();
    let gw_url = format!("sqlite://{}", logs.path().join("gateway.db").display());
    let glog = SqlMessageLog::open(&gw_url, "gateway/1", &LogOptions::default())
        .await
        .unwrap();
    let env = Env::start_with(
        Backend::Sqlite,
        &format!("[monitoring]\ngateway_log_url = \"{gw_url}\"\n"),
    )
    .await;
    env.add_member_with_token(P2, "So Tu phap").await;
    let keys = env.member_keys(P2);
    let member: MemberId = P2.parse().unwrap();
    let now = Utc::now();
    let day = Period::day(now - Duration::days(2));
    let t = day.start() + Duration::hours(3);
    let (agreed, extra) = (id_at(t, 1), id_at(t + Duration::minutes(1), 2));
    for id in [agreed, extra] {
        let mut x = exchange(id, GW_CLIENT, Role::Gateway, 200);
        x.service = P2_SERVICE.parse().unwrap();
        glog.append(x).await.unwrap();
    }
    // The provider saw only `agreed`.
    let summary = summarize(
        Side::Provider,
        day,
        [Entry {
            transaction_id: agreed,
            client: GW_CLIENT.parse().unwrap(),
            service: P2_SERVICE.parse().unwrap(),
            outcome: Outcome::Ok,
            at: t,
        }],
    );
    let post = |path: String, body: String| {
        let env = &env;
        async move {
            env.raw(
                "POST",
                &path,
                None,
                Some("application/jose"),
                body.into_bytes(),
            )
            .await
        }
    };
    let sign = |typ: &str, body: Value| {
        sign_envelope(
            &Envelope::new(member.clone(), None, Utc::now(), body),
            typ,
            &keys.sign_key,
            &keys.sign_chain,
        )
        .unwrap()
    };
    let (s, _, v) = post(
        "/api/v1/reconciliation/summaries".into(),
        sign(SUMMARY_TYP, serde_json::to_value(&summary).unwrap()),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // The member polls for its own requests and answers with its ids.
    let (s, _, v) = post(
        "/api/v1/reconciliation/drilldowns/poll".into(),
        sign(ndxp_audit::monitor::POLL_TYP, serde_json::json!({})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let reqs = v.as_array().unwrap();
    assert_eq!(reqs.len(), 1, "{v}");
    assert_eq!(reqs[0]["side"], "provider");
    let id = reqs[0]["id"].as_str().unwrap().to_string();
    // An id outside the request's period is refused, and nothing recorded.
    let outside = id_at(day.end() + Duration::hours(1), 3);
    let (s, _, v) = post(
        format!("/api/v1/reconciliation/drilldowns/{id}"),
        sign(
            ndxp_audit::monitor::ANSWER_TYP,
            serde_json::json!({"id": id, "ids": [agreed.to_string(), outside.to_string()]}),
        ),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    let (s, _, v) = post(
        format!("/api/v1/reconciliation/drilldowns/{id}"),
        sign(
            ndxp_audit::monitor::ANSWER_TYP,
            serde_json::json!({"id": id, "ids": [agreed.to_string()]}),
        ),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = env
        .op(
            "GET",
            &format!(
                "/api/v1/reconciliation/report?period={}",
                day.start().format("%Y-%m-%d")
            ),
            None,
        )
        .await;
    assert_eq!(s, 200, "{v}");
    let pair = &v["pairs"][0];
    assert_eq!(pair["provider"], P2, "{v}");
    assert_eq!(pair["consumer_sources"][0]["kind"], "gateway", "{v}");
    assert_eq!(pair["state"], "differences", "{v}");
    let items = pair["report"]["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{v}");
    assert_eq!(items[0]["transaction_id"], extra.to_string());
    assert_eq!(items[0]["kind"], "only_consumer");
    glog.close().await;
    env.stop().await;
}

/// A member signing key the CA revoked (`pki revoke`, answered by the
/// running OCSP responder) no longer registers a node nor uploads a status
/// report or a reconciliation summary: `400 ndxp.signature_invalid` naming
/// the revocation, and nothing is stored. The member's new key works.
#[tokio::test]
async fn a_revoked_signer_cannot_register_or_upload() {
    let env = Env::start(Backend::Sqlite).await;
    env.add_member_with_token(PROVIDER, "Bo Cong an").await;
    register_node(&env, &env.member_keys(PROVIDER), "node-h29").await;
    // A second signing certificate of the member, never used before its
    // revocation (a "good" OCSP answer, once held, is trusted until its
    // nextUpdate, one hour).
    let keys = env.member_keys(PROVIDER);
    let provider: MemberId = PROVIDER.parse().unwrap();
    let post = |path: &'static str, body: String| {
        let env = &env;
        async move {
            env.raw(
                "POST",
                path,
                None,
                Some("application/jose"),
                body.into_bytes(),
            )
            .await
        }
    };
    let status = |k: &MemberKeys| {
        let e = Envelope::new(
            provider.clone(),
            Some("node-h29".parse().unwrap()),
            Utc::now(),
            ok_status(Utc::now() + Duration::days(30), vec![]),
        );
        sign_envelope(&e, STATUS_TYP, &k.sign_key, &k.sign_chain).unwrap()
    };
    let past = Period::day(Utc::now() - Duration::days(2));
    let summary = |k: &MemberKeys| {
        let e = Envelope::new(
            provider.clone(),
            Some("node-h29".parse().unwrap()),
            Utc::now(),
            summarize(Side::Provider, past, std::iter::empty::<Entry>()),
        );
        sign_envelope(&e, SUMMARY_TYP, &k.sign_key, &k.sign_chain).unwrap()
    };
    env.pki
        .revoke(
            &keys.sign_chain[0],
            ndxp_sign::revocation::RevocationReason::KeyCompromise,
            Utc::now(),
        )
        .unwrap();
    let before = env.store.list_registrations(None).await.unwrap().len();
    for (path, jws) in [
        (
            "/api/v1/registrations",
            env.registration(&keys, "node-h29b", "https://127.0.0.1:8444"),
        ),
        ("/api/v1/monitoring/status", status(&keys)),
        ("/api/v1/reconciliation/summaries", summary(&keys)),
    ] {
        let (s, _, v) = post(path, jws).await;
        assert_problem(path, (s, &v), (400, "ndxp.signature_invalid"), "revoked");
    }
    assert_eq!(
        env.store.list_registrations(None).await.unwrap().len(),
        before,
        "a refused registration is stored nowhere"
    );
    // A new signing key of the same member is accepted.
    let fresh = env.member_keys(PROVIDER);
    let (s, _, v) = post("/api/v1/monitoring/status", status(&fresh)).await;
    assert_eq!(s, 201, "{v}");
    let (s, _, v) = post(
        "/api/v1/registrations",
        env.registration(&fresh, "node-h29b", "https://127.0.0.1:8444"),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    env.stop().await;
}
