//! Message log archives: one self-contained file holding ranges of one or
//! more writers' chains, the RFC 3161 time-stamp tokens that cover them and
//! the certificates needed to check everything, and a verifier that
//! integrators can call on its own ([`verify_archive`]).
//!
//! `docs/archive.md` is the normative description of the format. In short,
//! an archive is UTF-8 JSON lines, each ended by `\n`, every line in the
//! canonical compact form `serde_json` writes (members in the order shown):
//!
//! ```text
//! {"format":"ndxp-message-log-archive","version":2,"chains":[{"writer":"...","first_seq":N,"count":N,"prev_hash":"<hex>"},...]}
//! <record line>            × every chain's count, chain after chain: the record's canonical encoding (crate::log)
//! {"timestamps":[{"writer":"...","last_seq":N,"hash":"<hex>","token_sha256":"<hex>","token":"<base64 DER>"},...]}
//! {"certificates":[{"sha256":"<hex>","der":"<base64>"},...]}
//! {"end":{"records":N,"chains":[{"writer":"...","count":N,"last_hash":"<hex>"},...]}}
//! ```
//!
//! The verifier recomputes every record hash and every link, requires each
//! line to be byte for byte its canonical re-encoding, re-verifies every
//! logged signature and every time-stamp token, so any change of any byte,
//! any deleted, inserted, duplicated or reordered record and any truncation
//! is reported, naming the first bad record ([`ArchiveError`]). It never
//! panics on any input.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use ndxp_sign::openssl::sha::sha256;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile::ProfileError;
use serde::{Deserialize, Serialize};

use crate::log::{b64, ChainHash, LogError, LogRecord, Role, SignedMeta};
use crate::timestamp::TimestampError;

#[cfg(feature = "store")]
mod export;
mod verify;
mod write;

#[cfg(feature = "store")]
pub use export::{export_range, ExportRequest, Range};
pub use verify::{
    inspect, verify_archive, verify_archive_file, verify_archive_file_with, verify_archive_with,
};
pub use write::{encode, encode_contents, export, Contents};

/// The `format` member of an archive header.
pub const FORMAT: &str = "ndxp-message-log-archive";
/// The archive format version this crate writes and reads.
pub const VERSION: u32 = 2;

