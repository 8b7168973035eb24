//! Reconciliation of the provider's and the consumer's logs (docs/design.md §8).
//!
//! For each period every node computes from its own log a [`Summary`]: per
//! (client subsystem, service, outcome) bucket the number of transactions and
//! an order-independent digest of their ids ([`IdSetDigest`]). Management
//! [`compare`]s the provider's and the consumer's summaries, asks both nodes
//! for the ids of the buckets that differ ([`drill_down`]) and produces a
//! [`Report`] naming every transaction present on one side only, present on
//! both with different outcomes, or logged more than once. The report is
//! written as JSON ([`Report::to_json`]) or CSV ([`Report::to_csv`]).
//!
//! A transaction belongs to the period that contains the time encoded in its
//! id (UUID v7), not the local log time, so the two sides never disagree on
//! the period of a transaction that crossed a period boundary in flight.
//!
//! This module is pure: no I/O. Signing, upload and the authenticated
//! drill-down transport are the caller's; see `docs/reconciliation.md`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use ndxp_core::{ServiceId, SubsystemId, TransactionId};
use ndxp_sign::jws::{self, JwsAlgorithm, JwsError, VerifiedJws, VerifyOptions};
use ndxp_sign::openssl::pkey::{PKeyRef, Private};
use ndxp_sign::openssl::sha::Sha256;
use ndxp_sign::openssl::x509::X509;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Domain separation prefix of the per-id hash in [`IdSetDigest`].
const ID_HASH_PREFIX: &[u8] = b"ndxp-reconcile-id-v1\0";

/// How a transaction ended, as the logging node saw it.
///
/// Deliberately coarse: the status class is what both sides observe in the
/// same way (the consumer's node relays the provider's status unchanged), so
/// an agreeing exchange lands in the same bucket on both sides. A consumer
/// that gave up waiting logs [`Outcome::Timeout`] even if the provider later
/// answered; that is exactly the disagreement reconciliation exists to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 1xx, 2xx or 3xx answer.
    Ok,
    /// A 4xx answer (including the platform's own refusals such as
    /// `access_denied`).
    ClientError,
    /// A 5xx answer other than a timeout.
    ServerError,
    /// No answer in time (the consumer's node gave up, or the platform
    /// answered 504 `provider_timeout`).
    Timeout,
}

impl Outcome {
    /// Every outcome, in bucket order.
    pub const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::ClientError,
        Outcome::ServerError,
        Outcome::Timeout,
    ];

    /// The outcome of an answered exchange with HTTP status `status`; 504 is
    /// [`Outcome::Timeout`].
    pub fn from_status(status: u16) -> Self {
        match status {
            504 => Outcome::Timeout,
            500.. => Outcome::ServerError,
            400..=499 => Outcome::ClientError,
            _ => Outcome::Ok,
        }
    }

    /// The name used in JSON and CSV (`ok`, `client_error`, `server_error`,
    /// `timeout`).
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::ClientError => "client_error",
            Outcome::ServerError => "server_error",
            Outcome::Timeout => "timeout",
        }
    }

    fn index(self) -> usize {
        match self {
            Outcome::Ok => 0,
            Outcome::ClientError => 1,
            Outcome::ServerError => 2,
            Outcome::Timeout => 3,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role in which a node logged the transactions of a summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The node of the service's subsystem.
    Provider,
    /// The node of the client subsystem.
    Consumer,
    /// A central gateway relaying between the two (docs/design.md §9); its summary can
    /// be compared against either side.
    Gateway,
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Provider => "provider",
            Side::Consumer => "consumer",
            Side::Gateway => "gateway",
        })
    }
}

/// One logged transaction, as reconciliation needs it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The transaction id, the same on both sides.
    pub transaction_id: TransactionId,
    /// The client subsystem.
    pub client: SubsystemId,
    /// The service called.
    pub service: ServiceId,
    /// How it ended on this side.
    pub outcome: Outcome,
    /// When this node logged it (informational; the period is taken from the
    /// transaction id).
    pub at: DateTime<Utc>,
}

