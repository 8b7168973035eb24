//! The message log: one append-only, hash-chained record per exchange
//! (docs/design.md §8), stored in SQLite or PostgreSQL (docs/design.md §10).
//!
//! # Records
//!
//! A [`LogRecord`] is what one writer process (a node, a gateway) logged
//! about one exchange: the [`Exchange`] the caller supplies (transaction id,
//! parties, service, role, times, status, sizes, the signed request and
//! response metadata with their signatures, digests and signer
//! certificates, and optionally the bodies) plus the chain fields the log
//! assigns: `seq`, `writer`, `prev_hash` and `hash`.
//!
//! # Chains
//!
//! Every writer (for example `"node-a/0192…"`: a node name and a UUID chosen
//! when the process starts) has its own chain, so processes sharing one
//! PostgreSQL database never contend: `seq` counts from 1 per writer, the
//! first record's `prev_hash` is 32 zero bytes ([`ChainHash::GENESIS`]) and
//! every later record's `prev_hash` is the `hash` of the record before it.
//!
//! # Canonical encoding and hash
//!
//! A record's canonical encoding is its JSON as written by `serde_json`
//! in compact form (no whitespace; strings escape only `"`, `\` and control
//! characters; other characters as raw UTF-8), with the members in exactly
//! this order, absent optional values written as `null`:
//!
//! ```text
//! {"seq":N,"writer":"...","prev_hash":"<64 hex>","exchange":{
//!   "transaction_id":"<uuid v7>","client":"<subsystem id>","service":"<service id>",
//!   "role":"consumer"|"provider"|"gateway",
//!   "received_at":"<RFC 3339>","forwarded_at":null|"<RFC 3339>",
//!   "backend_answered_at":null|"<RFC 3339>","responded_at":"<RFC 3339>",
//!   "status":N,"problem_code":null|"...","request_bytes":N,"response_bytes":N,
//!   "user_id":null|"...","request_id":null|"...",
//!   "request":<signed>,"response":null|<signed>,"body":null|{"request":null|"<base64>","response":null|"<base64>"}
//!   [,"trace_id":"<32 hex>"]},
//!  "hash":"<64 hex>"}
//! ```
//!
//! `trace_id` (the W3C trace id of the request, schema version 6) is the
//! one member written only when present: a record without it encodes, and
//! so hashes, exactly as records written before it existed, which keep
//! verifying. A verifier older than this member reads a record that has
//! it as changed (it drops the member it does not know and the hash no
//! longer matches): upgrade verifiers before nodes.
//!
//! where `<signed>` is `{"signature_input":"...","signature":"...",
//! "content_digest":"...","base":"...","signer_cert_der":"<base64>",
//! "chain_der":["<base64>",...]}`. Hex is lowercase; base64 is the standard
//! alphabet with padding; times are `chrono`'s RFC 3339 form in UTC
//! (`Z`, fractional seconds only as many digits as needed).
//!
//! `hash` is SHA-256 over the canonical encoding **without** the final
//! `,"hash":"<64 hex>"` member, i.e. over the bytes of
//! `{"seq":…,"writer":…,"prev_hash":…,"exchange":{…}}`
//! ([`LogRecord::compute_hash`]).
//!
//! # Storage
//!
//! The database stores each record's JSON with its certificates replaced
//! by their SHA-256 (`signer_cert_sha256`, `chain_sha256`), and each
//! certificate once in a table of its own (schema version 5): the same
//! few certificates would otherwise fill half of every record. Reading a
//! record puts the certificates back and re-checks its hash over the
//! canonical encoding above, so a changed row, a changed certificate or a
//! missing one is reported as corrupt.
//!
//! # Durability
//!
//! [`MessageLog::append`] returns only once the record's transaction has
//! committed, so a node that awaits it before sending its response never
//! acknowledges an unlogged exchange. Appends are group-committed: see
//! [`sql::SqlMessageLog`].

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ndxp_core::trace::TraceId;
use ndxp_core::{ServiceId, SubsystemId, TransactionId};
use serde::{Deserialize, Serialize};

mod canonical;
#[cfg(feature = "store")]
mod chain;
#[cfg(feature = "store")]
pub mod sql;
#[cfg(feature = "store")]
mod sqlite_writer;

