//! The SQL backend: one implementation over [`sqlx::AnyPool`] with SQL that
//! runs unchanged on SQLite and PostgreSQL (`$n` placeholders, TEXT and
//! BIGINT columns, times as fixed-width RFC 3339 text).

use ndxp_core::dburl::Backend;
use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use ndxp_core::{MemberId, NodeName, ServiceId, SubsystemId};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::error::ErrorKind;
use sqlx::{Any, AnyPool, Row, SqlSafeStr, Transaction};
use uuid::Uuid;

use super::{RegistryStore, Result, StoreError, SubscriptionFilter};
use crate::model::{
    AccessRight, Actor, AuditEntry, Credential, CredentialKind, Grantee, Group, Member,
    MemberEntry, NewRegistration, Node, NodeCertificate, RegistrationKind, RegistrationRequest,
    RegistrationState, RegistrySnapshot, Service, ServiceUpdate, StoredConf, Subscription,
    SubscriptionEvent, SubscriptionState, Subsystem,
};

pub mod gateway;
mod monitoring;
mod open;

pub use open::StoreOptions;

/// The registry store on SQLite or PostgreSQL.
#[derive(Debug, Clone)]
pub struct SqlStore {
    pool: AnyPool,
    backend: Backend,
}

impl SqlStore {
    /// Starts a write: locks and bumps the registry state row first, so
    /// writes are serialised and audit ids commit in order.
    async fn begin_write(&self, bump_version: bool) -> Result<Write> {
        let mut tx = self.begin_immediate().await?;
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
            audit_id: col(&row, "audit_seq")?,
            at: Utc::now(),
        })
    }
}

/// An open write transaction; dropped without [`Write::finish`] it rolls back.
struct Write {
    tx: Transaction<'static, Any>,
    audit_id: i64,
    at: DateTime<Utc>,
}

impl Write {
    fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// Appends the audit entry and commits.
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
        self.tx.commit().await.map_err(StoreError::Database)
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

// ---------------------------------------------------------------- row mapping

fn member_row(row: &AnyRow) -> Result<Member> {
    Ok(Member {
        id: parsed(row, "id")?,
        name: col(row, "name")?,
        created_at: time(row, "created_at")?,
    })
}

fn subsystem_row(row: &AnyRow) -> Result<Subsystem> {
    Ok(Subsystem {
        id: parsed(row, "id")?,
        created_at: time(row, "created_at")?,
    })
}

const NODE_COLS: &str = "member_id, name, address, auth_cert_pem, auth_cert_sha256, created_at";

fn node_row(row: &AnyRow) -> Result<Node> {
    Ok(Node {
        member: parsed(row, "member_id")?,
        name: parsed(row, "name")?,
        address: col(row, "address")?,
        auth_cert_pem: col(row, "auth_cert_pem")?,
        auth_cert_sha256: col(row, "auth_cert_sha256")?,
        created_at: time(row, "created_at")?,
        auth_certs: Vec::new(),
    })
}

/// The authentication certificates of one node, of one member's nodes
/// (`name` None) or of every node (both None), ordered by node, then
/// oldest first.
async fn node_cert_rows<'c, E>(
    exec: E,
    member: Option<&MemberId>,
    name: Option<&NodeName>,
) -> Result<Vec<AnyRow>>
where
    E: sqlx::Executor<'c, Database = Any>,
{
    sqlx::query(
        "SELECT member_id, node_name, auth_cert_pem, auth_cert_sha256, added_at \
         FROM node_certificates WHERE ($1 IS NULL OR member_id = $1) \
         AND ($2 IS NULL OR node_name = $2) \
         ORDER BY member_id, node_name, added_at, auth_cert_sha256",
    )
    .bind(member.map(|m| m.to_string()))
    .bind(name.map(|n| n.to_string()))
    .fetch_all(exec)
    .await
    .map_err(db)
}

/// Node rows with their certificates from [`node_cert_rows`]. A node
/// without any certificate row is corrupt data.
fn nodes_with_certs(rows: &[AnyRow], cert_rows: &[AnyRow]) -> Result<Vec<Node>> {
    let mut certs: HashMap<(String, String), Vec<NodeCertificate>> = HashMap::new();
    for row in cert_rows {
        certs
            .entry((col(row, "member_id")?, col(row, "node_name")?))
            .or_default()
            .push(NodeCertificate {
                auth_cert_pem: col(row, "auth_cert_pem")?,
                auth_cert_sha256: col(row, "auth_cert_sha256")?,
                added_at: time(row, "added_at")?,
            });
    }
    rows.iter()
        .map(|row| {
            let mut node = node_row(row)?;
            node.auth_certs = certs
                .remove(&(node.member.to_string(), node.name.to_string()))
                .ok_or_else(|| {
                    corrupt(
                        "node_certificates",
                        format_args!("node {}/{} has no certificate", node.member, node.name),
                    )
                })?;
            Ok(node)
        })
        .collect()
}

