//! The provider role: a signed request from a peer node on the peer port,
//! verified, checked against the access rights, sent to the backend; the
//! backend's answer signed (covering the request's signature), logged and
//! returned.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use ndxp_audit::log::{Bodies, Exchange, Role};
use ndxp_core::{ErrorCode, Problem, ServiceId, SubsystemId, TransactionId};
use ndxp_edge::problem::ProblemResponse;
use ndxp_edge::serve::RequestBody;
use ndxp_registry::globalconf::ConfGrantee;
use ndxp_sign::profile::{self, VerifiedMessage};
use ndxp_sign::tls::PeerIdentity;

use super::consumer::{parse_target, Target};
use super::record::{own_meta, verified_meta};
use super::wire::{self, problem, read_body, Body, BodyError};
use super::{NodeState, Trust};
use crate::local::{LocalConfig, ServiceEntry};
use ndxp_edge::forward::{self, ForwardError, Forwarded, HeaderPolicy};
use ndxp_edge::trace::{self, Hop};
use tracing::Instrument as _;

/// Handles one request on the peer port.
pub(crate) async fn handle(
    state: Arc<NodeState>,
    peer: Arc<PeerIdentity>,
    remote: SocketAddr,
    req: Request<RequestBody>,
) -> Response<Body> {
    let started = Instant::now();
    let received_at = Utc::now();
    let (mut head, body) = req.into_parts();
    // The signed @target-uri is this node's registered address plus the
    // path, whatever Host or :authority the connection carried.
    let pq = head
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let address = state.config.node.address.trim_end_matches('/');
    if let Ok(u) = format!("{address}{pq}").parse() {
        head.uri = u;
    }
    let tx = wire::header_text(&head.headers, profile::NDXP_ID).and_then(|t| t.parse().ok());
    let hop = Hop::start(&head.headers, trace::hop_span("provider", tx));
    let span = hop.span().clone();
    let (resp, code) = match provide(&state, &peer, remote, &head, body, received_at, tx, hop)
        .instrument(span.clone())
        .await
    {
        Ok(r) => (r, String::new()),
        Err(p) => {
            let code = p.code.clone();
            (signed_problem(&state, &head, p, tx), code)
        }
    };
    trace::end_span(&span, resp.status(), &code);
    state
        .metrics
        .observe("provider", resp.status().as_u16(), &code, started.elapsed());
    resp
}

/// A problem answer, signed when the request carries a signature to bind
/// it to; unsigned otherwise (the consumer's node then withholds it).
fn signed_problem(
    state: &NodeState,
    head: &http::request::Parts,
    p: Problem,
    tx: Option<TransactionId>,
) -> Response<Body> {
    let p = match tx {
        Some(t) if p.transaction_id.is_none() => p.with_transaction(t),
        _ => p,
    };
    if tx.is_none() || !head.headers.contains_key("signature") {
        return ProblemResponse::new(&p).into_response();
    }
    let (mut parts, bytes) = ProblemResponse::new(&p).into_parts();
    let digest = ndxp_sign::digest::content_digest(&bytes);
    // An answer that cannot be signed goes out unsigned; the consumer's
    // node withholds it and reports signature_invalid.
    let _ = profile::sign_response(&mut parts, head, &digest, &state.signer, Utc::now());
    Response::from_parts(parts, Full::new(bytes))
}

fn err(code: ErrorCode, detail: impl Into<String>, tx: Option<TransactionId>) -> Problem {
    problem(code, detail, tx)
}