#[cfg(feature = "store")]
pub use sql::{LogOptions, SqlMessageLog};

/// A 32-byte SHA-256 value of the chain, written as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev_hash` of a chain's first record: 32 zero bytes.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);

    /// The value as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        canonical::hex_string(&self.0)
    }

    /// Parses exactly 64 lowercase hex digits.
    pub fn from_hex(s: &str) -> Result<Self, String> {
        if s.len() != 64 || s.bytes().any(|b| !matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(format!("{s:?} is not 64 lowercase hex digits"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|e| format!("{s:?}: {e}"))?;
        Ok(ChainHash(out))
    }
}

impl std::fmt::Debug for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChainHash({})", self.to_hex())
    }
}

impl std::fmt::Display for ChainHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for ChainHash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for ChainHash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        ChainHash::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// Serde helpers for bytes as standard base64 with padding.
pub(crate) mod b64 {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(crate) fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }

    pub(crate) mod opt {
        use super::*;

        pub(crate) fn serialize<S: Serializer>(
            v: &Option<Vec<u8>>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match v {
                Some(v) => s.serialize_some(&STANDARD.encode(v)),
                None => s.serialize_none(),
            }
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }

    pub(crate) mod vec {
        use super::*;
        use serde::ser::SerializeSeq;

        pub(crate) fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(v.len()))?;
            for item in v {
                seq.serialize_element(&STANDARD.encode(item))?;
            }
            seq.end()
        }

        pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Vec<Vec<u8>>, D::Error> {
            Vec::<String>::deserialize(d)?
                .into_iter()
                .map(|s| STANDARD.decode(s).map_err(serde::de::Error::custom))
                .collect()
        }
    }
}

/// Which part the writer played in the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The consumer's node (it signed the request).
    Consumer,
    /// The provider's node (it signed the response).
    Provider,
    /// A gateway acting for members without a node.
    Gateway,
}

/// The signed metadata of one message (request or response), enough to
/// re-verify its signature offline with
/// [`ndxp_sign::profile::verify_logged`]. The default, every field empty,
/// is what the central gateway logs for a message it relayed unsigned.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedMeta {
    /// The `Signature-Input` member, e.g. `ndxp=("@method" ...);created=...`.
    pub signature_input: String,
    /// The `Signature` member, e.g. `ndxp=:...:`.
    pub signature: String,
    /// The `Content-Digest` field value (RFC 9530).
    pub content_digest: String,
    /// The signature base that was signed.
    pub base: String,
    /// The signer's certificate, DER (base64 in JSON).
    #[serde(with = "b64")]
    pub signer_cert_der: Vec<u8>,
    /// Intermediate certificates sent with it, DER (base64 in JSON).
    #[serde(with = "b64::vec")]
    pub chain_der: Vec<Vec<u8>>,
}

impl SignedMeta {
    /// The metadata of a message `signer` signed with
    /// [`ndxp_sign::profile::sign_request`] or
    /// [`ndxp_sign::profile::sign_response`]: the signature fields of
    /// `info`, the message's `content_digest`, and the signer's certificate
    /// and intermediates as DER.
    ///
    /// # Errors
    /// A certificate that cannot be encoded as DER.
    pub fn signed_by(
        info: ndxp_sign::profile::SignedInfo,
        content_digest: String,
        signer: &ndxp_sign::profile::Signer,
    ) -> Result<Self, ndxp_sign::openssl::error::ErrorStack> {
        Ok(Self {
            signature_input: info.signature_input,
            signature: info.signature,
            content_digest,
            base: info.base,
            signer_cert_der: signer.certificate().to_der()?,
            chain_der: signer
                .chain()
                .iter()
                .map(|c| c.to_der())
                .collect::<Result<_, _>>()?,
        })
    }
}

/// Message bodies, kept only when the configuration says so.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bodies {
    /// The request body (base64 in JSON).
    #[serde(with = "b64::opt")]
    pub request: Option<Vec<u8>>,
    /// The response body (base64 in JSON).
    #[serde(with = "b64::opt")]
    pub response: Option<Vec<u8>>,
}

