//! What applying a file would do: [`Plan`], the list of [`Change`]s
//! between the registry (as [`super::Current`]) and the file, in the order
//! they are applied.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Display;

use ndxp_core::{MemberId, ServiceId, SubsystemId};
use ndxp_registry::model::{Grantee, ServiceUpdate, SubscriptionState};
use ndxp_registry::store::gateway::{GatewayServiceState, GatewaySettingsUpdate};
use serde::Serialize;
use uuid::Uuid;

use super::format::{
    CatalogFile, GatewayServiceEntry, GroupEntry, MemberEntry, ServiceEntry, SubscriptionEntry,
    WantedSubscription,
};
use super::{CatalogError, Current};

/// Whether a change adds, changes or removes an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// The object is in the file, not in the registry.
    Add,
    /// It is in both, with different values.
    Change,
    /// It is in the registry, not in the file (applied with `--prune`).
    Remove,
}

/// One change, for people (`op`, `kind`, `id`, `details`) and for the
/// apply (`step`, not shown).
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Add, change or remove.
    pub op: Op,
    /// Kind of object: `member`, `subsystem`, `group`, `service`,
    /// `access`, `gateway_service` or `subscription`.
    pub kind: &'static str,
    /// Its key (for an access right `service -> grantee`, for a
    /// subscription `client -> service`).
    pub id: String,
    /// What changes, one item per field (`name: "A" -> "B"`).
    pub details: Vec<String>,
    #[serde(skip)]
    pub(super) step: Step,
}

/// What the apply does for a change.
#[derive(Debug, Clone)]
pub(super) enum Step {
    AddMember(MemberId, String),
    RenameMember(MemberId, String),
    RemoveMember(MemberId),
    AddSubsystem(SubsystemId),
    RemoveSubsystem(SubsystemId),
    AddGroup(String, String, Vec<SubsystemId>),
    DescribeGroup(String, String),
    RemoveGroup(String),
    GroupMembers {
        code: String,
        add: Vec<SubsystemId>,
        remove: Vec<SubsystemId>,
    },
    AddService(ServiceEntry),
    UpdateService(ServiceId, ServiceUpdate),
    RemoveService(ServiceId),
    Grant(ServiceId, Grantee),
    Revoke(ServiceId, Grantee),
    AddGatewayService(GatewayServiceEntry),
    UpdateGatewayService {
        id: ServiceId,
        update: Option<GatewaySettingsUpdate>,
        state: Option<GatewayServiceState>,
    },
    Subscribe(SubscriptionEntry),
    UpdateSubscription {
        id: Uuid,
        approve: bool,
        limits: Option<SubscriptionEntry>,
    },
    Cancel(Uuid),
}

/// Every change, in the order of the apply: removals first (dependants
/// before what they depend on), then additions and changes (what others
/// depend on first).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    /// The changes.
    pub changes: Vec<Change>,
    /// Objects in the registry but not in the file that are kept because
    /// the plan was made without `--prune` (`kind id`).
    pub kept: Vec<String>,
}

impl Plan {
    /// Whether applying changes nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// How many changes of `op`.
    pub fn count(&self, op: Op) -> usize {
        self.changes.iter().filter(|c| c.op == op).count()
    }

    /// The plan for people: one line per change (`+` add, `~` change,
    /// `-` remove) with its details indented, then a summary line.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.changes {
            let sign = match c.op {
                Op::Add => '+',
                Op::Change => '~',
                Op::Remove => '-',
            };
            out.push_str(&format!("{sign} {} {}\n", c.kind, c.id));
            for d in &c.details {
                out.push_str(&format!("    {d}\n"));
            }
        }
        if !self.kept.is_empty() {
            out.push_str(&format!(
                "{} object(s) of the registry are not in the file and are kept (--prune removes \
                 them):\n",
                self.kept.len()
            ));
            for k in &self.kept {
                out.push_str(&format!("    {k}\n"));
            }
        }
        if self.is_empty() {
            out.push_str("no changes\n");
        } else {
            out.push_str(&format!(
                "{} to add, {} to change, {} to remove\n",
                self.count(Op::Add),
                self.count(Op::Change),
                self.count(Op::Remove)
            ));
        }
        out
    }

    fn push(&mut self, op: Op, kind: &'static str, id: impl Display, step: Step) -> &mut Change {
        self.changes.push(Change {
            op,
            kind,
            id: id.to_string(),
            details: Vec::new(),
            step,
        });
        let last = self.changes.len() - 1;
        &mut self.changes[last]
    }
}

