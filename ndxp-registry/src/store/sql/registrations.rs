//! Signed node registration requests and the operator's decision on them.

use serde_json::json;
use uuid::Uuid;

use super::nodes::{insert_node_cert, load_node};
use super::rows::{load_registration, registration_row, NODE_COLS, REG_COLS};
use super::{
    all_as, check_https_url, check_text, db, exists, is_sha256_hex, ts, Run, SqlStore,
    SQL_MEMBER_EXISTS,
};
use crate::model::{
    Actor, NewRegistration, Node, RegistrationKind, RegistrationRequest, RegistrationState,
};
use crate::store::{Result, StoreError};

impl SqlStore {
    pub(super) async fn submit_registration(
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
            .insert(w.conn(), "pending registration request for node", &target)
            .await?;
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

    pub(super) async fn list_registrations(
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

    pub(super) async fn get_registration(&self, id: Uuid) -> Result<RegistrationRequest> {
        let mut conn = self.pool.acquire().await.map_err(db)?;
        load_registration(&mut conn, id).await
    }

    pub(super) async fn approve_registration(&self, id: Uuid, actor: &Actor) -> Result<Node> {
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
                    .insert(w.conn(), "node", &target)
                    .await?;
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
        .run(w.conn())
        .await?;
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

    pub(super) async fn reject_registration(
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
        .run(w.conn())
        .await?;
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
}
