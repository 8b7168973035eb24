//! `cargo xtask bench gateway [--connections N] [--seconds S] [--warmup S]
//! [--threads N]`: the centralized-model path under load. It starts the
//! demo platform from release binaries (the management role with the
//! central gateway, the sample backend; the demo registers the service on
//! the gateway, approves a subscription and issues OAuth2 credentials),
//! takes one access token, then, in one run with the same load generator
//! and concurrency:
//!
//! * `gateway`: `GET {gateway}/{service}/persons/...` with the bearer
//!   token: token check (each distinct token verified once), subscription
//!   and rate limiter, forwarding over pooled connections, durable message
//!   log record;
//! * `direct`: the same record straight from the backend.
//!
//! Figures go to `target/ndxp-bench/gateway.json` (docs/design.md §13 keys).

use anyhow::{Context, Result};
use serde_json::Value;

use super::load_common::{self, PlatformRun};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Some((opts, running)) = load_common::start_platform("gateway", args)? else {
        return Ok(());
    };
    let d = running.demo.clone();
    let gw = d["gateway_client"].clone();
    let service = gw["service"].as_str().context("no gateway service")?;
    let sample = d["sample_path"].as_str().unwrap_or("/");
    let backend = d["backends"][service]
        .as_str()
        .context("demo.json names no backend")?;
    let gateway_url = d["gateway_url"].as_str().context("no gateway_url")?;
    let http = reqwest::blocking::Client::new();
    let tok: Value = http
        .post(gw["token_url"].as_str().context("no token_url")?)
        .basic_auth(
            gw["client_id"].as_str().unwrap_or_default(),
            gw["client_secret"].as_str(),
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()?
        .json()?;
    let token = tok["access_token"]
        .as_str()
        .with_context(|| format!("no access token: {tok}"))?
        .to_string();
    let platform = opts.get(
        format!("{gateway_url}/{service}{sample}"),
        vec![("Authorization".into(), format!("Bearer {token}"))],
    );
    load_common::measure_platform(
        running,
        &opts,
        PlatformRun {
            name: "gateway",
            processes: &["management"],
            direct_url: format!("{backend}{sample}"),
            platform,
            what: "central gateway (JWT access token verified once per token, subscription and rate-limit check, pooled forwarding, durable message log) -> backend, versus the backend directly; ~1 KiB JSON GET",
            path: format!("/{service}{sample}"),
        },
    )
}
