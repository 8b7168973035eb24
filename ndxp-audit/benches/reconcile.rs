//! Scale benchmark of reconciliation, run by `cargo xtask bench reconcile`.
//!
//! Two sides of N transactions (default 1,000,000; first argument overrides)
//! in one hour, 50 clients x 20 services, mixed outcomes, with 100 planted
//! differences (dropped on the consumer, dropped on the provider, consumer
//! timed out after the provider answered). Times summarize x2 + compare +
//! drill-down; data generation is not timed. Prints one JSON object on
//! stdout: records_per_side, planted, found, exact, seconds, peak_rss_mib and
//! the phase times.
#![allow(clippy::unwrap_used, missing_docs)]

use std::collections::{BTreeSet, HashMap};
use std::convert::Infallible;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use ndxp_audit::reconcile::{
    compare, drill_down, BucketKey, DifferenceKind, Outcome, Period, Side, Summarizer,
};
use ndxp_core::{ServiceId, SubsystemId, TransactionId};

const CLIENTS: usize = 50;
const SERVICES: usize = 20;
const PLANTED: usize = 100;
const HOUR_START_MS: u64 = 1_767_261_600_000; // 2026-01-01T10:00:00Z

/// One log row as a node's index holds it: the id and interned parties.
#[derive(Clone, Copy)]
struct Row {
    id: TransactionId,
    client: u16,
    service: u16,
    outcome: Outcome,
}

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let clients: Vec<SubsystemId> = (0..CLIENTS)
        .map(|i| format!("EE/GOV/70{i:04}/client-{i}").parse().unwrap())
        .collect();
    let services: Vec<ServiceId> = (0..SERVICES)
        .map(|i| {
            format!("EE/COM/80{:04}/registry/service-{i}/v1", i % 5)
                .parse()
                .unwrap()
        })
        .collect();
    let period = Period::hour(Utc.timestamp_millis_opt(HOUR_START_MS as i64).unwrap());

    // Generate the provider's log; the consumer's is a copy with plants.
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let provider: Vec<Row> = (0..n)
        .map(|i| {
            let ms = HOUR_START_MS + (i as u64 * 3_600_000 / n.max(1) as u64);
            let r = rng.next();
            let mut tail = [0u8; 10];
            tail[..8].copy_from_slice(&r.to_be_bytes());
            tail[8..].copy_from_slice(&(i as u16).to_be_bytes());
            let id = TransactionId::from_uuid(
                uuid::Builder::from_unix_timestamp_millis(ms, &tail).into_uuid(),
            )
            .unwrap();
            let outcome = match r % 100 {
                0..=89 => Outcome::Ok,
                90..=95 => Outcome::ClientError,
                96..=98 => Outcome::ServerError,
                _ => Outcome::Timeout,
            };
            Row {
                id,
                client: ((r >> 20) % CLIENTS as u64) as u16,
                service: ((r >> 40) % SERVICES as u64) as u16,
                outcome,
            }
        })
        .collect();
    let mut provider = provider;
    let mut consumer = provider.clone();
    let mut chosen = BTreeSet::new();
    while chosen.len() < PLANTED.min(n) {
        chosen.insert((rng.next() % n as u64) as usize);
    }
    let mut expected = BTreeSet::new();
    let mut drop_p = Vec::new();
    let mut drop_c = Vec::new();
    for (k, &i) in chosen.iter().enumerate() {
        let row = provider[i];
        let kind = match k % 3 {
            0 => {
                drop_c.push(i);
                DifferenceKind::OnlyProvider {
                    outcome: row.outcome,
                }
            }
            1 => {
                drop_p.push(i);
                DifferenceKind::OnlyConsumer {
                    outcome: row.outcome,
                }
            }
            _ => {
                let (p, c) = if row.outcome == Outcome::Timeout {
                    (Outcome::Timeout, Outcome::Ok)
                } else {
                    (row.outcome, Outcome::Timeout)
                };
                provider[i].outcome = p;
                consumer[i].outcome = c;
                DifferenceKind::OutcomeDiffers {
                    provider: p,
                    consumer: c,
                }
            }
        };
        expected.insert((row.id, format!("{kind:?}")));
    }
    let remove = |rows: Vec<Row>, drop: &[usize]| -> Vec<Row> {
        let drop: BTreeSet<usize> = drop.iter().copied().collect();
        rows.into_iter()
            .enumerate()
            .filter(|(i, _)| !drop.contains(i))
            .map(|(_, r)| r)
            .collect()
    };
    let provider = remove(provider, &drop_p);
    let consumer = remove(consumer, &drop_c);
    let client_ix: HashMap<&SubsystemId, u16> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| (c, i as u16))
        .collect();
    let service_ix: HashMap<&ServiceId, u16> = services
        .iter()
        .enumerate()
        .map(|(i, s)| (s, i as u16))
        .collect();

    // Timed: what the two nodes and management do for one period.
    let t0 = Instant::now();
    let summarize = |side: Side, rows: &[Row]| {
        let mut s = Summarizer::new(side, period);
        for r in rows {
            s.add_parts(
                r.id,
                &clients[r.client as usize],
                &services[r.service as usize],
                r.outcome,
            );
        }
        s.finish()
    };
    let ps = summarize(Side::Provider, &provider);
    let cs = summarize(Side::Consumer, &consumer);
    let t_summarize = t0.elapsed().as_secs_f64();
    let cmp = compare(&ps, &cs).unwrap();
    let t_compare = t0.elapsed().as_secs_f64() - t_summarize;
    let fetch = |side: Side, key: &BucketKey| {
        let rows = if side == Side::Provider {
            &provider
        } else {
            &consumer
        };
        let c = client_ix[&key.client];
        let s = service_ix[&key.service];
        Ok::<_, Infallible>(
            rows.iter()
                .filter(|r| r.client == c && r.service == s && r.outcome == key.outcome)
                .map(|r| r.id)
                .collect(),
        )
    };
    let report = drill_down(&cmp, fetch).unwrap();
    let _csv = report.to_csv();
    let seconds = t0.elapsed().as_secs_f64();

    let got: BTreeSet<_> = report
        .items
        .iter()
        .map(|d| (d.transaction_id, format!("{:?}", d.kind)))
        .collect();
    let out = serde_json::json!({
        "records_per_side": n,
        "planted": expected.len(),
        "found": report.items.len(),
        "exact": got == expected && report.inconsistent.is_empty(),
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "peak_rss_mib": (peak_rss_mib() * 10.0).round() / 10.0,
        "summarize_seconds": (t_summarize * 1000.0).round() / 1000.0,
        "compare_seconds": (t_compare * 1000.0).round() / 1000.0,
        "drill_down_seconds": ((seconds - t_summarize - t_compare) * 1000.0).round() / 1000.0,
        "buckets_compared": report.buckets_compared,
        "buckets_differing": report.buckets_differing,
        "ids_fetched": cmp.differing.iter().map(|d| d.provider.map_or(0, |s| s.count) + d.consumer.map_or(0, |s| s.count)).sum::<u64>(),
    });
    println!("{out}");
}
