//! Connection status and reconciliation (`docs/monitoring.md`).
//!
//! Nodes call out only: every upload is a compact JWS (`application/jose`)
//! signed by the member's signing key and checked by
//! [`ndxp_audit::monitor::verify_envelope`], then here: the signer is not
//! revoked ([`crate::management::revocation`]), the member belongs
//! to the instance, the node is registered for that member, the content
//! concerns only the member's own subsystems, and the `jti` is new (the
//! store refuses a replay in the same transaction as the write). A refused
//! upload is stored nowhere. The listings are for operators.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use ndxp_audit::monitor::{
    verify_envelope, DrilldownAnswer, DrilldownPoll, DrilldownRequest, Envelope, NodeStatus,
    ANSWER_TYP, POLL_TYP, STATUS_TYP, SUMMARY_TYP,
};
use ndxp_audit::reconcile::{BucketKey, Period, Side, Summary};
use ndxp_core::{MemberId, NodeName};
use ndxp_registry::store::monitoring::{NewSummary, SummaryStored};
use ndxp_registry::store::StoreError;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::management::auth::Caller;
use crate::management::error::ApiError;
use crate::management::extract::{has_media_type, read_body, ApiPath, ApiQuery, RecordPath};
use crate::management::schema::ProblemSchema;
use crate::management::AppState;
use crate::monitoring::{self, ConnectionState};

/// Most drill-down requests handed out per poll.
pub const POLL_LIMIT: u32 = 100;

/// Most transaction ids in one drill-down answer.
pub const MAX_ANSWER_IDS: usize = 1_000_000;

/// Reads and verifies a signed upload of type `typ`, and checks that its
/// signer is not revoked, the member's instance and, when named, that the
/// node is registered for the member.
async fn signed<T: DeserializeOwned>(
    st: &AppState,
    req: Request,
    typ: &'static str,
    now: DateTime<Utc>,
) -> Result<(Envelope<T>, String), ApiError> {
    if !has_media_type(req.headers(), "application/jose") {
        return Err(ApiError::UnsupportedMediaType(
            "send the signed document as Content-Type: application/jose".into(),
        ));
    }
    let body = read_body(req, st).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| ApiError::BadRequest("the request body is not UTF-8 text".into()))?
        .trim()
        .to_string();
    let env: Envelope<T> = verify_envelope(&text, typ, st.publisher.trusted_ca_certs(), now)?;
    st.revocation
        .check_jws(&text, ndxp_audit::monitor::MAX_UPLOAD_BYTES, now)
        .await
        .map_err(ApiError::Revoked)?;
    st.check_instance(&env.member)?;
    if let Some(node) = &env.node {
        check_node(st, &env.member, node).await?;
    }
    Ok((env, text))
}

async fn check_node(st: &AppState, member: &MemberId, node: &NodeName) -> Result<(), ApiError> {
    match st.store.get_node(member, node).await {
        Ok(_) => Ok(()),
        Err(StoreError::NotFound { .. }) => Err(ApiError::Forbidden(format!(
            "node {node} is not registered for member {member}"
        ))),
        Err(e) => Err(e.into()),
    }
}

/// What `POST /api/v1/monitoring/status` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusAccepted {
    /// The stored report's id.
    pub id: Uuid,
    /// When management received it.
    pub received_at: DateTime<Utc>,
}

/// A node reports its status: a compact JWS of type `ndxp-node-status+json`
/// whose envelope names the member and node and carries a `NodeStatus`.
#[utoipa::path(post, path = "/api/v1/monitoring/status", tag = "monitoring",
    request_body(content = String, content_type = "application/jose",
                 description = "Compact JWS of a signed node status"),
    responses((status = 201, description = "Stored", body = StatusAccepted),
               (status = 400, description = "Malformed, stale, or its signature or certificates fail", body = ProblemSchema),
               (status = 403, description = "The node is not the member's, or a service is not the member's", body = ProblemSchema),
               (status = 409, description = "Replayed jti", body = ProblemSchema),
               (status = 413, description = "Over the size limit", body = ProblemSchema),
               (status = 415, description = "Not application/jose", body = ProblemSchema)))]
pub async fn post_status(
    State(st): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<StatusAccepted>), ApiError> {
    let now = Utc::now();
    let (env, text) = signed::<NodeStatus>(&st, req, STATUS_TYP, now).await?;
    let node = env
        .node
        .clone()
        .ok_or_else(|| ApiError::BadRequest("a status report must name its node".into()))?;
    env.body.validate().map_err(ApiError::BadRequest)?;
    if let Some(s) = env
        .body
        .services
        .iter()
        .find(|s| s.service.member() != &env.member)
    {
        return Err(ApiError::Forbidden(format!(
            "service {} is not a service of member {}",
            s.service, env.member
        )));
    }
    let json = serde_json::to_string(&env.body).map_err(|e| ApiError::Internal(e.to_string()))?;
    let rec = st
        .store
        .record_status(&env.member, &node, &env.jti, now, &json, &text)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(StatusAccepted {
            id: rec.id,
            received_at: rec.received_at,
        }),
    ))
}

