//! Message log archives: one self-contained file holding a range of one
//! writer's chain and the certificates its records need, and a verifier
//! that integrators can call on its own ([`verify_archive`]).
//!
//! `docs/archive.md` is the normative description of the format. In short,
//! an archive is UTF-8 JSON lines, each ended by `\n`, every line in the
//! canonical compact form `serde_json` writes (members in the order shown):
//!
//! ```text
//! {"format":"ndxp-message-log-archive","version":1,"writer":"...","first_seq":N,"count":N,"prev_hash":"<hex>"}
//! <record line>            × count: the record's canonical encoding (crate::log)
//! {"certificates":[{"sha256":"<hex>","der":"<base64>"},...]}
//! {"end":{"count":N,"last_hash":"<hex>"}}
//! ```
//!
//! The verifier recomputes every record hash and every link, and requires
//! each line to be byte for byte its canonical re-encoding, so any change
//! of any byte, any deleted, inserted, duplicated or reordered record and
//! any truncation is reported, naming the first bad record
//! ([`ArchiveError`]). It never panics on any input.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use ndxp_sign::chain::NoRevocationCheck;
use ndxp_sign::openssl::sha::sha256;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile::{self, ProfileError};
use serde::{Deserialize, Serialize};

use crate::log::{b64, ChainHash, LogError, LogRecord, MessageLog, SignedMeta};

/// The `format` member of an archive header.
pub const FORMAT: &str = "ndxp-message-log-archive";
/// The archive format version this crate writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
    writer: String,
    first_seq: u64,
    count: u64,
    prev_hash: ChainHash,
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

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndBody {
    count: u64,
    last_hash: ChainHash,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct End {
    end: EndBody,
}

/// Why an archive could not be written or does not verify. The variants
/// about content name the first bad record.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// Record `seq` is not what was logged: its content does not hash to
    /// its `hash`, or its line is not in canonical form.
    #[error("record {seq} was changed: {detail}")]
    Changed {
        /// The record's `seq`.
        seq: u64,
        /// What differs.
        detail: String,
    },
    /// One or more records after `after_seq` are missing (`after_seq` is
    /// `first_seq - 1` when the archive's first records are missing).
    #[error("records were deleted after record {after_seq}")]
    Deleted {
        /// The last record present before the gap.
        after_seq: u64,
    },
    /// Record `seq` does not belong here: a duplicate, one beyond the
    /// header's range, or one of another writer.
    #[error("record {seq} was inserted: {detail}")]
    Inserted {
        /// The inserted record's `seq`.
        seq: u64,
        /// Why it does not belong.
        detail: String,
    },
    /// Record `seq` is out of order.
    #[error("record {seq} is out of order")]
    Reordered {
        /// The misplaced record's `seq`.
        seq: u64,
    },
    /// Record `seq`'s `prev_hash` is not the hash of the record before it:
    /// that record was replaced (with a recomputed hash) or `seq` was
    /// forged.
    #[error("record {seq} does not link to the record before it (that record was replaced, or this one forged)")]
    BrokenLink {
        /// The record whose link is broken.
        seq: u64,
    },
    /// The archive ends early.
    #[error("the archive is truncated: {0}")]
    Truncated(String),
    /// A line is not valid (not JSON, not the expected member, a header,
    /// certificate list or end line that does not match the records).
    #[error("the archive is malformed at {at}: {detail}")]
    Malformed {
        /// Where: `line N` (1-based) and what the line should be.
        at: String,
        /// What is wrong.
        detail: String,
    },
    /// A record's signer or intermediate certificate is not DER.
    #[error("record {seq}: a logged certificate cannot be parsed")]
    BadCertificate {
        /// The record's `seq`.
        seq: u64,
        /// OpenSSL's error.
        #[source]
        source: ndxp_sign::openssl::error::ErrorStack,
    },
    /// A logged signature does not re-verify against the trust anchors.
    #[error("record {seq}: the logged {message} signature does not verify")]
    Signature {
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

    /// Writes the archive to `path`.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        std::fs::write(path, &self.bytes).map_err(|source| ArchiveError::Io {
            path: path.display().to_string(),
            source,
        })
    }
}

