//! Reconciliation: known disagreements are reported exactly, agreement is clean.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::convert::Infallible;

use chrono::{TimeZone, Utc};
use ndxp_audit::reconcile::{
    compare, drill_down, summarize, BucketKey, Difference, DifferenceKind, Entry, Outcome, Period,
    Report, Side, Summary,
};
use ndxp_core::{ServiceId, SubsystemId, TransactionId};
use proptest::prelude::*;

const HOUR_START_MS: u64 = 1_767_261_600_000; // 2026-01-01T10:00:00Z

fn period() -> Period {
    Period::hour(Utc.with_ymd_and_hms(2026, 1, 1, 10, 30, 0).unwrap())
}

fn id_at(offset_ms: u64, n: u64) -> TransactionId {
    let mut r = [0u8; 10];
    r[2..].copy_from_slice(&n.to_be_bytes());
    let u = uuid::Builder::from_unix_timestamp_millis(HOUR_START_MS + offset_ms, &r).into_uuid();
    TransactionId::from_uuid(u).unwrap()
}

fn client(i: usize) -> SubsystemId {
    format!("EE/GOV/7000{i}/client{i}").parse().unwrap()
}

fn service(i: usize) -> ServiceId {
    format!("EE/COM/8000{i}/prov/svc{i}/v1").parse().unwrap()
}

fn entry(n: u64, c: usize, s: usize, outcome: Outcome) -> Entry {
    let transaction_id = id_at(n * 1000 % 3_600_000, n);
    Entry {
        transaction_id,
        client: client(c),
        service: service(s),
        outcome,
        at: Utc
            .timestamp_millis_opt((HOUR_START_MS + n) as i64)
            .unwrap(),
    }
}

/// 60 transactions over 3 clients x 2 services with mixed outcomes.
fn base() -> Vec<Entry> {
    (0..60u64)
        .map(|n| {
            let o = match n % 7 {
                0 => Outcome::ClientError,
                1 => Outcome::ServerError,
                2 => Outcome::Timeout,
                _ => Outcome::Ok,
            };
            entry(n, (n % 3) as usize, (n % 2) as usize, o)
        })
        .collect()
}

/// The ids `side` logged in bucket `key`, as a node answers from its log.
fn ids_in(entries: &[Entry], key: &BucketKey) -> Vec<TransactionId> {
    entries
        .iter()
        .filter(|e| e.client == key.client && e.service == key.service && e.outcome == key.outcome)
        .map(|e| e.transaction_id)
        .collect()
}

fn reconcile(provider: &[Entry], consumer: &[Entry]) -> Report {
    let p = summarize(Side::Provider, period(), provider.to_vec());
    let c = summarize(Side::Consumer, period(), consumer.to_vec());
    let cmp = compare(&p, &c).unwrap();
    let mut calls = Vec::new();
    let report = drill_down(&cmp, |side, key| {
        calls.push((side, key.clone()));
        Ok::<_, Infallible>(match side {
            Side::Provider => ids_in(provider, key),
            _ => ids_in(consumer, key),
        })
    })
    .unwrap();
    // Drill-down asks only about differing buckets.
    for (_, key) in &calls {
        assert!(cmp.differing.iter().any(|d| &d.key == key));
    }
    assert!(report.inconsistent.is_empty(), "{:?}", report.inconsistent);
    report
}

fn kinds(report: &Report) -> Vec<(TransactionId, DifferenceKind)> {
    report
        .items
        .iter()
        .map(|d| (d.transaction_id, d.kind.clone()))
        .collect()
}

#[test]
fn agreement_reconciles_clean() {
    let e = base();
    let p = summarize(Side::Provider, period(), e.clone());
    let c = summarize(Side::Consumer, period(), e.iter().rev().cloned());
    assert_eq!(p.total(), 60);
    let cmp = compare(&p, &c).unwrap();
    assert!(cmp.is_clean());
    assert_eq!(cmp.buckets_compared, p.buckets.len());
    let report = reconcile(&e, &e);
    assert!(report.is_clean());
    assert!(report.items.is_empty());
    assert_eq!(
        report.to_csv(),
        "transaction_id,client,service,kind,provider_outcome,consumer_outcome,provider_count,consumer_count\r\n"
    );
}

#[test]
fn record_dropped_on_consumer_is_only_provider() {
    let p = base();
    let mut c = base();
    let dropped = c.remove(17);
    let r = reconcile(&p, &c);
    assert_eq!(
        kinds(&r),
        vec![(
            dropped.transaction_id,
            DifferenceKind::OnlyProvider {
                outcome: dropped.outcome
            }
        )]
    );
    assert_eq!(r.items[0].client, dropped.client);
    assert_eq!(r.items[0].service, dropped.service);
    assert_eq!(r.buckets_differing, 1);
}

