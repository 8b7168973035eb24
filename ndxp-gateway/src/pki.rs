//! The platform's trust services over HTTP: OCSP (RFC 6960) at `/ocsp` and
//! RFC 3161 timestamps at `/tsa`, answered from a PKI directory made by
//! `ndxp-gateway pki init` (see `docs/pki.md`).
//!
//! Every answer is signed, so the service speaks plain HTTP like any public
//! OCSP responder or TSA. Revocation status is read from the PKI directory on
//! each request, so a `pki revoke` run by another process is answered at
//! once.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use chrono::Utc;
use ndxp_sign::ca::Pki;
use ndxp_sign::ocsp::OcspResponder;
use ndxp_sign::tsa::TimestampAuthority;

/// Largest OCSP or timestamp request accepted, in bytes. Real requests are a
/// few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How long a signing operation may take before the request is answered with
/// 503.
const WORK_TIMEOUT: Duration = Duration::from_secs(10);

/// The OCSP responder and the timestamp authority of one PKI directory.
pub struct PkiService {
    pki: Pki,
    ocsp: OcspResponder,
    tsa: TimestampAuthority,
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiServiceError {
    /// The timestamp authority could not be set up from the PKI directory.
    #[error("cannot set up the timestamp authority")]
    Tsa(#[source] ndxp_sign::tsa::TsaError),
    /// The OCSP responder could not be set up from the PKI directory.
    #[error("cannot set up the OCSP responder")]
    Ocsp(#[source] ndxp_sign::ocsp::OcspError),
}

impl PkiService {
    /// Builds the service over an opened PKI directory, with the default
    /// timestamp policy.
    pub fn new(pki: Pki) -> Result<Self, PkiServiceError> {
        Self::with_tsa_policy(pki, None)
    }

    /// Builds the service, stamping tokens with `policy` (a dotted OID)
    /// instead of the default documentation-only one.
    pub fn with_tsa_policy(pki: Pki, policy: Option<&str>) -> Result<Self, PkiServiceError> {
        let mut tsa = TimestampAuthority::new(pki.tsa_cert(), pki.tsa_key())
            .map_err(PkiServiceError::Tsa)?
            .with_chain(pki.chain().to_vec());
        if let Some(oid) = policy {
            tsa = tsa.with_policy(oid).map_err(PkiServiceError::Tsa)?;
        }
        // The issuing CA signs OCSP answers for the certificates it issued.
        let ocsp = OcspResponder::new(pki.issuing_cert(), pki.issuing_cert(), pki.issuing_key())
            .map_err(PkiServiceError::Ocsp)?;
        Ok(Self { pki, ocsp, tsa })
    }

    /// Answers a DER OCSP request with a DER OCSP response (a
    /// `malformedRequest` answer for bytes that are not a request).
    pub fn ocsp(&self, request: &[u8]) -> Vec<u8> {
        let reply = self
            .ocsp
            .respond(request, &|serial| self.pki.status(serial), Utc::now());
        if let Some(e) = &reply.error {
            tracing::info!(status = ?reply.status, error = %e, "OCSP request not answered");
        }
        reply.der
    }

    /// Answers a DER timestamp query with a DER timestamp response (a
    /// rejection for a query that cannot be granted).
    pub fn timestamp(&self, query: &[u8]) -> Vec<u8> {
        let reply = self.tsa.respond(query);
        if let Some(e) = &reply.error {
            tracing::info!(status = ?reply.status, error = %e, "timestamp query refused");
        }
        reply.der
    }
}

/// The HTTP routes: `POST /ocsp`, `GET /ocsp/{base64 request}`, `POST /tsa`,
/// `GET /healthz`.
pub fn router(service: Arc<PkiService>) -> Router {
    Router::new()
        .route("/ocsp", post(ocsp_post))
        .route("/ocsp/{*request}", get(ocsp_get))
        .route("/tsa", post(tsa_post))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(service)
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<PkiService>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(service))
        .with_graceful_shutdown(shutdown)
        .await
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

const OCSP_REQUEST: &str = "application/ocsp-request";
const OCSP_RESPONSE: &str = "application/ocsp-response";
const TS_QUERY: &str = "application/timestamp-query";
const TS_REPLY: &str = "application/timestamp-reply";

/// Runs signing work off the async threads, bounded in time, and answers
/// with its DER result.
async fn signed_answer<F>(answer_type: &'static str, work: F) -> Response
where
    F: FnOnce() -> Vec<u8> + Send + 'static,
{
    match tokio::time::timeout(WORK_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(der)) => ([(header::CONTENT_TYPE, answer_type)], der).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "signing task failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => {
            tracing::warn!("signing took longer than {WORK_TIMEOUT:?}");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

/// A POSTed DER request: checks its media type, then [`signed_answer`].
async fn der_exchange<F>(
    headers: &HeaderMap,
    request_type: &'static str,
    answer_type: &'static str,
    work: F,
) -> Response
where
    F: FnOnce() -> Vec<u8> + Send + 'static,
{
    if !content_type_is(headers, request_type) {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type: {request_type}\n"),
        )
            .into_response();
    }
    signed_answer(answer_type, work).await
}

async fn ocsp_post(
    State(service): State<Arc<PkiService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    der_exchange(&headers, OCSP_REQUEST, OCSP_RESPONSE, move || {
        service.ocsp(&body)
    })
    .await
}

async fn ocsp_get(State(service): State<Arc<PkiService>>, Path(request): Path<String>) -> Response {
    let der = match ndxp_sign::ocsp::decode_get_request(&request) {
        Ok(der) if der.len() <= MAX_REQUEST_BYTES => der,
        Ok(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        // A request we cannot decode still gets an OCSP answer
        // (malformedRequest), as RFC 6960 clients expect.
        Err(e) => {
            tracing::debug!(error = %e, "undecodable OCSP GET request");
            Vec::new()
        }
    };
    signed_answer(OCSP_RESPONSE, move || service.ocsp(&der)).await
}

async fn tsa_post(
    State(service): State<Arc<PkiService>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    der_exchange(&headers, TS_QUERY, TS_REPLY, move || {
        service.timestamp(&body)
    })
    .await
}
