//! Opening the registry database: the connection pool, SQLite's journal
//! mode (waiting while another process holds the file), the embedded
//! migrations with their retries, and the transaction modes.

use std::time::Duration;

use ndxp_core::dburl::{self, redact, Backend};
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{Any, AnyPool, SqlSafeStr, Transaction};

use super::SqlStore;
use crate::store::{Result, StoreError};

/// The versioned schema migrations, oldest first. Never edit one that has
/// shipped: add a new file.
///
/// Versions need not be consecutive: sqlx applies every listed version not
/// yet recorded, in list order, so a gap is accepted and a version added
/// later into the gap is applied when it arrives. A migration must
/// therefore depend only on versions below it that are always present.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "registry",
        include_str!("../../../migrations/0001_registry.sql"),
    ),
    (
        2,
        "gateway",
        include_str!("../../../migrations/0002_gateway.sql"),
    ),
    (
        3,
        "monitoring",
        include_str!("../../../migrations/0003_monitoring.sql"),
    ),
    (
        4,
        "gateway certificates",
        include_str!("../../../migrations/0004_gateway_certificates.sql"),
    ),
    (
        5,
        "node certificates",
        include_str!("../../../migrations/0005_node_certificates.sql"),
    ),
];

/// Connection settings of a [`SqlStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long to wait for a free connection (and, on SQLite, for a lock).
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
        }
    }
}

impl SqlStore {
    /// Opens the database at `url` (see [`crate::store::open`]) and applies
    /// pending migrations.
    pub async fn open(url: &str, options: &StoreOptions) -> Result<Self> {
        let parsed = dburl::parse(url).map_err(|e| StoreError::UnsupportedUrl(e.0))?;
        if let Some(file) = parsed.sqlite_file() {
            ndxp_sign::files::prepare_database_file(
                std::path::Path::new(file),
                parsed.creates_file(),
            )
            .map_err(StoreError::DatabaseFile)?;
        }
        let (backend, connect_url) = (parsed.backend, parsed.connect_url);
        sqlx::any::install_default_drivers();
        let open_err = |source| StoreError::Open {
            target: redact(url),
            source,
        };
        // An in-memory SQLite database lives and dies with its connection:
        // keep exactly one, forever.
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
        let pool = pool_options.connect(&connect_url).await.map_err(open_err)?;
        if backend == Backend::Sqlite {
            // Persistent in the file; also proves the file is a database.
            // Switching the journal mode needs a moment alone with the
            // file: processes opening it at once wait for each other.
            let mut attempts = 0;
            let mode: String = loop {
                match sqlx::query_scalar("PRAGMA journal_mode = WAL")
                    .fetch_one(&pool)
                    .await
                {
                    Ok(m) => break m,
                    Err(e) if attempts < 100 && is_busy(&e) => {
                        attempts += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    }
                    Err(e) => return Err(open_err(e)),
                }
            };
            if !mode.eq_ignore_ascii_case("wal") && !connect_url.contains(":memory:") {
                tracing::warn!(%mode, "SQLite did not switch to WAL journal mode");
            }
        }
        let store = Self { pool, backend };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations; a no-op when the schema is current.
    /// Safe when several processes start at once (PostgreSQL: advisory
    /// lock; SQLite: the database write lock).
    pub async fn migrate(&self) -> Result<()> {
        let migrations = MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    (*description).into(),
                    MigrationType::Simple,
                    sqlx::AssertSqlSafe(*sql).into_sql_str(),
                    false,
                )
            })
            .collect();
        let migrator = Migrator::with_migrations(migrations);
        // SQLite has no migration lock: when two processes migrate a fresh
        // file at once, the loser's transaction fails (and rolls back) once
        // the winner commits; running again then finds the work done. Every
        // lost attempt means another process committed a migration, so one
        // attempt per migration plus one always suffices.
        let attempts = match self.backend {
            Backend::Sqlite => MIGRATIONS.len() + 1,
            Backend::Postgres => 1,
        };
        let mut result = Ok(());
        for _ in 0..attempts {
            result = migrator.run(&self.pool).await;
            if result.is_ok() {
                break;
            }
        }
        result.map_err(StoreError::Migration)
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The underlying pool (for tests and maintenance tools).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction that reads before it writes
    /// waits for another process's writer instead of failing with "database
    /// is locked" when that writer commits in between.
    pub(crate) async fn begin_immediate(&self) -> Result<Transaction<'static, Any>> {
        match self.backend {
            Backend::Postgres => self.pool.begin().await.map_err(StoreError::Database),
            Backend::Sqlite => self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(StoreError::Database),
        }
    }

    pub(super) async fn read_tx(&self) -> Result<Transaction<'static, Any>> {
        match self.backend {
            Backend::Postgres => self
                .pool
                .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                .await
                .map_err(StoreError::Database),
            Backend::Sqlite => self.pool.begin().await.map_err(StoreError::Database),
        }
    }
}

/// Whether a SQLite error is SQLITE_BUSY or SQLITE_LOCKED (primary codes
/// 5 and 6, with any extended code).
fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}
