//! The SQL backend: one implementation over [`sqlx::AnyPool`] with SQL that
//! runs unchanged on SQLite and PostgreSQL (`$n` placeholders, TEXT and
//! BIGINT columns, times as fixed-width RFC 3339 text).
//!
//! This file holds what every write shares (the audited, versioned
//! [`Write`] and the row and statement helpers) and the [`RegistryStore`]
//! impl, which forwards to one file per aggregate: `members.rs` (members
//! and their subsystems), `nodes.rs`, `registrations.rs`, `services.rs`
//! (services, access rights and groups), `subscriptions.rs`,
//! `credentials.rs`, `audit.rs` (audit trail and registry version) and
//! `globalconf.rs` (snapshot and published documents); `rows.rs` maps rows
//! to the model. `gateway.rs` and `monitoring.rs` implement
//! [`super::gateway::GatewayStore`] and [`super::MonitoringStore`];
//! `open.rs` opens the database and migrates it.

use ndxp_core::dburl::Backend;
use std::fmt::Display;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use ndxp_core::{MemberId, NodeName, ServiceId, SubsystemId};
use sqlx::any::{AnyArguments, AnyQueryResult, AnyRow};
use sqlx::error::ErrorKind;
use sqlx::{Any, AnyPool, Row, SqlSafeStr, Transaction};
use uuid::Uuid;

use super::{RegistryStore, Result, StoreError, SubscriptionFilter};
use crate::model::{
    AccessRight, Actor, AuditEntry, Credential, CredentialKind, Grantee, Group, Member,
    NewRegistration, Node, RegistrationRequest, RegistrationState, RegistrySnapshot, Service,
    ServiceUpdate, StoredConf, Subscription, SubscriptionState, Subsystem,
};

mod audit;
mod credentials;
mod gateway;
mod globalconf;
mod members;
mod monitoring;
mod nodes;
mod open;
mod registrations;
mod rows;
mod services;
mod subscriptions;
mod transaction;

pub use open::{StoreOptions, SCHEMA_VERSION};
pub use transaction::SqlTransaction;
use transaction::{Shared, Slot};

/// The registry store on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
    /// Set on the store of a [`SqlTransaction`]: its writes join that
    /// transaction instead of committing one by one.
    shared: Option<Shared>,
}

impl SqlStore {
    /// Starts a write: locks and bumps the registry state row first, so
    /// writes are serialised and audit ids commit in order. On the store
    /// of a [`SqlTransaction`] the write runs in that transaction.
    async fn begin_write(&self, bump_version: bool) -> Result<Write> {
        let (mut tx, slot) = match &self.shared {
            None => (self.begin_immediate().await?, None),
            Some(shared) => {
                let (tx, slot) = shared.take().await?;
                (tx, Some(slot))
            }
        };
        let sql = if bump_version {
            "UPDATE registry_state SET version = version + 1, audit_seq = audit_seq + 1 \
             WHERE id = 1 RETURNING version, audit_seq"
        } else {
            "UPDATE registry_state SET audit_seq = audit_seq + 1 \
             WHERE id = 1 RETURNING version, audit_seq"
        };
        let row = sqlx::query(sql)
            .fetch_optional(&mut *tx)
            .await
            .map_err(StoreError::Database)?
            .ok_or_else(|| corrupt("registry_state", "the state row is missing"))?;
        Ok(Write {
            tx,
            slot,
            audit_id: col(&row, "audit_seq")?,
            at: Utc::now(),
        })
    }
}

/// An open write transaction; dropped without [`Write::finish`] it rolls
/// back (inside a [`SqlTransaction`]: the whole of it, see `transaction.rs`).
struct Write {
    tx: Transaction<'static, Any>,
    /// Inside a [`SqlTransaction`]: where `tx` goes back when the write
    /// is finished, instead of committing.
    slot: Option<Slot>,
    audit_id: i64,
    at: DateTime<Utc>,
}

