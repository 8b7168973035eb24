//! The consumer role: a request from an information system on the client
//! port, signed and forwarded to the provider's node; its signed answer
//! verified, logged and relayed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use ndxp_audit::log::{Exchange, Role};
use ndxp_core::trace::TraceId;
use ndxp_core::{ErrorChain, ErrorCode, Problem, ServiceId, SubsystemId, TransactionId};
use ndxp_edge::problem::ProblemResponse;
use ndxp_edge::serve::RequestBody;
use ndxp_edge::trace::Hop;
use ndxp_sign::profile::{self, SignedInfo, VerifiedMessage};
use ndxp_sign::tls::PeerIdentity;
use tracing::Instrument as _;

use super::client_auth::{self, CallerConnection};
use super::pool::connect_error;
use super::record::{own_meta, verified_meta};
use super::wire::{self, opaque_header, problem, read_body, Body, BodyError, REQUEST_HASH};
use super::{NodeState, Trust};

/// The metadata services (docs/design.md §4), answered by the provider's node.
pub(crate) const META_SERVICES: &[&str] = &["listMethods", "allowedMethods", "openapi"];

/// What a client-port path asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// `/r1/{service}/{rest}`.
    Service(ServiceId),
    /// `/r1/{subsystem}/{listMethods|allowedMethods|openapi}`.
    Meta(SubsystemId, &'static str),
}

/// Parses a request path (without query) on either port.
pub(crate) fn parse_target(path: &str) -> Result<Target, String> {
    // The one path rule of the edge, before anything is signed or sent.
    ndxp_core::path::check(path).map_err(|e| e.to_string())?;
    let rest = path.strip_prefix("/r1/").ok_or_else(|| {
        "the path must start with /r1/ followed by a service identifier".to_owned()
    })?;
    let segments: Vec<&str> = rest.split('/').collect();
    if segments.len() == 5 {
        if let Some(name) = META_SERVICES.iter().find(|m| **m == segments[4]) {
            let sub: SubsystemId = segments[..4]
                .join("/")
                .parse()
                .map_err(|e| format!("bad subsystem in the metadata path: {e}"))?;
            return Ok(Target::Meta(sub, name));
        }
    }
    let (service, _) = ServiceId::split_path(rest)
        .map_err(|e| format!("bad service identifier in the path: {e}"))?;
    Ok(Target::Service(service))
}

/// What the consumer logs for a failure after the request was signed.
struct Signed {
    info: SignedInfo,
    digest: String,
    client: SubsystemId,
    service: Option<ServiceId>,
    user_id: Option<String>,
    request_id: Option<String>,
    request_body: Bytes,
    trace_id: TraceId,
}

/// The platform problem code of a provider's answer relayed to the client
/// (e.g. its signed `ndxp.access_denied`), for the metrics.
#[derive(Debug, Clone)]
struct RelayedCode(String);

/// Handles one request on the client port.
pub(crate) async fn handle(
    state: Arc<NodeState>,
    req: Request<RequestBody>,
    caller: Arc<CallerConnection>,
) -> Response<Body> {
    let started = Instant::now();
    let tx = TransactionId::new();
    let received_at = Utc::now();
    let hop = Hop::start(
        req.headers(),
        ndxp_edge::trace::hop_span("consumer", Some(tx)),
    );
    let span = hop.span().clone();
    let (resp, code) = match consume(&state, req, tx, received_at, &caller, &hop)
        .instrument(span.clone())
        .await
    {
        Ok(r) => {
            let code = r
                .extensions()
                .get::<RelayedCode>()
                .map(|c| c.0.clone())
                .unwrap_or_default();
            (r, code)
        }
        Err(p) => (ProblemResponse::new(&p).into_response(), p.code),
    };
    ndxp_edge::trace::end_span(&span, resp.status(), &code);
    state
        .metrics
        .observe("consumer", resp.status().as_u16(), &code, started.elapsed());
    resp
}

fn bad(tx: TransactionId, detail: impl Into<String>) -> Problem {
    problem(ErrorCode::BadRequest, detail, Some(tx))
}

