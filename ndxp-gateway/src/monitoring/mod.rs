//! The monitoring centre of the management role (`docs/monitoring.md`):
//! connection states computed from the nodes' signed status reports, and
//! the reconciliation of every provider–consumer pair from the stored
//! summaries, the central gateway's own message log and the drill-down
//! answers. The API handlers and the `status` / `reconcile` commands call
//! the same functions.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Duration, SecondsFormat, Utc};
use ndxp_audit::monitor::NodeStatus;
use ndxp_audit::reconcile::{
    bucket_ids_from_log, compare, drill_down, push_csv_field, summarize_log, BucketKey,
    DifferenceKind, LogReadError, Period, PeriodLength, ReconcileError, Report, Side, Summary,
};
use ndxp_core::{MemberId, NodeName, ServiceId, TransactionId};
use ndxp_registry::store::monitoring::NewDrilldown;
use ndxp_registry::store::{RegistryStore, StoreError};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::MonitoringConfig;

/// Why monitoring data could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MonitorError {
    /// The registry database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The gateway's message log could not be read.
    #[error("the gateway's message log ([monitoring] gateway_log_url): {0}")]
    GatewayLog(#[from] LogReadError),
    /// The gateway's message log could not be opened.
    #[error("cannot open the gateway's message log ([monitoring] gateway_log_url): {0}")]
    OpenGatewayLog(String),
    /// A stored record does not parse (damaged database).
    #[error("stored monitoring record is damaged: {0}")]
    Corrupt(String),
    /// Summaries could not be compared.
    #[error(transparent)]
    Reconcile(#[from] ReconcileError),
    /// A period argument is malformed.
    #[error("{0}")]
    BadPeriod(String),
}

/// What the monitoring handlers share: the `[monitoring]` settings and,
/// when configured, a pool on the central gateway's message log.
#[derive(Debug, Clone, Default)]
pub struct MonitoringState {
    /// `[monitoring]`.
    pub config: MonitoringConfig,
    /// The gateway's own message log (`[monitoring] gateway_log_url`).
    pub gateway_log: Option<GatewayLog>,
}

/// Most gateway summaries a [`GatewayLog`] keeps.
const GATEWAY_CACHE: usize = 256;

/// The central gateway's message log as one side of reconciliation. Its
/// summary of a closed period is computed once and kept (most recent
/// 256 periods), so that every summary upload can trigger a
/// comparison without rescanning the gateway's log.
#[derive(Debug, Clone)]
pub struct GatewayLog {
    pool: sqlx::AnyPool,
    cache: std::sync::Arc<std::sync::Mutex<GatewayCache>>,
}

/// Gateway summaries by (period start, period end).
type GatewayCache = BTreeMap<(DateTime<Utc>, DateTime<Utc>), Summary>;

impl GatewayLog {
    /// The log behind `pool` (see [`open_gateway_log`]).
    pub fn new(pool: sqlx::AnyPool) -> Self {
        Self {
            pool,
            cache: Default::default(),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &sqlx::AnyPool {
        &self.pool
    }

    /// The gateway-side summary of a closed `period`.
    ///
    /// # Errors
    /// [`MonitorError::GatewayLog`].
    pub async fn summary(&self, period: Period) -> Result<Summary, MonitorError> {
        let key = (period.start(), period.end());
        if let Some(s) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(s);
        }
        let s = summarize_log(&self.pool, period).await?.gateway;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, s.clone());
            while c.len() > GATEWAY_CACHE {
                c.pop_first();
            }
        }
        Ok(s)
    }
}

impl MonitoringState {
    /// The state for `config`, opening the gateway's log when configured.
    ///
    /// # Errors
    /// [`MonitorError::OpenGatewayLog`].
    pub async fn open(config: &MonitoringConfig) -> Result<Self, MonitorError> {
        let gateway_log = match &config.gateway_log_url {
            Some(url) => Some(GatewayLog::new(open_gateway_log(url).await?)),
            None => None,
        };
        Ok(Self {
            config: config.clone(),
            gateway_log,
        })
    }
}

