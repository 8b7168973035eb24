//! Every error the management API can answer with, and the one function
//! ([`ApiError::to_problem`]) that maps each to an HTTP status and an
//! RFC 9457 problem document (`application/problem+json`, docs/design.md §4).
//!
//! docs/design.md §4 has no generic "not found" or "conflict" code, so the
//! management API uses the closest stable codes:
//!
//! | situation | status | code |
//! |---|---|---|
//! | malformed JSON, unknown or missing field, bad identifier, bad query | 400 | `ndxp.bad_request` |
//! | a body without the required `Content-Type` | 415 | `ndxp.bad_request` |
//! | the object named in the path does not exist; unknown route | 404 | `ndxp.service_unknown` |
//! | method not allowed on a route | 405 | `ndxp.bad_request` |
//! | the object exists already; a state change that is not allowed | 409 | `ndxp.bad_request` |
//! | body over `[management] max_body_bytes` | 413 | `ndxp.payload_too_large` |
//! | missing, unknown or revoked bearer token | 401 | `ndxp.unauthorized` (with `WWW-Authenticate: Bearer`) |
//! | authenticated, but not allowed to touch that object | 403 | `ndxp.access_denied` |
//! | a registration request whose signature or certificates fail | 400 | `ndxp.signature_invalid` |
//! | a signed monitoring upload whose signature, certificate or signer fails | 400 | `ndxp.signature_invalid` |
//! | a signed monitoring upload that is stale, malformed or for another member's service | 400 / 403 | `ndxp.bad_request` / `ndxp.access_denied` |
//! | a replayed `jti`, a different summary for a stored (node, side, period) | 409 | `ndxp.bad_request` |
//! | database unreachable, a bug | 500 | `ndxp.internal` (the detail names a log reference, nothing else) |

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ndxp_core::{ErrorCode, Problem};
use ndxp_edge::problem::ProblemResponse;
use ndxp_registry::registration::RegistrationError;
use ndxp_registry::store::StoreError;

use crate::management::publisher::PublishError;

