//! Nodes of the distributed model and their authentication certificates.

use chrono::{DateTime, Utc};
use ndxp_core::{MemberId, NodeName};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::Any;

use super::rows::{nodes_with_certs, NODE_COLS};
use super::{corrupt, db, found, not_found, ts, Run, SqlStore};
use crate::model::{Actor, Node};
use crate::store::{Result, StoreError};

/// The authentication certificates of one node, of one member's nodes
/// (`name` None) or of every node (both None), ordered by node, then
/// oldest first.
pub(super) async fn node_cert_rows<'c, E>(
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

/// One node with its certificates, inside a write.
pub(super) async fn load_node(
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
pub(super) async fn insert_node_cert(
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
    .insert(&mut *conn, "node with authentication certificate", sha256)
    .await?;
    set_newest_cert(conn, member, name, pem, sha256).await
}

/// Points `nodes.auth_cert_*` at one of the node's certificates.
pub(super) async fn set_newest_cert(
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
    .insert(&mut *conn, "node with authentication certificate", sha256)
    .await?;
    Ok(())
}

impl SqlStore {
    pub(super) async fn list_nodes(&self, member: Option<&MemberId>) -> Result<Vec<Node>> {
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

    pub(super) async fn get_node(&self, member: &MemberId, name: &NodeName) -> Result<Node> {
        let mut tx = self.read_tx().await?;
        let node = load_node(&mut tx, member, name).await?;
        tx.commit().await.map_err(db)?;
        Ok(node)
    }

    pub(super) async fn remove_node_certificate(
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
        .run(w.conn())
        .await?;
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

    pub(super) async fn remove_node(
        &self,
        member: &MemberId,
        name: &NodeName,
        actor: &Actor,
    ) -> Result<()> {
        let mut w = self.begin_write(true).await?;
        let target = format!("{member}/{name}");
        sqlx::query("DELETE FROM nodes WHERE member_id = $1 AND name = $2")
            .bind(member.to_string())
            .bind(name.to_string())
            .delete(w.conn(), "node", &target)
            .await?;
        w.finish(actor, "node.remove", &target, json!({})).await
    }
}
