//! The operator commands of the management role (`ndxp-gateway members`,
//! `subsystems`, `nodes`, `requests`, `tokens`, `conf anchor`), as a library:
//! the binary parses arguments and prints; everything else is here, so
//! tests and other front ends call the same code.
//!
//! [`Admin`] is the registry service of the management role: the command
//! line and the management API's handlers (which build one per request
//! with the caller's actor) both call it, so the checks of an operation
//! live here once; authorization (who may act on which member) stays with
//! each front end.
//!
//! Every write goes through [`RegistryStore`] with the [`Actor`] given to
//! [`Admin::new`], so it is atomic and audited. Identifiers must belong to
//! the configured instance; one that does not is refused before anything
//! is written ([`AdminError::is_usage`]).
//!
//! **Bearer tokens.** [`Admin::create_token`] draws 32 random bytes from
//! OpenSSL, encodes them as unpadded base64url (43 characters) and stores
//! only [`token_sha256`] of that text: the lowercase hex SHA-256 of the
//! token's ASCII bytes, exactly as a client sends it after `Bearer `. The
//! token itself is returned once and never stored.
//!
//! ```no_run
//! # async fn demo(config: &ndxp_gateway::config::GatewayConfig) -> Result<(), ndxp_gateway::management::registry::AdminError> {
//! use ndxp_gateway::management::registry::Admin;
//! use ndxp_registry::model::Actor;
//! let admin = Admin::open(config, Actor::cli("root")).await?;
//! let member = "VN/GOV/000.00.00.H29".parse().map_err(|e| {
//!     ndxp_gateway::management::registry::AdminError::Invalid(format!("{e}"))
//! })?;
//! admin.add_member(&member, "Bộ Công an").await?;
//! print!("{}", ndxp_gateway::management::registry::members_table(&admin.list_members().await?));
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, SecondsFormat, Utc};
use ndxp_core::{InstanceId, MemberId, NodeName, SubsystemId};
use ndxp_registry::globalconf::{ConfAnchor, ConfError};
use ndxp_registry::model::{
    Actor, Credential, CredentialKind, Member, Node, RegistrationRequest, RegistrationState,
    Subsystem,
};
use ndxp_registry::store::{RegistryStore, StoreError};
use ndxp_sign::cert::CertError;
use ndxp_sign::openssl::x509::X509;
use uuid::Uuid;

use crate::config::GatewayConfig;

/// Longest credential or member name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Longest rejection reason accepted, in characters.
pub const MAX_REASON_CHARS: usize = 2000;

/// Number of random bytes in a bearer token.
pub const TOKEN_BYTES: usize = 32;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// An identifier names another instance than the configured one.
    #[error("{what} {id} is not in instance {instance}, the `instance` of the configuration file")]
    WrongInstance {
        /// Which kind of identifier, e.g. `member`.
        what: &'static str,
        /// The identifier given.
        id: String,
        /// The configured instance.
        instance: InstanceId,
    },
    /// An argument is malformed (empty name, control characters, ...).
    #[error("{0}")]
    Invalid(String),
    /// The registry refused the change or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file named in the configuration could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A certificate file named in the configuration is not usable.
    #[error("{path}: {reason}")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// What is wrong, for the operator.
        reason: String,
        /// The parser's error, when there is one.
        #[source]
        source: Option<Box<CertError>>,
    },
    /// The configuration anchor could not be built.
    #[error("cannot build the configuration anchor")]
    Anchor(#[source] ConfError),
    /// An output file could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The random generator failed.
    #[error("cannot generate a random token")]
    Random(#[source] ndxp_sign::openssl::error::ErrorStack),
    /// A rejection was given no reason (or only white space).
    #[error("give a reason for the rejection")]
    NoReason,
}

impl AdminError {
    /// Whether the error is the operator's input (a bad identifier or
    /// argument): the command line exits with status 64 for these.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::WrongInstance { .. } | Self::Invalid(_) | Self::NoReason
        )
    }
}

