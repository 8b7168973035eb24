//! The [`Timestamper`] and the stored tokens of a SQL message log (the
//! `store` feature).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use ndxp_sign::tsa::{self, ImprintAlgorithm, TimestampRequest};
use sqlx::{AnyPool, Row};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use super::{
    Lag, LagExceeded, RunReport, StoredTimestamp, TimestampError, TimestampOptions, TsaTransport,
};
use crate::log::{ChainHash, ChainHead, SqlMessageLog};

#[derive(Debug, Default)]
struct State {
    unstamped: u64,
    oldest_unstamped: Option<DateTime<Utc>>,
    last_success: Option<DateTime<Utc>>,
    last_error: Option<String>,
    tokens: u64,
    own_stamped: u64,
    scan_since: Option<DateTime<Utc>>,
}

#[derive(Debug)]
struct Inner {
    pool: AnyPool,
    transport: Arc<dyn TsaTransport>,
    options: TimestampOptions,
    state: Mutex<State>,
    run_lock: tokio::sync::Mutex<()>,
    stop: Notify,
}

/// The background batch timestamper of one message log (see the module
/// docs).
#[derive(Debug)]
pub struct Timestamper {
    inner: Arc<Inner>,
    task: Option<JoinHandle<()>>,
}

fn db(e: sqlx::Error) -> TimestampError {
    TimestampError::Database(e)
}

fn to_i64(v: u64) -> Result<i64, TimestampError> {
    i64::try_from(v).map_err(|_| TimestampError::Corrupt(format!("seq {v} out of range")))
}

fn to_u64(v: i64) -> Result<u64, TimestampError> {
    u64::try_from(v).map_err(|_| TimestampError::Corrupt(format!("negative seq {v}")))
}

fn parse_time(s: &str) -> Result<DateTime<Utc>, TimestampError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| TimestampError::Corrupt(format!("time {s:?}: {e}")))
}

/// A writer with records not covered by a token.
#[derive(Debug, Clone)]
struct Pending {
    writer: String,
    stamped: u64,
    head: u64,
}

