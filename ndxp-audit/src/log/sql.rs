//! The SQL message log over [`sqlx::AnyPool`]: SQLite (WAL, `synchronous =
//! FULL`) or PostgreSQL, with the same portable SQL.
//!
//! # Group commit
//!
//! [`SqlMessageLog::open`] starts one background committer per log: a
//! thread of its own on a SQLite file, a task on PostgreSQL. An
//! [`append`](MessageLog::append) queues its exchange on a channel and waits.
//! The committer takes the first queued exchange plus every other one already
//! waiting (up to [`LogOptions::max_batch`]), gives them consecutive `seq`
//! values and chains their hashes from the head it holds in memory, inserts
//! them all in **one** transaction, commits, and only then answers each
//! caller. While a commit is in flight new appends queue up and go into the
//! next batch, so under load one fsync covers many records. If a commit
//! fails, every caller of that batch gets [`LogError::Commit`] and the
//! committer re-reads the head from the database (which may hold the batch after all,
//! when the connection was lost during `COMMIT`) before the next batch.
//!
//! The chain head is read from the database when the log opens, so a new
//! process with the same writer id continues the chain. Two live processes
//! must not share a writer id: the `(writer, seq)` key makes a commit that
//! would fork the chain fail (its callers get [`LogError::Commit`]); the
//! loser then continues from the stored head, so the chain stays linear.

use ndxp_db::{redact, Backend};
use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::any::AnyRow;
use sqlx::{AnyPool, Row as _};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use super::canonical;
use super::chain::{self, Chainer, Columns, Job};
use super::sqlite_writer::SqliteWriter;
use super::{ChainHash, ChainHead, Exchange, LogError, LogRecord, MessageLog, Result};

/// The versioned schema migrations, oldest first (see
/// [`ndxp_db::Migrations`]), recorded in a table of their own so that the
/// log can share a database with other NDXP schemas.
const MIGRATIONS: ndxp_db::Migrations = ndxp_db::Migrations {
    table: "_ndxp_audit_migrations",
    list: &[
        (
            1,
            "message log",
            include_str!("../../migrations/0001_message_log.sql"),
        ),
        (
            2,
            "checkpoints",
            include_str!("../../migrations/0002_checkpoints.sql"),
        ),
        (
            3,
            "timestamps",
            include_str!("../../migrations/0003_timestamps.sql"),
        ),
        (
            4,
            "operational columns",
            include_str!("../../migrations/0004_operational.sql"),
        ),
        (
            5,
            "certificates",
            include_str!("../../migrations/0005_certificates.sql"),
        ),
        (
            6,
            "trace id",
            include_str!("../../migrations/0006_trace_id.sql"),
        ),
        (
            7,
            "lean indexes",
            include_str!("../../migrations/0007_lean_indexes.sql"),
        ),
    ],
};

/// What every SQLite connection of the log runs first, the pool's and the
/// [`SqliteWriter`]'s alike.
pub(crate) const SQLITE_SETUP: &[&str] = &[
    // Records are several KiB: larger pages keep most of a record on one
    // page. Takes effect only when the file is created (a no-op on an
    // existing database).
    "PRAGMA page_size = 16384",
    // Every commit reaches the disk before append() returns.
    "PRAGMA synchronous = FULL",
    // Checkpoints run on the writer thread between batches (see
    // `sqlite_writer`), off the commit path.
    "PRAGMA wal_autocheckpoint = 0",
];

/// Settings of a [`SqlMessageLog`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a free connection (and, on SQLite, a lock).
    pub acquire_timeout: Duration,
    /// Most records committed in one transaction.
    pub max_batch: usize,
    /// Most appends waiting for the background writer; further appends
    /// wait for room.
    pub queue: usize,
}

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            max_connections: 4,
            acquire_timeout: Duration::from_secs(10),
            max_batch: 512,
            queue: 4096,
        }
    }
}

/// The message log on SQLite or PostgreSQL, with group commit (see the
/// module docs).
#[derive(Debug)]
pub struct SqlMessageLog {
    pool: AnyPool,
    writer: String,
    queue: Option<mpsc::Sender<Job>>,
    committer: Option<Committer>,
    cert_hashes: canonical::CertHashes,
    pending: AtomicU64,
    commits: Arc<AtomicU64>,
    backend: Backend,
    head: watch::Receiver<ChainHead>,
}

/// Who commits the batches: the SQLite writer thread, or a task writing
/// through the pool (PostgreSQL, in-memory SQLite).
#[derive(Debug)]
enum Committer {
    Sqlite(SqliteWriter),
    Pool(JoinHandle<()>),
}