impl Write {
    fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Appends the audit entry and commits (inside a [`SqlTransaction`]:
    /// hands the transaction back to it, to commit with the others).
    async fn finish(
        mut self,
        actor: &Actor,
        action: &str,
        target: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, at, actor, action, target, detail) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(self.audit_id)
        .bind(ts(self.at))
        .bind(actor.as_str().to_string())
        .bind(action.to_string())
        .bind(target.to_string())
        .bind(detail.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(StoreError::Database)?;
        match self.slot {
            None => self.tx.commit().await.map_err(StoreError::Database),
            Some(slot) => {
                slot.put_back(self.tx);
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------- helpers

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

fn ts_opt(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(ts)
}

fn corrupt(what: impl Into<String>, detail: impl Display) -> StoreError {
    StoreError::Corrupt {
        what: what.into(),
        detail: detail.to_string(),
    }
}

fn col<T>(row: &AnyRow, name: &str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(name).map_err(|e| corrupt(name, e))
}

fn parsed<T>(row: &AnyRow, name: &str) -> Result<T>
where
    T: FromStr,
    T::Err: Display,
{
    let s: String = col(row, name)?;
    s.parse()
        .map_err(|e| corrupt(name, format_args!("{s:?}: {e}")))
}

fn parsed_opt<T>(row: &AnyRow, name: &str) -> Result<Option<T>>
where
    T: FromStr,
    T::Err: Display,
{
    let s: Option<String> = col(row, name)?;
    s.map(|s| {
        s.parse()
            .map_err(|e| corrupt(name, format_args!("{s:?}: {e}")))
    })
    .transpose()
}

fn time(row: &AnyRow, name: &str) -> Result<DateTime<Utc>> {
    let s: String = col(row, name)?;
    parse_time(name, &s)
}

fn parse_time(name: &str, s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| corrupt(name, format_args!("{s:?}: {e}")))
}

fn time_opt(row: &AnyRow, name: &str) -> Result<Option<DateTime<Utc>>> {
    let s: Option<String> = col(row, name)?;
    s.map(|s| parse_time(name, &s)).transpose()
}

fn db(e: sqlx::Error) -> StoreError {
    StoreError::Database(e)
}

fn not_found(what: &'static str, id: impl Display) -> StoreError {
    StoreError::NotFound {
        what,
        id: id.to_string(),
    }
}

/// The fetched row; `NotFound` when there is none.
fn found(
    row: std::result::Result<Option<AnyRow>, sqlx::Error>,
    what: &'static str,
    id: impl Display,
) -> Result<AnyRow> {
    row.map_err(db)?.ok_or_else(|| not_found(what, id))
}

/// Every fetched row, mapped with `map`.
fn all_as<T>(
    rows: std::result::Result<Vec<AnyRow>, sqlx::Error>,
    map: fn(&AnyRow) -> Result<T>,
) -> Result<Vec<T>> {
    rows.map_err(db)?.iter().map(map).collect()
}

/// The fetched row, if any, mapped with `map`.
fn optional_as<T>(
    row: std::result::Result<Option<AnyRow>, sqlx::Error>,
    map: fn(&AnyRow) -> Result<T>,
) -> Result<Option<T>> {
    row.map_err(db)?.as_ref().map(map).transpose()
}

/// Checks that a DELETE removed something; `NotFound` otherwise.
fn deleted(
    result: std::result::Result<sqlx::any::AnyQueryResult, sqlx::Error>,
    what: &'static str,
    id: impl Display,
) -> Result<()> {
    if result.map_err(db)?.rows_affected() == 0 {
        return Err(not_found(what, id));
    }
    Ok(())
}

/// Maps a constraint violation of an insert to a typed error.
fn constraint(what: &'static str, id: impl Display) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |e| match e.as_database_error().map(|d| d.kind()) {
        Some(ErrorKind::UniqueViolation) => StoreError::AlreadyExists {
            what,
            id: id.to_string(),
        },
        Some(ErrorKind::ForeignKeyViolation) => StoreError::Invalid(format!(
            "{what} {id} refers to something that does not exist"
        )),
        _ => StoreError::Database(e),
    }
}

/// A statement run with the store's error mapping.
trait Run {
    /// Executes it on `conn`; a database error is [`StoreError::Database`].
    async fn run(self, conn: &mut sqlx::AnyConnection) -> Result<AnyQueryResult>;
    /// Executes an insert on `conn`; a constraint violation is mapped by
    /// [`constraint`] (`what` `id` already exists, or refers to nothing).
    async fn insert(
        self,
        conn: &mut sqlx::AnyConnection,
        what: &'static str,
        id: impl Display,
    ) -> Result<AnyQueryResult>;
    /// Executes a DELETE on `conn`; `NotFound` (`what` `id`) when it
    /// removed nothing.
    async fn delete(
        self,
        conn: &mut sqlx::AnyConnection,
        what: &'static str,
        id: impl Display,
    ) -> Result<()>;
}

impl Run for sqlx::query::Query<'_, Any, AnyArguments> {
    async fn run(self, conn: &mut sqlx::AnyConnection) -> Result<AnyQueryResult> {
        self.execute(conn).await.map_err(db)
    }

    async fn insert(
        self,
        conn: &mut sqlx::AnyConnection,
        what: &'static str,
        id: impl Display,
    ) -> Result<AnyQueryResult> {
        self.execute(conn).await.map_err(constraint(what, id))
    }

    async fn delete(
        self,
        conn: &mut sqlx::AnyConnection,
        what: &'static str,
        id: impl Display,
    ) -> Result<()> {
        deleted(self.execute(conn).await, what, id)
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn check_https_url(address: &str) -> Result<()> {
    let url = reqwest::Url::parse(address)
        .map_err(|e| StoreError::Invalid(format!("node address {address:?} is not a URL: {e}")))?;
    if url.scheme() != "https" || url.host_str().is_none_or(str::is_empty) {
        return Err(StoreError::Invalid(format!(
            "node address {address:?} must be an https:// URL with a host"
        )));
    }
    Ok(())
}

fn check_openapi(doc: Option<&str>) -> Result<()> {
    if let Some(doc) = doc {
        let v: serde_json::Value = serde_json::from_str(doc).map_err(|e| {
            StoreError::Invalid(format!("the OpenAPI document is not valid JSON: {e}"))
        })?;
        if !v.is_object() {
            return Err(StoreError::Invalid(
                "the OpenAPI document must be a JSON object".into(),
            ));
        }
    }
    Ok(())
}

fn check_group_code(code: &str) -> Result<()> {
    if code.is_empty() {
        return Err(StoreError::Invalid("group code is empty".into()));
    }
    ndxp_core::id::check_segment("group code", code).map_err(|e| StoreError::Invalid(e.to_string()))
}

fn check_text(what: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() {
        return Err(StoreError::Invalid(format!("{what} must not be empty")));
    }
    Ok(())
}

async fn exists(
    conn: &mut sqlx::AnyConnection,
    sql: &'static str,
    key: impl Display,
) -> Result<bool> {
    Ok(sqlx::query(sql)
        .bind(key.to_string())
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .is_some())
}

/// The one row `sql` (with `$1` = `key`) finds; `NotFound` (as `what`)
/// when there is none.
async fn row_by_key<'c, E>(
    exec: E,
    sql: impl SqlSafeStr,
    key: impl Display,
    what: &'static str,
) -> Result<AnyRow>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    let row = sqlx::query(sql)
        .bind(key.to_string())
        .fetch_optional(exec)
        .await;
    found(row, what, key)
}

/// The one row `sql` (with `$1` = `key`) finds, mapped with `map`;
/// `NotFound` (as `what`) when there is none.
async fn one_by_key<'c, E, T>(
    exec: E,
    sql: impl SqlSafeStr,
    key: impl Display,
    what: &'static str,
    map: fn(&AnyRow) -> Result<T>,
) -> Result<T>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    map(&row_by_key(exec, sql, key, what).await?)
}

