//! Durable append throughput of the message log, run by `cargo xtask bench
//! log`.
//!
//! Records are realistic: a consumer node's record of a signed request and
//! a signed response (RFC 9421 metadata, the signer certificates and the
//! intermediate CA, no bodies), about 2-3 KiB each. Three measurements in
//! one run, each durable (the append returns after COMMIT; SQLite runs WAL
//! with `synchronous = FULL`):
//!
//! - `sqlite_rps`: group commit, 256 concurrent appenders;
//! - `sqlite_fsync_each_rps`: `max_batch = 1` and one appender at a time,
//!   i.e. one commit (one fsync) per record;
//! - `sqlite_small_rps`: group commit as `sqlite_rps`, with a smaller
//!   record (`small_record_bytes`: the request's metadata and signer
//!   certificate only, no intermediate, no response), for comparison;
//! - `postgres_rps`: group commit, 256 appenders, on the PostgreSQL of
//!   `NDXP_BENCH_POSTGRES_URL`, else `NDXP_TEST_POSTGRES_URL`, else
//!   `postgres://postgres@127.0.0.1:5432/test` (a fresh schema, dropped
//!   afterwards); `null` with `postgres_error` when unreachable.
//!
//! Argument 1: records per group-commit run (default 200,000). The SQLite
//! files live under `target/ndxp-bench/log-db` (a real disk, not a tmpfs).
//! Prints one JSON object on stdout.
#![allow(clippy::unwrap_used, missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use ndxp_audit::log::{Exchange, LogOptions, MessageLog, Role, SignedMeta, SqlMessageLog};
use ndxp_core::TransactionId;
use ndxp_sign::{digest, profile};
use ndxp_test_support::db::TestDatabase;
use ndxp_test_support::pki;
use serde_json::json;

const APPENDERS: usize = 256;

fn template() -> Exchange {
    let dir = tempfile::tempdir().unwrap();
    let ca = pki::init_pki(dir.path(), "http://ocsp.ndxp.example.vn/ocsp");
    let signer = |member: &str| {
        let s = pki::member_signer(&ca, &member.parse().unwrap());
        profile::Signer::new(s.key, s.chain[0].clone(), s.chain[1..].to_vec()).unwrap()
    };
    let consumer = signer("VN/GOV/000.00.00.G22");
    let provider = signer("VN/GOV/000.00.00.H29");
    let id = TransactionId::new();
    let (mut req, ()) = http::Request::get(
        "https://node.h29.example.vn:8443/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/persons/001099012345?fields=name,dob,address",
    )
    .header(profile::NDXP_CLIENT, "VN/GOV/000.00.00.G22/QLHT")
    .header(profile::NDXP_ID, id.to_string())
    .body(())
    .unwrap()
    .into_parts();
    let req_cd = digest::content_digest(b"");
    let now = Utc::now();
    let info = profile::sign_request(&mut req, &req_cd, &consumer, now).unwrap();
    let body =
        br#"{"id":"001099012345","name":"Nguyen Van A","dob":"1990-01-01","address":"Ha Noi"}"#;
    let resp_cd = digest::content_digest(body);
    let (mut resp, ()) = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts();
    let rinfo = profile::sign_response(&mut resp, &req, &resp_cd, &provider, now).unwrap();
    let meta = |i, cd, s| SignedMeta::signed_by(i, cd, s).unwrap();
    Exchange {
        transaction_id: id,
        client: "VN/GOV/000.00.00.G22/QLHT".parse().unwrap(),
        service: "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1".parse().unwrap(),
        role: Role::Consumer,
        received_at: now,
        forwarded_at: Some(now),
        backend_answered_at: Some(now),
        responded_at: now,
        status: 200,
        problem_code: None,
        request_bytes: 0,
        response_bytes: body.len() as u64,
        user_id: Some("citizen-7f3a9c".into()),
        request_id: Some("qlht-2026-000123".into()),
        request: meta(info, req_cd, &consumer),
        response: Some(meta(rinfo, resp_cd, &provider)),
        body: None,
        trace_id: None,
    }
}

fn fresh(t: &Exchange) -> Exchange {
    let mut e = t.clone();
    e.transaction_id = TransactionId::new();
    let now = Utc::now();
    e.received_at = now;
    e.forwarded_at = Some(now);
    e.backend_answered_at = Some(now);
    e.responded_at = now;
    e
}