/// A half-open time interval `[start, end)` that summaries cover.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawPeriod")]
pub struct Period {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

#[derive(Deserialize)]
struct RawPeriod {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl TryFrom<RawPeriod> for Period {
    type Error = ReconcileError;
    fn try_from(r: RawPeriod) -> Result<Self, ReconcileError> {
        Period::new(r.start, r.end)
    }
}

/// The length of the periods a deployment reconciles over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodLength {
    /// Whole UTC minutes: for demonstrations and tests, where waiting for
    /// an hour to close is not practical; production uses hours or days.
    Minute,
    /// Whole UTC hours.
    Hour,
    /// Whole UTC days.
    Day,
}

impl Period {
    /// The period `[start, end)`; `start` must be before `end`.
    pub fn new(start: DateTime<Utc>, end: DateTime<Utc>) -> Result<Self, ReconcileError> {
        if start >= end {
            return Err(ReconcileError::EmptyPeriod { start, end });
        }
        Ok(Self { start, end })
    }

    /// The UTC hour containing `at`.
    pub fn hour(at: DateTime<Utc>) -> Self {
        Self::containing(PeriodLength::Hour, at)
    }

    /// The UTC day containing `at`.
    pub fn day(at: DateTime<Utc>) -> Self {
        Self::containing(PeriodLength::Day, at)
    }

    /// The period of the given length containing `at`.
    pub fn containing(length: PeriodLength, at: DateTime<Utc>) -> Self {
        let len = match length {
            PeriodLength::Minute => Duration::minutes(1),
            PeriodLength::Hour => Duration::hours(1),
            PeriodLength::Day => Duration::days(1),
        };
        // Rounding to whole hours/days of the Unix epoch cannot fail for
        // dates chrono represents; fall back to `at` itself if it ever did.
        let start = at.duration_trunc(len).unwrap_or(at);
        Self {
            start,
            end: start + len,
        }
    }

    /// The first instant of the period.
    pub fn start(&self) -> DateTime<Utc> {
        self.start
    }

    /// The first instant after the period.
    pub fn end(&self) -> DateTime<Utc> {
        self.end
    }

    /// Whether the time encoded in `id` lies in the period.
    pub fn contains_id(&self, id: &TransactionId) -> bool {
        let ms = i64::try_from(id.unix_millis()).unwrap_or(i64::MAX);
        match Utc.timestamp_millis_opt(ms).single() {
            Some(t) => self.start <= t && t < self.end,
            None => false,
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            self.start
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            self.end
                .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
        )
    }
}

/// The key of a bucket: which client called which service, with which outcome.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BucketKey {
    /// The client subsystem.
    pub client: SubsystemId,
    /// The service.
    pub service: ServiceId,
    /// The outcome.
    pub outcome: Outcome,
}

impl fmt::Display for BucketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -> {} [{}]", self.client, self.service, self.outcome)
    }
}

/// An order-independent digest of a multiset of transaction ids: the sum,
/// modulo 2^256, of `SHA-256("ndxp-reconcile-id-v1\0" || id)` over the ids,
/// each read as a big-endian integer. Adding ids in any order gives the same
/// value; an id added twice counts twice (unlike an XOR, where it would
/// cancel). Serialized as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IdSetDigest([u8; 32]);

impl IdSetDigest {
    /// The digest of the empty set.
    pub const EMPTY: IdSetDigest = IdSetDigest([0; 32]);

    /// The digest of `ids`.
    pub fn of<'a>(ids: impl IntoIterator<Item = &'a TransactionId>) -> Self {
        let mut acc = DigestAcc::default();
        for id in ids {
            acc.add(id);
        }
        acc.finish()
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for IdSetDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for IdSetDigest {
    type Err = ReconcileError;
    fn from_str(s: &str) -> Result<Self, ReconcileError> {
        let mut out = [0u8; 32];
        if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReconcileError::BadDigest(s.chars().take(80).collect()));
        }
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| ReconcileError::BadDigest(s.chars().take(80).collect()))?;
        Ok(Self(out))
    }
}

impl Serialize for IdSetDigest {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IdSetDigest {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Running 256-bit sum; limb 0 is the most significant.
#[derive(Debug, Clone, Copy, Default)]
struct DigestAcc([u64; 4]);

impl DigestAcc {
    fn add(&mut self, id: &TransactionId) {
        let mut h = Sha256::new();
        h.update(ID_HASH_PREFIX);
        h.update(id.as_uuid().as_bytes());
        let d = h.finish();
        let mut carry = false;
        for i in (0..4).rev() {
            let mut limb = [0u8; 8];
            limb.copy_from_slice(&d[i * 8..i * 8 + 8]);
            let (s1, c1) = self.0[i].overflowing_add(u64::from_be_bytes(limb));
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            self.0[i] = s2;
            carry = c1 || c2;
        }
    }

    fn finish(self) -> IdSetDigest {
        let mut out = [0u8; 32];
        for (i, limb) in self.0.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&limb.to_be_bytes());
        }
        IdSetDigest(out)
    }
}

