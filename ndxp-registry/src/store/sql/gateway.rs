//! The SQL side of [`GatewayStore`]: the gateway's tables (schema versions
//! 2 and 4) and the writes on them, each audited and versioned like every
//! registry write.

use async_trait::async_trait;
use ipnet::IpNet;
use ndxp_core::{ServiceId, SubsystemId};
use serde_json::json;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{
    check_openapi, check_text, col, corrupt, db, exists, found, is_sha256_hex, parsed, time,
    time_opt, ts, Run, SqlStore, SQL_SERVICE_EXISTS, SQL_SUBSYSTEM_EXISTS,
};
use crate::model::{Actor, Service, SubscriptionState};
use crate::store::gateway::{
    normalise_cidrs, BackendTls, ClientCertificate, GatewayApp, GatewayService,
    GatewayServiceState, GatewaySettings, GatewaySettingsUpdate, GatewaySnapshot, GatewayStore,
    GatewaySubscription, RoutedService, SubscriptionLimits,
};
use crate::store::{Result, StoreError};

const GW_COLS: &str = "service_id, state, backend_url, timeout_ms, rate_per_sec, burst, \
     quota_per_day, sign_requests, verify_responses, backend_ca_file, \
     backend_client_cert_file, backend_client_key_file, created_at, updated_at";

const APP_COLS: &str = "client_id, subsystem_id, secret_hash, generation, allowed_cidrs, \
     created_at, rotated_at, revoked_at, cert_sha256, cert_subject, cert_not_after";

fn unsigned(row: &AnyRow, name: &str) -> Result<u64> {
    let v: i64 = col(row, name)?;
    u64::try_from(v).map_err(|_| corrupt(name, format_args!("negative value {v}")))
}

fn unsigned_opt(row: &AnyRow, name: &str) -> Result<Option<u64>> {
    let v: Option<i64> = col(row, name)?;
    v.map(|v| u64::try_from(v).map_err(|_| corrupt(name, format_args!("negative value {v}"))))
        .transpose()
}

fn flag(row: &AnyRow, name: &str) -> Result<bool> {
    match col::<i64>(row, name)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(corrupt(name, format_args!("{v} is not 0 or 1"))),
    }
}

fn gw_row(row: &AnyRow) -> Result<GatewayService> {
    Ok(GatewayService {
        service: parsed(row, "service_id")?,
        state: parsed(row, "state")?,
        settings: GatewaySettings {
            backend_url: col(row, "backend_url")?,
            timeout_ms: unsigned(row, "timeout_ms")?,
            rate_per_sec: unsigned(row, "rate_per_sec")?,
            burst: unsigned(row, "burst")?,
            quota_per_day: unsigned(row, "quota_per_day")?,
            sign_requests: flag(row, "sign_requests")?,
            verify_responses: flag(row, "verify_responses")?,
            backend_tls: BackendTls {
                ca_file: col(row, "backend_ca_file")?,
                client_cert_file: col(row, "backend_client_cert_file")?,
                client_key_file: col(row, "backend_client_key_file")?,
            },
        },
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
    })
}

fn app_row(row: &AnyRow) -> Result<GatewayApp> {
    let cidrs: String = col(row, "allowed_cidrs")?;
    let allowed_cidrs: Vec<IpNet> = serde_json::from_str(&cidrs)
        .map_err(|e| corrupt("gateway_apps.allowed_cidrs", format_args!("{cidrs:?}: {e}")))?;
    Ok(GatewayApp {
        client_id: col(row, "client_id")?,
        client: parsed(row, "subsystem_id")?,
        secret_hash: col(row, "secret_hash")?,
        generation: col(row, "generation")?,
        allowed_cidrs,
        created_at: time(row, "created_at")?,
        rotated_at: time(row, "rotated_at")?,
        revoked_at: time_opt(row, "revoked_at")?,
        certificate: match col::<Option<String>>(row, "cert_sha256")? {
            None => None,
            Some(sha256) => Some(ClientCertificate {
                sha256,
                subject: col::<Option<String>>(row, "cert_subject")?.unwrap_or_default(),
                not_after: time(row, "cert_not_after")?,
            }),
        },
    })
}