async fn consume(
    state: &Arc<NodeState>,
    req: Request<RequestBody>,
    tx: TransactionId,
    received_at: DateTime<Utc>,
    caller: &CallerConnection,
    hop: &Hop,
) -> Result<Response<Body>, Problem> {
    let (parts, body) = req.into_parts();
    client_auth::check_host(&state.config.client, &parts).map_err(|p| p.with_transaction(tx))?;
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "/".into());
    let target = parse_target(parts.uri.path()).map_err(|d| bad(tx, d))?;

    // The calling subsystem.
    let client_text = wire::header_text(&parts.headers, profile::NDXP_CLIENT).ok_or_else(|| {
        bad(
            tx,
            "NDXP-Client is required (once): the calling subsystem, e.g. VN/GOV/000.00.00.G22/QLHT",
        )
    })?;
    let client: SubsystemId = client_text.parse().map_err(|e| {
        bad(
            tx,
            format!("NDXP-Client is not a subsystem identifier: {e}"),
        )
    })?;
    let local = state.local.get();
    if !local.has_subsystem(&client) {
        return Err(problem(
            ErrorCode::ClientUnknown,
            format!("{client} is not a subsystem registered on this node"),
            Some(tx),
        ));
    }
    client_auth::authorize(&local, &client, caller, Utc::now()).map_err(|d| {
        tracing::info!(client = %client, remote = %caller.remote, reason = %d, "client-port call refused: the connection does not satisfy the subsystem's connection type");
        client_auth::unauthorized(d).with_transaction(tx)
    })?;
    let user_id = opaque_header(&parts.headers, profile::NDXP_USER_ID).map_err(|d| bad(tx, d))?;
    let request_id =
        opaque_header(&parts.headers, profile::NDXP_REQUEST_ID).map_err(|d| bad(tx, d))?;

    let now = Utc::now();
    let trust = state.trust(now).map_err(|p| p.with_transaction(tx))?;
    state
        .check_timestamp_lag()
        .map_err(|p| p.with_transaction(tx))?;
    let (provider_member, service) = match &target {
        Target::Service(s) => {
            if trust.doc.service(s).is_none() {
                return Err(problem(
                    ErrorCode::ServiceUnknown,
                    format!("{s} is not in the service catalogue of the global configuration"),
                    Some(tx),
                ));
            }
            (s.member().clone(), Some(s.clone()))
        }
        Target::Meta(sub, _) => {
            if trust.doc.member(sub.member()).is_none() {
                return Err(problem(
                    ErrorCode::ServiceUnknown,
                    format!("{} is not a member of this instance", sub.member()),
                    Some(tx),
                ));
            }
            (sub.member().clone(), None)
        }
    };
    ndxp_edge::trace::record_parties(
        &client,
        service.as_ref().map(|s| s as &dyn std::fmt::Display),
    );
    let nodes: Vec<String> = trust
        .doc
        .nodes_of(&provider_member)
        .map(|n| n.address.trim_end_matches('/').to_owned())
        .collect();
    if nodes.is_empty() {
        return Err(problem(
            ErrorCode::ServiceUnknown,
            format!("{provider_member} has no node in the global configuration"),
            Some(tx),
        ));
    }

    let limit = state.config.exchange.max_body_bytes;
    let body = match read_body(body, &parts.headers, limit).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            return Err(problem(
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than {limit} bytes"),
                Some(tx),
            ))
        }
        Err(BodyError::Broken(e)) => {
            return Err(bad(tx, format!("the request body could not be read: {e}")))
        }
    };

    // Sign and forward, trying the provider's nodes in turn while they
    // cannot be reached.
    let digest = ndxp_sign::digest::content_digest(&body);
    let start = usize::from(tx.as_uuid().as_bytes()[15]) % nodes.len();
    let mut last: Option<Problem> = None;
    let mut signed_last: Option<Signed> = None;
    for i in 0..nodes.len() {
        let address = &nodes[(start + i) % nodes.len()];
        let uri = format!("{address}{path_and_query}");
        let mut builder = Request::builder().method(parts.method.clone()).uri(&uri);
        if let Some(h) = builder.headers_mut() {
            ndxp_edge::forward::relay(&parts.headers, h);
            h.insert(
                HeaderName::from_static(profile::NDXP_CLIENT),
                hv(&client.to_string()),
            );
            h.insert(
                HeaderName::from_static(profile::NDXP_ID),
                hv(&tx.to_string()),
            );
            if let Some(u) = &user_id {
                h.insert(HeaderName::from_static(profile::NDXP_USER_ID), hv(u));
            }
            if let Some(r) = &request_id {
                h.insert(HeaderName::from_static(profile::NDXP_REQUEST_ID), hv(r));
            }
            hop.propagate(h);
        }
        let (mut head, ()) = builder
            .body(())
            .map_err(|e| bad(tx, format!("the request cannot be forwarded: {e}")))?
            .into_parts();
        let info =
            profile::sign_request(&mut head, &digest, &state.signer, Utc::now()).map_err(|e| {
                let why = ErrorChain(&e).to_string();
                if e.problem_code() == ErrorCode::Internal {
                    tracing::error!(error = %why, "the member signing key cannot sign");
                }
                problem(
                    e.problem_code(),
                    format!("the request cannot be signed: {why}"),
                    Some(tx),
                )
            })?;
        let signed = Signed {
            info,
            digest: digest.clone(),
            client: client.clone(),
            service: service.clone(),
            user_id: user_id.clone(),
            request_id: request_id.clone(),
            request_body: body.clone(),
            trace_id: hop.trace_id(),
        };
        match forward(state, &trust, &head, body.clone(), &provider_member, tx).await {
            Ok((resp_head, resp_body, vm, forwarded_at)) => {
                return finish(
                    state,
                    signed,
                    resp_head,
                    resp_body,
                    vm,
                    received_at,
                    forwarded_at,
                    tx,
                )
                .await;
            }
            Err(Forward::Retry(p)) => {
                last = Some(p);
                signed_last = Some(signed);
            }
            Err(Forward::Fail(p)) => {
                return Err(log_failure(state, signed, p, received_at).await);
            }
        }
    }
    let p = last.unwrap_or_else(|| {
        problem(
            ErrorCode::ProviderUnreachable,
            "no node of the provider could be reached",
            Some(tx),
        )
    });
    match signed_last {
        Some(s) => Err(log_failure(state, s, p, received_at).await),
        None => Err(p),
    }
}

