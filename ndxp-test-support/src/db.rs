//! A database per test: a SQLite file in the test's directory, or a fresh
//! PostgreSQL schema (`t_<random>`) that is dropped afterwards.

use std::path::Path;

use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions};
use sqlx::Connection as _;

/// The variable naming the PostgreSQL server the tests may use.
pub const POSTGRES_URL_VAR: &str = "NDXP_TEST_POSTGRES_URL";

/// The PostgreSQL server the tests may use, from `NDXP_TEST_POSTGRES_URL`;
/// `None` when it is unset (the PostgreSQL half of a suite is then skipped).
pub fn postgres_url() -> Option<String> {
    std::env::var(POSTGRES_URL_VAR).ok()
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file in the test's temporary directory.
    Sqlite,
    /// A fresh schema on the server named by `NDXP_TEST_POSTGRES_URL`.
    Postgres,
}

/// The backends to run: SQLite always; PostgreSQL too when
/// `NDXP_TEST_POSTGRES_URL` is set.
pub fn backends() -> Vec<Backend> {
    let mut v = vec![Backend::Sqlite];
    if postgres_url().is_some() {
        v.push(Backend::Postgres);
    }
    v
}

/// A fresh PostgreSQL schema whose [`url`](PgSchema::url) makes it the
/// connection's `search_path`, so a test sees only its own tables.
///
/// Call [`drop_now`](PgSchema::drop_now) at the end of the test; if the test
/// ends early (a failed assertion), dropping the value removes the schema on
/// a best-effort basis.
#[derive(Debug)]
pub struct PgSchema {
    /// The database URL to open: the base URL with
    /// `options=-c search_path=<schema>`.
    pub url: String,
    base_url: String,
    name: String,
    admin: Option<PgPool>,
}

impl PgSchema {
    /// Creates a schema `t_<random>` on the server at `base_url`.
    pub async fn create(base_url: &str) -> PgSchema {
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .connect(base_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to PostgreSQL at {base_url}: {e}"));
        let name = format!("t_{}", uuid::Uuid::now_v7().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot create schema {name}: {e}"));
        let sep = if base_url.contains('?') { '&' } else { '?' };
        PgSchema {
            url: format!("{base_url}{sep}options=-c%20search_path%3D{name}"),
            base_url: base_url.to_owned(),
            name,
            admin: Some(admin),
        }
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Drops the schema and everything in it; panics if that fails. Close
    /// the pools opened on [`url`](PgSchema::url) first.
    pub async fn drop_now(mut self) {
        if let Some(admin) = self.admin.take() {
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "DROP SCHEMA {} CASCADE",
                self.name
            )))
            .execute(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot drop schema {}: {e}", self.name));
            admin.close().await;
        }
    }
}

impl Drop for PgSchema {
    /// Best-effort cleanup when [`drop_now`](PgSchema::drop_now) was not
    /// reached: drops the schema from a thread of its own (a `Drop` cannot
    /// await), ignoring any error.
    fn drop(&mut self) {
        if self.admin.take().is_none() {
            return;
        }
        let (base, name) = (self.base_url.clone(), self.name.clone());
        let cleanup = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect(&base).await {
                    let drop = format!("DROP SCHEMA IF EXISTS {name} CASCADE");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(drop))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        });
        let _ = cleanup.join();
    }
}

/// The database of one test on either backend: a SQLite file
/// `registry.db` in a directory the test owns, or a [`PgSchema`].
#[derive(Debug)]
pub struct TestDatabase {
    /// The database URL to open.
    pub url: String,
    schema: Option<PgSchema>,
}

impl TestDatabase {
    /// A database on `backend`; a SQLite one is the file `registry.db` in
    /// `dir`. Panics for [`Backend::Postgres`] when `NDXP_TEST_POSTGRES_URL`
    /// is unset (ask [`backends`] first).
    pub async fn create(backend: Backend, dir: &Path) -> TestDatabase {
        match backend {
            Backend::Sqlite => TestDatabase::sqlite(dir),
            Backend::Postgres => {
                let base =
                    postgres_url().unwrap_or_else(|| panic!("{POSTGRES_URL_VAR} is not set"));
                TestDatabase::postgres(&base).await
            }
        }
    }

    /// The SQLite file `registry.db` in `dir`.
    pub fn sqlite(dir: &Path) -> TestDatabase {
        TestDatabase {
            url: format!("sqlite://{}", dir.join("registry.db").display()),
            schema: None,
        }
    }

    /// A fresh schema on the PostgreSQL server at `base_url`.
    pub async fn postgres(base_url: &str) -> TestDatabase {
        let schema = PgSchema::create(base_url).await;
        TestDatabase {
            url: schema.url.clone(),
            schema: Some(schema),
        }
    }

    /// The PostgreSQL schema, if this database is one.
    pub fn schema(&self) -> Option<&PgSchema> {
        self.schema.as_ref()
    }

    /// Removes a PostgreSQL schema now (see [`PgSchema::drop_now`]); the
    /// SQLite file goes with the test's directory.
    pub async fn drop_now(self) {
        if let Some(schema) = self.schema {
            schema.drop_now().await;
        }
    }
}
