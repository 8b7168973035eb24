//! Services that subsystems provide.

use ndxp_core::{ServiceId, SubsystemId};
use serde_json::json;

use super::rows::{load_service, service_row, SERVICE_COLS};
use super::{all_as, check_openapi, db, exists, ts, ts_opt, Run, SqlStore, SQL_SUBSYSTEM_EXISTS};
use crate::model::{Actor, Service, ServiceUpdate};
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
