//! Services that subsystems provide, and who may call them: access
//! rights, granted to a subsystem or to a global group of subsystems.

use ndxp_core::{ServiceId, SubsystemId};
use serde_json::json;

use super::rows::{assemble_groups, load_service, right_row, service_row, SERVICE_COLS};
use super::{
    all_as, check_group_code, check_openapi, constraint, corrupt, db, exists, fetch_rows,
    must_exist, row_by_key, ts, ts_opt, Run, SqlStore, SQL_GROUP_EXISTS, SQL_SERVICE_EXISTS,
    SQL_SUBSYSTEM_EXISTS,
};
use crate::model::{AccessRight, Actor, Grantee, Group, Service, ServiceUpdate};
use crate::store::{Result, StoreError};

impl SqlStore {
    pub(super) async fn add_service(
        &self,
        id: &ServiceId,
        description: &str,
        openapi: Option<&str>,
        actor: &Actor,
    ) -> Result<Service> {
        check_openapi(openapi)?;
        let mut w = self.begin_write(true).await?;
        let provider = id.subsystem().to_string();
        if !exists(w.conn(), SQL_SUBSYSTEM_EXISTS, &provider).await? {
            return Err(StoreError::Invalid(format!(
                "provider subsystem {provider} does not exist; add it before its service {id}"
            )));
        }
        let sql = format!(
            "INSERT INTO services (subsystem_id, {SERVICE_COLS}) \
             VALUES ($1, $2, $3, $4, NULL, NULL, $5)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(provider)
            .bind(id.to_string())
            .bind(description.to_string())
            .bind(openapi.map(str::to_string))
            .bind(ts(w.at))
            .insert(w.conn(), "service", id)
            .await?;
        let service = Service {
            id: id.clone(),
            description: description.to_string(),
            openapi: openapi.map(str::to_string),
            deprecated_at: None,
            sunset_at: None,
            created_at: w.at,
        };
        w.finish(
            actor,
            "service.add",
            &id.to_string(),
            json!({ "description": description, "openapi": openapi.is_some() }),
        )
        .await?;
        Ok(service)
    }

    pub(super) async fn get_service(&self, id: &ServiceId) -> Result<Service> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load_service(&mut conn, id).await
    }

    pub(super) async fn list_services(
        &self,
        provider: Option<&SubsystemId>,
    ) -> Result<Vec<Service>> {
        let sql = format!(
            "SELECT {SERVICE_COLS} FROM services WHERE ($1 IS NULL OR subsystem_id = $1) \
             ORDER BY id"
        );
        all_as(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(provider.map(|p| p.to_string()))
                .fetch_all(&self.pool)
                .await,
            service_row,
        )
    }

    pub(super) async fn update_service(
        &self,
        id: &ServiceId,
        update: &ServiceUpdate,
        actor: &Actor,
    ) -> Result<Service> {
        if let Some(doc) = &update.openapi {
            check_openapi(doc.as_deref())?;
        }
        let mut w = self.begin_write(true).await?;
        let mut service = load_service(w.conn(), id).await?;
        if let Some(d) = &update.description {
            service.description = d.clone();
        }
        if let Some(o) = &update.openapi {
            service.openapi = o.clone();
        }
        if let Some(t) = update.deprecated_at {
            service.deprecated_at = t;
        }
        if let Some(t) = update.sunset_at {
            service.sunset_at = t;
        }
        sqlx::query(
            "UPDATE services SET description = $2, openapi = $3, deprecated_at = $4, \
             sunset_at = $5 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(service.description.clone())
        .bind(service.openapi.clone())
        .bind(ts_opt(service.deprecated_at))
        .bind(ts_opt(service.sunset_at))
        .run(w.conn())
        .await?;
        let mut changed = serde_json::Map::new();
        if let Some(d) = &update.description {
            changed.insert("description".into(), json!(d));
        }
        if let Some(o) = &update.openapi {
            changed.insert("openapi".into(), json!(o.is_some()));
        }
        if let Some(t) = update.deprecated_at {
            changed.insert("deprecated_at".into(), json!(t));
        }
        if let Some(t) = update.sunset_at {
            changed.insert("sunset_at".into(), json!(t));
        }
        w.finish(
            actor,
            "service.update",
            &id.to_string(),
            serde_json::Value::Object(changed),
        )
        .await?;
        Ok(service)
    }

    pub(super) async fn remove_service(&self, id: &ServiceId, actor: &Actor) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        sqlx::query("DELETE FROM services WHERE id = $1")
            .bind(id.to_string())
            .delete(w.conn(), "service", id)
            .await?;
        w.finish(actor, "service.remove", &id.to_string(), json!({}))
            .await
    }
}