fn shown<T: std::fmt::Debug>(v: &Option<T>) -> String {
    v.as_ref()
        .map_or_else(|| "none".into(), |v| format!("{v:?}"))
}

/// The plan that makes `current` into `want`. With `prune`, objects absent
/// from `want` are removed; otherwise they are listed in [`Plan::kept`].
///
/// # Errors
/// [`CatalogError::Conflict`] when the file asks for a change the
/// lifecycle forbids (a published gateway service back to `registered`,
/// an approved subscription back to `requested`).
pub(super) fn plan(
    current: &Current,
    want: &CatalogFile,
    prune: bool,
) -> Result<Plan, CatalogError> {
    let have = &current.file;
    let mut p = Plan::default();
    removals(current, want, prune, &mut p);

    // Members.
    let had: BTreeMap<_, _> = have.members.iter().map(|m| (m.id.get_ref(), m)).collect();
    for m in &want.members {
        let MemberEntry { id, name } = m;
        match had.get(id.get_ref()) {
            None => {
                let c = p.push(
                    Op::Add,
                    "member",
                    id.get_ref(),
                    Step::AddMember(id.get_ref().clone(), name.clone()),
                );
                c.details.push(format!("name: {name:?}"));
            }
            Some(old) if old.name != name.trim() => {
                let c = p.push(
                    Op::Change,
                    "member",
                    id.get_ref(),
                    Step::RenameMember(id.get_ref().clone(), name.clone()),
                );
                c.details.push(format!("name: {:?} -> {name:?}", old.name));
            }
            Some(_) => {}
        }
    }
    let had: BTreeSet<_> = have.subsystems.iter().map(|s| s.id.get_ref()).collect();
    for s in &want.subsystems {
        if !had.contains(s.id.get_ref()) {
            p.push(
                Op::Add,
                "subsystem",
                s.id.get_ref(),
                Step::AddSubsystem(s.id.get_ref().clone()),
            );
        }
    }
    // Groups (membership is part of the group). A subsystem that the
    // prune removes leaves its groups with it.
    let wanted_subsystems: BTreeSet<_> = want.subsystems.iter().map(|s| s.id.get_ref()).collect();
    let had: BTreeMap<_, _> = have.groups.iter().map(|g| (g.code.get_ref(), g)).collect();
    for g in &want.groups {
        let GroupEntry {
            code,
            description,
            members,
        } = g;
        let code = code.get_ref();
        let Some(old) = had.get(code) else {
            let c = p.push(
                Op::Add,
                "group",
                code,
                Step::AddGroup(code.clone(), description.clone(), members.clone()),
            );
            c.details.push(format!("description: {description:?}"));
            c.details
                .extend(members.iter().map(|s| format!("member + {s}")));
            continue;
        };
        if old.description != *description {
            let c = p.push(
                Op::Change,
                "group",
                code,
                Step::DescribeGroup(code.clone(), description.clone()),
            );
            c.details.push(format!(
                "description: {:?} -> {description:?}",
                old.description
            ));
        }
        let old_members: BTreeSet<&SubsystemId> = old.members.iter().collect();
        let new_members: BTreeSet<&SubsystemId> = members.iter().collect();
        let add: Vec<SubsystemId> = new_members
            .difference(&old_members)
            .map(|s| (*s).clone())
            .collect();
        let remove: Vec<SubsystemId> = old_members
            .difference(&new_members)
            .filter(|s| !prune || wanted_subsystems.contains(*s))
            .map(|s| (*s).clone())
            .collect();
        if !add.is_empty() || !remove.is_empty() {
            let mut details: Vec<String> = add.iter().map(|s| format!("member + {s}")).collect();
            details.extend(remove.iter().map(|s| format!("member - {s}")));
            let c = p.push(
                Op::Change,
                "group",
                code,
                Step::GroupMembers {
                    code: code.clone(),
                    add,
                    remove,
                },
            );
            c.details = details;
        }
    }
    // Services.
    let had: BTreeMap<_, _> = have.services.iter().map(|s| (s.id.get_ref(), s)).collect();
    for s in &want.services {
        let id = s.id.get_ref();
        match had.get(id) {
            None => {
                let c = p.push(Op::Add, "service", id, Step::AddService(s.clone()));
                c.details.push(format!("description: {:?}", s.description));
                if s.openapi.is_some() {
                    c.details.push("openapi: set".into());
                }
                if let Some(t) = s.deprecated_at {
                    c.details.push(format!("deprecated_at: {t:?}"));
                }
                if let Some(t) = s.sunset_at {
                    c.details.push(format!("sunset_at: {t:?}"));
                }
            }
            Some(old) => {
                let mut update = ServiceUpdate::default();
                let mut details = Vec::new();
                if old.description != s.description {
                    details.push(format!(
                        "description: {:?} -> {:?}",
                        old.description, s.description
                    ));
                    update.description = Some(s.description.clone());
                }
                if old.openapi != s.openapi {
                    details.push("openapi: changed".into());
                    update.openapi = Some(s.openapi.clone());
                }
                if old.deprecated_at != s.deprecated_at {
                    details.push(format!(
                        "deprecated_at: {} -> {}",
                        shown(&old.deprecated_at),
                        shown(&s.deprecated_at)
                    ));
                    update.deprecated_at = Some(s.deprecated_at);
                }
                if old.sunset_at != s.sunset_at {
                    details.push(format!(
                        "sunset_at: {} -> {}",
                        shown(&old.sunset_at),
                        shown(&s.sunset_at)
                    ));
                    update.sunset_at = Some(s.sunset_at);
                }
                if !details.is_empty() {
                    let c = p.push(
                        Op::Change,
                        "service",
                        id,
                        Step::UpdateService(id.clone(), update),
                    );
                    c.details = details;
                }
            }
        }
    }
    // Access rights.
    let had: BTreeSet<_> = have
        .access
        .iter()
        .filter_map(|a| Some((a.service.get_ref().clone(), a.grantee()?)))
        .collect();
    for a in &want.access {
        let Some(grantee) = a.grantee() else { continue };
        let key = (a.service.get_ref().clone(), grantee);
        if !had.contains(&key) {
            p.push(
                Op::Add,
                "access",
                format!("{} -> {}", key.0, key.1),
                Step::Grant(key.0.clone(), key.1.clone()),
            );
        }
    }
    gateway_services(have, want, &mut p)?;
    subscriptions(current, want, &mut p)?;
    Ok(p)
}

