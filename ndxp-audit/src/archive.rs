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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use ndxp_core::ErrorChain;
use ndxp_sign::chain::NoRevocationCheck;
use ndxp_sign::openssl::sha::sha256;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile::{self, ProfileError};
use ndxp_sign::tsa::{self, ImprintAlgorithm, TsaTrust};
use serde::{Deserialize, Serialize};

use crate::log::{
    b64, ChainHash, LogError, LogRecord, MessageLog, Role, SignedMeta, SqlMessageLog,
};
use crate::timestamp::{self, StoredTimestamp, TimestampError};

/// The `format` member of an archive header.
pub const FORMAT: &str = "ndxp-message-log-archive";
/// The archive format version this crate writes and reads.
pub const VERSION: u32 = 2;

/// How much earlier than the record it stamps a token's genTime may be
/// (clock differences between the node and the TSA), in seconds.
pub const TIMESTAMP_SKEW_SECS: i64 = 300;

/// Records read from the log per query during an export.
const PAGE: u64 = 1000;

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
    /// with [`profile::verify_logged`] against them (the signer's chain at
    /// the signature's `created`, no revocation check), every token with
    /// [`tsa::verify_token`]. `None`: the self-signed certificates the
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

fn push_line<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(ArchiveError::Encode)?;
    out.push(b'\n');
    Ok(())
}

/// What goes into an archive.
#[derive(Debug, Clone, Default)]
pub struct Contents {
    /// Chains: each a writer's consecutive records, in order (empty chains
    /// are left out).
    pub chains: Vec<Vec<LogRecord>>,
    /// Time-stamp tokens of records in these chains.
    pub timestamps: Vec<StoredTimestamp>,
    /// Certificates to carry besides the records' own (DER): the TSA's
    /// certificate and the CA certificates.
    pub certificates: Vec<Vec<u8>>,
}

/// Builds an archive of one writer's consecutive `records`, without
/// timestamps, and verifies it before returning it.
pub fn encode(writer: &str, records: &[LogRecord]) -> Result<Archive> {
    let _ = writer;
    encode_contents(&Contents {
        chains: vec![records.to_vec()],
        ..Contents::default()
    })
}

/// Builds an archive and checks its structure before returning it (every
/// hash, link and the token-to-record binding; not the signatures, whose
/// trust is the verifier's business), so a broken chain is never archived
/// as if it were sound.
pub fn encode_contents(contents: &Contents) -> Result<Archive> {
    let chains: Vec<&Vec<LogRecord>> = contents.chains.iter().filter(|c| !c.is_empty()).collect();
    let mut headers = Vec::new();
    let mut ends = Vec::new();
    for c in &chains {
        let (first, last) = match (c.first(), c.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => continue,
        };
        headers.push(ChainHeader {
            writer: first.writer.clone(),
            first_seq: first.seq,
            count: c.len() as u64,
            prev_hash: first.prev_hash,
        });
        ends.push(ChainEnd {
            writer: first.writer.clone(),
            count: c.len() as u64,
            last_hash: last.hash,
        });
    }
    let mut out = Vec::new();
    push_line(
        &mut out,
        &Header {
            format: FORMAT.into(),
            version: VERSION,
            chains: headers,
        },
    )?;
    let mut total = 0u64;
    for c in &chains {
        for r in c.iter() {
            push_line(&mut out, r)?;
            total += 1;
        }
    }
    let order: HashMap<&str, usize> = ends
        .iter()
        .enumerate()
        .map(|(i, e)| (e.writer.as_str(), i))
        .collect();
    let mut tokens: Vec<TokenEntry> = contents
        .timestamps
        .iter()
        .map(|t| TokenEntry {
            writer: t.writer.clone(),
            last_seq: t.last_seq,
            hash: t.hash,
            token_sha256: ChainHash(sha256(&t.token_der)),
            token: t.token_der.clone(),
        })
        .collect();
    tokens.sort_by_key(|t| (order.get(t.writer.as_str()).copied(), t.last_seq));
    tokens.dedup_by_key(|t| (t.writer.clone(), t.last_seq));
    push_line(&mut out, &Timestamps { timestamps: tokens })?;
    let mut extra = contents.certificates.clone();
    for t in &contents.timestamps {
        extra.extend(token_certificates(&t.token_der));
    }
    let certs = certificate_map(chains.iter().flat_map(|c| c.iter()), &extra);
    push_line(
        &mut out,
        &Certificates {
            certificates: certs
                .into_iter()
                .map(|(sha256, der)| CertEntry { sha256, der })
                .collect(),
        },
    )?;
    push_line(
        &mut out,
        &End {
            end: EndBody {
                records: total,
                chains: ends,
            },
        },
    )?;
    check(&out, None, None)?;
    Ok(Archive { bytes: out })
}

