//! The monitoring centre of the management role (`docs/monitoring.md`):
//! connection states computed from the nodes' signed status reports, and
//! the reconciliation of every provider–consumer pair from the stored
//! summaries, the central gateway's own message log and the drill-down
//! answers. The API handlers and the `status` / `reconcile` commands call
//! the same functions.
//!
//! | module | job |
//! |---|---|
//! | `status` | connection states from status reports, and the central gateway's own status ([`connection_states`], [`record_gateway_status`]) |
//! | `period` | period arguments and closed periods ([`parse_period`], [`is_closed`]) |
//! | `reconciliation` | pairing summaries, drill-downs and the report ([`reconcile`], [`ReconciliationReport`]) |
//!
//! This module holds what they share: the errors, the state of the
//! handlers with the central gateway's log, and the two commands.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use ndxp_audit::reconcile::{summarize_log, LogReadError, Period, ReconcileError, Summary};
use ndxp_registry::store::StoreError;

use crate::config::{GatewayConfig, MonitoringConfig};

mod period;
mod reconciliation;
mod status;

pub use period::{is_closed, is_configured_period, parse_period};
pub use reconciliation::{
    reconcile, report_text, side_name, PairReport, PairState, ReconciliationReport, Source,
};
pub use status::{
    connection_states, record_gateway_status, states_table, ConnState, ConnectionState,
    GATEWAY_NODE,
};

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

/// Opens the gateway's message log database for reading.
///
/// # Errors
/// [`MonitorError::OpenGatewayLog`].
pub async fn open_gateway_log(url: &str) -> Result<sqlx::AnyPool, MonitorError> {
    // Read only: the gateway's own log sets the file up (WAL, migrations).
    let options = ndxp_db::PoolOptions {
        max_connections: 2,
        wal: false,
        ..ndxp_db::PoolOptions::default()
    };
    let db = ndxp_db::open(url, &options).await.map_err(|e| {
        MonitorError::OpenGatewayLog(match e {
            ndxp_db::OpenError::Url(e) => e.0,
            ndxp_db::OpenError::Connect { target, source } => format!("{target}: {source}"),
            e => e.to_string(),
        })
    })?;
    Ok(db.into_pool())
}

/// A time as RFC 3339 in whole seconds, `Z` for UTC.
fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `ndxp-gateway status`: the connection states from the registry of
/// `config`, at `now`.
///
/// # Errors
/// [`MonitorError`].
pub async fn status_command(
    config: &GatewayConfig,
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
    config: &GatewayConfig,
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