/// Every row `sql` (without parameters) finds.
async fn fetch_rows<'c, E>(exec: E, sql: impl SqlSafeStr) -> Result<Vec<AnyRow>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    sqlx::query(sql).fetch_all(exec).await.map_err(db)
}

/// `NotFound` (as `what`) unless `sql` finds `key`.
async fn must_exist(
    conn: &mut sqlx::AnyConnection,
    sql: &'static str,
    key: impl Display,
    what: &'static str,
) -> Result<()> {
    if exists(conn, sql, &key).await? {
        Ok(())
    } else {
        Err(not_found(what, key))
    }
}

const SQL_MEMBER_EXISTS: &str = "SELECT 1 FROM members WHERE id = $1";
const SQL_SUBSYSTEM_EXISTS: &str = "SELECT 1 FROM subsystems WHERE id = $1";
const SQL_SERVICE_EXISTS: &str = "SELECT 1 FROM services WHERE id = $1";
const SQL_GROUP_EXISTS: &str = "SELECT 1 FROM subsystem_groups WHERE code = $1";

async fn count(conn: &mut sqlx::AnyConnection, sql: &'static str, key: &str) -> Result<i64> {
    let row = sqlx::query(sql)
        .bind(key.to_string())
        .fetch_one(conn)
        .await
        .map_err(db)?;
    col(&row, "n")
}

// ---------------------------------------------------------------- the trait

