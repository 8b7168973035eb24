//! Storage of monitoring and reconciliation records (`docs/monitoring.md`):
//! node status reports, reconciliation summaries, drill-down requests and
//! their answers, and the `jti` values of signed uploads (replay refusal).
//!
//! These are operational records, not registry data: writing them neither
//! raises the registry version (the global configuration does not change)
//! nor appends to the audit trail (a status report every minute from every
//! node would drown it). Each write is still one transaction: a refused
//! upload (replayed `jti`, conflicting summary) leaves nothing behind.
//!
//! The store does not interpret the JSON it keeps (`status`, `summary`,
//! `bucket`, `answer`); `ndxp_audit::monitor` and `ndxp_audit::reconcile`
//! define it. The management role checks uploads before storing them.

use async_trait::async_trait;
use chrono::{DateTime, Duration, Utc};
use ndxp_core::{MemberId, NodeName};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::Result;

/// How long a `jti` is remembered: longer than the ±300 s during which an
/// upload's `iat` is accepted, so a replay is refused either as a replay
/// or as stale.
pub const JTI_RETENTION: Duration = Duration::minutes(15);

/// One status report as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// The record's id (UUID v7).
    pub id: Uuid,
    /// The node's member.
    pub member: MemberId,
    /// The node.
    pub node: NodeName,
    /// When management received it.
    pub received_at: DateTime<Utc>,
    /// The reported status, JSON (`ndxp_audit::monitor::NodeStatus`).
    pub status: String,
}

/// A reconciliation summary to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSummary {
    /// The member that signed it.
    pub member: MemberId,
    /// The node that sent it; `None` for a member without a node.
    pub node: Option<NodeName>,
    /// `provider` or `consumer`.
    pub side: String,
    /// First instant of the period.
    pub period_start: DateTime<Utc>,
    /// First instant after the period.
    pub period_end: DateTime<Utc>,
    /// The summary, canonical JSON (`ndxp_audit::reconcile::Summary`).
    pub summary: String,
    /// The JWS as received (evidence).
    pub signed: String,
}

/// A stored reconciliation summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SummaryRecord {
    /// The member that signed it.
    pub member: MemberId,
    /// The node that sent it; `None` for a member without a node.
    pub node: Option<NodeName>,
    /// `provider` or `consumer`.
    pub side: String,
    /// First instant of the period.
    pub period_start: DateTime<Utc>,
    /// First instant after the period.
    pub period_end: DateTime<Utc>,
    /// The summary, JSON.
    pub summary: String,
    /// When management received it.
    pub received_at: DateTime<Utc>,
}

/// A drill-down request to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDrilldown {
    /// The member whose node must answer.
    pub member: MemberId,
    /// That node; `None` for a member without a node.
    pub node: Option<NodeName>,
    /// The side of that node's summary.
    pub side: String,
    /// First instant of the period.
    pub period_start: DateTime<Utc>,
    /// First instant after the period.
    pub period_end: DateTime<Utc>,
    /// The bucket key, JSON (`ndxp_audit::reconcile::BucketKey`).
    pub bucket: String,
}

/// A stored drill-down request, answered or not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrilldownRecord {
    /// The request's id.
    pub id: Uuid,
    /// The member whose node must answer.
    pub member: MemberId,
    /// That node; `None` for a member without a node.
    pub node: Option<NodeName>,
    /// The side of that node's summary.
    pub side: String,
    /// First instant of the period.
    pub period_start: DateTime<Utc>,
    /// First instant after the period.
    pub period_end: DateTime<Utc>,
    /// The bucket key, JSON.
    pub bucket: String,
    /// When it was requested.
    pub created_at: DateTime<Utc>,
    /// When the node answered.
    pub answered_at: Option<DateTime<Utc>>,
    /// The answer: a JSON array of transaction ids.
    pub answer: Option<String>,
}

/// What [`MonitoringStore::store_summary`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SummaryStored {
    /// A new summary was stored.
    Created,
    /// The same summary was stored before; nothing changed.
    Unchanged,
}

/// Monitoring and reconciliation records (see the module docs).
#[async_trait]
pub trait MonitoringStore: Send + Sync {
    /// Records `jti` of `member` as used at `at` and stores a status report,
    /// in one transaction. `AlreadyExists` (what `jti`) for a replay.
    async fn record_status(
        &self,
        member: &MemberId,
        node: &NodeName,
        jti: &str,
        at: DateTime<Utc>,
        status_json: &str,
        signed: &str,
    ) -> Result<StatusRecord>;

    /// The latest status report of every node that ever reported, sorted by
    /// member and node.
    async fn latest_statuses(&self) -> Result<Vec<StatusRecord>>;

    /// The last `limit` reports of one node, newest first.
    async fn status_history(
        &self,
        member: &MemberId,
        node: &NodeName,
        limit: u32,
    ) -> Result<Vec<StatusRecord>>;

    /// Records `jti` and stores a summary, in one transaction. The same
    /// summary again is [`SummaryStored::Unchanged`]; a different summary
    /// for the same member, node, side and period is `AlreadyExists`.
    async fn store_summary(
        &self,
        summary: &NewSummary,
        jti: &str,
        at: DateTime<Utc>,
    ) -> Result<SummaryStored>;

    /// Summaries whose period lies within `[from, to)`, sorted by period,
    /// member, node and side.
    async fn list_summaries(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<SummaryRecord>>;

    /// Records drill-down requests not recorded before (same member, node,
    /// side, period and bucket); returns how many were new.
    async fn request_drilldowns(
        &self,
        requests: &[NewDrilldown],
        at: DateTime<Utc>,
    ) -> Result<usize>;

    /// Drill-down requests whose period lies within `[from, to)`.
    async fn list_drilldowns(
        &self,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<DrilldownRecord>>;

    /// One drill-down request; `NotFound` if absent.
    async fn get_drilldown(&self, id: Uuid) -> Result<DrilldownRecord>;

    /// Records `jti` and returns the unanswered requests of `member`'s
    /// `node` (`None`: the member's own), oldest first, at most `limit`.
    async fn poll_drilldowns(
        &self,
        member: &MemberId,
        node: Option<&NodeName>,
        jti: &str,
        at: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DrilldownRecord>>;

    /// Records `jti` and stores the answer to request `id`, which must be
    /// addressed to `member`'s `node` (`NotFound` otherwise, so nobody
    /// learns of other nodes' requests). Answering again with the same ids
    /// changes nothing; with other ids it is `InvalidTransition`.
    #[allow(clippy::too_many_arguments)]
    async fn answer_drilldown(
        &self,
        id: Uuid,
        member: &MemberId,
        node: Option<&NodeName>,
        jti: &str,
        at: DateTime<Utc>,
        answer_json: &str,
        signed: &str,
    ) -> Result<DrilldownRecord>;
}
