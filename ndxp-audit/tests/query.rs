#![allow(clippy::unwrap_used)]
//! Transaction queries on every backend: filters, newest-first paging with
//! a cursor, bad parameters, and parsing from a URL query string.

mod support;

use std::collections::HashSet;

use axum::extract::Query;
use chrono::{Duration, Utc};
use ndxp_audit::log::MessageLog;
use ndxp_audit::query::{QueryError, TransactionQuery};
use ndxp_test_support::db::backends;
use support::{exchange, new_log};

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

#[tokio::test]
async fn filters_and_paging_on_every_backend() {
    for backend in backends() {
        let (_dir, db, log) = new_log(backend, "node-a/1").await;
        let t0 = Utc::now() - Duration::seconds(100);
        let mut ids = Vec::new();
        for i in 0..10u32 {
            let mut e = exchange(i);
            e.received_at = t0 + Duration::seconds(i64::from(i));
            e.forwarded_at = Some(e.received_at + Duration::milliseconds(3));
            e.responded_at = e.received_at + Duration::milliseconds(25);
            if i % 3 == 0 {
                e.status = 502;
                e.problem_code = Some("ndxp.provider_unreachable".into());
            }
            if i >= 7 {
                e.client = "VN/GOV/000.00.00.G01/OTHER".parse().unwrap();
            }
            if i == 4 || i == 5 {
                e.trace_id = Some(TRACE.parse().unwrap());
            }
            ids.push(e.transaction_id.to_string());
            log.append(e).await.unwrap();
        }
        // Everything, newest first.
        let all = log
            .transactions(&TransactionQuery::default())
            .await
            .unwrap();
        assert_eq!(all.items.len(), 10);
        assert_eq!(all.items[0].transaction_id, ids[9]);
        assert_eq!(all.items[9].transaction_id, ids[0]);
        assert_eq!(all.next, None);
        let first = &all.items[9];
        assert_eq!(first.duration_ms, 25);
        assert_eq!(first.user_id.as_deref(), Some("citizen-0"));
        assert_eq!(first.request_id.as_deref(), Some("req-0"));
        assert_eq!(
            first.forwarded_at,
            Some(first.received_at + Duration::milliseconds(3))
        );

        // Filters.
        let q = |f: fn(&mut TransactionQuery)| {
            let mut q = TransactionQuery::default();
            f(&mut q);
            q
        };
        let failed = log
            .transactions(&q(|q| q.status = Some(502)))
            .await
            .unwrap();
        assert_eq!(failed.items.len(), 4);
        assert!(failed
            .items
            .iter()
            .all(|t| t.problem_code.as_deref() == Some("ndxp.provider_unreachable")));
        let by_code = log
            .transactions(&q(|q| {
                q.problem_code = Some("ndxp.provider_unreachable".into())
            }))
            .await
            .unwrap();
        assert_eq!(by_code.items.len(), 4);
        let other = log
            .transactions(&q(|q| q.client = Some("VN/GOV/000.00.00.G01/OTHER".into())))
            .await
            .unwrap();
        assert_eq!(other.items.len(), 3);
        // One trace: its records carry the id; the others have none.
        let traced = log
            .transactions(&q(|q| q.trace_id = Some(TRACE.into())))
            .await
            .unwrap();
        let got: Vec<_> = traced.items.iter().map(|t| &t.transaction_id).collect();
        assert_eq!(got, vec![&ids[5], &ids[4]]);
        assert!(traced
            .items
            .iter()
            .all(|t| t.trace_id.as_deref() == Some(TRACE)));
        assert_eq!(all.items[0].trace_id, None);
        let none = log
            .transactions(&q(|q| q.service = Some("VN/GOV/X/Y/z/v1".into())))
            .await
            .unwrap();
        assert!(none.items.is_empty());
        let mut window = TransactionQuery {
            from: Some(t0 + Duration::seconds(2)),
            to: Some(t0 + Duration::seconds(5)),
            ..TransactionQuery::default()
        };
        let w = log.transactions(&window).await.unwrap();
        let got: Vec<_> = w.items.iter().map(|t| t.transaction_id.clone()).collect();
        assert_eq!(got, vec![ids[4].clone(), ids[3].clone(), ids[2].clone()]);

        // Paging: 3 at a time, each exactly once, in order.
        window = TransactionQuery {
            limit: Some(3),
            ..TransactionQuery::default()
        };
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = log.transactions(&window).await.unwrap();
            pages += 1;
            seen.extend(page.items.iter().map(|t| t.transaction_id.clone()));
            match page.next {
                Some(next) => window.after = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 4);
        let expected: Vec<_> = ids.iter().rev().cloned().collect();
        assert_eq!(seen, expected);
        assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 10);

        // Bad parameters are the caller's mistake.
        for bad in [
            q(|q| q.limit = Some(0)),
            q(|q| q.limit = Some(5000)),
            q(|q| q.after = Some("not-a-cursor".into())),
            q(|q| q.trace_id = Some("' OR 1=1 --".into())),
            q(|q| q.trace_id = Some(TRACE.to_uppercase())),
            TransactionQuery {
                from: Some(t0 + Duration::seconds(5)),
                to: Some(t0),
                ..TransactionQuery::default()
            },
        ] {
            let err = log.transactions(&bad).await.unwrap_err();
            assert!(matches!(err, QueryError::Invalid(_)), "{err:?}");
        }
        log.close().await;
        db.drop_now().await;
    }
}