/// What the caller logs about one exchange.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exchange {
    /// The transaction id (`NDXP-Id`), the same in both nodes' logs.
    pub transaction_id: TransactionId,
    /// The calling subsystem.
    pub client: SubsystemId,
    /// The service called.
    pub service: ServiceId,
    /// The writer's part in the exchange.
    pub role: Role,
    /// When the request arrived.
    pub received_at: DateTime<Utc>,
    /// When the request was sent on: to the provider's node (consumer
    /// role), to the backend (provider role, gateway); `None` when the
    /// exchange ended before that (refused, failed).
    pub forwarded_at: Option<DateTime<Utc>>,
    /// When the answer to the forwarded request came back (the peer node's
    /// or the backend's response headers); `None` when none came.
    pub backend_answered_at: Option<DateTime<Utc>>,
    /// When the response left (or the exchange ended).
    pub responded_at: DateTime<Utc>,
    /// The HTTP status returned.
    pub status: u16,
    /// The problem code when the exchange failed.
    pub problem_code: Option<String>,
    /// Request body size in bytes.
    pub request_bytes: u64,
    /// Response body size in bytes.
    pub response_bytes: u64,
    /// The end user named by the client (`NDXP-User-Id`), opaque.
    pub user_id: Option<String>,
    /// The client system's own correlation id (`NDXP-Request-Id`), opaque.
    pub request_id: Option<String>,
    /// The signed request metadata.
    pub request: SignedMeta,
    /// The signed response metadata, when a signed response was sent or
    /// received.
    pub response: Option<SignedMeta>,
    /// The bodies, when kept (`None` by default).
    pub body: Option<Bodies>,
    /// The W3C trace id the exchange belonged to (`traceparent`), the same
    /// in every hop's record. Absent from the encoding when `None`, so
    /// records written before it existed keep their hash.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<TraceId>,
}

/// One stored record: an [`Exchange`] and its place in its writer's chain.
/// The field order is the canonical encoding (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRecord {
    /// Position in the writer's chain, from 1.
    pub seq: u64,
    /// The writer process's id.
    pub writer: String,
    /// The previous record's hash ([`ChainHash::GENESIS`] for `seq` 1).
    pub prev_hash: ChainHash,
    /// What was logged.
    pub exchange: Exchange,
    /// SHA-256 of the canonical encoding without this member.
    pub hash: ChainHash,
}

impl LogRecord {
    /// Builds a record and computes its hash.
    pub fn new(
        seq: u64,
        writer: String,
        prev_hash: ChainHash,
        exchange: Exchange,
    ) -> Result<Self, serde_json::Error> {
        let hash = Self::hash_of(seq, &writer, &prev_hash, &exchange)?;
        Ok(Self {
            seq,
            writer,
            prev_hash,
            exchange,
            hash,
        })
    }

    fn hash_of(
        seq: u64,
        writer: &str,
        prev_hash: &ChainHash,
        exchange: &Exchange,
    ) -> Result<ChainHash, serde_json::Error> {
        let head = canonical::record_head(seq, writer, prev_hash)?;
        let encoded = canonical::encode_exchange(exchange, None)?;
        Ok(canonical::record_hash(&head, &encoded.canonical))
    }

    /// Builds a record, computes its hash and returns it with its canonical
    /// encoding, serializing the exchange once (the log's write path).
    pub fn new_canonical(
        seq: u64,
        writer: String,
        prev_hash: ChainHash,
        exchange: Exchange,
    ) -> Result<(Self, String), serde_json::Error> {
        let head = canonical::record_head(seq, &writer, &prev_hash)?;
        let encoded = canonical::encode_exchange(&exchange, None)?;
        let hash = canonical::record_hash(&head, &encoded.canonical);
        let text = canonical::stored_text(&head, &encoded.canonical, &hash)?;
        Ok((
            Self {
                seq,
                writer,
                prev_hash,
                exchange,
                hash,
            },
            text,
        ))
    }

    /// Recomputes the hash from the other fields (compare with
    /// [`hash`](LogRecord::hash) to detect a change).
    pub fn compute_hash(&self) -> Result<ChainHash, serde_json::Error> {
        Self::hash_of(self.seq, &self.writer, &self.prev_hash, &self.exchange)
    }