/// How much earlier than the record it stamps a token's genTime may be
/// (clock differences between the node and the TSA), in seconds.
pub const TIMESTAMP_SKEW_SECS: i64 = 300;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainHeader {
    writer: String,
    first_seq: u64,
    count: u64,
    prev_hash: ChainHash,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    chains: Vec<ChainHeader>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    writer: String,
    last_seq: u64,
    hash: ChainHash,
    token_sha256: ChainHash,
    #[serde(with = "b64")]
    token: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Timestamps {
    timestamps: Vec<TokenEntry>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertEntry {
    sha256: ChainHash,
    #[serde(with = "b64")]
    der: Vec<u8>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Certificates {
    certificates: Vec<CertEntry>,
}

#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChainEnd {
    writer: String,
    count: u64,
    last_hash: ChainHash,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {
    records: u64,
    chains: Vec<ChainEnd>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    end: EndBody,
}

/// Why an archive could not be written or does not verify. The variants
/// about content name the first bad record by writer and `seq`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Record `seq` is not what was logged: its content does not hash to
    /// its `hash`, or its line is not in canonical form.
    #[error("record {seq} of writer {writer:?} was changed: {detail}")]
    Changed {
        /// The record's writer.
        writer: String,
        /// The record's `seq`.
        seq: u64,
        /// What differs.
        detail: String,
    },
    /// One or more records after `after_seq` are missing (`after_seq` is
    /// `first_seq - 1` when the chain's first records are missing).
    #[error("records of writer {writer:?} were deleted after record {after_seq}")]
    Deleted {
        /// The chain's writer.
        writer: String,
        /// The last record present before the gap.
        after_seq: u64,
    },
    /// Record `seq` does not belong here: a duplicate, one beyond the
    /// header's range, or one of a writer the header does not list.
    #[error("record {seq} of writer {writer:?} was inserted: {detail}")]
    Inserted {
        /// The record's writer.
        writer: String,
        /// The inserted record's `seq`.
        seq: u64,
        /// Why it does not belong.
        detail: String,
    },
    /// Record `seq` is out of order.
    #[error("record {seq} of writer {writer:?} is out of order")]
    Reordered {
        /// The record's writer.
        writer: String,
        /// The misplaced record's `seq`.
        seq: u64,
    },
    /// Record `seq`'s `prev_hash` is not the hash of the record before it:
    /// that record was replaced (with a recomputed hash) or `seq` was
    /// forged.
    #[error("record {seq} of writer {writer:?} does not link to the record before it (that record was replaced, or this one forged)")]
    BrokenLink {
        /// The record's writer.
        writer: String,
        /// The record whose link is broken.
        seq: u64,
    },
    /// A time-stamp token does not verify, or does not stamp the record it
    /// claims to.
    #[error("bad timestamp of record {seq} of writer {writer:?}: {detail}")]
    Timestamp {
        /// The stamped chain's writer.
        writer: String,
        /// The stamped record (the token's `last_seq`).
        seq: u64,
        /// What is wrong.
        detail: String,
    },
    /// The archive ends early.
    #[error("the archive is truncated: {0}")]
    Truncated(String),
    /// A line is not valid (not JSON, not the expected member, a header,
    /// timestamp list, certificate list or end line that does not match
    /// the records).
    #[error("the archive is malformed at {at}: {detail}")]
    Malformed {
        /// Where: `line N` (1-based) and what the line should be.
        at: String,
        /// What is wrong.
        detail: String,
    },
    /// A record's signer or intermediate certificate is not DER.
    #[error("record {seq} of writer {writer:?}: a logged certificate cannot be parsed")]
    BadCertificate {
        /// The record's writer.
        writer: String,
        /// The record's `seq`.
        seq: u64,
        /// OpenSSL's error.
        #[source]
        source: ndxp_sign::openssl::error::ErrorStack,
    },
    /// A logged signature does not re-verify against the trust anchors.
    #[error("record {seq} of writer {writer:?}: bad signature: the logged {message} signature does not verify")]
    Signature {
        /// The record's writer.
        writer: String,
        /// The record's `seq`.
        seq: u64,
        /// `request` or `response`.
        message: &'static str,
        /// Why.
        #[source]
        source: Box<ProfileError>,
    },
    /// Reading the log for an export failed.
    #[error("cannot read the message log")]
    Log(#[source] LogError),
    /// Reading the stored time-stamp tokens for an export failed.
    #[error("cannot read the message log's timestamps")]
    Timestamps(#[source] TimestampError),
    /// A record or line could not be encoded.
    #[error("cannot encode the archive")]
    Encode(#[source] serde_json::Error),
    /// The archive file could not be read or written.
    #[error("cannot access the archive file {path}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`ArchiveError`].
pub type Result<T, E = ArchiveError> = std::result::Result<T, E>;

/// A progress callback: `(done, total)` units of work (records).
pub type Progress<'a> = Option<&'a dyn Fn(u64, u64)>;

/// An archive in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    bytes: Vec<u8>,
}

impl Archive {
    /// The archive file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The bytes, owned.
    pub fn into_bytes(self) -> Vec<u8> {
        self.bytes
    }

    /// Writes the archive to `path` (through a temporary file in the same
    /// directory, renamed when complete, so a crash never leaves half an
    /// archive under that name).
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let io = |source| ArchiveError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".partial");
        let tmp = std::path::PathBuf::from(tmp);
        // Mode 0600 from the first byte: an archive holds the log's records.
        let mut f = ndxp_sign::files::create_private(&tmp).map_err(io)?;
        std::io::Write::write_all(&mut f, &self.bytes).map_err(io)?;
        f.sync_all().map_err(io)?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// One chain of a verified archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The writer whose chain it is.
    pub writer: String,
    /// The first record's `seq`.
    pub first_seq: u64,
    /// How many records.
    pub count: u64,
    /// The `prev_hash` of the first record (the hash the range hangs from).
    pub prev_hash: ChainHash,
    /// The last record's hash.
    pub last_hash: ChainHash,
    /// The last record covered by a verified time-stamp token, if any.
    pub stamped_through: Option<u64>,
    /// Records after `stamped_through` (not covered by any token in the
    /// archive).
    pub unstamped: u64,
}

/// A time-stamp token of a verified archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchivedTimestamp {
    /// The stamped chain's writer.
    pub writer: String,
    /// The first record of the archive it covers and the previous token
    /// does not (through the chain it also covers every earlier record).
    pub first_seq: u64,
    /// The stamped record.
    pub last_seq: u64,
    /// That record's hash (the token's SHA-256 imprint).
    pub hash: ChainHash,
    /// The token's genTime, when the token was verified (there were
    /// anchors).
    pub gen_time: Option<DateTime<Utc>>,
    /// The token, DER (`openssl ts -verify -token_in -in FILE`).
    pub token_der: Vec<u8>,
}

/// What a verified archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Its chains, in file order.
    pub chains: Vec<ChainReport>,
    /// Records in all chains.
    pub records: u64,
    /// How many certificates the archive carries.
    pub certificates: usize,
    /// How many signatures were re-verified (0 when there was no anchor).
    pub signatures_verified: usize,
    /// Its time-stamp tokens, each bound to the record it stamps.
    pub timestamps: Vec<ArchivedTimestamp>,
    /// How many tokens were verified (signature and TSA chain; 0 when
    /// there was no anchor).
    pub timestamps_verified: usize,
    /// Whether the trust anchors were the self-signed certificates found in
    /// the archive itself (no [`VerifyOptions::anchors`] given): the
    /// archive is intact and consistent, but whom it was signed by is not
    /// established until it is verified against anchors of your own.
    pub anchors_from_archive: bool,
}

/// What [`verify_archive`] trusts.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The CA certificates signatures and time-stamp tokens must chain to.
    /// Every logged request and response signature is re-verified offline
    /// with [`profile::verify_logged`](ndxp_sign::profile::verify_logged) against them (the signer's chain at
    /// the signature's `created`, no revocation check), every token with
    /// [`tsa::verify_token`](ndxp_sign::tsa::verify_token). `None`: the self-signed certificates the
    /// archive carries are used (see
    /// [`ArchiveReport::anchors_from_archive`]).
    pub anchors: Option<Vec<X509>>,
}

/// The signed messages of a record, labelled `request` and `response`.
/// A message the central gateway relayed unsigned (a service without the
/// DigiSign adapter) is logged with empty metadata and has no signature or
/// certificate to check; only records of role `gateway` may hold one, so an
/// emptied message of a node's record still fails as a certificate that
/// does not parse.
fn metas(record: &LogRecord) -> impl Iterator<Item = (&'static str, &SignedMeta)> {
    let unsigned = |m: &SignedMeta| {
        record.exchange.role == Role::Gateway
            && m.signature_input.is_empty()
            && m.signature.is_empty()
            && m.signer_cert_der.is_empty()
            && m.chain_der.is_empty()
    };
    std::iter::once(("request", &record.exchange.request))
        .chain(record.exchange.response.as_ref().map(|m| ("response", m)))
        .filter(move |(_, m)| !unsigned(m))
}

/// The certificates the records carry, plus `extra`, by SHA-256.
fn certificate_map<'a>(
    records: impl Iterator<Item = &'a LogRecord>,
    extra: &[Vec<u8>],
) -> BTreeMap<ChainHash, Vec<u8>> {
    let mut map = BTreeMap::new();
    for r in records {
        for (_, m) in metas(r) {
            for der in std::iter::once(&m.signer_cert_der).chain(m.chain_der.iter()) {
                map.entry(ChainHash(sha256(der)))
                    .or_insert_with(|| der.clone());
            }
        }
    }
    for der in extra {
        map.entry(ChainHash(sha256(der)))
            .or_insert_with(|| der.clone());
    }
    map
}