#[test]
fn the_query_parses_from_a_url_query_string() {
    let uri: axum::http::Uri = "/api/v1/transactions?from=2026-01-01T00:00:00Z&client=VN/GOV/000.00.00.G22/QLHT&status=502&limit=20"
        .parse()
        .unwrap();
    let Query(q) = Query::<TransactionQuery>::try_from_uri(&uri).unwrap();
    assert_eq!(q.status, Some(502));
    assert_eq!(q.limit, Some(20));
    assert_eq!(q.client.as_deref(), Some("VN/GOV/000.00.00.G22/QLHT"));
    assert_eq!(q.from.unwrap().to_rfc3339(), "2026-01-01T00:00:00+00:00");
    // A typo is refused, not ignored.
    let uri: axum::http::Uri = "/x?stauts=502".parse().unwrap();
    assert!(Query::<TransactionQuery>::try_from_uri(&uri).is_err());
    let uri: axum::http::Uri = "/x?status=abc".parse().unwrap();
    assert!(Query::<TransactionQuery>::try_from_uri(&uri).is_err());
}

mod cursor_input {
    use std::sync::OnceLock;

    use ndxp_audit::log::{MessageLog, SqlMessageLog};
    use ndxp_audit::query::{QueryError, TransactionQuery};
    use proptest::prelude::*;

    use crate::support::open_log;

    struct Env {
        rt: tokio::runtime::Runtime,
        log: SqlMessageLog,
        _dir: tempfile::TempDir,
    }

    fn env() -> &'static Env {
        static E: OnceLock<Env> = OnceLock::new();
        E.get_or_init(|| {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let url = format!("sqlite://{}", dir.path().join("q.db").display());
            let log = rt.block_on(async {
                let log = open_log(&url, "w").await;
                for i in 0..3 {
                    log.append(super::support::exchange(i)).await.unwrap();
                }
                log
            });
            Env { rt, log, _dir: dir }
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// Any `after` value is either a cursor or refused as invalid;
        /// never a panic or a database error.
        #[test]
        fn arbitrary_cursors_are_refused_cleanly(after in ".{0,80}") {
            let e = env();
            let q = TransactionQuery { after: Some(after), ..TransactionQuery::default() };
            match e.rt.block_on(e.log.transactions(&q)) {
                Ok(page) => prop_assert!(page.items.len() <= 3),
                Err(QueryError::Invalid(_)) => {}
                Err(other) => prop_assert!(false, "{other:?}"),
            }
        }

        /// Cursors built from arbitrary parts page without errors.
        #[test]
        fn well_formed_cursors_with_odd_writers_work(writer in ".{0,40}", seq in any::<i64>()) {
            use base64::Engine as _;
            let e = env();
            let raw = format!("2026-01-01T00:00:00.000000000Z|{seq}|{writer}");
            let after = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
            let q = TransactionQuery { after: Some(after), ..TransactionQuery::default() };
            let page = e.rt.block_on(e.log.transactions(&q));
            prop_assert!(page.is_ok(), "{page:?}");
        }
    }

    #[test]
    fn the_log_is_queryable() {
        let e = env();
        assert_eq!(e.rt.block_on(e.log.head("w")).unwrap().seq, 3);
    }
}
