//! Connection states computed from the nodes' signed status reports, and
//! the central gateway's own status report.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use ndxp_audit::monitor::NodeStatus;
use ndxp_core::{MemberId, NodeName, ServiceId};
use ndxp_registry::model::Node;
use ndxp_registry::store::monitoring::StatusRecord;
use ndxp_registry::store::RegistryStore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{rfc3339, MonitorError};
use crate::config::{GatewayConfig, MonitoringConfig};

/// The state of a connection, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// Reporting, nothing to flag.
    Ok,
    /// Reporting, with at least one reason to act.
    Degraded,
    /// No report for `stale_after_intervals` intervals.
    Stale,
    /// No report for `down_after_intervals` intervals, or never.
    Down,
}

impl ConnState {
    /// `ok`, `degraded`, `stale` or `down`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnState::Ok => "ok",
            ConnState::Degraded => "degraded",
            ConnState::Stale => "stale",
            ConnState::Down => "down",
        }
    }
}

/// One row of the status listing: a node (`service` absent) or a service
/// it provides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConnectionState {
    /// The node's member.
    #[schema(value_type = String)]
    pub member: MemberId,
    /// The node.
    #[schema(value_type = String)]
    pub node: NodeName,
    /// The service, for a service row.
    #[schema(value_type = Option<String>)]
    pub service: Option<ServiceId>,
    /// `ok`, `degraded`, `stale` or `down`.
    #[schema(value_type = String)]
    pub state: ConnState,
    /// Why the state is not `ok`, one sentence each.
    pub reasons: Vec<String>,
    /// When the node last reported.
    pub last_report_at: Option<DateTime<Utc>>,
    /// Software version reported.
    pub software_version: Option<String>,
    /// Global configuration version reported.
    pub globalconf_version: Option<i64>,
    /// Backend latency, for a service row.
    pub latency_ms: Option<u64>,
}

fn push_expiry(
    reasons: &mut Vec<String>,
    what: &str,
    at: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    days: u32,
) {
    if let Some(at) = at {
        if at <= now {
            reasons.push(format!("{what} certificate expired at {}", rfc3339(at)));
        } else if at - now < Duration::days(i64::from(days)) {
            reasons.push(format!(
                "{what} certificate expires at {} (within {days} days)",
                rfc3339(at)
            ));
        }
    }
}

/// The node name under which the central gateway reports its own status
/// (`ndxp-gateway status` lists it beside the nodes).
pub const GATEWAY_NODE: &str = "central-gateway";

/// A node (or the central gateway) whose state is listed.
struct Target {
    member: MemberId,
    name: NodeName,
}

/// The central gateway's own status: software version, the global
/// configuration it publishes and its age, the expiry of the signing
/// certificate (global configuration and access tokens), and the
/// reachability of each published service's backend. Recorded in the
/// registry directly (the gateway runs beside management and shares its
/// database), under the signing certificate's member and [`GATEWAY_NODE`].
///
/// # Errors
/// [`MonitorError`] when the store cannot be read or written.
pub async fn record_gateway_status(
    store: &dyn RegistryStore,
    gateway: &dyn ndxp_registry::store::gateway::GatewayStore,
    config: &GatewayConfig,
    http: &reqwest::Client,
    now: DateTime<Utc>,
) -> Result<(), MonitorError> {
    let cert = std::fs::read(&config.globalconf.signing_cert)
        .ok()
        .and_then(|pem| ndxp_sign::cert::parse_certificate(&pem).ok());
    let Some(member) = cert
        .as_ref()
        .and_then(|c| ndxp_sign::cert::member_of(c).ok())
    else {
        return Err(MonitorError::Corrupt(
            "the [globalconf] signing certificate names no member; the gateway cannot report its status".into(),
        ));
    };
    let conf = store.latest_conf().await?;
    let mut services = Vec::new();
    for svc in gateway.list_gateway_services(None).await? {
        if svc.state != ndxp_registry::store::gateway::GatewayServiceState::Published {
            continue;
        }
        let started = std::time::Instant::now();
        let r = http
            .head(&svc.settings.backend_url)
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await;
        let latency_ms = u64::try_from(started.elapsed().as_millis()).ok();
        services.push(ndxp_audit::monitor::ServiceStatus {
            service: svc.service,
            backend_reachable: r.is_ok(),
            latency_ms: r.is_ok().then_some(latency_ms).flatten(),
            detail: r.err().map(|e| {
                if e.is_timeout() {
                    "no answer within 5 s".to_string()
                } else {
                    "connection refused or unreachable".to_string()
                }
            }),
        });
    }
    let status = NodeStatus {
        software_version: env!("CARGO_PKG_VERSION").to_string(),
        globalconf_version: conf.as_ref().map(|c| c.version),
        globalconf_age_secs: conf
            .as_ref()
            .and_then(|c| u64::try_from((now - c.created_at).num_seconds()).ok()),
        auth_cert_expires_at: None,
        sign_cert_expires_at: cert
            .as_ref()
            .and_then(|c| ndxp_sign::cert::asn1_to_utc(c.not_after()).ok()),
        log_lag_secs: None,
        timestamp_lag_secs: None,
        services,
    };
    let json = serde_json::to_string(&status)
        .map_err(|e| MonitorError::Corrupt(format!("encoding the gateway status: {e}")))?;
    let node: NodeName = GATEWAY_NODE
        .parse()
        .map_err(|e| MonitorError::Corrupt(format!("{GATEWAY_NODE}: {e}")))?;
    store
        .record_status(
            &member,
            &node,
            &format!("gateway-{}", Uuid::now_v7()),
            now,
            &json,
            "",
        )
        .await?;
    Ok(())
}

