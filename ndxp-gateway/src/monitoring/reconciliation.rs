//! Reconciliation of every provider–consumer pair: the stored summaries
//! and the central gateway's log are grouped by period and pair
//! ([`reconcile`]), compared, and the differing buckets drilled down to
//! transactions once every answer is in.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use ndxp_audit::reconcile::{
    bucket_ids_from_log, compare, drill_down, push_csv_field, BucketKey, Comparison,
    DifferenceKind, Period, ReconcileError, Report, Side, Summary,
};
use ndxp_core::{MemberId, NodeName, TransactionId};
use ndxp_registry::store::monitoring::{DrilldownRecord, NewDrilldown, SummaryRecord};
use ndxp_registry::store::RegistryStore;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::period::{is_closed, periods_in};
use super::{rfc3339, GatewayLog, MonitorError};
use crate::config::MonitoringConfig;

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

/// Summaries of one side of a pair, each restricted to the pair, with
/// where it came from.
type Sourced = Vec<(Source, Summary)>;

/// Drill-down requests by [`AnswerKey`]: the request's id and, once the
/// node answered, the transaction ids.
type Answers = HashMap<AnswerKey, (Uuid, Option<Vec<TransactionId>>)>;

/// The ids of a differing bucket gathered so far, by (provider side?, bucket).
type Fetched = HashMap<(bool, BucketKey), Vec<TransactionId>>;

/// Summaries by (period start, period end).
type ByPeriod = BTreeMap<(DateTime<Utc>, DateTime<Utc>), Vec<Part>>;

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
    let mut by_period = stored_parts(stored)?;
    if let Some(glog) = gateway_log {
        add_gateway_parts(&mut by_period, glog, cfg, range, now).await?;
    }
    let mut run = Run {
        gateway_log,
        nodes_of,
        answers: answers_of(&drills)?,
        to_request: Vec::new(),
    };
    let mut pairs = Vec::new();
    for ((start, end), parts) in by_period {
        let period = Period::new(start, end)?;
        for (provider, consumer) in pairs_in(&parts) {
            pairs.push(run.pair_report(period, &parts, provider, consumer).await?);
        }
    }
    if !run.to_request.is_empty() {
        record_drilldowns(store, range, now, &run.to_request, &mut pairs).await?;
    }
    Ok(ReconciliationReport {
        range,
        generated_at: now,
        pairs,
    })
}

/// The stored summaries grouped by period.
fn stored_parts(stored: Vec<SummaryRecord>) -> Result<ByPeriod, MonitorError> {
    let mut by_period = ByPeriod::new();
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
    Ok(by_period)
}

/// Adds the gateway's own summary of every closed period of `range` in
/// which its log has records.
async fn add_gateway_parts(
    by_period: &mut ByPeriod,
    glog: &GatewayLog,
    cfg: &MonitoringConfig,
    range: Period,
    now: DateTime<Utc>,
) -> Result<(), MonitorError> {
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
    Ok(())
}