/// The state of every node and of the services it provides (operator only).
#[utoipa::path(get, path = "/api/v1/monitoring/status", tag = "monitoring",
    security(("bearer" = [])),
    responses((status = 200, description = "Every node, then its services", body = Vec<ConnectionState>),
               (status = 401, description = "No token", body = ProblemSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema)))]
pub async fn list_status(
    State(st): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<ConnectionState>>, ApiError> {
    caller.require_operator()?;
    Ok(Json(
        monitoring::connection_states(st.store.as_ref(), &st.monitoring.config, Utc::now()).await?,
    ))
}

/// What `POST /api/v1/reconciliation/summaries` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryAccepted {
    /// `created`, or `unchanged` when the same summary was stored before.
    pub result: String,
    /// The period's first instant.
    pub period_start: DateTime<Utc>,
    /// The instant after the period.
    pub period_end: DateTime<Utc>,
    /// `provider` or `consumer`.
    pub side: String,
}

fn check_summary(
    st: &AppState,
    member: &MemberId,
    s: &Summary,
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    let cfg = &st.monitoring.config;
    if !monitoring::is_configured_period(cfg, s.period) {
        return Err(ApiError::BadRequest(format!(
            "period {} is not one whole period; this platform reconciles by {}",
            s.period,
            match cfg.period {
                ndxp_audit::reconcile::PeriodLength::Minute => "UTC minute",
                ndxp_audit::reconcile::PeriodLength::Hour => "UTC hour",
                ndxp_audit::reconcile::PeriodLength::Day => "UTC day",
            }
        )));
    }
    if !monitoring::is_closed(cfg, s.period, now) {
        return Err(ApiError::BadRequest(format!(
            "period {} is not closed yet: summaries are accepted {} s after it ends",
            s.period, cfg.grace_secs
        )));
    }
    let own = |k: &BucketKey| match s.side {
        Side::Provider => k.service.member() == member,
        _ => k.client.member() == member,
    };
    if let Some(b) = s.buckets.iter().find(|b| !own(&b.key)) {
        return Err(ApiError::Forbidden(match s.side {
            Side::Provider => format!(
                "a provider summary of member {member} may list only its own services, not {}",
                b.key.service
            ),
            _ => format!(
                "a consumer summary of member {member} may list only its own client subsystems, not {}",
                b.key.client
            ),
        }));
    }
    let mut keys: Vec<&BucketKey> = s.buckets.iter().map(|b| &b.key).collect();
    keys.sort();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return Err(ApiError::BadRequest(
            "the summary lists a bucket twice".into(),
        ));
    }
    Ok(())
}

/// A node (or a provider member without a node) uploads its summary of one
/// closed period: a compact JWS of type `ndxp-reconcile-upload+json`.
#[utoipa::path(post, path = "/api/v1/reconciliation/summaries", tag = "reconciliation",
    request_body(content = String, content_type = "application/jose",
                 description = "Compact JWS of a signed summary upload"),
    responses((status = 201, description = "Stored", body = SummaryAccepted),
               (status = 200, description = "The same summary was stored before", body = SummaryAccepted),
               (status = 400, description = "Malformed, stale, signature fails, period not closed or not a whole period", body = ProblemSchema),
               (status = 403, description = "Not the member's node, or buckets of another member's side", body = ProblemSchema),
               (status = 409, description = "Replayed jti, or a different summary for that period", body = ProblemSchema),
               (status = 413, description = "Over the size limit", body = ProblemSchema),
               (status = 415, description = "Not application/jose", body = ProblemSchema)))]
