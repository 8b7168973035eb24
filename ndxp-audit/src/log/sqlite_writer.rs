//! The group committer's SQLite path: one plain SQLite connection on a
//! thread of its own, with its insert statements prepared once.
//!
//! Through the generic pool every statement of a batch is a message to the
//! driver's worker thread and its parameters are bound by name; a batch of
//! a few hundred records then spends more time in that machinery than in
//! SQLite. Here the committer hands the whole batch to this thread, which
//! inserts row by row with cached statements (single-row inserts also need
//! no statement journal) inside one `BEGIN IMMEDIATE` transaction and
//! commits. Readers, the timestamper and maintenance keep using the pool;
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

use rusqlite::{params, Connection, OpenFlags};
use tokio::sync::oneshot;

use super::sql::{Row, SQLITE_SETUP};

/// How often, at most, a passive checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// A batch to commit: certificates to store (SHA-256 hex, base64 DER) and
/// rows, all in one transaction.
struct Batch {
    certs: Vec<(String, String)>,
    rows: Vec<Row>,
    done: oneshot::Sender<rusqlite::Result<()>>,
}

/// The writer thread's handle. Dropping it ends the thread once queued
/// batches are done.
#[derive(Debug)]
pub(crate) struct SqliteWriter {
    queue: Option<mpsc::Sender<Batch>>,
    thread: Option<JoinHandle<()>>,
    checkpoints: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl SqliteWriter {
    /// Opens `path` (an existing, migrated database) and starts the thread.
    pub(crate) fn open(path: &str, busy_timeout: Duration) -> Result<Self, WriteError> {
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
        let (queue, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("ndxp-log-sqlite".into())
            .spawn(move || serve(conn, rx))
            .map_err(WriteError::Spawn)?;
        Ok(Self {
            queue: Some(queue),
            thread: Some(thread),
            checkpoints: Some((stop, checkpointer)),
        })
    }

    /// Commits `certs` and `rows` in one transaction.
    pub(crate) async fn write(
        &self,
        certs: Vec<(String, String)>,
        rows: Vec<Row>,
    ) -> Result<(), WriteError> {
        let (done, answer) = oneshot::channel();
        self.queue
            .as_ref()
            .ok_or(WriteError::Stopped)?
            .send(Batch { certs, rows, done })
            .map_err(|_| WriteError::Stopped)?;
        answer
            .await
            .map_err(|_| WriteError::Stopped)?
            .map_err(WriteError::Sqlite)
    }

    /// Ends the thread after the queued batches, checkpointing the WAL into
    /// the database file (TRUNCATE) on the way out.
    pub(crate) fn close(&mut self) {
        if let Some((stop, t)) = self.checkpoints.take() {
            drop(stop);
            let _ = t.join();
        }
        self.queue.take();
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
        self.queue.take();
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
    /// The writer thread has stopped.
    #[error("the message log's SQLite writer has stopped")]
    Stopped,
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

fn serve(mut conn: Connection, rx: mpsc::Receiver<Batch>) {
    while let Ok(b) = rx.recv() {
        let result = commit(&mut conn, &b.certs, &b.rows);
        let _ = b.done.send(result);
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
            insert.execute(params![
                r.writer,
                r.seq,
                r.transaction_id,
                r.received_at,
                r.hash,
                r.record,
                r.client,
                r.service,
                r.status,
                r.problem_code,
                r.trace_id,
            ])?;
        }
    }
    // Dropped without commit on an error above: rolled back.
    tx.commit()
}