fn limits_row(row: &AnyRow) -> Result<SubscriptionLimits> {
    Ok(SubscriptionLimits {
        rate_per_sec: unsigned_opt(row, "rate_per_sec")?,
        burst: unsigned_opt(row, "burst")?,
        quota_per_day: unsigned_opt(row, "quota_per_day")?,
    })
}

fn int(v: u64) -> i64 {
    // GatewaySettings::check and check_limits bound every value first.
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn check_client_id(client_id: &str) -> Result<()> {
    if client_id.is_empty()
        || client_id.len() > 128
        || !client_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(StoreError::Invalid(format!(
            "client_id {client_id:?} must be 1 to 128 characters of A-Z a-z 0-9 - _ ."
        )));
    }
    Ok(())
}

fn check_limits(l: &SubscriptionLimits) -> Result<()> {
    for v in [l.rate_per_sec, l.burst, l.quota_per_day]
        .into_iter()
        .flatten()
    {
        if i64::try_from(v).is_err() {
            return Err(StoreError::Invalid("a limit is too large".into()));
        }
    }
    Ok(())
}

fn cidrs_json(cidrs: &[IpNet]) -> Result<String> {
    serde_json::to_string(cidrs).map_err(|e| StoreError::Invalid(e.to_string()))
}

async fn load_gw(conn: &mut sqlx::AnyConnection, id: &ServiceId) -> Result<GatewayService> {
    let sql = format!("SELECT {GW_COLS} FROM gateway_services WHERE service_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id.to_string())
        .fetch_optional(conn)
        .await;
    gw_row(&found(row, "gateway service", id)?)
}

async fn load_app(conn: &mut sqlx::AnyConnection, client_id: &str) -> Result<GatewayApp> {
    let sql = format!("SELECT {APP_COLS} FROM gateway_apps WHERE client_id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(client_id.to_string())
        .fetch_optional(conn)
        .await;
    app_row(&found(row, "gateway application", client_id)?)
}

fn settings_detail(s: &GatewaySettings) -> serde_json::Value {
    json!({
        "backend_url": s.backend_url,
        "timeout_ms": s.timeout_ms,
        "rate_per_sec": s.rate_per_sec,
        "burst": s.burst,
        "quota_per_day": s.quota_per_day,
        "sign_requests": s.sign_requests,
        "verify_responses": s.verify_responses,
        "backend_tls": !s.backend_tls.is_empty(),
    })
}

#[async_trait]
impl GatewayStore for SqlStore {
    async fn register_gateway_service(
        &self,
        id: &ServiceId,
        description: Option<&str>,
        openapi: Option<&str>,
        settings: &GatewaySettings,
        actor: &Actor,
    ) -> Result<GatewayService> {
        settings.check()?;
        check_openapi(openapi)?;
        if let Some(d) = description {
            check_text("description", d)?;
        }
        let mut w = self.begin_write(true).await?;
        let at = w.at;
        let key = id.to_string();
        let in_catalogue = exists(w.conn(), SQL_SERVICE_EXISTS, &key).await?;
        if !in_catalogue {
            let provider = id.subsystem().to_string();
            if !exists(w.conn(), SQL_SUBSYSTEM_EXISTS, &provider).await? {
                return Err(StoreError::Invalid(format!(
                    "provider subsystem {provider} does not exist; add it before its service {id}"
                )));
            }
            let description = description.ok_or_else(|| {
                StoreError::Invalid(format!(
                    "service {id} is not in the catalogue yet: give its description"
                ))
            })?;
            sqlx::query(
                "INSERT INTO services (subsystem_id, id, description, openapi, deprecated_at, \
                 sunset_at, created_at) VALUES ($1, $2, $3, $4, NULL, NULL, $5)",
            )
            .bind(provider)
            .bind(key.clone())
            .bind(description.to_string())
            .bind(openapi.map(str::to_string))
            .bind(ts(at))
            .insert(w.conn(), "service", id)
            .await?;
        } else if description.is_some() || openapi.is_some() {
            let mut sets = Vec::new();
            if description.is_some() {
                sets.push("description = $2");
            }
            if openapi.is_some() {
                sets.push(if description.is_some() {
                    "openapi = $3"
                } else {
                    "openapi = $2"
                });
            }
            let sql = format!("UPDATE services SET {} WHERE id = $1", sets.join(", "));
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(key.clone());
            if let Some(d) = description {
                q = q.bind(d.to_string());
            }
            if let Some(o) = openapi {
                q = q.bind(o.to_string());
            }
            q.execute(w.conn()).await.map_err(db)?;
        }
        let t = &settings.backend_tls;
        let sql = format!(
            "INSERT INTO gateway_services ({GW_COLS}) \
             VALUES ($1, 'registered', $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $12)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(key.clone())
            .bind(settings.backend_url.clone())
            .bind(int(settings.timeout_ms))
            .bind(int(settings.rate_per_sec))
            .bind(int(settings.burst))
            .bind(int(settings.quota_per_day))
            .bind(i64::from(settings.sign_requests))
            .bind(i64::from(settings.verify_responses))
            .bind(t.ca_file.clone())
            .bind(t.client_cert_file.clone())
            .bind(t.client_key_file.clone())
            .bind(ts(at))
            .insert(w.conn(), "gateway service", id)
            .await?;
        let out = GatewayService {
            service: id.clone(),
            state: GatewayServiceState::Registered,
            settings: settings.clone(),
            created_at: at,
            updated_at: at,
        };
        let mut detail = settings_detail(settings);
        detail["added_to_catalogue"] = json!(!in_catalogue);
        w.finish(actor, "gateway.service.register", &key, detail)
            .await?;
        Ok(out)
    }

    async fn get_gateway_service(&self, id: &ServiceId) -> Result<GatewayService> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load_gw(&mut conn, id).await
    }

    async fn list_gateway_services(
        &self,
        provider: Option<&SubsystemId>,
    ) -> Result<Vec<GatewayService>> {
        let sql = format!(
            "SELECT {GW_COLS} FROM gateway_services WHERE $1 IS NULL OR service_id IN \
             (SELECT id FROM services WHERE subsystem_id = $1) ORDER BY service_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(provider.map(ToString::to_string))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(gw_row).collect()
    }

    async fn update_gateway_service(
        &self,
        id: &ServiceId,
        update: &GatewaySettingsUpdate,
        actor: &Actor,
    ) -> Result<GatewayService> {
        let mut w = self.begin_write(true).await?;
        let mut current = load_gw(w.conn(), id).await?;
        let settings = update.apply(&current.settings);
        settings.check()?;
        let t = &settings.backend_tls;
        sqlx::query(
            "UPDATE gateway_services SET backend_url = $2, timeout_ms = $3, rate_per_sec = $4, \
             burst = $5, quota_per_day = $6, sign_requests = $7, verify_responses = $8, \
             backend_ca_file = $9, backend_client_cert_file = $10, \
             backend_client_key_file = $11, updated_at = $12 WHERE service_id = $1",
        )
        .bind(id.to_string())
        .bind(settings.backend_url.clone())
        .bind(int(settings.timeout_ms))
        .bind(int(settings.rate_per_sec))
        .bind(int(settings.burst))
        .bind(int(settings.quota_per_day))
        .bind(i64::from(settings.sign_requests))
        .bind(i64::from(settings.verify_responses))
        .bind(t.ca_file.clone())
        .bind(t.client_cert_file.clone())
        .bind(t.client_key_file.clone())
        .bind(ts(w.at))
        .run(w.conn())
        .await?;
        current.settings = settings;
        current.updated_at = w.at;
        let detail = settings_detail(&current.settings);
        w.finish(actor, "gateway.service.update", &id.to_string(), detail)
            .await?;
        Ok(current)
    }

    async fn set_gateway_service_state(
        &self,
        id: &ServiceId,
        to: GatewayServiceState,
        actor: &Actor,
    ) -> Result<GatewayService> {
        let mut w = self.begin_write(true).await?;
        let mut current = load_gw(w.conn(), id).await?;
        if !current.state.can_become(to) {
            return Err(StoreError::InvalidTransition {
                what: format!("gateway service {id}"),
                from: current.state.to_string(),
                to: to.to_string(),
            });
        }
        sqlx::query(
            "UPDATE gateway_services SET state = $2, updated_at = $3 WHERE service_id = $1",
        )
        .bind(id.to_string())
        .bind(to.as_str().to_string())
        .bind(ts(w.at))
        .run(w.conn())
        .await?;
        let from = current.state;
        current.state = to;
        current.updated_at = w.at;
        w.finish(
            actor,
            "gateway.service.state",
            &id.to_string(),
            json!({ "from": from.as_str(), "to": to.as_str() }),
        )
        .await?;
        Ok(current)
    }

    async fn create_gateway_app(
        &self,
        client_id: &str,
        client: &SubsystemId,
        secret_hash: &str,
        allowed_cidrs: &[IpNet],
        actor: &Actor,
    ) -> Result<GatewayApp> {
        check_client_id(client_id)?;
        check_text("secret hash", secret_hash)?;
        let cidrs = normalise_cidrs(allowed_cidrs)?;
        let mut w = self.begin_write(true).await?;
        if !exists(w.conn(), SQL_SUBSYSTEM_EXISTS, client).await? {
            return Err(StoreError::Invalid(format!(
                "client subsystem {client} does not exist"
            )));
        }
        let sql = format!(
            "INSERT INTO gateway_apps ({APP_COLS}) \
             VALUES ($1, $2, $3, 1, $4, $5, $5, NULL, NULL, NULL, NULL)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(client_id.to_string())
            .bind(client.to_string())
            .bind(secret_hash.to_string())
            .bind(cidrs_json(&cidrs)?)
            .bind(ts(w.at))
            .insert(w.conn(), "gateway application", client_id)
            .await?;
        let app = GatewayApp {
            client_id: client_id.to_string(),
            client: client.clone(),
            secret_hash: secret_hash.to_string(),
            generation: 1,
            allowed_cidrs: cidrs,
            created_at: w.at,
            rotated_at: w.at,
            revoked_at: None,
            certificate: None,
        };
        w.finish(
            actor,
            "gateway.app.create",
            client_id,
            json!({ "client": client.to_string(), "allowed_cidrs": app.allowed_cidrs }),
        )
        .await?;
        Ok(app)
    }

    async fn create_gateway_cert_app(
        &self,
        client_id: &str,
        client: &SubsystemId,
        certificate: &ClientCertificate,
        allowed_cidrs: &[IpNet],
        actor: &Actor,
    ) -> Result<GatewayApp> {
        check_client_id(client_id)?;
        if !is_sha256_hex(&certificate.sha256) {
            return Err(StoreError::Invalid(
                "the certificate fingerprint must be 64 lowercase hex digits (SHA-256)".into(),
            ));
        }
        check_text("certificate subject", &certificate.subject)?;
        let cidrs = normalise_cidrs(allowed_cidrs)?;
        let mut w = self.begin_write(true).await?;
        if !exists(w.conn(), SQL_SUBSYSTEM_EXISTS, client).await? {
            return Err(StoreError::Invalid(format!(
                "client subsystem {client} does not exist"
            )));
        }
        let sql = format!(
            "INSERT INTO gateway_apps ({APP_COLS}) \
             VALUES ($1, $2, '', 1, $3, $4, $4, NULL, $5, $6, $7)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(client_id.to_string())
            .bind(client.to_string())
            .bind(cidrs_json(&cidrs)?)
            .bind(ts(w.at))
            .bind(certificate.sha256.clone())
            .bind(certificate.subject.clone())
            .bind(ts(certificate.not_after))
            .insert(w.conn(), "client certificate", &certificate.sha256)
            .await?;
        let app = GatewayApp {
            client_id: client_id.to_string(),
            client: client.clone(),
            secret_hash: String::new(),
            generation: 1,
            allowed_cidrs: cidrs,
            created_at: w.at,
            rotated_at: w.at,
            revoked_at: None,
            certificate: Some(certificate.clone()),
        };
        w.finish(
            actor,
            "gateway.app.create",
            client_id,
            json!({
                "client": client.to_string(),
                "allowed_cidrs": app.allowed_cidrs,
                "certificate_sha256": certificate.sha256,
            }),
        )
        .await?;
        Ok(app)
    }

    async fn get_gateway_app(&self, client_id: &str) -> Result<GatewayApp> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load_app(&mut conn, client_id).await
    }

    async fn list_gateway_apps(&self, client: Option<&SubsystemId>) -> Result<Vec<GatewayApp>> {
        let sql = format!(
            "SELECT {APP_COLS} FROM gateway_apps WHERE $1 IS NULL OR subsystem_id = $1 \
             ORDER BY created_at, client_id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(client.map(ToString::to_string))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(app_row).collect()
    }

    async fn rotate_gateway_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        actor: &Actor,
    ) -> Result<GatewayApp> {
        check_text("secret hash", secret_hash)?;
        let mut w = self.begin_write(true).await?;
        let mut app = load_app(w.conn(), client_id).await?;
        if app.certificate.is_some() {
            return Err(StoreError::Invalid(format!(
                "{client_id} is a client certificate: register the new certificate, then revoke \
                 {client_id}"
            )));
        }
        if app.revoked_at.is_some() {
            return Err(StoreError::InvalidTransition {
                what: format!("gateway application {client_id}"),
                from: "revoked".into(),
                to: "rotated".into(),
            });
        }
        sqlx::query(
            "UPDATE gateway_apps SET secret_hash = $2, generation = generation + 1, \
             rotated_at = $3 WHERE client_id = $1",
        )
        .bind(client_id.to_string())
        .bind(secret_hash.to_string())
        .bind(ts(w.at))
        .run(w.conn())
        .await?;
        app.secret_hash = secret_hash.to_string();
        app.generation += 1;
        app.rotated_at = w.at;
        w.finish(
            actor,
            "gateway.app.rotate",
            client_id,
            json!({ "generation": app.generation }),
        )
        .await?;
        Ok(app)
    }

    async fn set_gateway_app_cidrs(
        &self,
        client_id: &str,
        allowed_cidrs: &[IpNet],
        actor: &Actor,
    ) -> Result<GatewayApp> {
        let cidrs = normalise_cidrs(allowed_cidrs)?;
        let mut w = self.begin_write(true).await?;
        let mut app = load_app(w.conn(), client_id).await?;
        sqlx::query("UPDATE gateway_apps SET allowed_cidrs = $2 WHERE client_id = $1")
            .bind(client_id.to_string())
            .bind(cidrs_json(&cidrs)?)
            .run(w.conn())
            .await?;
        app.allowed_cidrs = cidrs;
        w.finish(
            actor,
            "gateway.app.ranges",
            client_id,
            json!({ "allowed_cidrs": app.allowed_cidrs }),
        )
        .await?;
        Ok(app)
    }

    async fn revoke_gateway_app(&self, client_id: &str, actor: &Actor) -> Result<GatewayApp> {
        let mut w = self.begin_write(true).await?;
        let mut app = load_app(w.conn(), client_id).await?;
        if app.revoked_at.is_some() {
            return Err(StoreError::InvalidTransition {
                what: format!("gateway application {client_id}"),
                from: "revoked".into(),
                to: "revoked".into(),
            });
        }
        sqlx::query("UPDATE gateway_apps SET revoked_at = $2 WHERE client_id = $1")
            .bind(client_id.to_string())
            .bind(ts(w.at))
            .run(w.conn())
            .await?;
        app.revoked_at = Some(w.at);
        w.finish(actor, "gateway.app.revoke", client_id, json!({}))
            .await?;
        Ok(app)
    }

    async fn set_subscription_limits(
        &self,
        subscription: Uuid,
        limits: &SubscriptionLimits,
        actor: &Actor,
    ) -> Result<SubscriptionLimits> {
        check_limits(limits)?;
        let mut w = self.begin_write(true).await?;
        if !exists(
            w.conn(),
            "SELECT 1 FROM subscriptions WHERE id = $1",
            subscription,
        )
        .await?
        {
            return Err(super::not_found("subscription", subscription));
        }
        sqlx::query("DELETE FROM gateway_limits WHERE subscription_id = $1")
            .bind(subscription.to_string())
            .run(w.conn())
            .await?;
        sqlx::query(
            "INSERT INTO gateway_limits (subscription_id, rate_per_sec, burst, quota_per_day) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(subscription.to_string())
        .bind(limits.rate_per_sec.map(int))
        .bind(limits.burst.map(int))
        .bind(limits.quota_per_day.map(int))
        .run(w.conn())
        .await?;
        w.finish(
            actor,
            "gateway.subscription.limits",
            &subscription.to_string(),
            json!(limits),
        )
        .await?;
        Ok(*limits)
    }

    async fn subscription_limits(&self, subscription: Uuid) -> Result<SubscriptionLimits> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        if !exists(
            &mut conn,
            "SELECT 1 FROM subscriptions WHERE id = $1",
            subscription,
        )
        .await?
        {
            return Err(super::not_found("subscription", subscription));
        }
        let row = sqlx::query(
            "SELECT rate_per_sec, burst, quota_per_day FROM gateway_limits \
             WHERE subscription_id = $1",
        )
        .bind(subscription.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?;
        row.as_ref()
            .map(limits_row)
            .transpose()
            .map(Option::unwrap_or_default)
    }

    async fn gateway_registry_version(&self) -> Result<i64> {
        let v: i64 = sqlx::query_scalar("SELECT version FROM registry_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        Ok(v)
    }

    async fn gateway_snapshot(&self) -> Result<GatewaySnapshot> {
        let mut tx = self.read_tx().await?;
        let version: i64 = sqlx::query_scalar("SELECT version FROM registry_state WHERE id = 1")
            .fetch_one(&mut *tx)
            .await
            .map_err(db)?;
        let sql =
            "SELECT g.service_id, g.state, g.backend_url, g.timeout_ms, g.rate_per_sec, g.burst, \
             g.quota_per_day, g.sign_requests, g.verify_responses, g.backend_ca_file, \
             g.backend_client_cert_file, g.backend_client_key_file, g.created_at, g.updated_at, \
             s.description AS s_description, s.openapi AS s_openapi, \
             s.deprecated_at AS s_deprecated_at, s.sunset_at AS s_sunset_at, \
             s.created_at AS s_created_at \
             FROM gateway_services g JOIN services s ON s.id = g.service_id ORDER BY g.service_id";
        let rows = sqlx::query(sql).fetch_all(&mut *tx).await.map_err(db)?;
        let services = rows
            .iter()
            .map(|row| {
                let gateway = gw_row(row)?;
                Ok(RoutedService {
                    service: Service {
                        id: gateway.service.clone(),
                        description: col(row, "s_description")?,
                        openapi: col(row, "s_openapi")?,
                        deprecated_at: time_opt(row, "s_deprecated_at")?,
                        sunset_at: time_opt(row, "s_sunset_at")?,
                        created_at: time(row, "s_created_at")?,
                    },
                    gateway,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let sql = format!(
            "SELECT {APP_COLS} FROM gateway_apps WHERE revoked_at IS NULL ORDER BY client_id"
        );
        let apps = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?
            .iter()
            .map(app_row)
            .collect::<Result<Vec<_>>>()?;
        let rows = sqlx::query(
            "SELECT s.id, s.service_id, s.client_id, l.rate_per_sec, l.burst, l.quota_per_day \
             FROM subscriptions s LEFT JOIN gateway_limits l ON l.subscription_id = s.id \
             WHERE s.state = $1 ORDER BY s.id",
        )
        .bind(SubscriptionState::Approved.as_str().to_string())
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let subscriptions = rows
            .iter()
            .map(|row| {
                Ok(GatewaySubscription {
                    id: parsed(row, "id")?,
                    service: parsed(row, "service_id")?,
                    client: parsed(row, "client_id")?,
                    limits: limits_row(row)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await.map_err(db)?;
        Ok(GatewaySnapshot {
            registry_version: version,
            services,
            apps,
            subscriptions,
        })
    }
}
