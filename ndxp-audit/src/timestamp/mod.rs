//! Batch RFC 3161 timestamping of the message log (docs/design.md §8), off the
//! request path.
//!
//! # What is stamped
//!
//! For every writer whose chain has records not yet covered, one time-stamp
//! token is requested whose message imprint (SHA-256) is the `hash` of the
//! writer's **chain head** at that moment, record `last_seq`. Because every
//! record's hash covers the hash of the record before it, that one token
//! proves that records `1..=last_seq` of the chain existed, exactly as
//! stored, at the token's `genTime`; the stored row names the first record
//! it newly covers (`first_seq`, one after the previous token's
//! `last_seq`). A token is verified with the stock tools by giving the
//! record's hash as the digest:
//!
//! ```text
//! openssl ts -verify -digest <record hash hex> -in token.der -token_in \
//!     -CAfile ca.pem -untrusted tsa.pem
//! ```
//!
//! # When
//!
//! A [`Timestamper`] runs in the background: every
//! [`TimestampOptions::interval`], and as soon as its own writer has
//! [`TimestampOptions::batch_size`] unstamped records (it watches the
//! log's head, [`SqlMessageLog::head_watch`](crate::log::SqlMessageLog::head_watch)). It stamps every writer of
//! the database, so the tail of a chain left by a previous process (or one
//! killed) gets stamped too. Appends never wait for it.
//!
//! # Lag
//!
//! [`Timestamper::lag`] tells how far behind timestamping is: the number of
//! records not covered by a token and the age of the oldest of them (by
//! its `received_at`), as of the last run, aging live. A node calls
//! [`Timestamper::check_lag`] before accepting an exchange and refuses
//! (`ndxp.internal`) while it fails: when the TSA is unreachable the node
//! keeps serving up to the configured maximum lag, then stops until
//! timestamping catches up.
//!
//! # Transport
//!
//! The TSA is reached through [`TsaTransport`]; [`HttpTsa`] POSTs
//! `application/timestamp-query` over HTTP(S). Every response is verified
//! ([`ndxp_sign::tsa::verify_response`]: signature, TSA certificate chain
//! to the configured anchors, imprint, nonce) before its token is stored.
//!
//! # Features
//!
//! The types of this module and [`TsaTransport`] need neither a database
//! nor an HTTP client: the archive verifier uses them alone. The
//! [`Timestamper`] and the functions that read and store tokens come with
//! the `store` feature, [`HttpTsa`] with `tsa-client`.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ndxp_sign::tsa::{TsaError, TsaTrust};
use serde::Serialize;

use crate::log::ChainHash;

#[cfg(feature = "tsa-client")]
mod http;
#[cfg(feature = "store")]
mod store;

#[cfg(feature = "tsa-client")]
pub use http::HttpTsa;
#[cfg(feature = "store")]
pub use store::{covering, stamp_pending, tokens, Timestamper};

/// The media type of a time-stamp query (RFC 3161 §3.4).
pub const QUERY_TYPE: &str = "application/timestamp-query";
/// The media type of a time-stamp reply (RFC 3161 §3.4).
pub const REPLY_TYPE: &str = "application/timestamp-reply";

/// Why a TSA could not be asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// The request could not be sent or no answer came in time.
    #[error("the TSA at {url} cannot be reached: {detail}")]
    Unreachable {
        /// The TSA's URL.
        url: String,
        /// What failed.
        detail: String,
    },
    /// The TSA answered with an HTTP error status or a wrong media type.
    #[error("the TSA at {url} answered {detail}")]
    BadAnswer {
        /// The TSA's URL.
        url: String,
        /// The status or content type received.
        detail: String,
    },
}

/// Why a timestamping run failed. Nothing is stored for a writer whose
/// token was not verified.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The TSA could not be asked.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// The query could not be built, or the TSA's response did not verify.
    #[error("the time-stamp response for writer {writer:?} up to record {seq} was refused")]
    Token {
        /// The writer.
        writer: String,
        /// The chain head that was to be stamped.
        seq: u64,
        /// Why.
        #[source]
        source: TsaError,
    },
    /// The HTTP client could not be built (the HTTP client's error, so
    /// that its type is not part of this crate's API).
    #[cfg(feature = "tsa-client")]
    #[error("cannot build the HTTP client for the TSA")]
    Client(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// The log database failed.
    #[cfg(feature = "store")]
    #[error("message log database error while timestamping")]
    Database(#[source] sqlx::Error),
    /// A stored value is not what the log writes.
    #[error("the message log database is corrupt: {0}")]
    Corrupt(String),
}

/// Sends a DER time-stamp query to a TSA and returns its DER reply.
#[async_trait]
pub trait TsaTransport: Send + Sync + std::fmt::Debug {
    /// Sends `query` (DER `TimeStampReq`) and returns the DER
    /// `TimeStampResp`.
    async fn query(&self, query: &[u8]) -> Result<Vec<u8>, TransportError>;
}

/// Settings of a [`Timestamper`].
#[derive(Debug, Clone)]
pub struct TimestampOptions {
    /// Time between two runs.
    pub interval: Duration,
    /// Stamp at once when this writer has this many unstamped records.
    pub batch_size: u64,
    /// Trust for the TSA's tokens: the CA certificates its certificate
    /// chains to (and untrusted intermediates).
    pub trust: TsaTrust,
    /// The TSA policy to request (dotted OID), if any.
    pub policy: Option<String>,
}

impl TimestampOptions {
    /// Defaults (every 10 s or 10,000 records, no policy requested) with
    /// the given trust.
    pub fn new(trust: TsaTrust) -> Self {
        Self {
            interval: Duration::from_secs(10),
            batch_size: 10_000,
            trust,
            policy: None,
        }
    }
}

/// One stored time-stamp token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTimestamp {
    /// The writer whose chain it stamps.
    pub writer: String,
    /// The first record it newly covers.
    pub first_seq: u64,
    /// The stamped record (the chain head when stamped).
    pub last_seq: u64,
    /// That record's hash: the token's SHA-256 message imprint.
    pub hash: ChainHash,
    /// The token's genTime.
    pub gen_time: DateTime<Utc>,
    /// The token, DER `ContentInfo`.
    pub token_der: Vec<u8>,
}

/// How far behind timestamping is.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Lag {
    /// Seconds since the oldest record not covered by a token was received
    /// (0 when every record was covered at the last run).
    pub seconds: f64,
    /// Records not covered by a token at the last run.
    pub unstamped: u64,
    /// `received_at` of the oldest of them.
    pub oldest_unstamped: Option<DateTime<Utc>>,
    /// When a run last completed without error.
    pub last_success: Option<DateTime<Utc>>,
    /// The last run's error, when it failed.
    pub last_error: Option<String>,
    /// Tokens stored by this timestamper.
    pub tokens: u64,
}

/// Timestamping is further behind than allowed: new exchanges must be
/// refused until it catches up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("the message log is not being timestamped: the oldest of {unstamped} unstamped records is {lag_secs:.0} s old, over the {max_secs} s allowed ({})", last_error.as_deref().unwrap_or("no successful run yet"))]
pub struct LagExceeded {
    /// The current lag in seconds.
    pub lag_secs: f64,
    /// The allowed maximum in seconds.
    pub max_secs: u64,
    /// Records not yet covered.
    pub unstamped: u64,
    /// Why the last run failed, if it did.
    pub last_error: Option<String>,
}

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunReport {
    /// Tokens stored, one per writer stamped.
    pub stamped: Vec<StoredTimestamp>,
    /// Records left uncovered (appended during the run, or of writers whose
    /// stamp failed).
    pub unstamped: u64,
}