fn corrupt(what: impl Into<String>, detail: impl Display) -> LogError {
    LogError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
}

impl SqlMessageLog {
    /// Opens the log at `url` (`sqlite://PATH`, `sqlite::memory:`,
    /// `postgres://...`) for `writer`, applies pending migrations, reads
    /// the writer's chain head (checking that record's hash) and starts the
    /// background committer. Must be called inside a Tokio runtime.
    ///
    /// # Errors
    /// [`LogError::UnsupportedUrl`], [`LogError::Open`] (also for a SQLite
    /// file that is not a database), [`LogError::Migration`],
    /// [`LogError::Corrupt`] when the stored head does not verify,
    /// [`LogError::InvalidWriter`].
    pub async fn open(url: &str, writer: &str, options: &LogOptions) -> Result<Self> {
        if writer.is_empty() || writer.chars().count() > 200 {
            return Err(LogError::InvalidWriter(writer.to_string()));
        }
        let options_db = ndxp_db::PoolOptions {
            max_connections: options.max_connections,
            acquire_timeout: options.acquire_timeout,
            sqlite_setup: SQLITE_SETUP,
            wal: true,
        };
        let db = ndxp_db::open(url, &options_db).await.map_err(|e| match e {
            ndxp_db::OpenError::Url(e) => LogError::UnsupportedUrl(e.0),
            ndxp_db::OpenError::File(e) => LogError::DatabaseFile(e),
            ndxp_db::OpenError::Connect { target, source } => LogError::Open {
                target,
                source: Box::new(source),
            },
            e => LogError::Open {
                target: redact(url),
                source: Box::new(e),
            },
        })?;
        let backend = db.backend();
        let sqlite_file = db.url().sqlite_file().map(str::to_owned);
        let pool = db.into_pool();
        MIGRATIONS
            .run(&pool, backend)
            .await
            .map_err(LogError::Migration)?;
        let head = read_head(&pool, writer).await?;
        let (queue, rx) = mpsc::channel(options.queue.max(1));
        let commits = Arc::new(AtomicU64::new(0));
        let (head_tx, head_rx) = watch::channel(head);
        let chain = Chainer::new(writer.to_string(), head, commits.clone(), head_tx);
        let max_batch = options.max_batch.max(1);
        let committer = match sqlite_file {
            Some(path) => Committer::Sqlite(
                SqliteWriter::open(
                    &path,
                    options.acquire_timeout,
                    pool.clone(),
                    chain,
                    rx,
                    max_batch,
                )
                .map_err(|e| LogError::Open {
                    target: redact(url),
                    source: Box::new(e),
                })?,
            ),
            None => Committer::Pool(tokio::spawn(run(pool.clone(), chain, rx, max_batch))),
        };
        Ok(Self {
            pool,
            writer: writer.to_string(),
            queue: Some(queue),
            committer: Some(committer),
            cert_hashes: canonical::CertHashes::default(),
            pending: AtomicU64::new(0),
            commits,
            backend,
            head: head_rx,
        })
    }

    /// This log's writer id.
    pub fn writer_id(&self) -> &str {
        &self.writer
    }

    /// Which database this log is on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// This writer's chain head as committed, updated after every commit
    /// (the batch timestamper watches it to stamp as soon as a batch is
    /// full).
    pub fn head_watch(&self) -> watch::Receiver<ChainHead> {
        self.head.clone()
    }

    /// How many appends are waiting for their commit right now (queued or
    /// in the transaction being committed): the log's lag, as a gauge.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Relaxed)
    }

    /// How many batch transactions this log has committed (each covers one
    /// or more appends).
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// Runs a transaction query (see [`crate::query`]).
    ///
    /// # Errors
    /// [`crate::query::QueryError`].
    pub async fn transactions(
        &self,
        query: &crate::query::TransactionQuery,
    ) -> std::result::Result<crate::query::TransactionPage, crate::query::QueryError> {
        crate::query::transactions(&self.pool, query).await
    }

    /// The underlying pool (for tests and maintenance tools).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Stops accepting appends, waits until every queued one is committed
    /// and answered (on SQLite, also until the WAL is checkpointed into the
    /// database file), and closes the pool.
    pub async fn close(mut self) {
        self.queue.take();
        match self.committer.take() {
            Some(Committer::Pool(task)) => {
                let _ = task.await;
            }
            Some(Committer::Sqlite(mut w)) => {
                let _ = tokio::task::spawn_blocking(move || w.close()).await;
            }
            None => {}
        }
        self.pool.close().await;
    }
}

