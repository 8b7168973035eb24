//! Services (the catalogue) and the access rights on them.

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use ndxp_core::id::check_segment;
use ndxp_core::{ServiceId, SubsystemId};
use ndxp_registry::model::{AccessRight, Grantee, Service, ServiceUpdate};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::management::auth::Caller;
use crate::management::error::ApiError;
use crate::management::extract::{
    ApiJson, ApiPath, ApiQuery, ServiceGroupGranteePath, ServicePath, ServiceSubsystemGranteePath,
};
use crate::management::schema::{AccessRightSchema, ProblemSchema};
use crate::management::AppState;

// A service as the API shows it: the stored OpenAPI text is parsed back
// into JSON. The doc comment below is its schema's description.
/// A service version of a provider subsystem.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Service)]
pub struct ServiceView {
    /// `instance/class/code/subsystem/service/version`.
    #[schema(value_type = String)]
    id: ServiceId,
    /// What it does.
    description: String,
    /// The OpenAPI document, when one is registered.
    openapi: Option<serde_json::Value>,
    /// When it is (or will be) deprecated.
    deprecated_at: Option<DateTime<Utc>>,
    /// When it stops answering.
    sunset_at: Option<DateTime<Utc>>,
    /// When it was added.
    created_at: DateTime<Utc>,
}

impl From<Service> for ServiceView {
    fn from(s: Service) -> Self {
        let openapi = s
            .openapi
            .map(|t| serde_json::from_str(&t).unwrap_or(serde_json::Value::String(t)));
        Self {
            id: s.id,
            description: s.description,
            openapi,
            deprecated_at: s.deprecated_at,
            sunset_at: s.sunset_at,
            created_at: s.created_at,
        }
    }
}

/// Body of `POST /api/v1/services`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewService {
    /// `instance/class/code/subsystem/service/version`; the provider
    /// subsystem must exist.
    #[schema(value_type = String, example = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1")]
    pub id: ServiceId,
    /// What the service does.
    pub description: String,
    /// The service's OpenAPI document (a JSON object), if any.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub openapi: Option<serde_json::Value>,
}

/// Body of `PATCH` on a service: an absent key leaves the field alone,
/// `null` clears it.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServicePatch {
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New OpenAPI document (JSON object), or `null` to remove it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Object>)]
    pub openapi: Option<Option<serde_json::Value>>,
    /// Deprecation time (RFC 3339), or `null` to clear it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub deprecated_at: Option<Option<DateTime<Utc>>>,
    /// Sunset time (RFC 3339), or `null` to clear it; not before
    /// `deprecated_at`.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<DateTime<Utc>>)]
    pub sunset_at: Option<Option<DateTime<Utc>>>,
}

fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Query of `GET /api/v1/services`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ServiceQuery {
    /// Only services of this provider subsystem (`VN/GOV/.../CSDLDC`).
    #[param(value_type = Option<String>)]
    pub provider: Option<SubsystemId>,
}

/// Who receives an access right: exactly one of `subsystem` or `group`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum GranteeBody {
    /// A client subsystem id.
    #[schema(value_type = String)]
    Subsystem(SubsystemId),
    /// A group code.
    Group(String),
}

impl GranteeBody {
    fn into_grantee(self) -> Result<Grantee, ApiError> {
        Ok(match self {
            GranteeBody::Subsystem(s) => Grantee::Subsystem(s),
            GranteeBody::Group(g) => {
                check_segment("group", &g)
                    .map_err(|e| ApiError::BadRequest(format!("invalid group code: {e}")))?;
                Grantee::Group(g)
            }
        })
    }
}

fn openapi_text(v: &serde_json::Value) -> Result<String, ApiError> {
    if !v.is_object() {
        return Err(ApiError::BadRequest(
            "openapi must be a JSON object (the OpenAPI document)".into(),
        ));
    }
    Ok(v.to_string())
}

/// Lists the service catalogue (any authenticated caller: the same data
/// is published in the global configuration).
#[utoipa::path(get, path = "/api/v1/services", tag = "services", security(("bearer" = [])),
    params(ServiceQuery),
    responses((status = 200, description = "Services, sorted by id", body = Vec<ServiceView>),
               (status = 400, description = "Bad query", body = ProblemSchema)))]
