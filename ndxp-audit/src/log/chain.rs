//! The group committer's chaining, shared by its two homes: the SQLite
//! writer thread ([`super::sqlite_writer`]) and the PostgreSQL task
//! ([`super::sql`]).
//!
//! An append arrives as a [`Job`]: the exchange already encoded and its
//! lookup columns already formatted by the appending task (the work that
//! does not depend on the chain, done in parallel). The committer takes a
//! batch of jobs ([`gather`]), gives them consecutive `seq` values and
//! chains their hashes from the head it holds ([`Chainer::batch`]), commits
//! the batch in one transaction and then answers every caller directly
//! ([`Chainer::committed`], [`Chainer::failed`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use tokio::sync::{mpsc, oneshot, watch};

use super::canonical::{self, EncodedExchange};
use super::sql::Row;
use super::{ChainHead, Exchange, LogError, LogRecord, Result};

/// One append waiting for its commit.
pub(crate) struct Job {
    pub(crate) exchange: Exchange,
    pub(crate) encoded: EncodedExchange,
    pub(crate) columns: Columns,
    pub(crate) ack: oneshot::Sender<Result<LogRecord>>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("transaction_id", &self.exchange.transaction_id)
            .finish()
    }
}

/// The lookup columns of a row that do not depend on the chain, formatted
/// by the appending task.
pub(crate) struct Columns {
    pub(crate) transaction_id: String,
    pub(crate) received_at: String,
    pub(crate) client: String,
    pub(crate) service: String,
    pub(crate) status: i32,
    pub(crate) problem_code: Option<String>,
    pub(crate) trace_id: Option<String>,
}

impl Columns {
    pub(crate) fn of(e: &Exchange) -> Self {
        Columns {
            transaction_id: e.transaction_id.to_string(),
            received_at: e
                .received_at
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            client: e.client.to_string(),
            service: e.service.to_string(),
            status: i32::from(e.status),
            problem_code: e.problem_code.clone(),
            trace_id: e.trace_id.map(|t| t.to_string()),
        }
    }
}

/// Moves every job already queued on `rx` into `jobs`, up to `max_batch`;
/// whether any was added.
pub(crate) fn drain(jobs: &mut Vec<Job>, rx: &mut mpsc::Receiver<Job>, max_batch: usize) -> bool {
    let before = jobs.len();
    while jobs.len() < max_batch {
        match rx.try_recv() {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    jobs.len() > before
}

/// How many times the committer lets the callers it just answered queue
/// their next appends before it commits what it has: batches stay large
/// under load, and an idle log (an empty queue) commits at once.
pub(crate) const GATHER_ROUNDS: usize = 4;

/// A chained batch, ready to insert.
pub(crate) struct Batch {
    /// The rows, in `seq` order.
    pub(crate) rows: Vec<Row>,
    /// Certificates not yet known to be stored: SHA-256 hex, base64 DER.
    pub(crate) certs: Vec<(String, String)>,
    answers: Vec<(LogRecord, oneshot::Sender<Result<LogRecord>>)>,
    next: ChainHead,
}

impl Batch {
    /// How many records it holds.
    pub(crate) fn len(&self) -> usize {
        self.answers.len()
    }
}

/// One writer's chain as the committer holds it.
pub(crate) struct Chainer {
    writer: String,
    head: ChainHead,
    /// Certificates known to be stored (each is stored once).
    known_certs: HashSet<String>,
    commits: Arc<AtomicU64>,
    head_tx: watch::Sender<ChainHead>,
}

impl Chainer {
    pub(crate) fn new(
        writer: String,
        head: ChainHead,
        commits: Arc<AtomicU64>,
        head_tx: watch::Sender<ChainHead>,
    ) -> Self {
        Self {
            writer,
            head,
            known_certs: HashSet::new(),
            commits,
            head_tx,
        }
    }

    /// The writer id.
    pub(crate) fn writer(&self) -> &str {
        &self.writer
    }

    /// Chains `jobs` from the head; a job whose record cannot be encoded is
    /// answered with the error at once. `None` when none is left.
    pub(crate) fn batch(&self, jobs: Vec<Job>) -> Option<Batch> {
        let mut next = self.head;
        let mut rows = Vec::with_capacity(jobs.len());
        let mut answers = Vec::with_capacity(jobs.len());
        let mut new_certs = BTreeMap::new();
        for job in jobs {
            let Job {
                exchange,
                encoded,
                columns,
                ack,
            } = job;
            let seq = next.seq + 1;
            let built = canonical::record_head(seq, &self.writer, &next.hash)
                .and_then(|h| {
                    let hash = canonical::record_hash(&h, &encoded.canonical);
                    Ok((hash, canonical::stored_text(&h, &encoded.stored, &hash)?))
                })
                .map_err(LogError::Encode)
                .and_then(|(hash, text)| Ok((hash, text, super::sql::seq_i64(seq)?)));
            let (hash, text, seq_col) = match built {
                Ok(b) => b,
                Err(e) => {
                    let _ = ack.send(Err(e));
                    continue;
                }
            };
            rows.push(Row {
                writer: self.writer.clone(),
                seq: seq_col,
                hash: hash.to_hex(),
                record: text,
                columns,
            });
            answers.push((
                LogRecord {
                    seq,
                    writer: self.writer.clone(),
                    prev_hash: next.hash,
                    exchange,
                    hash,
                },
                ack,
            ));
            next = ChainHead { seq, hash };
            for (h, der) in encoded.certs {
                if !self.known_certs.contains(&h) {
                    new_certs.entry(h).or_insert(der);
                }
            }
        }
        if answers.is_empty() {
            return None;
        }
        let certs = new_certs
            .into_iter()
            .map(|(h, der)| (h, base64::engine::general_purpose::STANDARD.encode(der)))
            .collect();
        Some(Batch {
            rows,
            certs,
            answers,
            next,
        })
    }

    /// `batch` is committed: moves the head and answers its callers.
    pub(crate) fn committed(&mut self, batch: Batch) {
        let Batch {
            certs,
            answers,
            next,
            ..
        } = batch;
        self.known_certs.extend(certs.into_iter().map(|(h, _)| h));
        self.head = next;
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.head_tx.send_replace(next);
        for (record, ack) in answers {
            let _ = ack.send(Ok(record));
        }
    }

    /// `batch` failed: answers its callers with `error`. The caller then
    /// re-reads the stored head ([`Chainer::reset`]): a commit whose
    /// outcome is unknown (a connection lost during `COMMIT`) may have
    /// stored the batch, and a writer id wrongly shared may have moved on.
    pub(crate) fn failed(&mut self, batch: Batch, error: Arc<dyn std::error::Error + Send + Sync>) {
        tracing::error!(error = %error, records = batch.len(), "message log commit failed");
        for (_, ack) in batch.answers {
            let _ = ack.send(Err(LogError::Commit(error.clone())));
        }
    }

    /// Continues from `stored`, the head as re-read from the database after
    /// a failed commit.
    pub(crate) fn reset(&mut self, stored: Result<ChainHead>) {
        match stored {
            Ok(head) => {
                self.head = head;
                self.head_tx.send_replace(head);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot re-read the message log chain head");
            }
        }
    }
}