/// Result alias of this module.
pub type Result<T, E = AdminError> = std::result::Result<T, E>;

/// A freshly created bearer token: the stored credential, and the token
/// itself, which exists nowhere else.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// The stored record (with only the token's hash).
    pub credential: Credential,
    /// The token to hand to its holder; shown once.
    pub token: String,
}

/// The operator's view of the registry, acting as one [`Actor`].
#[derive(Clone)]
pub struct Admin {
    store: Arc<dyn RegistryStore>,
    instance: InstanceId,
    actor: Actor,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("instance", &self.instance)
            .field("actor", &self.actor)
            .finish_non_exhaustive()
    }
}

impl Admin {
    /// Works on `store` for `instance`, recording `actor` in the audit trail.
    pub fn new(store: Arc<dyn RegistryStore>, instance: InstanceId, actor: Actor) -> Self {
        Self {
            store,
            instance,
            actor,
        }
    }

    /// Opens (creating and migrating if needed) the registry database of
    /// `config.storage.url`.
    pub async fn open(config: &GatewayConfig, actor: Actor) -> Result<Self> {
        let store = ndxp_registry::store::open(&config.storage.url).await?;
        Ok(Self::new(store, config.instance.clone(), actor))
    }

    /// The store this works on.
    pub fn store(&self) -> &Arc<dyn RegistryStore> {
        &self.store
    }

    /// The actor recorded for every write.
    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    fn check_member(&self, what: &'static str, member: &MemberId, id: &dyn ToString) -> Result<()> {
        check_instance(&self.instance, what, member, id)
    }

    /// Refuses a member filter of another instance.
    fn check_filter(&self, member: Option<&MemberId>) -> Result<()> {
        member.map_or(Ok(()), |m| self.check_member("member", m, m))
    }

    // ---------------------------------------------------------- members

    /// Adds a member of the configured instance.
    pub async fn add_member(&self, id: &MemberId, name: &str) -> Result<Member> {
        self.check_member("member", id, id)?;
        check_name("member name", name)?;
        Ok(self.store.add_member(id, name.trim(), &self.actor).await?)
    }

    /// Changes the name of a member of the configured instance.
    pub async fn rename_member(&self, id: &MemberId, name: &str) -> Result<Member> {
        self.check_member("member", id, id)?;
        check_name("member name", name)?;
        Ok(self
            .store
            .rename_member(id, name.trim(), &self.actor)
            .await?)
    }

    /// All members, sorted by id.
    pub async fn list_members(&self) -> Result<Vec<Member>> {
        Ok(self.store.list_members().await?)
    }

    /// Removes a member with everything it owns (subsystems, nodes,
    /// services, rights, subscriptions, pending requests) and revokes its
    /// tokens; its nodes disappear from the next global configuration.
    pub async fn remove_member(&self, id: &MemberId) -> Result<()> {
        self.check_member("member", id, id)?;
        Ok(self.store.remove_member(id, &self.actor).await?)
    }

    // ------------------------------------------------------- subsystems

    /// Adds a subsystem; its member must exist.
    pub async fn add_subsystem(&self, id: &SubsystemId) -> Result<Subsystem> {
        self.check_member("subsystem", id.member(), id)?;
        Ok(self.store.add_subsystem(id, &self.actor).await?)
    }

    /// Subsystems of one member or all, sorted by id.
    pub async fn list_subsystems(&self, member: Option<&MemberId>) -> Result<Vec<Subsystem>> {
        self.check_filter(member)?;
        Ok(self.store.list_subsystems(member).await?)
    }

    /// Removes a subsystem with its services, rights and subscriptions.
    pub async fn remove_subsystem(&self, id: &SubsystemId) -> Result<()> {
        self.check_member("subsystem", id.member(), id)?;
        Ok(self.store.remove_subsystem(id, &self.actor).await?)
    }

    // ------------------------------------------------------------ nodes

