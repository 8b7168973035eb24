//! The central gateway's lifecycle (`docs/gateway.md`): services offered
//! through the gateway, consumers' OAuth2 client credentials and
//! per-subscription limits. Subscriptions themselves (request, approve,
//! reject, cancel) are the `/api/v1/subscriptions` routes.
//!
//! These routes need the gateway part of the registry, which `ndxp-gateway
//! serve` ([`crate::server::run`], [`crate::server::run_roles`]) provides;
//! a router embedded with only a [`ndxp_registry::store::RegistryStore`]
//! ([`crate::server::run_with_listeners`]) answers them with 500.

use std::sync::Arc;

use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::{Extension, Json};
use ipnet::IpNet;
use ndxp_core::{ServiceId, SubsystemId};
use ndxp_registry::store::gateway::{
    BackendTls, ClientCertificate, GatewayApp, GatewayService, GatewayServiceState,
    GatewaySettings, GatewaySettingsUpdate, GatewayStore, SubscriptionLimits,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::gateway::service::{
    create_credentials, register_certificate, rotate_credentials, IssuedCredentials, ServiceError,
};
use crate::management::auth::Caller;
use crate::management::error::ApiError;
use crate::management::extract::{
    ApiJson, ApiPath, ApiQuery, OptionalJson, RecordPath, ServicePath,
};
use crate::management::schema::ProblemSchema;
use crate::management::AppState;

/// The gateway part of the registry, put in the request extensions by the
/// server.
#[derive(Clone)]
pub struct GatewayRegistry(pub Arc<dyn GatewayStore>);

impl FromRequestParts<AppState> for GatewayRegistry {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Extension::<GatewayRegistry>::from_request_parts(parts, state).await {
            Ok(Extension(r)) => Ok(r),
            Err(_) => Err(ApiError::Internal(
                "the gateway routes need the SQL registry: start the server with \
                 server::run or server::run_roles"
                    .into(),
            )),
        }
    }
}

/// The CA certificates client certificates must chain to
/// ([`crate::config::GatewayConfig::client_cert_anchors`]), put in the
/// request extensions by the server when the gateway role runs. Without
/// them a registered certificate is only checked for expiry here (the
/// gateway checks its chain on each use).
#[derive(Clone)]
pub struct ClientCaAnchors(pub Arc<Vec<ndxp_sign::openssl::x509::X509>>);

fn service_err(e: ServiceError) -> ApiError {
    match e {
        ServiceError::Store(s) => ApiError::from(s),
        ServiceError::Invalid(m) => ApiError::BadRequest(m),
        ServiceError::NotOwner(m) => ApiError::Forbidden(m),
        other => ApiError::Internal(other.to_string()),
    }
}

/// Body of `POST /api/v1/gateway/services`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewGatewayService {
    /// The service version; its provider subsystem must exist.
    #[schema(value_type = String, example = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1")]
    pub service: ServiceId,
    /// What the service does (required when it is new to the catalogue).
    #[serde(default)]
    pub description: Option<String>,
    /// Its OpenAPI document (a JSON object).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub openapi: Option<serde_json::Value>,
    /// Base URL of the provider's backend.
    #[schema(example = "http://10.0.0.5:8080/api")]
    pub backend_url: String,
    /// Backend timeout, milliseconds (default 30000).
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Default rate per subscription, requests per second (0 = unlimited).
    #[serde(default)]
    pub rate_per_sec: Option<u64>,
    /// Default burst per subscription.
    #[serde(default)]
    pub burst: Option<u64>,
    /// Default quota per subscription, requests per UTC day (0 = unlimited).
    #[serde(default)]
    pub quota_per_day: Option<u64>,
    /// Sign forwarded requests (DigiSign adapter).
    #[serde(default)]
    pub sign_requests: Option<bool>,
    /// Require and verify signed responses.
    #[serde(default)]
    pub verify_responses: Option<bool>,
    /// TLS files towards the backend (operator only).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub backend_tls: Option<BackendTls>,
}

/// Query of `GET /api/v1/gateway/services`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ProviderQuery {
    /// Only the services of this provider subsystem.
    #[param(value_type = Option<String>)]
    pub provider: Option<SubsystemId>,
}

fn may_see_service(caller: &Caller, s: &ServiceId) -> Result<(), ApiError> {
    caller.require_member(s.member())
}