pub(super) async fn load_group(conn: &mut sqlx::AnyConnection, code: &str) -> Result<Group> {
    let row = row_by_key(
        &mut *conn,
        "SELECT code, description FROM subsystem_groups WHERE code = $1",
        code,
        "group",
    )
    .await?;
    let members = sqlx::query(
        "SELECT group_code, subsystem_id FROM group_members WHERE group_code = $1 \
         ORDER BY subsystem_id",
    )
    .bind(code.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    assemble_groups(&[row], &members)?
        .pop()
        .ok_or_else(|| corrupt("subsystem_groups", "group vanished while reading"))
}

pub(super) fn grantee_columns(grantee: &Grantee) -> (Option<String>, Option<String>) {
    match grantee {
        Grantee::Subsystem(s) => (Some(s.to_string()), None),
        Grantee::Group(g) => (None, Some(g.clone())),
    }
}

/// Every group with its members, ordered by code.
pub(super) async fn all_groups(conn: &mut sqlx::AnyConnection) -> Result<Vec<Group>> {
    let groups = fetch_rows(
        &mut *conn,
        "SELECT code, description FROM subsystem_groups ORDER BY code",
    )
    .await?;
    let members = fetch_rows(
        &mut *conn,
        "SELECT group_code, subsystem_id FROM group_members ORDER BY group_code, subsystem_id",
    )
    .await?;
    assemble_groups(&groups, &members)
}

impl SqlStore {
    pub(super) async fn add_group(
        &self,
        code: &str,
        description: &str,
        actor: &Actor,
    ) -> Result<Group> {
        check_group_code(code)?;
        let mut w = self.begin_write(true).await?;
        sqlx::query(
            "INSERT INTO subsystem_groups (code, description, created_at) VALUES ($1, $2, $3)",
        )
        .bind(code.to_string())
        .bind(description.to_string())
        .bind(ts(w.at))
        .insert(w.conn(), "group", code)
        .await?;
        w.finish(
            actor,
            "group.add",
            code,
            json!({ "description": description }),
        )
        .await?;
        Ok(Group {
            code: code.to_string(),
            description: description.to_string(),
            members: Vec::new(),
        })
    }

    pub(super) async fn describe_group(
        &self,
        code: &str,
        description: &str,
        actor: &Actor,
    ) -> Result<Group> {
        let mut w = self.begin_write(true).await?;
        let mut group = load_group(w.conn(), code).await?;
        sqlx::query("UPDATE subsystem_groups SET description = $2 WHERE code = $1")
            .bind(code.to_string())
            .bind(description.to_string())
            .run(w.conn())
            .await?;
        w.finish(
            actor,
            "group.describe",
            code,
            json!({ "from": group.description, "description": description }),
        )
        .await?;
        group.description = description.to_string();
        Ok(group)
    }

    pub(super) async fn get_group(&self, code: &str) -> Result<Group> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load_group(&mut conn, code).await
    }

    pub(super) async fn list_groups(&self) -> Result<Vec<Group>> {
        let mut tx = self.read_tx().await?;
        let groups = all_groups(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(groups)
    }

    pub(super) async fn remove_group(&self, code: &str, actor: &Actor) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        sqlx::query("DELETE FROM subsystem_groups WHERE code = $1")
            .bind(code.to_string())
            .delete(w.conn(), "group", code)
            .await?;
        w.finish(actor, "group.remove", code, json!({})).await
    }

    pub(super) async fn add_group_member(
        &self,
        code: &str,
        subsystem: &SubsystemId,
        actor: &Actor,
    ) -> Result<Group> {
        let mut w = self.begin_write(true).await?;
        must_exist(w.conn(), SQL_GROUP_EXISTS, code, "group").await?;
        if !exists(w.conn(), SQL_SUBSYSTEM_EXISTS, subsystem).await? {
            return Err(StoreError::Invalid(format!(
                "subsystem {subsystem} does not exist; add it before putting it in group {code}"
            )));
        }
        sqlx::query("INSERT INTO group_members (group_code, subsystem_id) VALUES ($1, $2)")
            .bind(code.to_string())
            .bind(subsystem.to_string())
            .execute(w.conn())
            .await
            .map_err(constraint(
                "group member",
                format_args!("{subsystem} in {code}"),
            ))?;
        let group = load_group(w.conn(), code).await?;
        w.finish(
            actor,
            "group.member.add",
            code,
            json!({ "subsystem": subsystem }),
        )
        .await?;
        Ok(group)
    }

    pub(super) async fn remove_group_member(
        &self,
        code: &str,
        subsystem: &SubsystemId,
        actor: &Actor,
    ) -> Result<Group> {
        let mut w = self.begin_write(true).await?;
        sqlx::query("DELETE FROM group_members WHERE group_code = $1 AND subsystem_id = $2")
            .bind(code.to_string())
            .bind(subsystem.to_string())
            .delete(w.conn(), "group member", format!("{subsystem} in {code}"))
            .await?;
        let group = load_group(w.conn(), code).await?;
        w.finish(
            actor,
            "group.member.remove",
            code,
            json!({ "subsystem": subsystem }),
        )
        .await?;
        Ok(group)
    }

    pub(super) async fn grant_access(
        &self,
        service: &ServiceId,
        grantee: &Grantee,
        actor: &Actor,
    ) -> Result<AccessRight> {
        let mut w = self.begin_write(true).await?;
        if !exists(w.conn(), SQL_SERVICE_EXISTS, service).await? {
            return Err(StoreError::Invalid(format!(
                "service {service} does not exist; add it before granting access to it"
            )));
        }
        let found = match grantee {
            Grantee::Subsystem(s) => exists(w.conn(), SQL_SUBSYSTEM_EXISTS, s).await?,
            Grantee::Group(g) => exists(w.conn(), SQL_GROUP_EXISTS, g).await?,
        };
        if !found {
            return Err(StoreError::Invalid(format!(
                "grantee {grantee} does not exist"
            )));
        }
        let (sub, group) = grantee_columns(grantee);
        let key = format!("{service} to {grantee}");
        sqlx::query(
            "INSERT INTO access_rights \
             (service_id, grantee, grantee_subsystem, grantee_group, granted_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(service.to_string())
        .bind(grantee.to_string())
        .bind(sub)
        .bind(group)
        .bind(ts(w.at))
        .insert(w.conn(), "access right", &key)
        .await?;
        let right = AccessRight {
            service: service.clone(),
            grantee: grantee.clone(),
            granted_at: w.at,
        };
        w.finish(
            actor,
            "access.grant",
            &service.to_string(),
            json!({ "grantee": grantee }),
        )
        .await?;
        Ok(right)
    }

    pub(super) async fn revoke_access(
        &self,
        service: &ServiceId,
        grantee: &Grantee,
        actor: &Actor,
    ) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        sqlx::query("DELETE FROM access_rights WHERE service_id = $1 AND grantee = $2")
            .bind(service.to_string())
            .bind(grantee.to_string())
            .delete(w.conn(), "access right", format!("{service} to {grantee}"))
            .await?;
        w.finish(
            actor,
            "access.revoke",
            &service.to_string(),
            json!({ "grantee": grantee }),
        )
        .await
    }

    pub(super) async fn list_access_rights(
        &self,
        service: Option<&ServiceId>,
    ) -> Result<Vec<AccessRight>> {
        all_as(sqlx::query(
            "SELECT service_id, grantee_subsystem, grantee_group, granted_at FROM access_rights \
             WHERE ($1 IS NULL OR service_id = $1) ORDER BY service_id, grantee",
        )
        .bind(service.map(|s| s.to_string()))
        .fetch_all(&self.pool).await, right_row)
    }
}