/// One node with its certificates, inside a write.
async fn load_node(
    conn: &mut sqlx::AnyConnection,
    member: &MemberId,
    name: &NodeName,
) -> Result<Node> {
    let sql = format!("SELECT {NODE_COLS} FROM nodes WHERE member_id = $1 AND name = $2");
    let row = found(
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(member.to_string())
            .bind(name.to_string())
            .fetch_optional(&mut *conn)
            .await,
        "node",
        format!("{member}/{name}"),
    )?;
    let certs = node_cert_rows(&mut *conn, Some(member), Some(name)).await?;
    let mut nodes = nodes_with_certs(std::slice::from_ref(&row), &certs)?;
    nodes
        .pop()
        .ok_or_else(|| not_found("node", format!("{member}/{name}")))
}

/// Adds an authentication certificate to an existing node and makes it
/// the node's newest (`nodes.auth_cert_*`), inside a write.
async fn insert_node_cert(
    conn: &mut sqlx::AnyConnection,
    member: &MemberId,
    name: &NodeName,
    pem: &str,
    sha256: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO node_certificates \
         (member_id, node_name, auth_cert_pem, auth_cert_sha256, added_at) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(member.to_string())
    .bind(name.to_string())
    .bind(pem.to_string())
    .bind(sha256.to_string())
    .bind(ts(at))
    .execute(&mut *conn)
    .await
    .map_err(constraint("node with authentication certificate", sha256))?;
    set_newest_cert(conn, member, name, pem, sha256).await
}

/// Points `nodes.auth_cert_*` at one of the node's certificates.
async fn set_newest_cert(
    conn: &mut sqlx::AnyConnection,
    member: &MemberId,
    name: &NodeName,
    pem: &str,
    sha256: &str,
) -> Result<()> {
    sqlx::query(
        "UPDATE nodes SET auth_cert_pem = $3, auth_cert_sha256 = $4 \
         WHERE member_id = $1 AND name = $2",
    )
    .bind(member.to_string())
    .bind(name.to_string())
    .bind(pem.to_string())
    .bind(sha256.to_string())
    .execute(&mut *conn)
    .await
    .map_err(constraint("node with authentication certificate", sha256))?;
    Ok(())
}

const SERVICE_COLS: &str = "id, description, openapi, deprecated_at, sunset_at, created_at";

fn service_row(row: &AnyRow) -> Result<Service> {
    Ok(Service {
        id: parsed(row, "id")?,
        description: col(row, "description")?,
        openapi: col(row, "openapi")?,
        deprecated_at: time_opt(row, "deprecated_at")?,
        sunset_at: time_opt(row, "sunset_at")?,
        created_at: time(row, "created_at")?,
    })
}

fn right_row(row: &AnyRow) -> Result<AccessRight> {
    let sub: Option<SubsystemId> = parsed_opt(row, "grantee_subsystem")?;
    let group: Option<String> = col(row, "grantee_group")?;
    let grantee = match (sub, group) {
        (Some(s), None) => Grantee::Subsystem(s),
        (None, Some(g)) => Grantee::Group(g),
        _ => {
            return Err(corrupt(
                "access_rights.grantee",
                "exactly one of subsystem and group must be set",
            ))
        }
    };
    Ok(AccessRight {
        service: parsed(row, "service_id")?,
        grantee,
        granted_at: time(row, "granted_at")?,
    })
}

const REG_COLS: &str = "id, member_id, node_name, address, auth_cert_pem, auth_cert_sha256, \
     signed_request, state, submitted_at, decided_at, decided_by, reason, kind";

fn registration_row(row: &AnyRow) -> Result<RegistrationRequest> {
    Ok(RegistrationRequest {
        id: parsed(row, "id")?,
        member: parsed(row, "member_id")?,
        node: parsed(row, "node_name")?,
        address: col(row, "address")?,
        auth_cert_pem: col(row, "auth_cert_pem")?,
        auth_cert_sha256: col(row, "auth_cert_sha256")?,
        signed_request: col(row, "signed_request")?,
        kind: parsed(row, "kind")?,
        state: parsed(row, "state")?,
        submitted_at: time(row, "submitted_at")?,
        decided_at: time_opt(row, "decided_at")?,
        decided_by: col(row, "decided_by")?,
        reason: col(row, "reason")?,
    })
}

const CRED_COLS: &str = "id, kind, member_id, name, token_sha256, created_at, revoked_at";

fn credential_row(row: &AnyRow) -> Result<Credential> {
    let kind: String = col(row, "kind")?;
    let member: Option<MemberId> = parsed_opt(row, "member_id")?;
    let kind = match (kind.as_str(), member) {
        ("operator", None) => CredentialKind::Operator,
        ("member", Some(m)) => CredentialKind::Member(m),
        (k, _) => return Err(corrupt("credentials.kind", format_args!("{k:?}"))),
    };
    Ok(Credential {
        id: parsed(row, "id")?,
        kind,
        name: col(row, "name")?,
        token_sha256: col(row, "token_sha256")?,
        created_at: time(row, "created_at")?,
        revoked_at: time_opt(row, "revoked_at")?,
    })
}

fn audit_row(row: &AnyRow) -> Result<AuditEntry> {
    let detail: String = col(row, "detail")?;
    Ok(AuditEntry {
        id: col(row, "id")?,
        at: time(row, "at")?,
        actor: col(row, "actor")?,
        action: col(row, "action")?,
        target: col(row, "target")?,
        detail: serde_json::from_str(&detail).map_err(|e| corrupt("audit_log.detail", e))?,
    })
}