fn tls_needs_operator(caller: &Caller, tls: Option<&BackendTls>) -> Result<(), ApiError> {
    if tls.is_some_and(|t| !t.is_empty()) && !caller.is_operator() {
        return Err(ApiError::Forbidden(
            "only an operator may name TLS files on the gateway host".into(),
        ));
    }
    Ok(())
}

/// Registers a service version on the gateway (an operator, or the
/// provider's member). It answers once an operator publishes it.
#[utoipa::path(post, path = "/api/v1/gateway/services", tag = "gateway",
    security(("bearer" = [])), request_body = NewGatewayService,
    responses((status = 201, description = "Registered", body = Object),
               (status = 400, description = "Malformed body, bad backend URL, no such provider", body = ProblemSchema),
               (status = 403, description = "Another member's service", body = ProblemSchema),
               (status = 409, description = "Already on the gateway", body = ProblemSchema)))]
pub async fn register_gateway_service(
    State(st): State<AppState>,
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiJson(body): ApiJson<NewGatewayService>,
) -> Result<(StatusCode, Json<GatewayService>), ApiError> {
    st.check_instance(body.service.member())?;
    may_see_service(&caller, &body.service)?;
    tls_needs_operator(&caller, body.backend_tls.as_ref())?;
    let update = GatewaySettingsUpdate {
        backend_url: None,
        timeout_ms: body.timeout_ms,
        rate_per_sec: body.rate_per_sec,
        burst: body.burst,
        quota_per_day: body.quota_per_day,
        sign_requests: body.sign_requests,
        verify_responses: body.verify_responses,
        backend_tls: body.backend_tls,
    };
    let settings = update.apply(&GatewaySettings::new(body.backend_url));
    let openapi = body.openapi.map(|v| v.to_string());
    let g = reg
        .register_gateway_service(
            &body.service,
            body.description.as_deref(),
            openapi.as_deref(),
            &settings,
            &caller.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(g)))
}

/// Gateway services: all for an operator, a member's own otherwise.
#[utoipa::path(get, path = "/api/v1/gateway/services", tag = "gateway",
    security(("bearer" = [])), params(ProviderQuery),
    responses((status = 200, description = "Gateway services, by id", body = Vec<Object>)))]
pub async fn list_gateway_services(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiQuery(q): ApiQuery<ProviderQuery>,
) -> Result<Json<Vec<GatewayService>>, ApiError> {
    let mut v = reg.list_gateway_services(q.provider.as_ref()).await?;
    v.retain(|g| caller.may_act_for(g.service.member()));
    Ok(Json(v))
}

/// One gateway service (an operator, or the provider's member).
#[utoipa::path(get,
    path = "/api/v1/gateway/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}",
    tag = "gateway", security(("bearer" = [])), params(ServicePath),
    responses((status = 200, description = "The gateway service", body = Object),
               (status = 403, description = "Another member's service", body = ProblemSchema),
               (status = 404, description = "Not on the gateway", body = ProblemSchema)))]
pub async fn get_gateway_service(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<ServicePath>,
) -> Result<Json<GatewayService>, ApiError> {
    let id = p.id()?;
    may_see_service(&caller, &id)?;
    Ok(Json(reg.get_gateway_service(&id).await?))
}

/// Changes a gateway service's backend, limits or signing; effective on
/// the next call (an operator, or the provider's member; the backend URL
/// of a published service only an operator).
#[utoipa::path(patch,
    path = "/api/v1/gateway/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}",
    tag = "gateway", security(("bearer" = [])), params(ServicePath),
    request_body = GatewaySettingsUpdate,
    responses((status = 200, description = "Updated", body = Object),
               (status = 400, description = "Bad value", body = ProblemSchema),
               (status = 403, description = "Another member's service, or a published service's backend_url or backend TLS by a member", body = ProblemSchema),
               (status = 404, description = "Not on the gateway", body = ProblemSchema)))]
pub async fn update_gateway_service(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<ServicePath>,
    ApiJson(update): ApiJson<GatewaySettingsUpdate>,
) -> Result<Json<GatewayService>, ApiError> {
    let id = p.id()?;
    may_see_service(&caller, &id)?;
    tls_needs_operator(&caller, update.backend_tls.as_ref())?;
    if update.backend_url.is_some() && !caller.is_operator() {
        // Publishing is the operator's review of where the gateway sends
        // traffic; a provider may not move a published service elsewhere.
        let current = reg.get_gateway_service(&id).await?;
        if current.state == GatewayServiceState::Published {
            return Err(ApiError::Forbidden(
                "the service is published: only an operator changes its backend_url \
                 (or withdraw it, change it, and have it published again)"
                    .into(),
            ));
        }
    }
    Ok(Json(
        reg.update_gateway_service(&id, &update, &caller.actor())
            .await?,
    ))
}

