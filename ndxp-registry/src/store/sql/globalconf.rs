//! What the global configuration is built from (the snapshot) and the signed documents published.

use std::collections::HashMap;

use serde_json::json;

use super::nodes::node_cert_rows;
use super::rows::{
    conf_row, member_row, nodes_with_certs, right_row, service_row, subsystem_row, NODE_COLS,
    SERVICE_COLS,
};
use super::services::all_groups;
use super::{check_text, col, corrupt, db, fetch_rows, optional_as, ts, Run, SqlStore};
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
        let members = "SELECT id, name, created_at FROM members ORDER BY id";
        let members = fetch_rows(&mut *tx, members).await?;
        let subsystems = "SELECT id, member_id, created_at FROM subsystems ORDER BY id";
        let subsystems = fetch_rows(&mut *tx, subsystems).await?;
        let nodes = format!("SELECT {NODE_COLS} FROM nodes ORDER BY member_id, name");
        let nodes = fetch_rows(&mut *tx, sqlx::AssertSqlSafe(nodes)).await?;
        let node_certs = node_cert_rows(&mut *tx, None, None).await?;
        let services = format!("SELECT {SERVICE_COLS} FROM services ORDER BY id");
        let services = fetch_rows(&mut *tx, sqlx::AssertSqlSafe(services)).await?;
        let groups = all_groups(&mut tx).await?;
        let rights = "SELECT service_id, grantee_subsystem, grantee_group, granted_at \
                      FROM access_rights ORDER BY service_id, grantee";
        let rights = fetch_rows(&mut *tx, rights).await?;
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
            groups,
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
        .insert(w.conn(), "global configuration version", conf.version)
        .await?;
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