/// Writers with records not covered by a token. With `since`, only
/// writers with records received since then are looked at (index lookups
/// only); without, every writer (a scan of the log's primary key).
async fn pending(
    pool: &AnyPool,
    since: Option<DateTime<Utc>>,
) -> Result<Vec<Pending>, TimestampError> {
    let writers: Vec<String> = match since {
        None => {
            sqlx::query("SELECT DISTINCT writer FROM message_log")
                .fetch_all(pool)
                .await
        }
        Some(t) => {
            sqlx::query("SELECT DISTINCT writer FROM message_log WHERE received_at >= $1")
                .bind(t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .fetch_all(pool)
                .await
        }
    }
    .map_err(db)?
    .iter()
    .map(|r| r.try_get::<String, _>("writer"))
    .collect::<Result<_, _>>()
    .map_err(db)?;
    let mut out = Vec::new();
    for writer in writers {
        let head = max_seq(
            pool,
            "SELECT MAX(seq) AS v FROM message_log WHERE writer = $1",
            &writer,
        )
        .await?;
        let stamped = max_seq(
            pool,
            "SELECT MAX(last_seq) AS v FROM message_log_timestamps WHERE writer = $1",
            &writer,
        )
        .await?;
        if head > stamped {
            out.push(Pending {
                writer,
                stamped,
                head,
            });
        }
    }
    Ok(out)
}

/// The `v` of `query` (`SELECT MAX(...) AS v ... WHERE writer = $1`) for
/// `writer`; 0 when the writer has no rows.
async fn max_seq(pool: &AnyPool, query: &'static str, writer: &str) -> Result<u64, TimestampError> {
    let v: Option<i64> = sqlx::query(query)
        .bind(writer.to_string())
        .fetch_one(pool)
        .await
        .map_err(db)?
        .try_get("v")
        .map_err(db)?;
    to_u64(v.unwrap_or(0))
}

async fn oldest_received(
    pool: &AnyPool,
    writer: &str,
    after: u64,
) -> Result<Option<DateTime<Utc>>, TimestampError> {
    let row = sqlx::query(
        "SELECT received_at FROM message_log WHERE writer = $1 AND seq > $2 ORDER BY seq LIMIT 1",
    )
    .bind(writer.to_string())
    .bind(to_i64(after)?)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    row.map(|r| {
        let s: String = r.try_get("received_at").map_err(db)?;
        parse_time(&s)
    })
    .transpose()
}

async fn record_hash(pool: &AnyPool, writer: &str, seq: u64) -> Result<ChainHash, TimestampError> {
    let row = sqlx::query("SELECT hash FROM message_log WHERE writer = $1 AND seq = $2")
        .bind(writer.to_string())
        .bind(to_i64(seq)?)
        .fetch_one(pool)
        .await
        .map_err(db)?;
    let hash: String = row.try_get("hash").map_err(db)?;
    ChainHash::from_hex(&hash)
        .map_err(|e| TimestampError::Corrupt(format!("record {seq} of {writer:?}: {e}")))
}

/// Stamps every writer's unstamped records once (one token per writer),
/// storing each verified token. A writer whose stamp fails is left for the
/// next run; the first error is returned after the others were tried.
///
/// # Errors
/// [`TimestampError`] of the first writer that failed.
pub async fn stamp_pending(
    pool: &AnyPool,
    transport: &dyn TsaTransport,
    options: &TimestampOptions,
) -> Result<RunReport, TimestampError> {
    stamp_pending_since(pool, transport, options, None).await
}

async fn stamp_pending_since(
    pool: &AnyPool,
    transport: &dyn TsaTransport,
    options: &TimestampOptions,
    since: Option<DateTime<Utc>>,
) -> Result<RunReport, TimestampError> {
    let mut report = RunReport::default();
    let mut first_error = None;
    for p in pending(pool, since).await? {
        match stamp_one(pool, transport, options, &p).await {
            Ok(stored) => report.stamped.push(stored),
            Err(e) => {
                report.unstamped += p.head - p.stamped;
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

async fn stamp_one(
    pool: &AnyPool,
    transport: &dyn TsaTransport,
    options: &TimestampOptions,
    p: &Pending,
) -> Result<StoredTimestamp, TimestampError> {
    let hash = record_hash(pool, &p.writer, p.head).await?;
    let token_err = |source| TimestampError::Token {
        writer: p.writer.clone(),
        seq: p.head,
        source,
    };
    let request = match &options.policy {
        Some(policy) => {
            TimestampRequest::with_policy(ImprintAlgorithm::Sha256, &hash.0, policy, true, true)
        }
        None => TimestampRequest::new(ImprintAlgorithm::Sha256, &hash.0, true, true),
    }
    .map_err(token_err)?;
    let reply = transport.query(request.der()).await?;
    let token = tsa::verify_response(&reply, &request, &options.trust).map_err(token_err)?;
    let stored = StoredTimestamp {
        writer: p.writer.clone(),
        first_seq: p.stamped + 1,
        last_seq: p.head,
        hash,
        gen_time: token.gen_time,
        token_der: token.der,
    };
    sqlx::query(
        "INSERT INTO message_log_timestamps (writer, first_seq, last_seq, hash, gen_time, token) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (writer, last_seq) DO NOTHING",
    )
    .bind(stored.writer.clone())
    .bind(to_i64(stored.first_seq)?)
    .bind(to_i64(stored.last_seq)?)
    .bind(stored.hash.to_hex())
    .bind(
        stored
            .gen_time
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
    )
    .bind(STANDARD.encode(&stored.token_der))
    .execute(pool)
    .await
    .map_err(db)?;
    tracing::debug!(writer = %stored.writer, first = stored.first_seq, last = stored.last_seq, "message log timestamped");
    Ok(stored)
}

/// The stored tokens of `writer` whose stamped record lies in
/// `from..=to`, by `last_seq`.
///
/// # Errors
/// [`TimestampError::Database`], [`TimestampError::Corrupt`].
pub async fn tokens(
    pool: &AnyPool,
    writer: &str,
    from: u64,
    to: u64,
) -> Result<Vec<StoredTimestamp>, TimestampError> {
    let to = to.min(i64::MAX as u64);
    if from > to {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT writer, first_seq, last_seq, hash, gen_time, token FROM message_log_timestamps \
         WHERE writer = $1 AND last_seq >= $2 AND last_seq <= $3 ORDER BY last_seq",
    )
    .bind(writer.to_string())
    .bind(to_i64(from)?)
    .bind(to_i64(to)?)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|row| {
            let writer: String = row.try_get("writer").map_err(db)?;
            let last_seq = to_u64(row.try_get("last_seq").map_err(db)?)?;
            let what = |d: String| {
                TimestampError::Corrupt(format!("timestamp of {writer:?} at {last_seq}: {d}"))
            };
            let hash: String = row.try_get("hash").map_err(db)?;
            let gen: String = row.try_get("gen_time").map_err(db)?;
            let token: String = row.try_get("token").map_err(db)?;
            Ok(StoredTimestamp {
                first_seq: to_u64(row.try_get("first_seq").map_err(db)?)?,
                last_seq,
                hash: ChainHash::from_hex(&hash).map_err(what)?,
                gen_time: parse_time(&gen)?,
                token_der: STANDARD.decode(token).map_err(|e| what(e.to_string()))?,
                writer,
            })
        })
        .collect()
}

/// The first stored token of `writer` whose stamped record is at or after
/// `seq` (the token that covers record `seq`).
///
/// # Errors
/// [`TimestampError::Database`], [`TimestampError::Corrupt`].
pub async fn covering(
    pool: &AnyPool,
    writer: &str,
    seq: u64,
) -> Result<Option<StoredTimestamp>, TimestampError> {
    let row = sqlx::query(
        "SELECT last_seq FROM message_log_timestamps WHERE writer = $1 AND last_seq >= $2 \
         ORDER BY last_seq LIMIT 1",
    )
    .bind(writer.to_string())
    .bind(to_i64(seq)?)
    .fetch_optional(pool)
    .await
    .map_err(db)?;
    let Some(row) = row else { return Ok(None) };
    let last = to_u64(row.try_get("last_seq").map_err(db)?)?;
    Ok(tokens(pool, writer, last, last).await?.into_iter().next())
}

impl Inner {
    async fn run(&self) -> Result<RunReport, TimestampError> {
        let _guard = self.run_lock.lock().await;
        let started = Utc::now();
        let since = self
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .scan_since;
        let result =
            stamp_pending_since(&self.pool, self.transport.as_ref(), &self.options, since).await;
        // What is left uncovered, whatever happened.
        let left = pending(&self.pool, since).await;
        let mut oldest = None;
        let mut unstamped = 0;
        if let Ok(left) = &left {
            for p in left {
                unstamped += p.head - p.stamped;
                if let Ok(Some(t)) = oldest_received(&self.pool, &p.writer, p.stamped).await {
                    oldest = Some(oldest.map_or(t, |o: DateTime<Utc>| o.min(t)));
                }
            }
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if left.is_ok() {
            st.unstamped = unstamped;
            st.oldest_unstamped = oldest;
        }
        match &result {
            Ok(report) => {
                // Every writer with an older record is covered now; later
                // runs look only at writers with recent records (an hour
                // of margin for exchanges logged long after they began).
                st.scan_since = Some(started - chrono::Duration::hours(1));
                st.last_success = Some(Utc::now());
                st.last_error = None;
                st.tokens += report.stamped.len() as u64;
            }
            Err(e) => {
                let text = ndxp_core::ErrorChain(e).to_string();
                tracing::warn!(error = %text, "message log timestamping failed");
                st.last_error = Some(text);
            }
        }
        drop(st);
        result
    }
}

impl Timestamper {
    /// Starts the background timestamper for the log `log` (its database
    /// and its writer's head), asking the TSA through `transport`. Must be
    /// called inside a Tokio runtime.
    pub fn spawn(
        log: &SqlMessageLog,
        transport: Arc<dyn TsaTransport>,
        options: TimestampOptions,
    ) -> Self {
        Self::spawn_on(
            log.pool().clone(),
            Some((log.writer_id().to_string(), log.head_watch())),
            transport,
            options,
        )
    }

    /// Starts a timestamper on a database alone; with `head` (a writer
    /// and its head), it also stamps as soon as that chain has
    /// [`TimestampOptions::batch_size`] unstamped records.
    pub fn spawn_on(
        pool: AnyPool,
        head: Option<(String, watch::Receiver<ChainHead>)>,
        transport: Arc<dyn TsaTransport>,
        options: TimestampOptions,
    ) -> Self {
        let inner = Arc::new(Inner {
            pool,
            transport,
            options,
            state: Mutex::new(State::default()),
            run_lock: tokio::sync::Mutex::new(()),
            stop: Notify::new(),
        });
        let task = tokio::spawn(background(inner.clone(), head));
        Self {
            inner,
            task: Some(task),
        }
    }

    /// Runs once now (waiting for a run in progress to finish first) and
    /// returns what it did.
    ///
    /// # Errors
    /// [`TimestampError`] of the first writer that could not be stamped.
    pub async fn run_now(&self) -> Result<RunReport, TimestampError> {
        self.inner.run().await
    }

    /// How far behind timestamping is (see [`Lag`]).
    pub fn lag(&self) -> Lag {
        let st = self.inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let seconds = st.oldest_unstamped.map_or(0.0, |t| {
            ((Utc::now() - t).num_milliseconds().max(0) as f64) / 1000.0
        });
        Lag {
            seconds,
            unstamped: st.unstamped,
            oldest_unstamped: st.oldest_unstamped,
            last_success: st.last_success,
            last_error: st.last_error.clone(),
            tokens: st.tokens,
        }
    }

    /// `Ok` while the oldest unstamped record is at most `max_lag` old.
    ///
    /// # Errors
    /// [`LagExceeded`], whose message says what to fix.
    pub fn check_lag(&self, max_lag: Duration) -> Result<(), LagExceeded> {
        let lag = self.lag();
        if lag.seconds <= max_lag.as_secs_f64() {
            return Ok(());
        }
        Err(LagExceeded {
            lag_secs: lag.seconds,
            max_secs: max_lag.as_secs(),
            unstamped: lag.unstamped,
            last_error: lag.last_error,
        })
    }

    /// Stops the background task (a run in progress is abandoned; what it
    /// stored stays stored).
    pub async fn shutdown(mut self) {
        self.inner.stop.notify_one();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Timestamper {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

async fn background(inner: Arc<Inner>, mut head: Option<(String, watch::Receiver<ChainHead>)>) {
    let interval = inner.options.interval.max(Duration::from_millis(10));
    let batch = inner.options.batch_size.max(1);
    let mut next = tokio::time::Instant::now();
    // After a failure, wait for the interval rather than retrying on every
    // commit.
    let mut batch_trigger = true;
    loop {
        let by_batch = async {
            match head.as_mut() {
                Some((_, rx)) if batch_trigger => loop {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                    let seq = rx.borrow_and_update().seq;
                    let stamped = inner
                        .state
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .own_stamped;
                    if seq.saturating_sub(stamped) >= batch {
                        return;
                    }
                },
                _ => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = by_batch => {}
            () = inner.stop.notified() => return,
        }
        let result = inner.run().await;
        batch_trigger = result.is_ok();
        if let (Ok(report), Some((writer, _))) = (&result, head.as_ref()) {
            let mut st = inner.state.lock().unwrap_or_else(|e| e.into_inner());
            for s in report.stamped.iter().filter(|s| &s.writer == writer) {
                st.own_stamped = st.own_stamped.max(s.last_seq);
            }
        }
        next = tokio::time::Instant::now() + interval;
    }
}
