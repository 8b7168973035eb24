//! Groups of subsystems (grantees of access rights). Any authenticated
//! caller may read them (they are published in the global configuration);
//! only operators change them.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ndxp_core::id::check_segment;
use ndxp_core::SubsystemId;
use ndxp_registry::model::Group;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::management::auth::Caller;
use crate::management::error::ApiError;
use crate::management::extract::{ApiJson, ApiPath, GroupMemberPath, GroupPath};
use crate::management::schema::{GroupSchema, ProblemSchema};
use crate::management::AppState;

/// Body of `POST /api/v1/groups`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    /// The group code (identifier segment rule).
    pub code: String,
    /// What the group is for.
    pub description: String,
}

/// Body of `POST /api/v1/groups/{group}/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGroupMember {
    /// The subsystem to add.
    #[schema(value_type = String, example = "VN/GOV/000.00.00.G22/QLHT")]
    pub subsystem: SubsystemId,
}

/// All groups.
#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", security(("bearer" = [])),
    responses((status = 200, description = "Groups, sorted by code", body = Vec<GroupSchema>)))]
pub async fn list_groups(
    State(st): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<Group>>, ApiError> {
    Ok(Json(st.store.list_groups().await?))
}

/// Adds an empty group (operator only).
#[utoipa::path(post, path = "/api/v1/groups", tag = "groups", security(("bearer" = [])),
    request_body = NewGroup,
    responses((status = 201, description = "Added", body = GroupSchema),
               (status = 400, description = "Malformed body or code", body = ProblemSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 409, description = "The group exists", body = ProblemSchema)))]
pub async fn add_group(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewGroup>,
) -> Result<(StatusCode, Json<Group>), ApiError> {
    caller.require_operator()?;
    check_segment("group", &body.code)
        .map_err(|e| ApiError::BadRequest(format!("invalid group code: {e}")))?;
    let g = st
        .store
        .add_group(&body.code, &body.description, &caller.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(g)))
}

/// One group with its members.
#[utoipa::path(get, path = "/api/v1/groups/{group}", tag = "groups", security(("bearer" = [])),
    params(GroupPath),
    responses((status = 200, description = "The group", body = GroupSchema),
               (status = 404, description = "No such group", body = ProblemSchema)))]
pub async fn get_group(
    State(st): State<AppState>,
    _caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
) -> Result<Json<Group>, ApiError> {
    Ok(Json(st.store.get_group(&p.code()?).await?))
}

/// Removes a group and the grants to it (operator only).
#[utoipa::path(delete, path = "/api/v1/groups/{group}", tag = "groups",
    security(("bearer" = [])), params(GroupPath),
    responses((status = 204, description = "Removed"),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 404, description = "No such group", body = ProblemSchema)))]
pub async fn remove_group(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
) -> Result<StatusCode, ApiError> {
    let code = p.code()?;
    caller.require_operator()?;
    st.store.remove_group(&code, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Puts a subsystem in a group (operator only).
#[utoipa::path(post, path = "/api/v1/groups/{group}/members", tag = "groups",
    security(("bearer" = [])), params(GroupPath), request_body = NewGroupMember,
    responses((status = 200, description = "The group as changed", body = GroupSchema),
               (status = 400, description = "Malformed body, or no such subsystem", body = ProblemSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 404, description = "No such group", body = ProblemSchema),
               (status = 409, description = "Already in the group", body = ProblemSchema)))]
pub async fn add_group_member(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupPath>,
    ApiJson(body): ApiJson<NewGroupMember>,
) -> Result<Json<Group>, ApiError> {
    let code = p.code()?;
    caller.require_operator()?;
    Ok(Json(
        st.store
            .add_group_member(&code, &body.subsystem, &caller.actor())
            .await?,
    ))
}

/// Takes a subsystem out of a group (operator only).
#[utoipa::path(delete,
    path = "/api/v1/groups/{group}/members/{instance}/{class}/{code}/{subsystem}",
    tag = "groups", security(("bearer" = [])), params(GroupMemberPath),
    responses((status = 200, description = "The group as changed", body = GroupSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 404, description = "No such group or membership", body = ProblemSchema)))]
pub async fn remove_group_member(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<GroupMemberPath>,
) -> Result<Json<Group>, ApiError> {
    let (code, subsystem) = p.ids()?;
    caller.require_operator()?;
    Ok(Json(
        st.store
            .remove_group_member(&code, &subsystem, &caller.actor())
            .await?,
    ))
}