/// Appends `total` records from `appenders` concurrent tasks; records/s.
async fn run(
    url: &str,
    options: &LogOptions,
    appenders: usize,
    total: usize,
    t: &Exchange,
) -> (f64, u64) {
    let log = Arc::new(SqlMessageLog::open(url, "bench/1", options).await.unwrap());
    // Warm up (connections, page cache).
    for _ in 0..100 {
        log.append(fresh(t)).await.unwrap();
    }
    let commits_before = log.commits();
    let per = total / appenders;
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..appenders {
        let log = log.clone();
        let t = t.clone();
        tasks.spawn(async move {
            for _ in 0..per {
                log.append(fresh(&t)).await.unwrap();
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    let commits = log.commits() - commits_before;
    let head = log.head("bench/1").await.unwrap();
    assert_eq!(
        head.seq as usize,
        100 + per * appenders,
        "every append is stored"
    );
    Arc::into_inner(log).unwrap().close().await;
    ((per * appenders) as f64 / secs, commits)
}

/// One appender, one commit per record, for about `window`.
async fn fsync_each(url: &str, t: &Exchange, window: Duration) -> f64 {
    let options = LogOptions {
        max_batch: 1,
        ..LogOptions::default()
    };
    let log = SqlMessageLog::open(url, "bench/1", &options).await.unwrap();
    for _ in 0..20 {
        log.append(fresh(t)).await.unwrap();
    }
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < window {
        log.append(fresh(t)).await.unwrap();
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    log.close().await;
    n as f64 / secs
}

fn main() {
    let total: usize = std::env::args()
        .nth(1)
        .filter(|a| !a.starts_with('-'))
        .map(|a| a.parse().expect("records per run must be a number"))
        .unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let t = template();
        let sample = ndxp_audit::log::LogRecord::new(1, "bench/1".into(), ndxp_audit::log::ChainHash::GENESIS, fresh(&t))
            .unwrap()
            .to_canonical()
            .unwrap();
        let record_bytes = sample.len();
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/ndxp-bench/log-db");
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let opts = LogOptions::default();

        eprintln!("==> sqlite, group commit, {APPENDERS} appenders, {total} records of {record_bytes} bytes");
        let url = format!("sqlite://{}", base.join("group.db").display());
        let (sqlite_rps, sqlite_commits) = run(&url, &opts, APPENDERS, total, &t).await;
        eprintln!("    {sqlite_rps:.0} records/s in {sqlite_commits} commits");

        let mut small = t.clone();
        small.request.chain_der.clear();
        small.response = None;
        let small_bytes = ndxp_audit::log::LogRecord::new(1, "bench/1".into(), ndxp_audit::log::ChainHash::GENESIS, fresh(&small))
            .unwrap()
            .to_canonical()
            .unwrap()
            .len();
        eprintln!("==> sqlite, group commit, {APPENDERS} appenders, {total} records of {small_bytes} bytes");
        let url = format!("sqlite://{}", base.join("small.db").display());
        let (small_rps, _) = run(&url, &opts, APPENDERS, total, &small).await;
        eprintln!("    {small_rps:.0} records/s");

        eprintln!("==> sqlite, one commit per record, one appender, 5 s");
        let url = format!("sqlite://{}", base.join("each.db").display());
        let each = fsync_each(&url, &t, Duration::from_secs(5)).await;
        eprintln!("    {each:.0} records/s");

        let pg_url = std::env::var("NDXP_BENCH_POSTGRES_URL")
            .or_else(|_| std::env::var("NDXP_TEST_POSTGRES_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let pg_base = pg_url.clone();
        // TestDatabase panics when the server is unreachable: probe first.
        let reachable = {
            let p = sqlx::postgres::PgPoolOptions::new()
                .acquire_timeout(Duration::from_secs(3))
                .connect(&pg_base)
                .await;
            match p {
                Ok(pool) => {
                    pool.close().await;
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            }
        };
        let (postgres_rps, postgres_commits, postgres_error) = match reachable {
            Ok(()) => {
                eprintln!("==> postgres, group commit, {APPENDERS} appenders, {total} records");
                let db = TestDatabase::postgres(&pg_base).await;
                let (rps, commits) = run(&db.url, &opts, APPENDERS, total, &t).await;
                db.drop_now().await;
                eprintln!("    {rps:.0} records/s in {commits} commits");
                (Some(rps.round()), Some(commits), None)
            }
            Err(e) => {
                eprintln!("    postgres at {} unreachable: {e}", ndxp_core::dburl::redact(&pg_base));
                (None, None, Some(e))
            }
        };
        let _ = std::fs::remove_dir_all(&base);
        println!(
            "{}",
            json!({
                "sqlite_rps": sqlite_rps.round(),
                "sqlite_fsync_each_rps": each.round(),
                "postgres_rps": postgres_rps,
                "record_bytes": record_bytes,
                "sqlite_small_rps": small_rps.round(),
                "small_record_bytes": small_bytes,
                "records_per_run": total / APPENDERS * APPENDERS,
                "appenders": APPENDERS,
                "sqlite_commits": sqlite_commits,
                "postgres_commits": postgres_commits,
                "postgres_error": postgres_error,
            })
        );
    });
}
