//! Summaries and drill-down answers read from a real message log
//! (`summarize_log`, `bucket_ids_from_log`) on SQLite and, with
//! NDXP_TEST_POSTGRES_URL, PostgreSQL; and merging summaries of two logs.
#![allow(clippy::unwrap_used)]

mod support;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ndxp_audit::log::{Exchange, MessageLog, Role, SignedMeta};
use ndxp_audit::reconcile::{
    bucket_ids_from_log, summarize, summarize_log, BucketKey, Entry, IdSetDigest, Outcome, Period,
    Side, LOG_TIME_MARGIN,
};
use ndxp_core::TransactionId;
use ndxp_test_support::db::backends;
use proptest::prelude::*;
use support::new_log;

const CLIENT: &str = "VN/GOV/000.00.00.G22/QLHT";
const SERVICE: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1";

fn id_at(t: DateTime<Utc>, n: u64) -> TransactionId {
    let mut r = [0u8; 10];
    r[2..].copy_from_slice(&n.to_be_bytes());
    let u =
        uuid::Builder::from_unix_timestamp_millis(u64::try_from(t.timestamp_millis()).unwrap(), &r)
            .into_uuid();
    TransactionId::from_uuid(u).unwrap()
}

fn exchange(id: TransactionId, received_at: DateTime<Utc>, role: Role, status: u16) -> Exchange {
    let meta = SignedMeta {
        signature_input: "ndxp=()".into(),
        signature: "ndxp=:AAAA:".into(),
        content_digest: "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:".into(),
        base: String::new(),
        signer_cert_der: vec![0x30, 0x00],
        chain_der: vec![],
    };
    Exchange {
        transaction_id: id,
        client: CLIENT.parse().unwrap(),
        service: SERVICE.parse().unwrap(),
        role,
        received_at,
        forwarded_at: None,
        backend_answered_at: None,
        responded_at: received_at,
        user_id: None,
        request_id: None,
        status,
        problem_code: None,
        request_bytes: 0,
        response_bytes: 0,
        request: meta,
        response: None,
        body: None,
        trace_id: None,
    }
}

#[tokio::test]
async fn summaries_and_bucket_ids_from_the_log_match_the_pure_summary() {
    for backend in backends() {
        let (_dir, db, log) = new_log(backend, "node/1").await;
        let day = Period::day(Utc.with_ymd_and_hms(2026, 11, 27, 5, 0, 0).unwrap());
        let mut entries = Vec::new();
        let mut n = 0;
        // More rows than one page of the scan, with both roles and a few
        // outcomes; some logged just after the period (a late clock) but
        // whose id is inside it, and some outside the period entirely.
        for i in 0..5_200u64 {
            n += 1;
            let t = day.start() + Duration::seconds(i64::try_from(i * 16).unwrap());
            let id = id_at(t, n);
            let status = [200, 200, 404, 504][usize::try_from(i % 4).unwrap()];
            let role = if i % 3 == 0 {
                Role::Consumer
            } else {
                Role::Provider
            };
            log.append(exchange(id, t, role, status)).await.unwrap();
            if role == Role::Provider {
                entries.push(Entry {
                    transaction_id: id,
                    client: CLIENT.parse().unwrap(),
                    service: SERVICE.parse().unwrap(),
                    outcome: Outcome::from_status(status),
                    at: t,
                });
            }
        }
        let late = id_at(day.end() - Duration::seconds(1), 999_001);
        log.append(exchange(
            late,
            day.end() + Duration::minutes(2),
            Role::Provider,
            200,
        ))
        .await
        .unwrap();
        entries.push(Entry {
            transaction_id: late,
            client: CLIENT.parse().unwrap(),
            service: SERVICE.parse().unwrap(),
            outcome: Outcome::Ok,
            at: day.end(),
        });
        let next_day = id_at(day.end() + Duration::minutes(1), 999_002);
        log.append(exchange(
            next_day,
            day.end() + Duration::minutes(1),
            Role::Provider,
            200,
        ))
        .await
        .unwrap();
        let far = id_at(day.end() + LOG_TIME_MARGIN * 3, 999_003);
        log.append(exchange(
            far,
            day.end() + LOG_TIME_MARGIN * 3,
            Role::Provider,
            200,
        ))
        .await
        .unwrap();

        let got = summarize_log(log.pool(), day).await.unwrap();
        let want = summarize(Side::Provider, day, entries.clone());
        assert_eq!(got.provider, want);
        assert_eq!(
            got.outside_period, 1,
            "the next day's record within the margin"
        );
        assert!(got.gateway.buckets.is_empty());
        assert_eq!(got.consumer.total(), 5_200 / 3 + 1);

        let key = BucketKey {
            client: CLIENT.parse().unwrap(),
            service: SERVICE.parse().unwrap(),
            outcome: Outcome::Ok,
        };
        let ids = bucket_ids_from_log(log.pool(), day, Side::Provider, &key)
            .await
            .unwrap();
        let bucket = want.buckets.iter().find(|b| b.key == key).unwrap();
        assert_eq!(ids.len() as u64, bucket.count);
        assert_eq!(IdSetDigest::of(&ids), bucket.digest);
        assert!(ids.contains(&late) && !ids.contains(&next_day));
        log.close().await;
        db.drop_now().await;
    }
}

#[test]
fn merging_two_summaries_equals_summarizing_both_logs() {
    let day = Period::day(Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap());
    let e = |n: u64, status: u16| Entry {
        transaction_id: id_at(
            day.start() + Duration::minutes(i64::try_from(n).unwrap()),
            n,
        ),
        client: CLIENT.parse().unwrap(),
        service: SERVICE.parse().unwrap(),
        outcome: Outcome::from_status(status),
        at: day.start(),
    };
    let a: Vec<Entry> = (1..50).map(|n| e(n, 200)).collect();
    let b: Vec<Entry> = (50..80)
        .map(|n| e(n, if n % 2 == 0 { 200 } else { 500 }))
        .collect();
    let mut merged = summarize(Side::Consumer, day, a.clone());
    merged
        .merge(&summarize(Side::Consumer, day, b.clone()))
        .unwrap();
    let all = summarize(Side::Consumer, day, a.into_iter().chain(b));
    assert_eq!(merged, all);
    let other_day = Period::day(day.end());
    assert!(merged
        .merge(&summarize(Side::Consumer, other_day, []))
        .is_err());
}

proptest! {
    #[test]
    fn combine_is_the_digest_of_the_multiset_union(xs in proptest::collection::vec(any::<u64>(), 0..20), ys in proptest::collection::vec(any::<u64>(), 0..20)) {
        let t = Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap();
        let a: Vec<TransactionId> = xs.iter().map(|n| id_at(t, *n)).collect();
        let b: Vec<TransactionId> = ys.iter().map(|n| id_at(t, *n)).collect();
        let union: Vec<TransactionId> = a.iter().chain(&b).copied().collect();
        prop_assert_eq!(IdSetDigest::of(&a).combine(IdSetDigest::of(&b)), IdSetDigest::of(&union));
    }
}
