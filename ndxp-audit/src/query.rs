//! Operational queries over the message log: which transactions happened,
//! when each hop was, how they ended (issue 5 §4).
//!
//! [`TransactionQuery`] deserializes from a URL query string (the node's
//! admin port serves it as `GET /api/v1/transactions?...`), and
//! [`TransactionPage`] serializes to its JSON answer:
//!
//! ```text
//! from=2026-01-01T00:00:00Z&to=2026-01-02T00:00:00Z    received_at in [from, to)
//! client=VN/GOV/000.00.00.G22/QLHT                      calling subsystem
//! service=VN/GOV/000.00.00.H29/CSDLDC/citizen/v1        service
//! status=502  problem_code=ndxp.provider_unreachable    outcome
//! writer=node-a/0192...                                  one writer's chain
//! trace_id=4bf92f3577b34da6a3ce929d0e0e4736              one W3C trace
//! limit=100 (1..=1000)  after=<next from the previous page>
//! ```
//!
//! Results are newest first (`received_at`, then writer and `seq`
//! descending); `next` is an opaque cursor for the following page, absent
//! on the last one. Filters use indexed copies of the record's fields
//! (schema version 4); every item is read from the record itself, whose
//! hash is checked.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};

use crate::log::sql::records_of;
use crate::log::{ChainHash, LogError, Role};

/// Most items on one page.
pub const MAX_LIMIT: u32 = 1000;
/// Items on a page when `limit` is not given.
pub const DEFAULT_LIMIT: u32 = 100;

/// Filters and paging of a transaction query; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransactionQuery {
    /// Received at or after (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Received before (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// The calling subsystem, exactly.
    pub client: Option<String>,
    /// The service, exactly.
    pub service: Option<String>,
    /// The HTTP status returned.
    pub status: Option<u16>,
    /// The problem code (`ndxp.…`).
    pub problem_code: Option<String>,
    /// Only this writer's records.
    pub writer: Option<String>,
    /// Only the records of this W3C trace (32 lowercase hex digits):
    /// the same request's records in every hop's log (schema version 6).
    pub trace_id: Option<String>,
    /// Items per page, 1 to [`MAX_LIMIT`] (default [`DEFAULT_LIMIT`]).
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    pub after: Option<String>,
}

/// One transaction as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionSummary {
    /// `NDXP-Id`.
    pub transaction_id: String,
    /// The writer that logged it.
    pub writer: String,
    /// Its place in that writer's chain.
    pub seq: u64,
    /// The record's hash.
    pub hash: ChainHash,
    /// The writer's part.
    pub role: Role,
    /// The calling subsystem.
    pub client: String,
    /// The service.
    pub service: String,
    /// The HTTP status returned.
    pub status: u16,
    /// The problem code, when it failed.
    pub problem_code: Option<String>,
    /// When the request arrived.
    pub received_at: DateTime<Utc>,
    /// When it was sent on.
    pub forwarded_at: Option<DateTime<Utc>>,
    /// When the answer came back.
    pub backend_answered_at: Option<DateTime<Utc>>,
    /// When the response left.
    pub responded_at: DateTime<Utc>,
    /// `responded_at - received_at`, in milliseconds.
    pub duration_ms: i64,
    /// Request body bytes.
    pub request_bytes: u64,
    /// Response body bytes.
    pub response_bytes: u64,
    /// `NDXP-User-Id`.
    pub user_id: Option<String>,
    /// `NDXP-Request-Id`.
    pub request_id: Option<String>,
    /// The W3C trace id (`traceparent`), when the record has one.
    #[serde(default)]
    pub trace_id: Option<String>,
}

/// One page of results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransactionPage {
    /// The transactions, newest first.
    pub items: Vec<TransactionSummary>,
    /// The cursor of the next page (`after=`), absent on the last page.
    pub next: Option<String>,
}

/// Why a query was refused or failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A parameter is not acceptable (the caller's mistake: answer 400).
    #[error("invalid transaction query: {0}")]
    Invalid(String),
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
}

fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn db(e: sqlx::Error) -> LogError {
    LogError::Database(e)
}

struct Cursor {
    received_at: String,
    seq: i64,
    writer: String,
}

impl Cursor {
    fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{}|{}|{}", self.received_at, self.seq, self.writer))
    }

    fn decode(s: &str) -> Result<Self, QueryError> {
        let bad = || QueryError::Invalid(format!("after={s:?} is not a cursor this log returned"));
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(3, '|');
        let (Some(t), Some(seq), Some(writer)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        DateTime::parse_from_rfc3339(t).map_err(|_| bad())?;
        Ok(Cursor {
            received_at: t.to_string(),
            seq: seq.parse().map_err(|_| bad())?,
            writer: writer.to_string(),
        })
    }
}

