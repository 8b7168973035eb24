//! Embedded, versioned schema migrations.

use sqlx::migrate::{MigrateError, Migration, MigrationType, Migrator};
use sqlx::{AnyPool, SqlSafeStr as _};

use crate::Backend;

/// The table sqlx records migrations in when none is named: the
/// registry's, which predates [`Migrations::table`].
pub const SQLX_MIGRATIONS_TABLE: &str = "_sqlx_migrations";

/// One schema's migrations, oldest first, and the table that records which
/// have been applied (its own, so that several NDXP schemas can share a
/// database).
///
/// Never edit a migration that has shipped: add a new one. Versions need
/// not be consecutive: every listed version not yet recorded is applied,
/// in list order, so a gap is accepted and a version added later into the
/// gap is applied when it arrives. A migration must therefore depend only
/// on versions below it that are always present.
#[derive(Debug, Clone, Copy)]
pub struct Migrations {
    /// The table recording applied versions.
    pub table: &'static str,
    /// `(version, description, SQL)`, oldest first.
    pub list: &'static [(i64, &'static str, &'static str)],
}

impl Migrations {
    /// Applies the pending migrations; a no-op when the schema is current.
    /// Safe when several processes start at once (PostgreSQL: an advisory
    /// lock; SQLite: the database write lock, see below).
    ///
    /// # Errors
    /// The migrator's error (of the last attempt on SQLite).
    pub async fn run(&self, pool: &AnyPool, backend: Backend) -> Result<(), MigrateError> {
        let migrations = self
            .list
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
        let mut migrator = Migrator::with_migrations(migrations);
        migrator.dangerous_set_table_name(self.table);
        // SQLite has no migration lock: when two processes migrate a fresh
        // file at once, the loser's transaction fails (and rolls back) once
        // the winner commits; running again then finds the work done. Every
        // lost attempt means another process committed a migration, so one
        // attempt per migration plus one always suffices.
        let attempts = match backend {
            Backend::Sqlite => self.list.len() + 1,
            Backend::Postgres => 1,
        };
        let mut result = Ok(());
        for _ in 0..attempts {
            result = migrator.run(pool).await;
            if result.is_ok() {
                break;
            }
        }
        result
    }
}