/// Implements [`RegistryStore`] by forwarding each method to the inherent
/// method of the same name, written in the file of its aggregate
/// (`members.rs`, `nodes.rs`, ...). One line per method: its name,
/// parameters after `&self`, and what its `Result` holds. The inherent
/// method must exist: without it the call would resolve to the trait
/// method itself (the store suite calls every method, so it would not go
/// unnoticed).
macro_rules! forward_to_aggregates {
    ($($name:ident($($arg:ident: $ty:ty),* $(,)?) -> $ret:ty;)*) => {
        #[async_trait]
        impl RegistryStore for SqlStore {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret> {
                    SqlStore::$name(self, $($arg),*).await
                }
            )*
        }
    };
}

forward_to_aggregates! {
    add_member(id: &MemberId, name: &str, actor: &Actor) -> Member;
    rename_member(id: &MemberId, name: &str, actor: &Actor) -> Member;
    get_member(id: &MemberId) -> Member;
    list_members() -> Vec<Member>;
    remove_member(id: &MemberId, actor: &Actor) -> ();
    add_subsystem(id: &SubsystemId, actor: &Actor) -> Subsystem;
    get_subsystem(id: &SubsystemId) -> Subsystem;
    list_subsystems(member: Option<&MemberId>) -> Vec<Subsystem>;
    remove_subsystem(id: &SubsystemId, actor: &Actor) -> ();
    list_nodes(member: Option<&MemberId>) -> Vec<Node>;
    get_node(member: &MemberId, name: &NodeName) -> Node;
    remove_node_certificate(
        member: &MemberId, name: &NodeName, auth_cert_sha256: &str, actor: &Actor,
    ) -> Node;
    remove_node(member: &MemberId, name: &NodeName, actor: &Actor) -> ();
    submit_registration(req: &NewRegistration, actor: &Actor) -> RegistrationRequest;
    list_registrations(state: Option<RegistrationState>) -> Vec<RegistrationRequest>;
    get_registration(id: Uuid) -> RegistrationRequest;
    approve_registration(id: Uuid, actor: &Actor) -> Node;
    reject_registration(id: Uuid, reason: &str, actor: &Actor) -> RegistrationRequest;
    add_service(id: &ServiceId, description: &str, openapi: Option<&str>, actor: &Actor) -> Service;
    get_service(id: &ServiceId) -> Service;
    list_services(provider: Option<&SubsystemId>) -> Vec<Service>;
    update_service(id: &ServiceId, update: &ServiceUpdate, actor: &Actor) -> Service;
    remove_service(id: &ServiceId, actor: &Actor) -> ();
    add_group(code: &str, description: &str, actor: &Actor) -> Group;
    describe_group(code: &str, description: &str, actor: &Actor) -> Group;
    get_group(code: &str) -> Group;
    list_groups() -> Vec<Group>;
    remove_group(code: &str, actor: &Actor) -> ();
    add_group_member(code: &str, subsystem: &SubsystemId, actor: &Actor) -> Group;
    remove_group_member(code: &str, subsystem: &SubsystemId, actor: &Actor) -> Group;
    grant_access(service: &ServiceId, grantee: &Grantee, actor: &Actor) -> AccessRight;
    revoke_access(service: &ServiceId, grantee: &Grantee, actor: &Actor) -> ();
    list_access_rights(service: Option<&ServiceId>) -> Vec<AccessRight>;
    request_subscription(
        service: &ServiceId, client: &SubsystemId, note: Option<&str>, actor: &Actor,
    ) -> Subscription;
    get_subscription(id: Uuid) -> Subscription;
    list_subscriptions(filter: &SubscriptionFilter) -> Vec<Subscription>;
    transition_subscription(
        id: Uuid, to: SubscriptionState, note: Option<&str>, actor: &Actor,
    ) -> Subscription;
    create_credential(
        kind: &CredentialKind, name: &str, token_sha256: &str, actor: &Actor,
    ) -> Credential;
    find_active_credential(token_sha256: &str) -> Option<Credential>;
    list_credentials() -> Vec<Credential>;
    revoke_credential(id: Uuid, actor: &Actor) -> Credential;
    list_audit(after_id: i64, limit: u32) -> Vec<AuditEntry>;
    registry_version() -> i64;
    snapshot() -> RegistrySnapshot;
    store_conf(conf: &StoredConf, actor: &Actor) -> ();
    latest_conf() -> Option<StoredConf>;
    conf_by_version(version: i64) -> Option<StoredConf>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_fixed_width_and_round_trip() {
        let t = DateTime::from_timestamp(1_700_000_000, 5).unwrap_or_default();
        let s = ts(t);
        assert_eq!(s, "2023-11-14T22:13:20.000000005Z");
        assert_eq!(parse_time("t", &s).ok(), Some(t));
    }
}
