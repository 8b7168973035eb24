//! The centralized model in the demo (docs/gateway.md): the provider's
//! service registered and published on the central gateway, a consumer's
//! subscription requested and approved, OAuth2 client credentials, a
//! token, and one call through the gateway.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::{json, Value};

use super::tools::{header_text, sample_answer};
use super::{management_url, Report, CLIENT, SAMPLE_PATH, SERVICE};

/// The gateway role's address (README ports table).
pub(crate) fn gateway_url() -> String {
    super::local_url(super::ports().gateway())
}

/// What `demo.json` gets under `gateway_client`.
#[derive(Default)]
pub(crate) struct GatewayClient {
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
}

fn post(http: &reqwest::blocking::Client, token: &str, path: &str, body: Value) -> Result<Value> {
    let resp = http
        .post(format!("{}{path}", management_url()))
        .bearer_auth(token)
        .json(&body)
        .send()
        .with_context(|| format!("POST {path}"))?;
    let status = resp.status();
    let text = resp.text()?;
    ensure!(status.is_success(), "POST {path}: HTTP {status}: {text}");
    Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Runs the flow; steps report into `report`.
pub(crate) fn flow(report: &mut Report, operator_token: &str, backend_url: &str) -> GatewayClient {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap_or_default();
    let mut out = GatewayClient::default();
    report.step(
        "centralized: register and publish the service on the gateway",
        || {
            post(
                &http,
                operator_token,
                "/api/v1/gateway/services",
                json!({
                    "service": SERVICE,
                    "description": "Citizen record lookup (demo)",
                    "backend_url": backend_url,
                    // On, but far above what one machine can send.
                    "rate_per_sec": 1_000_000,
                    "burst": 1_000_000,
                }),
            )?;
            post(
                &http,
                operator_token,
                &format!("/api/v1/gateway/services/{SERVICE}/publish"),
                json!({}),
            )?;
            Ok(format!("{}/{SERVICE} -> {backend_url}", gateway_url()))
        },
    );
    report.step(
        "centralized: subscription requested and approved, credentials issued",
        || {
            let sub = post(
                &http,
                operator_token,
                "/api/v1/subscriptions",
                json!({ "service": SERVICE, "client": CLIENT }),
            )?;
            let id = sub["id"]
                .as_str()
                .context("no subscription id")?
                .to_string();
            post(
                &http,
                operator_token,
                &format!("/api/v1/subscriptions/{id}/approve"),
                json!({}),
            )?;
            let cred = post(
                &http,
                operator_token,
                "/api/v1/gateway/credentials",
                json!({ "client": CLIENT }),
            )?;
            out.client_id = cred["client_id"]
                .as_str()
                .context("no client_id")?
                .to_string();
            out.client_secret = cred["client_secret"]
                .as_str()
                .context("no client_secret")?
                .to_string();
            Ok(format!(
                "subscription {id} approved, client_id {}",
                out.client_id
            ))
        },
    );
    report.step(
        "centralized: OAuth2 token and a call through the gateway",
        || {
            let tok: Value = http
                .post(format!("{}/oauth2/token", gateway_url()))
                .basic_auth(&out.client_id, Some(&out.client_secret))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("grant_type=client_credentials")
                .send()?
                .json()?;
            let access = tok["access_token"]
                .as_str()
                .with_context(|| format!("no access_token in {tok}"))?;
            let resp = http
                .get(format!("{}/{SERVICE}{SAMPLE_PATH}", gateway_url()))
                .bearer_auth(access)
                .send()?;
            let (status, headers) = sample_answer(resp, "")?;
            Ok(format!(
                "HTTP {status}, NDXP-Id {}",
                header_text(&headers, "ndxp-id")
            ))
        },
    );
    out
}