// ------------------------------------------------------------ status

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

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
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
    config: &crate::config::GatewayConfig,
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
    let latest: HashMap<(MemberId, NodeName), _> = store
        .latest_statuses()
        .await?
        .into_iter()
        .map(|r| ((r.member.clone(), r.node.clone()), r))
        .collect();
    let interval =
        Duration::seconds(i64::try_from(cfg.status_interval_secs).unwrap_or(i64::MAX / 4_000_000));
    let mut out = Vec::new();
    // Registered nodes, then the central gateway when it reported.
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
    for node in targets {
        let Some(rec) = latest.get(&(node.member.clone(), node.name.clone())) else {
            out.push(ConnectionState {
                member: node.member,
                node: node.name,
                service: None,
                state: ConnState::Down,
                reasons: vec!["no status report received yet".into()],
                last_report_at: None,
                software_version: None,
                globalconf_version: None,
                latency_ms: None,
            });
            continue;
        };
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
        out.push(ConnectionState {
            member: node.member.clone(),
            node: node.name.clone(),
            service: None,
            state,
            reasons,
            last_report_at: Some(rec.received_at),
            software_version: Some(status.software_version.clone()),
            globalconf_version: status.globalconf_version,
            latency_ms: None,
        });
        service_rows.sort_by(|a, b| a.service.cmp(&b.service));
        out.extend(service_rows);
    }
    Ok(out)
}

/// The status listing as a text table for the command line.
pub fn states_table(rows: &[ConnectionState]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<24} {:<16} {:<48} {:<9} {:<20} REASONS",
        "MEMBER", "NODE", "SERVICE", "STATE", "LAST REPORT"
    );
    for r in rows {
        let _ = writeln!(
            out,
            "{:<24} {:<16} {:<48} {:<9} {:<20} {}",
            r.member.to_string(),
            r.node.to_string(),
            r.service
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "-".into()),
            r.state.as_str(),
            r.last_report_at
                .map(rfc3339)
                .unwrap_or_else(|| "never".into()),
            if r.reasons.is_empty() {
                "-".to_string()
            } else {
                r.reasons.join("; ")
            }
        );
    }
    out
}

// ------------------------------------------------------------ periods

/// Parses a period argument: `2026-11-28` (that UTC day) or
/// `2026-11-28T10` (that UTC hour).
///
/// # Errors
/// [`MonitorError::BadPeriod`].
pub fn parse_period(s: &str) -> Result<Period, MonitorError> {
    let bad = || {
        MonitorError::BadPeriod(format!(
            "period {:?} is not a UTC day (2026-11-28) or hour (2026-11-28T10)",
            s.chars().take(40).collect::<String>()
        ))
    };
    let s = s.trim();
    let (day, hour) = match s.split_once('T') {
        Some((d, h)) => (d, Some(h)),
        None => (s, None),
    };
    let date = chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").map_err(|_| bad())?;
    if day.len() != 10 {
        return Err(bad());
    }
    match hour {
        None => {
            let t = date.and_hms_opt(0, 0, 0).ok_or_else(bad)?.and_utc();
            Ok(Period::day(t))
        }
        Some(h) => {
            if h.len() != 2 || !h.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            let h: u32 = h.parse().map_err(|_| bad())?;
            let t = date.and_hms_opt(h, 0, 0).ok_or_else(bad)?.and_utc();
            Ok(Period::hour(t))
        }
    }
}

/// Whether `period` is a whole period of the configured length that ended
/// at least `grace_secs` before `now`.
pub fn is_closed(cfg: &MonitoringConfig, period: Period, now: DateTime<Utc>) -> bool {
    let grace = Duration::seconds(i64::try_from(cfg.grace_secs).unwrap_or(i64::MAX / 4_000_000));
    period.end() + grace <= now
}

/// Whether `period` is exactly one period of the configured length.
pub fn is_configured_period(cfg: &MonitoringConfig, period: Period) -> bool {
    Period::containing(cfg.period, period.start()) == period
}

fn periods_in(length: PeriodLength, range: Period) -> Vec<Period> {
    let mut out = Vec::new();
    let mut p = Period::containing(length, range.start());
    while p.start() < range.end() && out.len() < 10_000 {
        if p.start() >= range.start() && p.end() <= range.end() {
            out.push(p);
        }
        p = Period::containing(length, p.end());
    }
    out
}

// ------------------------------------------------------------ reconciliation

/// Where a summary came from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Source {
    /// A node's upload.
    Node {
        /// The member.
        member: MemberId,
        /// The node.
        node: NodeName,
    },
    /// A member's own upload (a provider without a node).
    Member {
        /// The member.
        member: MemberId,
    },
    /// The central gateway's own message log.
    Gateway,
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Node { member, node } => write!(f, "node {member}/{node}"),
            Source::Member { member } => write!(f, "member {member}"),
            Source::Gateway => f.write_str("gateway"),
        }
    }
}