fn gateway_services(
    have: &CatalogFile,
    want: &CatalogFile,
    p: &mut Plan,
) -> Result<(), CatalogError> {
    let had: BTreeMap<_, _> = have
        .gateway_services
        .iter()
        .map(|g| (g.service.get_ref(), g))
        .collect();
    for g in &want.gateway_services {
        let id = g.service.get_ref();
        let Some(old) = had.get(id) else {
            let c = p.push(
                Op::Add,
                "gateway_service",
                id,
                Step::AddGatewayService(g.clone()),
            );
            c.details.push(format!("state: {}", g.state));
            c.details.push(format!("backend_url: {:?}", g.backend_url));
            continue;
        };
        let (a, b) = (old.settings(), g.settings());
        let mut details = Vec::new();
        let mut update = GatewaySettingsUpdate::default();
        macro_rules! field {
            ($f:ident) => {
                if a.$f != b.$f {
                    details.push(format!(
                        concat!(stringify!($f), ": {:?} -> {:?}"),
                        a.$f, b.$f
                    ));
                    update.$f = Some(b.$f.clone());
                }
            };
        }
        field!(backend_url);
        field!(timeout_ms);
        field!(rate_per_sec);
        field!(burst);
        field!(quota_per_day);
        field!(sign_requests);
        field!(verify_responses);
        field!(backend_tls);
        let state = if old.state == g.state {
            None
        } else if old.state.can_become(g.state) {
            details.push(format!("state: {} -> {}", old.state, g.state));
            Some(g.state)
        } else {
            return Err(CatalogError::Conflict(format!(
                "gateway service {id} is {} and cannot become {}",
                old.state, g.state
            )));
        };
        if !details.is_empty() {
            let update = (update != GatewaySettingsUpdate::default()).then_some(update);
            let c = p.push(
                Op::Change,
                "gateway_service",
                id,
                Step::UpdateGatewayService {
                    id: id.clone(),
                    update,
                    state,
                },
            );
            c.details = details;
        }
    }
    Ok(())
}