#[allow(clippy::too_many_arguments)]
async fn provide(
    state: &Arc<NodeState>,
    peer: &PeerIdentity,
    remote: SocketAddr,
    head: &http::request::Parts,
    body: RequestBody,
    received_at: DateTime<Utc>,
    tx: Option<TransactionId>,
    hop: Hop,
) -> Result<Response<Body>, Problem> {
    let tx = tx.ok_or_else(|| {
        err(
            ErrorCode::BadRequest,
            "NDXP-Id is missing or not a UUID v7 transaction id",
            None,
        )
    })?;
    let now = Utc::now();
    let trust = state.trust(now).map_err(|p| p.with_transaction(tx))?;
    state
        .check_timestamp_lag()
        .map_err(|p| p.with_transaction(tx))?;
    let limit = state.config.exchange.max_body_bytes;
    let body = match read_body(body, &head.headers, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Err(err(
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than {limit} bytes"),
                Some(tx),
            ))
        }
        Err(BodyError::Broken(e)) => {
            return Err(err(
                ErrorCode::BadRequest,
                format!("the request body could not be read: {e}"),
                Some(tx),
            ))
        }
    };
    let vm = verify_request(state, &trust, head, &body, tx).await?;
    if vm.signer != peer.member {
        return Err(err(
            ErrorCode::SignatureInvalid,
            format!(
                "the request is signed by {} but comes from a node of {}",
                vm.signer, peer.member
            ),
            Some(tx),
        ));
    }
    let client = vm
        .client
        .clone()
        .ok_or_else(|| err(ErrorCode::BadRequest, "NDXP-Client is missing", Some(tx)))?;
    let local = state.local.get();
    let target =
        parse_target(head.uri.path()).map_err(|d| err(ErrorCode::BadRequest, d, Some(tx)))?;
    match &target {
        Target::Service(s) => trace::record_parties(&client, Some(s)),
        Target::Meta(..) => trace::record_parties(&client, None),
    }
    match target {
        Target::Meta(sub, name) => {
            let answer = metadata(&local, &trust, &sub, name, &client, head, tx)?;
            Ok(sign_answer(state, head, &answer, tx))
        }
        Target::Service(service) => {
            let Some(entry) = local.service(&service).cloned() else {
                return Err(err(
                    ErrorCode::ServiceUnknown,
                    format!("this node does not provide {service}"),
                    Some(tx),
                ));
            };
            if !allowed(&local, &trust, &client, &service) {
                return Err(err(
                    ErrorCode::AccessDenied,
                    format!("{client} has no right to call {service}"),
                    Some(tx),
                ));
            }
            let exchange = Pending {
                tx,
                client,
                service,
                vm,
                request_body: body.clone(),
                received_at,
                hop,
            };
            call_backend(state, head, remote, &entry, body, exchange).await
        }
    }
}

async fn verify_request(
    state: &NodeState,
    trust: &Trust,
    head: &http::request::Parts,
    body: &[u8],
    tx: TransactionId,
) -> Result<VerifiedMessage, Problem> {
    state
        .verify_signed(&head.headers, trust.profile.max_field_bytes, || {
            profile::verify_request_with_body(head, body, &trust.profile, Utc::now())
        })
        .await
        .map_err(|e| {
            err(
                e.code(),
                format!("the request does not verify: {e}"),
                Some(tx),
            )
        })
}

/// Whether `client` may call `service`: a right granted in this node's
/// local configuration, or one published in the global configuration.
fn allowed(local: &LocalConfig, trust: &Trust, client: &SubsystemId, service: &ServiceId) -> bool {
    local.grantees(service).any(|g| match g {
        ConfGrantee::Subsystem(s) => s == client,
        ConfGrantee::Group(code) => trust.doc.in_group(code, client),
    }) || trust.doc.allows(client, service)
}