/// Publishes a registered or withdrawn service (an operator).
#[utoipa::path(post,
    path = "/api/v1/gateway/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}/publish",
    tag = "gateway", security(("bearer" = [])), params(ServicePath),
    responses((status = 200, description = "Published", body = Object),
               (status = 403, description = "Not an operator", body = ProblemSchema),
               (status = 404, description = "Not on the gateway", body = ProblemSchema),
               (status = 409, description = "Already published", body = ProblemSchema)))]
pub async fn publish_gateway_service(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<ServicePath>,
) -> Result<Json<GatewayService>, ApiError> {
    let id = p.id()?;
    caller.require_operator()?;
    Ok(Json(
        reg.set_gateway_service_state(&id, GatewayServiceState::Published, &caller.actor())
            .await?,
    ))
}

/// Withdraws (cancels) a service: the next call is refused (an operator,
/// or the provider's member).
#[utoipa::path(post,
    path = "/api/v1/gateway/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}/withdraw",
    tag = "gateway", security(("bearer" = [])), params(ServicePath),
    responses((status = 200, description = "Withdrawn", body = Object),
               (status = 403, description = "Another member's service", body = ProblemSchema),
               (status = 404, description = "Not on the gateway", body = ProblemSchema),
               (status = 409, description = "Already withdrawn", body = ProblemSchema)))]
pub async fn withdraw_gateway_service(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<ServicePath>,
) -> Result<Json<GatewayService>, ApiError> {
    let id = p.id()?;
    may_see_service(&caller, &id)?;
    Ok(Json(
        reg.set_gateway_service_state(&id, GatewayServiceState::Withdrawn, &caller.actor())
            .await?,
    ))
}

/// Body of `POST /api/v1/gateway/credentials`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredentials {
    /// The consumer subsystem.
    #[schema(value_type = String, example = "VN/GOV/000.00.00.G22/QLHT")]
    pub client: SubsystemId,
    /// Allowed source address ranges (CIDR); empty or absent: any.
    #[serde(default)]
    #[schema(value_type = Vec<String>, example = json!(["10.0.0.0/8"]))]
    pub allowed_cidrs: Vec<IpNet>,
    /// A client certificate (PEM; its CA certificates may follow) to
    /// register instead of creating a client secret: calls to the gateway
    /// over HTTPS presenting it act as `client`. It must be valid now, fit
    /// for TLS client authentication, chain to the gateway's client CAs and
    /// be issued to `client`'s own member (one of its nodes); another
    /// member's certificate is refused with 403.
    #[serde(default)]
    pub certificate: Option<String>,
}

/// Body of `PUT /api/v1/gateway/credentials/{id}/ranges`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RangesBody {
    /// Allowed source address ranges (CIDR); empty: any.
    #[schema(value_type = Vec<String>)]
    pub allowed_cidrs: Vec<IpNet>,
}

/// New or rotated credentials: the secret is shown only in this answer.
/// Certificate credentials have no secret, and show the certificate.
#[derive(Debug, Serialize, ToSchema)]
pub struct CredentialsView {
    /// The OAuth2 `client_id` (the credentials' id).
    pub client_id: String,
    /// The OAuth2 `client_secret`; stored only as a salted hash. Absent for
    /// certificate credentials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// The registered client certificate: `sha256` (fingerprint of its
    /// DER, lowercase hex), `subject`, `not_after`. Absent for secrets.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub certificate: Option<ClientCertificate>,
    /// The consumer subsystem.
    #[schema(value_type = String)]
    pub client: SubsystemId,
    /// The credentials' generation.
    pub generation: i64,
    /// Allowed source address ranges; empty: any.
    #[schema(value_type = Vec<String>)]
    pub allowed_cidrs: Vec<IpNet>,
}

impl From<IssuedCredentials> for CredentialsView {
    fn from(c: IssuedCredentials) -> Self {
        Self {
            client_id: c.app.client_id,
            client_secret: Some(c.client_secret),
            certificate: None,
            client: c.app.client,
            generation: c.app.generation,
            allowed_cidrs: c.app.allowed_cidrs,
        }
    }
}