/// Count and digest of the ids in one bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BucketStats {
    /// Number of transactions.
    pub count: u64,
    /// Digest of their ids.
    pub digest: IdSetDigest,
}

/// One bucket of a summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// Which bucket.
    pub key: BucketKey,
    /// Number of transactions.
    pub count: u64,
    /// Digest of their ids.
    pub digest: IdSetDigest,
}

impl Bucket {
    fn stats(&self) -> BucketStats {
        BucketStats {
            count: self.count,
            digest: self.digest,
        }
    }
}

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
}

/// The JWS `typ` of a signed summary.
pub const SUMMARY_JWS_TYPE: &str = "ndxp-reconcile-summary+json";

impl Summary {
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

impl IdSetDigest {
    /// The digest of the multiset union of the ids behind `self` and
    /// `other`: the two sums added modulo 2^256. Merging the summaries of
    /// two logs (two nodes of one member, or a node and the gateway) needs
    /// no ids.
    pub fn combine(self, other: IdSetDigest) -> IdSetDigest {
        let mut out = [0u8; 32];
        let mut carry = 0u16;
        for i in (0..32).rev() {
            let s = u16::from(self.0[i]) + u16::from(other.0[i]) + carry;
            out[i] = (s & 0xff) as u8;
            carry = s >> 8;
        }
        IdSetDigest(out)
    }
}

impl Summary {
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

/// How far the local log time (`received_at`) of a record may lie from the
/// time in its transaction id for [`summarize_log`] and [`bucket_ids_from_log`]
/// to find it: records are selected by `received_at` within the period
/// widened by this margin on both sides (an indexed range scan), then
/// assigned by the time in their id. Covers clock skew between the nodes
/// and the time an exchange spends in flight.
pub const LOG_TIME_MARGIN: Duration = Duration::minutes(15);

/// Rows read per query while scanning a message log.
const LOG_PAGE: i64 = 5000;

/// The three summaries one message log yields for a period: the
/// transactions it logged as provider, as consumer and as gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummaries {
    /// Transactions logged with role `provider`.
    pub provider: Summary,
    /// Transactions logged with role `consumer`.
    pub consumer: Summary,
    /// Transactions logged with role `gateway`.
    pub gateway: Summary,
    /// Records read whose id's time lies outside the period (found only
    /// because of [`LOG_TIME_MARGIN`]).
    pub outside_period: u64,
}

impl LogSummaries {
    /// The summary of one side.
    pub fn side(&self, side: Side) -> &Summary {
        match side {
            Side::Provider => &self.provider,
            Side::Consumer => &self.consumer,
            Side::Gateway => &self.gateway,
        }
    }
}

/// Why a message log could not be read for reconciliation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogReadError {
    /// The database failed.
    #[error("cannot read the message log: {0}")]
    Database(#[source] sqlx::Error),
    /// A stored record is not a log record.
    #[error("message log record {writer}/{seq} cannot be read: {detail}")]
    Corrupt {
        /// The record's writer.
        writer: String,
        /// Its sequence number.
        seq: i64,
        /// What is wrong.
        detail: String,
    },
}

/// The parts of a stored log record that reconciliation reads.
#[derive(Deserialize)]
struct LightRecord {
    exchange: LightExchange,
}

#[derive(Deserialize)]
struct LightExchange {
    transaction_id: TransactionId,
    client: SubsystemId,
    service: ServiceId,
    role: crate::log::Role,
    status: u16,
}

fn side_of(role: crate::log::Role) -> Side {
    match role {
        crate::log::Role::Provider => Side::Provider,
        crate::log::Role::Consumer => Side::Consumer,
        crate::log::Role::Gateway => Side::Gateway,
    }
}

fn log_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Scans the `message_log` table (of [`crate::log::SqlMessageLog`], any
/// writer) for records whose `received_at` lies in `period` widened by
/// [`LOG_TIME_MARGIN`], page by page, and calls `each` for every parsed
/// record.
async fn scan_log(
    pool: &sqlx::AnyPool,
    period: Period,
    mut each: impl FnMut(LightExchange),
) -> Result<(), LogReadError> {
    use sqlx::Row as _;
    let from = log_time(period.start() - LOG_TIME_MARGIN);
    let to = log_time(period.end() + LOG_TIME_MARGIN);
    let mut after: Option<(String, String, i64)> = None;
    loop {
        let rows = match &after {
            None => sqlx::query(
                "SELECT received_at, writer, seq, record FROM message_log \
                 WHERE received_at >= $1 AND received_at < $2 \
                 ORDER BY received_at, writer, seq LIMIT $3",
            )
            .bind(from.clone())
            .bind(to.clone())
            .bind(LOG_PAGE)
            .fetch_all(pool)
            .await
            .map_err(LogReadError::Database)?,
            Some((r, w, s)) => sqlx::query(
                "SELECT received_at, writer, seq, record FROM message_log \
                 WHERE received_at < $2 AND (received_at > $1 \
                   OR (received_at = $1 AND (writer > $4 OR (writer = $4 AND seq > $5)))) \
                 ORDER BY received_at, writer, seq LIMIT $3",
            )
            .bind(r.clone())
            .bind(to.clone())
            .bind(LOG_PAGE)
            .bind(w.clone())
            .bind(*s)
            .fetch_all(pool)
            .await
            .map_err(LogReadError::Database)?,
        };
        let n = rows.len();
        for row in &rows {
            let writer: String = row.try_get("writer").map_err(LogReadError::Database)?;
            let seq: i64 = row.try_get("seq").map_err(LogReadError::Database)?;
            let text: String = row.try_get("record").map_err(LogReadError::Database)?;
            let rec: LightRecord =
                serde_json::from_str(&text).map_err(|e| LogReadError::Corrupt {
                    writer: writer.clone(),
                    seq,
                    detail: e.to_string(),
                })?;
            each(rec.exchange);
        }
        match rows.last() {
            Some(last) if n as i64 == LOG_PAGE => {
                after = Some((
                    last.try_get("received_at")
                        .map_err(LogReadError::Database)?,
                    last.try_get("writer").map_err(LogReadError::Database)?,
                    last.try_get("seq").map_err(LogReadError::Database)?,
                ));
            }
            _ => return Ok(()),
        }
    }
}

/// The provider, consumer and gateway summaries of a message log database
/// (the `message_log` table of [`crate::log::SqlMessageLog`], all writers)
/// for `period`. A node calls this for its own log, management for the
/// central gateway's. Streaming: memory is proportional to the number of
/// buckets.
///
/// # Errors
/// [`LogReadError`].
pub async fn summarize_log(
    pool: &sqlx::AnyPool,
    period: Period,
) -> Result<LogSummaries, LogReadError> {
    let mut p = Summarizer::new(Side::Provider, period);
    let mut c = Summarizer::new(Side::Consumer, period);
    let mut g = Summarizer::new(Side::Gateway, period);
    scan_log(pool, period, |e| {
        let s = match side_of(e.role) {
            Side::Provider => &mut p,
            Side::Consumer => &mut c,
            Side::Gateway => &mut g,
        };
        s.add_parts(
            e.transaction_id,
            &e.client,
            &e.service,
            Outcome::from_status(e.status),
        );
    })
    .await?;
    let outside = p.outside_period() + c.outside_period() + g.outside_period();
    Ok(LogSummaries {
        provider: p.finish(),
        consumer: c.finish(),
        gateway: g.finish(),
        outside_period: outside,
    })
}

/// The ids a message log holds in one bucket of one side for `period`:
/// the answer to a drill-down request. Same selection as
/// [`summarize_log`], so the answer's count and digest match the summary
/// as long as the log did not change in between.
///
/// # Errors
/// [`LogReadError`].
pub async fn bucket_ids_from_log(
    pool: &sqlx::AnyPool,
    period: Period,
    side: Side,
    key: &BucketKey,
) -> Result<Vec<TransactionId>, LogReadError> {
    let mut ids = Vec::new();
    scan_log(pool, period, |e| {
        if side_of(e.role) == side
            && period.contains_id(&e.transaction_id)
            && e.client == key.client
            && e.service == key.service
            && Outcome::from_status(e.status) == key.outcome
        {
            ids.push(e.transaction_id);
        }
    })
    .await?;
    ids.sort();
    Ok(ids)
}

/// Why summaries cannot be compared or a value is malformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReconcileError {
    /// A period must start before it ends.
    #[error("period must start before it ends: start {start}, end {end}")]
    EmptyPeriod {
        /// The start given.
        start: DateTime<Utc>,
        /// The end given.
        end: DateTime<Utc>,
    },
    /// The two summaries cover different periods.
    #[error("summaries cover different periods (provider {provider}, consumer {consumer}); compare summaries of the same period")]
    PeriodMismatch {
        /// The first summary's period.
        provider: Period,
        /// The second summary's period.
        consumer: Period,
    },
    /// Both summaries come from the same side.
    #[error(
        "both summaries are from the {0} side; compare a provider's summary with a consumer's"
    )]
    SameSide(Side),
    /// A summary lists the same bucket twice.
    #[error("the {side} summary lists bucket {key} twice; the summary is malformed")]
    DuplicateBucket {
        /// Whose summary.
        side: Side,
        /// The bucket.
        key: String,
    },
    /// A digest is not 64 lowercase hex digits.
    #[error("bucket digest must be 64 lowercase hex digits, found {0:?}")]
    BadDigest(String),
    /// JSON encoding failed.
    #[error("cannot encode as JSON")]
    Json(#[source] serde_json::Error),
    /// Signing or verifying a summary's JWS failed.
    #[error("signed summary: {0}")]
    Jws(#[source] JwsError),
    /// A verified JWS does not carry a summary.
    #[error("signed document is not a reconciliation summary: {0}")]
    NotASummary(String),
}

/// Why a drill-down could not complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DrillDownError<E: std::error::Error + Send + Sync + 'static> {
    /// Fetching the ids of a bucket from a node failed.
    #[error("cannot fetch the ids of bucket {key} from the {side} node")]
    Fetch {
        /// Which node.
        side: Side,
        /// Which bucket.
        key: String,
        /// What went wrong.
        #[source]
        source: E,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> TransactionId {
        let b = uuid::Builder::from_unix_timestamp_millis(1_700_000_000_000, &{
            let mut r = [0u8; 10];
            r[2..].copy_from_slice(&n.to_be_bytes());
            r
        });
        TransactionId::from_uuid(b.into_uuid()).unwrap()
    }

    #[test]
    fn digest_is_order_independent_and_counts_repeats() {
        let (a, b, c) = (id(1), id(2), id(3));
        assert_eq!(IdSetDigest::of([&a, &b, &c]), IdSetDigest::of([&c, &a, &b]));
        assert_ne!(IdSetDigest::of([&a, &b]), IdSetDigest::of([&a, &c]));
        assert_ne!(IdSetDigest::of([&a, &a]), IdSetDigest::EMPTY);
        assert_ne!(IdSetDigest::of([&a, &a, &b]), IdSetDigest::of([&b]));
        assert_eq!(IdSetDigest::of([]), IdSetDigest::EMPTY);
    }

    #[test]
    fn digest_hex_round_trips_and_rejects_junk() {
        let d = IdSetDigest::of([&id(7)]);
        assert_eq!(d.to_string().parse::<IdSetDigest>().unwrap(), d);
        assert!("zz".parse::<IdSetDigest>().is_err());
        assert!(d.to_string().to_uppercase().parse::<IdSetDigest>().is_err());
        assert!("0".repeat(63).parse::<IdSetDigest>().is_err());
    }

    #[test]
    fn periods_truncate_and_reject_empty() {
        let t = Utc.with_ymd_and_hms(2026, 3, 4, 5, 6, 7).unwrap();
        let h = Period::hour(t);
        assert_eq!(
            h.start(),
            Utc.with_ymd_and_hms(2026, 3, 4, 5, 0, 0).unwrap()
        );
        assert_eq!(h.end(), Utc.with_ymd_and_hms(2026, 3, 4, 6, 0, 0).unwrap());
        let d = Period::day(t);
        assert_eq!(
            d.start(),
            Utc.with_ymd_and_hms(2026, 3, 4, 0, 0, 0).unwrap()
        );
        assert!(Period::new(t, t).is_err());
        let bad = r#"{"start":"2026-01-02T00:00:00Z","end":"2026-01-01T00:00:00Z"}"#;
        assert!(serde_json::from_str::<Period>(bad).is_err());
    }

    #[test]
    fn status_classes() {
        assert_eq!(Outcome::from_status(200), Outcome::Ok);
        assert_eq!(Outcome::from_status(404), Outcome::ClientError);
        assert_eq!(Outcome::from_status(502), Outcome::ServerError);
        assert_eq!(Outcome::from_status(504), Outcome::Timeout);
    }

    #[test]
    fn csv_quotes_when_needed() {
        let mut s = String::new();
        push_csv_field(&mut s, "a,b");
        s.push('|');
        push_csv_field(&mut s, "say \"hi\"");
        s.push('|');
        push_csv_field(&mut s, "plain");
        assert_eq!(s, "\"a,b\"|\"say \"\"hi\"\"\"|plain");
    }
}
