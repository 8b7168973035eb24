//! Members, their subsystems and their nodes.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ndxp_core::MemberId;
use ndxp_registry::model::{Member, NewRegistration, Node, RegistrationRequest, Subsystem};
use ndxp_registry::registration::{verify_auth_certificate, MAX_REQUEST_BYTES};
use serde::Deserialize;
use utoipa::ToSchema;

use crate::management::auth::Caller;
use crate::management::error::ApiError;
use crate::management::extract::{
    ApiJson, ApiPath, MemberPath, NodeCertPath, NodePath, SubsystemPath,
};
use crate::management::schema::{
    MemberSchema, NodeSchema, ProblemSchema, RegistrationSchema, SubsystemSchema,
};
use crate::management::AppState;

use super::in_path;

/// Body of `POST /api/v1/members`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewMember {
    /// `instance/class/code`; the instance must be this platform's.
    #[schema(value_type = String, example = "VN/GOV/000.00.00.H29")]
    pub id: MemberId,
    /// Name of the organisation.
    pub name: String,
}

/// Body of `POST /api/v1/members/{instance}/{class}/{code}/subsystems`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubsystem {
    /// The subsystem code (last segment), e.g. `CSDLDC`.
    pub code: String,
}

/// Lists members: all for an operator, its own for a member.
#[utoipa::path(get, path = "/api/v1/members", tag = "members",
    security(("bearer" = [])),
    responses((status = 200, description = "Members, sorted by id", body = Vec<MemberSchema>),
               (status = 401, description = "No valid token", body = ProblemSchema)))]
pub async fn list_members(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Member>>, ApiError> {
    let members = match caller.member() {
        None => st.admin(&caller).list_members().await?,
        Some(m) => vec![st.store.get_member(m).await?],
    };
    Ok(Json(members))
}

/// Adds a member (operator only).
#[utoipa::path(post, path = "/api/v1/members", tag = "members",
    security(("bearer" = [])), request_body = NewMember,
    responses((status = 201, description = "Added", body = MemberSchema),
               (status = 400, description = "Malformed body or identifier", body = ProblemSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 409, description = "The member exists", body = ProblemSchema)))]
pub async fn add_member(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewMember>,
) -> Result<(StatusCode, Json<Member>), ApiError> {
    caller.require_operator()?;
    let m = st.admin(&caller).add_member(&body.id, &body.name).await?;
    Ok((StatusCode::CREATED, Json(m)))
}

/// One member (an operator, or the member itself).
#[utoipa::path(get, path = "/api/v1/members/{instance}/{class}/{code}", tag = "members",
    security(("bearer" = [])), params(MemberPath),
    responses((status = 200, description = "The member", body = MemberSchema),
               (status = 403, description = "Another member's entry", body = ProblemSchema),
               (status = 404, description = "No such member", body = ProblemSchema)))]
pub async fn get_member(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<MemberPath>,
) -> Result<Json<Member>, ApiError> {
    let id = p.id()?;
    caller.require_member(&id)?;
    Ok(Json(st.store.get_member(&id).await?))
}

/// Removes a member with everything it owns (operator only).
#[utoipa::path(delete, path = "/api/v1/members/{instance}/{class}/{code}", tag = "members",
    security(("bearer" = [])), params(MemberPath),
    responses((status = 204, description = "Removed"),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 404, description = "No such member", body = ProblemSchema)))]
pub async fn remove_member(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<MemberPath>,
) -> Result<StatusCode, ApiError> {
    let id = p.id()?;
    caller.require_operator()?;
    st.admin(&caller)
        .remove_member(&id)
        .await
        .map_err(in_path)?;
    Ok(StatusCode::NO_CONTENT)
}

/// The subsystems of a member.
#[utoipa::path(get, path = "/api/v1/members/{instance}/{class}/{code}/subsystems",
    tag = "subsystems", security(("bearer" = [])), params(MemberPath),
    responses((status = 200, description = "Subsystems, sorted by id", body = Vec<SubsystemSchema>),
               (status = 403, description = "Another member's entry", body = ProblemSchema),
               (status = 404, description = "No such member", body = ProblemSchema)))]