/// Exports `writer`'s records with `from <= seq <= to` from `log`, without
/// timestamps (see [`export_range`] for the full form).
///
/// # Errors
/// [`ArchiveError::Log`] when the log cannot be read (or a stored record is
/// corrupt); a verification error when the stored chain is broken.
pub async fn export(log: &dyn MessageLog, writer: &str, from: u64, to: u64) -> Result<Archive> {
    let records = log
        .read(writer, from, to)
        .await
        .map_err(ArchiveError::Log)?;
    encode(writer, &records)
}

/// Which records an export takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Range {
    /// One writer's records with `from <= seq <= to`.
    Seq {
        /// The writer.
        writer: String,
        /// First `seq`.
        from: u64,
        /// Last `seq` (inclusive).
        to: u64,
    },
    /// Every writer's records received in `from <= received_at < to`. A
    /// chain is archived from the first to the last such record, so a
    /// record received just outside the window but logged between them is
    /// included; the range of each chain is then extended to the end of
    /// the timestamp batch that covers its last record, so that every
    /// record's timestamp can be checked.
    Time {
        /// Start (inclusive).
        from: DateTime<Utc>,
        /// End (exclusive).
        to: DateTime<Utc>,
    },
}

/// An export: the records, and the certificates to carry besides the
/// records' own.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Which records.
    pub range: Range,
    /// Extra certificates (DER), e.g. the TSA certificate and the CA
    /// certificates, so the archive is verifiable alone.
    pub certificates: Vec<Vec<u8>>,
}

/// Exports a range of the log with the time-stamp tokens whose stamped
/// record lies in the exported chains, reading in pages and reporting
/// progress in records.
///
/// # Errors
/// [`ArchiveError::Log`] or [`ArchiveError::Timestamps`] when the log
/// cannot be read (or a stored record is corrupt); a verification error
/// naming the record when the stored chain is broken.
pub async fn export_range(
    log: &SqlMessageLog,
    request: &ExportRequest,
    progress: Progress<'_>,
) -> Result<Archive> {
    let pool = log.pool();
    let mut ranges: Vec<(String, u64, u64)> = match &request.range {
        Range::Seq { writer, from, to } => {
            let head = log.head(writer).await.map_err(ArchiveError::Log)?;
            vec![(writer.clone(), (*from).max(1), (*to).min(head.seq))]
        }
        Range::Time { from, to } => {
            let mut out = Vec::new();
            for (writer, a, b) in crate::query::seq_bounds(pool, *from, *to)
                .await
                .map_err(ArchiveError::Log)?
            {
                let end = match timestamp::covering(pool, &writer, b)
                    .await
                    .map_err(ArchiveError::Timestamps)?
                {
                    Some(t) => t.last_seq,
                    None => b,
                };
                out.push((writer, a, end));
            }
            out
        }
    };
    ranges.retain(|(_, a, b)| a <= b);
    let total: u64 = ranges.iter().map(|(_, a, b)| b - a + 1).sum();
    let mut done = 0u64;
    if let Some(p) = progress {
        p(0, total);
    }
    let mut contents = Contents {
        certificates: request.certificates.clone(),
        ..Contents::default()
    };
    for (writer, a, b) in &ranges {
        let mut chain = Vec::new();
        let mut from = *a;
        while from <= *b {
            let to = b.min(&from.saturating_add(PAGE - 1)).to_owned();
            let page = log
                .read(writer, from, to)
                .await
                .map_err(ArchiveError::Log)?;
            done += to - from + 1;
            chain.extend(page);
            if let Some(p) = progress {
                p(done, total);
            }
            from = to + 1;
        }
        contents.timestamps.extend(
            timestamp::tokens(pool, writer, *a, *b)
                .await
                .map_err(ArchiveError::Timestamps)?,
        );
        contents.chains.push(chain);
    }
    encode_contents(&contents)
}