/// The drill-down requests of the range, answered or not.
fn answers_of(drills: &[DrilldownRecord]) -> Result<Answers, MonitorError> {
    let mut answers = Answers::new();
    for d in drills {
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
    Ok(answers)
}

/// The (provider member, consumer member) pairs that have buckets in a
/// period's summaries.
fn pairs_in(parts: &[Part]) -> BTreeSet<(MemberId, MemberId)> {
    let mut pair_set = BTreeSet::new();
    for part in parts {
        for b in &part.summary.buckets {
            pair_set.insert((
                b.key.service.member().clone(),
                b.key.client.member().clone(),
            ));
        }
    }
    pair_set
}

/// The provider-side and consumer-facing summaries of the pair `pm`–`cm`,
/// each restricted to the pair's buckets.
fn split_sides(parts: &[Part], pm: &MemberId, cm: &MemberId) -> (Sourced, Sourced) {
    let keep = |k: &BucketKey| k.service.member() == pm && k.client.member() == cm;
    let mut prov: Sourced = Vec::new();
    let mut cons: Sourced = Vec::new();
    for part in parts {
        let owner = match &part.source {
            Source::Node { member, .. } | Source::Member { member } => Some(member),
            Source::Gateway => None,
        };
        let (list, wanted_owner) = match part.summary.side {
            Side::Provider => (&mut prov, Some(pm)),
            Side::Consumer => (&mut cons, Some(cm)),
            Side::Gateway => (&mut cons, None),
        };
        if owner != wanted_owner {
            continue;
        }
        let mut s = part.summary.clone();
        s.retain(keep);
        list.push((part.source.clone(), s));
    }
    (prov, cons)
}

/// The summaries of one side merged into one.
fn merged(
    list: &[(Source, Summary)],
    side: Side,
    period: Period,
) -> Result<Summary, ReconcileError> {
    let mut m = Summary {
        side,
        period,
        buckets: Vec::new(),
    };
    for (_, s) in list {
        m.merge(s)?;
    }
    Ok(m)
}

/// The report naming the differing transactions, from the ids of every
/// differing bucket.
fn named_differences(cmp: &Comparison, fetched: &Fetched) -> Result<Report, MonitorError> {
    let provider_side = cmp.provider_side;
    drill_down(cmp, |side, key| {
        let ids = fetched
            .get(&(side == provider_side, key.clone()))
            .cloned()
            .unwrap_or_default();
        Ok::<_, std::convert::Infallible>(ids)
    })
    .map_err(|e| MonitorError::Corrupt(e.to_string()))
}

/// What one reconciliation reads once and shares between its pairs, and
/// the drill-down requests it collects.
struct Run<'a> {
    gateway_log: Option<&'a GatewayLog>,
    /// The admitted nodes of each member: who should have uploaded.
    nodes_of: BTreeMap<MemberId, Vec<NodeName>>,
    answers: Answers,
    /// Requests to record, in the order of the placeholders (nil ids) in
    /// the pairs' `pending_drilldowns`.
    to_request: Vec<NewDrilldown>,
}

