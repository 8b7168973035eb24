//! A sample consumer: what an information system does to call a service
//! through its organisation's node (distributed model, docs/design.md §4) or
//! through the central gateway (centralized model, docs/design.md §9).
//!
//! * **Node**: `{METHOD} {node}/r1/{service}{path}` with the calling
//!   subsystem in `NDXP-Client` (and `NDXP-User-Id` / `NDXP-Request-Id`
//!   when given).
//! * **Gateway**: first an OAuth 2.0 access token by the client-credentials
//!   grant (RFC 6749 §4.4: `POST {token_url}` with the form
//!   `grant_type=client_credentials` and the client authenticated by HTTP
//!   Basic, §2.3.1), then `{METHOD} {gateway}/{service}{path}` with
//!   `Authorization: Bearer {token}`.
//!
//! The answer is an [`Outcome`]: its status, the platform's `NDXP-Id` and
//! `NDXP-Request-Hash`, and either the backend's body or the platform's
//! RFC 9457 problem, which [`Outcome::render`] prints clearly.

use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use clap::{ArgGroup, Parser};
use ndxp_core::problem::{Problem, PROBLEM_CONTENT_TYPE};
use ndxp_core::{ServiceId, SubsystemId};
use serde::Deserialize;

/// `NDXP-Id`: the transaction id a node or the gateway returns.
pub const NDXP_ID: &str = "ndxp-id";
/// `NDXP-Request-Hash`: the digest of the signed request, as logged.
pub const NDXP_REQUEST_HASH: &str = "ndxp-request-hash";

/// The command line of `sample-consumer`.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "sample-consumer",
    about = "Call an NDXP service through a node (--node) or the central gateway (--gateway).",
    group(ArgGroup::new("target").required(true).args(["node", "gateway"]))
)]
pub struct ConsumerArgs {
    /// The client port of your organisation's node, e.g. http://127.0.0.1:8201.
    #[arg(long, requires = "client")]
    pub node: Option<String>,
    /// The calling subsystem (sent as NDXP-Client), e.g. VN/GOV/000.00.00.G22/QLHT.
    /// Required with --node.
    #[arg(long)]
    pub client: Option<SubsystemId>,
    /// The central gateway's base URL (centralized model).
    #[arg(long, requires_all = ["token_url", "client_id", "client_secret"])]
    pub gateway: Option<String>,
    /// The gateway's OAuth 2.0 token endpoint.
    #[arg(long)]
    pub token_url: Option<String>,
    /// The OAuth 2.0 client id the gateway issued.
    #[arg(long)]
    pub client_id: Option<String>,
    /// The OAuth 2.0 client secret the gateway issued.
    #[arg(long)]
    pub client_secret: Option<String>,
    /// The service to call, e.g. VN/GOV/000.00.00.H29/CSDLDC/citizen/v1.
    #[arg(long)]
    pub service: ServiceId,
    /// The path (and query) under the service, e.g. /persons/001099012345.
    #[arg(long, default_value = "/")]
    pub path: String,
    /// The HTTP method.
    #[arg(long, default_value = "GET")]
    pub method: http::Method,
    /// A request body (sent as given).
    #[arg(long)]
    pub data: Option<String>,
    /// The Content-Type of --data.
    #[arg(long, default_value = "application/json")]
    pub content_type: String,
    /// The end user on whose behalf the call is made (NDXP-User-Id).
    #[arg(long)]
    pub user_id: Option<String>,
    /// Your own correlation id (NDXP-Request-Id).
    #[arg(long)]
    pub request_id: Option<String>,
    /// Give up after this many seconds.
    #[arg(long, default_value_t = 30)]
    pub timeout_secs: u64,
}

/// Why a call could not be made or its answer not read. An answer with an
/// error status is not an error here: it is an [`Outcome`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsumerError {
    /// A URL or path given on the command line is not usable.
    #[error("{0}")]
    BadArgument(String),
    /// The request could not be sent or its answer not read.
    #[error("calling {url}: {source}; is the address right and the server running?")]
    Http {
        /// The URL called.
        url: String,
        /// What failed.
        #[source]
        source: reqwest::Error,
    },
    /// The token endpoint refused to issue a token.
    #[error("the token endpoint {url} refused the client credentials ({status}): {detail}")]
    TokenRefused {
        /// The token endpoint.
        url: String,
        /// Its HTTP status.
        status: u16,
        /// The OAuth error (RFC 6749 §5.2) or problem it sent.
        detail: String,
    },
    /// The token endpoint answered 200 with something that is not a bearer token.
    #[error("the token endpoint {url} sent no usable bearer token: {detail}")]
    BadToken {
        /// The token endpoint.
        url: String,
        /// What is wrong with the answer.
        detail: String,
    },
}