/// Why a management request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The request is malformed (JSON, identifier, query, header).
    #[error("{0}")]
    BadRequest(String),
    /// The body is not of the media type the endpoint takes.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// The body is larger than the configured limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// No bearer token, or one that matches no active credential.
    #[error("{0}")]
    Unauthorized(String),
    /// The caller may not do this.
    #[error("{0}")]
    Forbidden(String),
    /// No route for this path.
    #[error("no route {method} {path}")]
    NoRoute {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The route exists but not with this method.
    #[error("method {method} is not allowed on {path}")]
    MethodNotAllowed {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
    },
    /// The registry refused or failed the operation.
    #[error("{0}")]
    Store(#[source] Box<StoreError>),
    /// A registration request did not pass its checks.
    #[error("{0}")]
    Registration(#[source] Box<RegistrationError>),
    /// The global configuration could not be built or read.
    #[error("{0}")]
    Publish(#[source] Box<PublishError>),
    /// A signed monitoring upload did not pass its checks.
    #[error("{0}")]
    Upload(#[source] Box<ndxp_audit::monitor::EnvelopeError>),
    /// Monitoring or reconciliation data could not be produced.
    #[error("{0}")]
    Monitor(#[source] Box<crate::monitoring::MonitorError>),
    /// The signer of a request or upload is revoked.
    #[error("{0}")]
    Revoked(String),
    /// Something that should not happen (a bug).
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status and problem document for this error. Internal errors get
    /// a detail that names only a log reference.
    pub fn to_problem(&self) -> (StatusCode, Problem) {
        use ErrorCode as C;
        let (code, status, detail) = match self {
            ApiError::BadRequest(m) => (C::BadRequest, 400, m.clone()),
            ApiError::UnsupportedMediaType(m) => (C::BadRequest, 415, m.clone()),
            ApiError::PayloadTooLarge { .. } => (C::PayloadTooLarge, 413, self.to_string()),
            ApiError::Unauthorized(m) => (C::Unauthorized, 401, m.clone()),
            ApiError::Forbidden(m) => (C::AccessDenied, 403, m.clone()),
            ApiError::Revoked(m) => (C::SignatureInvalid, 400, m.clone()),
            ApiError::NoRoute { .. } => (C::ServiceUnknown, 404, self.to_string()),
            ApiError::MethodNotAllowed { .. } => (C::BadRequest, 405, self.to_string()),
            ApiError::Store(e) => match e.as_ref() {
                StoreError::NotFound { .. } => (C::ServiceUnknown, 404, e.to_string()),
                StoreError::AlreadyExists { .. } | StoreError::InvalidTransition { .. } => {
                    (C::BadRequest, 409, e.to_string())
                }
                StoreError::Invalid(m) => (C::BadRequest, 400, m.clone()),
                _ => internal(e.as_ref()),
            },
            ApiError::Registration(e) => match e.as_ref() {
                RegistrationError::Signature(_)
                | RegistrationError::WrongSigner { .. }
                | RegistrationError::AuthCertificate(_) => {
                    (C::SignatureInvalid, 400, e.to_string())
                }
                RegistrationError::NotOwnCertificate { .. } => {
                    (C::AccessDenied, 403, e.to_string())
                }
                RegistrationError::Malformed(_)
                | RegistrationError::Stale { .. }
                | RegistrationError::BadAddress(_) => (C::BadRequest, 400, e.to_string()),
                _ => internal(e.as_ref()),
            },
            ApiError::Publish(e) => internal(e.as_ref()),
            ApiError::Upload(e) => {
                use ndxp_audit::monitor::EnvelopeError as U;
                match e.as_ref() {
                    U::Signature(_) | U::Certificate(_) | U::WrongSigner { .. } => {
                        (C::SignatureInvalid, 400, e.to_string())
                    }
                    U::Sign(_) => internal(e.as_ref()),
                    _ => (C::BadRequest, 400, e.to_string()),
                }
            }
            ApiError::Monitor(e) => match e.as_ref() {
                crate::monitoring::MonitorError::BadPeriod(m) => (C::BadRequest, 400, m.clone()),
                _ => internal(e.as_ref()),
            },
            ApiError::Internal(_) => internal(self),
        };
        let problem = Problem::new(code, detail).with_status(status);
        (
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            problem,
        )
    }
}

/// Logs an internal error with a fresh reference and returns the answer,
/// whose detail carries only that reference.
fn internal(e: &dyn std::error::Error) -> (ErrorCode, u16, String) {
    let reference = uuid::Uuid::now_v7();
    tracing::error!(%reference, error = %ndxp_core::ErrorChain(e), "management API internal error");
    (
        ErrorCode::Internal,
        500,
        format!("internal error; the server log has the details under reference {reference}"),
    )
}

impl From<ndxp_audit::monitor::EnvelopeError> for ApiError {
    fn from(e: ndxp_audit::monitor::EnvelopeError) -> Self {
        ApiError::Upload(Box::new(e))
    }
}

impl From<crate::monitoring::MonitorError> for ApiError {
    fn from(e: crate::monitoring::MonitorError) -> Self {
        match e {
            crate::monitoring::MonitorError::Store(s) => ApiError::Store(Box::new(s)),
            other => ApiError::Monitor(Box::new(other)),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(Box::new(e))
    }
}

impl From<RegistrationError> for ApiError {
    fn from(e: RegistrationError) -> Self {
        ApiError::Registration(Box::new(e))
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> Self {
        ApiError::Publish(Box::new(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, problem) = self.to_problem();
        let answer = ProblemResponse::new(&problem);
        if status == StatusCode::UNAUTHORIZED {
            answer
                .www_authenticate("Bearer realm=\"ndxp-management\"")
                .into_response()
        } else {
            answer.into_response()
        }
    }
}