/// The state of every registered node (and of the central gateway, when it reported) and of every service its last report
/// lists, at `now`, sorted by member, node, service.
///
/// # Errors
/// [`MonitorError`].
pub async fn connection_states(
    store: &dyn RegistryStore,
    cfg: &MonitoringConfig,
    now: DateTime<Utc>,
) -> Result<Vec<ConnectionState>, MonitorError> {
    let nodes = store.list_nodes(None).await?;
    let latest: HashMap<(MemberId, NodeName), StatusRecord> = store
        .latest_statuses()
        .await?
        .into_iter()
        .map(|r| ((r.member.clone(), r.node.clone()), r))
        .collect();
    let mut out = Vec::new();
    for node in targets(nodes, &latest) {
        match latest.get(&(node.member.clone(), node.name.clone())) {
            None => out.push(never_reported(node)),
            Some(rec) => out.extend(reported(node, rec, cfg, now)?),
        }
    }
    Ok(out)
}

/// The registered nodes, then the central gateway when it reported, sorted
/// by member and name.
fn targets(nodes: Vec<Node>, latest: &HashMap<(MemberId, NodeName), StatusRecord>) -> Vec<Target> {
    let mut targets: Vec<Target> = nodes
        .into_iter()
        .map(|n| Target {
            member: n.member,
            name: n.name,
        })
        .collect();
    for (member, name) in latest.keys() {
        if name.as_str() == GATEWAY_NODE
            && !targets
                .iter()
                .any(|t| &t.member == member && &t.name == name)
        {
            targets.push(Target {
                member: member.clone(),
                name: name.clone(),
            });
        }
    }
    targets.sort_by(|a, b| (&a.member, &a.name).cmp(&(&b.member, &b.name)));
    targets
}

/// The row of a node that never reported: `down`.
fn never_reported(node: Target) -> ConnectionState {
    ConnectionState {
        member: node.member,
        node: node.name,
        service: None,
        state: ConnState::Down,
        reasons: vec!["no status report received yet".into()],
        last_report_at: None,
        software_version: None,
        globalconf_version: None,
        latency_ms: None,
    }
}