pub async fn post_summary(
    State(st): State<AppState>,
    req: Request,
) -> Result<(StatusCode, Json<SummaryAccepted>), ApiError> {
    let now = Utc::now();
    let (env, text) = signed::<Summary>(&st, req, SUMMARY_TYP, now).await?;
    let s = &env.body;
    let side = match (s.side, &env.node) {
        (Side::Provider, _) => "provider",
        (Side::Consumer, Some(_)) => "consumer",
        (Side::Consumer, None) => {
            return Err(ApiError::BadRequest(
                "a consumer summary must come from a node; only providers may submit without one"
                    .into(),
            ))
        }
        (Side::Gateway, _) => {
            return Err(ApiError::BadRequest(
                "the gateway side is computed by management from its own log; upload provider or consumer summaries".into(),
            ))
        }
    };
    check_summary(&st, &env.member, s, now)?;
    if env.node.is_none() && !st.store.list_nodes(Some(&env.member)).await?.is_empty() {
        return Err(ApiError::Forbidden(format!(
            "member {} runs nodes: their summaries are reconciled, send it from a node",
            env.member
        )));
    }
    let canonical = s
        .canonical_json()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let stored = st
        .store
        .store_summary(
            &NewSummary {
                member: env.member.clone(),
                node: env.node.clone(),
                side: side.into(),
                period_start: s.period.start(),
                period_end: s.period.end(),
                summary: String::from_utf8_lossy(&canonical).into_owned(),
                signed: text,
            },
            &env.jti,
            now,
        )
        .await?;
    // Compare what can be compared now, so that drill-down requests are
    // waiting for the nodes' next poll.
    if let Err(e) = monitoring::reconcile(
        st.store.as_ref(),
        &st.monitoring.config,
        st.monitoring.gateway_log.as_ref(),
        s.period,
        now,
    )
    .await
    {
        tracing::warn!(error = %e, period = %s.period, "reconciliation after an upload failed");
    }
    let status = match stored {
        SummaryStored::Created => StatusCode::CREATED,
        SummaryStored::Unchanged => StatusCode::OK,
    };
    Ok((
        status,
        Json(SummaryAccepted {
            result: match stored {
                SummaryStored::Created => "created".into(),
                SummaryStored::Unchanged => "unchanged".into(),
            },
            period_start: s.period.start(),
            period_end: s.period.end(),
            side: side.into(),
        }),
    ))
}

/// A drill-down request as the API shows it.
#[derive(ToSchema)]
#[schema(as = DrilldownRequest)]
#[allow(dead_code)]
pub struct DrilldownRequestSchema {
    /// Answer to `/api/v1/reconciliation/drilldowns/{id}`.
    id: Uuid,
    /// `{"start": ..., "end": ...}`.
    period: serde_json::Value,
    /// `provider` or `consumer`.
    side: String,
    /// `{"client": ..., "service": ..., "outcome": ...}`.
    key: serde_json::Value,
}

/// A node asks for the drill-down requests addressed to it: a compact JWS
/// of type `ndxp-drilldown-poll+json` (empty body in the envelope).
#[utoipa::path(post, path = "/api/v1/reconciliation/drilldowns/poll", tag = "reconciliation",
    request_body(content = String, content_type = "application/jose",
                 description = "Compact JWS of a signed poll"),
    responses((status = 200, description = "Unanswered requests, oldest first", body = Vec<DrilldownRequestSchema>),
               (status = 400, description = "Malformed, stale, or its signature fails", body = ProblemSchema),
               (status = 403, description = "Not the member's node", body = ProblemSchema),
               (status = 409, description = "Replayed jti", body = ProblemSchema),
               (status = 415, description = "Not application/jose", body = ProblemSchema)))]
pub async fn poll_drilldowns(
    State(st): State<AppState>,
    req: Request,
) -> Result<Json<Vec<DrilldownRequest>>, ApiError> {
    let now = Utc::now();
    let (env, _) = signed::<DrilldownPoll>(&st, req, POLL_TYP, now).await?;
    let rows = st
        .store
        .poll_drilldowns(&env.member, env.node.as_ref(), &env.jti, now, POLL_LIMIT)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        out.push(to_request(&r)?);
    }
    Ok(Json(out))
}

fn to_request(
    r: &ndxp_registry::store::monitoring::DrilldownRecord,
) -> Result<DrilldownRequest, ApiError> {
    let corrupt =
        |what: &str| ApiError::Internal(format!("drill-down request {}: bad {what}", r.id));
    Ok(DrilldownRequest {
        id: r.id,
        period: Period::new(r.period_start, r.period_end).map_err(|_| corrupt("period"))?,
        side: match r.side.as_str() {
            "provider" => Side::Provider,
            "consumer" => Side::Consumer,
            _ => return Err(corrupt("side")),
        },
        key: serde_json::from_str(&r.bucket).map_err(|_| corrupt("bucket"))?,
    })
}

/// What `POST /api/v1/reconciliation/drilldowns/{id}` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnswerAccepted {
    /// The request answered.
    pub id: Uuid,
    /// How many ids were recorded.
    pub ids: usize,
    /// When.
    pub answered_at: Option<DateTime<Utc>>,
}

