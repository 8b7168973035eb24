//! Members (the organisations taking part) and their subsystems (their
//! information systems).

use ndxp_core::{MemberId, SubsystemId};
use serde_json::json;

use super::rows::{member_row, subsystem_row};
use super::{
    all_as, check_text, count, exists, fetch_rows, must_exist, one_by_key, ts, Run, SqlStore,
    SQL_MEMBER_EXISTS, SQL_SUBSYSTEM_EXISTS,
};
use crate::model::{Actor, Member, Subsystem};
use crate::store::{Result, StoreError};

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
            .insert(w.conn(), "member", id)
            .await?;
        w.finish(
            actor,
            "member.add",
            &id.to_string(),
            json!({ "name": name }),
        )
        .await?;
        Ok(member)
    }

    pub(super) async fn rename_member(
        &self,
        id: &MemberId,
        name: &str,
        actor: &Actor,
    ) -> Result<Member> {
        check_text("member name", name)?;
        let mut w = self.begin_write(true).await?;
        let key = id.to_string();
        let old = one_by_key(
            w.conn(),
            "SELECT id, name, created_at FROM members WHERE id = $1",
            &key,
            "member",
            member_row,
        )
        .await?;
        sqlx::query("UPDATE members SET name = $2 WHERE id = $1")
            .bind(key.clone())
            .bind(name.to_string())
            .run(w.conn())
            .await?;
        w.finish(
            actor,
            "member.rename",
            &key,
            json!({ "from": old.name, "name": name }),
        )
        .await?;
        Ok(Member {
            name: name.to_string(),
            ..old
        })
    }

    pub(super) async fn get_member(&self, id: &MemberId) -> Result<Member> {
        one_by_key(
            &self.pool,
            "SELECT id, name, created_at FROM members WHERE id = $1",
            id,
            "member",
            member_row,
        )
        .await
    }

    pub(super) async fn list_members(&self) -> Result<Vec<Member>> {
        let rows = fetch_rows(
            &self.pool,
            "SELECT id, name, created_at FROM members ORDER BY id",
        );
        rows.await?.iter().map(member_row).collect()
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
        .run(w.conn())
        .await?
        .rows_affected();
        let revoked = sqlx::query(
            "UPDATE credentials SET revoked_at = $2 WHERE member_id = $1 AND revoked_at IS NULL",
        )
        .bind(key.clone())
        .bind(ts(w.at))
        .run(w.conn())
        .await?
        .rows_affected();
        // Subsystems, nodes, services, rights, group memberships and
        // subscriptions go by ON DELETE CASCADE.
        sqlx::query("DELETE FROM members WHERE id = $1")
            .bind(key.clone())
            .run(w.conn())
            .await?;
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
            .insert(w.conn(), "subsystem", id)
            .await?;
        let sub = Subsystem {
            id: id.clone(),
            created_at: w.at,
        };
        w.finish(actor, "subsystem.add", &id.to_string(), json!({}))
            .await?;
        Ok(sub)
    }

    pub(super) async fn get_subsystem(&self, id: &SubsystemId) -> Result<Subsystem> {
        one_by_key(
            &self.pool,
            "SELECT id, created_at FROM subsystems WHERE id = $1",
            id,
            "subsystem",
            subsystem_row,
        )
        .await
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
            .run(w.conn())
            .await?;
        w.finish(
            actor,
            "subsystem.remove",
            &key,
            json!({ "services": services }),
        )
        .await
    }
}
