#![allow(clippy::unwrap_used)]
//! The SQL message log on every backend: append, read, chain across batches
//! and restarts, concurrent group commit, corrupt databases.

mod support;

use std::sync::Arc;

use chrono::Utc;
use ndxp_audit::log::{
    ChainHash, ChainHead, Exchange, LogError, LogOptions, MessageLog, Role, SqlMessageLog,
};
use ndxp_test_support::db::{backends, TestDatabase};
use support::{fake_exchange, new_log, open_log, sqlite_log, sqlite_url};

fn exchange(n: u32) -> Exchange {
    fake_exchange(n, Role::Provider)
}

fn check_chain(records: &[ndxp_audit::log::LogRecord]) {
    let mut prev = ChainHash::GENESIS;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.prev_hash, prev, "link of record {}", r.seq);
        assert_eq!(r.compute_hash().unwrap(), r.hash);
        prev = r.hash;
    }
}

#[tokio::test]
async fn append_read_and_restart_continue_the_chain() {
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDatabase::create(backend, dir.path()).await;
        let opts = LogOptions::default();
        let log = SqlMessageLog::open(&db.url, "node-a/1", &opts)
            .await
            .unwrap();
        let first = log.append(exchange(1)).await.unwrap();
        assert_eq!(first.seq, 1);
        assert_eq!(first.prev_hash, ChainHash::GENESIS);
        let second = log.append(exchange(2)).await.unwrap();
        assert_eq!(second.prev_hash, first.hash);
        // Another writer has its own chain.
        let other = SqlMessageLog::open(&db.url, "node-b/1", &opts)
            .await
            .unwrap();
        assert_eq!(other.append(exchange(9)).await.unwrap().seq, 1);
        other.close().await;
        log.close().await;

        let log = SqlMessageLog::open(&db.url, "node-a/1", &opts)
            .await
            .unwrap();
        assert_eq!(
            log.head("node-a/1").await.unwrap(),
            ChainHead {
                seq: 2,
                hash: second.hash
            }
        );
        let third = log.append(exchange(3)).await.unwrap();
        assert_eq!((third.seq, third.prev_hash), (3, second.hash));
        let all = log.read("node-a/1", 1, u64::MAX).await.unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], first);
        assert_eq!(all[2], third);
        check_chain(&all);
        assert_eq!(log.read("node-a/1", 2, 2).await.unwrap(), vec![second]);
        assert_eq!(log.writers().await.unwrap(), vec!["node-a/1", "node-b/1"]);
        assert_eq!(log.head("nobody").await.unwrap(), ChainHead::EMPTY);
        log.close().await;
        db.drop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_are_all_durable_and_chained() {
    for backend in backends() {
        let (_dir, db, log) = new_log(backend, "w").await;
        let log = Arc::new(log);
        let mut tasks = tokio::task::JoinSet::new();
        for t in 0..8u32 {
            let log = log.clone();
            tasks.spawn(async move {
                let mut got = Vec::new();
                for i in 0..25u32 {
                    let x = exchange(t * 100 + i);
                    let id = x.transaction_id;
                    let r = log.append(x).await.unwrap();
                    assert_eq!(r.exchange.transaction_id, id);
                    got.push(r);
                }
                got
            });
        }
        let mut acked = Vec::new();
        while let Some(r) = tasks.join_next().await {
            acked.extend(r.unwrap());
        }
        assert_eq!(acked.len(), 200);
        let log = Arc::into_inner(log).unwrap();
        assert!(log.commits() <= 200);
        log.close().await;
        // Every acknowledged record is in the database, in one intact chain.
        let log = open_log(&db.url, "w").await;
        let stored = log.read("w", 1, u64::MAX).await.unwrap();
        assert_eq!(stored.len(), 200);
        check_chain(&stored);
        for r in &acked {
            assert_eq!(&stored[r.seq as usize - 1], r);
        }
        log.close().await;
        db.drop_now().await;
    }
}

#[tokio::test]
async fn queued_appends_share_one_commit() {
    for backend in backends() {
        let (_dir, db, log) = new_log(backend, "w").await;
        let log = Arc::new(log);
        // All 100 appends are queued within microseconds of each other on
        // this single-threaded runtime, but the SQLite writer is a thread of
        // its own: it may commit the first few before the rest arrive (six
        // commits were seen on a loaded machine). Each commit waits for its
        // fsync, which outlasts queueing all the rest, so the appends still
        // share a handful of commits; one commit per append would be 100.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..100 {
            let log = log.clone();
            tasks.spawn(async move { log.append(exchange(i)).await.unwrap() });
        }
        let mut n = 0;
        while let Some(r) = tasks.join_next().await {
            r.unwrap();
            n += 1;
        }
        assert_eq!(n, 100);
        let commits = log.commits();
        assert!(
            (1..=20).contains(&commits),
            "{commits} commits for 100 appends"
        );
        let stored = log.read("w", 1, 1000).await.unwrap();
        check_chain(&stored);
        assert_eq!(stored.len(), 100);
        Arc::into_inner(log).unwrap().close().await;
        db.drop_now().await;
    }
}