fn hv(s: &str) -> HeaderValue {
    HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}

enum Forward {
    /// The node could not be reached: another node of the provider may.
    Retry(Problem),
    /// The exchange failed for good.
    Fail(Problem),
}

type Forwarded = (http::response::Parts, Bytes, VerifiedMessage, DateTime<Utc>);

async fn forward(
    state: &NodeState,
    trust: &Trust,
    head: &http::request::Parts,
    body: Bytes,
    provider: &ndxp_core::MemberId,
    tx: TransactionId,
) -> Result<Forwarded, Forward> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = head.uri.clone();
    *req.headers_mut() = head.headers.clone();
    let timeout = Duration::from_secs(state.config.exchange.timeout_secs);
    let limit = state.config.exchange.max_body_bytes;
    let forwarded_at = Utc::now();
    let exchange = async {
        let resp = trust
            .client
            .pick()
            .request(req)
            .await
            .map_err(|e| match connect_error(&e) {
                Some(c) if c.is_trust() => Forward::Fail(
                    problem(
                        ErrorCode::SignatureInvalid,
                        format!("the provider's node is not trusted: {}", ErrorChain(c)),
                        Some(tx),
                    )
                    .with_status(502),
                ),
                Some(c) => Forward::Retry(problem(
                    ErrorCode::ProviderUnreachable,
                    format!("the provider's node cannot be reached: {c}"),
                    Some(tx),
                )),
                None => Forward::Fail(problem(
                    ErrorCode::ProviderUnreachable,
                    format!(
                        "the exchange with the provider's node failed: {}",
                        ErrorChain(&e)
                    ),
                    Some(tx),
                )),
            })?;
        let peer = resp.extensions().get::<PeerIdentity>().cloned();
        let (resp_head, resp_body) = resp.into_parts();
        let resp_body = read_body(resp_body, &resp_head.headers, limit)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge => Forward::Fail(problem(
                    ErrorCode::PayloadTooLarge,
                    format!("the provider's response is larger than {limit} bytes"),
                    Some(tx),
                )),
                BodyError::Broken(d) => Forward::Fail(problem(
                    ErrorCode::ProviderUnreachable,
                    format!("the provider's response could not be read: {d}"),
                    Some(tx),
                )),
            })?;
        Ok::<_, Forward>((peer, resp_head, resp_body))
    };
    let (peer, resp_head, resp_body) = match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(Forward::Fail(problem(
                ErrorCode::ProviderTimeout,
                format!(
                    "the provider's node did not answer within {} s",
                    timeout.as_secs()
                ),
                Some(tx),
            )))
        }
    };
    if let Some(p) = &peer {
        if &p.member != provider {
            return Err(Forward::Fail(
                problem(
                    ErrorCode::SignatureInvalid,
                    format!(
                        "the node that answered belongs to {}, not to the provider {provider}",
                        p.member
                    ),
                    Some(tx),
                )
                .with_status(502),
            ));
        }
    }
    let vm = verify_answer(state, trust, &resp_head, head, &resp_body, provider, tx)
        .await
        .map_err(Forward::Fail)?;
    Ok((resp_head, resp_body, vm, forwarded_at))
}

