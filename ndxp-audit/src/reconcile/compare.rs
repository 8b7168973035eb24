//! Comparing two summaries and drilling down to the transactions that
//! differ: the [`Report`], as JSON or CSV.

use std::collections::{BTreeMap, HashMap};

use ndxp_core::{ServiceId, SubsystemId, TransactionId};
use serde::{Deserialize, Serialize};

use super::bucket::DigestAcc;
use super::{
    BucketKey, BucketStats, DrillDownError, Outcome, Period, ReconcileError, Side, Summary,
};

/// A bucket whose count or digest differ between the sides, or that exists on
/// one side only (`None` on the other).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DifferingBucket {
    /// Which bucket.
    pub key: BucketKey,
    /// The provider's figures, if it has the bucket.
    pub provider: Option<BucketStats>,
    /// The consumer's figures, if it has the bucket.
    pub consumer: Option<BucketStats>,
}

/// The result of comparing two summaries, before drill-down.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comparison {
    /// The period both summaries cover.
    pub period: Period,
    /// The side of the first summary (normally the provider).
    pub provider_side: Side,
    /// The side of the second summary (normally the consumer).
    pub consumer_side: Side,
    /// Number of distinct bucket keys over both summaries.
    pub buckets_compared: usize,
    /// The buckets that differ, sorted by key.
    pub differing: Vec<DifferingBucket>,
}

impl Comparison {
    /// Whether the two summaries agree.
    pub fn is_clean(&self) -> bool {
        self.differing.is_empty()
    }
}

/// Compares the provider's summary with the consumer's (a gateway's summary
/// may stand in for either). Fails if the periods differ, the sides are the
/// same, or a summary lists a bucket twice.
pub fn compare(provider: &Summary, consumer: &Summary) -> Result<Comparison, ReconcileError> {
    if provider.period != consumer.period {
        return Err(ReconcileError::PeriodMismatch {
            provider: provider.period,
            consumer: consumer.period,
        });
    }
    if provider.side == consumer.side {
        return Err(ReconcileError::SameSide(provider.side));
    }
    type Pair = (Option<BucketStats>, Option<BucketStats>);
    let mut all: BTreeMap<&BucketKey, Pair> = BTreeMap::new();
    for b in &provider.buckets {
        let slot = all.entry(&b.key).or_default();
        if slot.0.replace(b.stats()).is_some() {
            return Err(ReconcileError::DuplicateBucket {
                side: provider.side,
                key: b.key.to_string(),
            });
        }
    }
    for b in &consumer.buckets {
        let slot = all.entry(&b.key).or_default();
        if slot.1.replace(b.stats()).is_some() {
            return Err(ReconcileError::DuplicateBucket {
                side: consumer.side,
                key: b.key.to_string(),
            });
        }
    }
    let buckets_compared = all.len();
    let differing = all
        .into_iter()
        .filter(|(_, (p, c))| p != c)
        .map(|(k, (provider, consumer))| DifferingBucket {
            key: k.clone(),
            provider,
            consumer,
        })
        .collect();
    Ok(Comparison {
        period: provider.period,
        provider_side: provider.side,
        consumer_side: consumer.side,
        buckets_compared,
        differing,
    })
}

/// What differs about one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DifferenceKind {
    /// Logged by the provider only.
    OnlyProvider {
        /// The provider's outcome.
        outcome: Outcome,
    },
    /// Logged by the consumer only.
    OnlyConsumer {
        /// The consumer's outcome.
        outcome: Outcome,
    },
    /// Logged by both, with different outcomes (e.g. the consumer timed out
    /// after the provider answered).
    OutcomeDiffers {
        /// The provider's outcome.
        provider: Outcome,
        /// The consumer's outcome.
        consumer: Outcome,
    },
    /// Logged more than once on at least one side (counts over the drilled
    /// buckets).
    Duplicated {
        /// Times the provider logged it.
        provider_count: u32,
        /// Times the consumer logged it.
        consumer_count: u32,
    },
}

