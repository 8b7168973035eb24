//! The monitoring records of the registry store (migration 3), on SQLite
//! and (with NDXP_TEST_POSTGRES_URL) PostgreSQL: replayed jti refused,
//! summaries idempotent, drill-downs addressed to one node only, and the
//! registry version and audit trail untouched.
#![allow(clippy::unwrap_used)]

mod store_support;

use chrono::{Duration, TimeZone, Utc};
use ndxp_core::{MemberId, NodeName};
use ndxp_registry::store::monitoring::{NewDrilldown, NewSummary, SummaryStored};
use ndxp_registry::store::{MonitoringStore, RegistryStore, SqlStore, StoreError, StoreOptions};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::SqlSafeStr;
use store_support::with_each_backend;

fn m(s: &str) -> MemberId {
    s.parse().unwrap()
}
fn n(s: &str) -> NodeName {
    s.parse().unwrap()
}

#[tokio::test]
async fn monitoring_records_on_every_backend() {
    with_each_backend(|store| async move {
        let version = store.registry_version().await.unwrap();
        let (a, b) = (m("VN/GOV/000.00.00.H29"), m("VN/GOV/000.00.00.G22"));
        let now = Utc::now();

        // Status: stored, latest per node, history newest first.
        store
            .record_status(&a, &n("n1"), "j1", now, r#"{"v":1}"#, "jws1")
            .await
            .unwrap();
        store
            .record_status(
                &a,
                &n("n1"),
                "j2",
                now + Duration::seconds(1),
                r#"{"v":2}"#,
                "jws2",
            )
            .await
            .unwrap();
        store
            .record_status(&b, &n("n2"), "j1", now, r#"{"v":3}"#, "jws3")
            .await
            .unwrap();
        // Same jti of the same member: a replay, refused, nothing stored.
        let e = store
            .record_status(&a, &n("n1"), "j1", now, r#"{"v":9}"#, "jws9")
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::AlreadyExists { .. }), "{e}");
        let latest = store.latest_statuses().await.unwrap();
        assert_eq!(latest.len(), 2);
        assert_eq!(latest[0].member, b);
        assert_eq!(latest[1].status, r#"{"v":2}"#);
        let hist = store.status_history(&a, &n("n1"), 10).await.unwrap();
        assert_eq!(
            hist.iter().map(|h| h.status.as_str()).collect::<Vec<_>>(),
            [r#"{"v":2}"#, r#"{"v":1}"#]
        );

        // Summaries: the same again is unchanged, a different one refused.
        let start = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        let sum = NewSummary {
            member: a.clone(),
            node: Some(n("n1")),
            side: "provider".into(),
            period_start: start,
            period_end: start + Duration::days(1),
            summary: "{\"s\":1}".into(),
            signed: "x".into(),
        };
        assert_eq!(
            store.store_summary(&sum, "s1", now).await.unwrap(),
            SummaryStored::Created
        );
        assert_eq!(
            store.store_summary(&sum, "s2", now).await.unwrap(),
            SummaryStored::Unchanged
        );
        let other = NewSummary {
            summary: "{\"s\":2}".into(),
            ..sum.clone()
        };
        let e = store.store_summary(&other, "s3", now).await.unwrap_err();
        assert!(matches!(e, StoreError::AlreadyExists { .. }), "{e}");
        // A replayed jti is refused even for new content.
        let fresh = NewSummary {
            side: "consumer".into(),
            ..sum.clone()
        };
        assert!(store.store_summary(&fresh, "s1", now).await.is_err());
        let listed = store
            .list_summaries(start, start + Duration::days(1))
            .await
            .unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].summary, "{\"s\":1}");
        assert!(store
            .list_summaries(start + Duration::days(1), start + Duration::days(2))
            .await
            .unwrap()
            .is_empty());

        // Drill-downs: recorded once, polled by their node only, answered once.
        let req = NewDrilldown {
            member: a.clone(),
            node: Some(n("n1")),
            side: "provider".into(),
            period_start: start,
            period_end: start + Duration::days(1),
            bucket: "{\"k\":1}".into(),
        };
        assert_eq!(
            store
                .request_drilldowns(std::slice::from_ref(&req), now)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            store
                .request_drilldowns(std::slice::from_ref(&req), now)
                .await
                .unwrap(),
            0
        );
        let none = store
            .poll_drilldowns(&a, Some(&n("other")), "p0", now, 10)
            .await
            .unwrap();
        assert!(none.is_empty());
        let got = store
            .poll_drilldowns(&a, Some(&n("n1")), "p1", now, 10)
            .await
            .unwrap();
        assert_eq!(got.len(), 1);
        let id = got[0].id;
        let e = store
            .answer_drilldown(id, &b, Some(&n("n1")), "a0", now, "[]", "x")
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::NotFound { .. }), "{e}");
        let done = store
            .answer_drilldown(id, &a, Some(&n("n1")), "a1", now, "[\"x\"]", "x")
            .await
            .unwrap();
        assert_eq!(done.answer.as_deref(), Some("[\"x\"]"));
        store
            .answer_drilldown(id, &a, Some(&n("n1")), "a2", now, "[\"x\"]", "x")
            .await
            .unwrap();
        let e = store
            .answer_drilldown(id, &a, Some(&n("n1")), "a3", now, "[]", "x")
            .await
            .unwrap_err();
        assert!(matches!(e, StoreError::InvalidTransition { .. }), "{e}");
        assert!(store
            .poll_drilldowns(&a, Some(&n("n1")), "p2", now, 10)
            .await
            .unwrap()
            .is_empty());
        assert_eq!(
            store
                .list_drilldowns(start, start + Duration::days(1))
                .await
                .unwrap()
                .len(),
            1
        );

        // Operational records: the registry version and audit trail did not move.
        assert_eq!(store.registry_version().await.unwrap(), version);
        assert!(store.list_audit(0, 100).await.unwrap().is_empty());
        store
    })
    .await;
}

/// Migrations developed on parallel branches may land out of order: a
/// database already migrated accepts a later list that adds a version
/// below the ones applied (here 0, below 1 to 5).
#[tokio::test]
async fn a_migration_added_later_into_the_gap_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("r.db").display());
    let store = SqlStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(store.pool())
            .await
            .unwrap();
    assert_eq!(applied, [1, 2, 3, 4, 5]);
    let mk = |v: i64, sql: &'static str| {
        Migration::new(
            v,
            format!("m{v}").into(),
            MigrationType::Simple,
            sqlx::AssertSqlSafe(sql).into_sql_str(),
            false,
        )
    };
    store.close().await;
    // Reopening with the shipped list is a no-op (no error on the gap).
    let store = SqlStore::open(&url, &StoreOptions::default())
        .await
        .unwrap();
    let v0 = mk(0, "CREATE TABLE later_zero (x TEXT)");
    let pool = store.pool().clone();
    let checksums: Vec<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT version, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut list = Vec::new();
    for (v, sum) in checksums {
        let mut mig = mk(v, "SELECT 1");
        mig.checksum = sum.into();
        list.push(mig);
    }
    list.insert(0, v0);
    Migrator::with_migrations(list).run(&pool).await.unwrap();
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(applied, [0, 1, 2, 3, 4, 5]);
    sqlx::query("INSERT INTO later_zero (x) VALUES ('ok')")
        .execute(&pool)
        .await
        .unwrap();
    store.close().await;
}