/// The reconciliation state of one pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairState {
    /// Both sides agree.
    Clean,
    /// The report names the differing transactions.
    Differences,
    /// Buckets differ; drill-down answers are still awaited.
    Pending,
    /// A side's summary is missing; nothing can be compared yet.
    Incomplete,
}

/// The reconciliation of one provider member with one consumer member for
/// one period.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairReport {
    /// The period.
    pub period: Period,
    /// The provider's member.
    pub provider: MemberId,
    /// The consumer's member.
    pub consumer: MemberId,
    /// Summaries on the provider side.
    pub provider_sources: Vec<Source>,
    /// Summaries on the consumer-facing side (the consumer's nodes, the gateway).
    pub consumer_sources: Vec<Source>,
    /// The state.
    pub state: PairState,
    /// Missing summaries, when incomplete.
    pub missing: Vec<String>,
    /// Drill-down requests not yet answered, when pending.
    pub pending_drilldowns: Vec<Uuid>,
    /// The report, once both sides are complete (differences named only
    /// when every drill-down was answered).
    pub report: Option<Report>,
}

/// The reconciliation report of a range of periods.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReconciliationReport {
    /// The range asked for.
    pub range: Period,
    /// When it was made.
    pub generated_at: DateTime<Utc>,
    /// Every pair of every period, sorted by period, provider, consumer.
    pub pairs: Vec<PairReport>,
}

impl ReconciliationReport {
    /// Whether every pair is clean.
    pub fn is_clean(&self) -> bool {
        self.pairs.iter().all(|p| p.state == PairState::Clean)
    }

    /// Drill-down requests still awaited.
    pub fn pending(&self) -> Vec<Uuid> {
        self.pairs
            .iter()
            .flat_map(|p| p.pending_drilldowns.iter().copied())
            .collect()
    }

    /// The report as CSV (RFC 4180): one row per differing transaction;
    /// pairs that are pending or incomplete get one row with that `kind`
    /// and the reason in `detail`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "period_start,period_end,provider_member,consumer_member,transaction_id,client,service,kind,provider_outcome,consumer_outcome,provider_count,consumer_count,detail\r\n",
        );
        for p in &self.pairs {
            let head = [
                rfc3339(p.period.start()),
                rfc3339(p.period.end()),
                p.provider.to_string(),
                p.consumer.to_string(),
            ];
            let mut row = |fields: Vec<String>| {
                for (i, f) in head.iter().chain(fields.iter()).enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_csv_field(&mut out, f);
                }
                out.push_str("\r\n");
            };
            match p.state {
                PairState::Pending => row(vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    "pending".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("{} drill-down requests awaited", p.pending_drilldowns.len()),
                ]),
                PairState::Incomplete => row(vec![
                    String::new(),
                    String::new(),
                    String::new(),
                    "incomplete".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    format!("missing: {}", p.missing.join("; ")),
                ]),
                PairState::Clean | PairState::Differences => {}
            }
            for d in p.report.iter().flat_map(|r| r.items.iter()) {
                let (po, co, pc, cc) = match &d.kind {
                    DifferenceKind::OnlyProvider { outcome } => (outcome.as_str(), "", 1, 0),
                    DifferenceKind::OnlyConsumer { outcome } => ("", outcome.as_str(), 0, 1),
                    DifferenceKind::OutcomeDiffers { provider, consumer } => {
                        (provider.as_str(), consumer.as_str(), 1, 1)
                    }
                    DifferenceKind::Duplicated {
                        provider_count,
                        consumer_count,
                    } => ("", "", *provider_count, *consumer_count),
                };
                row(vec![
                    d.transaction_id.to_string(),
                    d.client.to_string(),
                    d.service.to_string(),
                    d.kind.as_str().to_string(),
                    po.to_string(),
                    co.to_string(),
                    pc.to_string(),
                    cc.to_string(),
                    String::new(),
                ]);
            }
        }
        out
    }
}

/// (source, side, period start, bucket JSON) of a drill-down request.
type AnswerKey = (Source, Side, DateTime<Utc>, String);

struct Part {
    source: Source,
    summary: Summary,
}