pub async fn list_subsystems(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<MemberPath>,
) -> Result<Json<Vec<Subsystem>>, ApiError> {
    let id = p.id()?;
    caller.require_member(&id)?;
    st.store.get_member(&id).await?;
    Ok(Json(st.admin(&caller).list_subsystems(Some(&id)).await?))
}

/// Adds a subsystem to a member.
#[utoipa::path(post, path = "/api/v1/members/{instance}/{class}/{code}/subsystems",
    tag = "subsystems", security(("bearer" = [])), params(MemberPath), request_body = NewSubsystem,
    responses((status = 201, description = "Added", body = SubsystemSchema),
               (status = 400, description = "Malformed body or identifier", body = ProblemSchema),
               (status = 403, description = "Another member's entry", body = ProblemSchema),
               (status = 404, description = "No such member", body = ProblemSchema),
               (status = 409, description = "The subsystem exists", body = ProblemSchema)))]
pub async fn add_subsystem(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<MemberPath>,
    ApiJson(body): ApiJson<NewSubsystem>,
) -> Result<(StatusCode, Json<Subsystem>), ApiError> {
    let member = p.id()?;
    caller.require_member(&member)?;
    let id = member
        .subsystem(&body.code)
        .map_err(|e| ApiError::BadRequest(format!("invalid subsystem code: {e}")))?;
    st.store.get_member(&member).await?;
    let s = st.admin(&caller).add_subsystem(&id).await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// One subsystem.
#[utoipa::path(get, path = "/api/v1/members/{instance}/{class}/{code}/subsystems/{subsystem}",
    tag = "subsystems", security(("bearer" = [])), params(SubsystemPath),
    responses((status = 200, description = "The subsystem", body = SubsystemSchema),
               (status = 403, description = "Another member's entry", body = ProblemSchema),
               (status = 404, description = "No such subsystem", body = ProblemSchema)))]
pub async fn get_subsystem(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SubsystemPath>,
) -> Result<Json<Subsystem>, ApiError> {
    let id = p.id()?;
    caller.require_member(id.member())?;
    Ok(Json(st.store.get_subsystem(&id).await?))
}

/// Removes a subsystem with its services, rights and subscriptions.
#[utoipa::path(delete, path = "/api/v1/members/{instance}/{class}/{code}/subsystems/{subsystem}",
    tag = "subsystems", security(("bearer" = [])), params(SubsystemPath),
    responses((status = 204, description = "Removed"),
               (status = 403, description = "Another member's entry", body = ProblemSchema),
               (status = 404, description = "No such subsystem", body = ProblemSchema)))]
pub async fn remove_subsystem(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<SubsystemPath>,
) -> Result<StatusCode, ApiError> {
    let id = p.id()?;
    caller.require_member(id.member())?;
    st.admin(&caller)
        .remove_subsystem(&id)
        .await
        .map_err(in_path)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Lists nodes: all for an operator, its own for a member.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", security(("bearer" = [])),
    responses((status = 200, description = "Nodes, sorted by member and name", body = Vec<NodeSchema>),
               (status = 401, description = "No valid token", body = ProblemSchema)))]
pub async fn list_nodes(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Node>>, ApiError> {
    Ok(Json(st.admin(&caller).list_nodes(caller.member()).await?))
}

/// One node.
#[utoipa::path(get, path = "/api/v1/nodes/{instance}/{class}/{code}/{node}", tag = "nodes",
    security(("bearer" = [])), params(NodePath),
    responses((status = 200, description = "The node", body = NodeSchema),
               (status = 403, description = "Another member's entry", body = ProblemSchema),
               (status = 404, description = "No such node", body = ProblemSchema)))]
pub async fn get_node(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<NodePath>,
) -> Result<Json<Node>, ApiError> {
    let (member, name) = p.id()?;
    caller.require_member(&member)?;
    Ok(Json(st.store.get_node(&member, &name).await?))
}

