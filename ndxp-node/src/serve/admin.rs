//! The admin port: `/healthz`, `/readyz`, `/metrics` (open, loopback),
//! and the local admin API under `/api/v1` (bearer token from
//! `[admin] token_file`):
//!
//! | method | path | does |
//! |---|---|---|
//! | GET | `/api/v1/local` | the local configuration |
//! | PUT / DELETE | `/api/v1/local/subsystems/{subsystem id}` | add (optional body `{"connection": "http" \| "https" \| "https-cert"}` sets its connection type) / remove a subsystem |
//! | POST / DELETE | `/api/v1/local/certs` | register (body: `{"subsystem", "cert"}`, the certificate in PEM) / remove (body: `{"subsystem", "sha256"}`) an information system's certificate |
//! | PUT / DELETE | `/api/v1/local/services/{service id}` | add or change (body: `{"backend", "timeout_secs", "openapi", "keep_bodies", "forward_headers"}`) / remove a provided service |
//! | POST / DELETE | `/api/v1/local/access` | grant / revoke (body: `{"service", "client"}`; client a subsystem id or `group:CODE`) |
//! | GET | `/api/v1/diagnose` | every dependency checked (`ndxp-node diagnose --json`: `{"ok", "checks"}`), at most 20 s |
//! | GET | `/api/v1/status` | global configuration status, this node's entry, counts |
//! | GET | `/api/v1/transactions?from=&to=&client=&service=&status=&problem_code=&writer=&trace_id=&limit=&after=` | operational records of the exchanges in the message log, newest first, paged |
//!
//! Changes are written to the local configuration file and take effect
//! on the next request.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use chrono::Utc;
use ndxp_audit::log::MessageLog as _;
use ndxp_core::{ErrorCode, Problem, ServiceId, SubsystemId};
use ndxp_edge::problem::ProblemResponse;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::NodeState;
use crate::local::{
    parse_grantee, ConnectionType, IsCertificate, LocalConfig, LocalError, ServiceEntry,
};

