//! The management role (run by [`crate::server`], `ndxp-gateway serve`):
//! the global configuration [`publisher`], the API's [`metrics`], the
//! registry administration service ([`admin`]) the operator commands call,
//! the revocation check of upload signers ([`revocation`]), and here the
//! management REST API (JSON): every registry object and workflow under
//! `/api/v1`, the signed global configuration at `/globalconf` and this
//! API's OpenAPI 3.1 document at `/openapi.json`.
//!
//! Routes and their OpenAPI description are declared in one place: each
//! handler carries a `#[utoipa::path]` annotation and [`api`] registers
//! handlers only through `utoipa_axum::routes!`, so a route cannot exist
//! without being documented (a test checks both directions).
//!
//! Identifiers that contain `/` are written in paths as separate segments:
//!
//! | method | path | who |
//! |---|---|---|
//! | GET, POST | `/api/v1/members` | operator (GET: a member sees itself) |
//! | GET, DELETE | `/api/v1/members/{instance}/{class}/{code}` | GET: operator or that member; DELETE: operator |
//! | GET, POST | `/api/v1/members/{instance}/{class}/{code}/subsystems` | operator or that member |
//! | GET, DELETE | `/api/v1/members/{instance}/{class}/{code}/subsystems/{subsystem}` | operator or that member |
//! | GET | `/api/v1/nodes` | operator (a member sees its own) |
//! | GET, DELETE | `/api/v1/nodes/{instance}/{class}/{code}/{node}` | operator or that member |
//! | POST | `/api/v1/nodes/{instance}/{class}/{code}/{node}/certificates` | operator or that member (then an operator approves the request) |
//! | DELETE | `/api/v1/nodes/{instance}/{class}/{code}/{node}/certificates/{sha256}` | operator or that member |
//! | POST | `/api/v1/registrations` | anyone with a valid signed request (`application/jose`) |
//! | GET | `/api/v1/registrations` | operator (a member sees its own) |
//! | GET | `/api/v1/registrations/{id}` | operator or that member |
//! | POST | `/api/v1/registrations/{id}/approve`, `.../reject` | operator |
//! | GET, POST | `/api/v1/services` | GET: any caller; POST: operator or the provider's member |
//! | GET, PATCH, DELETE | `/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}` | GET: any caller; else operator or provider |
//! | GET | `/api/v1/services/{...6 segments}/openapi` | public |
//! | GET, POST | `/api/v1/services/{...6 segments}/access` | operator or provider |
//! | DELETE | `/api/v1/services/{...6}/access/subsystem/{g_instance}/{g_class}/{g_code}/{g_subsystem}` | operator or provider |
//! | DELETE | `/api/v1/services/{...6}/access/group/{group}` | operator or provider |
//! | GET | `/api/v1/access-rights` | operator (a member sees those on its services) |
//! | GET, POST | `/api/v1/groups` | GET: any caller; POST: operator |
//! | GET, DELETE | `/api/v1/groups/{group}` | GET: any caller; DELETE: operator |
//! | POST | `/api/v1/groups/{group}/members` | operator |
//! | DELETE | `/api/v1/groups/{group}/members/{instance}/{class}/{code}/{subsystem}` | operator |
//! | GET, POST | `/api/v1/subscriptions` | GET: filtered to the caller; POST: operator or client's member |
//! | GET | `/api/v1/subscriptions/{id}` | operator, client's or provider's member |
//! | POST | `/api/v1/subscriptions/{id}/approve`, `.../reject` | operator or provider's member |
//! | POST | `/api/v1/subscriptions/{id}/cancel` | operator, client's or provider's member |
//! | GET, POST | `/api/v1/credentials` | operator |
//! | POST | `/api/v1/credentials/{id}/revoke` | operator |
//! | GET | `/api/v1/audit?after=&limit=` | operator |
//! | GET | `/api/v1/diagnose` | operator ([`crate::diagnose`]: every dependency checked) |
//! | POST | `/api/v1/monitoring/status` | a node, signed (`application/jose`) |
//! | GET | `/api/v1/monitoring/status` | operator |
//! | POST | `/api/v1/reconciliation/summaries` | a node or provider member, signed |
//! | POST | `/api/v1/reconciliation/drilldowns/poll` | a node, signed |
//! | POST | `/api/v1/reconciliation/drilldowns/{id}` | the node asked, signed |
//! | GET | `/api/v1/reconciliation/report?period=&format=` | operator |
//! | GET, POST | `/api/v1/gateway/services` | GET: filtered to the caller; POST: operator or provider |
//! | GET, PATCH | `/api/v1/gateway/services/{...6 segments}` | operator or provider |
//! | POST | `/api/v1/gateway/services/{...6}/publish` | operator |
//! | POST | `/api/v1/gateway/services/{...6}/withdraw` | operator or provider |
//! | GET, POST | `/api/v1/gateway/credentials` | GET: filtered to the caller; POST: operator or client's member |
//! | GET | `/api/v1/gateway/credentials/{id}` | operator or client's member |
//! | POST | `/api/v1/gateway/credentials/{id}/rotate`, `.../revoke` | operator or client's member |
//! | PUT | `/api/v1/gateway/credentials/{id}/ranges` | operator or client's member |
//! | GET, PUT | `/api/v1/gateway/subscriptions/{id}/limits` | GET: involved members; PUT: operator or provider |
//! | GET | `/globalconf` | public |
//! | GET | `/openapi.json` | public |
//!
//! Errors are problem+json; see [`error`] for the status and code of each,
//! and [`problems`] for how the document lists them.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request};
use axum::middleware;
use axum::Router;
use ndxp_core::{InstanceId, MemberId};
use ndxp_registry::store::RegistryStore;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi};
use utoipa::Modify as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use self::metrics::Metrics;
use self::publisher::Publisher;

