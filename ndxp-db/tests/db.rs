//! The database layer on a SQLite file, in memory, and on PostgreSQL when
//! `NDXP_TEST_POSTGRES_URL` is set.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use ndxp_db::{Backend, Migrations, OpenError, PoolOptions, SqliteAccess};
use ndxp_test_support::db::{backends, TestDatabase};
use sqlx::Connection as _;

const SCHEMA: Migrations = Migrations {
    table: "_ndxp_db_test_migrations",
    list: &[
        (1, "a", "CREATE TABLE a (id BIGINT PRIMARY KEY)"),
        (2, "b", "CREATE TABLE b (id BIGINT PRIMARY KEY)"),
        (3, "c", "CREATE TABLE c (id BIGINT PRIMARY KEY)"),
        (5, "d", "INSERT INTO a (id) VALUES (1)"),
    ],
};

async fn applied(pool: &sqlx::AnyPool, table: &str) -> Vec<i64> {
    let sql = format!("SELECT version FROM {table} ORDER BY version");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_all(pool)
        .await
        .expect("the migrations table")
}

/// Checks that every migration of [`SCHEMA`] ran exactly once on the
/// database at `url`.
async fn assert_migrated_once(url: &str, context: &str) {
    let db = ndxp_db::open(url, &PoolOptions::default())
        .await
        .expect("open the migrated database");
    assert_eq!(
        applied(db.pool(), SCHEMA.table).await,
        vec![1, 2, 3, 5],
        "{context}"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM a")
        .fetch_one(db.pool())
        .await
        .expect("table a");
    assert_eq!(rows, 1, "{context}: the data migration ran once");
    db.pool().close().await;
}

/// A connection to `path` that never waits for a lock.
async fn impatient(path: &std::path::Path) -> sqlx::sqlite::SqliteConnection {
    let access = SqliteAccess::ReadWrite {
        busy_timeout: Duration::ZERO,
    };
    ndxp_db::connect_sqlite_file(path, access)
        .await
        .expect("a connection to the test database")
}

#[tokio::test]
async fn a_fresh_sqlite_file_is_private_wal_and_set_up() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("x.db");
    let options = PoolOptions {
        max_connections: 3,
        sqlite_setup: &["PRAGMA synchronous = FULL", "PRAGMA wal_autocheckpoint = 0"],
        ..PoolOptions::default()
    };
    let db = ndxp_db::open(&format!("sqlite://{}", path.display()), &options)
        .await
        .unwrap();
    assert_eq!(db.backend(), Backend::Sqlite);
    assert_eq!(db.url().sqlite_file(), Some(path.to_str().unwrap()));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(journal, "wal");
    // Every connection of the pool runs the setup.
    let mut conns = Vec::new();
    for _ in 0..3 {
        let mut c = db.pool().acquire().await.unwrap();
        let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let auto: i64 = sqlx::query_scalar("PRAGMA wal_autocheckpoint")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
            .fetch_one(&mut *c)
            .await
            .unwrap();
        assert_eq!((sync, auto, fk), (2, 0, 1), "FULL, no checkpoints, FKs");
        conns.push(c);
    }
    assert_eq!(db.pool().size(), 3);
    drop(conns);
    db.pool().close().await;
}

#[tokio::test]
async fn without_wal_the_journal_is_left_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", tmp.path().join("r.db").display());
    let options = PoolOptions {
        wal: false,
        ..PoolOptions::default()
    };
    let db = ndxp_db::open(&url, &options).await.unwrap();
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(journal, "delete");
}

#[tokio::test]
async fn bad_urls_files_and_modes_are_refused() {
    let err = ndxp_db::open("mysql://u:pw@h/db", &PoolOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, OpenError::Url(_)), "{err:?}");
    assert!(!err.to_string().contains("pw"), "{err}");

    let tmp = tempfile::tempdir().unwrap();
    let junk = tmp.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = format!("sqlite://{}", junk.display());
    let err = ndxp_db::open(&url, &PoolOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, OpenError::Connect { .. }), "{err:?}");
    assert!(err.to_string().contains(&url), "{err}");

    std::fs::set_permissions(&junk, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = ndxp_db::open(&url, &PoolOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(err, OpenError::File(_)), "{err:?}");
    assert!(err.to_string().contains("chmod 600"), "{err}");
}