fn subscriptions(current: &Current, want: &CatalogFile, p: &mut Plan) -> Result<(), CatalogError> {
    let had: BTreeMap<_, _> = current
        .file
        .subscriptions
        .iter()
        .map(|s| ((s.service.get_ref(), &s.client), s))
        .collect();
    for s in &want.subscriptions {
        let key = (s.service.get_ref(), &s.client);
        let id = format!("{} -> {}", s.client, s.service.get_ref());
        let Some(old) = had.get(&key) else {
            let c = p.push(Op::Add, "subscription", &id, Step::Subscribe(s.clone()));
            c.details.push(format!("state: {}", state_name(s.state)));
            continue;
        };
        let mut details = Vec::new();
        let approve = match (old.state, s.state) {
            (a, b) if a == b => false,
            (WantedSubscription::Requested, WantedSubscription::Approved) => {
                details.push("state: requested -> approved".into());
                true
            }
            _ => {
                return Err(CatalogError::Conflict(format!(
                    "subscription {id} is approved and cannot go back to requested (cancel it, \
                     then request it again)"
                )))
            }
        };
        let limits = if old.limits() == s.limits() {
            None
        } else {
            details.push(format!("limits: {:?} -> {:?}", old.limits(), s.limits()));
            Some(s.clone())
        };
        if !details.is_empty() {
            let sub = current
                .subscription_ids
                .get(&(s.service.get_ref().clone(), s.client.clone()))
                .copied()
                .ok_or_else(|| {
                    CatalogError::Conflict(format!("subscription {id} vanished while reading"))
                })?;
            let c = p.push(
                Op::Change,
                "subscription",
                &id,
                Step::UpdateSubscription {
                    id: sub,
                    approve,
                    limits,
                },
            );
            c.details = details;
        }
    }
    Ok(())
}

fn state_name(s: WantedSubscription) -> &'static str {
    match s {
        WantedSubscription::Requested => SubscriptionState::Requested.as_str(),
        WantedSubscription::Approved => SubscriptionState::Approved.as_str(),
    }
}