pub mod auth;
pub mod catalog;
pub mod error;
pub mod extract;
pub mod handlers;
pub mod metrics;
pub mod problems;
pub mod publisher;
pub mod registry;
pub mod revocation;
pub mod schema;

use error::ApiError;
use handlers::{
    admin, gateway, groups, members, monitoring, public, registrations, services, subscriptions,
};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    /// The registry.
    pub(crate) store: Arc<dyn RegistryStore>,
    /// Builds and serves the global configuration.
    pub(crate) publisher: Arc<Publisher>,
    /// The instance every identifier must belong to.
    pub(crate) instance: InstanceId,
    /// `[management] max_body_bytes`.
    pub(crate) max_body_bytes: usize,
    /// The served OpenAPI document, serialised once.
    pub(crate) openapi_json: Arc<String>,
    /// `[monitoring]` and the gateway's log.
    pub(crate) monitoring: Arc<crate::monitoring::MonitoringState>,
    /// Revocation of the signers of registration requests and uploads.
    pub(crate) revocation: Arc<revocation::SignerRevocation>,
}

impl AppState {
    /// The registry service ([`registry::Admin`]) acting as `caller`: what
    /// the handlers of members, subsystems, nodes, registration requests
    /// and credentials call, as the command line does.
    pub(crate) fn admin(&self, caller: &auth::Caller) -> registry::Admin {
        registry::Admin::new(self.store.clone(), self.instance.clone(), caller.actor())
    }

    /// Refuses a member of another instance (400), with the registry
    /// service's check.
    pub(crate) fn check_instance(&self, m: &MemberId) -> Result<(), ApiError> {
        Ok(registry::check_instance(&self.instance, "member", m, m)?)
    }
}

