//! Writing an archive: [`encode_contents`] of records, tokens and
//! certificates, and [`export`] from a message log.

use std::collections::HashMap;

use ndxp_sign::openssl::sha::sha256;
use serde::Serialize;

use super::verify::{check, token_certificates};
use super::{
    certificate_map, Archive, ArchiveError, CertEntry, Certificates, ChainEnd, ChainHeader, End,
    EndBody, Header, Result, Timestamps, TokenEntry, FORMAT, VERSION,
};
use crate::log::{ChainHash, LogRecord, MessageLog};
use crate::timestamp::StoredTimestamp;

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
/// timestamps (see [`export_range`](super::export_range) for the full form).
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