/// Objects of the registry missing from the file: removed (with `prune`)
/// or listed as kept. An object that goes with its owner (a subsystem
/// with its member, ...) is not listed on its own.
fn removals(current: &Current, want: &CatalogFile, prune: bool, p: &mut Plan) {
    let have = &current.file;
    let members: BTreeSet<_> = want.members.iter().map(|m| m.id.get_ref()).collect();
    let subsystems: BTreeSet<_> = want.subsystems.iter().map(|s| s.id.get_ref()).collect();
    let groups: BTreeSet<_> = want.groups.iter().map(|g| g.code.get_ref()).collect();
    let services: BTreeSet<_> = want.services.iter().map(|s| s.id.get_ref()).collect();
    let rights: BTreeSet<_> = want
        .access
        .iter()
        .filter_map(|a| Some((a.service.get_ref(), a.grantee()?)))
        .collect();
    let routed: BTreeSet<_> = want
        .gateway_services
        .iter()
        .map(|g| g.service.get_ref())
        .collect();
    let subscribed: BTreeSet<_> = want
        .subscriptions
        .iter()
        .map(|s| (s.service.get_ref(), &s.client))
        .collect();

    // What goes anyway because its owner goes.
    let member_goes = |m: &MemberId| !members.contains(m);
    let subsystem_goes = |s: &SubsystemId| member_goes(s.member()) || !subsystems.contains(s);
    let service_goes = |s: &ServiceId| subsystem_goes(s.subsystem()) || !services.contains(s);

    let mut found: Vec<(&'static str, String, Step)> = Vec::new();
    for s in &have.subscriptions {
        let (svc, client) = (s.service.get_ref(), &s.client);
        if !subscribed.contains(&(svc, client)) && !service_goes(svc) && !subsystem_goes(client) {
            if let Some(id) = current.subscription_ids.get(&(svc.clone(), client.clone())) {
                found.push((
                    "subscription",
                    format!("{client} -> {svc}"),
                    Step::Cancel(*id),
                ));
            }
        }
    }
    for g in &have.gateway_services {
        let id = g.service.get_ref();
        if !routed.contains(id) && !service_goes(id) && g.state != GatewayServiceState::Withdrawn {
            let step = Step::UpdateGatewayService {
                id: id.clone(),
                update: None,
                state: Some(GatewayServiceState::Withdrawn),
            };
            found.push(("gateway_service", id.to_string(), step));
        }
    }
    for a in &have.access {
        let Some(grantee) = a.grantee() else { continue };
        let svc = a.service.get_ref();
        let grantee_goes = match &grantee {
            Grantee::Subsystem(s) => subsystem_goes(s),
            Grantee::Group(g) => !groups.contains(g),
        };
        if !rights.contains(&(svc, grantee.clone())) && !service_goes(svc) && !grantee_goes {
            found.push((
                "access",
                format!("{svc} -> {grantee}"),
                Step::Revoke(svc.clone(), grantee),
            ));
        }
    }
    for g in &have.groups {
        if !groups.contains(g.code.get_ref()) {
            found.push((
                "group",
                g.code.get_ref().clone(),
                Step::RemoveGroup(g.code.get_ref().clone()),
            ));
        }
    }
    for s in &have.services {
        let id = s.id.get_ref();
        if !services.contains(id) && !subsystem_goes(id.subsystem()) {
            found.push(("service", id.to_string(), Step::RemoveService(id.clone())));
        }
    }
    for s in &have.subsystems {
        let id = s.id.get_ref();
        if !subsystems.contains(id) && !member_goes(id.member()) {
            found.push((
                "subsystem",
                id.to_string(),
                Step::RemoveSubsystem(id.clone()),
            ));
        }
    }
    for m in &have.members {
        let id = m.id.get_ref();
        if !members.contains(id) {
            found.push(("member", id.to_string(), Step::RemoveMember(id.clone())));
        }
    }
    for (kind, id, step) in found {
        if !prune {
            p.kept.push(format!("{kind} {id}"));
            continue;
        }
        let detail = match (&step, kind) {
            (Step::RemoveMember(m), _) => {
                let nodes = current.nodes.get(m).copied().unwrap_or(0);
                Some(format!(
                    "with its subsystems, services, rights, subscriptions and {nodes} node(s)"
                ))
            }
            (Step::RemoveSubsystem(_), _) => {
                Some("with its services, rights and subscriptions".to_string())
            }
            (Step::Cancel(_), _) => Some("cancelled".to_string()),
            (_, "gateway_service") => {
                Some("withdrawn (a gateway service is never deleted)".to_string())
            }
            _ => None,
        };
        let c = p.push(Op::Remove, kind, id, step);
        c.details.extend(detail);
    }
}