impl Run<'_> {
    /// The report of the pair `pm`–`cm` in `period`.
    async fn pair_report(
        &mut self,
        period: Period,
        parts: &[Part],
        pm: MemberId,
        cm: MemberId,
    ) -> Result<PairReport, MonitorError> {
        let (prov, cons) = split_sides(parts, &pm, &cm);
        let missing = self.missing_summaries(&pm, &cm, &prov, &cons);
        let mut pr = PairReport {
            period,
            provider: pm,
            consumer: cm,
            provider_sources: prov.iter().map(|(s, _)| s.clone()).collect(),
            consumer_sources: cons.iter().map(|(s, _)| s.clone()).collect(),
            state: PairState::Incomplete,
            missing,
            pending_drilldowns: Vec::new(),
            report: None,
        };
        if !pr.missing.is_empty() {
            return Ok(pr);
        }
        let consumer_side = if cons.iter().any(|(s, _)| s != &Source::Gateway) {
            Side::Consumer
        } else {
            Side::Gateway
        };
        let p_sum = merged(&prov, Side::Provider, period)?;
        let c_sum = merged(&cons, consumer_side, period)?;
        let cmp = compare(&p_sum, &c_sum)?;
        let (fetched, pending) = self.differing_ids(period, &cmp, &prov, &cons).await?;
        if pending.is_empty() {
            let report = named_differences(&cmp, &fetched)?;
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
        Ok(pr)
    }

    /// The summaries the pair still lacks: one from each node of both
    /// members (or the provider member's own), and a consumer-facing one.
    fn missing_summaries(
        &self,
        pm: &MemberId,
        cm: &MemberId,
        prov: &[(Source, Summary)],
        cons: &[(Source, Summary)],
    ) -> Vec<String> {
        let mut missing = Vec::new();
        let have = |list: &[(Source, Summary)], want: &Source| list.iter().any(|(s, _)| s == want);
        match self.nodes_of.get(pm) {
            Some(ns) => {
                for n in ns {
                    let want = source_of(pm, Some(n));
                    if !have(prov, &want) {
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
        if let Some(ns) = self.nodes_of.get(cm) {
            for n in ns {
                let want = source_of(cm, Some(n));
                if !have(cons, &want) {
                    missing.push(format!("consumer summary of {want}"));
                }
            }
        }
        if cons.is_empty() && missing.is_empty() {
            missing.push(format!(
                "a consumer-facing summary for member {cm} (its node's, or the gateway's log)"
            ));
        }
        missing
    }

    /// The transaction ids of every differing bucket on both sides: read
    /// from the gateway's log, or taken from the drill-down answers. A
    /// bucket whose answer is awaited adds its request's id to the pending
    /// list; one never asked for is queued (a nil id until recorded).
    async fn differing_ids(
        &mut self,
        period: Period,
        cmp: &Comparison,
        prov: &[(Source, Summary)],
        cons: &[(Source, Summary)],
    ) -> Result<(Fetched, Vec<Uuid>), MonitorError> {
        let mut fetched = Fetched::new();
        let mut pending = Vec::new();
        for d in &cmp.differing {
            let bucket_json =
                serde_json::to_string(&d.key).map_err(|e| MonitorError::Corrupt(e.to_string()))?;
            for (is_provider, list) in [(true, prov), (false, cons)] {
                for (src, s) in list {
                    if !s.buckets.iter().any(|b| b.key == d.key) {
                        continue;
                    }
                    let ids = match src {
                        Source::Gateway => match self.gateway_log {
                            Some(glog) => {
                                bucket_ids_from_log(glog.pool(), period, Side::Gateway, &d.key)
                                    .await?
                            }
                            None => Vec::new(),
                        },
                        Source::Node { member, node } => {
                            let at = (src, member, Some(node), s.side, period);
                            match self.answered(at, &bucket_json, &mut pending) {
                                Some(ids) => ids,
                                None => continue,
                            }
                        }
                        Source::Member { member } => {
                            let at = (src, member, None, s.side, period);
                            match self.answered(at, &bucket_json, &mut pending) {
                                Some(ids) => ids,
                                None => continue,
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
        Ok((fetched, pending))
    }

    /// The answered ids of a node's or member's bucket; `None` (with the
    /// request's id, or a nil placeholder for a new request, in `pending`)
    /// while no answer is in.
    fn answered(
        &mut self,
        (src, member, node, side, period): (&Source, &MemberId, Option<&NodeName>, Side, Period),
        bucket_json: &str,
        pending: &mut Vec<Uuid>,
    ) -> Option<Vec<TransactionId>> {
        let key = (src.clone(), side, period.start(), bucket_json.to_string());
        match self.answers.get(&key) {
            Some((_, Some(ids))) => Some(ids.clone()),
            Some((id, None)) => {
                pending.push(*id);
                None
            }
            None => {
                self.to_request.push(NewDrilldown {
                    member: member.clone(),
                    node: node.cloned(),
                    side: side_name(side).into(),
                    period_start: period.start(),
                    period_end: period.end(),
                    bucket: bucket_json.to_string(),
                });
                pending.push(Uuid::nil());
                None
            }
        }
    }
}

/// Records the queued drill-down requests and puts their ids in place of
/// the pairs' nil placeholders, in order.
async fn record_drilldowns(
    store: &dyn RegistryStore,
    range: Period,
    now: DateTime<Utc>,
    to_request: &[NewDrilldown],
    pairs: &mut [PairReport],
) -> Result<(), MonitorError> {
    store.request_drilldowns(to_request, now).await?;
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
    for p in pairs {
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
    Ok(())
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
