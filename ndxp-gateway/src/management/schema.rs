//! OpenAPI schemas of the JSON the management API answers with. The
//! registry's model types live in `ndxp-registry` and carry no OpenAPI
//! derive; these mirror their serde form field for field (identifiers are
//! strings in their display form, times RFC 3339, ids UUIDs).
#![allow(dead_code)]

use chrono::{DateTime, Utc};
use utoipa::ToSchema;
use uuid::Uuid;

/// A member organisation.
#[derive(ToSchema)]
#[schema(as = Member)]
pub struct MemberSchema {
    /// `instance/class/code`, e.g. `VN/GOV/000.00.00.H29`.
    id: String,
    /// Name of the organisation.
    name: String,
    /// When it was added.
    created_at: DateTime<Utc>,
}

/// A subsystem of a member.
#[derive(ToSchema)]
#[schema(as = Subsystem)]
pub struct SubsystemSchema {
    /// `instance/class/code/subsystem`.
    id: String,
    /// When it was added.
    created_at: DateTime<Utc>,
}

/// A node of a member.
#[derive(ToSchema)]
#[schema(as = Node)]
pub struct NodeSchema {
    /// The member that runs it.
    member: String,
    /// Its name.
    name: String,
    /// `https://` URL of its peer port.
    address: String,
    /// Its newest authentication certificate, PEM.
    auth_cert_pem: String,
    /// SHA-256 of that certificate (DER), lowercase hex.
    auth_cert_sha256: String,
    /// When it was admitted.
    created_at: DateTime<Utc>,
    /// Every authentication certificate, oldest first (several during a
    /// rotation; peers accept any of them).
    auth_certs: Vec<NodeCertificateSchema>,
}

/// One authentication certificate of a node.
#[derive(ToSchema)]
#[schema(as = NodeCertificate)]
pub struct NodeCertificateSchema {
    /// The certificate, PEM.
    auth_cert_pem: String,
    /// SHA-256 of the certificate (DER), lowercase hex.
    auth_cert_sha256: String,
    /// When it was added to the node.
    added_at: DateTime<Utc>,
}

/// A group of subsystems.
#[derive(ToSchema)]
#[schema(as = Group)]
pub struct GroupSchema {
    /// The group code.
    code: String,
    /// What it is for.
    description: String,
    /// Its subsystems.
    members: Vec<String>,
}

/// Who an access right is granted to: exactly one of the two keys.
#[derive(ToSchema)]
#[schema(as = Grantee)]
pub struct GranteeSchema {
    /// A subsystem id.
    subsystem: Option<String>,
    /// A group code.
    group: Option<String>,
}

/// An access right.
#[derive(ToSchema)]
#[schema(as = AccessRight)]
pub struct AccessRightSchema {
    /// The service.
    service: String,
    /// The grantee.
    grantee: GranteeSchema,
    /// When it was granted.
    granted_at: DateTime<Utc>,
}

/// One step of a subscription's history.
#[derive(ToSchema)]
#[schema(as = SubscriptionEvent)]
pub struct SubscriptionEventSchema {
    /// `requested`, `approved`, `rejected` or `cancelled`.
    state: String,
    /// When.
    at: DateTime<Utc>,
    /// Who.
    actor: String,
    /// Free text.
    note: Option<String>,
}

/// A subscription of a client subsystem to a service.
#[derive(ToSchema)]
#[schema(as = Subscription)]
pub struct SubscriptionSchema {
    /// Record id.
    id: Uuid,
    /// The service.
    service: String,
    /// The client subsystem.
    client: String,
    /// `requested`, `approved`, `rejected` or `cancelled`.
    state: String,
    /// Every state entered, oldest first.
    history: Vec<SubscriptionEventSchema>,
}

/// A node registration request.
#[derive(ToSchema)]
#[schema(as = RegistrationRequest)]
pub struct RegistrationSchema {
    /// Record id.
    id: Uuid,
    /// The member.
    member: String,
    /// The node name.
    node: String,
    /// `https://` URL of the node's peer port.
    address: String,
    /// Authentication certificate, PEM.
    auth_cert_pem: String,
    /// Its SHA-256, lowercase hex.
    auth_cert_sha256: String,
    /// The signed request as received (compact JWS); empty when an
    /// additional certificate was submitted with a bearer token.
    signed_request: String,
    /// `node` (a new node) or `add_certificate` (one more certificate for
    /// an existing node).
    kind: String,
    /// `pending`, `approved` or `rejected`.
    state: String,
    /// When it was submitted.
    submitted_at: DateTime<Utc>,
    /// When it was decided.
    decided_at: Option<DateTime<Utc>>,
    /// Who decided.
    decided_by: Option<String>,
    /// Reason of a rejection.
    reason: Option<String>,
}

/// A bearer-token credential (the token itself is never stored).
#[derive(ToSchema)]
#[schema(as = Credential)]
pub struct CredentialSchema {
    /// Record id.
    id: Uuid,
    /// `"operator"` or `{"member": "VN/GOV/..."}`.
    kind: serde_json::Value,
    /// Label.
    name: String,
    /// SHA-256 of the token, lowercase hex.
    token_sha256: String,
    /// When it was created.
    created_at: DateTime<Utc>,
    /// When it was revoked.
    revoked_at: Option<DateTime<Utc>>,
}

/// A new credential with its token, shown this once.
#[derive(ToSchema)]
#[schema(as = NewCredential)]
pub struct NewCredentialSchema {
    /// The stored credential.
    credential: CredentialSchema,
    /// The bearer token; only its hash is kept.
    token: String,
}

/// One audit entry.
#[derive(ToSchema)]
#[schema(as = AuditEntry)]
pub struct AuditEntrySchema {
    /// Sequence number.
    id: i64,
    /// When.
    at: DateTime<Utc>,
    /// Who (`operator:NAME`, `member:ID`, `cli:USER`, `system:...`).
    actor: String,
    /// What, e.g. `member.add`.
    action: String,
    /// The object.
    target: String,
    /// Details.
    detail: serde_json::Value,
}

/// A page of the audit trail.
#[derive(ToSchema)]
#[schema(as = AuditPage)]
pub struct AuditPageSchema {
    /// Entries, oldest first.
    entries: Vec<AuditEntrySchema>,
    /// Pass as `after` for the next page; absent on the last page.
    next_after: Option<i64>,
}

/// An RFC 9457 problem document (`application/problem+json`).
#[derive(ToSchema)]
#[schema(as = Problem)]
pub struct ProblemSchema {
    /// `urn:ndxp:problem:{name}`.
    r#type: String,
    /// Short summary.
    title: String,
    /// HTTP status.
    status: u16,
    /// Stable code, e.g. `ndxp.access_denied`.
    code: String,
    /// What went wrong.
    detail: Option<String>,
}

/// One check of `GET /api/v1/diagnose`.
#[derive(ToSchema)]
#[schema(as = Check)]
pub struct CheckSchema {
    /// What was checked, e.g. `database` or `backend VN/GOV/.../citizen/v1`.
    name: String,
    /// `ok` or `fail`.
    status: String,
    /// What was found; for a failure, what failed (with the address asked).
    detail: String,
    /// For a failure: what to look at or do.
    hint: Option<String>,
}

/// The report of `GET /api/v1/diagnose` (what `ndxp-gateway diagnose
/// --json` prints).
#[derive(ToSchema)]
#[schema(as = CheckReport)]
pub struct CheckReportSchema {
    /// Whether every check passed.
    ok: bool,
    /// The checks, in order.
    checks: Vec<CheckSchema>,
}
