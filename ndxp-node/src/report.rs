//! What a node reports to management (`docs/monitoring.md`): its status on
//! an interval, a signed reconciliation summary of every closed period, and
//! the answers to the drill-down requests management records when a
//! summary disagrees with the other side's. The node only calls out (it
//! works behind a firewall); every request is a compact JWS signed with the
//! member's signing key ([`ndxp_audit::monitor`]).
//!
//! ```no_run
//! # async fn demo(signer: &ndxp_sign::profile::Signer, log: sqlx::AnyPool) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use ndxp_node::report::{Reporter, ReporterOptions};
//! let status = Arc::new(|| ndxp_audit::monitor::NodeStatus {
//!     software_version: env!("CARGO_PKG_VERSION").into(),
//!     globalconf_version: Some(7), globalconf_age_secs: Some(30),
//!     auth_cert_expires_at: None, sign_cert_expires_at: None,
//!     log_lag_secs: None, timestamp_lag_secs: None, services: vec![],
//! });
//! let reporter = Reporter::new(
//!     "http://127.0.0.1:8100".into(), reqwest::Client::new(), "node1".parse()?,
//!     signer, log, status, ReporterOptions::new("reporter-state.json".into()),
//! );
//! reporter.run(std::time::Duration::from_secs(60), std::future::pending()).await;
//! # Ok(()) }
//! ```

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ndxp_audit::monitor::{
    sign_envelope, DrilldownAnswer, DrilldownPoll, DrilldownRequest, EnvelopeError, NodeStatus,
    ANSWER_TYP, POLL_TYP, STATUS_TYP, SUMMARY_TYP,
};
use ndxp_audit::reconcile::{
    bucket_ids_from_log, summarize_log, LogReadError, Period, PeriodLength, Summary,
};
use ndxp_core::{MemberId, NodeName};
use ndxp_sign::jws;
use ndxp_sign::key::KeyStore;
use ndxp_sign::openssl::pkey::{PKey, Private};
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile::{Signer, SignerKeySource};
use serde::{Deserialize, Serialize};

/// The key reports are signed with: the member signing key, in memory or
/// in a key store (a PKCS#11 token).
#[derive(Clone)]
enum ReportKey {
    File(PKey<Private>),
    Store(Arc<dyn KeyStore>, String),
}

/// Where the status comes from: the node's serve loop implements it.
pub type StatusSource = Arc<dyn Fn() -> NodeStatus + Send + Sync>;

/// Settings of a [`Reporter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReporterOptions {
    /// The reconciliation period; must match management's `[monitoring] period`.
    pub period: PeriodLength,
    /// How long after a period ends its summary is uploaded; at least
    /// management's `[monitoring] grace_secs`.
    pub grace: Duration,
    /// Most periods uploaded per [`Reporter::upload_summaries_once`] (a
    /// node that was down catches up over several rounds).
    pub max_periods_per_round: usize,
    /// How far back a node with no state file starts: periods before this
    /// are not uploaded.
    pub max_backlog: Duration,
    /// The small JSON file that remembers up to where summaries were
    /// uploaded.
    pub state_file: PathBuf,
}

impl ReporterOptions {
    /// Daily periods, a grace of 10 minutes, 48 periods per round, 7 days of
    /// backlog, and `state_file`.
    pub fn new(state_file: PathBuf) -> Self {
        Self {
            period: PeriodLength::Day,
            grace: Duration::minutes(10),
            max_periods_per_round: 48,
            max_backlog: Duration::days(7),
            state_file,
        }
    }
}

