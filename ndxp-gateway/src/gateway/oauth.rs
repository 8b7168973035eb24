//! `POST /oauth2/token`: the OAuth2 client-credentials grant (RFC 6749
//! §4.4). Client authentication by HTTP Basic (§2.3.1, both parts
//! form-urlencoded) or by `client_id` / `client_secret` in the body, not
//! both. Errors are RFC 6749 §5.2 JSON.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use ndxp_core::problem::{ErrorCode, Problem};
use ndxp_edge::problem::ProblemResponse;
use serde_json::json;

use super::backoff::FailureBackoff;
use super::token::{check_is_costly, verify_secret};
use super::Gateway;

/// Largest token request body, bytes.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Costly checks (PBKDF2 hashes of earlier versions) run at once.
const COSTLY_AT_ONCE: usize = 1;
/// Most remembered successful costly checks.
const MAX_REMEMBERED: usize = 10_000;
/// `Retry-After` when the check queue is full, seconds.
const QUEUE_FULL_RETRY_SECS: u64 = 1;

/// The limits of [`SecretChecks`] (`[gateway] token_check_queue`,
/// `token_failures_before_backoff`, `token_backoff_max_secs`).
#[derive(Debug, Clone, Copy)]
pub(super) struct CheckLimits {
    /// Costly secret checks admitted at once (running or waiting).
    pub queue: usize,
    /// Failures of one client id from one address before backoff.
    pub free_failures: u32,
    /// Longest backoff.
    pub max_backoff: Duration,
}

/// Why a secret check did not say yes or no.
enum Refused {
    /// The client id or the address is in backoff after failures.
    Backoff(Duration),
    /// Too many checks are admitted already.
    QueueFull,
}

/// Client secret checks, cheap to refuse:
///
/// - a client id or address in backoff after failed attempts is refused
///   before any hashing ([`FailureBackoff`]);
/// - a secret stored in the current scheme costs one HMAC, done in place
///   (less work than parsing the HTTP request that carried it);
/// - a PBKDF2 hash of an earlier version is a costly check: at most
///   `queue` of them are admitted at once (past that a request is refused
///   at once with `429` instead of waiting in a growing line); they run
///   off the async threads, one at a time; and a secret that
///   matched one is remembered (SHA-256 of the secret next to the stored
///   hash), so its client pays PBKDF2 once per process. Rotation changes
///   the stored hash, which ends the memory.
pub(super) struct SecretChecks {
    queue: Arc<tokio::sync::Semaphore>,
    costly: tokio::sync::Semaphore,
    backoff: FailureBackoff,
    matched: Mutex<HashMap<String, (String, [u8; 32])>>,
    /// When the queue-full warning was last logged (Unix seconds).
    warned_at: AtomicI64,
}

impl SecretChecks {
    pub(super) fn new(limits: CheckLimits) -> Self {
        Self {
            queue: Arc::new(tokio::sync::Semaphore::new(limits.queue.max(1))),
            costly: tokio::sync::Semaphore::new(COSTLY_AT_ONCE),
            backoff: FailureBackoff::new(limits.free_failures, limits.max_backoff),
            matched: Mutex::new(HashMap::new()),
            warned_at: AtomicI64::new(0),
        }
    }

    /// Logs that the queue is full, at most once a minute (a flood would
    /// otherwise write one line per refused request).
    fn warn_queue_full(&self) {
        let now = chrono::Utc::now().timestamp();
        let last = self.warned_at.load(Ordering::Relaxed);
        if now - last >= 60
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "token requests arrive faster than their client secrets can be checked; the excess is refused with 429. If this is normal load, raise [gateway] token_check_queue"
            );
        }
    }

    /// Refuses an unknown client id from `ip` if the address is in backoff,
    /// and counts it as a failure otherwise.
    fn unknown_client(&self, ip: IpAddr) -> Option<Duration> {
        let now = Instant::now();
        let wait = self.backoff.blocked(None, ip, now);
        if wait.is_none() {
            self.backoff.failed(None, ip, now);
        }
        wait
    }

    /// Whether `secret` matches `stored` for `client_id` asking from `ip`.
    async fn check(
        &self,
        client_id: &str,
        ip: IpAddr,
        secret: String,
        stored: &str,
    ) -> Result<bool, Refused> {
        if let Some(wait) = self.backoff.blocked(Some(client_id), ip, Instant::now()) {
            return Err(Refused::Backoff(wait));
        }
        let ok = if check_is_costly(stored) {
            self.costly_check(client_id, secret, stored).await?
        } else {
            verify_secret(&secret, stored)
        };
        if ok {
            self.backoff.succeeded(client_id, ip);
        } else {
            self.backoff.failed(Some(client_id), ip, Instant::now());
        }
        Ok(ok)
    }

    async fn costly_check(
        &self,
        client_id: &str,
        secret: String,
        stored: &str,
    ) -> Result<bool, Refused> {
        let digest = ndxp_sign::openssl::sha::sha256(secret.as_bytes());
        {
            let m = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((hash, d)) = m.get(client_id) {
                if hash == stored && ndxp_sign::openssl::memcmp::eq(d, &digest) {
                    return Ok(true);
                }
            }
        }
        let _admitted = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| Refused::QueueFull)?;
        // The wait is bounded: at most `queue` requests are admitted here.
        let Ok(_permit) = self.costly.acquire().await else {
            return Ok(false);
        };
        let hash = stored.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
            .await
            .unwrap_or(false);
        if ok {
            let mut m = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
            if m.len() >= MAX_REMEMBERED {
                m.clear();
            }
            m.insert(client_id.to_string(), (stored.to_string(), digest));
        }
        Ok(ok)
    }
}