/// The rows of a node from its last report `rec`: the node's (its age,
/// certificates, lags, global configuration and services), then each
/// service's, sorted by service.
fn reported(
    node: Target,
    rec: &StatusRecord,
    cfg: &MonitoringConfig,
    now: DateTime<Utc>,
) -> Result<Vec<ConnectionState>, MonitorError> {
    let interval =
        Duration::seconds(i64::try_from(cfg.status_interval_secs).unwrap_or(i64::MAX / 4_000_000));
    let status: NodeStatus = serde_json::from_str(&rec.status)
        .map_err(|e| MonitorError::Corrupt(format!("status {}: {e}", rec.id)))?;
    let age = now - rec.received_at;
    let mut reasons = Vec::new();
    let mut state = ConnState::Ok;
    let intervals = |n: u32| interval * i32::try_from(n).unwrap_or(i32::MAX);
    if age > intervals(cfg.down_after_intervals) {
        state = ConnState::Down;
        reasons.push(format!(
            "no report for {} s ({} intervals of {} s)",
            age.num_seconds(),
            cfg.down_after_intervals,
            cfg.status_interval_secs
        ));
    } else if age > intervals(cfg.stale_after_intervals) {
        state = ConnState::Stale;
        reasons.push(format!(
            "no report for {} s ({} intervals of {} s)",
            age.num_seconds(),
            cfg.stale_after_intervals,
            cfg.status_interval_secs
        ));
    }
    let mut node_reasons = Vec::new();
    push_expiry(
        &mut node_reasons,
        "authentication",
        status.auth_cert_expires_at,
        now,
        cfg.cert_warning_days,
    );
    push_expiry(
        &mut node_reasons,
        "signing",
        status.sign_cert_expires_at,
        now,
        cfg.cert_warning_days,
    );
    if let Some(lag) = status.log_lag_secs.filter(|l| *l > cfg.max_log_lag_secs) {
        node_reasons.push(format!(
            "message log lag {lag:.1} s is over {} s",
            cfg.max_log_lag_secs
        ));
    }
    if let Some(lag) = status
        .timestamp_lag_secs
        .filter(|l| *l > cfg.max_timestamp_lag_secs)
    {
        node_reasons.push(format!(
            "timestamp lag {lag:.1} s is over {} s",
            cfg.max_timestamp_lag_secs
        ));
    }
    match (status.globalconf_version, status.globalconf_age_secs) {
        (None, _) => node_reasons.push("holds no global configuration".into()),
        (_, Some(a)) if a > cfg.max_globalconf_age_secs => node_reasons.push(format!(
            "global configuration is {a} s old (over {} s)",
            cfg.max_globalconf_age_secs
        )),
        _ => {}
    }
    let mut service_rows = Vec::new();
    for s in &status.services {
        let mut r = Vec::new();
        if !s.backend_reachable {
            r.push(match &s.detail {
                Some(d) => format!("backend unreachable: {d}"),
                None => "backend unreachable".into(),
            });
        } else if let Some(ms) = s.latency_ms.filter(|ms| *ms > cfg.max_backend_latency_ms) {
            r.push(format!(
                "backend answered in {ms} ms (over {} ms)",
                cfg.max_backend_latency_ms
            ));
        }
        let st = if state >= ConnState::Stale {
            state
        } else if r.is_empty() {
            ConnState::Ok
        } else {
            ConnState::Degraded
        };
        if !r.is_empty() {
            node_reasons.push(format!("service {}: {}", s.service, r.join("; ")));
        }
        service_rows.push(ConnectionState {
            member: node.member.clone(),
            node: node.name.clone(),
            service: Some(s.service.clone()),
            state: st,
            reasons: if st >= ConnState::Stale {
                reasons.clone()
            } else {
                r
            },
            last_report_at: Some(rec.received_at),
            software_version: None,
            globalconf_version: None,
            latency_ms: s.latency_ms,
        });
    }
    if state == ConnState::Ok && !node_reasons.is_empty() {
        state = ConnState::Degraded;
    }
    reasons.extend(node_reasons);
    let mut rows = vec![ConnectionState {
        member: node.member.clone(),
        node: node.name.clone(),
        service: None,
        state,
        reasons,
        last_report_at: Some(rec.received_at),
        software_version: Some(status.software_version.clone()),
        globalconf_version: status.globalconf_version,
        latency_ms: None,
    }];
    service_rows.sort_by(|a, b| a.service.cmp(&b.service));
    rows.extend(service_rows);
    Ok(rows)
}

/// The status listing as a text table for the command line.
pub fn states_table(rows: &[ConnectionState]) -> String {
    let mut table = ndxp_core::table::Table::new([
        "MEMBER",
        "NODE",
        "SERVICE",
        "STATE",
        "LAST REPORT",
        "REASONS",
    ]);
    for r in rows {
        table.row([
            r.member.to_string(),
            r.node.to_string(),
            r.service
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "-".into()),
            r.state.as_str().to_string(),
            r.last_report_at
                .map(rfc3339)
                .unwrap_or_else(|| "never".into()),
            if r.reasons.is_empty() {
                "-".to_string()
            } else {
                r.reasons.join("; ")
            },
        ]);
    }
    table.to_string()
}