/// What a verified archive holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// The writer whose chain it is.
    pub writer: String,
    /// The first record's `seq`.
    pub first_seq: u64,
    /// How many records.
    pub count: u64,
    /// The `prev_hash` of the first record (the hash the range hangs from).
    pub prev_hash: ChainHash,
    /// The last record's hash (`prev_hash` when empty).
    pub last_hash: ChainHash,
    /// How many certificates the archive carries.
    pub certificates: usize,
    /// How many signatures were re-verified (0 without trust anchors).
    pub signatures_verified: usize,
}

/// What [`verify_archive`] checks beyond the chain.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// When set, every logged request and response signature is re-verified
    /// offline with [`profile::verify_logged`] against these anchors (the
    /// signer's chain at the signature's `created`, no revocation check).
    pub anchors: Option<Vec<X509>>,
}

fn metas(record: &LogRecord) -> impl Iterator<Item = &SignedMeta> {
    std::iter::once(&record.exchange.request).chain(record.exchange.response.as_ref())
}

fn certificates_of(records: &[LogRecord]) -> Vec<CertEntry> {
    let mut map = BTreeMap::new();
    for r in records {
        for m in metas(r) {
            for der in std::iter::once(&m.signer_cert_der).chain(m.chain_der.iter()) {
                map.entry(ChainHash(sha256(der)))
                    .or_insert_with(|| der.clone());
            }
        }
    }
    map.into_iter()
        .map(|(sha256, der)| CertEntry { sha256, der })
        .collect()
}

fn push_line<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<()> {
    serde_json::to_writer(&mut *out, value).map_err(ArchiveError::Encode)?;
    out.push(b'\n');
    Ok(())
}

/// Builds an archive of `records` of `writer` (consecutive, in order) and
/// verifies it before returning it, so a broken chain is never archived as
/// if it were sound.
pub fn encode(writer: &str, records: &[LogRecord]) -> Result<Archive> {
    let prev_hash = records.first().map_or(ChainHash::GENESIS, |r| r.prev_hash);
    let last_hash = records.last().map_or(prev_hash, |r| r.hash);
    let mut out = Vec::new();
    push_line(
        &mut out,
        &Header {
            format: FORMAT.into(),
            version: VERSION,
            writer: writer.into(),
            first_seq: records.first().map_or(1, |r| r.seq),
            count: records.len() as u64,
            prev_hash,
        },
    )?;
    for r in records {
        push_line(&mut out, r)?;
    }
    push_line(
        &mut out,
        &Certificates {
            certificates: certificates_of(records),
        },
    )?;
    push_line(
        &mut out,
        &End {
            end: EndBody {
                count: records.len() as u64,
                last_hash,
            },
        },
    )?;
    verify_archive(&out, &VerifyOptions::default())?;
    Ok(Archive { bytes: out })
}

/// Exports `writer`'s records with `from <= seq <= to` from `log`.
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
    let bytes = std::fs::read(path).map_err(|source| ArchiveError::Io {
        path: path.display().to_string(),
        source,
    })?;
    verify_archive(&bytes, options)
}