/// The columns of one `message_log` row.
pub(crate) struct Row {
    pub(crate) writer: String,
    pub(crate) seq: i64,
    pub(crate) hash: String,
    pub(crate) record: String,
    pub(crate) columns: Columns,
}

pub(crate) fn seq_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| corrupt("seq", format_args!("{seq} is out of range")))
}

/// A stored row, parsed but with its certificates not yet resolved.
struct StoredRow {
    writer: String,
    seq: i64,
    hash: String,
    value: serde_json::Value,
}

fn parse_row(row: &AnyRow) -> Result<StoredRow> {
    let writer: String = row.try_get("writer").map_err(|e| corrupt("writer", e))?;
    let seq: i64 = row.try_get("seq").map_err(|e| corrupt("seq", e))?;
    let what = || format!("record {seq} of writer {writer:?}");
    let text: String = row.try_get("record").map_err(|e| corrupt(what(), e))?;
    let hash: String = row.try_get("hash").map_err(|e| corrupt(what(), e))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| corrupt(what(), format_args!("not a valid record: {e}")))?;
    Ok(StoredRow {
        writer,
        seq,
        hash,
        value,
    })
}

fn cert_refs(value: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for key in ["request", "response"] {
        let Some(m) = value.get("exchange").and_then(|e| e.get(key)) else {
            continue;
        };
        if let Some(h) = m.get("signer_cert_sha256").and_then(|v| v.as_str()) {
            out.push(h.to_string());
        }
        if let Some(list) = m.get("chain_sha256").and_then(|v| v.as_array()) {
            out.extend(list.iter().filter_map(|v| v.as_str()).map(str::to_string));
        }
    }
    out
}

/// Loads the certificates (base64 DER) with the given SHA-256 hex values.
async fn load_certs(
    pool: &AnyPool,
    wanted: impl IntoIterator<Item = String>,
) -> Result<std::collections::HashMap<String, String>> {
    let mut out = std::collections::HashMap::new();
    for h in wanted {
        if out.contains_key(&h) {
            continue;
        }
        let row = sqlx::query("SELECT der FROM message_log_certificates WHERE sha256 = $1")
            .bind(h.clone())
            .fetch_optional(pool)
            .await
            .map_err(LogError::Database)?;
        if let Some(row) = row {
            let der: String = row
                .try_get("der")
                .map_err(|e| corrupt(format!("certificate {h}"), e))?;
            out.insert(h, der);
        }
    }
    Ok(out)
}

/// Resolves a stored row's certificates and checks its columns and hash.
fn finish_row(
    row: StoredRow,
    certs: &std::collections::HashMap<String, String>,
) -> Result<LogRecord> {
    let StoredRow {
        writer,
        seq,
        hash,
        mut value,
    } = row;
    let what = || format!("record {seq} of writer {writer:?}");
    for key in ["request", "response"] {
        let Some(obj) = value
            .get_mut("exchange")
            .and_then(|e| e.get_mut(key))
            .and_then(|m| m.as_object_mut())
        else {
            continue;
        };
        let resolve = |h: &serde_json::Value| -> Result<serde_json::Value> {
            let h = h.as_str().unwrap_or_default();
            certs.get(h).map(|d| d.clone().into()).ok_or_else(|| {
                corrupt(
                    what(),
                    format_args!("its certificate {h} is missing from message_log_certificates"),
                )
            })
        };
        if let Some(h) = obj.remove("signer_cert_sha256") {
            let der = resolve(&h)?;
            obj.insert("signer_cert_der".into(), der);
        }
        if let Some(list) = obj.remove("chain_sha256") {
            let ders = list
                .as_array()
                .map(|l| l.iter().map(resolve).collect::<Result<Vec<_>>>())
                .transpose()?
                .unwrap_or_default();
            obj.insert("chain_der".into(), ders.into());
        }
    }
    let record: LogRecord = serde_json::from_value(value)
        .map_err(|e| corrupt(what(), format_args!("not a valid record: {e}")))?;
    if i64::try_from(record.seq).ok() != Some(seq) || record.writer != writer {
        return Err(corrupt(
            what(),
            "the record's seq or writer differs from its row",
        ));
    }
    if record.hash.to_hex() != hash {
        return Err(corrupt(
            what(),
            "the record's hash differs from the row's hash column",
        ));
    }
    let computed = record.compute_hash().map_err(LogError::Encode)?;
    if computed != record.hash {
        return Err(corrupt(
            what(),
            format_args!(
                "the record was changed: its content hashes to {computed}, not {}",
                record.hash
            ),
        ));
    }
    Ok(record)
}