/// A node answers a drill-down request with every transaction id it logged
/// in that bucket: a compact JWS of type `ndxp-drilldown-answer+json`.
#[utoipa::path(post, path = "/api/v1/reconciliation/drilldowns/{id}", tag = "reconciliation",
    params(RecordPath),
    request_body(content = String, content_type = "application/jose",
                 description = "Compact JWS of a signed drill-down answer"),
    responses((status = 200, description = "Recorded", body = AnswerAccepted),
               (status = 400, description = "Malformed, stale, signature fails, id differs from the path, or an id outside the period", body = ProblemSchema),
               (status = 403, description = "Not the member's node", body = ProblemSchema),
               (status = 404, description = "No such request for this node", body = ProblemSchema),
               (status = 409, description = "Replayed jti, or answered before with other ids", body = ProblemSchema),
               (status = 413, description = "Over the size limit", body = ProblemSchema),
               (status = 415, description = "Not application/jose", body = ProblemSchema)))]
pub async fn answer_drilldown(
    State(st): State<AppState>,
    ApiPath(p): ApiPath<RecordPath>,
    req: Request,
) -> Result<Json<AnswerAccepted>, ApiError> {
    let id = p.id()?;
    let now = Utc::now();
    let (env, text) = signed::<DrilldownAnswer>(&st, req, ANSWER_TYP, now).await?;
    if env.body.id != id {
        return Err(ApiError::BadRequest(format!(
            "the signed answer is for request {}, not {id}",
            env.body.id
        )));
    }
    if env.body.ids.len() > MAX_ANSWER_IDS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_ANSWER_IDS} ids per answer"
        )));
    }
    let rec = st.store.get_drilldown(id).await?;
    if rec.member != env.member || rec.node != env.node {
        return Err(ApiError::Store(Box::new(StoreError::NotFound {
            what: "drill-down request for this node",
            id: id.to_string(),
        })));
    }
    let period = Period::new(rec.period_start, rec.period_end)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(bad) = env.body.ids.iter().find(|t| !period.contains_id(t)) {
        return Err(ApiError::BadRequest(format!(
            "transaction {bad} does not belong to period {period}"
        )));
    }
    let mut ids = env.body.ids.clone();
    ids.sort();
    let json = serde_json::to_string(&ids).map_err(|e| ApiError::Internal(e.to_string()))?;
    let rec = st
        .store
        .answer_drilldown(
            id,
            &env.member,
            env.node.as_ref(),
            &env.jti,
            now,
            &json,
            &text,
        )
        .await?;
    Ok(Json(AnswerAccepted {
        id,
        ids: ids.len(),
        answered_at: rec.answered_at,
    }))
}

/// Output format of the report.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReportFormat {
    /// JSON (default).
    #[default]
    Json,
    /// CSV (RFC 4180).
    Csv,
}

/// Query of `GET /api/v1/reconciliation/report`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// A UTC day `2026-11-28` or hour `2026-11-28T10`.
    pub period: String,
    /// `json` (default) or `csv`.
    #[param(value_type = Option<String>)]
    #[serde(default)]
    pub format: ReportFormat,
}

/// The reconciliation report of a period.
#[derive(ToSchema)]
#[schema(as = ReconciliationReport)]
#[allow(dead_code)]
pub struct ReportSchema {
    /// The range reported.
    range: serde_json::Value,
    /// When it was made.
    generated_at: DateTime<Utc>,
    /// Per period and provider–consumer pair: `state` (`clean`,
    /// `differences`, `pending`, `incomplete`), `missing`,
    /// `pending_drilldowns` and `report` (the differing transactions).
    pairs: Vec<serde_json::Value>,
}

/// The reconciliation report of a day or hour, as JSON or CSV (operator
/// only). Recording the drill-down requests a comparison needs is part of
/// making it.
#[utoipa::path(get, path = "/api/v1/reconciliation/report", tag = "reconciliation",
    security(("bearer" = [])), params(ReportQuery),
    responses((status = 200, description = "The report (application/json or text/csv)", body = ReportSchema),
               (status = 400, description = "Bad period or format", body = ProblemSchema),
               (status = 401, description = "No token", body = ProblemSchema),
               (status = 403, description = "Not an operator", body = ProblemSchema)))]
pub async fn get_report(
    State(st): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<Response, ApiError> {
    caller.require_operator()?;
    let range = monitoring::parse_period(&q.period)?;
    let report = monitoring::reconcile(
        st.store.as_ref(),
        &st.monitoring.config,
        st.monitoring.gateway_log.as_ref(),
        range,
        Utc::now(),
    )
    .await?;
    Ok(match q.format {
        ReportFormat::Json => Json(report).into_response(),
        ReportFormat::Csv => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8; header=present"),
            )],
            report.to_csv(),
        )
            .into_response(),
    })
}
