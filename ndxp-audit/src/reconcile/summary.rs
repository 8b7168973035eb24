//! A side's [`Summary`] of a period: computing it from entries, merging,
//! signing and verifying it.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use ndxp_core::{ServiceId, SubsystemId, TransactionId};
use ndxp_sign::jws::{self, JwsAlgorithm, VerifiedJws, VerifyOptions};
use ndxp_sign::openssl::pkey::{PKeyRef, Private};
use ndxp_sign::openssl::x509::X509;
use serde::{Deserialize, Serialize};

use super::bucket::DigestAcc;
use super::{
    Bucket, BucketKey, BucketStats, Entry, IdSetDigest, Outcome, Period, ReconcileError, Side,
};

/// What one node reports for one period: its buckets, sorted by key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// The role in which the node logged these transactions.
    pub side: Side,
    /// The period covered.
    pub period: Period,
    /// The non-empty buckets, sorted by key.
    pub buckets: Vec<Bucket>,
}

/// The JWS `typ` of a signed summary.
pub const SUMMARY_JWS_TYPE: &str = "ndxp-reconcile-summary+json";

impl Summary {
    /// Keeps only the buckets whose key satisfies `keep`, e.g. those of one
    /// provider-consumer pair before comparing.
    pub fn retain(&mut self, mut keep: impl FnMut(&BucketKey) -> bool) {
        self.buckets.retain(|b| keep(&b.key));
    }

    /// Total transactions over all buckets.
    pub fn total(&self) -> u64 {
        self.buckets.iter().map(|b| b.count).sum()
    }

    /// The canonical bytes to sign and upload: compact JSON with the buckets
    /// in key order.
    pub fn canonical_json(&self) -> Result<Vec<u8>, ReconcileError> {
        let mut s = self.clone();
        s.buckets.sort_by(|a, b| a.key.cmp(&b.key));
        serde_json::to_vec(&s).map_err(ReconcileError::Json)
    }

    /// The summary as a compact JWS over [`Summary::canonical_json`], signed
    /// with the node's signing `key`; `chain` (its certificate first) goes
    /// into `x5c` so that management can check who signed.
    pub fn sign(
        &self,
        key: &PKeyRef<Private>,
        alg: JwsAlgorithm,
        chain: &[X509],
    ) -> Result<String, ReconcileError> {
        let payload = self.canonical_json()?;
        jws::sign(&payload, key, alg, chain, Some(SUMMARY_JWS_TYPE)).map_err(ReconcileError::Jws)
    }

    /// Verifies a signed summary: its chain must lead to one of `anchors` at
    /// `at`, its `typ` must be [`SUMMARY_JWS_TYPE`] and its payload a summary.
    /// Returns the summary and the verified JWS, whose chain the caller
    /// matches against the node it expects the summary from.
    pub fn verify(
        signed: &str,
        anchors: &[X509],
        at: DateTime<Utc>,
    ) -> Result<(Summary, VerifiedJws), ReconcileError> {
        let v = jws::verify_with_anchors(signed, anchors, at, &VerifyOptions::default())
            .map_err(ReconcileError::Jws)?;
        if v.header.typ.as_deref() != Some(SUMMARY_JWS_TYPE) {
            return Err(ReconcileError::NotASummary(format!(
                "JWS typ is {:?}, expected {SUMMARY_JWS_TYPE:?}",
                v.header.typ
            )));
        }
        let summary = serde_json::from_slice(&v.payload)
            .map_err(|e| ReconcileError::NotASummary(e.to_string()))?;
        Ok((summary, v))
    }

    /// Adds the buckets of `other` into this summary, as if both logs were
    /// one: counts and digests of equal keys add, other buckets are taken
    /// over; the result stays sorted. The periods must be equal; the side
    /// of `self` is kept.
    ///
    /// # Errors
    /// [`ReconcileError::PeriodMismatch`].
    pub fn merge(&mut self, other: &Summary) -> Result<(), ReconcileError> {
        if self.period != other.period {
            return Err(ReconcileError::PeriodMismatch {
                provider: self.period,
                consumer: other.period,
            });
        }
        let mut map: BTreeMap<BucketKey, BucketStats> = BTreeMap::new();
        for b in self.buckets.iter().chain(&other.buckets) {
            let e = map.entry(b.key.clone()).or_insert(BucketStats {
                count: 0,
                digest: IdSetDigest::EMPTY,
            });
            e.count = e.count.saturating_add(b.count);
            e.digest = e.digest.combine(b.digest);
        }
        self.buckets = map
            .into_iter()
            .map(|(key, s)| Bucket {
                key,
                count: s.count,
                digest: s.digest,
            })
            .collect();
        Ok(())
    }
}

/// Count and running digest per outcome, indexed by `Outcome::index`.
type OutcomeSlots = [Option<(u64, DigestAcc)>; 4];

/// Streaming computation of a [`Summary`]; memory is proportional to the
/// number of buckets, not of transactions.
#[derive(Debug)]
pub struct Summarizer {
    side: Side,
    period: Period,
    map: HashMap<SubsystemId, HashMap<ServiceId, OutcomeSlots>>,
    outside: u64,
}

impl Summarizer {
    /// An empty summary of `side` for `period`.
    pub fn new(side: Side, period: Period) -> Self {
        Self {
            side,
            period,
            map: HashMap::new(),
            outside: 0,
        }
    }

    /// Adds one entry; returns false (and counts it as outside) if its id's
    /// time is not in the period.
    pub fn add(&mut self, e: &Entry) -> bool {
        self.add_parts(e.transaction_id, &e.client, &e.service, e.outcome)
    }

    /// Adds one transaction given by its parts, without cloning identifiers
    /// unless the bucket is new.
    pub fn add_parts(
        &mut self,
        id: TransactionId,
        client: &SubsystemId,
        service: &ServiceId,
        outcome: Outcome,
    ) -> bool {
        if !self.period.contains_id(&id) {
            self.outside += 1;
            return false;
        }
        let by_service = match self.map.get_mut(client) {
            Some(m) => m,
            None => self.map.entry(client.clone()).or_default(),
        };
        let slots = match by_service.get_mut(service) {
            Some(s) => s,
            None => by_service.entry(service.clone()).or_default(),
        };
        let slot = slots[outcome.index()].get_or_insert_with(Default::default);
        slot.0 += 1;
        slot.1.add(&id);
        true
    }

    /// Entries skipped so far because their id's time is outside the period.
    pub fn outside_period(&self) -> u64 {
        self.outside
    }

    /// The summary, buckets sorted by key.
    pub fn finish(self) -> Summary {
        let mut buckets = Vec::new();
        for (client, by_service) in self.map {
            for (service, slots) in by_service {
                for (outcome, slot) in Outcome::ALL.into_iter().zip(slots) {
                    if let Some((count, acc)) = slot {
                        buckets.push(Bucket {
                            key: BucketKey {
                                client: client.clone(),
                                service: service.clone(),
                                outcome,
                            },
                            count,
                            digest: acc.finish(),
                        });
                    }
                }
            }
        }
        buckets.sort_by(|a, b| a.key.cmp(&b.key));
        Summary {
            side: self.side,
            period: self.period,
            buckets,
        }
    }
}

/// The summary of `entries` whose id's time lies in `period` (others are
/// skipped); streaming, memory proportional to the number of buckets.
pub fn summarize(side: Side, period: Period, entries: impl IntoIterator<Item = Entry>) -> Summary {
    let mut s = Summarizer::new(side, period);
    for e in entries {
        s.add(&e);
    }
    s.finish()
}
