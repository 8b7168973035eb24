//! From database rows to the model's types (a row that does not parse is
//! [`StoreError::Corrupt`](crate::store::StoreError::Corrupt), never a panic).

use std::collections::HashMap;

use ndxp_core::{MemberId, ServiceId, SubsystemId};
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::{col, corrupt, one_by_key, parsed, parsed_opt, time, time_opt};
use crate::model::{
    AccessRight, AuditEntry, Credential, CredentialKind, Grantee, Group, Member, Node,
    NodeCertificate, RegistrationRequest, Service, StoredConf, SubscriptionEvent, Subsystem,
};
use crate::store::Result;

pub(super) fn member_row(row: &AnyRow) -> Result<Member> {
    Ok(Member {
        id: parsed(row, "id")?,
        name: col(row, "name")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn subsystem_row(row: &AnyRow) -> Result<Subsystem> {
    Ok(Subsystem {
        id: parsed(row, "id")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) const NODE_COLS: &str =
    "member_id, name, address, auth_cert_pem, auth_cert_sha256, created_at";

pub(super) fn node_row(row: &AnyRow) -> Result<Node> {
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

/// Node rows with their certificates from [`node_cert_rows`](super::nodes::node_cert_rows). A node
/// without any certificate row is corrupt data.
pub(super) fn nodes_with_certs(rows: &[AnyRow], cert_rows: &[AnyRow]) -> Result<Vec<Node>> {
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

pub(super) const SERVICE_COLS: &str =
    "id, description, openapi, deprecated_at, sunset_at, created_at";

pub(super) fn service_row(row: &AnyRow) -> Result<Service> {
    Ok(Service {
        id: parsed(row, "id")?,
        description: col(row, "description")?,
        openapi: col(row, "openapi")?,
        deprecated_at: time_opt(row, "deprecated_at")?,
        sunset_at: time_opt(row, "sunset_at")?,
        created_at: time(row, "created_at")?,
    })
}

pub(super) fn right_row(row: &AnyRow) -> Result<AccessRight> {
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

pub(super) const REG_COLS: &str =
    "id, member_id, node_name, address, auth_cert_pem, auth_cert_sha256, \
     signed_request, state, submitted_at, decided_at, decided_by, reason, kind";

pub(super) fn registration_row(row: &AnyRow) -> Result<RegistrationRequest> {
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

pub(super) const CRED_COLS: &str =
    "id, kind, member_id, name, token_sha256, created_at, revoked_at";

pub(super) fn credential_row(row: &AnyRow) -> Result<Credential> {
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

pub(super) fn audit_row(row: &AnyRow) -> Result<AuditEntry> {
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

pub(super) fn conf_row(row: &AnyRow) -> Result<StoredConf> {
    Ok(StoredConf {
        version: col(row, "version")?,
        registry_version: col(row, "registry_version")?,
        document: col(row, "document")?,
        created_at: time(row, "created_at")?,
        expires_at: time(row, "expires_at")?,
    })
}

pub(super) fn event_row(row: &AnyRow) -> Result<SubscriptionEvent> {
    Ok(SubscriptionEvent {
        state: parsed(row, "state")?,
        at: time(row, "at")?,
        actor: col(row, "actor")?,
        note: col(row, "note")?,
    })
}

/// Builds groups from group rows and membership rows (both sorted).
pub(super) fn assemble_groups(groups: &[AnyRow], members: &[AnyRow]) -> Result<Vec<Group>> {
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

pub(super) async fn load_credential(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<Credential> {
    let sql = format!("SELECT {CRED_COLS} FROM credentials WHERE id = $1");
    one_by_key(
        conn,
        sqlx::AssertSqlSafe(sql),
        id,
        "credential",
        credential_row,
    )
    .await
}

pub(super) async fn load_registration(
    conn: &mut sqlx::AnyConnection,
    id: Uuid,
) -> Result<RegistrationRequest> {
    let sql = format!("SELECT {REG_COLS} FROM registration_requests WHERE id = $1");
    one_by_key(
        conn,
        sqlx::AssertSqlSafe(sql),
        id,
        "registration request",
        registration_row,
    )
    .await
}

pub(super) async fn load_service(
    conn: &mut sqlx::AnyConnection,
    id: &ServiceId,
) -> Result<Service> {
    let sql = format!("SELECT {SERVICE_COLS} FROM services WHERE id = $1");
    one_by_key(conn, sqlx::AssertSqlSafe(sql), id, "service", service_row).await
}