fn malformed(line: usize, what: &str, detail: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Malformed {
        at: format!("line {line} ({what})"),
        detail: detail.to_string(),
    }
}

/// Parses a line and requires it to be its own canonical encoding.
fn parse_line<T: Serialize + for<'de> Deserialize<'de>>(
    line: &[u8],
    n: usize,
    what: &str,
) -> Result<T> {
    let value: T = serde_json::from_slice(line).map_err(|e| malformed(n, what, e))?;
    let again = serde_json::to_vec(&value).map_err(ArchiveError::Encode)?;
    if again != line {
        return Err(malformed(n, what, "not in canonical form"));
    }
    Ok(value)
}

/// Reads and verifies the archive file at `path` (see [`verify_archive`]).
pub fn verify_archive_file(path: &Path, options: &VerifyOptions) -> Result<ArchiveReport> {
    verify_archive_file_with(path, options, None)
}

/// [`verify_archive_file`] with a progress callback.
pub fn verify_archive_file_with(
    path: &Path,
    options: &VerifyOptions,
    progress: Progress<'_>,
) -> Result<ArchiveReport> {
    let bytes = std::fs::read(path).map_err(|source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    })?;
    verify_archive_with(&bytes, options, progress)
}

/// Verifies an archive: its structure, every record's hash and canonical
/// form, every link, the ranges announced by the header and the end line,
/// the certificate list, every logged signature, and every time-stamp
/// token (signature, TSA certificate chain, imprint equal to the stamped
/// record's hash, genTime not before the record was received).
///
/// # Errors
/// The first problem found, naming the record: [`ArchiveError::Changed`],
/// [`ArchiveError::Deleted`], [`ArchiveError::Inserted`],
/// [`ArchiveError::Reordered`], [`ArchiveError::BrokenLink`],
/// [`ArchiveError::Signature`], [`ArchiveError::Timestamp`],
/// [`ArchiveError::Truncated`], [`ArchiveError::Malformed`],
/// [`ArchiveError::BadCertificate`].
pub fn verify_archive(bytes: &[u8], options: &VerifyOptions) -> Result<ArchiveReport> {
    verify_archive_with(bytes, options, None)
}

/// [`verify_archive`] with a progress callback (records checked, total).
pub fn verify_archive_with(
    bytes: &[u8],
    options: &VerifyOptions,
    progress: Progress<'_>,
) -> Result<ArchiveReport> {
    check(bytes, Some(options), progress)
}

/// Checks an archive's structure only — hashes, links, ranges, the binding
/// of each token to its record, the certificate and end lines — without
/// verifying any signature or token (so without trust anchors), and
/// reports what it holds. Use [`verify_archive`] to verify.
///
/// # Errors
/// As [`verify_archive`], minus signature and token verification.
pub fn inspect(bytes: &[u8]) -> Result<ArchiveReport> {
    check(bytes, None, None)
}

/// Per-chain state while walking the records.
struct ChainState {
    header: ChainHeader,
    expected: u64,
    prev: ChainHash,
    seen: u64,
    records: HashMap<u64, (ChainHash, DateTime<Utc>)>,
}

