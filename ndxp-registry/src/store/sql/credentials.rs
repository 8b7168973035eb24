//! API credentials of operators and members (only token hashes are stored).

use serde_json::json;
use uuid::Uuid;

use super::rows::{credential_row, load_credential, CRED_COLS};
use super::{
    check_text, exists, fetch_rows, is_sha256_hex, optional_as, ts, Run, SqlStore,
    SQL_MEMBER_EXISTS,
};
use crate::model::{Actor, Credential, CredentialKind};
use crate::store::{Result, StoreError};

impl SqlStore {
    pub(super) async fn create_credential(
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
            .insert(w.conn(), "credential with that token", "(hash withheld)")
            .await?;
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

    pub(super) async fn find_active_credential(
        &self,
        token_sha256: &str,
    ) -> Result<Option<Credential>> {
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

    pub(super) async fn list_credentials(&self) -> Result<Vec<Credential>> {
        let sql = format!("SELECT {CRED_COLS} FROM credentials ORDER BY created_at, id");
        let rows = fetch_rows(&self.pool, sqlx::AssertSqlSafe(sql)).await?;
        rows.iter().map(credential_row).collect()
    }

    pub(super) async fn revoke_credential(&self, id: Uuid, actor: &Actor) -> Result<Credential> {
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
            .run(w.conn())
            .await?;
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
}
