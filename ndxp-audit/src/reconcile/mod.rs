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
//!
//! The model (periods, buckets, [`Summary`], [`compare`], [`drill_down`]
//! and the [`Report`]) needs no database; the scan of a message log
//! database ([`summarize_log`], [`bucket_ids_from_log`]) comes with the
//! `store` feature.

use chrono::{DateTime, Utc};
use ndxp_sign::jws::JwsError;

mod bucket;
mod compare;
#[cfg(feature = "store")]
mod scan;
mod summary;
#[cfg(test)]
mod tests;

pub use bucket::{
    Bucket, BucketKey, BucketStats, Entry, IdSetDigest, Outcome, Period, PeriodLength, Side,
};
pub use compare::{
    compare, drill_down, push_csv_field, Comparison, Difference, DifferenceKind, DifferingBucket,
    Inconsistency, Report,
};
#[cfg(feature = "store")]
pub use scan::{bucket_ids_from_log, summarize_log, LogReadError, LogSummaries, LOG_TIME_MARGIN};
pub use summary::{summarize, Summarizer, Summary, SUMMARY_JWS_TYPE};

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
