//! The node's reports to management (`docs/monitoring.md`): a status on
//! every round (software version, global configuration, certificate
//! expiry, each provided service's backend reachability), the
//! reconciliation summaries of closed periods, and drill-down answers.

use ndxp_edge::forward;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use ndxp_audit::monitor::{NodeStatus, ServiceStatus};
use tokio::sync::watch;

use super::NodeState;
use crate::report::{Reporter, ReporterOptions};

/// Largest answer body a reachability check reads (a HEAD answer has
/// none).
const PROBE_MAX_BODY: u64 = 64 * 1024;

/// Time allowed for one backend reachability check.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs the reporter until `stop`.
pub(crate) async fn run(state: Arc<NodeState>, mut stop: watch::Receiver<bool>) {
    let http = match crate::http::platform_client(&state.config) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "status reports disabled: no HTTP client");
            return;
        }
    };
    let probes: Arc<Mutex<Vec<ServiceStatus>>> = Arc::default();
    let status = {
        let state = state.clone();
        let probes = probes.clone();
        Arc::new(move || status_now(&state, &probes))
    };
    let cfg = &state.config.report;
    let mut options = ReporterOptions::new(cfg.state_file.clone());
    options.period = cfg.period;
    options.grace = chrono::Duration::seconds(i64::try_from(cfg.grace_secs).unwrap_or(600));
    let reporter = Reporter::new(
        state.config.management.url.clone(),
        http,
        state.config.node.name.clone(),
        &state.signer,
        state.log_pool.clone(),
        status,
        options,
    );
    let interval = Duration::from_secs(cfg.interval_secs);
    let prober = {
        let state = state.clone();
        let mut stop = stop.clone();
        async move {
            loop {
                let results = probe_backends(&state).await;
                *probes.lock().unwrap_or_else(PoisonError::into_inner) = results;
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let shutdown = async move {
        let _ = stop.changed().await;
    };
    tokio::join!(prober, reporter.run(interval, shutdown));
}

fn status_now(state: &NodeState, probes: &Mutex<Vec<ServiceStatus>>) -> NodeStatus {
    let conf = state.conf.status(Utc::now());
    let expiry =
        |c: &ndxp_sign::openssl::x509::X509Ref| ndxp_sign::cert::asn1_to_utc(c.not_after()).ok();
    NodeStatus {
        software_version: env!("CARGO_PKG_VERSION").to_owned(),
        globalconf_version: conf.version.and_then(|v| i64::try_from(v).ok()),
        globalconf_age_secs: conf.age_secs.and_then(|a| u64::try_from(a).ok()),
        auth_cert_expires_at: expiry(state.identity.certificate()),
        sign_cert_expires_at: expiry(state.signer.certificate()),
        log_lag_secs: None,
        timestamp_lag_secs: state.timestamper.get().map(|t| t.lag().seconds),
        services: probes
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
    }
}

/// Checks that each provided service's backend accepts a connection and
/// answers HTTP (any status counts as reachable).
async fn probe_backends(state: &NodeState) -> Vec<ServiceStatus> {
    let local = state.local.get();
    let mut out = Vec::new();
    for s in &local.services {
        let started = Instant::now();
        let r = match forward::parse_base(&s.backend)
            .and_then(|base| forward::backend_uri(&base, "", None).map_err(|e| e.to_string()))
        {
            Ok(uri) => {
                let mut req = http::Request::new(bytes::Bytes::new());
                *req.method_mut() = http::Method::HEAD;
                *req.uri_mut() = uri;
                state
                    .backend
                    .send(req, PROBE_TIMEOUT, PROBE_MAX_BODY)
                    .await
                    .map(drop)
                    .map_err(|e| match e {
                        forward::ForwardError::Timeout(_) => {
                            format!("no answer within {} s", PROBE_TIMEOUT.as_secs())
                        }
                        _ => "connection refused or unreachable".to_owned(),
                    })
            }
            Err(e) => Err(e),
        };
        let latency = u64::try_from(started.elapsed().as_millis()).ok();
        out.push(match r {
            Ok(_) => ServiceStatus {
                service: s.service.clone(),
                backend_reachable: true,
                latency_ms: latency,
                detail: None,
            },
            Err(e) => ServiceStatus {
                service: s.service.clone(),
                backend_reachable: false,
                latency_ms: None,
                detail: Some(e),
            },
        });
    }
    out
}