    /// Nodes of one member or all, sorted by member and name.
    pub async fn list_nodes(&self, member: Option<&MemberId>) -> Result<Vec<Node>> {
        self.check_filter(member)?;
        Ok(self.store.list_nodes(member).await?)
    }

    /// Removes a node: it disappears from the next global configuration,
    /// so peers stop accepting its certificate.
    pub async fn remove_node(&self, member: &MemberId, name: &NodeName) -> Result<()> {
        self.check_member("member", member, member)?;
        Ok(self.store.remove_node(member, name, &self.actor).await?)
    }

    /// Removes one authentication certificate (SHA-256, lowercase hex)
    /// from a node that holds several, at the end of a certificate
    /// rotation: the next global configuration lists only the others, so
    /// peers stop accepting it.
    pub async fn remove_node_certificate(
        &self,
        member: &MemberId,
        name: &NodeName,
        auth_cert_sha256: &str,
    ) -> Result<Node> {
        self.check_member("member", member, member)?;
        let fp = auth_cert_sha256.trim().to_ascii_lowercase();
        Ok(self
            .store
            .remove_node_certificate(member, name, &fp, &self.actor)
            .await?)
    }

    // --------------------------------------------------------- requests

    /// Node registration requests in one state, or all; oldest first.
    pub async fn list_requests(
        &self,
        state: Option<RegistrationState>,
    ) -> Result<Vec<RegistrationRequest>> {
        Ok(self.store.list_registrations(state).await?)
    }

    /// Approves a pending request: its node is created and appears in the
    /// next global configuration.
    pub async fn approve_request(&self, id: Uuid) -> Result<Node> {
        Ok(self.store.approve_registration(id, &self.actor).await?)
    }

    /// Rejects a pending request with a reason the member can read.
    pub async fn reject_request(&self, id: Uuid, reason: &str) -> Result<RegistrationRequest> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(AdminError::NoReason);
        }
        if reason.chars().count() > MAX_REASON_CHARS {
            return Err(AdminError::Invalid(format!(
                "the reason is longer than {MAX_REASON_CHARS} characters"
            )));
        }
        Ok(self
            .store
            .reject_registration(id, reason, &self.actor)
            .await?)
    }

    // ----------------------------------------------------------- tokens

    /// Creates a bearer token for an operator or a member (which must
    /// exist); stores only its hash and returns the token once.
    pub async fn create_token(&self, kind: &CredentialKind, name: &str) -> Result<NewToken> {
        if let CredentialKind::Member(m) = kind {
            self.check_member("member", m, m)?;
        }
        check_name("token name", name)?;
        let token = new_token()?;
        let credential = self
            .store
            .create_credential(kind, name.trim(), &token_sha256(&token), &self.actor)
            .await?;
        Ok(NewToken { credential, token })
    }

    /// All tokens (their records, never the tokens), revoked ones included.
    pub async fn list_tokens(&self) -> Result<Vec<Credential>> {
        Ok(self.store.list_credentials().await?)
    }

    /// Revokes a token; it stops authenticating at once.
    pub async fn revoke_token(&self, id: Uuid) -> Result<Credential> {
        Ok(self.store.revoke_credential(id, &self.actor).await?)
    }
}

/// Refuses the identifier `id` (a `what`, e.g. `member` or `subsystem`)
/// when its `member` is not of `instance`.
pub fn check_instance(
    instance: &InstanceId,
    what: &'static str,
    member: &MemberId,
    id: &dyn ToString,
) -> Result<()> {
    if member.instance() != instance {
        return Err(AdminError::WrongInstance {
            what,
            id: id.to_string(),
            instance: instance.clone(),
        });
    }
    Ok(())
}

