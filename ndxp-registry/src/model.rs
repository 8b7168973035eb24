//! The registry's data model: members, subsystems, nodes, services, groups,
//! access rights, subscriptions, node registration requests, credentials,
//! the audit trail and stored global configurations.
//!
//! These are plain serde types. The [`crate::store::RegistryStore`] trait
//! reads and writes them; the management API serialises them as JSON.
//! Identifiers of platform objects are the strict types of [`ndxp_core::id`];
//! records that have no platform identifier (subscriptions, requests,
//! credentials) carry a [`Uuid`].

use std::fmt;

use chrono::{DateTime, Utc};
use ndxp_core::{MemberId, NodeName, ServiceId, SubsystemId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Gives a state enum its stored names: `as_str`, [`fmt::Display`] and
/// [`std::str::FromStr`] (refusing any other text with [`UnknownState`]), from one
/// `Variant => "name"` table. The names are also the serde names
/// (`rename_all = "snake_case"` on each enum).
macro_rules! state_names {
    ($ty:ident { $($variant:ident => $name:literal),* $(,)? }) => {
        impl $ty {
            /// The name, as stored and serialised.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)*
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::model::UnknownState;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(Self::$variant),)*
                    _ => Err($crate::model::UnknownState(s.to_string())),
                }
            }
        }
    };
}
pub(crate) use state_names;

/// Who performs a write, as recorded in the audit trail: a display string
/// such as `operator:admin`, `member:VN/GOV/000.00.00.H29` or `cli:root`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Actor(String);

impl Actor {
    /// An operator of the management role, by credential name.
    pub fn operator(name: &str) -> Self {
        Self(format!("operator:{name}"))
    }
    /// A member acting through its own credentials.
    pub fn member(member: &MemberId) -> Self {
        Self(format!("member:{member}"))
    }
    /// A person at the command line of the management host (e.g. the OS user).
    pub fn cli(user: &str) -> Self {
        Self(format!("cli:{user}"))
    }
    /// The platform itself (e.g. the global configuration publisher).
    pub fn system(component: &str) -> Self {
        Self(format!("system:{component}"))
    }
    /// Any other free-form actor text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
    /// The display text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member organisation (`instance/class/code`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member identifier, e.g. `VN/GOV/000.00.00.H29`.
    pub id: MemberId,
    /// Human-readable name of the organisation.
    pub name: String,
    /// When the member was added.
    pub created_at: DateTime<Utc>,
}

/// A subsystem (an information system) of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subsystem {
    /// The subsystem identifier; its member is `id.member()`.
    pub id: SubsystemId,
    /// When the subsystem was added.
    pub created_at: DateTime<Utc>,
}

/// A node (DXL node server) of a member. Created only by approving a
/// [`RegistrationRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// The member that runs the node.
    pub member: MemberId,
    /// The node name, unique within the member.
    pub name: NodeName,
    /// The `https://` URL of the node's peer port.
    pub address: String,
    /// The node's newest authentication (TLS) certificate, PEM.
    pub auth_cert_pem: String,
    /// SHA-256 fingerprint of that DER certificate, lowercase hex
    /// (as [`ndxp_sign::cert::fingerprint_sha256`] computes it).
    pub auth_cert_sha256: String,
    /// When the node was admitted.
    pub created_at: DateTime<Utc>,
    /// Every authentication certificate of the node, oldest first; the
    /// newest is the one above. Several during a rotation: peers accept
    /// any of them.
    #[serde(default)]
    pub auth_certs: Vec<NodeCertificate>,
}

/// One authentication (TLS) certificate of a [`Node`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeCertificate {
    /// The certificate, PEM.
    pub auth_cert_pem: String,
    /// SHA-256 fingerprint of the DER certificate, lowercase hex.
    pub auth_cert_sha256: String,
    /// When it was added to the node (approval of its request).
    pub added_at: DateTime<Utc>,
}

impl Node {
    /// The fingerprints of every authentication certificate, oldest first.
    pub fn fingerprints(&self) -> Vec<String> {
        self.auth_certs
            .iter()
            .map(|c| c.auth_cert_sha256.clone())
            .collect()
    }
}