#[tokio::test]
async fn max_batch_limits_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let opts = LogOptions {
        max_batch: 10,
        ..LogOptions::default()
    };
    let log = Arc::new(SqlMessageLog::open(&url, "w", &opts).await.unwrap());
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50 {
        let log = log.clone();
        tasks.spawn(async move { log.append(exchange(i)).await.unwrap() });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert!(log.commits() >= 5);
    Arc::into_inner(log).unwrap().close().await;
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let url = format!("sqlite://{}", path.display());
    let opts = LogOptions {
        acquire_timeout: std::time::Duration::from_secs(2),
        ..LogOptions::default()
    };
    // Others can read it: refused before SQLite looks, with the fix.
    let err = SqlMessageLog::open(&url, "w", &opts).await.unwrap_err();
    assert!(matches!(err, LogError::DatabaseFile(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains(&format!("chmod 600 {}", path.display())),
        "{err}"
    );
    // Private but not a database: SQLite's refusal.
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let err = SqlMessageLog::open(&url, "w", &opts).await.unwrap_err();
    assert!(matches!(err, LogError::Open { .. }), "{err:?}");
    assert!(err
        .to_string()
        .contains("cannot open the message log database"));
}

#[tokio::test]
async fn a_changed_row_is_reported_as_corrupt() {
    for backend in backends() {
        let (_dir, db, log) = new_log(backend, "w").await;
        for i in 0..3 {
            log.append(exchange(i)).await.unwrap();
        }
        sqlx::query("UPDATE message_log SET record = REPLACE(record, '\"status\":200', '\"status\":201') WHERE seq = 2")
            .execute(log.pool())
            .await
            .unwrap();
        let err = log.read("w", 1, 3).await.unwrap_err();
        assert!(matches!(err, LogError::Corrupt { .. }), "{err:?}");
        assert!(err.to_string().contains("record 2"), "{err}");
        sqlx::query("UPDATE message_log SET record = 'garbage' WHERE seq = 3")
            .execute(log.pool())
            .await
            .unwrap();
        log.close().await;
        // The head is checked on start.
        let err = SqlMessageLog::open(&db.url, "w", &LogOptions::default())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("record 3"), "{err}");
        db.drop_now().await;
    }
}

#[tokio::test]
async fn sqlite_commits_are_synchronous_in_wal_mode() {
    let (_dir, _url, log) = sqlite_log("w").await;
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(log.pool())
        .await
        .unwrap();
    assert_eq!(mode.to_lowercase(), "wal");
    // 2 = FULL: the WAL is synced at every commit.
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(log.pool())
        .await
        .unwrap();
    assert_eq!(sync, 2);
    log.close().await;
}

#[tokio::test]
async fn unsupported_url_and_bad_writer_are_refused() {
    let err = SqlMessageLog::open("mysql://x", "w", &LogOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::UnsupportedUrl(_)), "{err:?}");
    let err = SqlMessageLog::open("sqlite::memory:", "", &LogOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::InvalidWriter(_)), "{err:?}");
}

#[tokio::test]
async fn purge_keeps_a_checkpoint_and_the_rest_verifies() {
    for backend in backends() {
        let (_dir, db, log) = new_log(backend, "w").await;
        let mut all = Vec::new();
        for i in 0..10 {
            all.push(log.append(exchange(i)).await.unwrap());
        }
        assert_eq!(log.checkpoint("w").await.unwrap(), ChainHead::EMPTY);
        let cp = log.purge_before("w", 6).await.unwrap();
        assert_eq!(
            cp,
            ChainHead {
                seq: 5,
                hash: all[4].hash
            }
        );
        assert_eq!(log.checkpoint("w").await.unwrap(), cp);
        let left = log.read("w", 1, 100).await.unwrap();
        assert_eq!(left, all[5..].to_vec());
        assert_eq!(left[0].prev_hash, cp.hash);
        // Purging below the checkpoint again changes nothing.
        assert_eq!(log.purge_before("w", 3).await.unwrap(), cp);
        // The head record always stays.
        let err = log.purge_before("w", 11).await.unwrap_err();
        assert!(
            matches!(
                err,
                LogError::PurgeRange {
                    before: 11,
                    head: 10
                }
            ),
            "{err:?}"
        );
        assert!(log.purge_before("w", 1).await.is_err());
        log.close().await;
        let log = open_log(&db.url, "w").await;
        let next = log.append(exchange(11)).await.unwrap();
        assert_eq!((next.seq, next.prev_hash), (11, all[9].hash));
        log.close().await;
        db.drop_now().await;
    }
}