/// The verifier. `options` `None`: structure only (no signatures, no token
/// signatures), as used when encoding.
fn check(
    bytes: &[u8],
    options: Option<&VerifyOptions>,
    progress: Progress<'_>,
) -> Result<ArchiveReport> {
    if bytes.is_empty() {
        return Err(ArchiveError::Truncated("the file is empty".into()));
    }
    let Some(body) = bytes.strip_suffix(b"\n") else {
        return Err(ArchiveError::Truncated(
            "the last line is incomplete (no final newline)".into(),
        ));
    };
    let lines: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    let header: Header = parse_line(lines[0], 1, "header")?;
    if header.format != FORMAT || header.version != VERSION {
        return Err(malformed(
            1,
            "header",
            format_args!(
                "format {:?} version {} is not {FORMAT:?} version {VERSION}",
                header.format, header.version
            ),
        ));
    }
    let mut index: HashMap<String, usize> = HashMap::new();
    for (i, c) in header.chains.iter().enumerate() {
        if c.count == 0 || c.first_seq == 0 || index.insert(c.writer.clone(), i).is_some() {
            return Err(malformed(
                1,
                "header",
                format_args!(
                    "chain {:?} is listed twice, empty or starts at seq 0",
                    c.writer
                ),
            ));
        }
    }
    let n = lines.len();
    if n < 4 || !lines[n - 1].starts_with(b"{\"end\":") {
        return Err(ArchiveError::Truncated("the end line is missing".into()));
    }
    let record_lines = &lines[1..n - 3];
    let total = record_lines.len() as u64;

    // The certificates first: they hold the anchors when none are given.
    let certs: Certificates = parse_line(lines[n - 2], n - 1, "certificates")?;
    let mut parsed_certs = Vec::with_capacity(certs.certificates.len());
    let mut last_sha = None;
    for c in &certs.certificates {
        if ChainHash(sha256(&c.der)) != c.sha256 || last_sha.is_some_and(|l| l >= c.sha256) {
            return Err(malformed(
                n - 1,
                "certificates",
                format_args!(
                    "entry {} is not the SHA-256 of its DER, or the list is not sorted by it without duplicates",
                    c.sha256
                ),
            ));
        }
        last_sha = Some(c.sha256);
        let cert = X509::from_der(&c.der).map_err(|e| {
            malformed(
                n - 1,
                "certificates",
                format_args!("certificate {} is not DER: {e}", c.sha256),
            )
        })?;
        parsed_certs.push(cert);
    }
    let (anchors, anchors_from_archive) = match options {
        None => (None, false),
        Some(VerifyOptions {
            anchors: Some(a), ..
        }) => (Some(a.clone()), false),
        Some(_) => {
            let own: Vec<X509> = parsed_certs
                .iter()
                .filter(|c| c.issued(c) == ndxp_sign::openssl::x509::X509VerifyResult::OK)
                .cloned()
                .collect();
            if own.is_empty() {
                (None, true)
            } else {
                (Some(own), true)
            }
        }
    };

    let mut states: Vec<ChainState> = header
        .chains
        .iter()
        .map(|c| ChainState {
            header: c.clone(),
            expected: c.first_seq,
            prev: c.prev_hash,
            seen: 0,
            records: HashMap::new(),
        })
        .collect();
    let mut current = 0usize;
    let mut signatures_verified = 0;
    let mut all_records = Vec::with_capacity(record_lines.len());
    for (i, line) in record_lines.iter().enumerate() {
        let at = i + 2;
        let record: LogRecord =
            serde_json::from_slice(line).map_err(|e| malformed(at, "record", e))?;
        let changed = |detail: String| ArchiveError::Changed {
            writer: record.writer.clone(),
            seq: record.seq,
            detail,
        };
        let again = record.to_canonical().map_err(ArchiveError::Encode)?;
        if again != *line {
            return Err(changed(format!(
                "line {at} is not the record's canonical encoding"
            )));
        }
        let computed = record.compute_hash().map_err(ArchiveError::Encode)?;
        if computed != record.hash {
            return Err(changed(format!(
                "its content hashes to {computed}, not {}",
                record.hash
            )));
        }
        let Some(&j) = index.get(&record.writer) else {
            return Err(ArchiveError::Inserted {
                writer: record.writer.clone(),
                seq: record.seq,
                detail: "the header lists no chain of this writer".into(),
            });
        };
        if j < current {
            return Err(ArchiveError::Reordered {
                writer: record.writer.clone(),
                seq: record.seq,
            });
        }
        if j > current {
            // Leaving chain `current`: it must be complete.
            for s in &states[current..j] {
                if s.seen < s.header.count {
                    return Err(ArchiveError::Deleted {
                        writer: s.header.writer.clone(),
                        after_seq: s.expected.saturating_sub(1),
                    });
                }
            }
            current = j;
        }
        link(&mut states[j], &record, record_lines, i)?;
        if let Some(anchors) = &anchors {
            signatures_verified += verify_signatures(&record, anchors)?;
        } else {
            for (_, m) in metas(&record) {
                for der in std::iter::once(&m.signer_cert_der).chain(m.chain_der.iter()) {
                    X509::from_der(der).map_err(|source| ArchiveError::BadCertificate {
                        writer: record.writer.clone(),
                        seq: record.seq,
                        source,
                    })?;
                }
            }
        }
        all_records.push(record);
        if let Some(p) = progress {
            if (i + 1) % 256 == 0 || i + 1 == record_lines.len() {
                p(i as u64 + 1, total);
            }
        }
    }
    for s in &states {
        if s.seen < s.header.count {
            return Err(ArchiveError::Deleted {
                writer: s.header.writer.clone(),
                after_seq: s.expected.saturating_sub(1),
            });
        }
    }

    // Timestamps.
    let ts: Timestamps = parse_line(lines[n - 3], n - 2, "timestamps")?;
    let trust = anchors
        .as_ref()
        .map(|a| TsaTrust::new(a.clone()).with_untrusted(parsed_certs.clone()));
    let mut timestamps = Vec::with_capacity(ts.timestamps.len());
    let mut stamped: HashMap<usize, u64> = HashMap::new();
    let mut last_key: Option<(usize, u64)> = None;
    let mut timestamps_verified = 0;
    let listed: HashSet<ChainHash> = certs.certificates.iter().map(|c| c.sha256).collect();
    for t in ts.timestamps {
        let bad = |detail: String| ArchiveError::Timestamp {
            writer: t.writer.clone(),
            seq: t.last_seq,
            detail,
        };
        let Some(&j) = index.get(&t.writer) else {
            return Err(bad(
                "the token is for a writer the archive has no chain of".into()
            ));
        };
        if last_key.is_some_and(|k| k >= (j, t.last_seq)) {
            return Err(malformed(
                n - 2,
                "timestamps",
                "the list is not sorted by chain and stamped record",
            ));
        }
        if ChainHash(sha256(&t.token)) != t.token_sha256 {
            return Err(bad(
                "the token is not the one archived: its SHA-256 differs".into(),
            ));
        }
        last_key = Some((j, t.last_seq));
        let Some(&(hash, received)) = states[j].records.get(&t.last_seq) else {
            return Err(bad("the stamped record is not in the archive".into()));
        };
        if hash != t.hash {
            return Err(bad(format!(
                "the token is for hash {}, but the record's hash is {hash}",
                t.hash
            )));
        }
        let gen_time = match &trust {
            Some(trust) => {
                let token = tsa::verify_token(&t.token, ImprintAlgorithm::Sha256, &hash.0, trust)
                    .map_err(|e| bad(ErrorChain(&e).to_string()))?;
                // The certificates a token carries are outside its
                // signature: each must be one the archive lists, so that
                // no byte of the token can change unnoticed.
                for der in token_certificates(&t.token) {
                    if !listed.contains(&ChainHash(sha256(&der))) {
                        return Err(bad(
                            "the token carries a certificate the archive does not list".into(),
                        ));
                    }
                }
                if token.gen_time < received - chrono::Duration::seconds(TIMESTAMP_SKEW_SECS) {
                    return Err(bad(format!(
                        "the token's genTime {} is before the record was received ({received})",
                        token.gen_time
                    )));
                }
                Some(token.gen_time)
            }
            None => None,
        };
        timestamps_verified += usize::from(gen_time.is_some());
        let first_seq = match stamped.get(&j) {
            Some(prev) => prev + 1,
            None => states[j].header.first_seq,
        };
        stamped.insert(j, t.last_seq);
        timestamps.push(ArchivedTimestamp {
            writer: t.writer,
            first_seq,
            last_seq: t.last_seq,
            hash,
            gen_time,
            token_der: t.token,
        });
    }

    // Certificates cover the records; end line.
    let needed = certificate_map(all_records.iter(), &[]);
    let have: HashSet<ChainHash> = certs.certificates.iter().map(|c| c.sha256).collect();
    if let Some(missing) = needed.keys().find(|k| !have.contains(*k)) {
        return Err(malformed(
            n - 1,
            "certificates",
            format_args!("certificate {missing}, carried by a record, is not listed"),
        ));
    }
    let end: End = parse_line(lines[n - 1], n, "end")?;
    let expected_end: Vec<ChainEnd> = states
        .iter()
        .map(|s| ChainEnd {
            writer: s.header.writer.clone(),
            count: s.header.count,
            last_hash: s.prev,
        })
        .collect();
    if end.end.records != total || end.end.chains != expected_end {
        return Err(malformed(
            n,
            "end",
            "the record count, chains or last hashes differ from the records",
        ));
    }

    let chains = states
        .iter()
        .enumerate()
        .map(|(j, s)| {
            let through = stamped.get(&j).copied();
            let last = s.header.first_seq + s.header.count - 1;
            ChainReport {
                writer: s.header.writer.clone(),
                first_seq: s.header.first_seq,
                count: s.header.count,
                prev_hash: s.header.prev_hash,
                last_hash: s.prev,
                stamped_through: through,
                unstamped: last - through.unwrap_or(s.header.first_seq - 1),
            }
        })
        .collect();
    Ok(ArchiveReport {
        chains,
        records: total,
        certificates: certs.certificates.len(),
        signatures_verified,
        timestamps,
        timestamps_verified,
        anchors_from_archive,
    })
}

