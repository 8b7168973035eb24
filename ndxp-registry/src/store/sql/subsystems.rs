//! Subsystems: the information systems of a member.

use ndxp_core::{MemberId, SubsystemId};
use serde_json::json;

use super::rows::subsystem_row;
use super::{
    all_as, constraint, count, db, exists, must_exist, row_by_key, ts, SqlStore, SQL_MEMBER_EXISTS,
    SQL_SUBSYSTEM_EXISTS,
};
use crate::model::{Actor, Subsystem};
use crate::store::{Result, StoreError};

impl SqlStore {
    pub(super) async fn add_subsystem(&self, id: &SubsystemId, actor: &Actor) -> Result<Subsystem> {
        let mut w = self.begin_write(true).await?;
        let member = id.member().to_string();
        if !exists(w.conn(), SQL_MEMBER_EXISTS, &member).await? {
            return Err(StoreError::Invalid(format!(
                "member {member} does not exist; add it before its subsystem {id}"
            )));
        }
        sqlx::query("INSERT INTO subsystems (id, member_id, created_at) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind(member)
            .bind(ts(w.at))
            .execute(w.conn())
            .await
            .map_err(constraint("subsystem", id))?;
        let sub = Subsystem {
            id: id.clone(),
            created_at: w.at,
        };
        w.finish(actor, "subsystem.add", &id.to_string(), json!({}))
            .await?;
        Ok(sub)
    }

    pub(super) async fn get_subsystem(&self, id: &SubsystemId) -> Result<Subsystem> {
        let row = row_by_key(
            &self.pool,
            "SELECT id, created_at FROM subsystems WHERE id = $1",
            id,
            "subsystem",
        )
        .await?;
        subsystem_row(&row)
    }

    pub(super) async fn list_subsystems(
        &self,
        member: Option<&MemberId>,
    ) -> Result<Vec<Subsystem>> {
        all_as(
            sqlx::query(
                "SELECT id, created_at FROM subsystems WHERE ($1 IS NULL OR member_id = $1) \
             ORDER BY id",
            )
            .bind(member.map(|m| m.to_string()))
            .fetch_all(&self.pool)
            .await,
            subsystem_row,
        )
    }

    pub(super) async fn remove_subsystem(&self, id: &SubsystemId, actor: &Actor) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        let key = id.to_string();
        must_exist(w.conn(), SQL_SUBSYSTEM_EXISTS, &key, "subsystem").await?;
        let services = count(
            w.conn(),
            "SELECT COUNT(*) AS n FROM services WHERE subsystem_id = $1",
            &key,
        )
        .await?;
        sqlx::query("DELETE FROM subsystems WHERE id = $1")
            .bind(key.clone())
            .execute(w.conn())
            .await
            .map_err(db)?;
        w.finish(
            actor,
            "subsystem.remove",
            &key,
            json!({ "services": services }),
        )
        .await
    }
}