    /// The canonical encoding (compact JSON, `hash` last).
    pub fn to_canonical(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// The last record of a writer's chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// Its `seq` (0 for an empty chain).
    pub seq: u64,
    /// Its `hash` ([`ChainHash::GENESIS`] for an empty chain).
    pub hash: ChainHash,
}

impl ChainHead {
    /// The head of an empty chain.
    pub const EMPTY: ChainHead = ChainHead {
        seq: 0,
        hash: ChainHash::GENESIS,
    };
}

/// Why the message log failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// The database URL names no supported backend.
    #[error("unsupported message log URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    /// The database could not be opened (or a SQLite file is not a
    /// database).
    #[error("cannot open the message log database {target}: check the URL, the server and that the file is an NDXP message log")]
    Open {
        /// The URL, password removed.
        target: String,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The SQLite database file could not be created private, or group or
    /// others can read it.
    #[cfg(feature = "store")]
    #[error("the message log database file cannot be used: {0}")]
    DatabaseFile(#[source] ndxp_db::FileModeError),
    /// The schema could not be created or upgraded.
    #[cfg(feature = "store")]
    #[error("cannot apply the message log schema migrations")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// A query failed.
    #[cfg(feature = "store")]
    #[error("message log database error")]
    Database(#[source] sqlx::Error),
    /// A batch of appends could not be committed; none of its records was
    /// stored.
    #[error("the message log could not commit the record; it was not stored")]
    Commit(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// A stored row does not hold a valid record, or its chain is broken.
    #[error("the message log database is corrupt: {what}: {detail}")]
    Corrupt {
        /// Which row or column.
        what: String,
        /// What is wrong.
        detail: String,
    },
    /// A purge would remove the chain head or nothing at all.
    #[error("cannot purge records before {before}: the chain head is {head}; purge from 2 up to the head")]
    PurgeRange {
        /// The requested bound.
        before: u64,
        /// The writer's head `seq`.
        head: u64,
    },
    /// The writer id is empty or too long.
    #[error("invalid writer id {0:?}: use 1 to 200 characters")]
    InvalidWriter(String),
    /// A record could not be encoded.
    #[error("cannot encode the log record")]
    Encode(#[source] serde_json::Error),
    /// The log was closed (its background writer has stopped).
    #[error("the message log is closed")]
    Closed,
}

/// Result with [`LogError`].
pub type Result<T, E = LogError> = std::result::Result<T, E>;

/// The message log storage. Records are never updated; only
/// [`purge_before`](MessageLog::purge_before) deletes old ones, after
/// recording a checkpoint.
#[async_trait]
pub trait MessageLog: Send + Sync {
    /// This log's writer id (the chain its appends extend).
    fn writer(&self) -> &str;

    /// Appends a record to this writer's chain and returns it once it is
    /// durably committed.
    async fn append(&self, exchange: Exchange) -> Result<LogRecord>;

    /// The head of `writer`'s chain as stored.
    async fn head(&self, writer: &str) -> Result<ChainHead>;

    /// `writer`'s records with `from <= seq <= to`, in `seq` order; each is
    /// checked against its stored hash.
    async fn read(&self, writer: &str, from: u64, to: u64) -> Result<Vec<LogRecord>>;

    /// Deletes `writer`'s records with `seq < before` (the only deletion
    /// the log allows), first recording the last purged record's `seq` and
    /// `hash` as a checkpoint, in one transaction, and returns that
    /// checkpoint. The head record is always kept: `2 <= before <= head`.
    /// Purging again below an earlier checkpoint returns that checkpoint.
    /// Export what you purge first ([`crate::archive::export`]).
    async fn purge_before(&self, writer: &str, before: u64) -> Result<ChainHead>;

    /// `writer`'s latest checkpoint: the last purged record's `seq` and
    /// `hash` (the `prev_hash` of the first record still stored), or
    /// [`ChainHead::EMPTY`] when nothing was purged.
    async fn checkpoint(&self, writer: &str) -> Result<ChainHead>;

    /// Every writer with at least one record, sorted.
    async fn writers(&self) -> Result<Vec<String>>;
}