/// Refuses an empty name, one longer than [`MAX_NAME_CHARS`] or one with
/// control characters (`what` names it in the message).
pub fn check_name(what: &str, name: &str) -> Result<()> {
    let name = name.trim();
    if name.is_empty() {
        return Err(AdminError::Invalid(format!("the {what} must not be empty")));
    }
    if name.chars().count() > MAX_NAME_CHARS {
        return Err(AdminError::Invalid(format!(
            "the {what} is longer than {MAX_NAME_CHARS} characters"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(AdminError::Invalid(format!(
            "the {what} must not contain control characters (tabs, line breaks)"
        )));
    }
    Ok(())
}

/// A new bearer token (see [`crate::management::auth::generate_token`]).
pub fn new_token() -> Result<String> {
    crate::management::auth::generate_token().map_err(AdminError::Random)
}

pub use crate::management::auth::hash_token as token_sha256;

// --------------------------------------------------------------- anchor

/// The configuration anchor for this platform: its instance, the URL
/// `{public_url}/globalconf`, the `[[globalconf.cas]]` certificates as
/// trust anchors, and the member of the signing certificate as the
/// required signer.
pub fn build_anchor(config: &GatewayConfig, now: DateTime<Utc>) -> Result<ConfAnchor> {
    let mut anchors: Vec<X509> = Vec::new();
    for ca in &config.globalconf.cas {
        let certs = read_certs(&ca.cert)?;
        anchors.extend(certs);
    }
    let signer = signer_member(config)?;
    let url = format!(
        "{}/globalconf",
        config.management.public_url.trim_end_matches('/')
    );
    ConfAnchor::new(config.instance.clone(), url, &anchors, Some(signer), now)
        .map_err(AdminError::Anchor)
}

/// The member of `[globalconf] signing_cert`, with an error that says what
/// is wrong with the file (unlike [`GatewayConfig::signer_member`]).
pub fn signer_member(config: &GatewayConfig) -> Result<MemberId> {
    let path = &config.globalconf.signing_cert;
    let certs = read_certs(path)?;
    let leaf = certs.first().ok_or_else(|| AdminError::Certificate {
        path: path.clone(),
        reason: "holds no certificate".into(),
        source: None,
    })?;
    ndxp_sign::cert::member_of(leaf).map_err(|e| AdminError::Certificate {
        path: path.clone(),
        reason: "is not an NDXP signing certificate of a member (issue it with `pki issue --profile sign`)"
            .into(),
        source: Some(Box::new(e)),
    })
}

fn read_certs(path: &Path) -> Result<Vec<X509>> {
    let pem = std::fs::read(path).map_err(|source| AdminError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let certs = ndxp_sign::cert::read_pem_chain(&pem).map_err(|e| AdminError::Certificate {
        path: path.to_path_buf(),
        reason: "is not a PEM certificate file".into(),
        source: Some(Box::new(e)),
    })?;
    if certs.is_empty() {
        return Err(AdminError::Certificate {
            path: path.to_path_buf(),
            reason: "holds no certificate".into(),
            source: None,
        });
    }
    Ok(certs)
}

/// Writes an anchor as JSON to `path`, replacing it whole: the text goes
/// to a temporary file in the same directory, which is then renamed, so a
/// reader never sees a partial anchor.
pub fn write_anchor(anchor: &ConfAnchor, path: &Path) -> Result<()> {
    let json = anchor.to_json().map_err(AdminError::Anchor)?;
    write_atomic(path, json.as_bytes())
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    let err = |source| AdminError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| AdminError::Invalid(format!("{} does not name a file", path.display())))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        Uuid::now_v7().simple()
    ));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(err(e));
    }
    Ok(())
}

// ------------------------------------------------------------- tables

/// A text table of `items`, one `row` each, in the command lines' one
/// style ([`ndxp_core::table`]).
fn table<T>(headers: &[&str], items: &[T], row: impl Fn(&T) -> Vec<String>) -> String {
    let mut table = ndxp_core::table::Table::new(headers.iter().copied());
    for item in items {
        table.row(row(item));
    }
    table.to_string()
}

fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn opt_time(t: &Option<DateTime<Utc>>) -> String {
    t.as_ref().map_or_else(|| "-".to_string(), time)
}

