//! The one problem renderer of the node and the gateway: an
//! [`ndxp_core::Problem`] becomes an HTTP answer with its status,
//! `Content-Type: application/problem+json`, `NDXP-Id` when the problem
//! belongs to a transaction, and `WWW-Authenticate` / `Retry-After` when
//! the caller gives them (`docs/design.md` §4 "Problems" and §14).
//!
//! The body type is generic (anything built from [`Bytes`]), so the node's
//! hyper services (`Full<Bytes>`) and the gateway's axum routers
//! (`axum::body::Body`) render through the same code.
//!
//! ```
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use ndxp_core::{ErrorCode, Problem};
//! use ndxp_edge::problem::ProblemResponse;
//!
//! let p = Problem::new(ErrorCode::RateLimited, "the subscription's rate limit is exceeded");
//! let r: http::Response<Full<Bytes>> = ProblemResponse::new(&p).retry_after(3).into_response();
//! assert_eq!(r.status(), 429);
//! assert_eq!(r.headers()["content-type"], "application/problem+json");
//! assert_eq!(r.headers()["retry-after"], "3");
//! ```

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{Response, StatusCode};
use ndxp_core::problem::PROBLEM_CONTENT_TYPE;
use ndxp_core::Problem;

/// The problem code of a rendered answer (e.g. `ndxp.access_denied`), put
/// in the response's extensions so that metrics layers can count error
/// answers by code without parsing the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProblemCode(pub String);

/// A problem document on its way to becoming an HTTP answer.
#[derive(Debug, Clone)]
#[must_use]
pub struct ProblemResponse<'a> {
    problem: &'a Problem,
    www_authenticate: Option<HeaderValue>,
    retry_after: Option<u64>,
}

impl<'a> ProblemResponse<'a> {
    /// The answer for `problem`: its status (500 when the status is not a
    /// valid HTTP status), the problem+json media type, and `NDXP-Id` when
    /// the problem carries a transaction id.
    pub fn new(problem: &'a Problem) -> Self {
        Self {
            problem,
            www_authenticate: None,
            retry_after: None,
        }
    }

    /// Adds `WWW-Authenticate: {challenge}` (401 answers).
    pub fn www_authenticate(mut self, challenge: &'static str) -> Self {
        self.www_authenticate = Some(HeaderValue::from_static(challenge));
        self
    }

    /// Adds `Retry-After: {seconds}` (429 answers).
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// The answer as a head and the body bytes, for callers that sign the
    /// body before sending it.
    pub fn into_parts(self) -> (http::response::Parts, Bytes) {
        // A `Problem` holds only strings and numbers: serialising it cannot
        // fail, the fallback is never used.
        let body = Bytes::from(serde_json::to_vec(self.problem).unwrap_or_else(|_| b"{}".to_vec()));
        let mut r = Response::new(());
        *r.status_mut() =
            StatusCode::from_u16(self.problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let h = r.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(PROBLEM_CONTENT_TYPE));
        if let Some(v) = self.www_authenticate {
            h.insert(WWW_AUTHENTICATE, v);
        }
        if let Some(t) = self.problem.transaction_id {
            if let Ok(v) = HeaderValue::from_str(&t.to_string()) {
                h.insert(HeaderName::from_static(ndxp_sign::profile::NDXP_ID), v);
            }
        }
        if let Some(s) = self.retry_after {
            h.insert(RETRY_AFTER, HeaderValue::from(s));
        }
        r.extensions_mut()
            .insert(ProblemCode(self.problem.code.clone()));
        (r.into_parts().0, body)
    }

    /// The answer with any body type that can be built from [`Bytes`]
    /// (`http_body_util::Full<Bytes>`, `axum::body::Body`).
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let (parts, body) = self.into_parts();
        Response::from_parts(parts, B::from(body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};
    use ndxp_core::{ErrorCode, TransactionId};

    async fn body(r: Response<Full<Bytes>>) -> String {
        let b = r.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(b.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn renders_status_type_id_and_field_order() {
        let id: TransactionId = "01936d1e-6f1a-7c3e-9a2b-0123456789ab".parse().unwrap();
        let p = Problem::new(ErrorCode::AccessDenied, "no right").with_transaction(id);
        let r: Response<Full<Bytes>> = ProblemResponse::new(&p).into_response();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let names: Vec<_> = r.headers().keys().map(|k| k.as_str().to_string()).collect();
        assert_eq!(names, ["content-type", "ndxp-id"]);
        assert_eq!(
            r.headers()["ndxp-id"],
            "01936d1e-6f1a-7c3e-9a2b-0123456789ab"
        );
        assert_eq!(
            r.extensions().get::<ProblemCode>(),
            Some(&ProblemCode("ndxp.access_denied".into()))
        );
        assert_eq!(
            body(r).await,
            r#"{"type":"urn:ndxp:problem:access_denied","title":"Access denied","status":403,"code":"ndxp.access_denied","detail":"no right","transaction_id":"01936d1e-6f1a-7c3e-9a2b-0123456789ab"}"#
        );
    }

    #[tokio::test]
    async fn challenge_and_retry_after_only_when_given() {
        let p = Problem::new(ErrorCode::Unauthorized, "send a token");
        let r: Response<Full<Bytes>> = ProblemResponse::new(&p).into_response();
        assert_eq!(r.headers().len(), 1);
        let r: Response<Full<Bytes>> = ProblemResponse::new(&p)
            .www_authenticate("Bearer")
            .into_response();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(r.headers()["www-authenticate"], "Bearer");
        assert!(r.headers().get("ndxp-id").is_none());
        let q = Problem::new(ErrorCode::RateLimited, "slow down");
        let r: Response<Full<Bytes>> = ProblemResponse::new(&q).retry_after(17).into_response();
        assert_eq!(r.headers()["retry-after"], "17");
        let bad = Problem::new(ErrorCode::Internal, "x").with_status(1000);
        let r: Response<Full<Bytes>> = ProblemResponse::new(&bad).into_response();
        assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(body(r).await.contains(r#""status":1000"#));
    }
}
