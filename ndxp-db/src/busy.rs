//! Waiting out SQLite's `SQLITE_BUSY`.

use std::future::Future;
use std::time::Duration;

/// How many times [`retry_busy`] tries again.
pub const BUSY_RETRIES: u32 = 100;

/// How long [`retry_busy`] waits between two tries.
pub const BUSY_PAUSE: Duration = Duration::from_millis(50);

/// Whether a SQLite error is `SQLITE_BUSY` or `SQLITE_LOCKED` (primary
/// codes 5 and 6, with any extended code). PostgreSQL errors never are.
pub fn is_busy(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .and_then(|c| c.parse::<i32>().ok())
        .is_some_and(|c| matches!(c & 0xff, 5 | 6))
}

/// Runs `op` until it succeeds or fails with something other than a busy
/// database ([`is_busy`]), trying at most [`BUSY_RETRIES`] more times,
/// [`BUSY_PAUSE`] apart. For statements that need a moment alone with a
/// SQLite file, beyond what its busy timeout waits for (switching the
/// journal mode); the last error is returned.
///
/// # Errors
/// The error of the last try.
pub async fn retry_busy<T, F, Fut>(mut op: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut retries = 0;
    loop {
        match op().await {
            Err(e) if retries < BUSY_RETRIES && is_busy(&e) => {
                retries += 1;
                tokio::time::sleep(BUSY_PAUSE).await;
            }
            other => return other,
        }
    }
}
