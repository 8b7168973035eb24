//! Summaries and drill-down answers read from a message log database (the
//! `store` feature).

use chrono::{DateTime, Duration, Utc};
use ndxp_core::{ServiceId, SubsystemId, TransactionId};
use serde::Deserialize;

use super::{BucketKey, Outcome, Period, Side, Summarizer, Summary};

/// How far the local log time (`received_at`) of a record may lie from the
/// time in its transaction id for [`summarize_log`] and [`bucket_ids_from_log`]
/// to find it: records are selected by `received_at` within the period
/// widened by this margin on both sides (an indexed range scan), then
/// assigned by the time in their id. Covers clock skew between the nodes
/// and the time an exchange spends in flight.
pub const LOG_TIME_MARGIN: Duration = Duration::minutes(15);

/// Rows read per query while scanning a message log.
const LOG_PAGE: i64 = 5000;

/// The three summaries one message log yields for a period: the
/// transactions it logged as provider, as consumer and as gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummaries {
    /// Transactions logged with role `provider`.
    pub provider: Summary,
    /// Transactions logged with role `consumer`.
    pub consumer: Summary,
    /// Transactions logged with role `gateway`.
    pub gateway: Summary,
    /// Records read whose id's time lies outside the period (found only
    /// because of [`LOG_TIME_MARGIN`]).
    pub outside_period: u64,
}

impl LogSummaries {
    /// The summary of one side.
    pub fn side(&self, side: Side) -> &Summary {
        match side {
            Side::Provider => &self.provider,
            Side::Consumer => &self.consumer,
            Side::Gateway => &self.gateway,
        }
    }
}

/// Why a message log could not be read for reconciliation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogReadError {
    /// The database failed.
    #[error("cannot read the message log: {0}")]
    Database(#[source] sqlx::Error),
    /// A stored record is not a log record.
    #[error("message log record {writer}/{seq} cannot be read: {detail}")]
    Corrupt {
        /// The record's writer.
        writer: String,
        /// Its sequence number.
        seq: i64,
        /// What is wrong.
        detail: String,
    },
}

/// The parts of a stored log record that reconciliation reads.
#[derive(Deserialize)]
struct LightRecord {
    exchange: LightExchange,
}

#[derive(Deserialize)]
struct LightExchange {
    transaction_id: TransactionId,
    client: SubsystemId,
    service: ServiceId,
    role: crate::log::Role,
    status: u16,
}

fn side_of(role: crate::log::Role) -> Side {
    match role {
        crate::log::Role::Provider => Side::Provider,
        crate::log::Role::Consumer => Side::Consumer,
        crate::log::Role::Gateway => Side::Gateway,
    }
}

fn log_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Scans the `message_log` table (of [`crate::log::SqlMessageLog`], any
/// writer) for records whose `received_at` lies in `period` widened by
/// [`LOG_TIME_MARGIN`], page by page, and calls `each` for every parsed
/// record.
async fn scan_log(
    pool: &sqlx::AnyPool,
    period: Period,
    mut each: impl FnMut(LightExchange),
) -> Result<(), LogReadError> {
    use sqlx::Row as _;
    let from = log_time(period.start() - LOG_TIME_MARGIN);
    let to = log_time(period.end() + LOG_TIME_MARGIN);
    let mut after: Option<(String, String, i64)> = None;
    loop {
        let rows = match &after {
            None => sqlx::query(
                "SELECT received_at, writer, seq, record FROM message_log \
                 WHERE received_at >= $1 AND received_at < $2 \
                 ORDER BY received_at, writer, seq LIMIT $3",
            )
            .bind(from.clone())
            .bind(to.clone())
            .bind(LOG_PAGE)
            .fetch_all(pool)
            .await
            .map_err(LogReadError::Database)?,
            Some((r, w, s)) => sqlx::query(
                "SELECT received_at, writer, seq, record FROM message_log \
                 WHERE received_at < $2 AND (received_at > $1 \
                   OR (received_at = $1 AND (writer > $4 OR (writer = $4 AND seq > $5)))) \
                 ORDER BY received_at, writer, seq LIMIT $3",
            )
            .bind(r.clone())
            .bind(to.clone())
            .bind(LOG_PAGE)
            .bind(w.clone())
            .bind(*s)
            .fetch_all(pool)
            .await
            .map_err(LogReadError::Database)?,
        };
        let n = rows.len();
        for row in &rows {
            let writer: String = row.try_get("writer").map_err(LogReadError::Database)?;
            let seq: i64 = row.try_get("seq").map_err(LogReadError::Database)?;
            let text: String = row.try_get("record").map_err(LogReadError::Database)?;
            let rec: LightRecord =
                serde_json::from_str(&text).map_err(|e| LogReadError::Corrupt {
                    writer: writer.clone(),
                    seq,
                    detail: e.to_string(),
                })?;
            each(rec.exchange);
        }
        match rows.last() {
            Some(last) if n as i64 == LOG_PAGE => {
                after = Some((
                    last.try_get("received_at")
                        .map_err(LogReadError::Database)?,
                    last.try_get("writer").map_err(LogReadError::Database)?,
                    last.try_get("seq").map_err(LogReadError::Database)?,
                ));
            }
            _ => return Ok(()),
        }
    }
}

/// The provider, consumer and gateway summaries of a message log database
/// (the `message_log` table of [`crate::log::SqlMessageLog`], all writers)
/// for `period`. A node calls this for its own log, management for the
/// central gateway's. Streaming: memory is proportional to the number of
/// buckets.
///
/// # Errors
/// [`LogReadError`].
pub async fn summarize_log(
    pool: &sqlx::AnyPool,
    period: Period,
) -> Result<LogSummaries, LogReadError> {
    let mut p = Summarizer::new(Side::Provider, period);
    let mut c = Summarizer::new(Side::Consumer, period);
    let mut g = Summarizer::new(Side::Gateway, period);
    scan_log(pool, period, |e| {
        let s = match side_of(e.role) {
            Side::Provider => &mut p,
            Side::Consumer => &mut c,
            Side::Gateway => &mut g,
        };
        s.add_parts(
            e.transaction_id,
            &e.client,
            &e.service,
            Outcome::from_status(e.status),
        );
    })
    .await?;
    let outside = p.outside_period() + c.outside_period() + g.outside_period();
    Ok(LogSummaries {
        provider: p.finish(),
        consumer: c.finish(),
        gateway: g.finish(),
        outside_period: outside,
    })
}

/// The ids a message log holds in one bucket of one side for `period`:
/// the answer to a drill-down request. Same selection as
/// [`summarize_log`], so the answer's count and digest match the summary
/// as long as the log did not change in between.
///
/// # Errors
/// [`LogReadError`].
pub async fn bucket_ids_from_log(
    pool: &sqlx::AnyPool,
    period: Period,
    side: Side,
    key: &BucketKey,
) -> Result<Vec<TransactionId>, LogReadError> {
    let mut ids = Vec::new();
    scan_log(pool, period, |e| {
        if side_of(e.role) == side
            && period.contains_id(&e.transaction_id)
            && e.client == key.client
            && e.service == key.service
            && Outcome::from_status(e.status) == key.outcome
        {
            ids.push(e.transaction_id);
        }
    })
    .await?;
    ids.sort();
    Ok(ids)
}