fn metadata(
    local: &LocalConfig,
    trust: &Trust,
    provider: &SubsystemId,
    name: &str,
    client: &SubsystemId,
    head: &http::request::Parts,
    tx: TransactionId,
) -> Result<serde_json::Value, Problem> {
    if !local.has_subsystem(provider) {
        return Err(err(
            ErrorCode::ServiceUnknown,
            format!("{provider} is not a subsystem of this node"),
            Some(tx),
        ));
    }
    let describe = |s: &ServiceEntry| {
        let catalogue = trust.doc.service(&s.service);
        serde_json::json!({
            "service": s.service.to_string(),
            "description": catalogue.map(|c| c.description.clone()),
            "openapi": s.openapi.is_some(),
            "deprecated_at": catalogue.and_then(|c| c.deprecated_at),
            "sunset_at": catalogue.and_then(|c| c.sunset_at),
        })
    };
    match name {
        "listMethods" => Ok(serde_json::json!({
            "provider": provider.to_string(),
            "services": local.services_of(provider).map(describe).collect::<Vec<_>>(),
        })),
        "allowedMethods" => Ok(serde_json::json!({
            "provider": provider.to_string(),
            "client": client.to_string(),
            "services": local
                .services_of(provider)
                .filter(|s| allowed(local, trust, client, &s.service))
                .map(describe)
                .collect::<Vec<_>>(),
        })),
        _ => {
            let wanted = head
                .uri
                .query()
                .and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("service="))
                        .map(str::to_owned)
                })
                .ok_or_else(|| {
                    err(
                        ErrorCode::BadRequest,
                        "openapi needs ?service={code}/{version}, e.g. ?service=citizen/v1",
                        Some(tx),
                    )
                })?;
            let id: ServiceId = format!("{provider}/{wanted}").parse().map_err(|e| {
                err(
                    ErrorCode::BadRequest,
                    format!("service={wanted}: {e}"),
                    Some(tx),
                )
            })?;
            let doc = local
                .service(&id)
                .and_then(|s| s.openapi.clone())
                .ok_or_else(|| {
                    err(
                        ErrorCode::ServiceUnknown,
                        format!("{id} has no OpenAPI document on this node"),
                        Some(tx),
                    )
                })?;
            Ok(doc)
        }
    }
}

/// Signs a JSON answer this node made itself.
fn sign_answer(
    state: &NodeState,
    head: &http::request::Parts,
    answer: &serde_json::Value,
    tx: TransactionId,
) -> Response<Body> {
    let (mut parts, bytes) = wire::json_parts(StatusCode::OK, answer);
    let digest = ndxp_sign::digest::content_digest(&bytes);
    match profile::sign_response(&mut parts, head, &digest, &state.signer, Utc::now()) {
        Ok(_) => Response::from_parts(parts, Full::new(bytes)),
        Err(e) => ProblemResponse::new(&err(
            ErrorCode::Internal,
            format!("the answer cannot be signed: {}", e.problem_code()),
            Some(tx),
        ))
        .into_response(),
    }
}

/// A verified request on its way to the backend.
struct Pending {
    tx: TransactionId,
    client: SubsystemId,
    service: ServiceId,
    vm: VerifiedMessage,
    request_body: Bytes,
    received_at: DateTime<Utc>,
    /// The trace hop: its `traceparent` goes to the backend.
    hop: Hop,
}

