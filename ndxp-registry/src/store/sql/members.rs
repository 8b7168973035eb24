//! Members: the organisations taking part.

use ndxp_core::MemberId;
use serde_json::json;

use super::rows::member_row;
use super::{
    all_as, check_text, constraint, count, db, must_exist, row_by_key, ts, SqlStore,
    SQL_MEMBER_EXISTS,
};
use crate::model::{Actor, Member};
use crate::store::Result;

impl SqlStore {
    pub(super) async fn add_member(
        &self,
        id: &MemberId,
        name: &str,
        actor: &Actor,
    ) -> Result<Member> {
        check_text("member name", name)?;
        let mut w = self.begin_write(true).await?;
        let member = Member {
            id: id.clone(),
            name: name.to_string(),
            created_at: w.at,
        };
        sqlx::query("INSERT INTO members (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(id.to_string())
            .bind(name.to_string())
            .bind(ts(w.at))
            .execute(w.conn())
            .await
            .map_err(constraint("member", id))?;
        w.finish(
            actor,
            "member.add",
            &id.to_string(),
            json!({ "name": name }),
        )
        .await?;
        Ok(member)
    }

    pub(super) async fn get_member(&self, id: &MemberId) -> Result<Member> {
        let row = row_by_key(
            &self.pool,
            "SELECT id, name, created_at FROM members WHERE id = $1",
            id,
            "member",
        )
        .await?;
        member_row(&row)
    }

    pub(super) async fn list_members(&self) -> Result<Vec<Member>> {
        all_as(
            sqlx::query("SELECT id, name, created_at FROM members ORDER BY id")
                .fetch_all(&self.pool)
                .await,
            member_row,
        )
    }

    pub(super) async fn remove_member(&self, id: &MemberId, actor: &Actor) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        let key = id.to_string();
        must_exist(w.conn(), SQL_MEMBER_EXISTS, &key, "member").await?;
        let subsystems = count(
            w.conn(),
            "SELECT COUNT(*) AS n FROM subsystems WHERE member_id = $1",
            &key,
        )
        .await?;
        let nodes = count(
            w.conn(),
            "SELECT COUNT(*) AS n FROM nodes WHERE member_id = $1",
            &key,
        )
        .await?;
        let services = count(
            w.conn(),
            "SELECT COUNT(*) AS n FROM services WHERE subsystem_id IN \
             (SELECT id FROM subsystems WHERE member_id = $1)",
            &key,
        )
        .await?;
        let pending = sqlx::query(
            "DELETE FROM registration_requests WHERE member_id = $1 AND state = 'pending'",
        )
        .bind(key.clone())
        .execute(w.conn())
        .await
        .map_err(db)?
        .rows_affected();
        let revoked = sqlx::query(
            "UPDATE credentials SET revoked_at = $2 WHERE member_id = $1 AND revoked_at IS NULL",
        )
        .bind(key.clone())
        .bind(ts(w.at))
        .execute(w.conn())
        .await
        .map_err(db)?
        .rows_affected();
        // Subsystems, nodes, services, rights, group memberships and
        // subscriptions go by ON DELETE CASCADE.
        sqlx::query("DELETE FROM members WHERE id = $1")
            .bind(key.clone())
            .execute(w.conn())
            .await
            .map_err(db)?;
        w.finish(
            actor,
            "member.remove",
            &key,
            json!({
                "subsystems": subsystems, "nodes": nodes, "services": services,
                "pending_registrations": pending, "credentials_revoked": revoked,
            }),
        )
        .await
    }
}
