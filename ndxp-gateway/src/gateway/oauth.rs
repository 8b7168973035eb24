//! `POST /oauth2/token`: the OAuth2 client-credentials grant (RFC 6749
//! §4.4). Client authentication by HTTP Basic (§2.3.1, both parts
//! form-urlencoded) or by `client_id` / `client_secret` in the body, not
//! both. Errors are RFC 6749 §5.2 JSON.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde_json::json;

use super::token::verify_secret;
use super::Gateway;

/// Largest token request body, bytes.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Secret hashes checked at once (each costs PBKDF2's full work).
const CONCURRENT_CHECKS: usize = 2;
/// How long a token request waits for a free check before 503.
const CHECK_WAIT: Duration = Duration::from_secs(5);
/// Most remembered successful checks.
const MAX_REMEMBERED: usize = 10_000;

/// Client secret checks: PBKDF2 is deliberately slow, so at most
/// [`CONCURRENT_CHECKS`] run at once (a flood of token requests cannot take
/// every core), and a secret that matched is remembered, as the SHA-256 of
/// the secret next to the stored hash it matched, so a client that asks
/// for a new token every few minutes costs one hash lookup. Rotation
/// changes the stored hash, which ends the memory.
pub(super) struct SecretChecks {
    permits: tokio::sync::Semaphore,
    matched: Mutex<HashMap<String, (String, [u8; 32])>>,
}

impl SecretChecks {
    pub(super) fn new() -> Self {
        Self {
            permits: tokio::sync::Semaphore::new(CONCURRENT_CHECKS),
            matched: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(matches)`, or `None` when no check could start in time.
    async fn check(&self, client_id: &str, secret: String, stored: &str) -> Option<bool> {
        let digest = ndxp_sign::openssl::sha::sha256(secret.as_bytes());
        {
            let m = self.matched.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some((hash, d)) = m.get(client_id) {
                if hash == stored && ndxp_sign::openssl::memcmp::eq(d, &digest) {
                    return Some(true);
                }
            }
        }
        let _permit = tokio::time::timeout(CHECK_WAIT, self.permits.acquire())
            .await
            .ok()?
            .ok()?;
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
        Some(ok)
    }
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
        return invalid_client();
    };
    let Some(ok) = gw.secrets.check(&client_id, secret, &app.secret_hash).await else {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "too many token requests at once; retry shortly",
        );
    };
    if !ok {
        tracing::info!(client_id, "token request with a wrong client secret");
        return invalid_client();
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