/// Order and link of one record within its chain.
fn link(s: &mut ChainState, r: &LogRecord, lines: &[&[u8]], i: usize) -> Result<()> {
    let writer = || r.writer.clone();
    if s.records.contains_key(&r.seq) {
        return Err(ArchiveError::Inserted {
            writer: writer(),
            seq: r.seq,
            detail: "a second record with this seq".into(),
        });
    }
    if r.seq < s.expected {
        return Err(ArchiveError::Reordered {
            writer: writer(),
            seq: r.seq,
        });
    }
    if r.seq > s.expected {
        // Does the expected record come later in the file?
        let later = lines[i + 1..].iter().any(|l| {
            serde_json::from_slice::<SeqWriter>(l)
                .is_ok_and(|x| x.seq == s.expected && x.writer == r.writer)
        });
        if later {
            return Err(ArchiveError::Reordered {
                writer: writer(),
                seq: r.seq,
            });
        }
        return Err(ArchiveError::Deleted {
            writer: writer(),
            after_seq: s.expected.saturating_sub(1),
        });
    }
    let last_allowed = s
        .header
        .first_seq
        .saturating_add(s.header.count)
        .saturating_sub(1);
    if r.seq > last_allowed {
        return Err(ArchiveError::Inserted {
            writer: writer(),
            seq: r.seq,
            detail: format!("the header announces {} records", s.header.count),
        });
    }
    if r.prev_hash != s.prev {
        return Err(ArchiveError::BrokenLink {
            writer: writer(),
            seq: r.seq,
        });
    }
    s.records.insert(r.seq, (r.hash, r.exchange.received_at));
    s.seen += 1;
    s.prev = r.hash;
    s.expected = r.seq.saturating_add(1);
    Ok(())
}

