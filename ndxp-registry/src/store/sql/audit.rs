//! The audit trail and the registry version.

use super::rows::audit_row;
use super::{all_as, col, corrupt, db, SqlStore};
use crate::model::AuditEntry;
use crate::store::Result;

impl SqlStore {
    pub(super) async fn list_audit(&self, after_id: i64, limit: u32) -> Result<Vec<AuditEntry>> {
        all_as(
            sqlx::query(
                "SELECT id, at, actor, action, target, detail FROM audit_log WHERE id > $1 \
             ORDER BY id LIMIT $2",
            )
            .bind(after_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await,
            audit_row,
        )
    }

    pub(super) async fn registry_version(&self) -> Result<i64> {
        let row = sqlx::query("SELECT version FROM registry_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| corrupt("registry_state", "the state row is missing"))?;
        col(&row, "version")
    }
}