pub async fn list_services(
    State(st): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<ServiceQuery>,
) -> Result<Json<Vec<ServiceView>>, ApiError> {
    let list = st.store.list_services(q.provider.as_ref()).await?;
    Ok(Json(list.into_iter().map(ServiceView::from).collect()))
}

/// Adds a service (an operator, or the member of the provider subsystem).
#[utoipa::path(post, path = "/api/v1/services", tag = "services", security(("bearer" = [])),
    request_body = NewService,
    responses((status = 201, description = "Added", body = ServiceView),
               (status = 400, description = "Malformed body, or no such provider subsystem", body = ProblemSchema),
               (status = 403, description = "Another member's subsystem", body = ProblemSchema),
               (status = 409, description = "The service exists", body = ProblemSchema)))]
pub async fn add_service(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewService>,
) -> Result<(StatusCode, Json<ServiceView>), ApiError> {
    caller.require_member(body.id.member())?;
    let openapi = body.openapi.as_ref().map(openapi_text).transpose()?;
    let s = st
        .store
        .add_service(
            &body.id,
            &body.description,
            openapi.as_deref(),
            &caller.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(s.into())))
}

/// One service.
#[utoipa::path(get,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}",
    tag = "services", security(("bearer" = [])), params(ServicePath),
    responses((status = 200, description = "The service", body = ServiceView),
               (status = 404, description = "No such service", body = ProblemSchema)))]
pub async fn get_service(
    State(st): State<AppState>,
    _caller: Caller,
    ApiPath(p): ApiPath<ServicePath>,
) -> Result<Json<ServiceView>, ApiError> {
    Ok(Json(st.store.get_service(&p.id()?).await?.into()))
}

/// Changes description, OpenAPI document, deprecation or sunset.
#[utoipa::path(patch,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}",
    tag = "services", security(("bearer" = [])), params(ServicePath), request_body = ServicePatch,
    responses((status = 200, description = "The service as changed", body = ServiceView),
               (status = 400, description = "Malformed body; sunset before deprecation", body = ProblemSchema),
               (status = 403, description = "Another member's service", body = ProblemSchema),
               (status = 404, description = "No such service", body = ProblemSchema)))]
pub async fn update_service(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<ServicePath>,
    ApiJson(body): ApiJson<ServicePatch>,
) -> Result<Json<ServiceView>, ApiError> {
    let id = p.id()?;
    caller.require_member(id.member())?;
    let openapi = match &body.openapi {
        None => None,
        Some(None) => Some(None),
        Some(Some(v)) => Some(Some(openapi_text(v)?)),
    };
    let current = st.store.get_service(&id).await?;
    let deprecated = body.deprecated_at.unwrap_or(current.deprecated_at);
    let sunset = body.sunset_at.unwrap_or(current.sunset_at);
    if let (Some(d), Some(s)) = (deprecated, sunset) {
        if s < d {
            return Err(ApiError::BadRequest(
                "sunset_at must not be before deprecated_at".into(),
            ));
        }
    }
    let update = ServiceUpdate {
        description: body.description,
        openapi,
        deprecated_at: body.deprecated_at,
        sunset_at: body.sunset_at,
    };
    Ok(Json(
        st.store
            .update_service(&id, &update, &caller.actor())
            .await?
            .into(),
    ))
}

/// Removes a service with its access rights and subscriptions.
#[utoipa::path(delete,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}",
    tag = "services", security(("bearer" = [])), params(ServicePath),
    responses((status = 204, description = "Removed"),
               (status = 403, description = "Another member's service", body = ProblemSchema),
               (status = 404, description = "No such service", body = ProblemSchema)))]
pub async fn remove_service(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<ServicePath>,
) -> Result<StatusCode, ApiError> {
    let id = p.id()?;
    caller.require_member(id.member())?;
    st.store.remove_service(&id, &caller.actor()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The service's OpenAPI document, as registered. Public (no token): the
/// global configuration points nodes here (`openapi_url`).
#[utoipa::path(get,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}/openapi",
    tag = "services", params(ServicePath),
    responses((status = 200, description = "The OpenAPI document", body = Object),
               (status = 404, description = "No such service, or it has no document", body = ProblemSchema)))]