/// `{id}` in a path: an OAuth2 client id.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ClientIdPath {
    /// The OAuth2 client id, e.g. `ndxpc_3f2a...`.
    #[serde(rename = "id")]
    #[param(rename = "id")]
    pub client_id: String,
}

/// Query of `GET /api/v1/gateway/credentials`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ClientQuery {
    /// Only the credentials of this consumer subsystem.
    #[param(value_type = Option<String>)]
    pub client: Option<SubsystemId>,
}

async fn owned_app(
    reg: &dyn GatewayStore,
    caller: &Caller,
    client_id: &str,
) -> Result<GatewayApp, ApiError> {
    let app = reg.get_gateway_app(client_id).await?;
    if !caller.may_act_for(app.client.member()) {
        return Err(ApiError::Forbidden(
            "the credentials belong to another member".into(),
        ));
    }
    Ok(app)
}

/// Creates client credentials for a consumer subsystem (an operator, or
/// the subsystem's member): a client secret, in this answer only, or with
/// `certificate`, that client certificate.
#[utoipa::path(post, path = "/api/v1/gateway/credentials", tag = "gateway",
    security(("bearer" = [])), request_body = NewCredentials,
    responses((status = 201, description = "Created", body = CredentialsView),
               (status = 400, description = "No such subsystem, bad range, unusable certificate", body = ProblemSchema),
               (status = 403, description = "Another member's subsystem, or a certificate of another member", body = ProblemSchema),
               (status = 409, description = "The certificate is already registered", body = ProblemSchema)))]
pub async fn create_gateway_credentials(
    State(st): State<AppState>,
    GatewayRegistry(reg): GatewayRegistry,
    anchors: Option<Extension<ClientCaAnchors>>,
    caller: Caller,
    ApiJson(body): ApiJson<NewCredentials>,
) -> Result<(StatusCode, Json<CredentialsView>), ApiError> {
    st.check_instance(body.client.member())?;
    caller.require_member(body.client.member())?;
    if let Some(pem) = &body.certificate {
        let anchors = anchors.map(|Extension(a)| a.0);
        let app = register_certificate(
            reg.as_ref(),
            &body.client,
            pem.as_bytes(),
            &body.allowed_cidrs,
            anchors.as_deref().map(Vec::as_slice),
            &caller.actor(),
        )
        .await
        .map_err(service_err)?;
        return Ok((
            StatusCode::CREATED,
            Json(CredentialsView {
                client_id: app.client_id,
                client_secret: None,
                certificate: app.certificate,
                client: app.client,
                generation: app.generation,
                allowed_cidrs: app.allowed_cidrs,
            }),
        ));
    }
    let issued = create_credentials(
        reg.as_ref(),
        &body.client,
        &body.allowed_cidrs,
        &caller.actor(),
    )
    .await
    .map_err(service_err)?;
    Ok((StatusCode::CREATED, Json(issued.into())))
}

/// Client credentials (never their secrets): all for an operator, a
/// member's own otherwise.
#[utoipa::path(get, path = "/api/v1/gateway/credentials", tag = "gateway",
    security(("bearer" = [])), params(ClientQuery),
    responses((status = 200, description = "Credentials, oldest first", body = Vec<Object>)))]
pub async fn list_gateway_credentials(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiQuery(q): ApiQuery<ClientQuery>,
) -> Result<Json<Vec<GatewayApp>>, ApiError> {
    let mut v = reg.list_gateway_apps(q.client.as_ref()).await?;
    v.retain(|a| caller.may_act_for(a.client.member()));
    Ok(Json(v))
}

/// One set of credentials (without the secret).
#[utoipa::path(get, path = "/api/v1/gateway/credentials/{id}", tag = "gateway",
    security(("bearer" = [])), params(ClientIdPath),
    responses((status = 200, description = "The credentials", body = Object),
               (status = 403, description = "Another member's credentials", body = ProblemSchema),
               (status = 404, description = "No such client id", body = ProblemSchema)))]
pub async fn get_gateway_credentials(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<ClientIdPath>,
) -> Result<Json<GatewayApp>, ApiError> {
    Ok(Json(owned_app(reg.as_ref(), &caller, &p.client_id).await?))
}

/// Rotates the secret: the new one is in this answer; tokens issued
/// before are refused from the next call.
#[utoipa::path(post, path = "/api/v1/gateway/credentials/{id}/rotate", tag = "gateway",
    security(("bearer" = [])), params(ClientIdPath),
    responses((status = 200, description = "Rotated", body = CredentialsView),
               (status = 403, description = "Another member's credentials", body = ProblemSchema),
               (status = 404, description = "No such client id", body = ProblemSchema),
               (status = 409, description = "Revoked", body = ProblemSchema)))]