#[tokio::test]
async fn an_in_memory_database_keeps_its_one_connection() {
    let db = ndxp_db::open("sqlite::memory:", &PoolOptions::default())
        .await
        .unwrap();
    SCHEMA.run(db.pool(), db.backend()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(applied(db.pool(), SCHEMA.table).await, vec![1, 2, 3, 5]);
    assert_eq!(db.pool().size(), 1);
    assert_eq!(db.url().sqlite_file(), None);
}

#[tokio::test]
async fn migrations_apply_once_on_every_backend() {
    for backend in backends() {
        let tmp = tempfile::tempdir().unwrap();
        let test_db = TestDatabase::create(backend, tmp.path()).await;
        let db = ndxp_db::open(&test_db.url, &PoolOptions::default())
            .await
            .unwrap();
        SCHEMA.run(db.pool(), db.backend()).await.unwrap();
        SCHEMA.run(db.pool(), db.backend()).await.unwrap();
        db.pool().close().await;
        assert_migrated_once(&test_db.url, &format!("{backend:?}")).await;
        test_db.drop_now().await;
    }
}

/// Several processes (here: tasks with pools of their own) opening and
/// migrating one fresh database at once all succeed, and every migration
/// runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_of_a_fresh_database_all_succeed() {
    for backend in backends() {
        for round in 0..5 {
            let tmp = tempfile::tempdir().unwrap();
            let test_db = TestDatabase::create(backend, tmp.path()).await;
            let tasks: Vec<_> = (0..4)
                .map(|_| {
                    let url = test_db.url.clone();
                    tokio::spawn(async move {
                        let options = PoolOptions {
                            max_connections: 1,
                            ..PoolOptions::default()
                        };
                        let db = ndxp_db::open(&url, &options).await?;
                        let result = SCHEMA.run(db.pool(), db.backend()).await;
                        db.pool().close().await;
                        result.map_err(|e| e.to_string())?;
                        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                    })
                })
                .collect();
            for t in tasks {
                if let Err(e) = t.await.unwrap() {
                    panic!("{backend:?}, round {round}: {e}");
                }
            }
            assert_migrated_once(&test_db.url, &format!("{backend:?}, round {round}")).await;
            test_db.drop_now().await;
        }
    }
}

#[tokio::test]
async fn busy_errors_are_recognised_and_waited_out() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("busy.db");
    let db = ndxp_db::open(
        &format!("sqlite://{}", path.display()),
        &PoolOptions::default(),
    )
    .await
    .unwrap();
    sqlx::query("CREATE TABLE t (v BIGINT)")
        .execute(db.pool())
        .await
        .unwrap();
    let mut holder = impatient(&path).await;
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    let mut writer = impatient(&path).await;
    let err = sqlx::query("INSERT INTO t (v) VALUES (1)")
        .execute(&mut writer)
        .await
        .unwrap_err();
    assert!(ndxp_db::is_busy(&err), "{err:?}");
    assert!(!ndxp_db::is_busy(&sqlx::Error::RowNotFound));

    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
        holder
    });
    // A pool that does not wait for locks itself.
    let impatient_pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .busy_timeout(Duration::ZERO),
        )
        .await
        .unwrap();
    let mut tries = 0;
    let start = std::time::Instant::now();
    ndxp_db::retry_busy(|| {
        tries += 1;
        sqlx::query("INSERT INTO t (v) VALUES (1)").execute(&impatient_pool)
    })
    .await
    .unwrap();
    assert!(tries > 1 && start.elapsed() >= Duration::from_millis(250));
    let _ = release.await.unwrap().close().await;
    let _ = writer.close().await;

    let mut reader = ndxp_db::connect_sqlite_file(&path, SqliteAccess::ReadOnly)
        .await
        .unwrap();
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM t")
        .fetch_one(&mut reader)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let err = sqlx::query("INSERT INTO t (v) VALUES (2)")
        .execute(&mut reader)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("readonly"), "{err}");
    let missing =
        ndxp_db::connect_sqlite_file(&tmp.path().join("none.db"), SqliteAccess::ReadOnly).await;
    assert!(missing.is_err(), "never created");
}