/// A fresh admin token: `ndxpn_` and 32 random bytes in base64url.
pub(crate) fn generate_token() -> Result<String, ndxp_sign::openssl::error::ErrorStack> {
    let mut b = [0u8; 32];
    ndxp_sign::openssl::rand::rand_bytes(&mut b)?;
    Ok(format!(
        "ndxpn_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    ))
}

type St = State<Arc<NodeState>>;

/// The problem `code`, rendered by the edge.
fn problem(code: ErrorCode, detail: impl Into<String>) -> Response {
    ProblemResponse::new(&Problem::new(code, detail)).into_response()
}

fn local_error(e: LocalError) -> Response {
    match e {
        LocalError::NotFound(d) => problem(ErrorCode::ServiceUnknown, d),
        LocalError::Refused(d) => problem(ErrorCode::BadRequest, d),
        other => {
            tracing::error!(error = %other, "local configuration write failed");
            problem(
                ErrorCode::Internal,
                "the local configuration could not be written",
            )
        }
    }
}

fn authorized(state: &NodeState, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let ok = presented.is_some_and(|t| {
        let h = ndxp_sign::openssl::sha::sha256(t.as_bytes());
        ndxp_sign::openssl::memcmp::eq(&h, &state.admin_token_sha256)
    });
    if ok {
        Ok(())
    } else {
        let p = Problem::new(
            ErrorCode::Unauthorized,
            "send the token of [admin] token_file as Authorization: Bearer <token>",
        );
        Err(Box::new(
            ProblemResponse::new(&p)
                .www_authenticate("Bearer")
                .into_response(),
        ))
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// `200 ready` while the node accepts exchanges; otherwise `503` with
/// `{"ready": false, "reason", "reasons": [...], "checks": [{"name",
/// "status", "detail", "hint"}]}` naming each failed check
/// ([`ndxp_core::check::not_ready_body`], names in
/// [`super::health::names`]).
async fn readyz(State(state): St) -> Response {
    let failed = state.not_ready().await;
    if failed.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ndxp_core::check::not_ready_body(&failed)),
    )
        .into_response()
}

/// `GET /api/v1/diagnose`: what `ndxp-node diagnose --json` prints, run by
/// the node with its configuration.
async fn diagnose(State(state): St, headers: HeaderMap) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let options = crate::diagnose::DiagnoseOptions::default();
    Json(crate::diagnose::run(&state.config, &options).await).into_response()
}

async fn metrics(State(state): St) -> Response {
    (
        [(header::CONTENT_TYPE, ndxp_edge::metrics::CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

/// An admin API handler's answer, or the problem that stopped it.
type Answer = Result<Response, Box<Response>>;

/// Answers an admin API request: the token check, then `handle`.
fn admin(state: &NodeState, headers: &HeaderMap, handle: impl FnOnce() -> Answer) -> Response {
    match authorized(state, headers).and_then(|()| handle()) {
        Ok(r) => r,
        Err(r) => *r,
    }
}

/// A JSON request body.
fn json_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(body)
        .map_err(|e| Box::new(problem(ErrorCode::BadRequest, format!("the body: {e}"))))
}

/// After a change of the local configuration: the new configuration, or
/// the problem of the refusal.
fn changed(r: Result<Arc<LocalConfig>, LocalError>) -> Answer {
    r.map(|c| Json(c.as_ref().clone()).into_response())
        .map_err(|e| Box::new(local_error(e)))
}

/// After a removal from the local configuration: `204 No Content`, or the
/// problem of the refusal.
fn removed(r: Result<Arc<LocalConfig>, LocalError>) -> Answer {
    r.map(|_| StatusCode::NO_CONTENT.into_response())
        .map_err(|e| Box::new(local_error(e)))
}

async fn get_local(State(state): St, headers: HeaderMap) -> Response {
    admin(&state, &headers, || {
        Ok(Json(state.local.get().as_ref().clone()).into_response())
    })
}

async fn status(State(state): St, headers: HeaderMap) -> Response {
    admin(&state, &headers, || {
        let now = Utc::now();
        let conf = state.conf.status(now);
        let this = state
            .conf
            .current()
            .map(|d| crate::conf::this_node(&state.config, &d));
        Ok(Json(serde_json::json!({
            "member": state.config.node.member.to_string(),
            "node": state.config.node.name.to_string(),
            "conf": conf,
            "this_node": this,
            "ocsp_watched": state.ocsp.watched(),
            "log_writer": state.log.writer(),
        }))
        .into_response())
    })
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, Box<Response>>
where
    T::Err: std::fmt::Display,
{
    s.parse()
        .map_err(|e| Box::new(problem(ErrorCode::BadRequest, format!("{what} {s:?}: {e}"))))
}

/// Optional body of `PUT /api/v1/local/subsystems/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SubsystemBody {
    #[serde(default)]
    connection: Option<String>,
}

async fn put_subsystem(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    admin(&state, &headers, || {
        let id: SubsystemId = parse(&id, "subsystem")?;
        let b: SubsystemBody = if body.iter().all(u8::is_ascii_whitespace) {
            SubsystemBody::default()
        } else {
            json_body(&body)?
        };
        let connection: Option<ConnectionType> = b
            .connection
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e| Box::new(problem(ErrorCode::BadRequest, e)))?;
        changed(state.local.edit(|c, m| {
            c.add_subsystem(m, id.clone())?;
            match connection {
                Some(kind) => c.set_connection(&id, kind),
                None => Ok(()),
            }
        }))
    })
}

async fn delete_subsystem(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    admin(&state, &headers, || {
        let id: SubsystemId = parse(&id, "subsystem")?;
        removed(state.local.edit(|c, _| c.remove_subsystem(&id)))
    })
}

/// Body of `PUT /api/v1/local/services/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceBody {
    backend: String,
    #[serde(default)]
    timeout_secs: Option<u64>,
    #[serde(default)]
    openapi: Option<serde_json::Value>,
    #[serde(default)]
    keep_bodies: Option<bool>,
    #[serde(default)]
    forward_headers: ndxp_edge::forward::ExtraHeaders,
}

async fn put_service(
    State(state): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    admin(&state, &headers, || {
        let id: ServiceId = parse(&id, "service")?;
        let b: ServiceBody = json_body(&body)?;
        let mut entry = ServiceEntry::new(id, b.backend);
        if let Some(t) = b.timeout_secs {
            entry.timeout_secs = t;
        }
        entry.openapi = b.openapi;
        entry.keep_bodies = b.keep_bodies;
        entry.forward_headers = b.forward_headers;
        changed(state.local.edit(|c, m| c.put_service(m, entry)))
    })
}

async fn delete_service(State(state): St, headers: HeaderMap, Path(id): Path<String>) -> Response {
    admin(&state, &headers, || {
        let id: ServiceId = parse(&id, "service")?;
        removed(state.local.edit(|c, _| c.remove_service(&id)))
    })
}

/// Body of `POST /api/v1/local/certs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertBody {
    subsystem: String,
    cert: String,
}

/// Body of `DELETE /api/v1/local/certs`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertRemoval {
    subsystem: String,
    sha256: String,
}