/// Runs a transaction query.
///
/// # Errors
/// [`QueryError::Invalid`] for a bad limit, range or cursor;
/// [`QueryError::Log`] when the database fails or a record is corrupt.
pub async fn transactions(
    pool: &AnyPool,
    q: &TransactionQuery,
) -> Result<TransactionPage, QueryError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(QueryError::Invalid(format!(
            "limit={limit} is not between 1 and {MAX_LIMIT}"
        )));
    }
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if f > t {
            return Err(QueryError::Invalid(format!(
                "from={} is after to={}",
                time_text(f),
                time_text(t)
            )));
        }
    }
    let cursor = q.after.as_deref().map(Cursor::decode).transpose()?;
    let mut sql =
        String::from("SELECT writer, seq, hash, record, received_at FROM message_log WHERE 1=1");
    let mut binds: Vec<Bind> = Vec::new();
    let mut add = |sql: &mut String, clause: &str, b: Bind| {
        binds.push(b);
        sql.push_str(&clause.replace('?', &format!("${}", binds.len())));
    };
    if let Some(f) = q.from {
        add(&mut sql, " AND received_at >= ?", Bind::Text(time_text(f)));
    }
    if let Some(t) = q.to {
        add(&mut sql, " AND received_at < ?", Bind::Text(time_text(t)));
    }
    if let Some(c) = &q.client {
        add(&mut sql, " AND client = ?", Bind::Text(c.clone()));
    }
    if let Some(s) = &q.service {
        add(&mut sql, " AND service = ?", Bind::Text(s.clone()));
    }
    if let Some(s) = q.status {
        add(&mut sql, " AND status = ?", Bind::Int(i32::from(s)));
    }
    if let Some(p) = &q.problem_code {
        add(&mut sql, " AND problem_code = ?", Bind::Text(p.clone()));
    }
    if let Some(w) = &q.writer {
        add(&mut sql, " AND writer = ?", Bind::Text(w.clone()));
    }
    if let Some(t) = &q.trace_id {
        let t: ndxp_core::trace::TraceId = t
            .parse()
            .map_err(|e| QueryError::Invalid(format!("trace_id: {e}")))?;
        add(&mut sql, " AND trace_id = ?", Bind::Text(t.to_string()));
    }
    if let Some(c) = &cursor {
        add(
            &mut sql,
            " AND (received_at < ?",
            Bind::Text(c.received_at.clone()),
        );
        add(
            &mut sql,
            " OR (received_at = ?",
            Bind::Text(c.received_at.clone()),
        );
        add(&mut sql, " AND (writer < ?", Bind::Text(c.writer.clone()));
        add(&mut sql, " OR (writer = ?", Bind::Text(c.writer.clone()));
        add(&mut sql, " AND seq < ?))))", Bind::Big(c.seq));
    }
    sql.push_str(&format!(
        " ORDER BY received_at DESC, writer DESC, seq DESC LIMIT {}",
        limit + 1
    ));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = match b {
            Bind::Text(s) => query.bind(s),
            Bind::Int(i) => query.bind(i),
            Bind::Big(i) => query.bind(i),
        };
    }
    let mut rows = query.fetch_all(pool).await.map_err(db)?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let records = records_of(pool, &rows).await?;
    let mut items = Vec::with_capacity(records.len());
    for r in records {
        let e = &r.exchange;
        items.push(TransactionSummary {
            transaction_id: e.transaction_id.to_string(),
            writer: r.writer.clone(),
            seq: r.seq,
            hash: r.hash,
            role: e.role,
            client: e.client.to_string(),
            service: e.service.to_string(),
            status: e.status,
            problem_code: e.problem_code.clone(),
            received_at: e.received_at,
            forwarded_at: e.forwarded_at,
            backend_answered_at: e.backend_answered_at,
            responded_at: e.responded_at,
            duration_ms: (e.responded_at - e.received_at).num_milliseconds(),
            request_bytes: e.request_bytes,
            response_bytes: e.response_bytes,
            user_id: e.user_id.clone(),
            request_id: e.request_id.clone(),
            trace_id: e.trace_id.map(|t| t.to_string()),
        });
    }
    let next = match items.last() {
        Some(last) if more => Some(
            Cursor {
                received_at: time_text(last.received_at),
                seq: i64::try_from(last.seq).unwrap_or(i64::MAX),
                writer: last.writer.clone(),
            }
            .encode(),
        ),
        _ => None,
    };
    Ok(TransactionPage { items, next })
}

enum Bind {
    Text(String),
    Int(i32),
    Big(i64),
}

/// For every writer with records received in `from <= received_at < to`:
/// the writer and the lowest and highest `seq` of those records.
pub(crate) async fn seq_bounds(
    pool: &AnyPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(String, u64, u64)>, LogError> {
    let rows = sqlx::query(
        "SELECT writer, MIN(seq) AS lo, MAX(seq) AS hi FROM message_log \
         WHERE received_at >= $1 AND received_at < $2 GROUP BY writer ORDER BY writer",
    )
    .bind(time_text(from))
    .bind(time_text(to))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| {
            let writer: String = r.try_get("writer").map_err(db)?;
            let lo: i64 = r.try_get("lo").map_err(db)?;
            let hi: i64 = r.try_get("hi").map_err(db)?;
            let conv = |v: i64| {
                u64::try_from(v).map_err(|_| LogError::Corrupt {
                    what: format!("records of writer {writer:?}"),
                    detail: format!("negative seq {v}"),
                })
            };
            Ok((writer.clone(), conv(lo)?, conv(hi)?))
        })
        .collect()
}
