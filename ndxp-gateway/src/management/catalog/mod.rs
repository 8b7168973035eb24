//! Configuration as code (docs/config-as-code.md): the registry's
//! catalogue as one TOML file, written by [`export`], compared with the
//! registry by [`diff`] and made true by [`apply`] (`ndxp-gateway registry
//! export | diff | apply`).
//!
//! The file holds members, subsystems, groups, services (with their
//! deprecation and sunset), access rights, the central gateway's services
//! and the requested or approved subscriptions with their limits. It does
//! not hold nodes and their certificates (they arrive by signed
//! registration), credentials, tokens and gateway client secrets (never
//! exported), the audit trail, monitoring data or the published global
//! configurations (all history, not configuration).
//!
//! An apply is one registry transaction
//! ([`SqlStore::transaction`]): every change is made through the same
//! service layer as the commands ([`Admin`] for members and subsystems,
//! the store's checked writes for the rest), each appends its audit entry
//! with the operator as actor, and either all commit or none. The file is
//! checked first ([`CatalogFile::parse`]); a file that would change
//! nothing writes nothing. Objects absent from the file are kept unless
//! the apply prunes ([`Options::prune`]).
//!
//! ```no_run
//! # async fn demo(store: &ndxp_registry::store::SqlStore) -> Result<(), ndxp_gateway::management::catalog::CatalogError> {
//! use ndxp_gateway::management::catalog::{self, CatalogFile, Options};
//! use ndxp_registry::model::Actor;
//! let instance = "VN".parse().map_err(|e| catalog::CatalogError::Invalid(format!("{e}")))?;
//! let text = catalog::export(store, &instance).await?.render()?;
//! let file = CatalogFile::parse(&text)?;
//! let outcome = catalog::apply(store, &instance, &file, Options::default(), &Actor::cli("root")).await?;
//! assert!(outcome.plan.is_empty(), "an export applied to its registry changes nothing");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use ndxp_core::{InstanceId, MemberId, ServiceId, SubsystemId};
use ndxp_registry::model::{Actor, SubscriptionState};
use ndxp_registry::store::gateway::GatewayStore;
use ndxp_registry::store::{RegistryStore, SqlStore, StoreError, SubscriptionFilter};
use uuid::Uuid;

use crate::management::registry::{Admin, AdminError};

mod apply;
mod format;
mod plan;

pub use format::{
    AccessEntry, CatalogFile, GatewayServiceEntry, GroupEntry, MemberEntry, ServiceEntry,
    SubscriptionEntry, SubsystemEntry, WantedSubscription, FORMAT_VERSION, MAX_FILE_BYTES,
};
pub use plan::{Change, Op, Plan};

use format::unplaced;

/// Why an export, diff or apply failed. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The file is not valid TOML or not of this format (the message
    /// names the line).
    #[error("{0}")]
    Syntax(String),
    /// A value or reference in the file is wrong (the message names the
    /// line and the object).
    #[error("{0}")]
    Invalid(String),
    /// The file asks for a change the lifecycle of an object forbids.
    #[error("{0}")]
    Conflict(String),
    /// The registry refused one change; the transaction was rolled back.
    #[error("{what}: refused, nothing was applied")]
    Apply {
        /// The change (`+ member VN/GOV/A`).
        what: String,
        /// The refusal.
        #[source]
        source: Box<AdminError>,
    },
    /// The registry could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl CatalogError {
    /// Whether the file is at fault (the command line exits with 64).
    pub fn is_usage(&self) -> bool {
        match self {
            Self::Syntax(_) | Self::Invalid(_) | Self::Conflict(_) => true,
            Self::Apply { source, .. } => {
                source.is_usage()
                    || matches!(
                        **source,
                        AdminError::Store(
                            StoreError::Invalid(_)
                                | StoreError::AlreadyExists { .. }
                                | StoreError::InvalidTransition { .. }
                        )
                    )
            }
            Self::Store(_) => false,
        }
    }
}

/// How to apply.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Remove (cancel, withdraw) what the registry has and the file has
    /// not; without it such objects are kept and listed in [`Plan::kept`].
    pub prune: bool,
    /// Only work out the plan; write nothing.
    pub dry_run: bool,
}

/// What an apply did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The changes (made, unless `applied` is false).
    pub plan: Plan,
    /// Whether they were committed (false for a dry run or an empty plan).
    pub applied: bool,
    /// The registry version after the apply.
    pub version: i64,
}

/// The registry as the planner sees it: the file it would export, plus
/// what the file leaves out but the plan needs.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    file: CatalogFile,
    /// Ids of the requested or approved subscriptions.
    subscription_ids: HashMap<(ServiceId, SubsystemId), Uuid>,
    /// Nodes per member (removing a member removes them).
    nodes: HashMap<MemberId, usize>,
}