#[test]
fn record_dropped_on_provider_is_only_consumer() {
    let mut p = base();
    let c = base();
    let dropped = p.remove(3);
    let r = reconcile(&p, &c);
    assert_eq!(
        kinds(&r),
        vec![(
            dropped.transaction_id,
            DifferenceKind::OnlyConsumer {
                outcome: dropped.outcome
            }
        )]
    );
}

#[test]
fn consumer_timed_out_after_provider_answered() {
    let p = base();
    let mut c = base();
    assert_eq!(c[5].outcome, Outcome::Ok);
    c[5].outcome = Outcome::Timeout;
    let r = reconcile(&p, &c);
    // Two buckets differ (the id moved from ok to timeout) but the report
    // names one transaction, once.
    assert_eq!(r.buckets_differing, 2);
    assert_eq!(
        kinds(&r),
        vec![(
            c[5].transaction_id,
            DifferenceKind::OutcomeDiffers {
                provider: Outcome::Ok,
                consumer: Outcome::Timeout
            }
        )]
    );
}

#[test]
fn different_outcome_each_side() {
    let mut p = base();
    let mut c = base();
    p[8].outcome = Outcome::ServerError;
    c[8].outcome = Outcome::ClientError;
    let r = reconcile(&p, &c);
    assert_eq!(
        kinds(&r),
        vec![(
            p[8].transaction_id,
            DifferenceKind::OutcomeDiffers {
                provider: Outcome::ServerError,
                consumer: Outcome::ClientError
            }
        )]
    );
}

#[test]
fn duplicate_record_is_reported() {
    let p = base();
    let mut c = base();
    c.push(c[10].clone());
    let r = reconcile(&p, &c);
    assert_eq!(
        kinds(&r),
        vec![(
            c[10].transaction_id,
            DifferenceKind::Duplicated {
                provider_count: 1,
                consumer_count: 2
            }
        )]
    );
}

#[test]
fn several_mixed_differences_exactly() {
    let mut p = base();
    let mut c = base();
    let mut expected = BTreeSet::new();
    // Dropped on the consumer.
    expected.insert((
        c[20].transaction_id,
        format!(
            "{:?}",
            DifferenceKind::OnlyProvider {
                outcome: c[20].outcome
            }
        ),
    ));
    c.remove(20);
    // Dropped on the provider (index 40 before any provider change).
    expected.insert((
        p[40].transaction_id,
        format!(
            "{:?}",
            DifferenceKind::OnlyConsumer {
                outcome: p[40].outcome
            }
        ),
    ));
    p.remove(40);
    // Consumer timeout.
    let i = c
        .iter()
        .position(|e| e.transaction_id == p[4].transaction_id)
        .unwrap();
    c[i].outcome = Outcome::Timeout;
    expected.insert((
        p[4].transaction_id,
        format!(
            "{:?}",
            DifferenceKind::OutcomeDiffers {
                provider: p[4].outcome,
                consumer: Outcome::Timeout
            }
        ),
    ));
    // A transaction only the consumer knows, in a bucket the provider lacks.
    let extra = entry(999, 2, 1, Outcome::ServerError);
    let extra = Entry {
        client: client(9),
        ..extra
    };
    expected.insert((
        extra.transaction_id,
        format!(
            "{:?}",
            DifferenceKind::OnlyConsumer {
                outcome: Outcome::ServerError
            }
        ),
    ));
    c.push(extra);
    let r = reconcile(&p, &c);
    let got: BTreeSet<_> = r
        .items
        .iter()
        .map(|d| (d.transaction_id, format!("{:?}", d.kind)))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(r.items.len(), 4);
}

#[test]
fn entries_outside_the_period_are_not_counted() {
    let mut e = base();
    let mut late = e[0].clone();
    late.transaction_id = id_at(3_600_000, 12345); // exactly the end: excluded
    e.push(late);
    let s = summarize(Side::Provider, period(), e);
    assert_eq!(s.total(), 60);
}

#[test]
fn compare_rejects_mismatched_inputs() {
    let e = base();
    let p = summarize(Side::Provider, period(), e.clone());
    let other = Period::hour(Utc.with_ymd_and_hms(2026, 1, 1, 11, 0, 0).unwrap());
    let c = summarize(Side::Consumer, other, e.clone());
    assert!(compare(&p, &c).is_err());
    assert!(compare(&p, &p).is_err());
    let mut dup = summarize(Side::Consumer, period(), e);
    dup.buckets.push(dup.buckets[0].clone());
    let err = compare(&p, &dup).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

#[test]
fn lying_drill_down_answer_is_flagged() {
    let p = base();
    let mut c = base();
    c.remove(0);
    let ps = summarize(Side::Provider, period(), p.clone());
    let cs = summarize(Side::Consumer, period(), c.clone());
    let cmp = compare(&ps, &cs).unwrap();
    // The consumer answers with the provider's ids, contradicting its summary.
    let r = drill_down(&cmp, |_side, key| Ok::<_, Infallible>(ids_in(&p, key))).unwrap();
    assert!(r.items.is_empty());
    assert_eq!(r.inconsistent.len(), 1);
    assert_eq!(r.inconsistent[0].side, Side::Consumer);
    assert!(!r.is_clean());
}

#[test]
fn fetch_failure_names_side_and_bucket() {
    let p = base();
    let mut c = base();
    c.remove(0);
    let ps = summarize(Side::Provider, period(), p);
    let cs = summarize(Side::Consumer, period(), c);
    let cmp = compare(&ps, &cs).unwrap();
    let err = drill_down(&cmp, |_, _| {
        Err(std::io::Error::other("connection refused"))
    })
    .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("provider") && msg.contains("EE/GOV/"), "{msg}");
    assert!(std::error::Error::source(&err).is_some());
}

