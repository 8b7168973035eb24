//! The keys and figures of a summary: outcomes, sides, periods, buckets and
//! the order-independent digest of a bucket's ids.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Duration, DurationRound, TimeZone, Utc};
use ndxp_core::{ServiceId, SubsystemId, TransactionId};
use ndxp_sign::openssl::sha::Sha256;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ReconcileError;

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

    pub(super) fn index(self) -> usize {
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
pub(super) struct DigestAcc([u64; 4]);

impl DigestAcc {
    pub(super) fn add(&mut self, id: &TransactionId) {
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

    pub(super) fn finish(self) -> IdSetDigest {
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
    pub(super) fn stats(&self) -> BucketStats {
        BucketStats {
            count: self.count,
            digest: self.digest,
        }
    }
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
