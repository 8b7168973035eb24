//! Storage of the registry: the [`RegistryStore`] trait and its SQL backend
//! for SQLite (embedded default) and PostgreSQL (several processes sharing
//! one database).
//!
//! **Invariants.**
//! - Every write runs in one database transaction that also appends exactly
//!   one [`AuditEntry`] and, except [`RegistryStore::store_conf`], increments
//!   the registry version. A write that fails leaves nothing behind: no
//!   rows, no audit entry, no version change.
//! - Writes are serialised: each one first updates the single
//!   `registry_state` row, so audit ids are gap-free and commit in order,
//!   and existence checks inside a write cannot race another write.
//! - A row that cannot be parsed is reported as [`StoreError::Corrupt`],
//!   never a panic.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ndxp_registry::store::StoreError> {
//! use ndxp_registry::model::Actor;
//! let store = ndxp_registry::store::open("sqlite://registry.db").await?;
//! let member = "VN/GOV/000.00.00.H29".parse().map_err(|e| {
//!     ndxp_registry::store::StoreError::Invalid(format!("{e}"))
//! })?;
//! store.add_member(&member, "Bộ Công an", &Actor::cli("root")).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use async_trait::async_trait;
use ndxp_core::{MemberId, NodeName, ServiceId, SubsystemId};
use uuid::Uuid;

use crate::model::{
    AccessRight, Actor, AuditEntry, Credential, CredentialKind, Grantee, Group, Member,
    NewRegistration, Node, RegistrationRequest, RegistrationState, RegistrySnapshot, Service,
    ServiceUpdate, StoredConf, Subscription, SubscriptionState, Subsystem,
};

pub mod monitoring;
mod sql;