fn source_of(member: &MemberId, node: Option<&NodeName>) -> Source {
    match node {
        Some(n) => Source::Node {
            member: member.clone(),
            node: n.clone(),
        },
        None => Source::Member {
            member: member.clone(),
        },
    }
}

fn parse_side(s: &str) -> Option<Side> {
    match s {
        "provider" => Some(Side::Provider),
        "consumer" => Some(Side::Consumer),
        "gateway" => Some(Side::Gateway),
        _ => None,
    }
}

/// The side name stored for a summary or drill-down.
pub fn side_name(side: Side) -> &'static str {
    match side {
        Side::Provider => "provider",
        Side::Consumer => "consumer",
        Side::Gateway => "gateway",
    }
}

/// Opens the gateway's message log database for reading.
///
/// # Errors
/// [`MonitorError::OpenGatewayLog`].
pub async fn open_gateway_log(url: &str) -> Result<sqlx::AnyPool, MonitorError> {
    let parsed = ndxp_core::dburl::parse(url).map_err(|e| MonitorError::OpenGatewayLog(e.0))?;
    if let Some(file) = parsed.sqlite_file() {
        ndxp_sign::files::prepare_database_file(std::path::Path::new(file), parsed.creates_file())
            .map_err(|e| MonitorError::OpenGatewayLog(e.to_string()))?;
    }
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(&parsed.connect_url)
        .await
        .map_err(|e| {
            MonitorError::OpenGatewayLog(format!("{}: {e}", ndxp_core::dburl::redact(url)))
        })
}

