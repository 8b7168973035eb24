//! Credentials (bearer tokens), the audit trail and the diagnostics:
//! operators only.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Extension;
use axum::Json;
use ndxp_core::check::CheckReport;
use ndxp_registry::model::{AuditEntry, Credential, CredentialKind};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::diagnose::DiagnoseConfig;
use crate::management::auth::Caller;
use crate::management::error::ApiError;
use crate::management::extract::{ApiJson, ApiPath, ApiQuery, RecordPath};
use crate::management::registry::NewToken;
use crate::management::schema::{
    AuditPageSchema, CheckReportSchema, CredentialSchema, NewCredentialSchema, ProblemSchema,
};
use crate::management::AppState;

/// Body of `POST /api/v1/credentials`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredentialBody {
    /// `"operator"`, or `{"member": "VN/GOV/000.00.00.H29"}` for a member's
    /// own token.
    #[schema(value_type = Object)]
    pub kind: CredentialKind,
    /// A label: the operator's name, or what the token is for.
    pub name: String,
}

/// A credential just created, with its token (shown this once).
#[derive(Debug, Serialize)]
pub struct CreatedCredential {
    /// The stored credential.
    pub credential: Credential,
    /// The bearer token.
    pub token: String,
}

/// Query of `GET /api/v1/audit`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only entries with a greater id (default 0: from the start).
    pub after: Option<i64>,
    /// At most this many entries (default 100, at most 1000).
    pub limit: Option<u32>,
}

/// A page of audit entries.
#[derive(Debug, Serialize)]
pub struct AuditPage {
    /// Entries, oldest first.
    pub entries: Vec<AuditEntry>,
    /// `after` for the next page; absent when this page is the last.
    pub next_after: Option<i64>,
}

/// All credentials, revoked ones included (never the tokens).
#[utoipa::path(get, path = "/api/v1/credentials", tag = "credentials",
    security(("bearer" = [])),
    responses((status = 200, description = "Credentials, oldest first", body = Vec<CredentialSchema>),
               (status = 403, description = "Not an operator", body = ProblemSchema)))]
pub async fn list_credentials(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Credential>>, ApiError> {
    caller.require_operator()?;
    Ok(Json(st.admin(&caller).list_tokens().await?))
}

/// Creates an operator or member token. The token is in this answer only;
/// the registry keeps its SHA-256.
#[utoipa::path(post, path = "/api/v1/credentials", tag = "credentials",
    security(("bearer" = [])), request_body = NewCredentialBody,
    responses((status = 201, description = "Created", body = NewCredentialSchema),
               (status = 400, description = "Malformed body, or no such member", body = ProblemSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema)))]
pub async fn create_credential(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewCredentialBody>,
) -> Result<(StatusCode, Json<CreatedCredential>), ApiError> {
    caller.require_operator()?;
    let NewToken { credential, token } = st
        .admin(&caller)
        .create_token(&body.kind, &body.name)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedCredential { credential, token }),
    ))
}

/// Revokes a credential; it stops authenticating at once.
#[utoipa::path(post, path = "/api/v1/credentials/{id}/revoke", tag = "credentials",
    security(("bearer" = [])), params(RecordPath),
    responses((status = 200, description = "Revoked", body = CredentialSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 404, description = "No such credential", body = ProblemSchema),
               (status = 409, description = "Already revoked", body = ProblemSchema)))]
pub async fn revoke_credential(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
) -> Result<Json<Credential>, ApiError> {
    let id = p.id()?;
    caller.require_operator()?;
    Ok(Json(st.admin(&caller).revoke_token(id).await?))
}

/// The audit trail, one page at a time: every write with who, what, when.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, description = "A page of entries", body = AuditPageSchema),
               (status = 400, description = "Bad query", body = ProblemSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema)))]
pub async fn list_audit(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Json<AuditPage>, ApiError> {
    caller.require_operator()?;
    let after = q.after.unwrap_or(0);
    let limit = q.limit.unwrap_or(100);
    if after < 0 || limit == 0 || limit > 1000 {
        return Err(ApiError::BadRequest(
            "after must be 0 or more and limit between 1 and 1000".into(),
        ));
    }
    let entries = st.store.list_audit(after, limit).await?;
    let next_after = if entries.len() == limit as usize {
        entries.last().map(|e| e.id)
    } else {
        None
    };
    Ok(Json(AuditPage {
        entries,
        next_after,
    }))
}

/// Every dependency of the management role and the central gateway
/// checked, as `ndxp-gateway diagnose --json` prints it: the database, the
/// configuration-signing key, the global configuration, the OCSP
/// responders, the TSAs and the backends of published services. Each
/// check is bounded by 10 s.
#[utoipa::path(get, path = "/api/v1/diagnose", tag = "diagnostics",
    security(("bearer" = [])),
    responses((status = 200, description = "The report; `ok` is false when a check failed", body = CheckReportSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema)))]
pub async fn diagnose(
    caller: Caller,
    config: Option<Extension<DiagnoseConfig>>,
) -> Result<Json<CheckReport>, ApiError> {
    caller.require_operator()?;
    let Some(Extension(DiagnoseConfig(config))) = config else {
        return Err(ApiError::Internal(
            "this server was started without its configuration file; run `ndxp-gateway diagnose`"
                .into(),
        ));
    };
    let options = crate::diagnose::DiagnoseOptions::default();
    Ok(Json(crate::diagnose::run(&config, &options).await))
}