/// `429 ndxp.rate_limited` with `Retry-After` (whole seconds, at least 1).
fn rate_limited(wait: Duration, detail: &str) -> Response {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut resp = ProblemResponse::new(&Problem::new(ErrorCode::RateLimited, detail))
        .retry_after(secs.max(1))
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn backoff_refusal(wait: Duration) -> Response {
    rate_limited(
        wait,
        "too many failed client authentications from this address; wait for Retry-After, then retry with the right client secret",
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut resp = (
        status,
        [
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (header::PRAGMA, HeaderValue::from_static("no-cache")),
        ],
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response();
    if error == "invalid_client" {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"ndxp-gateway\""),
        );
    }
    resp
}

fn invalid_request(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn invalid_client() -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        "invalid_client",
        "client authentication failed",
    )
}

/// Client credentials from `Authorization: Basic`, if present.
fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, &'static str> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let bad = || "the Authorization header is not HTTP Basic client credentials";
    let text = value.to_str().map_err(|_| bad())?;
    let (scheme, b64) = text.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad());
    }
    let raw = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    // RFC 6749 §2.3.1: both are application/x-www-form-urlencoded.
    let decode = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

/// The token endpoint.
pub(super) async fn token(State(gw): State<Arc<Gateway>>, req: Request) -> Response {
    let ip = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
    let (parts, body) = req.into_parts();
    let form_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if form_type != Some(true) {
        return invalid_request("send the parameters as application/x-www-form-urlencoded");
    }
    let bytes = match axum::body::to_bytes(Body::new(body), MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => return invalid_request("the request body is too large or was cut off"),
    };
    let mut grant_type = None;
    let mut form_id = None;
    let mut form_secret = None;
    for (k, v) in form_urlencoded::parse(&bytes) {
        let slot = match k.as_ref() {
            "grant_type" => &mut grant_type,
            "client_id" => &mut form_id,
            "client_secret" => &mut form_secret,
            _ => continue, // e.g. scope: this gateway has no scopes
        };
        if slot.is_some() {
            return invalid_request("a parameter is repeated");
        }
        *slot = Some(v.into_owned());
    }
    match grant_type.as_deref() {
        None => return invalid_request("grant_type is missing"),
        Some("client_credentials") => {}
        Some(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only grant_type=client_credentials is supported",
            )
        }
    }
    let basic = match basic_credentials(&parts.headers) {
        Ok(b) => b,
        Err(why) => return invalid_request(why),
    };
    let (client_id, secret) = match (basic, form_id, form_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return invalid_request("use one client authentication method, not two")
        }
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        (None, _, _) => return invalid_client(),
    };
    let Some(app) = gw.routing().apps.get(&client_id).cloned() else {
        if let Some(wait) = gw.secrets.unknown_client(ip) {
            return backoff_refusal(wait);
        }
        return invalid_client();
    };
    match gw
        .secrets
        .check(&client_id, ip, secret, &app.secret_hash)
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            tracing::info!(client_id, %ip, "token request with a wrong client secret");
            return invalid_client();
        }
        Err(Refused::Backoff(wait)) => return backoff_refusal(wait),
        Err(Refused::QueueFull) => {
            gw.secrets.warn_queue_full();
            return rate_limited(
                Duration::from_secs(QUEUE_FULL_RETRY_SECS),
                "too many token requests at once; retry after Retry-After",
            );
        }
    }
    let now = chrono::Utc::now().timestamp();
    match gw.issuer.issue(&client_id, app.generation, now) {
        Ok(token) => (
            StatusCode::OK,
            [
                (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
                (header::PRAGMA, HeaderValue::from_static("no-cache")),
            ],
            axum::Json(json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": gw.issuer.lifetime_secs(),
            })),
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot issue an access token");
            oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be issued",
            )
        }
    }
}