pub async fn rotate_gateway_credentials(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<ClientIdPath>,
) -> Result<Json<CredentialsView>, ApiError> {
    owned_app(reg.as_ref(), &caller, &p.client_id).await?;
    let issued = rotate_credentials(reg.as_ref(), &p.client_id, &caller.actor())
        .await
        .map_err(service_err)?;
    Ok(Json(issued.into()))
}

/// Replaces the allowed source address ranges.
#[utoipa::path(put, path = "/api/v1/gateway/credentials/{id}/ranges", tag = "gateway",
    security(("bearer" = [])), params(ClientIdPath), request_body = RangesBody,
    responses((status = 200, description = "Updated", body = Object),
               (status = 400, description = "Bad range", body = ProblemSchema),
               (status = 403, description = "Another member's credentials", body = ProblemSchema),
               (status = 404, description = "No such client id", body = ProblemSchema)))]
pub async fn set_gateway_credential_ranges(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<ClientIdPath>,
    ApiJson(body): ApiJson<RangesBody>,
) -> Result<Json<GatewayApp>, ApiError> {
    owned_app(reg.as_ref(), &caller, &p.client_id).await?;
    Ok(Json(
        reg.set_gateway_app_cidrs(&p.client_id, &body.allowed_cidrs, &caller.actor())
            .await?,
    ))
}

/// Revokes the credentials: their tokens are refused from the next call.
#[utoipa::path(post, path = "/api/v1/gateway/credentials/{id}/revoke", tag = "gateway",
    security(("bearer" = [])), params(ClientIdPath),
    responses((status = 200, description = "Revoked", body = Object),
               (status = 403, description = "Another member's credentials", body = ProblemSchema),
               (status = 404, description = "No such client id", body = ProblemSchema),
               (status = 409, description = "Already revoked", body = ProblemSchema)))]
pub async fn revoke_gateway_credentials(
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<ClientIdPath>,
) -> Result<Json<GatewayApp>, ApiError> {
    owned_app(reg.as_ref(), &caller, &p.client_id).await?;
    Ok(Json(
        reg.revoke_gateway_app(&p.client_id, &caller.actor())
            .await?,
    ))
}

/// A subscription's limit overrides (the client's or provider's member,
/// or an operator).
#[utoipa::path(get, path = "/api/v1/gateway/subscriptions/{id}/limits", tag = "gateway",
    security(("bearer" = [])), params(RecordPath),
    responses((status = 200, description = "The overrides; null keeps the service default", body = Object),
               (status = 403, description = "Neither the client's nor the provider's member", body = ProblemSchema),
               (status = 404, description = "No such subscription", body = ProblemSchema)))]
pub async fn get_subscription_limits(
    State(st): State<AppState>,
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
) -> Result<Json<SubscriptionLimits>, ApiError> {
    let id = p.id()?;
    let s = st.store.get_subscription(id).await?;
    if !(caller.may_act_for(s.client.member()) || caller.may_act_for(s.service.member())) {
        return Err(ApiError::Forbidden(
            "the subscription belongs to other members".into(),
        ));
    }
    Ok(Json(reg.subscription_limits(id).await?))
}

/// Sets a subscription's own rate, burst and quota (an operator, or the
/// provider's member); `null` keeps the service's default.
#[utoipa::path(put, path = "/api/v1/gateway/subscriptions/{id}/limits", tag = "gateway",
    security(("bearer" = [])), params(RecordPath), request_body(content = Option<Object>),
    responses((status = 200, description = "Set", body = Object),
               (status = 403, description = "Not the provider", body = ProblemSchema),
               (status = 404, description = "No such subscription", body = ProblemSchema)))]
pub async fn set_subscription_limits(
    State(st): State<AppState>,
    GatewayRegistry(reg): GatewayRegistry,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
    OptionalJson(body): OptionalJson<SubscriptionLimits>,
) -> Result<Json<SubscriptionLimits>, ApiError> {
    let id = p.id()?;
    let s = st.store.get_subscription(id).await?;
    if !caller.may_act_for(s.service.member()) {
        return Err(ApiError::Forbidden(
            "only the provider's member or an operator sets limits".into(),
        ));
    }
    Ok(Json(
        reg.set_subscription_limits(id, &body, &caller.actor())
            .await?,
    ))
}