/// Just the `seq` and `writer` of a record line.
#[derive(Deserialize)]
struct SeqWriter {
    seq: u64,
    writer: String,
}

fn verify_signatures(r: &LogRecord, anchors: &[X509]) -> Result<usize> {
    let mut n = 0;
    for (message, m) in metas(r) {
        for der in std::iter::once(&m.signer_cert_der).chain(m.chain_der.iter()) {
            X509::from_der(der).map_err(|source| ArchiveError::BadCertificate {
                writer: r.writer.clone(),
                seq: r.seq,
                source,
            })?;
        }
        profile::verify_logged(
            &m.base,
            &m.signature_input,
            &m.signature,
            &m.signer_cert_der,
            &m.chain_der,
            anchors,
            &NoRevocationCheck,
        )
        .map_err(|source| ArchiveError::Signature {
            writer: r.writer.clone(),
            seq: r.seq,
            message,
            source: Box::new(source),
        })?;
        n += 1;
    }
    Ok(n)
}

/// The certificates embedded in a token's SignedData (DER).
fn token_certificates(token: &[u8]) -> Vec<Vec<u8>> {
    let Ok(p7) = ndxp_sign::openssl::pkcs7::Pkcs7::from_der(token) else {
        return Vec::new();
    };
    p7.signed()
        .and_then(|s| s.certificates())
        .map(|certs| certs.iter().filter_map(|c| c.to_der().ok()).collect())
        .unwrap_or_default()
}
