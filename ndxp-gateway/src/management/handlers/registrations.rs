//! Node registration requests: submitted by a node (signed, no token),
//! decided by an operator.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::Json;
use ndxp_registry::model::{Actor, NewRegistration, Node, RegistrationRequest, RegistrationState};
use ndxp_registry::registration::{verify_registration, MAX_REQUEST_BYTES};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::management::auth::Caller;
use crate::management::error::ApiError;
use crate::management::extract::{
    has_media_type, read_body, ApiJson, ApiPath, ApiQuery, RecordPath,
};
use crate::management::schema::{NodeSchema, ProblemSchema, RegistrationSchema};
use crate::management::AppState;

/// Query of `GET /api/v1/registrations`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RegistrationQuery {
    /// Only requests in this state: `pending`, `approved` or `rejected`.
    #[param(value_type = Option<String>)]
    pub state: Option<RegistrationState>,
}

/// Body of `POST /api/v1/registrations/{id}/reject`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RejectBody {
    /// Why the request is refused; shown to the member.
    pub reason: String,
}

/// Submits a node registration request: a compact JWS signed by the
/// member's signing key with `x5c` (see `ndxp_registry::registration`).
/// No bearer token: the signature authenticates the member.
#[utoipa::path(post, path = "/api/v1/registrations", tag = "registrations",
    request_body(content = String, content_type = "application/jose",
                 description = "Compact JWS of a registration request"),
    responses((status = 201, description = "Recorded as pending", body = RegistrationSchema),
               (status = 400, description = "Malformed, stale, or its signature or certificates fail", body = ProblemSchema),
               (status = 409, description = "A pending request or the node exists", body = ProblemSchema),
               (status = 413, description = "Over the size limit", body = ProblemSchema),
               (status = 415, description = "Not application/jose", body = ProblemSchema)))]
pub async fn submit_registration(
    State(st): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<RegistrationRequest>), ApiError> {
    if !has_media_type(req.headers(), "application/jose") {
        return Err(ApiError::UnsupportedMediaType(
            "send the signed request as Content-Type: application/jose".into(),
        ));
    }
    let body = read_body(req, &st).await?;
    if body.len() > MAX_REQUEST_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_REQUEST_BYTES,
        });
    }
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the request body is not UTF-8 text".into()))?;
    let now = chrono::Utc::now();
    let checked = verify_registration(text, st.publisher.trusted_ca_certs(), now)?;
    st.revocation
        .check_jws(text, MAX_REQUEST_BYTES, now)
        .await
        .map_err(ApiError::Revoked)?;
    let p = checked.payload;
    st.check_instance(&p.member)?;
    let new = NewRegistration {
        member: p.member.clone(),
        node: p.node,
        address: p.address,
        auth_cert_pem: p.auth_cert_pem,
        auth_cert_sha256: checked.auth_cert_sha256,
        signed_request: text.trim().to_string(),
    };
    let r = st
        .store
        .submit_registration(&new, &Actor::member(&p.member))
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// Lists registration requests: all for an operator, its own for a member.
#[utoipa::path(get, path = "/api/v1/registrations", tag = "registrations",
    security(("bearer" = [])), params(RegistrationQuery),
    responses((status = 200, description = "Requests, oldest first", body = Vec<RegistrationSchema>),
               (status = 400, description = "Bad query", body = ProblemSchema)))]
pub async fn list_registrations(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<RegistrationQuery>,
) -> Result<Json<Vec<RegistrationRequest>>, ApiError> {
    let mut all = st.admin(&caller).list_requests(q.state).await?;
    if let Some(m) = caller.member() {
        all.retain(|r| &r.member == m);
    }
    Ok(Json(all))
}

/// One registration request (an operator, or the member that made it).
#[utoipa::path(get, path = "/api/v1/registrations/{id}", tag = "registrations",
    security(("bearer" = [])), params(RecordPath),
    responses((status = 200, description = "The request", body = RegistrationSchema),
               (status = 403, description = "Another member's request", body = ProblemSchema),
               (status = 404, description = "No such request", body = ProblemSchema)))]
pub async fn get_registration(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
) -> Result<Json<RegistrationRequest>, ApiError> {
    let id = p.id()?;
    let r = st.store.get_registration(id).await?;
    caller.require_member(&r.member)?;
    Ok(Json(r))
}

/// Approves a pending request; the node exists from now on and is in the
/// next global configuration (operator only).
#[utoipa::path(post, path = "/api/v1/registrations/{id}/approve", tag = "registrations",
    security(("bearer" = [])), params(RecordPath),
    responses((status = 200, description = "The node created", body = NodeSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 404, description = "No such request", body = ProblemSchema),
               (status = 409, description = "Not pending", body = ProblemSchema)))]
pub async fn approve_registration(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
) -> Result<Json<Node>, ApiError> {
    let id = p.id()?;
    caller.require_operator()?;
    Ok(Json(st.admin(&caller).approve_request(id).await?))
}

/// Rejects a pending request with a reason (operator only).
#[utoipa::path(post, path = "/api/v1/registrations/{id}/reject", tag = "registrations",
    security(("bearer" = [])), params(RecordPath), request_body = RejectBody,
    responses((status = 200, description = "The rejected request", body = RegistrationSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 404, description = "No such request", body = ProblemSchema),
               (status = 409, description = "Not pending", body = ProblemSchema)))]
pub async fn reject_registration(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
    ApiJson(body): ApiJson<RejectBody>,
) -> Result<Json<RegistrationRequest>, ApiError> {
    let id = p.id()?;
    caller.require_operator()?;
    Ok(Json(
        st.admin(&caller).reject_request(id, &body.reason).await?,
    ))
}