/// Why a report did not go through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] EnvelopeError),
    /// The message log could not be read.
    #[error(transparent)]
    Log(#[from] LogReadError),
    /// The message log database failed.
    #[error("cannot read the message log: {0}")]
    Database(#[source] sqlx::Error),
    /// Management could not be reached.
    #[error("cannot reach management for {what}: {source}")]
    Http {
        /// Which call.
        what: &'static str,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// Management refused the upload.
    #[error("management refused {what}: HTTP {status}: {detail}")]
    Refused {
        /// Which call.
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The problem's detail.
        detail: String,
    },
    /// The state file could not be read or written.
    #[error("reporter state file {path}: {detail}")]
    State {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        detail: String,
    },
}

/// What [`Reporter::upload_summaries_once`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadRound {
    /// Periods whose summaries were uploaded (or found already stored).
    pub periods: Vec<Period>,
    /// Summaries management refused because a different one is stored for
    /// the period (the log changed after the first upload), one line each.
    pub conflicts: Vec<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    /// Every period ending at or before this was uploaded (or lies before
    /// the node's first record).
    uploaded_through: Option<DateTime<Utc>>,
}

/// Reports this node's status, summaries and drill-down answers to
/// management (see the module docs).
#[derive(Clone)]
pub struct Reporter {
    base_url: String,
    http: reqwest::Client,
    member: MemberId,
    node: NodeName,
    key: ReportKey,
    chain: Vec<X509>,
    log: sqlx::AnyPool,
    status: StatusSource,
    options: ReporterOptions,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("base_url", &self.base_url)
            .field("member", &self.member)
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Reporter {
    /// A reporter for `node` of the signer's member, talking to management
    /// at `base_url` (e.g. `http://127.0.0.1:8100`) with `http`, reading
    /// the message log through `log` and the status from `status`.
    pub fn new(
        base_url: String,
        http: reqwest::Client,
        node: NodeName,
        signer: &Signer,
        log: sqlx::AnyPool,
        status: StatusSource,
        options: ReporterOptions,
    ) -> Self {
        let mut chain = vec![signer.certificate().clone()];
        chain.extend(signer.chain().iter().cloned());
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            http,
            member: signer.member().clone(),
            node,
            key: match signer.key_source() {
                SignerKeySource::Store(store, name) => {
                    ReportKey::Store(store.clone(), name.to_string())
                }
                SignerKeySource::Private(k) => ReportKey::File(k.to_owned()),
            },
            chain,
            log,
            status,
            options,
        }
    }

    fn sign<T: Serialize>(&self, typ: &str, body: T) -> Result<String, ReportError> {
        let env = ndxp_audit::monitor::Envelope::new(
            self.member.clone(),
            Some(self.node.clone()),
            Utc::now(),
            body,
        );
        match &self.key {
            ReportKey::File(key) => Ok(sign_envelope(&env, typ, key, &self.chain)?),
            ReportKey::Store(store, name) => {
                // The same algorithm as `sign_envelope` picks for a key in
                // memory: ES256 for EC, PS256 for RSA.
                let public = store
                    .public_key(name)
                    .map_err(|e| EnvelopeError::Sign(jws::JwsError::KeyStore(e)))?;
                let alg = if public.id() == ndxp_sign::openssl::pkey::Id::EC {
                    jws::JwsAlgorithm::Es256
                } else {
                    jws::JwsAlgorithm::Ps256
                };
                let payload = serde_json::to_vec(&env)
                    .map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
                Ok(
                    jws::sign_with_store(&payload, &**store, name, alg, &self.chain, Some(typ))
                        .map_err(EnvelopeError::Sign)?,
                )
            }
        }
    }

    async fn post(
        &self,
        what: &'static str,
        path: &str,
        jws: String,
    ) -> Result<reqwest::Response, ReportError> {
        let r = self
            .http
            .post(format!("{}{path}", self.base_url))
            .header("content-type", "application/jose")
            .body(jws)
            .send()
            .await
            .map_err(|source| ReportError::Http { what, source })?;
        Ok(r)
    }

    async fn refused(what: &'static str, r: reqwest::Response) -> ReportError {
        let status = r.status().as_u16();
        let text = r.text().await.unwrap_or_default();
        let detail = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_string))
            .unwrap_or_else(|| text.chars().take(300).collect());
        ReportError::Refused {
            what,
            status,
            detail,
        }
    }

    /// Sends the current status once.
    ///
    /// # Errors
    /// [`ReportError`].
    pub async fn report_status_once(&self) -> Result<(), ReportError> {
        let status = (self.status)();
        let jws = self.sign(STATUS_TYP, status)?;
        let r = self
            .post("the status report", "/api/v1/monitoring/status", jws)
            .await?;
        if r.status().is_success() {
            Ok(())
        } else {
            Err(Self::refused("the status report", r).await)
        }
    }

    fn read_state(&self) -> Result<State, ReportError> {
        let path = &self.options.state_file;
        match std::fs::read(path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| ReportError::State {
                path: path.clone(),
                detail: format!("not a reporter state file ({e}); remove it to start over"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(ReportError::State {
                path: path.clone(),
                detail: e.to_string(),
            }),
        }
    }

    fn write_state(&self, s: &State) -> Result<(), ReportError> {
        let path = &self.options.state_file;
        let err = |e: std::io::Error| ReportError::State {
            path: path.clone(),
            detail: e.to_string(),
        };
        let bytes = serde_json::to_vec(s).map_err(|e| ReportError::State {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        ndxp_sign::files::write_private(path, &bytes).map_err(err)
    }

    /// Where uploading starts without a state file: the period of the
    /// oldest logged record, but no further back than `max_backlog`.
    async fn first_period_start(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, ReportError> {
        let oldest: Option<String> = sqlx::query_scalar("SELECT MIN(received_at) FROM message_log")
            .fetch_one(&self.log)
            .await
            .map_err(ReportError::Database)?;
        let floor = now - self.options.max_backlog;
        let at = oldest
            .and_then(|s| DateTime::parse_from_rfc3339(&s).ok())
            .map(|t| t.with_timezone(&Utc))
            .unwrap_or(now)
            .max(floor);
        // A record can belong to the period before its local time.
        Ok(Period::containing(
            self.options.period,
            at - ndxp_audit::reconcile::LOG_TIME_MARGIN,
        )
        .start())
    }

    async fn upload(&self, s: &Summary, round: &mut UploadRound) -> Result<(), ReportError> {
        let what = "a reconciliation summary";
        let jws = self.sign(SUMMARY_TYP, s)?;
        let r = self
            .post(what, "/api/v1/reconciliation/summaries", jws)
            .await?;
        if r.status().is_success() {
            return Ok(());
        }
        if r.status().as_u16() == 409 {
            if let ReportError::Refused { detail, .. } = Self::refused(what, r).await {
                round
                    .conflicts
                    .push(format!("{} {}: {detail}", s.side, s.period));
            }
            return Ok(());
        }
        Err(Self::refused(what, r).await)
    }

    /// Uploads the provider and consumer summaries of every closed period
    /// (ended at least `grace` before `now`) not uploaded yet, oldest first,
    /// at most `max_periods_per_round`, and remembers the last one in the
    /// state file. A period in which the node logged nothing is uploaded
    /// too (empty), so management can tell silence from absence.
    ///
    /// # Errors
    /// [`ReportError`]; periods uploaded before the error stay recorded.
    pub async fn upload_summaries_once(
        &self,
        now: DateTime<Utc>,
    ) -> Result<UploadRound, ReportError> {
        let mut state = self.read_state()?;
        let mut start = match state.uploaded_through {
            Some(t) => t,
            None => {
                // Remember where this node starts, so that a node whose log
                // is still empty uploads (empty) summaries from here on.
                let t = self.first_period_start(now).await?;
                state.uploaded_through = Some(t);
                self.write_state(&state)?;
                t
            }
        };
        let mut round = UploadRound::default();
        while round.periods.len() < self.options.max_periods_per_round {
            let p = Period::containing(self.options.period, start);
            if p.end() + self.options.grace > now {
                break;
            }
            let sums = summarize_log(&self.log, p).await?;
            self.upload(&sums.provider, &mut round).await?;
            self.upload(&sums.consumer, &mut round).await?;
            state.uploaded_through = Some(p.end());
            self.write_state(&state)?;
            round.periods.push(p);
            start = p.end();
        }
        Ok(round)
    }

    /// Asks management for the drill-down requests addressed to this node
    /// and answers each with the ids of that bucket from the log. Returns
    /// how many were answered.
    ///
    /// # Errors
    /// [`ReportError`].
    pub async fn answer_drilldowns_once(&self) -> Result<usize, ReportError> {
        let what = "the drill-down poll";
        let jws = self.sign(POLL_TYP, DrilldownPoll::default())?;
        let r = self
            .post(what, "/api/v1/reconciliation/drilldowns/poll", jws)
            .await?;
        if !r.status().is_success() {
            return Err(Self::refused(what, r).await);
        }
        let requests: Vec<DrilldownRequest> = r
            .json()
            .await
            .map_err(|source| ReportError::Http { what, source })?;
        let mut n = 0;
        for q in requests {
            let ids = bucket_ids_from_log(&self.log, q.period, q.side, &q.key).await?;
            let what = "a drill-down answer";
            let jws = self.sign(ANSWER_TYP, DrilldownAnswer { id: q.id, ids })?;
            let r = self
                .post(
                    what,
                    &format!("/api/v1/reconciliation/drilldowns/{}", q.id),
                    jws,
                )
                .await?;
            if !r.status().is_success() {
                return Err(Self::refused(what, r).await);
            }
            n += 1;
        }
        Ok(n)
    }

    /// Reports status, uploads summaries and answers drill-downs every
    /// `interval` until `shutdown` completes. A failed step is logged
    /// (tracing) and tried again on the next round.
    pub async fn run(&self, interval: std::time::Duration, shutdown: impl Future<Output = ()>) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.report_status_once().await {
                tracing::warn!(error = %e, "status report not sent");
            }
            match self.upload_summaries_once(Utc::now()).await {
                Ok(r) => {
                    for c in r.conflicts {
                        tracing::warn!(conflict = %c, "management holds a different summary");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "reconciliation summaries not uploaded"),
            }
            if let Err(e) = self.answer_drilldowns_once().await {
                tracing::warn!(error = %e, "drill-down requests not answered");
            }
        }
    }
}
