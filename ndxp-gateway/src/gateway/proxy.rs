//! The request path of a service call.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use ndxp_audit::log::{Bodies, Exchange, MessageLog, Role, SignedMeta};
use ndxp_core::problem::{ErrorCode, Problem};
use ndxp_core::{ServiceId, SubsystemId, TransactionId};
use ndxp_edge::problem::ProblemResponse;
use ndxp_edge::trace::{self, Hop};
use ndxp_registry::store::gateway::GatewayServiceState;
use ndxp_sign::openssl::sha::sha256;
use ndxp_sign::profile;
use tracing::Instrument as _;

use super::certauth::ClientCert;
use super::limits::Refusal;
use super::metrics::CallSeen;
use super::routing::Route;
use super::Gateway;

/// `NDXP-Request-Hash`.
const REQUEST_HASH: &str = "ndxp-request-hash";

/// What is known about a call when it ends, for the log and the answer.
struct Call {
    txid: TransactionId,
    received_at: DateTime<Utc>,
    client: SubsystemId,
    service: ServiceId,
    request_bytes: u64,
    request_meta: SignedMeta,
    request_hash: Option<HeaderValue>,
    request_body: Option<Vec<u8>>,
    /// When the request was sent to the backend.
    forwarded_at: Option<DateTime<Utc>>,
    /// When the backend's response head came back.
    backend_answered_at: Option<DateTime<Utc>>,
    /// `NDXP-User-Id` sent by the consumer.
    user_id: Option<String>,
    /// `NDXP-Request-Id` sent by the consumer.
    request_id: Option<String>,
    /// The trace hop: its `traceparent` goes to the backend.
    hop: Hop,
}

/// The problem `code` of transaction `txid`, rendered by the edge.
fn problem(code: ErrorCode, detail: impl Into<String>, txid: TransactionId) -> Response {
    ProblemResponse::new(&Problem::new(code, detail).with_transaction(txid)).into_response()
}

/// A 401 with the gateway's bearer challenge.
fn unauthorized(detail: &str, txid: TransactionId) -> Response {
    let p = Problem::new(ErrorCode::Unauthorized, detail).with_transaction(txid);
    ProblemResponse::new(&p)
        .www_authenticate("Bearer realm=\"ndxp-gateway\", error=\"invalid_token\"")
        .into_response()
}

/// A header's value as text, when present and visible ASCII.
fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The bearer token of the request.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

fn unix_f64(t: DateTime<Utc>) -> f64 {
    // Sub-microsecond precision is irrelevant for rate limiting.
    #[allow(clippy::cast_precision_loss)]
    let micros = t.timestamp_micros() as f64;
    micros / 1_000_000.0
}

/// The text hashed into `NDXP-Request-Hash` when the request is not
/// signed: the same lines an NDXP signature base has, without
/// `@signature-params`.
fn unsigned_base(method: &Method, uri: &str, digest: &str, client: &str, id: &str) -> String {
    format!(
        "\"@method\": {method}\n\"@target-uri\": {uri}\n\"content-digest\": {digest}\n\
         \"ndxp-client\": {client}\n\"ndxp-id\": {id}"
    )
}

fn hash_header(base: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "sha-256=:{}:",
        STANDARD.encode(sha256(base.as_bytes()))
    ))
    .ok()
}

pub(super) async fn handle(gw: &Gateway, peer: SocketAddr, req: Request) -> Response {
    let txid = TransactionId::new();
    let hop = Hop::start(req.headers(), trace::hop_span("gateway", Some(txid)));
    let span = hop.span().clone();
    let resp = serve(gw, peer, req, txid, hop)
        .instrument(span.clone())
        .await;
    let code = resp
        .extensions()
        .get::<ndxp_edge::problem::ProblemCode>()
        .map(|c| c.0.clone())
        .unwrap_or_default();
    trace::end_span(&span, resp.status(), &code);
    resp
}

