//! The backend forwarder of the provider node and the central gateway
//! (`docs/design.md`, "The edge"): one pooled hyper client for HTTP and
//! HTTPS backends (TLS through OpenSSL, by `hyper-tls`/`native-tls`), the
//! backend URI built from a parsed base, the exchange bounded by a time-out
//! and a body limit, and ONE header policy for both callers.
//!
//! # The header policy
//!
//! Only the headers of an allowlist cross the edge, in each direction:
//!
//! * request: [`REQUEST_HEADERS`] (content negotiation, content metadata,
//!   caching and conditional requests);
//! * response: [`RESPONSE_HEADERS`] (content metadata, caching,
//!   validators, `Retry-After`, `Vary`);
//! * plus the names a service adds ([`ExtraHeaders`]), which may not be
//!   any of [`NEVER_FORWARDED`].
//!
//! Whatever the lists say, a header named in `Connection` is dropped with
//! the hop-by-hop ones, and a caller's `Forwarded`, `X-Forwarded-*` and
//! `X-Real-IP` never pass: the edge adds its own `Forwarded`
//! ([`Forwarded`], RFC 7239) instead. The caller adds the headers it owns
//! itself (`NDXP-Client`, `NDXP-Id`, signatures).
//!
//! The consumer's node, which does not know the provider's services,
//! [`relay`]s its client's headers to the provider's node minus those that
//! never cross; the provider's node applies the policy before its backend.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response};
use http_body_util::{BodyExt, Full, Limited};
use hyper_tls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use ndxp_core::ErrorCode;
use serde::{Deserialize, Serialize};

/// Request headers of the caller that reach the backend.
pub const REQUEST_HEADERS: &[&str] = &[
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "cache-control",
    "content-encoding",
    "content-language",
    "content-type",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "range",
];

/// Response headers of the backend that reach the caller. `Location` is
/// not one: it would name the backend's own address; a service that needs
/// it lists it in its [`ExtraHeaders`].
pub const RESPONSE_HEADERS: &[&str] = &[
    "accept-ranges",
    "allow",
    "cache-control",
    "content-disposition",
    "content-encoding",
    "content-language",
    "content-location",
    "content-range",
    "content-type",
    "etag",
    "expires",
    "last-modified",
    "retry-after",
    "vary",
];

/// Headers no configuration can make cross the edge: hop-by-hop and
/// framing fields (RFC 9110 §7.6.1), forwarding and trace context fields
/// the edge sets itself ([`crate::trace`]), credentials of the caller, and the NDXP and signature fields
/// the node and the gateway own.
pub const NEVER_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "expect",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
    "forwarded",
    "x-real-ip",
    "authorization",
    "cookie",
    "set-cookie",
    "signature",
    "signature-input",
    "content-digest",
    "traceparent",
    "tracestate",
];

/// Whether `name` (lowercase) may never cross the edge.
pub fn never_forwarded(name: &str) -> bool {
    NEVER_FORWARDED.contains(&name) || name.starts_with("x-forwarded-") || name.starts_with("ndxp-")
}

/// Headers a service lets through besides the allowlists: in the node's
/// local configuration (a service entry's `forward_headers`) and in
/// `gateway.toml` (`[gateway.forward_headers."{service id}"]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtraHeaders {
    /// Request header names that reach the backend too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request: Vec<String>,
    /// Response header names that reach the caller too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response: Vec<String>,
}

impl ExtraHeaders {
    /// Whether no extra header is set.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// Checks every name; the message says which one is wrong and why.
    ///
    /// # Errors
    /// A name that is not a header name, or one of [`NEVER_FORWARDED`].
    pub fn check(&self) -> Result<(), String> {
        for name in self.request.iter().chain(&self.response) {
            let parsed = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("forward_headers: {name:?} is not a header name"))?;
            if never_forwarded(parsed.as_str()) {
                return Err(format!(
                    "forward_headers: {name} is set by the edge itself or never forwarded; \
                     remove it from the list"
                ));
            }
        }
        Ok(())
    }
}

/// The header policy of one service: the allowlists plus its
/// [`ExtraHeaders`].
#[derive(Debug, Clone, Default)]
pub struct HeaderPolicy {
    request: Vec<HeaderName>,
    response: Vec<HeaderName>,
}

fn names(base: &[&'static str], extra: &[String]) -> Vec<HeaderName> {
    base.iter()
        .map(|n| HeaderName::from_static(n))
        .chain(
            extra
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok()),
        )
        .filter(|n| !never_forwarded(n.as_str()))
        .collect()
}

