//! The PostgreSQL schema of a test is gone afterwards, whether the test
//! reached `drop_now` or not (runs only when `NDXP_TEST_POSTGRES_URL` is set).
#![allow(clippy::unwrap_used)]

use ndxp_test_support::db::{postgres_url, PgSchema};

async fn schema_exists(base: &str, name: &str) -> bool {
    let pool = sqlx::PgPool::connect(base).await.unwrap();
    let row = sqlx::query("SELECT 1 FROM information_schema.schemata WHERE schema_name = $1")
        .bind(name)
        .fetch_optional(&pool)
        .await
        .unwrap();
    pool.close().await;
    row.is_some()
}

#[tokio::test]
async fn schemas_are_removed_by_drop_now_and_by_drop() {
    let Some(base) = postgres_url() else { return };
    let schema = PgSchema::create(&base).await;
    let name = schema.name().to_owned();
    assert!(schema.url.ends_with(&format!("search_path%3D{name}")));
    assert!(schema_exists(&base, &name).await);
    schema.drop_now().await;
    assert!(!schema_exists(&base, &name).await);

    let schema = PgSchema::create(&base).await;
    let name = schema.name().to_owned();
    drop(schema);
    assert!(!schema_exists(&base, &name).await);
}