#[test]
fn json_and_csv_output() {
    let p = base();
    let mut c = base();
    c[5].outcome = Outcome::Timeout;
    c.remove(17);
    let r = reconcile(&p, &c);
    let json: serde_json::Value = serde_json::from_str(&r.to_json().unwrap()).unwrap();
    assert_eq!(json["items"].as_array().unwrap().len(), 2);
    let back: Report = serde_json::from_str(&r.to_json().unwrap()).unwrap();
    assert_eq!(back, r);
    let kinds: BTreeSet<_> = json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["only_provider".to_string(), "outcome_differs".to_string()])
    );
    let csv = r.to_csv();
    let lines: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(lines.len(), 3);
    let timeout_row = format!(
        "{},{},{},outcome_differs,ok,timeout,1,1",
        c[5].transaction_id, c[5].client, c[5].service
    );
    assert!(lines.contains(&timeout_row.as_str()), "{csv}");
}

#[test]
fn summary_json_round_trips() {
    let s = summarize(Side::Gateway, period(), base());
    let bytes = s.canonical_json().unwrap();
    let back: Summary = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(back, s);
    let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(v["buckets"][0]["digest"].as_str().unwrap().len(), 64);
    let mut bad = v.clone();
    bad["buckets"][0]["digest"] = "xyz".into();
    assert!(serde_json::from_value::<Summary>(bad).is_err());
}

/// One planted change to the consumer's copy.
#[derive(Debug, Clone)]
enum Plant {
    DropConsumer,
    DropProvider,
    ChangeConsumerOutcome(Outcome),
}

fn outcome_strategy() -> impl Strategy<Value = Outcome> {
    prop::sample::select(Outcome::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn report_equals_planted_set(
        spec in prop::collection::vec((0usize..4, 0usize..3, outcome_strategy()), 1..200),
        plants in prop::collection::vec(
            (any::<prop::sample::Index>(), prop_oneof![
                Just(Plant::DropConsumer),
                Just(Plant::DropProvider),
                outcome_strategy().prop_map(Plant::ChangeConsumerOutcome),
            ]),
            0..20,
        ),
    ) {
        let base: Vec<Entry> = spec
            .iter()
            .enumerate()
            .map(|(n, (c, s, o))| entry(n as u64, *c, *s, *o))
            .collect();
        let mut p: Vec<Option<Entry>> = base.iter().cloned().map(Some).collect();
        let mut c: Vec<Option<Entry>> = base.iter().cloned().map(Some).collect();
        let mut touched = BTreeSet::new();
        let mut expected = BTreeSet::new();
        for (ix, plant) in plants {
            let i = ix.index(base.len());
            if !touched.insert(i) {
                continue;
            }
            let e = &base[i];
            let kind = match plant {
                Plant::DropConsumer => {
                    c[i] = None;
                    DifferenceKind::OnlyProvider { outcome: e.outcome }
                }
                Plant::DropProvider => {
                    p[i] = None;
                    DifferenceKind::OnlyConsumer { outcome: e.outcome }
                }
                Plant::ChangeConsumerOutcome(o) => {
                    if o == e.outcome {
                        continue;
                    }
                    if let Some(x) = c[i].as_mut() {
                        x.outcome = o;
                    }
                    DifferenceKind::OutcomeDiffers { provider: e.outcome, consumer: o }
                }
            };
            expected.insert(Difference {
                transaction_id: e.transaction_id,
                client: e.client.clone(),
                service: e.service.clone(),
                kind,
            });
        }
        let p: Vec<Entry> = p.into_iter().flatten().collect();
        let c: Vec<Entry> = c.into_iter().flatten().collect();
        let r = reconcile(&p, &c);
        let got: BTreeSet<Difference> = r.items.iter().cloned().collect();
        prop_assert_eq!(got.len(), r.items.len());
        prop_assert_eq!(got, expected.clone());
        prop_assert_eq!(r.is_clean(), expected.is_empty());
    }
}