/// The names listed in the `Connection` fields of `headers`, lowercase.
fn connection_names(headers: &HeaderMap) -> HashSet<String> {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect()
}

fn copy(from: &HeaderMap, to: &mut HeaderMap, allowed: &[HeaderName]) {
    let hop = connection_names(from);
    for name in allowed {
        if hop.contains(name.as_str()) {
            continue;
        }
        for v in from.get_all(name) {
            to.append(name.clone(), v.clone());
        }
    }
}

/// Copies every header of `from` into `to` except those that never cross
/// the edge ([`never_forwarded`]) and those named in `Connection`. The
/// consumer's node relays this way between its client and the provider's
/// node, whose [`HeaderPolicy`] (which knows the service's
/// [`ExtraHeaders`]) then decides what reaches the backend, and what of
/// the backend's answer comes back.
pub fn relay(from: &HeaderMap, to: &mut HeaderMap) {
    let hop = connection_names(from);
    for (name, v) in from {
        if !never_forwarded(name.as_str()) && !hop.contains(name.as_str()) {
            to.append(name.clone(), v.clone());
        }
    }
}

impl HeaderPolicy {
    /// The allowlists plus `extra` (names [`ExtraHeaders::check`] refuses
    /// are ignored).
    pub fn new(extra: &ExtraHeaders) -> Self {
        Self {
            request: names(REQUEST_HEADERS, &extra.request),
            response: names(RESPONSE_HEADERS, &extra.response),
        }
    }

    /// Copies the request headers that may reach the backend from `from`
    /// into `to`.
    pub fn copy_request(&self, from: &HeaderMap, to: &mut HeaderMap) {
        copy(from, to, &self.request);
    }

    /// Copies the response headers that may reach the caller from `from`
    /// into `to`.
    pub fn copy_response(&self, from: &HeaderMap, to: &mut HeaderMap) {
        copy(from, to, &self.response);
    }
}

/// The edge's own `Forwarded` field (RFC 7239) for one request.
#[derive(Debug, Clone)]
pub struct Forwarded<'a> {
    /// `for=`: the address the edge received the request from.
    pub for_addr: IpAddr,
    /// `proto=`: `http` or `https`, as the edge was called.
    pub proto: &'static str,
    /// `host=`: the host (and port) the caller addressed, when known.
    pub host: Option<&'a str>,
}

/// A `Forwarded` parameter value: a token when it is one, else a quoted
/// string (RFC 7230 §3.2.6).
fn param(out: &mut String, value: &str) {
    let token = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if token {
        out.push_str(value);
    } else {
        out.push('"');
        for c in value.chars() {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        }
        out.push('"');
    }
}

impl Forwarded<'_> {
    /// The field value, e.g. `for=192.0.2.1;proto=https;host="gw:8443"`.
    pub fn value(&self) -> Option<HeaderValue> {
        let mut v = String::from("for=");
        match self.for_addr.to_canonical() {
            IpAddr::V4(a) => {
                let _ = write!(v, "{a}");
            }
            IpAddr::V6(a) => {
                let _ = write!(v, "\"[{a}]\"");
            }
        }
        v.push_str(";proto=");
        v.push_str(self.proto);
        if let Some(h) = self.host.filter(|h| !h.is_empty()) {
            v.push_str(";host=");
            param(&mut v, h);
        }
        HeaderValue::from_str(&v).ok()
    }
}

/// The backend URI: `base`'s scheme and authority, its path with `rest`
/// appended, and `query`. The parts are put together as a URI's parts,
/// never formatted into a URL string and parsed again.
///
/// # Errors
/// When the combined path and query is not a valid request target.
pub fn backend_uri(base: &Uri, rest: &str, query: Option<&str>) -> Result<Uri, http::Error> {
    let mut path = String::with_capacity(base.path().len() + rest.len() + 1);
    path.push_str(base.path().trim_end_matches('/'));
    path.push_str(rest);
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    if let Some(q) = query {
        path.push('?');
        path.push_str(q);
    }
    let mut parts = base.clone().into_parts();
    parts.path_and_query = Some(PathAndQuery::try_from(path)?);
    Ok(Uri::from_parts(parts)?)
}