pub use monitoring::MonitoringStore;
pub mod gateway;
pub use sql::{SqlStore, SqlTransaction, StoreOptions, SCHEMA_VERSION};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The object does not exist.
    #[error("{what} {id} does not exist")]
    NotFound {
        /// Kind of object, e.g. `member`.
        what: &'static str,
        /// Its identifier.
        id: String,
    },
    /// An object with that identifier (or unique key) already exists.
    #[error("{what} {id} already exists")]
    AlreadyExists {
        /// Kind of object.
        what: &'static str,
        /// The conflicting identifier.
        id: String,
    },
    /// The object is not in a state that allows the change.
    #[error("{what} cannot go from {from} to {to}")]
    InvalidTransition {
        /// Which object, e.g. `subscription 0190...`.
        what: String,
        /// Its current state.
        from: String,
        /// The state asked for.
        to: String,
    },
    /// The request refers to something that does not exist, or carries a
    /// malformed value; the message says what to fix.
    #[error("{0}")]
    Invalid(String),
    /// The database URL is not one this store understands.
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH, sqlite:PATH or postgres://USER@HOST/DB"
    )]
    UnsupportedUrl(String),
    /// The database could not be opened or is not a registry database.
    #[error("cannot open the registry database {target}: {source}")]
    Open {
        /// The URL, with any password removed.
        target: String,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The SQLite database file could not be created private, or group or
    /// others can read it.
    #[error("the registry database file cannot be used: {0}")]
    DatabaseFile(#[source] ndxp_db::FileModeError),
    /// Applying the schema migrations failed.
    #[error("cannot apply the registry schema migrations: {0}")]
    Migration(#[source] sqlx::migrate::MigrateError),
    /// The database reported an error.
    #[error("registry database error: {0}")]
    Database(#[source] sqlx::Error),
    /// A stored row could not be read back (damaged or edited by hand).
    #[error("corrupt registry data in {what}: {detail}")]
    Corrupt {
        /// Where (table and column).
        what: String,
        /// What is wrong with it.
        detail: String,
    },
}

/// Filters for [`RegistryStore::list_subscriptions`]; `None` matches all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscriptionFilter {
    /// Only subscriptions to this service.
    pub service: Option<ServiceId>,
    /// Only subscriptions of this client subsystem.
    pub client: Option<SubsystemId>,
    /// Only subscriptions to services of this provider subsystem.
    pub provider: Option<SubsystemId>,
    /// Only subscriptions in this state.
    pub state: Option<SubscriptionState>,
}

/// Result alias of this module.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the management role reads and writes. Every write takes the
/// [`Actor`] that performs it and is atomic and audited (see the module docs).
/// The monitoring records of the supertrait [`MonitoringStore`] are the
/// exception: operational, neither audited nor versioned.
#[async_trait]
pub trait RegistryStore: MonitoringStore + Send + Sync {
    // ---- members ----
    /// Adds a member. `AlreadyExists` if the id is taken.
    async fn add_member(&self, id: &MemberId, name: &str, actor: &Actor) -> Result<Member>;
    /// Changes a member's name; `NotFound` if absent.
    async fn rename_member(&self, id: &MemberId, name: &str, actor: &Actor) -> Result<Member>;
    /// One member; `NotFound` if absent.
    async fn get_member(&self, id: &MemberId) -> Result<Member>;
    /// All members, sorted by id.
    async fn list_members(&self) -> Result<Vec<Member>>;
    /// Removes a member with its subsystems, nodes, services, access rights
    /// granted to or by its subsystems, subscriptions and pending
    /// registration requests; revokes its credentials. One transaction.
    async fn remove_member(&self, id: &MemberId, actor: &Actor) -> Result<()>;

    // ---- subsystems ----
    /// Adds a subsystem; its member must exist (`Invalid` otherwise).
    async fn add_subsystem(&self, id: &SubsystemId, actor: &Actor) -> Result<Subsystem>;
    /// One subsystem; `NotFound` if absent.
    async fn get_subsystem(&self, id: &SubsystemId) -> Result<Subsystem>;
    /// Subsystems, of one member or all, sorted by id.
    async fn list_subsystems(&self, member: Option<&MemberId>) -> Result<Vec<Subsystem>>;
    /// Removes a subsystem with its services, the access rights granted to
    /// or by it, its group memberships and subscriptions.
    async fn remove_subsystem(&self, id: &SubsystemId, actor: &Actor) -> Result<()>;

    // ---- nodes (created by approve_registration only) ----
    /// Nodes, of one member or all, sorted by member and name.
    async fn list_nodes(&self, member: Option<&MemberId>) -> Result<Vec<Node>>;
    /// One node; `NotFound` if absent.
    async fn get_node(&self, member: &MemberId, name: &NodeName) -> Result<Node>;
    /// Removes a node; it disappears from the next global configuration.
    async fn remove_node(&self, member: &MemberId, name: &NodeName, actor: &Actor) -> Result<()>;
    /// Removes one authentication certificate (by its SHA-256, lowercase
    /// hex) from a node that holds several; the next global configuration
    /// lists only the others. `NotFound` if the node does not hold it,
    /// `InvalidTransition` if it is the node's only one.
    async fn remove_node_certificate(
        &self,
        member: &MemberId,
        name: &NodeName,
        auth_cert_sha256: &str,
        actor: &Actor,
    ) -> Result<Node>;

    // ---- node registration requests ----
    /// Records a registration request (its signature already verified by
    /// the caller). When the member already has a node of that name the
    /// request is of kind [`RegistrationKind::AddCertificate`] (a
    /// certificate rotation; the address must be the node's), otherwise of
    /// kind [`RegistrationKind::Node`], which needs a non-empty
    /// `signed_request`. Refused when a pending request for the same
    /// member and node exists or when the certificate is already a node's;
    /// the fingerprint must match the certificate.
    ///
    /// [`RegistrationKind::AddCertificate`]: crate::model::RegistrationKind::AddCertificate
    /// [`RegistrationKind::Node`]: crate::model::RegistrationKind::Node
    async fn submit_registration(
        &self,
        request: &NewRegistration,
        actor: &Actor,
    ) -> Result<RegistrationRequest>;
    /// Requests, in one state or all, oldest first.
    async fn list_registrations(
        &self,
        state: Option<RegistrationState>,
    ) -> Result<Vec<RegistrationRequest>>;
    /// One request; `NotFound` if absent.
    async fn get_registration(&self, id: Uuid) -> Result<RegistrationRequest>;
    /// Approves a pending request, atomically: creates its node, or for an
    /// `add_certificate` request adds the certificate to the existing node
    /// (which becomes its newest). The member must exist.
    async fn approve_registration(&self, id: Uuid, actor: &Actor) -> Result<Node>;
    /// Rejects a pending request with a reason.
    async fn reject_registration(
        &self,
        id: Uuid,
        reason: &str,
        actor: &Actor,
    ) -> Result<RegistrationRequest>;

    // ---- services ----
    /// Adds a service; its provider subsystem must exist. `openapi`, when
    /// given, must be a JSON document.
    async fn add_service(
        &self,
        id: &ServiceId,
        description: &str,
        openapi: Option<&str>,
        actor: &Actor,
    ) -> Result<Service>;
    /// One service; `NotFound` if absent.
    async fn get_service(&self, id: &ServiceId) -> Result<Service>;
    /// Services, of one provider subsystem or all, sorted by id.
    async fn list_services(&self, provider: Option<&SubsystemId>) -> Result<Vec<Service>>;
    /// Changes description, OpenAPI document, deprecation or sunset.
    async fn update_service(
        &self,
        id: &ServiceId,
        update: &ServiceUpdate,
        actor: &Actor,
    ) -> Result<Service>;
    /// Removes a service with its access rights and subscriptions.
    async fn remove_service(&self, id: &ServiceId, actor: &Actor) -> Result<()>;

    // ---- groups ----
    /// Adds an empty group; the code follows the identifier segment rule.
    async fn add_group(&self, code: &str, description: &str, actor: &Actor) -> Result<Group>;
    /// Changes a group's description; `NotFound` if absent.
    async fn describe_group(&self, code: &str, description: &str, actor: &Actor) -> Result<Group>;
    /// One group with its members; `NotFound` if absent.
    async fn get_group(&self, code: &str) -> Result<Group>;
    /// All groups, sorted by code.
    async fn list_groups(&self) -> Result<Vec<Group>>;
    /// Removes a group and the access rights granted to it.
    async fn remove_group(&self, code: &str, actor: &Actor) -> Result<()>;
    /// Puts an existing subsystem in a group.
    async fn add_group_member(
        &self,
        code: &str,
        subsystem: &SubsystemId,
        actor: &Actor,
    ) -> Result<Group>;
    /// Takes a subsystem out of a group.
    async fn remove_group_member(
        &self,
        code: &str,
        subsystem: &SubsystemId,
        actor: &Actor,
    ) -> Result<Group>;

    // ---- access rights ----
    /// Grants a service to a subsystem or group; both must exist.
    async fn grant_access(
        &self,
        service: &ServiceId,
        grantee: &Grantee,
        actor: &Actor,
    ) -> Result<AccessRight>;
    /// Revokes a grant; `NotFound` if there is none.
    async fn revoke_access(
        &self,
        service: &ServiceId,
        grantee: &Grantee,
        actor: &Actor,
    ) -> Result<()>;
    /// Access rights, of one service or all, sorted by service and grantee.
    async fn list_access_rights(&self, service: Option<&ServiceId>) -> Result<Vec<AccessRight>>;

    // ---- subscriptions (centralized model) ----
    /// A client asks for a service; both must exist, and the client must
    /// not already hold a requested or approved subscription to it.
    async fn request_subscription(
        &self,
        service: &ServiceId,
        client: &SubsystemId,
        note: Option<&str>,
        actor: &Actor,
    ) -> Result<Subscription>;
    /// One subscription with its history; `NotFound` if absent.
    async fn get_subscription(&self, id: Uuid) -> Result<Subscription>;
    /// Subscriptions matching the filter, oldest first.
    async fn list_subscriptions(&self, filter: &SubscriptionFilter) -> Result<Vec<Subscription>>;
    /// Moves a subscription to a new state; `InvalidTransition` unless
    /// [`SubscriptionState::can_become`] allows it.
    async fn transition_subscription(
        &self,
        id: Uuid,
        to: SubscriptionState,
        note: Option<&str>,
        actor: &Actor,
    ) -> Result<Subscription>;

    // ---- credentials ----
    /// Stores a new credential by the SHA-256 of its token (lowercase hex).
    /// A member credential needs an existing member.
    async fn create_credential(
        &self,
        kind: &CredentialKind,
        name: &str,
        token_sha256: &str,
        actor: &Actor,
    ) -> Result<Credential>;
    /// The unrevoked credential with that token hash, if any.
    async fn find_active_credential(&self, token_sha256: &str) -> Result<Option<Credential>>;
    /// All credentials, revoked ones included, oldest first.
    async fn list_credentials(&self) -> Result<Vec<Credential>>;
    /// Revokes a credential; revoking it again is `InvalidTransition`.
    async fn revoke_credential(&self, id: Uuid, actor: &Actor) -> Result<Credential>;

    // ---- audit and versions ----
    /// Audit entries with id greater than `after_id`, oldest first, at most
    /// `limit` of them.
    async fn list_audit(&self, after_id: i64, limit: u32) -> Result<Vec<AuditEntry>>;
    /// The registry version: increases with every write except `store_conf`.
    async fn registry_version(&self) -> Result<i64>;
    /// Everything the global configuration is built from, consistently.
    async fn snapshot(&self) -> Result<RegistrySnapshot>;

    // ---- global configurations ----
    /// Stores a built configuration; `AlreadyExists` if its version was
    /// stored before (so two processes never publish one version twice).
    /// Audited; does not change the registry version.
    async fn store_conf(&self, conf: &StoredConf, actor: &Actor) -> Result<()>;
    /// The configuration with the highest version, if any.
    async fn latest_conf(&self) -> Result<Option<StoredConf>>;
    /// The configuration of one version, if stored.
    async fn conf_by_version(&self, version: i64) -> Result<Option<StoredConf>>;
}

/// Opens (creating if needed) the registry database at `url` and applies
/// pending migrations: `sqlite://PATH` or `sqlite:PATH` (file created when
/// missing, WAL journal, foreign keys on, 5 s busy timeout) or
/// `postgres://...`.
pub async fn open(url: &str) -> Result<Arc<dyn RegistryStore>> {
    Ok(Arc::new(
        SqlStore::open(url, &StoreOptions::default()).await?,
    ))
}