/// Reconciles every period of the configured length inside `range` that
/// has summaries (or gateway records): pairs the provider-side summaries
/// of each member with the consumer-facing summaries (the consumer
/// member's nodes and the central gateway's log) restricted to that pair,
/// compares them, records drill-down requests for differing buckets, and
/// names the differing transactions once every answer is in.
///
/// # Errors
/// [`MonitorError`].
pub async fn reconcile(
    store: &dyn RegistryStore,
    cfg: &MonitoringConfig,
    gateway_log: Option<&GatewayLog>,
    range: Period,
    now: DateTime<Utc>,
) -> Result<ReconciliationReport, MonitorError> {
    let stored = store.list_summaries(range.start(), range.end()).await?;
    let drills = store.list_drilldowns(range.start(), range.end()).await?;
    let nodes = store.list_nodes(None).await?;
    let mut nodes_of: BTreeMap<MemberId, Vec<NodeName>> = BTreeMap::new();
    for n in nodes {
        nodes_of.entry(n.member).or_default().push(n.name);
    }
    let mut by_period: BTreeMap<(DateTime<Utc>, DateTime<Utc>), Vec<Part>> = BTreeMap::new();
    for r in stored {
        let summary: Summary = serde_json::from_str(&r.summary)
            .map_err(|e| MonitorError::Corrupt(format!("summary of {}: {e}", r.member)))?;
        by_period
            .entry((r.period_start, r.period_end))
            .or_default()
            .push(Part {
                source: source_of(&r.member, r.node.as_ref()),
                summary,
            });
    }
    if let Some(glog) = gateway_log {
        for p in periods_in(cfg.period, range) {
            if !is_closed(cfg, p, now) {
                continue;
            }
            let g = glog.summary(p).await?;
            if !g.buckets.is_empty() {
                by_period
                    .entry((p.start(), p.end()))
                    .or_default()
                    .push(Part {
                        source: Source::Gateway,
                        summary: g,
                    });
            }
        }
    }
    // Answers by (source, side, period start, bucket json).
    let mut answers: HashMap<AnswerKey, (Uuid, Option<Vec<TransactionId>>)> = HashMap::new();
    for d in &drills {
        let Some(side) = parse_side(&d.side) else {
            continue;
        };
        let ids =
            match &d.answer {
                Some(a) => Some(serde_json::from_str::<Vec<TransactionId>>(a).map_err(|e| {
                    MonitorError::Corrupt(format!("drill-down answer {}: {e}", d.id))
                })?),
                None => None,
            };
        answers.insert(
            (
                source_of(&d.member, d.node.as_ref()),
                side,
                d.period_start,
                d.bucket.clone(),
            ),
            (d.id, ids),
        );
    }

    let mut pairs = Vec::new();
    let mut to_request = Vec::new();
    for ((start, end), parts) in by_period {
        let period = Period::new(start, end)?;
        // Which pairs exist in this period.
        let mut pair_set: BTreeSet<(MemberId, MemberId)> = BTreeSet::new();
        for part in &parts {
            for b in &part.summary.buckets {
                pair_set.insert((
                    b.key.service.member().clone(),
                    b.key.client.member().clone(),
                ));
            }
        }
        for (pm, cm) in pair_set {
            let keep = |k: &BucketKey| k.service.member() == &pm && k.client.member() == &cm;
            let mut prov: Vec<(Source, Summary)> = Vec::new();
            let mut cons: Vec<(Source, Summary)> = Vec::new();
            for part in &parts {
                let owner = match &part.source {
                    Source::Node { member, .. } | Source::Member { member } => Some(member),
                    Source::Gateway => None,
                };
                let (list, wanted_owner) = match part.summary.side {
                    Side::Provider => (&mut prov, Some(&pm)),
                    Side::Consumer => (&mut cons, Some(&cm)),
                    Side::Gateway => (&mut cons, None),
                };
                if owner != wanted_owner {
                    continue;
                }
                let mut s = part.summary.clone();
                s.retain(&keep);
                list.push((part.source.clone(), s));
            }
            // Who should have uploaded.
            let mut missing = Vec::new();
            let have =
                |list: &Vec<(Source, Summary)>, want: &Source| list.iter().any(|(s, _)| s == want);
            match nodes_of.get(&pm) {
                Some(ns) => {
                    for n in ns {
                        let want = source_of(&pm, Some(n));
                        if !have(&prov, &want) {
                            missing.push(format!("provider summary of {want}"));
                        }
                    }
                }
                None => {
                    if prov.is_empty() {
                        missing.push(format!("provider summary of member {pm}"));
                    }
                }
            }
            if let Some(ns) = nodes_of.get(&cm) {
                for n in ns {
                    let want = source_of(&cm, Some(n));
                    if !have(&cons, &want) {
                        missing.push(format!("consumer summary of {want}"));
                    }
                }
            }
            if cons.is_empty() && missing.is_empty() {
                missing.push(format!(
                    "a consumer-facing summary for member {cm} (its node's, or the gateway's log)"
                ));
            }
            let mut pr = PairReport {
                period,
                provider: pm.clone(),
                consumer: cm.clone(),
                provider_sources: prov.iter().map(|(s, _)| s.clone()).collect(),
                consumer_sources: cons.iter().map(|(s, _)| s.clone()).collect(),
                state: PairState::Incomplete,
                missing,
                pending_drilldowns: Vec::new(),
                report: None,
            };
            if !pr.missing.is_empty() {
                pairs.push(pr);
                continue;
            }
            let merged =
                |list: &Vec<(Source, Summary)>, side: Side| -> Result<Summary, ReconcileError> {
                    let mut m = Summary {
                        side,
                        period,
                        buckets: Vec::new(),
                    };
                    for (_, s) in list {
                        m.merge(s)?;
                    }
                    Ok(m)
                };
            let consumer_side = if cons.iter().any(|(s, _)| s != &Source::Gateway) {
                Side::Consumer
            } else {
                Side::Gateway
            };
            let p_sum = merged(&prov, Side::Provider)?;
            let c_sum = merged(&cons, consumer_side)?;
            let cmp = compare(&p_sum, &c_sum)?;
            // Every (source, bucket) whose ids are needed.
            let mut fetched: HashMap<(bool, BucketKey), Vec<TransactionId>> = HashMap::new();
            let mut pending = Vec::new();
            for d in &cmp.differing {
                let bucket_json = serde_json::to_string(&d.key)
                    .map_err(|e| MonitorError::Corrupt(e.to_string()))?;
                for (is_provider, list) in [(true, &prov), (false, &cons)] {
                    for (src, s) in list.iter() {
                        if !s.buckets.iter().any(|b| b.key == d.key) {
                            continue;
                        }
                        let ids = match src {
                            Source::Gateway => match gateway_log {
                                Some(glog) => {
                                    bucket_ids_from_log(glog.pool(), period, Side::Gateway, &d.key)
                                        .await?
                                }
                                None => Vec::new(),
                            },
                            Source::Node { member, node } => {
                                match answers.get(&(
                                    src.clone(),
                                    s.side,
                                    start,
                                    bucket_json.clone(),
                                )) {
                                    Some((_, Some(ids))) => ids.clone(),
                                    Some((id, None)) => {
                                        pending.push(*id);
                                        continue;
                                    }
                                    None => {
                                        to_request.push(NewDrilldown {
                                            member: member.clone(),
                                            node: Some(node.clone()),
                                            side: side_name(s.side).into(),
                                            period_start: start,
                                            period_end: end,
                                            bucket: bucket_json.clone(),
                                        });
                                        pending.push(Uuid::nil());
                                        continue;
                                    }
                                }
                            }
                            Source::Member { member } => {
                                match answers.get(&(
                                    src.clone(),
                                    s.side,
                                    start,
                                    bucket_json.clone(),
                                )) {
                                    Some((_, Some(ids))) => ids.clone(),
                                    Some((id, None)) => {
                                        pending.push(*id);
                                        continue;
                                    }
                                    None => {
                                        to_request.push(NewDrilldown {
                                            member: member.clone(),
                                            node: None,
                                            side: side_name(s.side).into(),
                                            period_start: start,
                                            period_end: end,
                                            bucket: bucket_json.clone(),
                                        });
                                        pending.push(Uuid::nil());
                                        continue;
                                    }
                                }
                            }
                        };
                        fetched
                            .entry((is_provider, d.key.clone()))
                            .or_default()
                            .extend(ids);
                    }
                }
            }
            if pending.is_empty() {
                let provider_side = cmp.provider_side;
                let report = drill_down(&cmp, |side, key| {
                    let ids = fetched
                        .get(&(side == provider_side, key.clone()))
                        .cloned()
                        .unwrap_or_default();
                    Ok::<_, std::convert::Infallible>(ids)
                })
                .map_err(|e| MonitorError::Corrupt(e.to_string()))?;
                pr.state = if report.is_clean() {
                    PairState::Clean
                } else {
                    PairState::Differences
                };
                pr.report = Some(report);
            } else {
                pr.state = PairState::Pending;
                pr.pending_drilldowns = pending;
            }
            pairs.push(pr);
        }
    }
    if !to_request.is_empty() {
        store.request_drilldowns(&to_request, now).await?;
        // Fill in the ids of the requests just recorded.
        let drills = store.list_drilldowns(range.start(), range.end()).await?;
        let ids: HashMap<(Source, String, DateTime<Utc>, String), Uuid> = drills
            .iter()
            .map(|d| {
                (
                    (
                        source_of(&d.member, d.node.as_ref()),
                        d.side.clone(),
                        d.period_start,
                        d.bucket.clone(),
                    ),
                    d.id,
                )
            })
            .collect();
        let mut req = to_request.iter();
        for p in &mut pairs {
            for id in &mut p.pending_drilldowns {
                if id.is_nil() {
                    if let Some(r) = req.next() {
                        if let Some(real) = ids.get(&(
                            source_of(&r.member, r.node.as_ref()),
                            r.side.clone(),
                            r.period_start,
                            r.bucket.clone(),
                        )) {
                            *id = *real;
                        }
                    }
                }
            }
        }
    }
    Ok(ReconciliationReport {
        range,
        generated_at: now,
        pairs,
    })
}

