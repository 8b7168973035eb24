//! Opening the registry database through `ndxp_db` (the connection pool,
//! SQLite's journal mode, the embedded migrations with their retries) and
//! the transaction modes.

use std::time::Duration;

use ndxp_db::{redact, Backend};
use sqlx::{Any, AnyPool, Transaction};

use super::SqlStore;
use crate::store::{Result, StoreError};

/// The versioned schema migrations, oldest first (see
/// [`ndxp_db::Migrations`]), recorded in sqlx's default table, as they
/// always have been.
const MIGRATIONS: ndxp_db::Migrations = ndxp_db::Migrations {
    table: ndxp_db::SQLX_MIGRATIONS_TABLE,
    list: &[
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
    ],
};

/// The schema version this release writes: the last of its migrations.
/// A registry whose `_sqlx_migrations` table records a lower version is
/// migrated when a store opens it; a higher one was written by a newer
/// release (`ndxp-gateway diagnose` reports both).
pub const SCHEMA_VERSION: i64 = {
    let list = MIGRATIONS.list;
    list[list.len() - 1].0
};

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
        let db_options = ndxp_db::PoolOptions {
            max_connections: options.max_connections,
            acquire_timeout: options.acquire_timeout,
            ..ndxp_db::PoolOptions::default()
        };
        let db = ndxp_db::open(url, &db_options).await.map_err(|e| match e {
            ndxp_db::OpenError::Url(e) => StoreError::UnsupportedUrl(e.0),
            ndxp_db::OpenError::File(e) => StoreError::DatabaseFile(e),
            ndxp_db::OpenError::Connect { target, source } => StoreError::Open { target, source },
            e => StoreError::Open {
                target: redact(url),
                source: sqlx::Error::Configuration(Box::new(e)),
            },
        })?;
        let backend = db.backend();
        let pool = db.into_pool();
        let store = Self {
            pool,
            backend,
            shared: None,
        };
        store.migrate().await?;
        Ok(store)
    }

    /// Applies pending migrations; a no-op when the schema is current.
    /// Safe when several processes start at once (PostgreSQL: advisory
    /// lock; SQLite: the database write lock).
    pub async fn migrate(&self) -> Result<()> {
        MIGRATIONS
            .run(&self.pool, self.backend)
            .await
            .map_err(StoreError::Migration)
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
