//! Opening a database with NDXP's modes.

use std::path::Path;
use std::time::Duration;

use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AnyPool, ConnectOptions as _, Executor as _};

use crate::{parse, prepare_sqlite_file, redact, retry_busy, Backend, DatabaseUrl};
use crate::{FileModeError, UnsupportedUrl};

/// How [`open`] sets up a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolOptions {
    /// Most connections the pool opens (at least one; an in-memory SQLite
    /// database always has exactly one, kept forever, since it lives and
    /// dies with its connection).
    pub max_connections: u32,
    /// How long to wait for a free connection.
    pub acquire_timeout: Duration,
    /// Statements every new SQLite connection runs first, in order (e.g.
    /// `PRAGMA synchronous = FULL`); unused on PostgreSQL.
    pub sqlite_setup: &'static [&'static str],
    /// Whether to switch a SQLite database to the WAL journal (persistent
    /// in the file). Doing so needs a moment alone with the file, so it is
    /// retried while another process has it ([`retry_busy`]); it also
    /// proves that the file is a database.
    pub wal: bool,
}

impl Default for PoolOptions {
    /// Eight connections, a 10 s acquire time-out, no extra SQLite setup,
    /// the WAL journal.
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            sqlite_setup: &[],
            wal: true,
        }
    }
}

/// Why [`open`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The URL names no supported database.
    #[error(transparent)]
    Url(#[from] UnsupportedUrl),
    /// The SQLite file could not be created private, or group or others can
    /// read it.
    #[error(transparent)]
    File(#[from] FileModeError),
    /// The driver could not connect, or a SQLite file is not a database.
    #[error("cannot open the database {target}: {source}")]
    Connect {
        /// The URL, password removed.
        target: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

/// An open pool and the URL it was opened with.
#[derive(Debug, Clone)]
pub struct Database {
    pool: AnyPool,
    url: DatabaseUrl,
}

impl Database {
    /// The pool.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The pool, taken out.
    pub fn into_pool(self) -> AnyPool {
        self.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.url.backend
    }

    /// The parsed URL (its `connect_url`, the SQLite file, whether it is in
    /// memory).
    pub fn url(&self) -> &DatabaseUrl {
        &self.url
    }
}

/// Opens the database at `url` (see [`parse`]): a SQLite file is first
/// made private ([`prepare_sqlite_file`], created when the URL allows),
/// then the pool is opened with `options`. Migrations are the caller's
/// ([`crate::Migrations`]).
///
/// # Errors
/// [`OpenError`].
pub async fn open(url: &str, options: &PoolOptions) -> Result<Database, OpenError> {
    let parsed = parse(url)?;
    if let Some(file) = parsed.sqlite_file() {
        prepare_sqlite_file(Path::new(file), parsed.creates_file())?;
    }
    sqlx::any::install_default_drivers();
    let open_err = |source| OpenError::Connect {
        target: redact(url),
        source,
    };
    let sqlite = parsed.backend == Backend::Sqlite;
    let memory = parsed.in_memory;
    let mut pool_options = AnyPoolOptions::new()
        .max_connections(if memory {
            1
        } else {
            options.max_connections.max(1)
        })
        .acquire_timeout(options.acquire_timeout);
    if memory {
        pool_options = pool_options.idle_timeout(None).max_lifetime(None);
    }
    let setup = options.sqlite_setup;
    if sqlite && !setup.is_empty() {
        pool_options = pool_options.after_connect(move |conn, _| {
            Box::pin(async move {
                for statement in setup {
                    conn.execute(*statement).await?;
                }
                Ok(())
            })
        });
    }
    let pool = pool_options
        .connect(&parsed.connect_url)
        .await
        .map_err(open_err)?;
    if sqlite && options.wal {
        let mode: String = retry_busy(|| {
            sqlx::query_scalar::<_, String>("PRAGMA journal_mode = WAL").fetch_one(&pool)
        })
        .await
        .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") && !memory {
            tracing::warn!(%mode, "SQLite did not switch to WAL journal mode");
        }
    }
    Ok(Database { pool, url: parsed })
}

/// How [`connect_sqlite_file`] opens a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqliteAccess {
    /// Reading and writing, waiting up to this long for another process's
    /// lock.
    ReadWrite {
        /// The busy timeout.
        busy_timeout: Duration,
    },
    /// Reading only (sqlx's default busy timeout).
    ReadOnly,
}

/// One plain connection to the existing SQLite file `path`, never creating
/// it: for maintenance that works on a file beside the pools (snapshots,
/// checks).
///
/// # Errors
/// The driver's error.
pub async fn connect_sqlite_file(
    path: &Path,
    access: SqliteAccess,
) -> Result<SqliteConnection, sqlx::Error> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(false);
    match access {
        SqliteAccess::ReadWrite { busy_timeout } => options.busy_timeout(busy_timeout),
        SqliteAccess::ReadOnly => options.read_only(true),
    }
    .connect()
    .await
}