/// Reads everything the file holds, sorted.
async fn read(store: &SqlStore, instance: &InstanceId) -> Result<Current, CatalogError> {
    let mut file = CatalogFile::new(instance);
    file.members = store
        .list_members()
        .await?
        .into_iter()
        .map(|m| MemberEntry {
            id: unplaced(m.id),
            name: m.name,
        })
        .collect();
    file.subsystems = store
        .list_subsystems(None)
        .await?
        .into_iter()
        .map(|s| SubsystemEntry { id: unplaced(s.id) })
        .collect();
    file.groups = store
        .list_groups()
        .await?
        .into_iter()
        .map(|g| GroupEntry {
            code: unplaced(g.code),
            description: g.description,
            members: g.members,
        })
        .collect();
    file.services = store
        .list_services(None)
        .await?
        .into_iter()
        .map(|s| ServiceEntry {
            id: unplaced(s.id),
            description: s.description,
            openapi: s.openapi,
            deprecated_at: s.deprecated_at,
            sunset_at: s.sunset_at,
        })
        .collect();
    file.access = store
        .list_access_rights(None)
        .await?
        .into_iter()
        .map(|a| {
            let (subsystem, group) = match a.grantee {
                ndxp_registry::model::Grantee::Subsystem(s) => (Some(s), None),
                ndxp_registry::model::Grantee::Group(g) => (None, Some(g)),
            };
            AccessEntry {
                service: unplaced(a.service),
                subsystem,
                group,
            }
        })
        .collect();
    file.gateway_services = store
        .list_gateway_services(None)
        .await?
        .into_iter()
        .map(|g| GatewayServiceEntry {
            service: unplaced(g.service),
            state: g.state,
            backend_url: g.settings.backend_url,
            timeout_ms: g.settings.timeout_ms,
            rate_per_sec: g.settings.rate_per_sec,
            burst: g.settings.burst,
            quota_per_day: g.settings.quota_per_day,
            sign_requests: g.settings.sign_requests,
            verify_responses: g.settings.verify_responses,
            backend_tls: g.settings.backend_tls,
        })
        .collect();
    let mut subscription_ids = HashMap::new();
    for s in store
        .list_subscriptions(&SubscriptionFilter::default())
        .await?
    {
        let state = match s.state {
            SubscriptionState::Requested => WantedSubscription::Requested,
            SubscriptionState::Approved => WantedSubscription::Approved,
            _ => continue,
        };
        let limits = store.subscription_limits(s.id).await?;
        subscription_ids.insert((s.service.clone(), s.client.clone()), s.id);
        file.subscriptions.push(SubscriptionEntry {
            service: unplaced(s.service),
            client: s.client,
            state,
            rate_per_sec: limits.rate_per_sec,
            burst: limits.burst,
            quota_per_day: limits.quota_per_day,
        });
    }
    let mut nodes = HashMap::new();
    for n in store.list_nodes(None).await? {
        *nodes.entry(n.member).or_insert(0) += 1;
    }
    file.sort();
    Ok(Current {
        file,
        subscription_ids,
        nodes,
    })
}

/// The registry as a file, read consistently (writers wait meanwhile).
///
/// # Errors
/// Store errors.
pub async fn export(store: &SqlStore, instance: &InstanceId) -> Result<CatalogFile, CatalogError> {
    let tx = store.transaction().await?;
    let current = read(store, instance).await;
    tx.rollback().await?;
    Ok(current?.file)
}

fn check_instance(file: &CatalogFile, instance: &InstanceId) -> Result<(), CatalogError> {
    if file.instance != instance.as_str() {
        return Err(CatalogError::Invalid(format!(
            "the file is for instance {}, this registry is instance {instance}",
            file.instance
        )));
    }
    Ok(())
}

/// What [`apply`] would change; writes nothing.
///
/// # Errors
/// As [`apply`].
pub async fn diff(
    store: &SqlStore,
    instance: &InstanceId,
    file: &CatalogFile,
    prune: bool,
) -> Result<Plan, CatalogError> {
    let options = Options {
        prune,
        dry_run: true,
    };
    Ok(apply(store, instance, file, options, &Actor::cli("diff"))
        .await?
        .plan)
}

/// Makes the registry what `file` describes, in one transaction, as
/// `actor` (see the module docs).
///
/// # Errors
/// [`CatalogError::Invalid`] for a file of another instance,
/// [`CatalogError::Conflict`] for a change the lifecycle forbids,
/// [`CatalogError::Apply`] when the registry refuses a change; in every
/// case nothing is written.
pub async fn apply(
    store: &SqlStore,
    instance: &InstanceId,
    file: &CatalogFile,
    options: Options,
    actor: &Actor,
) -> Result<Outcome, CatalogError> {
    check_instance(file, instance)?;
    let tx = store.transaction().await?;
    let current = read(store, instance).await?;
    let plan = plan::plan(&current, file, options.prune)?;
    if options.dry_run || plan.is_empty() {
        tx.rollback().await?;
        return Ok(Outcome {
            plan,
            applied: false,
            version: store.registry_version().await?,
        });
    }
    let store_in_tx: Arc<dyn RegistryStore> = Arc::new(tx.store().clone());
    let admin = Admin::new(store_in_tx, instance.clone(), actor.clone());
    for change in &plan.changes {
        apply::run(tx.store(), &admin, change, actor)
            .await
            .map_err(|source| CatalogError::Apply {
                what: format!("{} {} {}", sign(change.op), change.kind, change.id),
                source: Box::new(source),
            })?;
    }
    tx.commit().await?;
    Ok(Outcome {
        plan,
        applied: true,
        version: store.registry_version().await?,
    })
}

fn sign(op: Op) -> char {
    match op {
        Op::Add => '+',
        Op::Change => '~',
        Op::Remove => '-',
    }
}
