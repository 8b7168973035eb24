//! Subscriptions of the centralized model: a client subsystem asks for a
//! service; the provider (or an operator) approves or rejects; the client,
//! the provider or an operator cancels.

use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use ndxp_core::{ServiceId, SubsystemId};
use ndxp_registry::model::{Subscription, SubscriptionState};
use ndxp_registry::store::SubscriptionFilter;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use crate::management::auth::Caller;
use crate::management::error::ApiError;
use crate::management::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson, RecordPath};
use crate::management::schema::{ProblemSchema, SubscriptionSchema};
use crate::management::AppState;

/// Body of `POST /api/v1/subscriptions`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    /// The service asked for.
    #[schema(value_type = String, example = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1")]
    pub service: ServiceId,
    /// The client subsystem that will call it.
    #[schema(value_type = String, example = "VN/GOV/000.00.00.G22/QLHT")]
    pub client: SubsystemId,
    /// Free text for the provider.
    #[serde(default)]
    pub note: Option<String>,
}

/// Optional body of approve, reject and cancel.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NoteBody {
    /// Free text recorded in the history (e.g. the reason of a rejection).
    #[serde(default)]
    pub note: Option<String>,
}

/// Query of `GET /api/v1/subscriptions`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionQuery {
    /// Only subscriptions to this service.
    #[param(value_type = Option<String>)]
    pub service: Option<ServiceId>,
    /// Only subscriptions of this client subsystem.
    #[param(value_type = Option<String>)]
    pub client: Option<SubsystemId>,
    /// Only subscriptions to services of this provider subsystem.
    #[param(value_type = Option<String>)]
    pub provider: Option<SubsystemId>,
    /// Only subscriptions in this state.
    #[param(value_type = Option<String>)]
    pub state: Option<SubscriptionState>,
}

fn involves(caller: &Caller, s: &Subscription) -> bool {
    caller.may_act_for(s.client.member()) || caller.may_act_for(s.service.member())
}

/// Subscriptions: all for an operator; for a member, those where the
/// client or the provider is one of its subsystems.
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "subscriptions",
    security(("bearer" = [])), params(SubscriptionQuery),
    responses((status = 200, description = "Subscriptions, oldest first", body = Vec<SubscriptionSchema>),
               (status = 400, description = "Bad query", body = ProblemSchema)))]
pub async fn list_subscriptions(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<SubscriptionQuery>,
) -> Result<Json<Vec<Subscription>>, ApiError> {
    let filter = SubscriptionFilter {
        service: q.service,
        client: q.client,
        provider: q.provider,
        state: q.state,
    };
    let mut all = st.store.list_subscriptions(&filter).await?;
    all.retain(|s| involves(&caller, s));
    Ok(Json(all))
}

/// A client asks for a service (an operator, or the client's member).
#[utoipa::path(post, path = "/api/v1/subscriptions", tag = "subscriptions",
    security(("bearer" = [])), request_body = NewSubscription,
    responses((status = 201, description = "Requested", body = SubscriptionSchema),
               (status = 400, description = "Malformed body, or no such service or client", body = ProblemSchema),
               (status = 403, description = "The client is another member's", body = ProblemSchema),
               (status = 409, description = "Already requested or approved", body = ProblemSchema)))]
pub async fn request_subscription(
    State(st): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewSubscription>,
) -> Result<(StatusCode, Json<Subscription>), ApiError> {
    caller.require_member(body.client.member())?;
    let s = st
        .store
        .request_subscription(
            &body.service,
            &body.client,
            body.note.as_deref(),
            &caller.actor(),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(s)))
}

/// One subscription with its history.
#[utoipa::path(get, path = "/api/v1/subscriptions/{id}", tag = "subscriptions",
    security(("bearer" = [])), params(RecordPath),
    responses((status = 200, description = "The subscription", body = SubscriptionSchema),
               (status = 403, description = "Neither client nor provider", body = ProblemSchema),
               (status = 404, description = "No such subscription", body = ProblemSchema)))]
pub async fn get_subscription(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
) -> Result<Json<Subscription>, ApiError> {
    let s = st.store.get_subscription(p.id()?).await?;
    if !involves(&caller, &s) {
        return Err(forbidden());
    }
    Ok(Json(s))
}

fn forbidden() -> ApiError {
    ApiError::Forbidden("the subscription belongs to other members".into())
}

async fn transition(
    st: &AppState,
    caller: &Caller,
    p: &RecordPath,
    to: SubscriptionState,
    note: Option<String>,
) -> Result<Json<Subscription>, ApiError> {
    let id = p.id()?;
    let s = st.store.get_subscription(id).await?;
    let allowed = match to {
        // The provider decides.
        SubscriptionState::Approved | SubscriptionState::Rejected => {
            caller.may_act_for(s.service.member())
        }
        _ => involves(caller, &s),
    };
    if !allowed {
        return Err(if involves(caller, &s) {
            ApiError::Forbidden("only the provider's member or an operator decides".into())
        } else {
            forbidden()
        });
    }
    Ok(Json(
        st.store
            .transition_subscription(id, to, note.as_deref(), &caller.actor())
            .await?,
    ))
}

/// Approves a requested subscription (an operator, or the provider's member).
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/approve", tag = "subscriptions",
    security(("bearer" = [])), params(RecordPath), request_body(content = Option<NoteBody>),
    responses((status = 200, description = "Approved", body = SubscriptionSchema),
               (status = 403, description = "Not the provider", body = ProblemSchema),
               (status = 404, description = "No such subscription", body = ProblemSchema),
               (status = 409, description = "Not in a state that allows it", body = ProblemSchema)))]
pub async fn approve_subscription(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
    OptionalJson(body): OptionalJson<NoteBody>,
) -> Result<Json<Subscription>, ApiError> {
    transition(&st, &caller, &p, SubscriptionState::Approved, body.note).await
}

/// Rejects a requested subscription (an operator, or the provider's member).
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/reject", tag = "subscriptions",
    security(("bearer" = [])), params(RecordPath), request_body(content = Option<NoteBody>),
    responses((status = 200, description = "Rejected", body = SubscriptionSchema),
               (status = 403, description = "Not the provider", body = ProblemSchema),
               (status = 404, description = "No such subscription", body = ProblemSchema),
               (status = 409, description = "Not in a state that allows it", body = ProblemSchema)))]
pub async fn reject_subscription(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
    OptionalJson(body): OptionalJson<NoteBody>,
) -> Result<Json<Subscription>, ApiError> {
    transition(&st, &caller, &p, SubscriptionState::Rejected, body.note).await
}

/// Cancels a subscription; takes effect at once (an operator, the
/// client's member or the provider's member).
#[utoipa::path(post, path = "/api/v1/subscriptions/{id}/cancel", tag = "subscriptions",
    security(("bearer" = [])), params(RecordPath), request_body(content = Option<NoteBody>),
    responses((status = 200, description = "Cancelled", body = SubscriptionSchema),
               (status = 403, description = "Neither client nor provider", body = ProblemSchema),
               (status = 404, description = "No such subscription", body = ProblemSchema),
               (status = 409, description = "Already final", body = ProblemSchema)))]
pub async fn cancel_subscription(
    State(st): State<AppState>,
    caller: Caller,
    ApiPath(p): ApiPath<RecordPath>,
    OptionalJson(body): OptionalJson<NoteBody>,
) -> Result<Json<Subscription>, ApiError> {
    transition(&st, &caller, &p, SubscriptionState::Cancelled, body.note).await
}