async fn call_backend(
    state: &NodeState,
    head: &http::request::Parts,
    remote: SocketAddr,
    entry: &ServiceEntry,
    body: Bytes,
    pending: Pending,
) -> Result<Response<Body>, Problem> {
    let tx = pending.tx;
    let rest = head
        .uri
        .path()
        .strip_prefix("/r1/")
        .and_then(|p| ServiceId::split_path(p).ok())
        .map_or("", |(_, r)| r);
    let uri = forward::parse_base(&entry.backend)
        .and_then(|base| {
            forward::backend_uri(&base, rest, head.uri.query()).map_err(|e| e.to_string())
        })
        .map_err(|e| {
            tracing::error!(service = %pending.service, error = %e, "the backend URL of a service cannot be used; fix it in the local configuration");
            err(
                ErrorCode::ProviderUnreachable,
                format!("the backend of {} cannot be reached", pending.service),
                Some(tx),
            )
        })?;
    let policy = HeaderPolicy::new(&entry.forward_headers);
    let mut headers = http::HeaderMap::new();
    policy.copy_request(&head.headers, &mut headers);
    for name in [
        profile::NDXP_CLIENT,
        profile::NDXP_ID,
        profile::NDXP_USER_ID,
        profile::NDXP_REQUEST_ID,
    ] {
        if let Some(v) = head.headers.get(name) {
            headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
    pending.hop.propagate(&mut headers);
    // This node's own Forwarded (RFC 7239): the consumer's node that
    // called the peer port, always over mutual TLS, and this node's
    // registered address, which the signed @target-uri names.
    let host = state
        .config
        .node
        .address
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.as_str().to_owned()));
    let forwarded = Forwarded {
        for_addr: remote.ip(),
        proto: "https",
        host: host.as_deref(),
    };
    if let Some(v) = forwarded.value() {
        headers.insert(http::header::FORWARDED, v);
    }
    let timeout = Duration::from_secs(entry.timeout_secs);
    let limit = state.config.exchange.max_body_bytes;
    let mut req = Request::new(body);
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    let forwarded_at = Utc::now();
    let result = state
        .backend
        .send(req, timeout, limit)
        .await
        .map(|r| {
            let (parts, body) = r.into_parts();
            (parts.status, parts.headers, body)
        })
        .map_err(|e| {
            let detail = match &e {
                ForwardError::Timeout(t) => format!(
                    "the backend of {} did not answer within {} s",
                    pending.service,
                    t.as_secs()
                ),
                ForwardError::TooLarge(n) => {
                    format!("the backend's response is larger than {n} bytes")
                }
                _ => {
                    tracing::warn!(service = %pending.service, error = %e.reason(), "the backend of a service cannot be reached; check that it runs and that its URL in the local configuration is right");
                    format!("the backend of {} cannot be reached", pending.service)
                }
            };
            err(e.code(), detail, Some(tx))
        });
    let backend_answered_at = Utc::now();
    let (status, backend_headers, resp_body, problem_code) = match result {
        Ok((s, h, b)) => (s, h, b, None),
        Err(p) => {
            let code = p.code.clone();
            let (parts, body) = ProblemResponse::new(&p).into_parts();
            (parts.status, parts.headers, body, Some(code))
        }
    };
    let mut out = Response::new(());
    *out.status_mut() = status;
    policy.copy_response(&backend_headers, out.headers_mut());
    let (mut parts, ()) = out.into_parts();
    let digest = ndxp_sign::digest::content_digest(&resp_body);
    let info = profile::sign_response(&mut parts, head, &digest, &state.signer, Utc::now())
        .map_err(|e| {
            err(
                ErrorCode::Internal,
                format!("the answer cannot be signed: {}", e.problem_code()),
                Some(tx),
            )
        })?;
    let keep = state.keep_bodies(Some(entry));
    let exchange = Exchange {
        transaction_id: tx,
        client: pending.client,
        service: pending.service,
        role: Role::Provider,
        received_at: pending.received_at,
        forwarded_at: Some(forwarded_at),
        backend_answered_at: Some(backend_answered_at),
        responded_at: Utc::now(),
        user_id: wire::header_text(&head.headers, profile::NDXP_USER_ID).map(str::to_owned),
        request_id: wire::header_text(&head.headers, profile::NDXP_REQUEST_ID).map(str::to_owned),
        status: status.as_u16(),
        problem_code,
        request_bytes: pending.request_body.len() as u64,
        response_bytes: resp_body.len() as u64,
        request: verified_meta(&pending.vm),
        response: Some(own_meta(state, &info, &digest)),
        body: keep.then(|| Bodies {
            request: Some(pending.request_body.to_vec()),
            response: Some(resp_body.to_vec()),
        }),
        trace_id: Some(pending.hop.trace_id()),
    };
    state.log_append(exchange).await.map_err(|e| {
        tracing::error!(error = %e, transaction = %tx, "the message log could not store an exchange");
        err(
            ErrorCode::Internal,
            "the exchange could not be recorded in the message log",
            Some(tx),
        )
    })?;
    if let Ok(v) = HeaderValue::from_str(&tx.to_string()) {
        parts
            .headers
            .insert(HeaderName::from_static(profile::NDXP_ID), v);
    }
    Ok(Response::from_parts(parts, Full::new(resp_body)))
}