/// Parses stored rows, resolves their certificates and checks each row's
/// columns and hash.
pub(crate) async fn records_of(pool: &AnyPool, rows: &[AnyRow]) -> Result<Vec<LogRecord>> {
    let parsed = rows.iter().map(parse_row).collect::<Result<Vec<_>>>()?;
    let wanted: std::collections::BTreeSet<String> =
        parsed.iter().flat_map(|r| cert_refs(&r.value)).collect();
    let certs = load_certs(pool, wanted).await?;
    parsed.into_iter().map(|r| finish_row(r, &certs)).collect()
}

pub(crate) async fn read_head(pool: &AnyPool, writer: &str) -> Result<ChainHead> {
    let row = sqlx::query(
        "SELECT writer, seq, hash, record FROM message_log WHERE writer = $1 \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(writer.to_string())
    .fetch_optional(pool)
    .await
    .map_err(LogError::Database)?;
    match row {
        None => Ok(ChainHead::EMPTY),
        Some(row) => {
            let r = records_of(pool, std::slice::from_ref(&row))
                .await?
                .remove(0);
            Ok(ChainHead {
                seq: r.seq,
                hash: r.hash,
            })
        }
    }
}

async fn read_checkpoint(conn: &mut sqlx::AnyConnection, writer: &str) -> Result<ChainHead> {
    let row = sqlx::query(
        "SELECT seq, hash FROM message_log_checkpoints WHERE writer = $1 \
         ORDER BY seq DESC LIMIT 1",
    )
    .bind(writer.to_string())
    .fetch_optional(&mut *conn)
    .await
    .map_err(LogError::Database)?;
    let Some(row) = row else {
        return Ok(ChainHead::EMPTY);
    };
    let what = || format!("checkpoint of writer {writer:?}");
    let seq: i64 = row.try_get("seq").map_err(|e| corrupt(what(), e))?;
    let hash: String = row.try_get("hash").map_err(|e| corrupt(what(), e))?;
    Ok(ChainHead {
        seq: u64::try_from(seq).map_err(|e| corrupt(what(), e))?,
        hash: ChainHash::from_hex(&hash).map_err(|e| corrupt(what(), e))?,
    })
}

/// The committer on the pool (PostgreSQL, in-memory SQLite): takes the
/// queued appends in batches, chains and commits each batch in one
/// transaction, and answers its callers.
async fn run(pool: AnyPool, mut chain: Chainer, mut rx: mpsc::Receiver<Job>, max_batch: usize) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        for _ in 0..chain::GATHER_ROUNDS {
            if !chain::drain(&mut jobs, &mut rx, max_batch) || jobs.len() >= max_batch {
                break;
            }
            tokio::task::yield_now().await;
        }
        let Some(batch) = chain.batch(jobs) else {
            continue;
        };
        match write_batch(&pool, &batch.certs, &batch.rows).await {
            Ok(()) => chain.committed(batch),
            Err(e) => {
                chain.failed(batch, Arc::new(e));
                let stored = read_head(&pool, chain.writer()).await;
                chain.reset(stored);
            }
        }
    }
}

/// Rows per INSERT statement (11 parameters each; well within SQLite's
/// and PostgreSQL's limits).
const ROWS_PER_INSERT: usize = 16;