impl DifferenceKind {
    /// The name used in JSON and CSV.
    pub fn as_str(&self) -> &'static str {
        match self {
            DifferenceKind::OnlyProvider { .. } => "only_provider",
            DifferenceKind::OnlyConsumer { .. } => "only_consumer",
            DifferenceKind::OutcomeDiffers { .. } => "outcome_differs",
            DifferenceKind::Duplicated { .. } => "duplicated",
        }
    }
}

/// One transaction on which the sides disagree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Difference {
    /// The transaction.
    pub transaction_id: TransactionId,
    /// The client subsystem.
    pub client: SubsystemId,
    /// The service.
    pub service: ServiceId,
    /// What differs.
    #[serde(flatten)]
    pub kind: DifferenceKind,
}

/// A drill-down answer that does not match the summary the same node signed:
/// its ids have another count or digest. The node's log or its answers are
/// not trustworthy for this bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inconsistency {
    /// Which node answered.
    pub side: Side,
    /// Which bucket.
    pub key: BucketKey,
    /// What its summary said.
    pub summary: BucketStats,
    /// What its drill-down answer amounts to.
    pub answer: BucketStats,
}

/// The reconciliation report of one pair for one period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The period.
    pub period: Period,
    /// Number of distinct bucket keys over both summaries.
    pub buckets_compared: usize,
    /// Number of buckets whose count or digest differed.
    pub buckets_differing: usize,
    /// The transactions that differ, sorted by client, service and id.
    pub items: Vec<Difference>,
    /// Drill-down answers that contradict the answering node's own summary.
    pub inconsistent: Vec<Inconsistency>,
}

impl Report {
    /// Whether the sides agree completely.
    pub fn is_clean(&self) -> bool {
        self.buckets_differing == 0 && self.items.is_empty() && self.inconsistent.is_empty()
    }

    /// The report as pretty-printed JSON.
    pub fn to_json(&self) -> Result<String, ReconcileError> {
        serde_json::to_string_pretty(self).map_err(ReconcileError::Json)
    }

    /// The differences as CSV (RFC 4180: CRLF line ends, fields quoted when
    /// needed): a header line, then one row per difference with columns
    /// `transaction_id,client,service,kind,provider_outcome,consumer_outcome,provider_count,consumer_count`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "transaction_id,client,service,kind,provider_outcome,consumer_outcome,provider_count,consumer_count\r\n",
        );
        for d in &self.items {
            let (po, co, pc, cc) = match &d.kind {
                DifferenceKind::OnlyProvider { outcome } => (outcome.as_str(), "", 1, 0),
                DifferenceKind::OnlyConsumer { outcome } => ("", outcome.as_str(), 0, 1),
                DifferenceKind::OutcomeDiffers { provider, consumer } => {
                    (provider.as_str(), consumer.as_str(), 1, 1)
                }
                DifferenceKind::Duplicated {
                    provider_count,
                    consumer_count,
                } => ("", "", *provider_count, *consumer_count),
            };
            let fields = [
                d.transaction_id.to_string(),
                d.client.to_string(),
                d.service.to_string(),
                d.kind.as_str().to_string(),
                po.to_string(),
                co.to_string(),
                pc.to_string(),
                cc.to_string(),
            ];
            for (i, f) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_csv_field(&mut out, f);
            }
            out.push_str("\r\n");
        }
        out
    }
}