/// Verifies an archive: its structure, every record's hash and canonical
/// form, every link, the range announced by the header and the end line,
/// the certificate list, that every logged certificate parses, and (with
/// [`VerifyOptions::anchors`]) every logged signature.
///
/// # Errors
/// The first problem found, naming the record: [`ArchiveError::Changed`],
/// [`ArchiveError::Deleted`], [`ArchiveError::Inserted`],
/// [`ArchiveError::Reordered`], [`ArchiveError::BrokenLink`],
/// [`ArchiveError::Truncated`], [`ArchiveError::Malformed`],
/// [`ArchiveError::BadCertificate`], [`ArchiveError::Signature`].
pub fn verify_archive(bytes: &[u8], options: &VerifyOptions) -> Result<ArchiveReport> {
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
    let n = lines.len();
    if n < 3 || !lines[n - 1].starts_with(b"{\"end\":") {
        return Err(ArchiveError::Truncated("the end line is missing".into()));
    }
    let record_lines = &lines[1..n - 2];

    // Pass 1: every record line on its own.
    let mut records = Vec::with_capacity(record_lines.len());
    for (i, line) in record_lines.iter().enumerate() {
        let at = i + 2;
        let record: LogRecord =
            serde_json::from_slice(line).map_err(|e| malformed(at, "record", e))?;
        let again = record.to_canonical().map_err(ArchiveError::Encode)?;
        if again != *line {
            return Err(ArchiveError::Changed {
                seq: record.seq,
                detail: format!("line {at} is not the record's canonical encoding"),
            });
        }
        let computed = record.compute_hash().map_err(ArchiveError::Encode)?;
        if computed != record.hash {
            return Err(ArchiveError::Changed {
                seq: record.seq,
                detail: format!("its content hashes to {computed}, not {}", record.hash),
            });
        }
        if record.writer != header.writer {
            return Err(ArchiveError::Inserted {
                seq: record.seq,
                detail: format!(
                    "it belongs to writer {:?}, not {:?}",
                    record.writer, header.writer
                ),
            });
        }
        records.push(record);
    }

    // Pass 2: order and links.
    let present: HashSet<u64> = records.iter().map(|r| r.seq).collect();
    let mut seen = HashSet::new();
    let mut expected = header.first_seq;
    let mut prev = header.prev_hash;
    let last_allowed = header
        .first_seq
        .saturating_add(header.count)
        .saturating_sub(1);
    for r in &records {
        if seen.contains(&r.seq) {
            return Err(ArchiveError::Inserted {
                seq: r.seq,
                detail: "a second record with this seq".into(),
            });
        }
        if r.seq < expected {
            return Err(ArchiveError::Reordered { seq: r.seq });
        }
        if r.seq > expected {
            if present.contains(&expected) {
                return Err(ArchiveError::Reordered { seq: r.seq });
            }
            return Err(ArchiveError::Deleted {
                after_seq: expected.saturating_sub(1),
            });
        }
        if r.seq > last_allowed || header.count == 0 {
            return Err(ArchiveError::Inserted {
                seq: r.seq,
                detail: format!("the header announces {} records", header.count),
            });
        }
        if r.prev_hash != prev {
            return Err(ArchiveError::BrokenLink { seq: r.seq });
        }
        seen.insert(r.seq);
        prev = r.hash;
        expected = r.seq.saturating_add(1);
    }
    if (records.len() as u64) < header.count {
        return Err(ArchiveError::Deleted {
            after_seq: expected.saturating_sub(1),
        });
    }

    // Certificates and end line.
    let certs: Certificates = parse_line(lines[n - 2], n - 1, "certificates")?;
    if certs.certificates != certificates_of(&records) {
        return Err(malformed(
            n - 1,
            "certificates",
            "the list is not exactly the certificates the records carry, sorted by SHA-256",
        ));
    }
    let end: End = parse_line(lines[n - 1], n, "end")?;
    if end.end.count != header.count {
        return Err(malformed(
            n,
            "end",
            format_args!(
                "count {} differs from the header's {}",
                end.end.count, header.count
            ),
        ));
    }
    if end.end.last_hash != prev {
        return Err(malformed(
            n,
            "end",
            "last_hash is not the hash of the last record",
        ));
    }

    // Certificates parse; signatures re-verify when asked.
    let mut signatures_verified = 0;
    for r in &records {
        for (message, m) in std::iter::once(("request", &r.exchange.request))
            .chain(r.exchange.response.as_ref().map(|m| ("response", m)))
        {
            for der in std::iter::once(&m.signer_cert_der).chain(m.chain_der.iter()) {
                X509::from_der(der)
                    .map_err(|source| ArchiveError::BadCertificate { seq: r.seq, source })?;
            }
            if let Some(anchors) = &options.anchors {
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
                    seq: r.seq,
                    message,
                    source: Box::new(source),
                })?;
                signatures_verified += 1;
            }
        }
    }

    Ok(ArchiveReport {
        writer: header.writer,
        first_seq: header.first_seq,
        count: header.count,
        prev_hash: header.prev_hash,
        last_hash: prev,
        certificates: certs.certificates.len(),
        signatures_verified,
    })
}