async fn serve(
    gw: &Gateway,
    peer: SocketAddr,
    req: Request,
    txid: TransactionId,
    hop: Hop,
) -> Response {
    let received_at = Utc::now();
    let (parts, body) = req.into_parts();

    // 1. Which service, on a path that passes the edge's path rule.
    if let Err(e) = ndxp_core::path::check(parts.uri.path()) {
        return problem(ErrorCode::BadRequest, e.to_string(), txid);
    }
    let path = parts.uri.path().strip_prefix('/').unwrap_or("");
    let Ok((service, rest)) = ServiceId::split_path(path) else {
        return problem(
            ErrorCode::BadRequest,
            "call {gateway}/{instance}/{class}/{member}/{subsystem}/{service}/{version}/{path}",
            txid,
        );
    };
    let table = gw.routing();
    let Some(route) = table.services.get(&service).cloned() else {
        return problem(
            ErrorCode::ServiceUnknown,
            format!("service {service} is not offered through this gateway"),
            txid,
        );
    };
    match route.state {
        GatewayServiceState::Published => {}
        GatewayServiceState::Registered => {
            return problem(
                ErrorCode::ServiceUnknown,
                format!("service {service} is registered but not published yet"),
                txid,
            )
        }
        GatewayServiceState::Withdrawn => {
            return problem(
                ErrorCode::ServiceUnknown,
                format!("service {service} has been withdrawn"),
                txid,
            )
        }
    }
    if let Some(sunset) = route.sunset_at {
        if sunset <= received_at {
            return problem(
                ErrorCode::ServiceUnknown,
                format!(
                    "service {service} was retired on {}; use a newer version",
                    sunset.to_rfc3339()
                ),
                txid,
            );
        }
    }

    // 2. Who calls: a bearer token, or else a registered client certificate.
    let app = if let Some(token) = bearer(&parts.headers) {
        let verified = match gw.verifier.verify(token, received_at.timestamp()) {
            Ok(v) => v,
            Err(e) => return unauthorized(&e.to_string(), txid),
        };
        let Some(app) = table.apps.get(&verified.client_id).cloned() else {
            return unauthorized("the client credentials have been revoked", txid);
        };
        if app.generation != verified.generation {
            return unauthorized(
                "the client secret was rotated after this token was issued; get a new token",
                txid,
            );
        }
        app
    } else if let Some(cert) = parts.extensions.get::<ClientCert>() {
        let Some(app) = table.certs.get(&cert.sha256).cloned() else {
            return unauthorized(
                &format!(
                    "the client certificate {} is not registered as credentials, or they were revoked",
                    cert.sha256
                ),
                txid,
            );
        };
        if let Err(why) = gw.certs.check(cert, received_at).await {
            return unauthorized(&why, txid);
        }
        app
    } else {
        return unauthorized(
            "send Authorization: Bearer <access token> (get one at POST /oauth2/token), or call \
             over HTTPS with a registered client certificate",
            txid,
        );
    };
    let client = app.client.clone();
    let peer_ip = peer.ip().to_canonical();
    let mut call = Call {
        txid,
        received_at,
        client,
        service: service.clone(),
        request_bytes: 0,
        request_meta: SignedMeta::default(),
        request_hash: None,
        request_body: None,
        forwarded_at: None,
        backend_answered_at: None,
        user_id: header_text(&parts.headers, profile::NDXP_USER_ID),
        request_id: header_text(&parts.headers, profile::NDXP_REQUEST_ID),
        hop,
    };
    trace::record_parties(&call.client, Some(&service));
    if !app.cidrs.is_empty() && !app.cidrs.iter().any(|n| n.contains(&peer_ip)) {
        return refuse(
            gw,
            call,
            problem(
                ErrorCode::AccessDenied,
                format!("calls from {peer_ip} are not in the application's allowed address ranges"),
                txid,
            ),
        )
        .await;
    }
    let Some(sub) = table
        .subs
        .get(&call.client)
        .and_then(|m| m.get(&service))
        .copied()
    else {
        let detail = format!("{} has no approved subscription to {service}", call.client);
        return refuse(gw, call, problem(ErrorCode::AccessDenied, detail, txid)).await;
    };
    drop(table);
    if let Err(r) = gw.limiter.check(sub.id, sub.limit, unix_f64(received_at)) {
        let (limit, detail) = match r {
            Refusal::Rate { .. } => ("rate", "the subscription's rate limit is exceeded"),
            Refusal::Quota { .. } => ("quota", "the subscription's daily quota is used up"),
        };
        gw.metrics.rate_limited(limit);
        let p = Problem::new(ErrorCode::RateLimited, detail).with_transaction(txid);
        let resp = ProblemResponse::new(&p)
            .retry_after(r.retry_after())
            .into_response();
        return refuse(gw, call, resp).await;
    }

    // 3. The request body, within the limit.
    let too_large = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > u64::try_from(gw.max_body).unwrap_or(u64::MAX));
    let body = if too_large {
        Err(())
    } else {
        axum::body::to_bytes(Body::new(body), gw.max_body)
            .await
            .map_err(|_| ())
    };
    let Ok(body) = body else {
        let detail = format!("the request body is larger than {} bytes", gw.max_body);
        return refuse(gw, call, problem(ErrorCode::PayloadTooLarge, detail, txid)).await;
    };
    call.request_bytes = body.len() as u64;
    if gw.log_bodies {
        call.request_body = Some(body.to_vec());
    }

    let rest = rest.to_string();
    forward(gw, call, &route, parts, peer, &rest, body).await
}