/// Verifies the provider's answer; a failure means it never reaches the
/// client.
async fn verify_answer(
    state: &NodeState,
    trust: &Trust,
    resp: &http::response::Parts,
    req: &http::request::Parts,
    body: &[u8],
    provider: &ndxp_core::MemberId,
    tx: TransactionId,
) -> Result<VerifiedMessage, Problem> {
    let invalid = |d: String| problem(ErrorCode::SignatureInvalid, d, Some(tx)).with_status(502);
    if !resp.headers.contains_key("signature") {
        let code = wire::platform_code(&resp.headers, body)
            .map(|c| format!(" ({c})"))
            .unwrap_or_default();
        return Err(invalid(format!(
            "the provider's node answered {} without a signature{code}; the answer was withheld",
            resp.status.as_u16()
        )));
    }
    let vm = state
        .verify_signed(&resp.headers, trust.profile.max_field_bytes, || {
            profile::verify_response_with_body(resp, req, body, &trust.profile, Utc::now())
        })
        .await
        .map_err(|e| invalid(format!("the provider's answer does not verify: {e}")))?;
    if &vm.signer != provider {
        return Err(invalid(format!(
            "the answer is signed by {}, not by the provider {provider}",
            vm.signer
        )));
    }
    Ok(vm)
}

fn request_hash(info: &SignedInfo) -> String {
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(info.base_sha256)
    )
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    state: &NodeState,
    signed: Signed,
    resp_head: http::response::Parts,
    resp_body: Bytes,
    vm: VerifiedMessage,
    received_at: DateTime<Utc>,
    forwarded_at: DateTime<Utc>,
    tx: TransactionId,
) -> Result<Response<Body>, Problem> {
    let status = resp_head.status;
    let hash = request_hash(&signed.info);
    let code = wire::platform_code(&resp_head.headers, &resp_body);
    if let Some(service) = &signed.service {
        let keep = state.keep_bodies(None);
        let exchange = Exchange {
            transaction_id: tx,
            client: signed.client.clone(),
            service: service.clone(),
            role: Role::Consumer,
            received_at,
            forwarded_at: Some(forwarded_at),
            backend_answered_at: None,
            responded_at: Utc::now(),
            user_id: signed.user_id.clone(),
            request_id: signed.request_id.clone(),
            status: status.as_u16(),
            problem_code: code.clone(),
            request_bytes: signed.request_body.len() as u64,
            response_bytes: resp_body.len() as u64,
            request: own_meta(state, &signed.info, &signed.digest),
            response: Some(verified_meta(&vm)),
            body: keep.then(|| ndxp_audit::log::Bodies {
                request: Some(signed.request_body.to_vec()),
                response: Some(resp_body.to_vec()),
            }),
            trace_id: Some(signed.trace_id),
        };
        state.log_append(exchange).await.map_err(|e| {
            tracing::error!(error = %e, transaction = %tx, "the message log could not store an exchange");
            problem(
                ErrorCode::Internal,
                "the exchange could not be recorded in the message log; the answer was withheld",
                Some(tx),
            )
        })?;
    }
    let mut out = Response::new(Full::new(resp_body));
    *out.status_mut() = StatusCode::from_u16(status.as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    ndxp_edge::forward::relay(&resp_head.headers, out.headers_mut());
    out.headers_mut().insert(
        HeaderName::from_static(profile::NDXP_ID),
        hv(&tx.to_string()),
    );
    out.headers_mut()
        .insert(HeaderName::from_static(REQUEST_HASH), hv(&hash));
    if let Some(code) = code {
        out.extensions_mut().insert(RelayedCode(code));
    }
    Ok(out)
}

/// Logs a signed request whose exchange failed, and returns the problem
/// for the client (the log failure wins when the record cannot be
/// stored).
async fn log_failure(
    state: &NodeState,
    signed: Signed,
    p: Problem,
    received_at: DateTime<Utc>,
) -> Problem {
    let Some(service) = signed.service.clone() else {
        return p;
    };
    let tx = signed.info.ndxp_id;
    let exchange = Exchange {
        transaction_id: tx,
        client: signed.client.clone(),
        service,
        role: Role::Consumer,
        received_at,
        forwarded_at: None,
        backend_answered_at: None,
        responded_at: Utc::now(),
        user_id: signed.user_id.clone(),
        request_id: signed.request_id.clone(),
        status: p.status,
        problem_code: Some(p.code.clone()),
        request_bytes: signed.request_body.len() as u64,
        response_bytes: 0,
        request: own_meta(state, &signed.info, &signed.digest),
        response: None,
        body: None,
        trace_id: Some(signed.trace_id),
    };
    match state.log_append(exchange).await {
        Ok(_) => p,
        Err(e) => {
            tracing::error!(error = %e, transaction = %tx, "the message log could not store a failed exchange");
            problem(
                ErrorCode::Internal,
                "the exchange failed and could not be recorded in the message log",
                Some(tx),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            parse_target("/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/persons/1"),
            Ok(Target::Service(
                "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1"
                    .parse()
                    .expect("id")
            ))
        );
        assert_eq!(
            parse_target("/r1/VN/GOV/000.00.00.H29/CSDLDC/listMethods"),
            Ok(Target::Meta(
                "VN/GOV/000.00.00.H29/CSDLDC".parse().expect("id"),
                "listMethods"
            ))
        );
        assert!(parse_target("/r2/VN").is_err());
        assert!(parse_target("/r1/VN/GOV/000.00.00.H29/CSDLDC/other").is_err());
        assert!(parse_target("/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/x1/p").is_err());
        assert!(parse_target("/r1/VN/GOV/%30/CSDLDC/citizen/v1").is_err());
        for rest in ["/..", "/../x", "/a/%2e%2E/x", "/./x", "/%2e", "/a\\..\\x"] {
            let path = format!("/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1{rest}");
            assert!(parse_target(&path).is_err(), "{rest}");
        }
        assert!(parse_target("/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/a..b/.x/...").is_ok());
    }

    proptest::proptest! {
        /// Whatever rest is accepted stays under the backend's base URL
        /// once the provider appends it and the URL is normalised.
        #[test]
        fn accepted_rests_stay_under_the_backend_base(
            rest in "(/([a-z]|[.]|%2[eE]|[.][.]|%2[eE]%2[eE]|[.]%2[eE]){0,3}){0,4}"
        ) {
            let path = format!("/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1{rest}");
            if parse_target(&path).is_ok() {
                let url = reqwest::Url::parse(&format!("http://backend/base{rest}"))
                    .map_err(|e| proptest::test_runner::TestCaseError::fail(e.to_string()))?;
                proptest::prop_assert!(
                    url.path() == "/base" || url.path().starts_with("/base/"),
                    "{} became {}", rest, url.path()
                );
            }
        }
    }
}