#[test]
fn the_write_path_encoding_is_the_canonical_encoding() {
    for n in [0, 1, 77] {
        let mut e = exchange(n);
        e.user_id = Some("ü \"quoted\" \n".into());
        e.forwarded_at = Some(Utc::now());
        let (record, text) = ndxp_audit::log::LogRecord::new_canonical(
            5,
            "w/é".into(),
            ChainHash([9; 32]),
            e.clone(),
        )
        .unwrap();
        let plain =
            ndxp_audit::log::LogRecord::new(5, "w/é".into(), ChainHash([9; 32]), e).unwrap();
        assert_eq!(record, plain);
        assert_eq!(text.as_bytes(), plain.to_canonical().unwrap().as_slice());
    }
}

#[tokio::test]
async fn certificates_are_stored_once_and_checked_on_read() {
    for backend in backends() {
        let (_dir, db, log) = new_log(backend, "w").await;
        let mut e = exchange(1);
        e.request.chain_der = vec![vec![0x30, 0x01, 0x07]];
        let first = log.append(e.clone()).await.unwrap();
        log.append(e.clone()).await.unwrap();
        // Two certificates (signer, intermediate), stored once each; rows
        // refer to them by SHA-256 and read back whole.
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM message_log_certificates")
            .fetch_one(log.pool())
            .await
            .unwrap();
        assert_eq!(n, 2);
        let row: String = sqlx::query_scalar("SELECT record FROM message_log WHERE seq = 1")
            .fetch_one(log.pool())
            .await
            .unwrap();
        assert!(
            row.contains("signer_cert_sha256") && !row.contains("signer_cert_der"),
            "{row}"
        );
        assert_eq!(log.read("w", 1, 1).await.unwrap()[0], first);
        // A changed certificate changes the record: corrupt.
        sqlx::query("UPDATE message_log_certificates SET der = 'MAMBAgM='")
            .execute(log.pool())
            .await
            .unwrap();
        let err = log.read("w", 1, 2).await.unwrap_err();
        assert!(
            err.to_string().contains("record 1") && err.to_string().contains("changed"),
            "{err}"
        );
        // A missing one is named.
        sqlx::query("DELETE FROM message_log_certificates")
            .execute(log.pool())
            .await
            .unwrap();
        let err = log.read("w", 1, 2).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("missing from message_log_certificates"),
            "{err}"
        );
        log.close().await;
        db.drop_now().await;
    }
}

/// The query plan of `sql` on the log's SQLite database, one line.
async fn plan(log: &SqlMessageLog, sql: &str) -> String {
    let rows: Vec<(i64, i64, i64, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(log.pool())
            .await
            .unwrap();
    rows.into_iter().map(|r| r.3).collect::<Vec<_>>().join("; ")
}

#[tokio::test]
async fn a_schema_6_database_upgrades_to_lean_indexes_and_its_records_still_verify() {
    let (_dir, url, log) = sqlite_log("w").await;
    // Put the database back to schema 6: its two indexes as they were, and
    // version 7 not applied.
    let mut tx = log.pool().begin().await.unwrap();
    for sql in [
        "DROP INDEX message_log_trace",
        "CREATE INDEX message_log_trace ON message_log (trace_id)",
        "CREATE INDEX message_log_transaction ON message_log (transaction_id)",
        "DELETE FROM _ndxp_audit_migrations WHERE version = 7",
    ] {
        sqlx::query(sql).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    let mut traced = exchange(1);
    traced.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap());
    let first = log.append(traced).await.unwrap();
    log.append(exchange(2)).await.unwrap();
    log.close().await;

    let log = open_log(&url, "w").await;
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'message_log' \
         AND sql IS NOT NULL ORDER BY name",
    )
    .fetch_all(log.pool())
    .await
    .unwrap();
    assert_eq!(
        indexes,
        [
            "message_log_client",
            "message_log_received",
            "message_log_service",
            "message_log_trace"
        ]
    );
    // The partial index still serves a lookup by trace id.
    let p = plan(
        &log,
        "SELECT seq FROM message_log WHERE trace_id = '4bf92f3577b34da6a3ce929d0e0e4736'",
    )
    .await;
    assert!(p.contains("message_log_trace"), "{p}");
    log.append(exchange(3)).await.unwrap();
    let records = log.read("w", 1, 10).await.unwrap();
    assert_eq!(records.len(), 3);
    assert_eq!(records[0], first);
    check_chain(&records);
    let page = log
        .transactions(&ndxp_audit::query::TransactionQuery {
            trace_id: Some("4bf92f3577b34da6a3ce929d0e0e4736".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].seq, 1);
    log.close().await;
}