async fn write_batch(
    pool: &AnyPool,
    certs: &[(String, String)],
    rows: &[Row],
) -> std::result::Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    for (sha256, der) in certs {
        sqlx::query(
            "INSERT INTO message_log_certificates (sha256, der) VALUES ($1, $2) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256.clone())
        .bind(der.clone())
        .execute(&mut *tx)
        .await?;
    }
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut sql = String::from(
            "INSERT INTO message_log (writer, seq, transaction_id, received_at, hash, record, \
             client, service, status, problem_code, trace_id) VALUES ",
        );
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            let p = i * 11;
            sql.push('(');
            for k in 1..=11 {
                if k > 1 {
                    sql.push(',');
                }
                sql.push_str(&format!("${}", p + k));
            }
            sql.push(')');
        }
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for r in chunk {
            let c = &r.columns;
            query = query
                .bind(r.writer.clone())
                .bind(r.seq)
                .bind(c.transaction_id.clone())
                .bind(c.received_at.clone())
                .bind(r.hash.clone())
                .bind(r.record.clone())
                .bind(c.client.clone())
                .bind(c.service.clone())
                .bind(c.status)
                .bind(c.problem_code.clone())
                .bind(c.trace_id.clone());
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[async_trait]
impl MessageLog for SqlMessageLog {
    fn writer(&self) -> &str {
        &self.writer
    }

    async fn append(&self, exchange: Exchange) -> Result<LogRecord> {
        let queue = self.queue.as_ref().ok_or(LogError::Closed)?;
        let encoded = canonical::encode_exchange(&exchange, Some(&self.cert_hashes))
            .map_err(LogError::Encode)?;
        self.pending.fetch_add(1, Ordering::Relaxed);
        // Counted down however this call ends (answered, failed, dropped).
        struct Pending<'a>(&'a AtomicU64);
        impl Drop for Pending<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Relaxed);
            }
        }
        let _pending = Pending(&self.pending);
        let (ack, done) = oneshot::channel();
        queue
            .send(Job {
                columns: Columns::of(&exchange),
                exchange,
                encoded,
                ack,
            })
            .await
            .map_err(|_| LogError::Closed)?;
        done.await.map_err(|_| LogError::Closed)?
    }

    async fn head(&self, writer: &str) -> Result<ChainHead> {
        read_head(&self.pool, writer).await
    }

    async fn read(&self, writer: &str, from: u64, to: u64) -> Result<Vec<LogRecord>> {
        let to = to.min(i64::MAX as u64);
        if from > to {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT writer, seq, hash, record FROM message_log \
             WHERE writer = $1 AND seq >= $2 AND seq <= $3 ORDER BY seq",
        )
        .bind(writer.to_string())
        .bind(seq_i64(from)?)
        .bind(seq_i64(to)?)
        .fetch_all(&self.pool)
        .await
        .map_err(LogError::Database)?;
        records_of(&self.pool, &rows).await
    }

    async fn purge_before(&self, writer: &str, before: u64) -> Result<ChainHead> {
        let head = read_head(&self.pool, writer).await?;
        if before > head.seq || before < 2 {
            return Err(LogError::PurgeRange {
                before,
                head: head.seq,
            });
        }
        let last = before - 1;
        let mut tx = self.pool.begin().await.map_err(LogError::Database)?;
        let row = sqlx::query("SELECT seq, hash FROM message_log WHERE writer = $1 AND seq = $2")
            .bind(writer.to_string())
            .bind(seq_i64(last)?)
            .fetch_optional(&mut *tx)
            .await
            .map_err(LogError::Database)?;
        let checkpoint = match row {
            Some(row) => {
                // The record itself was verified when it was exported; a
                // wrong hash column would show as a broken link at the
                // first record kept.
                let what = || format!("record {last} of writer {writer:?}");
                let hash: String = row.try_get("hash").map_err(|e| corrupt(what(), e))?;
                ChainHead {
                    seq: last,
                    hash: ChainHash::from_hex(&hash).map_err(|e| corrupt(what(), e))?,
                }
            }
            None => {
                // Already purged: the checkpoint must exist.
                let cp = read_checkpoint(&mut tx, writer).await?;
                if cp.seq < last {
                    return Err(corrupt(
                        format!("record {last} of writer {writer:?}"),
                        "missing, and no checkpoint covers it",
                    ));
                }
                return Ok(cp);
            }
        };
        sqlx::query(
            "INSERT INTO message_log_checkpoints (writer, seq, hash, purged_at) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(writer.to_string())
        .bind(seq_i64(checkpoint.seq)?)
        .bind(checkpoint.hash.to_hex())
        .bind(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .execute(&mut *tx)
        .await
        .map_err(LogError::Database)?;
        sqlx::query("DELETE FROM message_log WHERE writer = $1 AND seq < $2")
            .bind(writer.to_string())
            .bind(seq_i64(before)?)
            .execute(&mut *tx)
            .await
            .map_err(LogError::Database)?;
        tx.commit().await.map_err(LogError::Database)?;
        Ok(checkpoint)
    }

    async fn checkpoint(&self, writer: &str) -> Result<ChainHead> {
        let mut conn = self.pool.acquire().await.map_err(LogError::Database)?;
        read_checkpoint(&mut conn, writer).await
    }

    async fn writers(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT DISTINCT writer FROM message_log ORDER BY writer")
            .fetch_all(&self.pool)
            .await
            .map_err(LogError::Database)?;
        rows.iter()
            .map(|r| {
                r.try_get::<String, _>("writer")
                    .map_err(|e| corrupt("writer", e))
            })
            .collect()
    }
}