/// Logs a refused call and returns its response.
async fn refuse(gw: &Gateway, call: Call, resp: Response) -> Response {
    let code = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    let status = resp.status();
    finish(gw, call, status, code_of(status, code), 0, None, None, resp).await
}

fn code_of(status: StatusCode, is_problem: bool) -> Option<String> {
    if !is_problem {
        return None;
    }
    let code = match status.as_u16() {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::AccessDenied,
        404 => ErrorCode::ServiceUnknown,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        502 => ErrorCode::ProviderUnreachable,
        504 => ErrorCode::ProviderTimeout,
        _ => ErrorCode::Internal,
    };
    Some(code.code())
}

/// Appends the exchange and, once it is durable, returns `resp` with the
/// transaction headers; a log failure turns the answer into a 500.
#[allow(clippy::too_many_arguments)]
async fn finish(
    gw: &Gateway,
    call: Call,
    status: StatusCode,
    problem_code: Option<String>,
    response_bytes: u64,
    response_meta: Option<SignedMeta>,
    response_body: Option<Vec<u8>>,
    mut resp: Response,
) -> Response {
    let txid = call.txid;
    if let Some(c) = &problem_code {
        tracing::Span::current().record("ndxp.problem_code", c.as_str());
    }
    let body = if gw.log_bodies && (call.request_body.is_some() || response_body.is_some()) {
        Some(Bodies {
            request: call.request_body,
            response: response_body,
        })
    } else {
        None
    };
    tracing::debug!(
        %txid,
        forwarded_at = ?call.forwarded_at,
        backend_answered_at = ?call.backend_answered_at,
        user_id = call.user_id.as_deref(),
        request_id = call.request_id.as_deref(),
        status = status.as_u16(),
        "gateway exchange"
    );
    let seen = CallSeen {
        service: gw.metrics.service(&call.service),
        client: gw.metrics.client(&call.client),
        upstream: call
            .forwarded_at
            .zip(call.backend_answered_at)
            .and_then(|(sent, answered)| (answered - sent).to_std().ok()),
    };
    let exchange = Exchange {
        transaction_id: txid,
        client: call.client,
        service: call.service,
        role: Role::Gateway,
        received_at: call.received_at,
        forwarded_at: call.forwarded_at,
        backend_answered_at: call.backend_answered_at,
        responded_at: Utc::now(),
        user_id: call.user_id,
        request_id: call.request_id,
        status: status.as_u16(),
        problem_code,
        request_bytes: call.request_bytes,
        response_bytes,
        request: call.request_meta,
        response: response_meta,
        body,
        trace_id: Some(call.hop.trace_id()),
    };
    if let Err(e) = gw.log.append(exchange).await {
        tracing::error!(error = %e, %txid, "the exchange could not be logged; answering 500");
        return problem(
            ErrorCode::Internal,
            "the exchange could not be recorded; it was not completed",
            txid,
        );
    }
    if let Some(h) = call.request_hash {
        resp.headers_mut()
            .insert(HeaderName::from_static(REQUEST_HASH), h);
    }
    resp.extensions_mut().insert(seen);
    resp
}

