//! Exporting ranges of a SQL message log with their time-stamp tokens (the
//! `store` feature).

use chrono::{DateTime, Utc};

use super::{encode_contents, Archive, ArchiveError, Contents, Progress, Result};
use crate::log::{MessageLog, SqlMessageLog};
use crate::timestamp;

/// Records read from the log per query during an export.
const PAGE: u64 = 1000;

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