/// The answer to one call.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The URL called.
    pub url: String,
    /// The HTTP status.
    pub status: http::StatusCode,
    /// `NDXP-Id`, when sent.
    pub ndxp_id: Option<String>,
    /// `NDXP-Request-Hash`, when sent.
    pub request_hash: Option<String>,
    /// `Content-Type`, when sent.
    pub content_type: Option<String>,
    /// The body.
    pub body: Bytes,
    /// The platform's problem document, when the answer is one.
    pub problem: Option<Problem>,
}

impl Outcome {
    /// True for a 2xx answer.
    pub fn success(&self) -> bool {
        self.status.is_success()
    }

    /// What `sample-consumer` prints: the status, the platform headers,
    /// then the body, or a readable account of a platform error.
    pub fn render(&self) -> String {
        let mut out = format!(
            "status: {} {}\n",
            self.status.as_u16(),
            self.status.canonical_reason().unwrap_or("")
        );
        out.push_str(&format!(
            "NDXP-Id: {}\n",
            self.ndxp_id.as_deref().unwrap_or("(none)")
        ));
        out.push_str(&format!(
            "NDXP-Request-Hash: {}\n",
            self.request_hash.as_deref().unwrap_or("(none)")
        ));
        if let Some(p) = &self.problem {
            out.push_str(&format!("error: {} — {}\n", p.code, p.title));
            if let Some(d) = &p.detail {
                out.push_str(&format!("detail: {d}\n"));
            }
            if let Some(t) = &p.transaction_id {
                out.push_str(&format!("transaction: {t}\n"));
            }
            if let Some(hint) = p.error_code().map(hint) {
                out.push_str(&format!("hint: {hint}\n"));
            }
            return out;
        }
        if !self.success() {
            out.push_str("error: the provider's backend answered with an error status\n");
        }
        out.push('\n');
        match std::str::from_utf8(&self.body) {
            Ok(text) => {
                out.push_str(text);
                if !text.ends_with('\n') {
                    out.push('\n');
                }
            }
            Err(_) => out.push_str(&format!("({} bytes of binary data)\n", self.body.len())),
        }
        out
    }
}

/// What to check first for each platform error code.
fn hint(code: ndxp_core::problem::ErrorCode) -> &'static str {
    use ndxp_core::problem::ErrorCode::*;
    match code {
        BadRequest => "check the service id, the path and the headers",
        ClientUnknown => "the --client subsystem must be registered on this node",
        Unauthorized => "check the client id and secret (or the token has expired)",
        AccessDenied => "ask the provider to grant your subsystem access to the service",
        ServiceUnknown => "check the service id and version in the service catalogue",
        PayloadTooLarge => "send or request less data",
        RateLimited => "slow down; retry after the time in Retry-After",
        SignatureInvalid => "a signature or certificate failed; tell both node operators",
        ProviderUnreachable => "the provider's node or backend is down; retry later",
        ProviderTimeout => "the provider did not answer in time; retry later",
        ConfExpired => "the node's global configuration is stale; tell its operator",
        Internal => "a platform bug; report the transaction id",
        _ => "see docs/protocol.md",
    }
}

/// The URL a call goes to.
///
/// # Errors
/// [`ConsumerError::BadArgument`] for a base URL that is not http(s) or a
/// path that does not start with `/`.
pub fn target_url(args: &ConsumerArgs) -> Result<String, ConsumerError> {
    if !args.path.starts_with('/') {
        return Err(ConsumerError::BadArgument(format!(
            "--path must start with '/', e.g. /persons/001099012345 (found {:?})",
            args.path
        )));
    }
    let (base, prefix) = match (&args.node, &args.gateway) {
        (Some(node), _) => (node, "/r1/"),
        (None, Some(gw)) => (gw, "/"),
        (None, None) => {
            return Err(ConsumerError::BadArgument(
                "give --node URL or --gateway URL".into(),
            ))
        }
    };
    if !(base.starts_with("http://") || base.starts_with("https://")) {
        return Err(ConsumerError::BadArgument(format!(
            "{base:?} is not an http:// or https:// URL"
        )));
    }
    Ok(format!(
        "{}{prefix}{}{}",
        base.trim_end_matches('/'),
        args.service,
        args.path
    ))
}