/// Appends `field` to `out`, quoted per RFC 4180 if it contains a comma, a
/// double quote, CR or LF.
pub fn push_csv_field(out: &mut String, field: &str) {
    if field.contains([',', '"', '\r', '\n']) {
        out.push('"');
        out.push_str(&field.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(field);
    }
}

#[derive(Default)]
struct Seen {
    provider: Option<Outcome>,
    provider_n: u32,
    consumer: Option<Outcome>,
    consumer_n: u32,
}

/// Asks both sides for the ids of every differing bucket and names the
/// transactions that differ.
///
/// `fetch(side, key)` returns the ids that `side` logged in bucket `key` for
/// the comparison's period (the authenticated drill-down request; `side` is
/// [`Comparison::provider_side`] or [`Comparison::consumer_side`]). It is
/// called only for differing buckets, and only on a side whose summary has
/// the bucket. Ids are joined per (client, service, id) across the outcomes,
/// so a transaction logged with different outcomes on each side is one
/// [`DifferenceKind::OutcomeDiffers`], not two one-sided ids. Answers whose
/// count or digest contradict the answering side's summary are listed in
/// [`Report::inconsistent`].
pub fn drill_down<E>(
    cmp: &Comparison,
    mut fetch: impl FnMut(Side, &BucketKey) -> Result<Vec<TransactionId>, E>,
) -> Result<Report, DrillDownError<E>>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let mut pairs: HashMap<(&SubsystemId, &ServiceId), u32> = HashMap::new();
    let mut pair_list: Vec<(&SubsystemId, &ServiceId)> = Vec::new();
    let mut seen: HashMap<(u32, TransactionId), Seen> = HashMap::new();
    let mut inconsistent = Vec::new();
    for d in &cmp.differing {
        let pair = (&d.key.client, &d.key.service);
        let pi = *pairs.entry(pair).or_insert_with(|| {
            pair_list.push(pair);
            u32::try_from(pair_list.len() - 1).unwrap_or(u32::MAX)
        });
        for (side, stats, is_provider) in [
            (cmp.provider_side, d.provider, true),
            (cmp.consumer_side, d.consumer, false),
        ] {
            let Some(stats) = stats else { continue };
            let ids = fetch(side, &d.key).map_err(|source| DrillDownError::Fetch {
                side,
                key: d.key.to_string(),
                source,
            })?;
            let mut acc = DigestAcc::default();
            for id in &ids {
                acc.add(id);
                let s = seen.entry((pi, *id)).or_default();
                if is_provider {
                    s.provider_n += 1;
                    s.provider.get_or_insert(d.key.outcome);
                } else {
                    s.consumer_n += 1;
                    s.consumer.get_or_insert(d.key.outcome);
                }
            }
            let answer = BucketStats {
                count: ids.len() as u64,
                digest: acc.finish(),
            };
            if answer != stats {
                inconsistent.push(Inconsistency {
                    side,
                    key: d.key.clone(),
                    summary: stats,
                    answer,
                });
            }
        }
    }
    let mut items = Vec::new();
    for ((pi, id), s) in seen {
        let kind = match (s.provider_n, s.consumer_n, s.provider, s.consumer) {
            (1, 1, Some(p), Some(c)) if p == c => continue,
            (1, 1, Some(p), Some(c)) => DifferenceKind::OutcomeDiffers {
                provider: p,
                consumer: c,
            },
            (1, 0, Some(p), _) => DifferenceKind::OnlyProvider { outcome: p },
            (0, 1, _, Some(c)) => DifferenceKind::OnlyConsumer { outcome: c },
            (pn, cn, _, _) => DifferenceKind::Duplicated {
                provider_count: pn,
                consumer_count: cn,
            },
        };
        let Some((client, service)) = pair_list.get(pi as usize) else {
            continue;
        };
        items.push(Difference {
            transaction_id: id,
            client: (*client).clone(),
            service: (*service).clone(),
            kind,
        });
    }
    items.sort_by(|a, b| {
        (&a.client, &a.service, a.transaction_id).cmp(&(&b.client, &b.service, b.transaction_id))
    });
    Ok(Report {
        period: cmp.period,
        buckets_compared: cmp.buckets_compared,
        buckets_differing: cmp.differing.len(),
        items,
        inconsistent,
    })
}