/// A service offered by a provider subsystem (`subsystem/code/version`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Service {
    /// The service identifier; the provider is `id.subsystem()`.
    pub id: ServiceId,
    /// What the service does.
    pub description: String,
    /// The OpenAPI document, JSON text, when one is registered.
    pub openapi: Option<String>,
    /// When the version was (or will be) deprecated.
    pub deprecated_at: Option<DateTime<Utc>>,
    /// When the version stops answering.
    pub sunset_at: Option<DateTime<Utc>>,
    /// When the service was added.
    pub created_at: DateTime<Utc>,
}

/// Fields of a [`Service`] that can be changed; `None` leaves a field as it is.
/// For optional fields, `Some(None)` clears the value. In JSON, an absent
/// key leaves the field alone and `null` clears it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceUpdate {
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// New OpenAPI document (JSON text), or `Some(None)` to remove it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub openapi: Option<Option<String>>,
    /// New deprecation time, or `Some(None)` to clear it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub deprecated_at: Option<Option<DateTime<Utc>>>,
    /// New sunset time, or `Some(None)` to clear it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub sunset_at: Option<Option<DateTime<Utc>>>,
}

/// A key that is present (even as `null`) becomes `Some(..)`.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A named group of subsystems, to grant a service to many clients at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Group {
    /// The group code; follows the identifier segment rule
    /// ([`ndxp_core::id::check_segment`]).
    pub code: String,
    /// What the group is for.
    pub description: String,
    /// Members of the group, sorted.
    pub members: Vec<SubsystemId>,
}

/// Who receives an access right.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grantee {
    /// One client subsystem.
    Subsystem(SubsystemId),
    /// Every subsystem in the named [`Group`].
    Group(String),
}

impl fmt::Display for Grantee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Grantee::Subsystem(s) => write!(f, "subsystem:{s}"),
            Grantee::Group(g) => write!(f, "group:{g}"),
        }
    }
}

/// A provider's grant of a service to a client subsystem or a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRight {
    /// The service granted (its provider subsystem is the grantor).
    pub service: ServiceId,
    /// Who may call it.
    pub grantee: Grantee,
    /// When the right was granted.
    pub granted_at: DateTime<Utc>,
}

/// State of a subscription of the centralized model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionState {
    /// The client asked for the service; waiting for a decision.
    Requested,
    /// The client may call the service.
    Approved,
    /// The request was refused (final).
    Rejected,
    /// The subscription was cancelled (final); takes effect at once.
    Cancelled,
}

state_names!(SubscriptionState {
    Requested => "requested",
    Approved => "approved",
    Rejected => "rejected",
    Cancelled => "cancelled",
});

impl SubscriptionState {
    /// Whether a subscription in this state may move to `to`:
    /// requested → approved | rejected | cancelled, approved → cancelled.
    pub fn can_become(self, to: SubscriptionState) -> bool {
        use SubscriptionState::*;
        matches!(
            (self, to),
            (Requested, Approved)
                | (Requested, Rejected)
                | (Requested, Cancelled)
                | (Approved, Cancelled)
        )
    }
}

/// Text that is not a known state name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown state {0:?}")]
pub struct UnknownState(pub String);

/// One step in a subscription's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionEvent {
    /// The state entered.
    pub state: SubscriptionState,
    /// When.
    pub at: DateTime<Utc>,
    /// Who made the change.
    pub actor: String,
    /// Optional free text (reason of a rejection, ...).
    pub note: Option<String>,
}

/// A client subsystem's subscription to a service (centralized model).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// Record id.
    pub id: Uuid,
    /// The service subscribed to.
    pub service: ServiceId,
    /// The client subsystem.
    pub client: SubsystemId,
    /// The current state (the last event's state).
    pub state: SubscriptionState,
    /// Every state entered, oldest first; the first is `requested`.
    pub history: Vec<SubscriptionEvent>,
}

/// State of a node registration request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationState {
    /// Waiting for the operator.
    Pending,
    /// Approved: the node exists.
    Approved,
    /// Rejected by the operator.
    Rejected,
}

state_names!(RegistrationState {
    Pending => "pending",
    Approved => "approved",
    Rejected => "rejected",
});

