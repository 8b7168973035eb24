//! [`MonitoringStore`] on the SQL backend (tables of migration 3).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ndxp_core::{MemberId, NodeName};
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{all_as, col, db, found, parsed, time, time_opt, ts, Run, SqlStore};
use crate::store::monitoring::{
    DrilldownRecord, MonitoringStore, NewDrilldown, NewSummary, StatusRecord, SummaryRecord,
    SummaryStored, JTI_RETENTION,
};
use crate::store::{Result, StoreError};

const STATUS_COLS: &str = "id, member_id, node, received_at, status";
const SUMMARY_COLS: &str = "member_id, node, side, period_start, period_end, summary, received_at";
const DRILL_COLS: &str = "id, member_id, node, side, period_start, period_end, bucket, \
                          created_at, answered_at, answer";

fn node_text(node: Option<&NodeName>) -> String {
    node.map(ToString::to_string).unwrap_or_default()
}

fn node_opt(row: &AnyRow) -> Result<Option<NodeName>> {
    let s: String = col(row, "node")?;
    if s.is_empty() {
        return Ok(None);
    }
    s.parse().map(Some).map_err(|e| StoreError::Corrupt {
        what: "node".into(),
        detail: format!("{s:?}: {e}"),
    })
}

fn status_row(row: &AnyRow) -> Result<StatusRecord> {
    Ok(StatusRecord {
        id: parsed(row, "id")?,
        member: parsed(row, "member_id")?,
        node: parsed(row, "node")?,
        received_at: time(row, "received_at")?,
        status: col(row, "status")?,
    })
}

fn summary_row(row: &AnyRow) -> Result<SummaryRecord> {
    Ok(SummaryRecord {
        member: parsed(row, "member_id")?,
        node: node_opt(row)?,
        side: col(row, "side")?,
        period_start: time(row, "period_start")?,
        period_end: time(row, "period_end")?,
        summary: col(row, "summary")?,
        received_at: time(row, "received_at")?,
    })
}

fn drill_row(row: &AnyRow) -> Result<DrilldownRecord> {
    Ok(DrilldownRecord {
        id: parsed(row, "id")?,
        member: parsed(row, "member_id")?,
        node: node_opt(row)?,
        side: col(row, "side")?,
        period_start: time(row, "period_start")?,
        period_end: time(row, "period_end")?,
        bucket: col(row, "bucket")?,
        created_at: time(row, "created_at")?,
        answered_at: time_opt(row, "answered_at")?,
        answer: col(row, "answer")?,
    })
}

/// Forgets `jti`s past [`JTI_RETENTION`] and records `jti` of `member`;
/// `AlreadyExists` when it was used before.
async fn use_jti(
    conn: &mut sqlx::AnyConnection,
    member: &MemberId,
    jti: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query("DELETE FROM monitoring_jti WHERE seen_at < $1")
        .bind(ts(at - JTI_RETENTION))
        .run(&mut *conn)
        .await?;
    sqlx::query("INSERT INTO monitoring_jti (member_id, jti, seen_at) VALUES ($1, $2, $3)")
        .bind(member.to_string())
        .bind(jti.to_string())
        .bind(ts(at))
        .insert(&mut *conn, "request id (jti)", jti)
        .await?;
    Ok(())
}

#[async_trait]
impl MonitoringStore for SqlStore {
    async fn record_status(
        &self,
        member: &MemberId,
        node: &NodeName,
        jti: &str,
        at: DateTime<Utc>,
        status_json: &str,
        signed: &str,
    ) -> Result<StatusRecord> {
        let mut tx = self.begin_immediate().await?;
        use_jti(&mut tx, member, jti, at).await?;
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO monitoring_status (id, member_id, node, received_at, status, signed) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(member.to_string())
        .bind(node.to_string())
        .bind(ts(at))
        .bind(status_json.to_string())
        .bind(signed.to_string())
        .run(&mut tx)
        .await?;
        sqlx::query(
            "INSERT INTO monitoring_latest (member_id, node, status_id) VALUES ($1, $2, $3) \
             ON CONFLICT (member_id, node) DO UPDATE SET status_id = excluded.status_id",
        )
        .bind(member.to_string())
        .bind(node.to_string())
        .bind(id.to_string())
        .run(&mut tx)
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(StatusRecord {
            id,
            member: member.clone(),
            node: node.clone(),
            received_at: at,
            status: status_json.to_string(),
        })
    }

    async fn latest_statuses(&self) -> Result<Vec<StatusRecord>> {
        let sql = "SELECT s.id, s.member_id, s.node, s.received_at, s.status \
                   FROM monitoring_latest l JOIN monitoring_status s ON s.id = l.status_id \
                   ORDER BY s.member_id, s.node";
        all_as(sqlx::query(sql).fetch_all(&self.pool).await, status_row)
    }

    async fn status_history(
        &self,
        member: &MemberId,
        node: &NodeName,
        limit: u32,
    ) -> Result<Vec<StatusRecord>> {
        let sql = format!(
            "SELECT {STATUS_COLS} FROM monitoring_status WHERE member_id = $1 AND node = $2 \
             ORDER BY received_at DESC, id DESC LIMIT $3"
        );
        all_as(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(member.to_string())
                .bind(node.to_string())
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await,
            status_row,
        )
    }

