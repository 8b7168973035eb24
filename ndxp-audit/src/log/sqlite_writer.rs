//! The group committer's SQLite path: one thread that takes the appends
//! off the queue, chains them ([`super::chain`]) and inserts them through a
//! plain SQLite connection of its own, with its insert statements prepared
//! once.
//!
//! Through the generic pool every statement of a batch is a message to the
//! driver's worker thread and its parameters are bound by name; a batch of
//! a few hundred records then spends more time in that machinery than in
//! SQLite. Here the thread inserts row by row with cached statements
//! (single-row inserts also need no statement journal) inside one `BEGIN
//! IMMEDIATE` transaction, commits and answers each caller itself: an
//! append is one hand-off to this thread and one back, with no task in
//! between. Readers, the timestamper and maintenance keep using the pool;
//! the two share the database file (WAL mode) and wait for each other's
//! write locks (`busy_timeout`).
//!
//! The connection uses the same settings as the pool's: WAL, `synchronous
//! = FULL` (a commit is on disk before the callers are answered) and no
//! automatic checkpoints. A second thread with its own connection runs a
//! passive checkpoint every 500 ms (copying committed WAL pages into the
//! database file and syncing it), so that work never delays a commit; the
//! writer truncates the WAL when the log closes.

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use std::sync::Arc;

use rusqlite::{params, Connection, OpenFlags};
use sqlx::AnyPool;
use tokio::sync::mpsc as queue;

use super::chain::{self, Chainer, Job};
use super::sql::{read_head, Row, SQLITE_SETUP};

/// How often, at most, a passive checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// The writer thread's handle. The thread ends once every sender of its
/// queue is gone and the queued appends are committed.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    thread: Option<JoinHandle<()>>,
    checkpoints: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl SqliteWriter {
    /// Opens `path` (an existing, migrated database) and starts the thread,
    /// which commits the appends of `rx` in batches of at most `max_batch`
    /// and re-reads the chain head through `pool` after a failed commit.
    /// Must be called inside a Tokio runtime.
    pub(crate) fn open(
        path: &str,
        busy_timeout: Duration,
        pool: AnyPool,
        chain: Chainer,
        rx: queue::Receiver<Job>,
        max_batch: usize,
    ) -> Result<Self, WriteError> {
        let conn = connect(path, busy_timeout)?;
        let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, "the message log's SQLite file is not in WAL journal mode");
        }
        // Prepare now, so that a schema problem shows at open.
        conn.prepare_cached(INSERT_ROW)?;
        conn.prepare_cached(INSERT_CERT)?;
        let checkpoint_conn = connect(path, busy_timeout)?;
        let (stop, stopped) = mpsc::channel();
        let checkpointer = std::thread::Builder::new()
            .name("ndxp-log-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpoint_conn, stopped))
            .map_err(WriteError::Spawn)?;
        let runtime = tokio::runtime::Handle::current();
        let reread = move |writer: &str| runtime.block_on(read_head(&pool, writer));
        let thread = std::thread::Builder::new()
            .name("ndxp-log-sqlite".into())
            .spawn(move || serve(conn, rx, chain, max_batch, reread))
            .map_err(WriteError::Spawn)?;
        Ok(Self {
            thread: Some(thread),
            checkpoints: Some((stop, checkpointer)),
        })
    }

    /// Waits until the thread has committed the queued appends (the queue's
    /// senders must be gone) and checkpointed the WAL into the database
    /// file (TRUNCATE) on the way out.
    pub(crate) fn close(&mut self) {
        if let Some((stop, t)) = self.checkpoints.take() {
            drop(stop);
            let _ = t.join();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SqliteWriter {
    fn drop(&mut self) {
        // Do not block a runtime thread on drop: the threads end by
        // themselves once their channels are gone.
        self.checkpoints.take();
    }
}

/// Why the writer could not start or a batch was not committed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// SQLite refused (the transaction was rolled back).
    #[error("SQLite: {0}")]
    Sqlite(#[source] rusqlite::Error),
    /// The writer thread could not be started.
    #[error("cannot start the message log's SQLite writer thread: {0}")]
    Spawn(#[source] std::io::Error),
}

const INSERT_ROW: &str = "INSERT INTO message_log (writer, seq, transaction_id, received_at, \
     hash, record, client, service, status, problem_code, trace_id) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)";
const INSERT_CERT: &str =
    "INSERT INTO message_log_certificates (sha256, der) VALUES (?1, ?2) ON CONFLICT (sha256) DO NOTHING";

impl From<rusqlite::Error> for WriteError {
    fn from(e: rusqlite::Error) -> Self {
        WriteError::Sqlite(e)
    }
}

/// A connection with the log's settings ([`SQLITE_SETUP`], as the pool's:
/// `synchronous = FULL`, no automatic checkpoints), waiting for locks up
/// to `busy_timeout`.
fn connect(path: &str, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    for statement in SQLITE_SETUP {
        conn.execute_batch(statement)?;
    }
    Ok(conn)
}

fn serve(
    mut conn: Connection,
    mut rx: queue::Receiver<Job>,
    mut chain: Chainer,
    max_batch: usize,
    reread: impl Fn(&str) -> super::Result<super::ChainHead>,
) {
    while let Some(first) = rx.blocking_recv() {
        let mut jobs = vec![first];
        for _ in 0..chain::GATHER_ROUNDS {
            if !chain::drain(&mut jobs, &mut rx, max_batch) || jobs.len() >= max_batch {
                break;
            }
            std::thread::yield_now();
        }
        let Some(batch) = chain.batch(jobs) else {
            continue;
        };
        match commit(&mut conn, &batch.certs, &batch.rows) {
            Ok(()) => chain.committed(batch),
            Err(e) => {
                chain.failed(batch, Arc::new(WriteError::Sqlite(e)));
                let stored = reread(chain.writer());
                chain.reset(stored);
            }
        }
    }
    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())) {
        tracing::warn!(error = %e, "message log WAL checkpoint at close failed");
    }
}

/// Passive checkpoints every [`CHECKPOINT_EVERY`] until `stop` is dropped.
/// Passive: never waits for readers, never blocks the writer.
fn checkpoint_loop(conn: Connection, stop: mpsc::Receiver<()>) {
    while let Err(mpsc::RecvTimeoutError::Timeout) = stop.recv_timeout(CHECKPOINT_EVERY) {
        if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
            tracing::warn!(error = %e, "message log WAL checkpoint failed");
        }
    }
}

fn commit(conn: &mut Connection, certs: &[(String, String)], rows: &[Row]) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    {
        let mut cert = tx.prepare_cached(INSERT_CERT)?;
        for (sha256, der) in certs {
            cert.execute(params![sha256, der])?;
        }
        let mut insert = tx.prepare_cached(INSERT_ROW)?;
        for r in rows {
            let c = &r.columns;
            insert.execute(params![
                r.writer,
                r.seq,
                c.transaction_id,
                c.received_at,
                r.hash,
                r.record,
                c.client,
                c.service,
                c.status,
                c.problem_code,
                c.trace_id,
            ])?;
        }
    }
    // Dropped without commit on an error above: rolled back.
    tx.commit()
}
