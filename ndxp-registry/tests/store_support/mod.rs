//! What the store test files share.

use ndxp_registry::store::{SqlStore, StoreOptions};
use ndxp_test_support::db::{backends, TestDatabase};

/// Runs `f` on a fresh store on SQLite and, when `NDXP_TEST_POSTGRES_URL`
/// is set, on PostgreSQL; `f` hands the store back, to be closed before
/// its database is dropped.
pub async fn with_each_backend<F, Fut>(f: F)
where
    F: Fn(SqlStore) -> Fut,
    Fut: std::future::Future<Output = SqlStore>,
{
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDatabase::create(backend, dir.path()).await;
        let store = SqlStore::open(&db.url, &StoreOptions::default())
            .await
            .unwrap();
        let store = f(store).await;
        store.close().await;
        db.drop_now().await;
    }
}