// ------------------------------------------------------------ commands

/// `ndxp-gateway status`: the connection states from the registry of
/// `config`, at `now`.
///
/// # Errors
/// [`MonitorError`].
pub async fn status_command(
    config: &crate::config::GatewayConfig,
    now: DateTime<Utc>,
) -> Result<Vec<ConnectionState>, MonitorError> {
    let store = ndxp_registry::store::open(&config.storage.url).await?;
    connection_states(store.as_ref(), &config.monitoring, now).await
}

/// `ndxp-gateway reconcile`: the report of `period` (a day or an hour, see
/// [`parse_period`]) from the registry of `config`. While drill-down
/// answers are awaited and `wait` has not passed, asks again every
/// `poll` (the nodes answer through the running management server).
///
/// # Errors
/// [`MonitorError`].
pub async fn reconcile_command(
    config: &crate::config::GatewayConfig,
    period: &str,
    wait: std::time::Duration,
    poll: std::time::Duration,
) -> Result<ReconciliationReport, MonitorError> {
    let range = parse_period(period)?;
    let store = ndxp_registry::store::open(&config.storage.url).await?;
    let state = MonitoringState::open(&config.monitoring).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let report = reconcile(
            store.as_ref(),
            &config.monitoring,
            state.gateway_log.as_ref(),
            range,
            Utc::now(),
        )
        .await?;
        if report.pending().is_empty() || tokio::time::Instant::now() + poll > deadline {
            return Ok(report);
        }
        tokio::time::sleep(poll).await;
    }
}