pub async fn get_service_openapi(
    State(st): State<AppState>,
    ApiPath(p): ApiPath<ServicePath>,
) -> Result<Response, ApiError> {
    let id = p.id()?;
    let s = st.store.get_service(&id).await?;
    let text = s.openapi.ok_or_else(|| {
        ApiError::from(ndxp_registry::store::StoreError::NotFound {
            what: "OpenAPI document of service",
            id: id.to_string(),
        })
    })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        text,
    )
        .into_response())
}

/// Access rights on a service (an operator, or the provider's member).
#[utoipa::path(get,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}/access",
    tag = "access rights", security(("bearer" = [])), params(ServicePath),
    responses((status = 200, description = "Grants, sorted by grantee", body = Vec<AccessRightSchema>),
               (status = 403, description = "Another member's service", body = ProblemSchema),
               (status = 404, description = "No such service", body = ProblemSchema)))]
pub async fn list_access(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<ServicePath>,
) -> Result<Json<Vec<AccessRight>>, ApiError> {
    let id = p.id()?;
    caller.require_member(id.member())?;
    st.store.get_service(&id).await?;
    Ok(Json(st.store.list_access_rights(Some(&id)).await?))
}

/// Grants a service to a subsystem or a group.
#[utoipa::path(post,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}/access",
    tag = "access rights", security(("bearer" = [])), params(ServicePath), request_body = GranteeBody,
    responses((status = 201, description = "Granted", body = AccessRightSchema),
               (status = 400, description = "Malformed body, or no such grantee", body = ProblemSchema),
               (status = 403, description = "Another member's service", body = ProblemSchema),
               (status = 404, description = "No such service", body = ProblemSchema),
               (status = 409, description = "Already granted", body = ProblemSchema)))]
pub async fn grant_access(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<ServicePath>,
    ApiJson(body): ApiJson<GranteeBody>,
) -> Result<(StatusCode, Json<AccessRight>), ApiError> {
    let id = p.id()?;
    caller.require_member(id.member())?;
    let grantee = body.into_grantee()?;
    st.store.get_service(&id).await?;
    let r = st
        .store
        .grant_access(&id, &grantee, &caller.actor())
        .await?;
    Ok((StatusCode::CREATED, Json(r)))
}

/// Revokes a grant to a subsystem.
#[utoipa::path(delete,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}/access/subsystem/{g_instance}/{g_class}/{g_code}/{g_subsystem}",
    tag = "access rights", security(("bearer" = [])), params(ServiceSubsystemGranteePath),
    responses((status = 204, description = "Revoked"),
               (status = 403, description = "Another member's service", body = ProblemSchema),
               (status = 404, description = "No such grant", body = ProblemSchema)))]
pub async fn revoke_subsystem_access(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<ServiceSubsystemGranteePath>,
) -> Result<StatusCode, ApiError> {
    let (service, grantee) = p.ids()?;
    caller.require_member(service.member())?;
    st.store
        .revoke_access(&service, &Grantee::Subsystem(grantee), &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Revokes a grant to a group.
#[utoipa::path(delete,
    path = "/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}/access/group/{group}",
    tag = "access rights", security(("bearer" = [])), params(ServiceGroupGranteePath),
    responses((status = 204, description = "Revoked"),
               (status = 403, description = "Another member's service", body = ProblemSchema),
               (status = 404, description = "No such grant", body = ProblemSchema)))]
pub async fn revoke_group_access(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<ServiceGroupGranteePath>,
) -> Result<StatusCode, ApiError> {
    let (service, group) = p.ids()?;
    caller.require_member(service.member())?;
    st.store
        .revoke_access(&service, &Grantee::Group(group), &caller.actor())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All access rights: every one for an operator, those on its own
/// services for a member.
#[utoipa::path(get, path = "/api/v1/access-rights", tag = "access rights",
    security(("bearer" = [])),
    responses((status = 200, description = "Grants, sorted by service and grantee", body = Vec<AccessRightSchema>)))]
pub async fn list_all_access(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<AccessRight>>, ApiError> {
    let mut all = st.store.list_access_rights(None).await?;
    if let Some(m) = caller.member() {
        all.retain(|r| r.service.member() == m);
    }
    Ok(Json(all))
}