/// Calls the service as `args` say.
///
/// # Errors
/// See [`ConsumerError`]. An error status from the platform or the backend
/// is an `Ok` [`Outcome`].
pub async fn call(args: &ConsumerArgs) -> Result<Outcome, ConsumerError> {
    let url = target_url(args)?;
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout_secs))
        .build()
        .map_err(|source| ConsumerError::Http {
            url: url.clone(),
            source,
        })?;
    let mut req = http.request(args.method.clone(), &url);
    if args.gateway.is_some() && args.node.is_none() {
        let (Some(token_url), Some(id), Some(secret)) =
            (&args.token_url, &args.client_id, &args.client_secret)
        else {
            return Err(ConsumerError::BadArgument(
                "--gateway needs --token-url, --client-id and --client-secret".into(),
            ));
        };
        let token = fetch_token(&http, token_url, id, secret).await?;
        req = req.bearer_auth(token);
    }
    if let Some(c) = &args.client {
        req = req.header("NDXP-Client", c.to_string());
    }
    if let Some(u) = &args.user_id {
        req = req.header("NDXP-User-Id", u);
    }
    if let Some(r) = &args.request_id {
        req = req.header("NDXP-Request-Id", r);
    }
    if let Some(d) = &args.data {
        req = req
            .header(http::header::CONTENT_TYPE, &args.content_type)
            .body(d.clone());
    }
    let resp = req.send().await.map_err(|source| ConsumerError::Http {
        url: url.clone(),
        source,
    })?;
    let status = resp.status();
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let ndxp_id = header(NDXP_ID);
    let request_hash = header(NDXP_REQUEST_HASH);
    let content_type = header(http::header::CONTENT_TYPE.as_str());
    let body = resp.bytes().await.map_err(|source| ConsumerError::Http {
        url: url.clone(),
        source,
    })?;
    let problem = content_type
        .as_deref()
        .filter(|ct| is_problem_type(ct))
        .and_then(|_| serde_json::from_slice::<Problem>(&body).ok());
    Ok(Outcome {
        url,
        status,
        ndxp_id,
        request_hash,
        content_type,
        body,
        problem,
    })
}

fn is_problem_type(ct: &str) -> bool {
    ct.split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(PROBLEM_CONTENT_TYPE))
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    token_type: String,
}

#[derive(Deserialize)]
struct OAuthError {
    error: String,
    #[serde(default)]
    error_description: Option<String>,
}

/// Gets an access token by the client-credentials grant (RFC 6749 §4.4),
/// authenticating the client with HTTP Basic (§2.3.1: id and secret
/// form-urlencoded, joined by `:`, base64).
///
/// # Errors
/// [`ConsumerError::Http`], [`ConsumerError::TokenRefused`] or
/// [`ConsumerError::BadToken`].
pub async fn fetch_token(
    http: &reqwest::Client,
    token_url: &str,
    client_id: &str,
    client_secret: &str,
) -> Result<String, ConsumerError> {
    let credentials = format!(
        "{}:{}",
        form_urlencode(client_id),
        form_urlencode(client_secret)
    );
    let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
    let resp = http
        .post(token_url)
        .header(http::header::AUTHORIZATION, format!("Basic {basic}"))
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body("grant_type=client_credentials")
        .send()
        .await
        .map_err(|source| ConsumerError::Http {
            url: token_url.to_string(),
            source,
        })?;
    let status = resp.status();
    let body = resp.bytes().await.map_err(|source| ConsumerError::Http {
        url: token_url.to_string(),
        source,
    })?;
    if !status.is_success() {
        let detail = if let Ok(e) = serde_json::from_slice::<OAuthError>(&body) {
            match e.error_description {
                Some(d) => format!("{}: {d}", e.error),
                None => e.error,
            }
        } else if let Ok(p) = serde_json::from_slice::<Problem>(&body) {
            p.to_string()
        } else {
            String::from_utf8_lossy(&body).chars().take(300).collect()
        };
        return Err(ConsumerError::TokenRefused {
            url: token_url.to_string(),
            status: status.as_u16(),
            detail,
        });
    }
    let token: TokenResponse =
        serde_json::from_slice(&body).map_err(|e| ConsumerError::BadToken {
            url: token_url.to_string(),
            detail: format!("not a token response ({e})"),
        })?;
    if !token.token_type.eq_ignore_ascii_case("bearer") {
        return Err(ConsumerError::BadToken {
            url: token_url.to_string(),
            detail: format!("token_type is {:?}, not Bearer", token.token_type),
        });
    }
    Ok(token.access_token)
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749
/// Appendix B): unreserved characters stay, space becomes `+`, every other
/// byte of the UTF-8 encoding becomes `%XX`.
pub fn form_urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_keeps_unreserved_and_escapes_the_rest() {
        assert_eq!(form_urlencode("abc-1.2_*"), "abc-1.2_*");
        assert_eq!(form_urlencode("a b:c%"), "a+b%3Ac%25");
        assert_eq!(form_urlencode("ệ"), "%E1%BB%87");
    }

    #[test]
    fn problem_content_type_with_parameters() {
        assert!(is_problem_type("application/problem+json; charset=utf-8"));
        assert!(is_problem_type("Application/Problem+JSON"));
        assert!(!is_problem_type("application/json"));
    }
}
