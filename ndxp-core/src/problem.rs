//! Errors that the platform itself raises, as RFC 9457
//! `application/problem+json` documents with a stable `code` (docs/design.md §4).
//!
//! ```
//! use ndxp_core::problem::{ErrorCode, Problem};
//! let p = Problem::new(ErrorCode::AccessDenied, "VN/GOV/1/A may not call this service");
//! assert_eq!(p.status, 403);
//! let json = serde_json::to_string(&p).unwrap();
//! assert!(json.contains(r#""code":"ndxp.access_denied""#));
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::txid::TransactionId;

/// The media type of a problem document.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Every error code the platform answers with. Codes are stable: clients
/// match on them, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// Malformed path, identifier, header or body framing (400).
    BadRequest,
    /// `NDXP-Client` is not a subsystem registered on this node (403).
    ClientUnknown,
    /// Missing or invalid credentials (401).
    Unauthorized,
    /// The client has no right to the service (403).
    AccessDenied,
    /// No such provider, subsystem, service or version (404).
    ServiceUnknown,
    /// Request or response over the configured limit (413).
    PayloadTooLarge,
    /// Quota or rate exceeded (429, with `Retry-After`).
    RateLimited,
    /// A signature, digest, certificate or timestamp failed verification
    /// (400 when the request was bad, 502 when the provider's answer was).
    SignatureInvalid,
    /// The peer node or backend cannot be reached (502).
    ProviderUnreachable,
    /// The peer node or backend did not answer in time (504).
    ProviderTimeout,
    /// This node's global configuration is expired or unverifiable (503).
    ConfExpired,
    /// A bug; the detail never leaks keys, paths or stack traces (500).
    Internal,
}

/// `(code, machine name, default status, title)` for every code.
const TABLE: [(ErrorCode, &str, u16, &str); 12] = [
    (ErrorCode::BadRequest, "bad_request", 400, "Bad request"),
    (
        ErrorCode::ClientUnknown,
        "client_unknown",
        403,
        "Client unknown",
    ),
    (ErrorCode::Unauthorized, "unauthorized", 401, "Unauthorized"),
    (
        ErrorCode::AccessDenied,
        "access_denied",
        403,
        "Access denied",
    ),
    (
        ErrorCode::ServiceUnknown,
        "service_unknown",
        404,
        "Service unknown",
    ),
    (
        ErrorCode::PayloadTooLarge,
        "payload_too_large",
        413,
        "Payload too large",
    ),
    (ErrorCode::RateLimited, "rate_limited", 429, "Rate limited"),
    (
        ErrorCode::SignatureInvalid,
        "signature_invalid",
        400,
        "Signature invalid",
    ),
    (
        ErrorCode::ProviderUnreachable,
        "provider_unreachable",
        502,
        "Provider unreachable",
    ),
    (
        ErrorCode::ProviderTimeout,
        "provider_timeout",
        504,
        "Provider timeout",
    ),
    (
        ErrorCode::ConfExpired,
        "conf_expired",
        503,
        "Global configuration expired",
    ),
    (ErrorCode::Internal, "internal", 500, "Internal error"),
];

impl ErrorCode {
    /// All codes, in table order.
    pub fn all() -> impl Iterator<Item = ErrorCode> {
        TABLE.iter().map(|e| e.0)
    }

    fn entry(self) -> &'static (ErrorCode, &'static str, u16, &'static str) {
        // Every variant has exactly one row; `all_codes_have_rows` tests it.
        TABLE.iter().find(|e| e.0 == self).unwrap_or(&TABLE[11])
    }

    /// The short name, e.g. `access_denied`.
    pub fn name(self) -> &'static str {
        self.entry().1
    }

    /// The stable code, e.g. `ndxp.access_denied`.
    pub fn code(self) -> String {
        format!("ndxp.{}", self.name())
    }

    /// The problem type URI, e.g. `urn:ndxp:problem:access_denied`.
    pub fn type_uri(self) -> String {
        format!("urn:ndxp:problem:{}", self.name())
    }

    /// The default HTTP status.
    pub fn status(self) -> u16 {
        self.entry().2
    }

    /// The human title.
    pub fn title(self) -> &'static str {
        self.entry().3
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ndxp.{}", self.name())
    }
}

/// The error for a code string that is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown problem code {0:?}")]
pub struct UnknownCode(pub String);

impl FromStr for ErrorCode {
    type Err = UnknownCode;
    /// Accepts `ndxp.access_denied`.
    fn from_str(s: &str) -> Result<Self, UnknownCode> {
        s.strip_prefix("ndxp.")
            .and_then(|n| TABLE.iter().find(|e| e.1 == n))
            .map(|e| e.0)
            .ok_or_else(|| UnknownCode(s.to_string()))
    }
}

/// An RFC 9457 problem document with NDXP's extension members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:ndxp:problem:{name}`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short human summary of the problem type.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// The stable machine code, e.g. `ndxp.access_denied`.
    pub code: String,
    /// What went wrong in this occurrence, for humans.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The transaction the problem belongs to, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<TransactionId>,
}

impl Problem {
    /// A problem with the code's default status and title.
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            type_uri: code.type_uri(),
            title: code.title().to_string(),
            status: code.status(),
            code: code.code(),
            detail: Some(detail.into()),
            transaction_id: None,
        }
    }

    /// Overrides the status (e.g. 502 for a `signature_invalid` response).
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Attaches the transaction id.
    pub fn with_transaction(mut self, id: TransactionId) -> Self {
        self.transaction_id = Some(id);
        self
    }

    /// The parsed code, if it is one of ours.
    pub fn error_code(&self) -> Option<ErrorCode> {
        self.code.parse().ok()
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code, self.status)?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_codes_have_rows() {
        let names: Vec<_> = ErrorCode::all().map(|c| c.code()).collect();
        assert_eq!(names.len(), 12);
        for c in ErrorCode::all() {
            assert_eq!(c.code().parse::<ErrorCode>().unwrap(), c);
            assert!(c.type_uri().ends_with(c.name()));
        }
        assert_eq!(ErrorCode::RateLimited.status(), 429);
        assert_eq!(ErrorCode::ConfExpired.status(), 503);
        assert_eq!(ErrorCode::Internal.status(), 500);
    }

    #[test]
    fn problem_json_matches_design() {
        let id: TransactionId = "01936d1e-6f1a-7c3e-9a2b-0123456789ab".parse().unwrap();
        let p = Problem::new(ErrorCode::AccessDenied, "no right").with_transaction(id);
        let v: serde_json::Value = serde_json::to_value(&p).unwrap();
        assert_eq!(v["type"], "urn:ndxp:problem:access_denied");
        assert_eq!(v["title"], "Access denied");
        assert_eq!(v["status"], 403);
        assert_eq!(v["code"], "ndxp.access_denied");
        assert_eq!(v["transaction_id"], "01936d1e-6f1a-7c3e-9a2b-0123456789ab");
        let back: Problem = serde_json::from_value(v).unwrap();
        assert_eq!(back, p);
        assert_eq!(
            Problem::new(ErrorCode::SignatureInvalid, "x")
                .with_status(502)
                .status,
            502
        );
    }
}
