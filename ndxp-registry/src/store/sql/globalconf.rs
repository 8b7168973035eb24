//! What the global configuration is built from (the snapshot) and the signed documents published.

use std::collections::HashMap;

use serde_json::json;

use super::nodes::node_cert_rows;
use super::rows::{
    assemble_groups, conf_row, member_row, nodes_with_certs, right_row, service_row, subsystem_row,
    NODE_COLS, SERVICE_COLS,
};
use super::{check_text, col, constraint, corrupt, db, optional_as, ts, SqlStore};
use crate::model::{Actor, MemberEntry, RegistrySnapshot, StoredConf, Subsystem};
use crate::store::Result;

impl SqlStore {
    pub(super) async fn snapshot(&self) -> Result<RegistrySnapshot> {
        let mut tx = self.read_tx().await?;
        let version_row = sqlx::query("SELECT version FROM registry_state WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| corrupt("registry_state", "the state row is missing"))?;
        let registry_version: i64 = col(&version_row, "version")?;
        let members = sqlx::query("SELECT id, name, created_at FROM members ORDER BY id")
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let subsystems =
            sqlx::query("SELECT id, member_id, created_at FROM subsystems ORDER BY id")
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
        let nodes = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {NODE_COLS} FROM nodes ORDER BY member_id, name"
        )))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let node_certs = node_cert_rows(&mut *tx, None, None).await?;
        let services = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SERVICE_COLS} FROM services ORDER BY id"
        )))
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let groups = sqlx::query("SELECT code, description FROM subsystem_groups ORDER BY code")
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let group_members = sqlx::query(
            "SELECT group_code, subsystem_id FROM group_members ORDER BY group_code, subsystem_id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let rights = sqlx::query(
            "SELECT service_id, grantee_subsystem, grantee_group, granted_at FROM access_rights \
             ORDER BY service_id, grantee",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;

        let mut subs_by_member: HashMap<String, Vec<Subsystem>> = HashMap::new();
        for row in &subsystems {
            let member: String = col(row, "member_id")?;
            subs_by_member
                .entry(member)
                .or_default()
                .push(subsystem_row(row)?);
        }
        let members = members
            .iter()
            .map(|row| {
                let member = member_row(row)?;
                let subsystems = subs_by_member
                    .remove(&member.id.to_string())
                    .unwrap_or_default();
                Ok(MemberEntry { member, subsystems })
            })
            .collect::<Result<_>>()?;
        Ok(RegistrySnapshot {
            registry_version,
            members,
            nodes: nodes_with_certs(&nodes, &node_certs)?,
            services: services.iter().map(service_row).collect::<Result<_>>()?,
            groups: assemble_groups(&groups, &group_members)?,
            access_rights: rights.iter().map(right_row).collect::<Result<_>>()?,
        })
    }

    pub(super) async fn store_conf(&self, conf: &StoredConf, actor: &Actor) -> Result<()> {
        check_text("configuration document", &conf.document)?;
        let mut w = self.begin_write(false).await?;
        sqlx::query(
            "INSERT INTO global_confs (version, registry_version, document, created_at, \
             expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(conf.version)
        .bind(conf.registry_version)
        .bind(conf.document.clone())
        .bind(ts(conf.created_at))
        .bind(ts(conf.expires_at))
        .execute(w.conn())
        .await
        .map_err(constraint("global configuration version", conf.version))?;
        w.finish(
            actor,
            "conf.publish",
            &conf.version.to_string(),
            json!({ "registry_version": conf.registry_version, "expires_at": conf.expires_at }),
        )
        .await
    }

    pub(super) async fn latest_conf(&self) -> Result<Option<StoredConf>> {
        optional_as(
            sqlx::query(
                "SELECT version, registry_version, document, created_at, expires_at \
             FROM global_confs ORDER BY version DESC LIMIT 1",
            )
            .fetch_optional(&self.pool)
            .await,
            conf_row,
        )
    }

    pub(super) async fn conf_by_version(&self, version: i64) -> Result<Option<StoredConf>> {
        optional_as(
            sqlx::query(
                "SELECT version, registry_version, document, created_at, expires_at \
             FROM global_confs WHERE version = $1",
            )
            .bind(version)
            .fetch_optional(&self.pool)
            .await,
            conf_row,
        )
    }
}