async fn add_cert(State(state): St, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    admin(&state, &headers, || {
        let b: CertBody = json_body(&body)?;
        let id: SubsystemId = parse(&b.subsystem, "subsystem")?;
        let cert = IsCertificate::from_pem(&b.cert).map_err(|e| Box::new(local_error(e)))?;
        changed(state.local.edit(|c, _| c.add_is_cert(&id, cert).map(drop)))
    })
}

async fn remove_cert(State(state): St, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    admin(&state, &headers, || {
        let b: CertRemoval = json_body(&body)?;
        let id: SubsystemId = parse(&b.subsystem, "subsystem")?;
        removed(state.local.edit(|c, _| c.remove_is_cert(&id, &b.sha256)))
    })
}

/// Body of `POST` / `DELETE /api/v1/local/access`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccessBody {
    service: String,
    client: String,
}

fn access_args(
    body: &[u8],
) -> Result<(ServiceId, ndxp_registry::globalconf::ConfGrantee), Box<Response>> {
    let b: AccessBody = json_body(body)?;
    let service = parse(&b.service, "service")?;
    let client =
        parse_grantee(&b.client).map_err(|e| Box::new(problem(ErrorCode::BadRequest, e)))?;
    Ok((service, client))
}

async fn grant(State(state): St, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    admin(&state, &headers, || {
        let (service, client) = access_args(&body)?;
        changed(state.local.edit(|c, _| c.grant(service, client)))
    })
}

async fn revoke(State(state): St, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    admin(&state, &headers, || {
        let (service, client) = access_args(&body)?;
        removed(state.local.edit(|c, _| c.revoke(&service, &client)))
    })
}

async fn transactions(State(state): St, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    if let Err(r) = authorized(&state, &headers) {
        return *r;
    }
    let q: ndxp_audit::query::TransactionQuery =
        match serde_urlencoded_query(uri.query().unwrap_or_default()) {
            Ok(q) => q,
            Err(e) => return problem(ErrorCode::BadRequest, e),
        };
    match ndxp_audit::query::transactions(state.log.pool(), &q).await {
        Ok(page) => Json(page).into_response(),
        Err(ndxp_audit::query::QueryError::Invalid(d)) => problem(ErrorCode::BadRequest, d),
        Err(e) => {
            tracing::error!(error = %e, "transaction query failed");
            problem(ErrorCode::Internal, "the message log could not be queried")
        }
    }
}

/// Parses a query string with axum's own deserializer, so that errors
/// name the parameter.
fn serde_urlencoded_query<T: serde::de::DeserializeOwned>(q: &str) -> Result<T, String> {
    let uri: axum::http::Uri = format!("/?{q}")
        .parse()
        .map_err(|_| "the query string is not valid".to_string())?;
    axum::extract::Query::<T>::try_from_uri(&uri)
        .map(|axum::extract::Query(v)| v)
        .map_err(|e| e.body_text())
}

/// The admin router.
pub(crate) fn router(state: Arc<NodeState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/status", get(status))
        .route("/api/v1/diagnose", get(diagnose))
        .route("/api/v1/local", get(get_local))
        .route("/api/v1/transactions", get(transactions))
        .route(
            "/api/v1/local/subsystems/{*id}",
            put(put_subsystem).delete(delete_subsystem),
        )
        .route(
            "/api/v1/local/services/{*id}",
            put(put_service).delete(delete_service),
        )
        .route("/api/v1/local/access", post(grant).delete(revoke))
        .route("/api/v1/local/certs", post(add_cert).delete(remove_cert))
        .layer(axum::extract::DefaultBodyLimit::max(
            crate::local::MAX_LOCAL_LEN as usize,
        ))
        .with_state(state)
}

/// Serves the admin port until `stop`.
pub(crate) async fn serve(
    state: Arc<NodeState>,
    listener: TcpListener,
    stop: watch::Receiver<bool>,
) {
    let edge = ndxp_edge::serve::Edge::new("admin port", &state.config.edge);
    state.metrics.watch_edge("admin", edge.stats());
    let app = router(state);
    edge.serve(
        listener,
        ndxp_edge::serve::Plain,
        move |_| ndxp_edge::serve::tower(app.clone(), Default::default()),
        super::server::stopped(stop),
    )
    .await;
}