/// Removes a node (an operator, or its member); it leaves the next global
/// configuration.
#[utoipa::path(delete, path = "/api/v1/nodes/{instance}/{class}/{code}/{node}", tag = "nodes",
    security(("bearer" = [])), params(NodePath),
    responses((status = 204, description = "Removed"),
               (status = 403, description = "Another member's entry", body = ProblemSchema),
               (status = 404, description = "No such node", body = ProblemSchema)))]
pub async fn remove_node(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<NodePath>,
) -> Result<StatusCode, ApiError> {
    let (member, name) = p.id()?;
    caller.require_member(&member)?;
    st.admin(&caller)
        .remove_node(&member, &name)
        .await
        .map_err(in_path)?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /api/v1/nodes/{instance}/{class}/{code}/{node}/certificates`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewNodeCertificate {
    /// The node's new authentication (TLS) certificate, PEM, issued by a
    /// trusted CA to this member's node, optionally followed by its
    /// intermediate CA certificates (only the first is stored).
    pub auth_cert_pem: String,
}

/// Asks for one more authentication certificate for an existing node (a
/// certificate rotation without an outage): recorded as a pending
/// registration request of kind `add_certificate`, which an operator
/// approves like a registration; then the node holds both certificates
/// and the next global configuration lists both.
#[utoipa::path(post, path = "/api/v1/nodes/{instance}/{class}/{code}/{node}/certificates",
    tag = "nodes", security(("bearer" = [])), params(NodePath), request_body = NewNodeCertificate,
    responses((status = 201, description = "Recorded as pending", body = RegistrationSchema),
               (status = 400, description = "Not an authentication certificate of this node from a trusted CA", body = ProblemSchema),
               (status = 403, description = "Another member's node", body = ProblemSchema),
               (status = 404, description = "No such node", body = ProblemSchema),
               (status = 409, description = "A pending request for the node, or the certificate is a node's already", body = ProblemSchema)))]
pub async fn add_node_certificate(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<NodePath>,
    ApiJson(body): ApiJson<NewNodeCertificate>,
) -> Result<(StatusCode, Json<RegistrationRequest>), ApiError> {
    let (member, name) = p.id()?;
    caller.require_member(&member)?;
    if body.auth_cert_pem.len() > MAX_REQUEST_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_REQUEST_BYTES,
        });
    }
    let node = st.store.get_node(&member, &name).await?;
    let fp = verify_auth_certificate(
        &body.auth_cert_pem,
        &member,
        &name,
        &[],
        st.publisher.trusted_ca_certs(),
        chrono::Utc::now(),
    )?;
    let leaf = ndxp_sign::cert::read_pem_chain(body.auth_cert_pem.as_bytes())
        .ok()
        .and_then(|c| c.into_iter().next())
        .and_then(|c| ndxp_sign::cert::write_pem_chain(&[c]).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ApiError::BadRequest("auth_cert_pem holds no certificate".into()))?;
    let new = NewRegistration {
        member,
        node: name,
        address: node.address,
        auth_cert_pem: leaf,
        auth_cert_sha256: fp,
        signed_request: String::new(),
    };
    let r = st.store.submit_registration(&new, &caller.actor()).await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// Removes one authentication certificate from a node that holds several
/// (an operator, or the node's member), at the end of a rotation; the
/// next global configuration lists only the others.
#[utoipa::path(delete, path = "/api/v1/nodes/{instance}/{class}/{code}/{node}/certificates/{sha256}",
    tag = "nodes", security(("bearer" = [])), params(NodeCertPath),
    responses((status = 200, description = "The node with its remaining certificates", body = NodeSchema),
               (status = 400, description = "Not a SHA-256 fingerprint", body = ProblemSchema),
               (status = 403, description = "Another member's node", body = ProblemSchema),
               (status = 404, description = "No such node, or the node does not hold that certificate", body = ProblemSchema),
               (status = 409, description = "It is the node's only certificate", body = ProblemSchema)))]
pub async fn remove_node_certificate(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<NodeCertPath>,
) -> Result<Json<Node>, ApiError> {
    let (member, name, fp) = p.id()?;
    caller.require_member(&member)?;
    Ok(Json(
        st.admin(&caller)
            .remove_node_certificate(&member, &name, &fp)
            .await
            .map_err(in_path)?,
    ))
}