/// Parses a backend base URL (`http://` or `https://`, no query).
///
/// # Errors
/// A message saying what is wrong with it.
pub fn parse_base(url: &str) -> Result<Uri, String> {
    let uri: Uri = url
        .parse()
        .map_err(|e| format!("{url} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("{url} must start with http:// or https://")),
    }
    if uri.authority().is_none() {
        return Err(format!("{url} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("{url} must not have a query"));
    }
    Ok(uri)
}

/// TLS settings towards backends.
#[derive(Debug, Clone, Default)]
pub struct BackendTls {
    /// CA certificates (PEM) trusted besides the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// A client certificate chain (PEM) and its PKCS#8 key (PEM) to
    /// present.
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// How a [`Forwarder`] connects.
#[derive(Debug, Clone)]
pub struct ForwarderOptions {
    /// Idle keep-alive connections kept per backend.
    pub pool_max_idle_per_host: usize,
    /// How long an idle connection is kept.
    pub pool_idle_timeout: Duration,
    /// TCP connect time-out.
    pub connect_timeout: Duration,
    /// TLS towards HTTPS backends.
    pub tls: BackendTls,
}

impl Default for ForwarderOptions {
    fn default() -> Self {
        Self {
            pool_max_idle_per_host: 256,
            pool_idle_timeout: Duration::from_secs(90),
            connect_timeout: Duration::from_secs(10),
            tls: BackendTls::default(),
        }
    }
}

/// Why a backend exchange failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// The TLS settings could not be used.
    #[error("the backend TLS settings cannot be used: {0}")]
    Tls(#[source] native_tls::Error),
    /// No connection, or the exchange broke off.
    #[error("the backend cannot be reached")]
    Unreachable(#[source] hyper_util::client::legacy::Error),
    /// The response body could not be read to its end.
    #[error("the backend's response was cut off")]
    Cut(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// No complete answer within the time-out.
    #[error("the backend did not answer within {} ms", .0.as_millis())]
    Timeout(Duration),
    /// The response body is over the limit.
    #[error("the backend's response is larger than {0} bytes")]
    TooLarge(u64),
}

impl ForwardError {
    /// The problem code the caller answers with: `provider_timeout`,
    /// `payload_too_large` or `provider_unreachable`.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Timeout(_) => ErrorCode::ProviderTimeout,
            Self::TooLarge(_) => ErrorCode::PayloadTooLarge,
            _ => ErrorCode::ProviderUnreachable,
        }
    }

    /// A short reason for the operator's log, e.g. "connection refused".
    pub fn reason(&self) -> String {
        let mut s = self.to_string();
        let mut cur = std::error::Error::source(self);
        while let Some(c) = cur {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cur = c.source();
        }
        s
    }
}

/// A pool of keep-alive connections to backends.
#[derive(Clone)]
pub struct Forwarder {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder").finish_non_exhaustive()
    }
}

impl Forwarder {
    /// A forwarder; it never follows redirects and uses no proxy.
    ///
    /// # Errors
    /// [`ForwardError::Tls`] when the TLS settings cannot be used.
    pub fn new(opts: &ForwarderOptions) -> Result<Self, ForwardError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(opts.connect_timeout));
        let mut tls = native_tls::TlsConnector::builder();
        tls.min_protocol_version(Some(native_tls::Protocol::Tlsv12));
        if let Some(pem) = &opts.tls.ca_pem {
            for cert in native_tls::Certificate::stack_from_pem(pem).map_err(ForwardError::Tls)? {
                tls.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = &opts.tls.identity {
            tls.identity(native_tls::Identity::from_pkcs8(cert, key).map_err(ForwardError::Tls)?);
        }
        let tls = tls.build().map_err(ForwardError::Tls)?;
        let connector = HttpsConnector::from((http, tls.into()));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(opts.pool_idle_timeout)
            .pool_max_idle_per_host(opts.pool_max_idle_per_host)
            .build(connector);
        Ok(Self { client })
    }

    /// Sends `req` and reads the whole answer, within `timeout` and with
    /// a body of at most `max_body` bytes.
    ///
    /// # Errors
    /// [`ForwardError`]; its [`ForwardError::code`] is the problem to
    /// answer with.
    pub async fn send(
        &self,
        req: Request<Bytes>,
        timeout: Duration,
        max_body: u64,
    ) -> Result<Response<Bytes>, ForwardError> {
        let exchange = async {
            let resp = self
                .client
                .request(req.map(Full::new))
                .await
                .map_err(ForwardError::Unreachable)?;
            let (parts, body) = resp.into_parts();
            let announced = parts
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok());
            if announced.is_some_and(|n| n > max_body) {
                return Err(ForwardError::TooLarge(max_body));
            }
            let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
            let bytes = match Limited::new(body, limit).collect().await {
                Ok(c) => c.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Err(ForwardError::TooLarge(max_body))
                }
                Err(e) => return Err(ForwardError::Cut(e)),
            };
            Ok(Response::from_parts(parts, bytes))
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(ForwardError::Timeout(timeout)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn backend_uris_keep_the_base_and_append_the_rest() {
        let base = parse_base("https://backend.example:8443/api/").unwrap();
        let u = backend_uri(&base, "/persons/1", Some("a=%20b")).unwrap();
        assert_eq!(
            u.to_string(),
            "https://backend.example:8443/api/persons/1?a=%20b"
        );
        let root = parse_base("http://127.0.0.1:9").unwrap();
        assert_eq!(
            backend_uri(&root, "", None).unwrap().to_string(),
            "http://127.0.0.1:9/"
        );
        assert_eq!(
            backend_uri(&root, "", Some("q"))
                .unwrap()
                .path_and_query()
                .unwrap(),
            "/?q"
        );
        assert!(parse_base("ftp://x/").is_err());
        assert!(parse_base("/relative").is_err());
        assert!(parse_base("http://x/?q=1").is_err());
    }

    #[test]
    fn the_policy_lets_only_its_lists_through() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("accept", "application/json"),
            ("accept-language", "vi"),
            ("x-forwarded-for", "10.0.0.1"),
            ("forwarded", "for=10.0.0.1"),
            ("x-real-ip", "10.0.0.1"),
            ("connection", "x-secret, accept-language"),
            ("x-secret", "1"),
            ("x-tenant", "t1"),
            ("authorization", "Bearer t"),
            ("ndxp-client", "VN/GOV/1/A"),
        ] {
            h.append(n, HeaderValue::from_static(v));
        }
        let mut out = HeaderMap::new();
        HeaderPolicy::new(&ExtraHeaders::default()).copy_request(&h, &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(out["accept"], "application/json");

        let extra = ExtraHeaders {
            request: vec![
                "X-Tenant".into(),
                "x-secret".into(),
                "x-forwarded-for".into(),
            ],
            response: vec![],
        };
        let mut out = HeaderMap::new();
        HeaderPolicy::new(&extra).copy_request(&h, &mut out);
        assert_eq!(out["x-tenant"], "t1");
        assert!(!out.contains_key("x-secret"), "named in Connection");
        assert!(!out.contains_key("x-forwarded-for"));
        assert!(extra.check().is_err());
        assert!(ExtraHeaders {
            request: vec!["bad name".into()],
            response: vec![]
        }
        .check()
        .is_err());
        assert!(ExtraHeaders {
            request: vec!["x-tenant".into()],
            response: vec!["x-trace".into()]
        }
        .check()
        .is_ok());
    }

    #[test]
    fn backend_answers_keep_only_their_allowed_headers() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("content-type", "application/json"),
            ("allow", "GET, HEAD"),
            ("location", "http://10.0.0.5:8080/internal/1"),
            ("set-cookie", "s=1"),
            ("connection", "etag"),
            ("etag", "\"1\""),
            ("x-backend-only", "1"),
        ] {
            h.append(n, HeaderValue::from_static(v));
        }
        let mut out = HeaderMap::new();
        HeaderPolicy::new(&ExtraHeaders::default()).copy_response(&h, &mut out);
        let mut names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["allow", "content-type"]);
        let extra = ExtraHeaders {
            request: vec![],
            response: vec!["x-backend-only".into(), "location".into()],
        };
        let mut out = HeaderMap::new();
        HeaderPolicy::new(&extra).copy_response(&h, &mut out);
        assert_eq!(out["location"], "http://10.0.0.5:8080/internal/1");
        assert_eq!(out["x-backend-only"], "1");
        assert!(!out.contains_key("set-cookie"));
    }

    #[test]
    fn forwarded_follows_rfc_7239() {
        let f = Forwarded {
            for_addr: "192.0.2.1".parse().unwrap(),
            proto: "https",
            host: Some("gw.example:8443"),
        };
        assert_eq!(
            f.value().unwrap(),
            "for=192.0.2.1;proto=https;host=\"gw.example:8443\""
        );
        let f = Forwarded {
            for_addr: "::ffff:127.0.0.1".parse().unwrap(),
            proto: "http",
            host: Some("gw"),
        };
        assert_eq!(f.value().unwrap(), "for=127.0.0.1;proto=http;host=gw");
        let f = Forwarded {
            for_addr: "2001:db8::1".parse().unwrap(),
            proto: "http",
            host: None,
        };
        assert_eq!(f.value().unwrap(), "for=\"[2001:db8::1]\";proto=http");
    }
}