fn conf_row(row: &AnyRow) -> Result<StoredConf> {
    Ok(StoredConf {
        version: col(row, "version")?,
        registry_version: col(row, "registry_version")?,
        document: col(row, "document")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

fn event_row(row: &AnyRow) -> Result<SubscriptionEvent> {
    Ok(SubscriptionEvent {
        state: parsed(row, "state")?,
        at: time(row, "at")?,
        actor: col(row, "actor")?,
        note: col(row, "note")?,
    })
}

/// Builds groups from group rows and membership rows (both sorted).
fn assemble_groups(groups: &[AnyRow], members: &[AnyRow]) -> Result<Vec<Group>> {
    let mut by_code: HashMap<String, Vec<SubsystemId>> = HashMap::new();
    for row in members {
        let code: String = col(row, "group_code")?;
        by_code
            .entry(code)
            .or_default()
            .push(parsed(row, "subsystem_id")?);
    }
    groups
        .iter()
        .map(|row| {
            let code: String = col(row, "code")?;
            Ok(Group {
                members: by_code.remove(&code).unwrap_or_default(),
                description: col(row, "description")?,
                code,
            })
        })
        .collect()
}

async fn load_group(conn: &mut sqlx::AnyConnection, code: &str) -> Result<Group> {
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

async fn load_subscription(conn: &mut sqlx::AnyConnection, id: Uuid) -> Result<Subscription> {
    let row = row_by_key(
        &mut *conn,
        "SELECT id, service_id, client_id, state FROM subscriptions WHERE id = $1",
        id,
        "subscription",
    )
    .await?;
    let events = sqlx::query(
        "SELECT state, at, actor, note FROM subscription_events WHERE subscription_id = $1 \
         ORDER BY seq",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    Ok(Subscription {
        id: parsed(&row, "id")?,
        service: parsed(&row, "service_id")?,
        client: parsed(&row, "client_id")?,
        state: parsed(&row, "state")?,
        history: events.iter().map(event_row).collect::<Result<_>>()?,
    })
}

async fn load_registration(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<RegistrationRequest> {
    let sql = format!("SELECT {REG_COLS} FROM registration_requests WHERE id = $1");
    let row = row_by_key(conn, sqlx::AssertSqlSafe(sql), id, "registration request").await?;
    registration_row(&row)
}

async fn load_credential(conn: &mut sqlx::AnyConnection, id: Uuid) -> Result<Credential> {
    let sql = format!("SELECT {CRED_COLS} FROM credentials WHERE id = $1");
    let row = row_by_key(conn, sqlx::AssertSqlSafe(sql), id, "credential").await?;
    credential_row(&row)
}

async fn load_service(conn: &mut sqlx::AnyConnection, id: &ServiceId) -> Result<Service> {
    let sql = format!("SELECT {SERVICE_COLS} FROM services WHERE id = $1");
    let row = row_by_key(conn, sqlx::AssertSqlSafe(sql), id, "service").await?;
    service_row(&row)
}

async fn count(conn: &mut sqlx::AnyConnection, sql: &'static str, key: &str) -> Result<i64> {
    let row = sqlx::query(sql)
        .bind(key.to_string())
        .fetch_one(conn)
        .await
        .map_err(db)?;
    col(&row, "n")
}

fn grantee_columns(grantee: &Grantee) -> (Option<String>, Option<String>) {
    match grantee {
        Grantee::Subsystem(s) => (Some(s.to_string()), None),
        Grantee::Group(g) => (None, Some(g.clone())),
    }
}

// ---------------------------------------------------------------- the trait

#[async_trait]
impl RegistryStore for SqlStore {
    async fn add_member(&self, id: &MemberId, name: &str, actor: &Actor) -> Result<Member> {
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

    async fn get_member(&self, id: &MemberId) -> Result<Member> {
        let row = row_by_key(
            &self.pool,
            "SELECT id, name, created_at FROM members WHERE id = $1",
            id,
            "member",
        )
        .await?;
        member_row(&row)
    }

    async fn list_members(&self) -> Result<Vec<Member>> {
        all_as(
            sqlx::query("SELECT id, name, created_at FROM members ORDER BY id")
                .fetch_all(&self.pool)
                .await,
            member_row,
        )
    }

    async fn remove_member(&self, id: &MemberId, actor: &Actor) -> Result<()> {
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

    async fn add_subsystem(&self, id: &SubsystemId, actor: &Actor) -> Result<Subsystem> {
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

    async fn get_subsystem(&self, id: &SubsystemId) -> Result<Subsystem> {
        let row = row_by_key(
            &self.pool,
            "SELECT id, created_at FROM subsystems WHERE id = $1",
            id,
            "subsystem",
        )
        .await?;
        subsystem_row(&row)
    }

    async fn list_subsystems(&self, member: Option<&MemberId>) -> Result<Vec<Subsystem>> {
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

    async fn remove_subsystem(&self, id: &SubsystemId, actor: &Actor) -> Result<()> {
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

    async fn list_nodes(&self, member: Option<&MemberId>) -> Result<Vec<Node>> {
        let mut tx = self.read_tx().await?;
        let sql = format!(
            "SELECT {NODE_COLS} FROM nodes WHERE ($1 IS NULL OR member_id = $1) \
             ORDER BY member_id, name"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(member.map(|m| m.to_string()))
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let certs = node_cert_rows(&mut *tx, member, None).await?;
        tx.commit().await.map_err(db)?;
        nodes_with_certs(&rows, &certs)
    }

    async fn get_node(&self, member: &MemberId, name: &NodeName) -> Result<Node> {
        let mut tx = self.read_tx().await?;
        let node = load_node(&mut tx, member, name).await?;
        tx.commit().await.map_err(db)?;
        Ok(node)
    }

    async fn remove_node_certificate(
        &self,
        member: &MemberId,
        name: &NodeName,
        auth_cert_sha256: &str,
        actor: &Actor,
    ) -> Result<Node> {
        let mut w = self.begin_write(true).await?;
        let target = format!("{member}/{name}");
        let mut node = load_node(w.conn(), member, name).await?;
        let Some(pos) = node
            .auth_certs
            .iter()
            .position(|c| c.auth_cert_sha256 == auth_cert_sha256)
        else {
            return Err(not_found(
                "authentication certificate of node",
                format!("{target} with SHA-256 {auth_cert_sha256}"),
            ));
        };
        if node.auth_certs.len() == 1 {
            return Err(StoreError::InvalidTransition {
                what: format!("node {target}"),
                from: "one authentication certificate".into(),
                to: "none (remove the node instead)".into(),
            });
        }
        node.auth_certs.remove(pos);
        sqlx::query(
            "DELETE FROM node_certificates \
             WHERE member_id = $1 AND node_name = $2 AND auth_cert_sha256 = $3",
        )
        .bind(member.to_string())
        .bind(name.to_string())
        .bind(auth_cert_sha256.to_string())
        .execute(w.conn())
        .await
        .map_err(db)?;
        if node.auth_cert_sha256 == auth_cert_sha256 {
            let newest = node
                .auth_certs
                .last()
                .cloned()
                .ok_or_else(|| corrupt("node_certificates", "no certificate left"))?;
            set_newest_cert(
                w.conn(),
                member,
                name,
                &newest.auth_cert_pem,
                &newest.auth_cert_sha256,
            )
            .await?;
            node.auth_cert_pem = newest.auth_cert_pem;
            node.auth_cert_sha256 = newest.auth_cert_sha256;
        }
        w.finish(
            actor,
            "node.remove_certificate",
            &target,
            json!({ "auth_cert_sha256": auth_cert_sha256, "remaining": node.fingerprints() }),
        )
        .await?;
        Ok(node)
    }

    async fn remove_node(&self, member: &MemberId, name: &NodeName, actor: &Actor) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        let target = format!("{member}/{name}");
        deleted(
            sqlx::query("DELETE FROM nodes WHERE member_id = $1 AND name = $2")
                .bind(member.to_string())
                .bind(name.to_string())
                .execute(w.conn())
                .await,
            "node",
            &target,
        )?;
        w.finish(actor, "node.remove", &target, json!({})).await
    }

    async fn submit_registration(
        &self,
        req: &NewRegistration,
        actor: &Actor,
    ) -> Result<RegistrationRequest> {
        check_https_url(&req.address)?;
        if !is_sha256_hex(&req.auth_cert_sha256) {
            return Err(StoreError::Invalid(
                "auth_cert_sha256 must be 64 lowercase hexadecimal digits".into(),
            ));
        }
        let cert = ndxp_sign::cert::read_pem_chain(req.auth_cert_pem.as_bytes())
            .map_err(|e| StoreError::Invalid(format!("the authentication certificate: {e}")))?;
        let [cert] = cert.as_slice() else {
            return Err(StoreError::Invalid(
                "the authentication certificate PEM must hold exactly one certificate".into(),
            ));
        };
        let fp = ndxp_sign::cert::try_fingerprint_sha256(cert)
            .map_err(|e| StoreError::Invalid(format!("the authentication certificate: {e}")))?;
        if fp != req.auth_cert_sha256 {
            return Err(StoreError::Invalid(format!(
                "auth_cert_sha256 {} does not match the certificate (its SHA-256 is {fp})",
                req.auth_cert_sha256
            )));
        }

        let mut w = self.begin_write(true).await?;
        let target = format!("{}/{}", req.member, req.node);
        let existing: Option<String> =
            sqlx::query_scalar("SELECT address FROM nodes WHERE member_id = $1 AND name = $2")
                .bind(req.member.to_string())
                .bind(req.node.to_string())
                .fetch_optional(w.conn())
                .await
                .map_err(db)?;
        let kind = match existing {
            Some(address) if address != req.address => {
                return Err(StoreError::Invalid(format!(
                    "node {target} is registered at {address}; a request for an additional \
                     certificate must name the same address, not {}",
                    req.address
                )));
            }
            Some(_) => RegistrationKind::AddCertificate,
            None => {
                check_text("signed request", &req.signed_request).map_err(|_| {
                    StoreError::Invalid(format!(
                        "node {target} does not exist; a new node needs a registration request \
                         signed by its member (`ndxp-node register`)"
                    ))
                })?;
                RegistrationKind::Node
            }
        };
        if sqlx::query("SELECT 1 FROM node_certificates WHERE auth_cert_sha256 = $1")
            .bind(req.auth_cert_sha256.clone())
            .fetch_optional(w.conn())
            .await
            .map_err(db)?
            .is_some()
        {
            return Err(StoreError::AlreadyExists {
                what: "node with authentication certificate",
                id: req.auth_cert_sha256.clone(),
            });
        }
        let pending = sqlx::query(
            "SELECT 1 FROM registration_requests \
             WHERE member_id = $1 AND node_name = $2 AND state = 'pending'",
        )
        .bind(req.member.to_string())
        .bind(req.node.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(db)?;
        if pending.is_some() {
            return Err(StoreError::AlreadyExists {
                what: "pending registration request for node",
                id: target,
            });
        }
        let id = Uuid::now_v7();
        let sql = format!(
            "INSERT INTO registration_requests ({REG_COLS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, NULL, NULL, NULL, $9)"
        );
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(req.member.to_string())
            .bind(req.node.to_string())
            .bind(req.address.clone())
            .bind(req.auth_cert_pem.clone())
            .bind(req.auth_cert_sha256.clone())
            .bind(req.signed_request.clone())
            .bind(ts(w.at))
            .bind(kind.as_str())
            .execute(w.conn())
            .await
            .map_err(constraint("pending registration request for node", &target))?;
        let out = RegistrationRequest {
            id,
            member: req.member.clone(),
            node: req.node.clone(),
            address: req.address.clone(),
            auth_cert_pem: req.auth_cert_pem.clone(),
            auth_cert_sha256: req.auth_cert_sha256.clone(),
            signed_request: req.signed_request.clone(),
            kind,
            state: RegistrationState::Pending,
            submitted_at: w.at,
            decided_at: None,
            decided_by: None,
            reason: None,
        };
        w.finish(
            actor,
            "registration.submit",
            &id.to_string(),
            json!({
                "member": req.member, "node": req.node, "address": req.address,
                "auth_cert_sha256": req.auth_cert_sha256, "kind": kind,
            }),
        )
        .await?;
        Ok(out)
    }

    async fn list_registrations(
        &self,
        state: Option<RegistrationState>,
    ) -> Result<Vec<RegistrationRequest>> {
        let sql = format!(
            "SELECT {REG_COLS} FROM registration_requests WHERE ($1 IS NULL OR state = $1) \
             ORDER BY submitted_at, id"
        );
        all_as(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(state.map(|s| s.as_str().to_string()))
                .fetch_all(&self.pool)
                .await,
            registration_row,
        )
    }

    async fn get_registration(&self, id: Uuid) -> Result<RegistrationRequest> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load_registration(&mut conn, id).await
    }

    async fn approve_registration(&self, id: Uuid, actor: &Actor) -> Result<Node> {
        let mut w = self.begin_write(true).await?;
        let req = load_registration(w.conn(), id).await?;
        if req.state != RegistrationState::Pending {
            return Err(StoreError::InvalidTransition {
                what: format!("registration request {id}"),
                from: req.state.to_string(),
                to: RegistrationState::Approved.to_string(),
            });
        }
        if !exists(w.conn(), SQL_MEMBER_EXISTS, &req.member).await? {
            return Err(StoreError::Invalid(format!(
                "member {} does not exist; add the member before approving its node",
                req.member
            )));
        }
        let target = format!("{}/{}", req.member, req.node);
        match req.kind {
            RegistrationKind::Node => {
                let sql =
                    format!("INSERT INTO nodes ({NODE_COLS}) VALUES ($1, $2, $3, $4, $5, $6)");
                sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(req.member.to_string())
                    .bind(req.node.to_string())
                    .bind(req.address.clone())
                    .bind(req.auth_cert_pem.clone())
                    .bind(req.auth_cert_sha256.clone())
                    .bind(ts(w.at))
                    .execute(w.conn())
                    .await
                    .map_err(constraint("node", &target))?;
            }
            RegistrationKind::AddCertificate => {
                let node_exists =
                    sqlx::query("SELECT 1 FROM nodes WHERE member_id = $1 AND name = $2")
                        .bind(req.member.to_string())
                        .bind(req.node.to_string())
                        .fetch_optional(w.conn())
                        .await
                        .map_err(db)?
                        .is_some();
                if !node_exists {
                    return Err(StoreError::Invalid(format!(
                        "node {target} no longer exists; reject this request and register \
                         the node again"
                    )));
                }
            }
        }
        let at = w.at;
        insert_node_cert(
            w.conn(),
            &req.member,
            &req.node,
            &req.auth_cert_pem,
            &req.auth_cert_sha256,
            at,
        )
        .await?;
        sqlx::query(
            "UPDATE registration_requests SET state = 'approved', decided_at = $2, \
             decided_by = $3 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(ts(w.at))
        .bind(actor.as_str().to_string())
        .execute(w.conn())
        .await
        .map_err(db)?;
        let node = load_node(w.conn(), &req.member, &req.node).await?;
        w.finish(
            actor,
            "registration.approve",
            &id.to_string(),
            json!({
                "node": target, "kind": req.kind, "auth_cert_sha256": req.auth_cert_sha256,
                "auth_certs": node.fingerprints(),
            }),
        )
        .await?;
        Ok(node)
    }

    async fn reject_registration(
        &self,
        id: Uuid,
        reason: &str,
        actor: &Actor,
    ) -> Result<RegistrationRequest> {
        let mut w = self.begin_write(true).await?;
        let mut req = load_registration(w.conn(), id).await?;
        if req.state != RegistrationState::Pending {
            return Err(StoreError::InvalidTransition {
                what: format!("registration request {id}"),
                from: req.state.to_string(),
                to: RegistrationState::Rejected.to_string(),
            });
        }
        sqlx::query(
            "UPDATE registration_requests SET state = 'rejected', decided_at = $2, \
             decided_by = $3, reason = $4 WHERE id = $1",
        )
        .bind(id.to_string())
        .bind(ts(w.at))
        .bind(actor.as_str().to_string())
        .bind(reason.to_string())
        .execute(w.conn())
        .await
        .map_err(db)?;
        req.state = RegistrationState::Rejected;
        req.decided_at = Some(w.at);
        req.decided_by = Some(actor.as_str().to_string());
        req.reason = Some(reason.to_string());
        w.finish(
            actor,
            "registration.reject",
            &id.to_string(),
            json!({ "node": format!("{}/{}", req.member, req.node), "reason": reason }),
        )
        .await?;
        Ok(req)
    }

    async fn add_service(
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
            .execute(w.conn())
            .await
            .map_err(constraint("service", id))?;
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

    async fn get_service(&self, id: &ServiceId) -> Result<Service> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load_service(&mut conn, id).await
    }

    async fn list_services(&self, provider: Option<&SubsystemId>) -> Result<Vec<Service>> {
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

    async fn update_service(
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
        .execute(w.conn())
        .await
        .map_err(db)?;
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

    async fn remove_service(&self, id: &ServiceId, actor: &Actor) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        deleted(
            sqlx::query("DELETE FROM services WHERE id = $1")
                .bind(id.to_string())
                .execute(w.conn())
                .await,
            "service",
            id,
        )?;
        w.finish(actor, "service.remove", &id.to_string(), json!({}))
            .await
    }

    async fn add_group(&self, code: &str, description: &str, actor: &Actor) -> Result<Group> {
        check_group_code(code)?;
        let mut w = self.begin_write(true).await?;
        sqlx::query(
            "INSERT INTO subsystem_groups (code, description, created_at) VALUES ($1, $2, $3)",
        )
        .bind(code.to_string())
        .bind(description.to_string())
        .bind(ts(w.at))
        .execute(w.conn())
        .await
        .map_err(constraint("group", code))?;
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

    async fn get_group(&self, code: &str) -> Result<Group> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load_group(&mut conn, code).await
    }

    async fn list_groups(&self) -> Result<Vec<Group>> {
        let mut tx = self.read_tx().await?;
        let groups = sqlx::query("SELECT code, description FROM subsystem_groups ORDER BY code")
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let members = sqlx::query(
            "SELECT group_code, subsystem_id FROM group_members ORDER BY group_code, subsystem_id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        assemble_groups(&groups, &members)
    }

    async fn remove_group(&self, code: &str, actor: &Actor) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        deleted(
            sqlx::query("DELETE FROM subsystem_groups WHERE code = $1")
                .bind(code.to_string())
                .execute(w.conn())
                .await,
            "group",
            code,
        )?;
        w.finish(actor, "group.remove", code, json!({})).await
    }

    async fn add_group_member(
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

    async fn remove_group_member(
        &self,
        code: &str,
        subsystem: &SubsystemId,
        actor: &Actor,
    ) -> Result<Group> {
        let mut w = self.begin_write(true).await?;
        deleted(
            sqlx::query("DELETE FROM group_members WHERE group_code = $1 AND subsystem_id = $2")
                .bind(code.to_string())
                .bind(subsystem.to_string())
                .execute(w.conn())
                .await,
            "group member",
            format!("{subsystem} in {code}"),
        )?;
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

    async fn grant_access(
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
        .execute(w.conn())
        .await
        .map_err(constraint("access right", &key))?;
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

    async fn revoke_access(
        &self,
        service: &ServiceId,
        grantee: &Grantee,
        actor: &Actor,
    ) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        deleted(
            sqlx::query("DELETE FROM access_rights WHERE service_id = $1 AND grantee = $2")
                .bind(service.to_string())
                .bind(grantee.to_string())
                .execute(w.conn())
                .await,
            "access right",
            format!("{service} to {grantee}"),
        )?;
        w.finish(
            actor,
            "access.revoke",
            &service.to_string(),
            json!({ "grantee": grantee }),
        )
        .await
    }

    async fn list_access_rights(&self, service: Option<&ServiceId>) -> Result<Vec<AccessRight>> {
        all_as(sqlx::query(
            "SELECT service_id, grantee_subsystem, grantee_group, granted_at FROM access_rights \
             WHERE ($1 IS NULL OR service_id = $1) ORDER BY service_id, grantee",
        )
        .bind(service.map(|s| s.to_string()))
        .fetch_all(&self.pool).await, right_row)
    }

    async fn request_subscription(
        &self,
        service: &ServiceId,
        client: &SubsystemId,
        note: Option<&str>,
        actor: &Actor,
    ) -> Result<Subscription> {
        let mut w = self.begin_write(true).await?;
        if !exists(w.conn(), SQL_SERVICE_EXISTS, service).await? {
            return Err(StoreError::Invalid(format!(
                "service {service} does not exist"
            )));
        }
        if !exists(w.conn(), SQL_SUBSYSTEM_EXISTS, client).await? {
            return Err(StoreError::Invalid(format!(
                "client subsystem {client} does not exist"
            )));
        }
        let key = format!("{client} to {service}");
        let live = sqlx::query(
            "SELECT 1 FROM subscriptions WHERE service_id = $1 AND client_id = $2 \
             AND state IN ('requested', 'approved')",
        )
        .bind(service.to_string())
        .bind(client.to_string())
        .fetch_optional(w.conn())
        .await
        .map_err(db)?;
        if live.is_some() {
            return Err(StoreError::AlreadyExists {
                what: "subscription",
                id: key,
            });
        }
        let id = Uuid::now_v7();
        sqlx::query(
            "INSERT INTO subscriptions (id, service_id, client_id, state, created_at) \
             VALUES ($1, $2, $3, 'requested', $4)",
        )
        .bind(id.to_string())
        .bind(service.to_string())
        .bind(client.to_string())
        .bind(ts(w.at))
        .execute(w.conn())
        .await
        .map_err(constraint("subscription", &key))?;
        sqlx::query(
            "INSERT INTO subscription_events (subscription_id, seq, state, at, actor, note) \
             VALUES ($1, 0, 'requested', $2, $3, $4)",
        )
        .bind(id.to_string())
        .bind(ts(w.at))
        .bind(actor.as_str().to_string())
        .bind(note.map(str::to_string))
        .execute(w.conn())
        .await
        .map_err(db)?;
        let sub = Subscription {
            id,
            service: service.clone(),
            client: client.clone(),
            state: SubscriptionState::Requested,
            history: vec![SubscriptionEvent {
                state: SubscriptionState::Requested,
                at: w.at,
                actor: actor.as_str().to_string(),
                note: note.map(str::to_string),
            }],
        };
        w.finish(
            actor,
            "subscription.request",
            &id.to_string(),
            json!({ "service": service, "client": client, "note": note }),
        )
        .await?;
        Ok(sub)
    }

    async fn get_subscription(&self, id: Uuid) -> Result<Subscription> {
        let mut tx = self.read_tx().await?;
        let sub = load_subscription(&mut tx, id).await?;
        tx.commit().await.map_err(db)?;
        Ok(sub)
    }

    async fn list_subscriptions(&self, filter: &SubscriptionFilter) -> Result<Vec<Subscription>> {
        const WHERE: &str = "($1 IS NULL OR s.service_id = $1) \
             AND ($2 IS NULL OR s.client_id = $2) \
             AND ($3 IS NULL OR s.service_id IN (SELECT id FROM services WHERE subsystem_id = $3)) \
             AND ($4 IS NULL OR s.state = $4)";
        let binds = [
            filter.service.as_ref().map(|s| s.to_string()),
            filter.client.as_ref().map(|s| s.to_string()),
            filter.provider.as_ref().map(|s| s.to_string()),
            filter.state.map(|s| s.as_str().to_string()),
        ];
        let mut tx = self.read_tx().await?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT s.id, s.service_id, s.client_id, s.state FROM subscriptions s \
             WHERE {WHERE} ORDER BY s.created_at, s.id"
        )));
        for b in &binds {
            q = q.bind(b.clone());
        }
        let rows = q.fetch_all(&mut *tx).await.map_err(db)?;
        let mut q = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT e.subscription_id, e.state, e.at, e.actor, e.note \
             FROM subscription_events e JOIN subscriptions s ON s.id = e.subscription_id \
             WHERE {WHERE} ORDER BY e.subscription_id, e.seq"
        )));
        for b in &binds {
            q = q.bind(b.clone());
        }
        let event_rows = q.fetch_all(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut events: HashMap<String, Vec<SubscriptionEvent>> = HashMap::new();
        for row in &event_rows {
            let sid: String = col(row, "subscription_id")?;
            events.entry(sid).or_default().push(event_row(row)?);
        }
        rows.iter()
            .map(|row| {
                let sid: String = col(row, "id")?;
                Ok(Subscription {
                    id: parsed(row, "id")?,
                    service: parsed(row, "service_id")?,
                    client: parsed(row, "client_id")?,
                    state: parsed(row, "state")?,
                    history: events.remove(&sid).unwrap_or_default(),
                })
            })
            .collect()
    }

    async fn transition_subscription(
        &self,
        id: Uuid,
        to: SubscriptionState,
        note: Option<&str>,
        actor: &Actor,
    ) -> Result<Subscription> {
        let mut w = self.begin_write(true).await?;
        let mut sub = load_subscription(w.conn(), id).await?;
        let from = sub.state;
        if !from.can_become(to) {
            return Err(StoreError::InvalidTransition {
                what: format!("subscription {id}"),
                from: from.to_string(),
                to: to.to_string(),
            });
        }
        sqlx::query("UPDATE subscriptions SET state = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(to.as_str().to_string())
            .execute(w.conn())
            .await
            .map_err(db)?;
        let seq = i64::try_from(sub.history.len())
            .map_err(|_| corrupt("subscription_events", "too many events"))?;
        sqlx::query(
            "INSERT INTO subscription_events (subscription_id, seq, state, at, actor, note) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id.to_string())
        .bind(seq)
        .bind(to.as_str().to_string())
        .bind(ts(w.at))
        .bind(actor.as_str().to_string())
        .bind(note.map(str::to_string))
        .execute(w.conn())
        .await
        .map_err(db)?;
        sub.state = to;
        sub.history.push(SubscriptionEvent {
            state: to,
            at: w.at,
            actor: actor.as_str().to_string(),
            note: note.map(str::to_string),
        });
        w.finish(
            actor,
            &format!("subscription.{}", to.as_str()),
            &id.to_string(),
            json!({ "from": from, "to": to, "note": note,
                    "service": sub.service, "client": sub.client }),
        )
        .await?;
        Ok(sub)
    }

    async fn create_credential(
        &self,
        kind: &CredentialKind,
        name: &str,
        token_sha256: &str,
        actor: &Actor,
    ) -> Result<Credential> {
        check_text("credential name", name)?;
        if !is_sha256_hex(token_sha256) {
            return Err(StoreError::Invalid(
                "token_sha256 must be 64 lowercase hexadecimal digits".into(),
            ));
        }
        let mut w = self.begin_write(true).await?;
        let (kind_text, member) = match kind {
            CredentialKind::Operator => ("operator", None),
            CredentialKind::Member(m) => {
                if !exists(w.conn(), SQL_MEMBER_EXISTS, m).await? {
                    return Err(StoreError::Invalid(format!(
                        "member {m} does not exist; add it before giving it credentials"
                    )));
                }
                ("member", Some(m.to_string()))
            }
        };
        let id = Uuid::now_v7();
        let sql =
            format!("INSERT INTO credentials ({CRED_COLS}) VALUES ($1, $2, $3, $4, $5, $6, NULL)");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(kind_text.to_string())
            .bind(member)
            .bind(name.to_string())
            .bind(token_sha256.to_string())
            .bind(ts(w.at))
            .execute(w.conn())
            .await
            .map_err(constraint("credential with that token", "(hash withheld)"))?;
        let cred = Credential {
            id,
            kind: kind.clone(),
            name: name.to_string(),
            token_sha256: token_sha256.to_string(),
            created_at: w.at,
            revoked_at: None,
        };
        w.finish(
            actor,
            "credential.create",
            &id.to_string(),
            json!({ "kind": kind, "name": name }),
        )
        .await?;
        Ok(cred)
    }

    async fn find_active_credential(&self, token_sha256: &str) -> Result<Option<Credential>> {
        let sql = format!(
            "SELECT {CRED_COLS} FROM credentials WHERE token_sha256 = $1 AND revoked_at IS NULL"
        );
        optional_as(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(token_sha256.to_string())
                .fetch_optional(&self.pool)
                .await,
            credential_row,
        )
    }

    async fn list_credentials(&self) -> Result<Vec<Credential>> {
        let sql = format!("SELECT {CRED_COLS} FROM credentials ORDER BY created_at, id");
        all_as(
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .fetch_all(&self.pool)
                .await,
            credential_row,
        )
    }

    async fn revoke_credential(&self, id: Uuid, actor: &Actor) -> Result<Credential> {
        let mut w = self.begin_write(true).await?;
        let mut cred = load_credential(w.conn(), id).await?;
        if cred.revoked_at.is_some() {
            return Err(StoreError::InvalidTransition {
                what: format!("credential {id}"),
                from: "revoked".into(),
                to: "revoked".into(),
            });
        }
        sqlx::query("UPDATE credentials SET revoked_at = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(ts(w.at))
            .execute(w.conn())
            .await
            .map_err(db)?;
        cred.revoked_at = Some(w.at);
        w.finish(
            actor,
            "credential.revoke",
            &id.to_string(),
            json!({ "kind": cred.kind, "name": cred.name }),
        )
        .await?;
        Ok(cred)
    }

    async fn list_audit(&self, after_id: i64, limit: u32) -> Result<Vec<AuditEntry>> {
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

    async fn registry_version(&self) -> Result<i64> {
        let row = sqlx::query("SELECT version FROM registry_state WHERE id = 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| corrupt("registry_state", "the state row is missing"))?;
        col(&row, "version")
    }

    async fn snapshot(&self) -> Result<RegistrySnapshot> {
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

    async fn store_conf(&self, conf: &StoredConf, actor: &Actor) -> Result<()> {
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

    async fn latest_conf(&self) -> Result<Option<StoredConf>> {
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

    async fn conf_by_version(&self, version: i64) -> Result<Option<StoredConf>> {
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