async fn forward(
    gw: &Gateway,
    mut call: Call,
    route: &Route,
    parts: axum::http::request::Parts,
    peer: SocketAddr,
    rest: &str,
    body: Bytes,
) -> Response {
    let txid = call.txid;
    let Ok(uri) = ndxp_edge::forward::backend_uri(&route.backend, rest, parts.uri.query()) else {
        return refuse(
            gw,
            call,
            problem(ErrorCode::BadRequest, "the request URI is not valid", txid),
        )
        .await;
    };
    let url = uri.to_string();
    let mut headers = HeaderMap::with_capacity(parts.headers.len() + 6);
    route.headers.copy_request(&parts.headers, &mut headers);
    let client_text = call.client.to_string();
    let id_text = txid.to_string();
    let (Ok(client_value), Ok(id_value)) = (
        HeaderValue::from_str(&client_text),
        HeaderValue::from_str(&id_text),
    ) else {
        return problem(ErrorCode::Internal, "cannot encode the NDXP headers", txid);
    };
    headers.insert(HeaderName::from_static(profile::NDXP_CLIENT), client_value);
    headers.insert(HeaderName::from_static(profile::NDXP_ID), id_value);
    for name in [profile::NDXP_USER_ID, profile::NDXP_REQUEST_ID] {
        if let Some(v) = parts.headers.get(name) {
            headers.insert(HeaderName::from_static(name), v.clone());
        }
    }
    call.hop.propagate(&mut headers);
    // The gateway's own Forwarded (RFC 7239): the consumer's address, the
    // scheme and the host it called.
    let forwarded = ndxp_edge::forward::Forwarded {
        for_addr: peer.ip(),
        proto: if gw.tls.is_some() { "https" } else { "http" },
        host: parts
            .headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str())),
    };
    if let Some(v) = forwarded.value() {
        headers.insert(header::FORWARDED, v);
    }
    let digest = ndxp_sign::digest::content_digest(&body);
    let now = Utc::now();

    // The DigiSign adapter: sign as an intermediary, or just bind the body.
    let mut signed_head = None;
    if route.settings.sign_requests {
        let built = axum::http::Request::builder()
            .method(parts.method.clone())
            .uri(uri.clone())
            .body(());
        let Ok(built) = built else {
            return refuse(
                gw,
                call,
                problem(ErrorCode::BadRequest, "the request URI is not valid", txid),
            )
            .await;
        };
        let (mut head, ()) = built.into_parts();
        head.headers = headers;
        match profile::sign_request(&mut head, &digest, &gw.signer, now) {
            Ok(info) => {
                call.request_hash = hash_header(&info.base);
                call.request_meta = SignedMeta {
                    signature_input: info.signature_input,
                    signature: info.signature,
                    content_digest: digest.clone(),
                    base: info.base,
                    signer_cert_der: gw.signer.certificate().to_der().unwrap_or_default(),
                    chain_der: gw
                        .signer
                        .chain()
                        .iter()
                        .filter_map(|c| c.to_der().ok())
                        .collect(),
                };
            }
            Err(e) => {
                let detail = format!("the request cannot be signed: {e}");
                return refuse(gw, call, problem(ErrorCode::BadRequest, detail, txid)).await;
            }
        }
        headers = head.headers.clone();
        signed_head = Some(head);
    } else {
        let base = unsigned_base(&parts.method, &url, &digest, &client_text, &id_text);
        call.request_hash = hash_header(&base);
        if let Ok(v) = HeaderValue::from_str(&digest) {
            headers.insert(HeaderName::from_static(profile::CONTENT_DIGEST), v);
        }
        call.request_meta.content_digest = digest;
        call.request_meta.base = base;
    }

    call.forwarded_at = Some(Utc::now());
    let mut req = axum::http::Request::new(body);
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.headers_mut() = headers;
    let limit = gw.max_body;
    let sent = route
        .client
        .send(req, route.timeout, u64::try_from(limit).unwrap_or(u64::MAX))
        .await;
    let (resp_parts, buf) = match sent {
        Ok(r) => r.into_parts(),
        Err(e) => return backend_failure(gw, call, route, &e).await,
    };
    call.backend_answered_at = Some(Utc::now());
    let status = resp_parts.status;
    let resp_headers = resp_parts.headers;

    // A signed response, where the service requires one.
    let mut response_meta = None;
    if route.settings.verify_responses {
        // The signer's revocation status must be held before the (sync)
        // verification, which then refuses a revoked or unknown signer.
        let revocation = match profile::parse_signer_cert_header(
            &resp_headers,
            gw.response_policy.max_field_bytes,
        ) {
            Ok(certs) if signed_head.is_some() => gw
                .response_ocsp
                .ensure(&certs, Utc::now())
                .await
                .map_err(|e| e.to_string()),
            // A missing or malformed header fails the verification below.
            _ => Ok(()),
        };
        let verified = signed_head.as_ref().map_or_else(
            || {
                Err(
                    "the service requires signed responses but its requests are not signed"
                        .to_string(),
                )
            },
            |req_head| {
                revocation?;
                let mut b = axum::http::Response::builder().status(status);
                if let Some(h) = b.headers_mut() {
                    h.clone_from(&resp_headers);
                }
                let (head, ()) = b.body(()).map_err(|e| e.to_string())?.into_parts();
                let vm = profile::verify_response_with_body(
                    &head,
                    req_head,
                    &buf,
                    &gw.response_policy,
                    Utc::now(),
                )
                .map_err(|e| e.to_string())?;
                if &vm.signer != route.id.member() {
                    return Err(format!(
                        "the response is signed by {}, not by the provider {}",
                        vm.signer,
                        route.id.member()
                    ));
                }
                Ok(vm)
            },
        );
        match verified {
            Ok(vm) => {
                response_meta = Some(SignedMeta {
                    signature_input: vm.signature_input,
                    signature: vm.signature,
                    content_digest: vm.content_digest,
                    base: vm.base,
                    signer_cert_der: vm.signer_cert_der,
                    chain_der: vm.chain_der,
                });
            }
            Err(reason) => {
                tracing::warn!(%txid, service = %route.id, %reason, "backend response signature refused");
                let p = Problem::new(
                    ErrorCode::SignatureInvalid,
                    format!("the provider's response failed verification: {reason}"),
                )
                .with_status(502)
                .with_transaction(txid);
                let resp = ProblemResponse::new(&p).into_response();
                let n = buf.len() as u64;
                return finish(
                    gw,
                    call,
                    StatusCode::BAD_GATEWAY,
                    Some(ErrorCode::SignatureInvalid.code()),
                    n,
                    None,
                    None,
                    resp,
                )
                .await;
            }
        }
    }

    let mut out = Response::builder().status(status);
    if let Some(h) = out.headers_mut() {
        route.headers.copy_response(&resp_headers, h);
        if let Ok(v) = HeaderValue::from_str(&txid.to_string()) {
            h.insert(HeaderName::from_static(profile::NDXP_ID), v);
        }
        if let Some(d) = &route.deprecation {
            h.insert(HeaderName::from_static("deprecation"), d.clone());
        }
        if let Some(s) = &route.sunset_header {
            h.insert(HeaderName::from_static("sunset"), s.clone());
        }
    }
    let n = buf.len() as u64;
    let logged_body = gw.log_bodies.then(|| buf.to_vec());
    let Ok(resp) = out.body(Body::from(buf)) else {
        return problem(ErrorCode::Internal, "cannot build the response", txid);
    };
    finish(gw, call, status, None, n, response_meta, logged_body, resp).await
}

async fn backend_failure(
    gw: &Gateway,
    call: Call,
    route: &Route,
    e: &ndxp_edge::forward::ForwardError,
) -> Response {
    use ndxp_edge::forward::ForwardError;
    let txid = call.txid;
    let detail = match e {
        ForwardError::Timeout(_) => format!(
            "the provider's backend did not answer within {} ms",
            route.settings.timeout_ms
        ),
        ForwardError::TooLarge(limit) => {
            format!("the backend's response is larger than {limit} bytes")
        }
        _ => {
            tracing::warn!(%txid, service = %route.id, error = %e.reason(), "the provider's backend cannot be reached; check that it runs and that backend_url is right");
            "the provider's backend cannot be reached".to_string()
        }
    };
    refuse(gw, call, problem(e.code(), detail, txid)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn only_bearer_tokens_are_taken() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer  t.k.n "),
        );
        assert_eq!(bearer(&h), Some("t.k.n"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer "));
        assert_eq!(bearer(&h), None);
    }

    proptest! {
        #[test]
        fn arbitrary_paths_never_panic(p in ".{0,200}") {
            let _ = ServiceId::split_path(&p);
            let _ = ndxp_core::path::check(&p);
        }
    }
}
