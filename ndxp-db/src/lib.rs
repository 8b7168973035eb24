//! NDXP's one database layer, shared by the registry, the message log (the
//! nodes' and the central gateway's), monitoring and backups:
//!
//! - **the SQLite/PostgreSQL choice**: [`parse`] classifies a database URL
//!   (`sqlite://PATH`, `sqlite:PATH`, `sqlite::memory:`, `postgres://...`)
//!   into a [`DatabaseUrl`] with its [`Backend`]; [`redact`] hides the
//!   password for logs and errors;
//! - **opening**: [`open`] makes a SQLite file private (created `0600`,
//!   refused when group or others can read it or its `-wal`/`-shm` files)
//!   and opens an [`sqlx::AnyPool`] with NDXP's modes: the WAL journal,
//!   per-connection pragmas of the caller's choosing, pool sizes and
//!   time-outs from [`PoolOptions`];
//! - **migrations**: [`Migrations`] applies an embedded, versioned schema
//!   with its own migrations table, safe when several processes migrate a
//!   fresh SQLite file at once;
//! - **busy retries**: [`is_busy`] and [`retry_busy`] for the moments a
//!   SQLite file needs to be alone (switching the journal mode).
//!
//! SQLite's other settings are sqlx's defaults for a URL: foreign keys on,
//! a 5 s busy timeout.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ndxp_db::{Backend, Migrations, PoolOptions};
//!
//! const SCHEMA: Migrations = Migrations {
//!     table: "_example_migrations",
//!     list: &[(1, "notes", "CREATE TABLE notes (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")],
//! };
//! let options = PoolOptions {
//!     max_connections: 4,
//!     sqlite_setup: &["PRAGMA synchronous = FULL"],
//!     ..PoolOptions::default()
//! };
//! let db = ndxp_db::open("sqlite:///var/lib/ndxp/notes.db", &options).await?;
//! assert_eq!(db.backend(), Backend::Sqlite);
//! SCHEMA.run(db.pool(), db.backend()).await?;
//! # Ok(()) }
//! ```
//!
//! # Other crates' types in this API
//!
//! A database is an `sqlx` [`AnyPool`](sqlx::AnyPool): [`Database::pool`],
//! [`Migrations::run`] and [`retry_busy`] take or give `sqlx` types, and
//! `sqlx::Error` and `sqlx::migrate::MigrateError` are error sources, so an
//! `sqlx` upgrade is a breaking change of this crate.

mod busy;
pub mod file;
mod migrate;
mod open;

pub use busy::{is_busy, retry_busy, BUSY_PAUSE, BUSY_RETRIES};
pub use file::{prepare_sqlite_file, FileModeError};
pub use migrate::{Migrations, SQLX_MIGRATIONS_TABLE};
pub use ndxp_core::dburl::{parse, redact, Backend, DatabaseUrl, UnsupportedUrl};
pub use open::{connect_sqlite_file, open, Database, OpenError, PoolOptions, SqliteAccess};