fn or_dash(s: &Option<String>) -> String {
    s.clone().unwrap_or_else(|| "-".to_string())
}

/// Members as a table: `ID NAME CREATED`.
pub fn members_table(members: &[Member]) -> String {
    table(&["ID", "NAME", "CREATED"], members, |m| {
        vec![m.id.to_string(), m.name.clone(), time(&m.created_at)]
    })
}

/// Subsystems as a table: `ID CREATED`.
pub fn subsystems_table(subsystems: &[Subsystem]) -> String {
    table(&["ID", "CREATED"], subsystems, |s| {
        vec![s.id.to_string(), time(&s.created_at)]
    })
}

/// Nodes as a table: `MEMBER NAME ADDRESS AUTH-CERT-SHA256 CREATED`, with
/// every authentication certificate's fingerprint (oldest first, comma
/// separated) while a node holds several.
pub fn nodes_table(nodes: &[Node]) -> String {
    table(
        &["MEMBER", "NAME", "ADDRESS", "AUTH-CERT-SHA256", "CREATED"],
        nodes,
        |n| {
            vec![
                n.member.to_string(),
                n.name.to_string(),
                n.address.clone(),
                n.fingerprints().join(","),
                time(&n.created_at),
            ]
        },
    )
}

/// Registration requests as a table, with the full certificate
/// fingerprint so the operator can compare it with the member's.
pub fn requests_table(requests: &[RegistrationRequest]) -> String {
    table(
        &[
            "ID",
            "STATE",
            "KIND",
            "MEMBER",
            "NODE",
            "ADDRESS",
            "AUTH-CERT-SHA256",
            "SUBMITTED",
            "DECIDED",
            "BY",
            "REASON",
        ],
        requests,
        |r| {
            vec![
                r.id.to_string(),
                r.state.to_string(),
                r.kind.to_string(),
                r.member.to_string(),
                r.node.to_string(),
                r.address.clone(),
                r.auth_cert_sha256.clone(),
                time(&r.submitted_at),
                opt_time(&r.decided_at),
                or_dash(&r.decided_by),
                or_dash(&r.reason),
            ]
        },
    )
}

/// Tokens as a table: `ID KIND NAME CREATED REVOKED` (never a hash).
pub fn tokens_table(credentials: &[Credential]) -> String {
    table(
        &["ID", "KIND", "NAME", "CREATED", "REVOKED"],
        credentials,
        |c| {
            vec![
                c.id.to_string(),
                kind_text(&c.kind),
                c.name.clone(),
                time(&c.created_at),
                opt_time(&c.revoked_at),
            ]
        },
    )
}

/// `operator` or `member:ID`.
pub fn kind_text(kind: &CredentialKind) -> String {
    match kind {
        CredentialKind::Operator => "operator".to_string(),
        CredentialKind::Member(m) => format!("member:{m}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_prefixed_base64url_and_differ() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        let body = a.strip_prefix("ndxp_").unwrap();
        assert_eq!(body.len(), 43);
        assert!(body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }

    #[test]
    fn token_hash_is_sha256_hex_of_the_text() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        assert_eq!(
            token_sha256("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tables_align_columns_and_count_characters_not_bytes() {
        let t = table(
            &["ID", "NAME"],
            &[["a", "Bộ Công an"], ["bbbb", "x"]],
            |row| row.map(String::from).to_vec(),
        );
        assert_eq!(t, "ID    NAME\na     Bộ Công an\nbbbb  x\n");
    }

    #[test]
    fn names_are_checked() {
        assert!(check_name("n", "  ").unwrap_err().is_usage());
        assert!(check_name("n", "a\nb").unwrap_err().is_usage());
        assert!(check_name("n", &"x".repeat(MAX_NAME_CHARS + 1))
            .unwrap_err()
            .is_usage());
        check_name("n", "Bộ Công an").unwrap();
    }
}