    async fn store_summary(
        &self,
        s: &NewSummary,
        jti: &str,
        at: DateTime<Utc>,
    ) -> Result<SummaryStored> {
        let mut tx = self.begin_immediate().await?;
        use_jti(&mut tx, &s.member, jti, at).await?;
        let node = node_text(s.node.as_ref());
        let existing: Option<String> = sqlx::query_scalar(
            "SELECT summary FROM recon_summaries WHERE member_id = $1 AND node = $2 \
             AND side = $3 AND period_start = $4 AND period_end = $5",
        )
        .bind(s.member.to_string())
        .bind(node.clone())
        .bind(s.side.clone())
        .bind(ts(s.period_start))
        .bind(ts(s.period_end))
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let target = || {
            format!(
                "{} summary of {}{} for {}/{}",
                s.side,
                s.member,
                s.node
                    .as_ref()
                    .map(|n| format!(" node {n}"))
                    .unwrap_or_default(),
                ts(s.period_start),
                ts(s.period_end)
            )
        };
        let outcome = match existing {
            Some(old) if old == s.summary => SummaryStored::Unchanged,
            Some(_) => {
                return Err(StoreError::AlreadyExists {
                    what: "a different",
                    id: target(),
                })
            }
            None => {
                sqlx::query(
                    "INSERT INTO recon_summaries (member_id, node, side, period_start, \
                     period_end, summary, signed, received_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(s.member.to_string())
                .bind(node)
                .bind(s.side.clone())
                .bind(ts(s.period_start))
                .bind(ts(s.period_end))
                .bind(s.summary.clone())
                .bind(s.signed.clone())
                .bind(ts(at))
                .insert(&mut tx, "a", target())
                .await?;
                SummaryStored::Created
            }
        };
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn list_summaries(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SummaryRecord>> {
        let sql = format!(
            "SELECT {SUMMARY_COLS} FROM recon_summaries WHERE period_start >= $1 \
             AND period_end <= $2 ORDER BY period_start, member_id, node, side"
        );
        all_as(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ts(from))
                .bind(ts(to))
                .fetch_all(&self.pool)
                .await,
            summary_row,
        )
    }

    async fn request_drilldowns(
        &self,
        requests: &[NewDrilldown],
        at: DateTime<Utc>,
    ) -> Result<usize> {
        let mut tx = self.begin_immediate().await?;
        let mut n = 0;
        for r in requests {
            let done = sqlx::query(
                "INSERT INTO recon_drilldowns (id, member_id, node, side, period_start, \
                 period_end, bucket, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                 ON CONFLICT (member_id, node, side, period_start, period_end, bucket) DO NOTHING",
            )
            .bind(Uuid::now_v7().to_string())
            .bind(r.member.to_string())
            .bind(node_text(r.node.as_ref()))
            .bind(r.side.clone())
            .bind(ts(r.period_start))
            .bind(ts(r.period_end))
            .bind(r.bucket.clone())
            .bind(ts(at))
            .run(&mut tx)
            .await?;
            n += usize::try_from(done.rows_affected()).unwrap_or(0);
        }
        tx.commit().await.map_err(db)?;
        Ok(n)
    }

    async fn list_drilldowns(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DrilldownRecord>> {
        let sql = format!(
            "SELECT {DRILL_COLS} FROM recon_drilldowns WHERE period_start >= $1 \
             AND period_end <= $2 ORDER BY created_at, id"
        );
        all_as(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(ts(from))
                .bind(ts(to))
                .fetch_all(&self.pool)
                .await,
            drill_row,
        )
    }

    async fn get_drilldown(&self, id: Uuid) -> Result<DrilldownRecord> {
        let sql = format!("SELECT {DRILL_COLS} FROM recon_drilldowns WHERE id = $1");
        let row = found(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await,
            "drill-down request",
            id,
        )?;
        drill_row(&row)
    }

    async fn poll_drilldowns(
        &self,
        member: &MemberId,
        node: Option<&NodeName>,
        jti: &str,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DrilldownRecord>> {
        let mut tx = self.begin_immediate().await?;
        use_jti(&mut tx, member, jti, at).await?;
        let sql = format!(
            "SELECT {DRILL_COLS} FROM recon_drilldowns WHERE member_id = $1 AND node = $2 \
             AND answered_at IS NULL ORDER BY created_at, id LIMIT $3"
        );
        let rows = all_as(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(member.to_string())
                .bind(node_text(node))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await,
            drill_row,
        )?;
        tx.commit().await.map_err(db)?;
        Ok(rows)
    }

    async fn answer_drilldown(
        &self,
        id: Uuid,
        member: &MemberId,
        node: Option<&NodeName>,
        jti: &str,
        at: DateTime<Utc>,
        answer_json: &str,
        signed: &str,
    ) -> Result<DrilldownRecord> {
        let mut tx = self.begin_immediate().await?;
        use_jti(&mut tx, member, jti, at).await?;
        let sql = format!(
            "SELECT {DRILL_COLS} FROM recon_drilldowns WHERE id = $1 AND member_id = $2 \
             AND node = $3"
        );
        let row = found(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id.to_string())
                .bind(member.to_string())
                .bind(node_text(node))
                .fetch_optional(&mut *tx)
                .await,
            "drill-down request for this node",
            id,
        )?;
        let mut rec = drill_row(&row)?;
        match &rec.answer {
            Some(old) if old == answer_json => {}
            Some(_) => {
                return Err(StoreError::InvalidTransition {
                    what: format!("drill-down request {id}"),
                    from: "answered".into(),
                    to: "answered with other ids".into(),
                })
            }
            None => {
                sqlx::query(
                    "UPDATE recon_drilldowns SET answered_at = $2, answer = $3, signed = $4 \
                     WHERE id = $1",
                )
                .bind(id.to_string())
                .bind(ts(at))
                .bind(answer_json.to_string())
                .bind(signed.to_string())
                .run(&mut tx)
                .await?;
                rec.answered_at = Some(at);
                rec.answer = Some(answer_json.to_string());
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(rec)
    }
}