/// Every route with its OpenAPI description. Handlers are registered only
/// here and only through `routes!`; routes that share a path share one
/// `routes!` call.
pub fn api() -> OpenApiRouter<AppState> {
    let mut base = OpenApi::default();
    base.info = InfoBuilder::new()
        .title("NDXP management API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Members, subsystems, nodes, registration requests, services, groups, access \
             rights, subscriptions, credentials and the audit trail of an NDXP registry; \
             the signed global configuration; connection status and reconciliation. \
             Errors are application/problem+json.",
        ))
        .build();
    let mut components = utoipa::openapi::Components::new();
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    base.components = Some(components);
    OpenApiRouter::with_openapi(base)
        .routes(routes!(members::list_members, members::add_member))
        .routes(routes!(members::get_member, members::remove_member))
        .routes(routes!(members::list_subsystems, members::add_subsystem))
        .routes(routes!(members::get_subsystem, members::remove_subsystem))
        .routes(routes!(members::list_nodes))
        .routes(routes!(members::get_node, members::remove_node))
        .routes(routes!(members::add_node_certificate))
        .routes(routes!(members::remove_node_certificate))
        .routes(routes!(
            registrations::submit_registration,
            registrations::list_registrations
        ))
        .routes(routes!(registrations::get_registration))
        .routes(routes!(registrations::approve_registration))
        .routes(routes!(registrations::reject_registration))
        .routes(routes!(services::list_services, services::add_service))
        .routes(routes!(
            services::get_service,
            services::update_service,
            services::remove_service
        ))
        .routes(routes!(services::get_service_openapi))
        .routes(routes!(services::list_access, services::grant_access))
        .routes(routes!(services::revoke_subsystem_access))
        .routes(routes!(services::revoke_group_access))
        .routes(routes!(services::list_all_access))
        .routes(routes!(groups::list_groups, groups::add_group))
        .routes(routes!(groups::get_group, groups::remove_group))
        .routes(routes!(groups::add_group_member))
        .routes(routes!(groups::remove_group_member))
        .routes(routes!(
            subscriptions::list_subscriptions,
            subscriptions::request_subscription
        ))
        .routes(routes!(subscriptions::get_subscription))
        .routes(routes!(subscriptions::approve_subscription))
        .routes(routes!(subscriptions::reject_subscription))
        .routes(routes!(subscriptions::cancel_subscription))
        .routes(routes!(admin::list_credentials, admin::create_credential))
        .routes(routes!(admin::revoke_credential))
        .routes(routes!(admin::list_audit))
        .routes(routes!(admin::diagnose))
        .routes(routes!(monitoring::post_status, monitoring::list_status))
        .routes(routes!(monitoring::post_summary))
        .routes(routes!(monitoring::poll_drilldowns))
        .routes(routes!(monitoring::answer_drilldown))
        .routes(routes!(monitoring::get_report))
        .routes(routes!(
            gateway::list_gateway_services,
            gateway::register_gateway_service
        ))
        .routes(routes!(
            gateway::get_gateway_service,
            gateway::update_gateway_service
        ))
        .routes(routes!(gateway::publish_gateway_service))
        .routes(routes!(gateway::withdraw_gateway_service))
        .routes(routes!(
            gateway::list_gateway_credentials,
            gateway::create_gateway_credentials
        ))
        .routes(routes!(gateway::get_gateway_credentials))
        .routes(routes!(gateway::rotate_gateway_credentials))
        .routes(routes!(gateway::set_gateway_credential_ranges))
        .routes(routes!(gateway::revoke_gateway_credentials))
        .routes(routes!(
            gateway::get_subscription_limits,
            gateway::set_subscription_limits
        ))
        .routes(routes!(public::get_globalconf))
        .routes(routes!(public::get_openapi))
}

/// The OpenAPI document of the management API, as served at
/// `/openapi.json`: the operations of [`api`] with the problem answers of
/// [`problems::ProblemResponses`].
pub fn openapi() -> OpenApi {
    let mut doc = api().into_openapi();
    problems::ProblemResponses.modify(&mut doc);
    doc
}

async fn no_route(req: Request) -> ApiError {
    ApiError::NoRoute {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    }
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed {
        method: req.method().to_string(),
        path: req.uri().path().to_string(),
    }
}

/// The management router with its state: every route of [`api`], the
/// body limit, problem+json for unknown routes and methods, and request
/// metrics.
pub fn router(
    store: Arc<dyn RegistryStore>,
    publisher: Arc<Publisher>,
    instance: InstanceId,
    max_body_bytes: usize,
    metrics: Arc<Metrics>,
    monitoring: crate::monitoring::MonitoringState,
) -> Router {
    let (routes, mut doc) = api().split_for_parts();
    problems::ProblemResponses.modify(&mut doc);
    let openapi_json = doc.to_pretty_json().unwrap_or_else(|_| "{}".to_string());
    let revocation = revocation::SignerRevocation::new(
        publisher.trusted_ca_certs().to_vec(),
        publisher.ocsp_urls(),
        reqwest::Client::builder()
            .no_proxy()
            .build()
            .unwrap_or_default(),
    );
    let state = AppState {
        store,
        publisher,
        instance,
        max_body_bytes,
        openapi_json: Arc::new(openapi_json),
        monitoring: Arc::new(monitoring),
        revocation: Arc::new(revocation),
    };
    routes
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
        .with_state(state)
}