/// A short text summary of a report for the command line: one line per
/// pair, then the differing transactions.
pub fn report_text(report: &ReconciliationReport) -> String {
    let mut out = String::new();
    if report.pairs.is_empty() {
        let _ = writeln!(out, "no summaries for {}", report.range);
    }
    for p in &report.pairs {
        let state = match p.state {
            PairState::Clean => "clean".to_string(),
            PairState::Differences => format!(
                "{} differing transactions",
                p.report.as_ref().map_or(0, |r| r.items.len())
            ),
            PairState::Pending => format!(
                "pending: {} drill-down requests awaited",
                p.pending_drilldowns.len()
            ),
            PairState::Incomplete => format!("incomplete: missing {}", p.missing.join("; ")),
        };
        let _ = writeln!(
            out,
            "{}  provider {}  consumer {}  {state}",
            p.period, p.provider, p.consumer
        );
        for d in p.report.iter().flat_map(|r| r.items.iter()) {
            let what = match &d.kind {
                DifferenceKind::OnlyProvider { outcome } => {
                    format!("only on the provider ({outcome})")
                }
                DifferenceKind::OnlyConsumer { outcome } => {
                    format!("only on the consumer ({outcome})")
                }
                DifferenceKind::OutcomeDiffers { provider, consumer } => {
                    format!("provider {provider}, consumer {consumer}")
                }
                DifferenceKind::Duplicated {
                    provider_count,
                    consumer_count,
                } => format!(
                    "logged {provider_count}× by the provider, {consumer_count}× by the consumer"
                ),
            };
            let _ = writeln!(
                out,
                "  {}  {}  {}  {what}",
                d.transaction_id, d.client, d.service
            );
        }
        for i in p.report.iter().flat_map(|r| r.inconsistent.iter()) {
            let _ = writeln!(
                out,
                "  inconsistent: the {} answer for {} contradicts its summary",
                i.side, i.key
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    #[test]
    fn periods_parse_as_days_and_hours() {
        let d = parse_period("2026-11-28").unwrap();
        assert_eq!(
            d.start(),
            Utc.with_ymd_and_hms(2026, 11, 28, 0, 0, 0).unwrap()
        );
        assert_eq!(
            d.end(),
            Utc.with_ymd_and_hms(2026, 11, 29, 0, 0, 0).unwrap()
        );
        let h = parse_period("2026-11-28T10").unwrap();
        assert_eq!(
            h.start(),
            Utc.with_ymd_and_hms(2026, 11, 28, 10, 0, 0).unwrap()
        );
        assert_eq!(
            h.end(),
            Utc.with_ymd_and_hms(2026, 11, 28, 11, 0, 0).unwrap()
        );
        for bad in [
            "",
            "2026-11",
            "2026-13-01",
            "2026-11-31",
            "2026-11-28T24",
            "2026-11-28T1",
            "2026-11-28T+1",
            "2026-1-28",
            "28-11-2026",
            "2026-11-28T10:00",
            " T ",
        ] {
            assert!(parse_period(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn periods_in_a_day_by_hour() {
        let day = parse_period("2026-11-28").unwrap();
        let hours = periods_in(PeriodLength::Hour, day);
        assert_eq!(hours.len(), 24);
        assert_eq!(periods_in(PeriodLength::Day, day), vec![day]);
        let hour = parse_period("2026-11-28T10").unwrap();
        assert!(periods_in(PeriodLength::Day, hour).is_empty());
        let minutes = periods_in(PeriodLength::Minute, hour);
        assert_eq!(minutes.len(), 60);
        assert_eq!(minutes[59].end(), hour.end());
    }

    proptest! {
        #[test]
        fn parse_period_never_panics(s in ".{0,40}") {
            let _ = parse_period(&s);
        }

        #[test]
        fn parse_period_round_trips(days in 0i64..40_000, hour in 0u32..24) {
            let t = Utc.with_ymd_and_hms(1970, 1, 1, hour, 0, 0).unwrap() + Duration::days(days);
            let d = parse_period(&t.format("%Y-%m-%d").to_string()).unwrap();
            prop_assert_eq!(d, Period::day(t));
            let h = parse_period(&t.format("%Y-%m-%dT%H").to_string()).unwrap();
            prop_assert_eq!(h, Period::hour(t));
        }
    }
}
