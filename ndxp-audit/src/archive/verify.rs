//! Reading and verifying an archive: [`verify_archive`] and [`inspect`].

use std::collections::{HashMap, HashSet};
use std::path::Path;

use chrono::{DateTime, Utc};
use ndxp_core::ErrorChain;
use ndxp_sign::chain::NoRevocationCheck;
use ndxp_sign::openssl::sha::sha256;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile;
use ndxp_sign::tsa::{self, ImprintAlgorithm, TsaTrust};
use serde::{Deserialize, Serialize};

use super::{
    certificate_map, metas, ArchiveError, ArchiveReport, ArchivedTimestamp, Certificates, ChainEnd,
    ChainHeader, ChainReport, End, Header, Progress, Result, Timestamps, VerifyOptions, FORMAT,
    TIMESTAMP_SKEW_SECS, VERSION,
};
use crate::log::{ChainHash, LogRecord};

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
pub(super) fn check(
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
pub(super) fn token_certificates(token: &[u8]) -> Vec<Vec<u8>> {
    let Ok(p7) = ndxp_sign::openssl::pkcs7::Pkcs7::from_der(token) else {
        return Vec::new();
    };
    p7.signed()
        .and_then(|s| s.certificates())
        .map(|certs| certs.iter().filter_map(|c| c.to_der().ok()).collect())
        .unwrap_or_default()
}