/// What a registration request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationKind {
    /// A new node.
    #[default]
    Node,
    /// One more authentication certificate for an existing node of the
    /// same member (a certificate rotation); approving it adds the
    /// certificate and leaves the node's others in place.
    AddCertificate,
}

state_names!(RegistrationKind {
    Node => "node",
    AddCertificate => "add_certificate",
});

/// What a member submits to register a node; the caller has already
/// verified the member's signature over `signed_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewRegistration {
    /// The member that asks.
    pub member: MemberId,
    /// The node name asked for.
    pub node: NodeName,
    /// The `https://` URL of the node's peer port.
    pub address: String,
    /// The node's authentication certificate, PEM.
    pub auth_cert_pem: String,
    /// Its SHA-256 fingerprint, lowercase hex.
    pub auth_cert_sha256: String,
    /// The signed document as received, kept for audit.
    pub signed_request: String,
}

/// A node registration request and its decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationRequest {
    /// Record id.
    pub id: Uuid,
    /// The member that asks.
    pub member: MemberId,
    /// The node name asked for.
    pub node: NodeName,
    /// The `https://` URL of the node's peer port.
    pub address: String,
    /// The node's authentication certificate, PEM.
    pub auth_cert_pem: String,
    /// Its SHA-256 fingerprint, lowercase hex.
    pub auth_cert_sha256: String,
    /// The signed document as received, kept for audit; empty when an
    /// additional certificate was submitted with a bearer token
    /// (`POST /api/v1/nodes/{..}/certificates`).
    pub signed_request: String,
    /// A new node, or one more certificate for an existing node.
    #[serde(default)]
    pub kind: RegistrationKind,
    /// Where the request stands.
    pub state: RegistrationState,
    /// When it was submitted.
    pub submitted_at: DateTime<Utc>,
    /// When it was approved or rejected.
    pub decided_at: Option<DateTime<Utc>>,
    /// Who approved or rejected it.
    pub decided_by: Option<String>,
    /// Reason given with a rejection.
    pub reason: Option<String>,
}

/// Whose credential a bearer token is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// An operator of the management role (full rights).
    Operator,
    /// A member, acting for itself only.
    Member(MemberId),
}

/// A bearer-token credential; only the token's SHA-256 is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Record id.
    pub id: Uuid,
    /// Whose it is.
    pub kind: CredentialKind,
    /// A label (operator name, purpose).
    pub name: String,
    /// SHA-256 of the token, lowercase hex.
    pub token_sha256: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it was revoked; a revoked credential never authenticates.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// One recorded write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Sequence number, strictly increasing in commit order, without gaps.
    pub id: i64,
    /// When.
    pub at: DateTime<Utc>,
    /// Who ([`Actor`] text).
    pub actor: String,
    /// What, e.g. `member.add`.
    pub action: String,
    /// The object acted on, e.g. a member id.
    pub target: String,
    /// Further details (JSON).
    pub detail: serde_json::Value,
}

/// A built (signed) global configuration, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredConf {
    /// Configuration version; unique.
    pub version: i64,
    /// The registry version it was built from.
    pub registry_version: i64,
    /// The signed document, as served.
    pub document: String,
    /// When it was built.
    pub created_at: DateTime<Utc>,
    /// When nodes must stop trusting it.
    pub expires_at: DateTime<Utc>,
}

/// A member with its subsystems (part of a [`RegistrySnapshot`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberEntry {
    /// The member.
    pub member: Member,
    /// Its subsystems, sorted by id.
    pub subsystems: Vec<Subsystem>,
}

/// Everything the global configuration is built from, read in one
/// consistent transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrySnapshot {
    /// The registry version this snapshot reflects.
    pub registry_version: i64,
    /// Members with their subsystems, sorted by id.
    pub members: Vec<MemberEntry>,
    /// Nodes, sorted by member and name.
    pub nodes: Vec<Node>,
    /// Services, sorted by id.
    pub services: Vec<Service>,
    /// Groups with their members, sorted by code.
    pub groups: Vec<Group>,
    /// Access rights, sorted by service and grantee.
    pub access_rights: Vec<AccessRight>,
}
