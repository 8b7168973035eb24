//! HTTP plumbing shared by the client and peer ports: bounded body reads,
//! problem+json answers, the headers that cross the exchange unchanged.

use bytes::Bytes;
use http::header::{HeaderMap, HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use http::{Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use ndxp_core::problem::PROBLEM_CONTENT_TYPE;
use ndxp_core::{ErrorCode, Problem, TransactionId};

/// The body type of every answer the node sends.
pub type Body = Full<Bytes>;

/// `NDXP-Request-Hash`: digest of the signed request, as logged.
pub const REQUEST_HASH: &str = "ndxp-request-hash";

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// Over the limit (announced or actual).
    TooLarge,
    /// The connection failed or the framing was broken.
    Broken(String),
}

/// Refuses a `Content-Length` over `limit` before reading anything.
pub fn announced_too_large(headers: &HeaderMap, limit: u64) -> bool {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit)
}

/// Reads a body of at most `limit` bytes, as it arrives; never holds more.
pub async fn read_body<B>(body: B, headers: &HeaderMap, limit: u64) -> Result<Bytes, BodyError>
where
    B: hyper::body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if announced_too_large(headers, limit) {
        return Err(BodyError::TooLarge);
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(BodyError::TooLarge)
            } else {
                Err(BodyError::Broken(e.to_string()))
            }
        }
    }
}

/// A problem document for `code` with `detail`, bound to `tx` when known.
pub fn problem(code: ErrorCode, detail: impl Into<String>, tx: Option<TransactionId>) -> Problem {
    let p = Problem::new(code, detail);
    match tx {
        Some(t) => p.with_transaction(t),
        None => p,
    }
}

/// A JSON answer as a head and the body bytes.
pub fn json_parts(status: StatusCode, value: &serde_json::Value) -> (http::response::Parts, Bytes) {
    let body = Bytes::from(serde_json::to_vec(value).unwrap_or_default());
    let mut r = Response::new(());
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    (r.into_parts().0, body)
}

/// The platform problem code in an answer, if the body is an NDXP problem
/// document (a backend's own problem documents carry no `ndxp.` code).
pub fn platform_code(headers: &HeaderMap, body: &[u8]) -> Option<String> {
    let ct = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    if !ct.starts_with(PROBLEM_CONTENT_TYPE) {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = v.get("code")?.as_str()?;
    code.parse::<ErrorCode>().ok().map(|c| c.code())
}

/// One header value as text, if present once and visible ASCII.
pub fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    let mut it = headers.get_all(name).iter();
    let v = it.next()?;
    if it.next().is_some() {
        return None;
    }
    v.to_str().ok()
}

/// An opaque optional header (`NDXP-User-Id`, `NDXP-Request-Id`): at most
/// once, visible ASCII, at most 256 bytes.
pub fn opaque_header(headers: &HeaderMap, name: &'static str) -> Result<Option<String>, String> {
    let mut it = headers.get_all(name).iter();
    let Some(v) = it.next() else { return Ok(None) };
    if it.next().is_some() {
        return Err(format!("{name} appears more than once"));
    }
    let s = v
        .to_str()
        .map_err(|_| format!("{name} is not visible ASCII"))?;
    if s.len() > 256 {
        return Err(format!("{name} is longer than 256 bytes"));
    }
    Ok(Some(s.to_owned()))
}
