//! The global configuration document: types, the rules every document
//! obeys, and the look-ups a node needs.

use std::collections::HashSet;

use chrono::{DateTime, TimeDelta, Utc};
use ndxp_core::id::check_segment;
use ndxp_core::{InstanceId, MemberId, NodeName, ServiceId, SubsystemId};
use ndxp_sign::cert::read_pem_chain;
use ndxp_sign::openssl::x509::X509;
use serde::{Deserialize, Serialize};

use super::error::ConfError;

/// The `format` value of every document this module reads and writes.
pub const FORMAT: &str = "ndxp-globalconf/1";

/// A member of the instance and the codes of its subsystems.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfMember {
    /// The member identifier.
    pub id: MemberId,
    /// Human-readable name (the organisation).
    pub name: String,
    /// Subsystem codes (the last segment of a subsystem identifier), unique.
    pub subsystems: Vec<String>,
}

/// A node (security server) of a member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfNode {
    /// The member that runs the node.
    pub member: MemberId,
    /// The node's name, unique within the member.
    pub name: NodeName,
    /// The `https://` URL of the node's peer (node-to-node) port.
    pub address: String,
    /// Lowercase hex SHA-256 of the DER of each authentication certificate
    /// the node may present; more than one while a certificate is rotated.
    pub auth_cert_sha256: Vec<String>,
}

/// A certificate authority whose certificates nodes accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfCa {
    /// A name for messages and operators.
    pub name: String,
    /// The CA certificate (a trust anchor), PEM; more blocks may follow
    /// (intermediates).
    pub cert_pem: String,
    /// URLs of OCSP responders for certificates this CA issues.
    pub ocsp_urls: Vec<String>,
}

/// A time-stamping authority (RFC 3161) nodes may use and accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfTsa {
    /// A name for messages and operators.
    pub name: String,
    /// The TSA's HTTP URL.
    pub url: String,
    /// The TSA's certificate, PEM.
    pub cert_pem: String,
}

/// A service in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfService {
    /// The service with its version; its subsystem is the provider.
    pub id: ServiceId,
    /// What the service does.
    pub description: String,
    /// Where its OpenAPI description can be read, if published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi_url: Option<String>,
    /// Since when the service is deprecated, if it is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated_at: Option<DateTime<Utc>>,
    /// When the service stops being served, if announced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset_at: Option<DateTime<Utc>>,
}

/// A global group of subsystems, usable as a grantee.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfGroup {
    /// The group code (segment rule), unique in the document.
    pub code: String,
    /// The subsystems in the group.
    pub members: Vec<SubsystemId>,
}

/// Who an access right is granted to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfGrantee {
    /// One subsystem.
    Subsystem(SubsystemId),
    /// Every subsystem of a global group (by code).
    Group(String),
}

/// A right of a client to call a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfAccessRight {
    /// The service.
    pub service: ServiceId,
    /// The client allowed to call it.
    pub grantee: ConfGrantee,
}

/// Everything in a document except its version and times: what the
/// management side builds from its registry snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfContent {
    /// Members and their subsystems.
    pub members: Vec<ConfMember>,
    /// Nodes.
    pub nodes: Vec<ConfNode>,
    /// Trusted CAs.
    pub cas: Vec<ConfCa>,
    /// Trusted TSAs.
    pub tsas: Vec<ConfTsa>,
    /// The service catalogue.
    pub services: Vec<ConfService>,
    /// Global groups.
    pub groups: Vec<ConfGroup>,
    /// Access rights.
    pub access_rights: Vec<ConfAccessRight>,
}

/// A global configuration document (see `docs/globalconf.md`).
///
/// Deserialising one checks every document rule (see
/// [`ConfDocument::validate`]), so a value obtained from JSON is always
/// valid. (The associated functions `ConfDocument::serialize` and
/// `ConfDocument::deserialize`, which serde writes for the `Serialize` and
/// `Deserialize` impls, do not check: deserialise through the trait, e.g.
/// with [`ConfDocument::from_json`].)
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(remote = "Self", deny_unknown_fields)]
pub struct ConfDocument {
    /// Always [`FORMAT`].
    pub format: String,
    /// The instance the document describes.
    pub instance: InstanceId,
    /// Increases with every document the management side publishes.
    pub version: u64,
    /// When the document was built.
    pub generated_at: DateTime<Utc>,
    /// After this instant no node may rely on the document.
    pub expires_at: DateTime<Utc>,
    /// Members and their subsystems.
    pub members: Vec<ConfMember>,
    /// Nodes.
    pub nodes: Vec<ConfNode>,
    /// Trusted CAs.
    pub cas: Vec<ConfCa>,
    /// Trusted TSAs.
    pub tsas: Vec<ConfTsa>,
    /// The service catalogue.
    pub services: Vec<ConfService>,
    /// Global groups.
    pub groups: Vec<ConfGroup>,
    /// Access rights.
    pub access_rights: Vec<ConfAccessRight>,
}

// Deserialising checks the document: the derives above (`remote = "Self"`)
// write the field-by-field code as inherent functions, and these impls add
// the check, the way `try_from` would without a second declaration of the
// fields.
impl Serialize for ConfDocument {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ConfDocument::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for ConfDocument {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let doc = ConfDocument::deserialize(deserializer)?;
        doc.check().map_err(serde::de::Error::custom)?;
        Ok(doc)
    }
}

impl ConfDocument {
    /// Builds a document of `instance` from `content`, valid from
    /// `generated_at` for `validity`, and checks it.
    ///
    /// # Errors
    /// [`ConfError::Invalid`] when a document rule is broken (a zero
    /// version, a non-positive validity, an unknown reference, ...).
    pub fn new(
        content: ConfContent,
        instance: InstanceId,
        version: u64,
        generated_at: DateTime<Utc>,
        validity: TimeDelta,
    ) -> Result<Self, ConfError> {
        let expires_at = generated_at
            .checked_add_signed(validity)
            .ok_or_else(|| ConfError::invalid("the validity period is out of range"))?;
        let doc = ConfDocument {
            format: FORMAT.to_owned(),
            instance,
            version,
            generated_at,
            expires_at,
            members: content.members,
            nodes: content.nodes,
            cas: content.cas,
            tsas: content.tsas,
            services: content.services,
            groups: content.groups,
            access_rights: content.access_rights,
        };
        doc.validate()?;
        Ok(doc)
    }

    /// Parses and checks a document from its JSON payload.
    ///
    /// # Errors
    /// [`ConfError::Malformed`] for any JSON, identifier or rule error.
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfError> {
        serde_json::from_slice(bytes).map_err(ConfError::Malformed)
    }

    /// The JSON payload that gets signed.
    ///
    /// # Errors
    /// [`ConfError::Malformed`] if serialisation fails (it does not for
    /// these types).
    pub fn to_json(&self) -> Result<Vec<u8>, ConfError> {
        serde_json::to_vec(self).map_err(ConfError::Malformed)
    }

    /// Everything except the version and times.
    pub fn content(&self) -> ConfContent {
        ConfContent {
            members: self.members.clone(),
            nodes: self.nodes.clone(),
            cas: self.cas.clone(),
            tsas: self.tsas.clone(),
            services: self.services.clone(),
            groups: self.groups.clone(),
            access_rights: self.access_rights.clone(),
        }
    }

    /// Checks the document rules: the format string, `version >= 1`,
    /// `expires_at > generated_at`, every identifier inside the document's
    /// instance, unique members, subsystems, nodes, services and groups,
    /// node addresses `https://` URLs, fingerprints 64 lowercase hex digits,
    /// CA and TSA certificates readable PEM, OCSP and TSA URLs `http(s)://`,
    /// and every reference (node member, service provider, group member,
    /// access right service and grantee) resolving inside the document.
    ///
    /// # Errors
    /// [`ConfError::Invalid`] naming the first rule broken.
    pub fn validate(&self) -> Result<(), ConfError> {
        self.check().map_err(|reason| ConfError::Invalid { reason })
    }

    fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!(
                "format is {:?}; this node reads {FORMAT:?}",
                self.format
            ));
        }
        if self.version == 0 {
            return Err("version must be 1 or more".into());
        }
        if self.expires_at <= self.generated_at {
            return Err(format!(
                "expires_at {} is not after generated_at {}",
                self.expires_at, self.generated_at
            ));
        }
        let in_instance = |m: &MemberId, what: &str| {
            if m.instance() == &self.instance {
                Ok(())
            } else {
                Err(format!("{what} {m} is not in instance {}", self.instance))
            }
        };
        let mut members = HashSet::new();
        let mut subsystems = HashSet::new();
        for m in &self.members {
            in_instance(&m.id, "member")?;
            if !members.insert(&m.id) {
                return Err(format!("member {} is listed twice", m.id));
            }
            for code in &m.subsystems {
                let s =
                    m.id.subsystem(code)
                        .map_err(|e| format!("member {}: {e}", m.id))?;
                if !subsystems.insert(s.clone()) {
                    return Err(format!("subsystem {s} is listed twice"));
                }
            }
        }
        let mut nodes = HashSet::new();
        for n in &self.nodes {
            if !members.contains(&n.member) {
                return Err(format!(
                    "node {}/{} belongs to a member that is not listed",
                    n.member, n.name
                ));
            }
            if !nodes.insert((&n.member, &n.name)) {
                return Err(format!("node {}/{} is listed twice", n.member, n.name));
            }
            check_url(&n.address, &["https"])
                .map_err(|e| format!("node {}/{} address: {e}", n.member, n.name))?;
            for fp in &n.auth_cert_sha256 {
                if fp.len() != 64 || !fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(format!(
                        "node {}/{}: auth_cert_sha256 {fp:?} is not 64 lowercase hex digits",
                        n.member, n.name
                    ));
                }
            }
        }
        for ca in &self.cas {
            let certs = read_pem_chain(ca.cert_pem.as_bytes())
                .map_err(|e| format!("CA {:?}: {e}", ca.name))?;
            if certs.is_empty() {
                return Err(format!("CA {:?} has no certificate", ca.name));
            }
            for u in &ca.ocsp_urls {
                check_url(u, &["http", "https"])
                    .map_err(|e| format!("CA {:?} OCSP URL: {e}", ca.name))?;
            }
        }
        for tsa in &self.tsas {
            check_url(&tsa.url, &["http", "https"])
                .map_err(|e| format!("TSA {:?} URL: {e}", tsa.name))?;
            let certs = read_pem_chain(tsa.cert_pem.as_bytes())
                .map_err(|e| format!("TSA {:?}: {e}", tsa.name))?;
            if certs.is_empty() {
                return Err(format!("TSA {:?} has no certificate", tsa.name));
            }
        }
        let mut services = HashSet::new();
        for s in &self.services {
            if !subsystems.contains(s.id.subsystem()) {
                return Err(format!(
                    "service {} is provided by a subsystem that is not listed",
                    s.id
                ));
            }
            if !services.insert(&s.id) {
                return Err(format!("service {} is listed twice", s.id));
            }
            if let Some(u) = &s.openapi_url {
                check_url(u, &["http", "https"])
                    .map_err(|e| format!("service {} openapi_url: {e}", s.id))?;
            }
            if let (Some(d), Some(x)) = (s.deprecated_at, s.sunset_at) {
                if x < d {
                    return Err(format!(
                        "service {}: sunset_at is before deprecated_at",
                        s.id
                    ));
                }
            }
        }
        let mut groups = HashSet::new();
        for g in &self.groups {
            check_segment("group", &g.code).map_err(|e| format!("group {:?}: {e}", g.code))?;
            if g.code.is_empty() {
                return Err("a group code is empty".into());
            }
            if !groups.insert(g.code.as_str()) {
                return Err(format!("group {} is listed twice", g.code));
            }
            for s in &g.members {
                if !subsystems.contains(s) {
                    return Err(format!(
                        "group {} lists subsystem {s}, which is not listed",
                        g.code
                    ));
                }
            }
        }
        for r in &self.access_rights {
            if !services.contains(&r.service) {
                return Err(format!(
                    "an access right names service {}, which is not listed",
                    r.service
                ));
            }
            match &r.grantee {
                ConfGrantee::Subsystem(s) if !subsystems.contains(s) => {
                    return Err(format!(
                        "an access right to {} names subsystem {s}, which is not listed",
                        r.service
                    ))
                }
                ConfGrantee::Group(g) if !groups.contains(g.as_str()) => {
                    return Err(format!(
                        "an access right to {} names group {g}, which is not listed",
                        r.service
                    ))
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The member entry, if listed.
    pub fn member(&self, id: &MemberId) -> Option<&ConfMember> {
        self.members.iter().find(|m| &m.id == id)
    }

    /// The node `name` of `member`, if listed.
    pub fn node(&self, member: &MemberId, name: &NodeName) -> Option<&ConfNode> {
        self.nodes
            .iter()
            .find(|n| &n.member == member && &n.name == name)
    }

    /// The nodes of `member`.
    pub fn nodes_of<'a>(&'a self, member: &'a MemberId) -> impl Iterator<Item = &'a ConfNode> {
        self.nodes.iter().filter(move |n| &n.member == member)
    }

    /// The node registered with an authentication certificate of this
    /// SHA-256 fingerprint (lowercase hex, see
    /// `ndxp_sign::cert::fingerprint_sha256`), if any.
    pub fn node_by_auth_cert(&self, sha256_hex: &str) -> Option<&ConfNode> {
        self.nodes
            .iter()
            .find(|n| n.auth_cert_sha256.iter().any(|f| f == sha256_hex))
    }

    /// The catalogue entry of a service, if listed.
    pub fn service(&self, id: &ServiceId) -> Option<&ConfService> {
        self.services.iter().find(|s| &s.id == id)
    }

    /// Whether the subsystem is listed under its member.
    pub fn is_known_subsystem(&self, id: &SubsystemId) -> bool {
        self.member(id.member())
            .is_some_and(|m| m.subsystems.iter().any(|c| c == id.code()))
    }

    /// Whether the group `code` lists `client`.
    pub fn in_group(&self, code: &str, client: &SubsystemId) -> bool {
        self.groups
            .iter()
            .any(|g| g.code == code && g.members.contains(client))
    }

    /// Whether `client` may call `service`: the service is listed and an
    /// access right names the client directly or a group that lists it.
    pub fn allows(&self, client: &SubsystemId, service: &ServiceId) -> bool {
        self.service(service).is_some()
            && self
                .access_rights
                .iter()
                .filter(|r| &r.service == service)
                .any(|r| match &r.grantee {
                    ConfGrantee::Subsystem(s) => s == client,
                    ConfGrantee::Group(g) => self.in_group(g, client),
                })
    }

    /// The certificates of every trusted CA (each CA's PEM, in order).
    ///
    /// # Errors
    /// [`ConfError::Certificate`] if a PEM does not parse (never for a
    /// document that passed [`ConfDocument::validate`]).
    pub fn trusted_ca_certs(&self) -> Result<Vec<X509>, ConfError> {
        let mut out = Vec::new();
        for ca in &self.cas {
            out.extend(read_pem_chain(ca.cert_pem.as_bytes()).map_err(ConfError::Certificate)?);
        }
        Ok(out)
    }

    /// The certificates of every trusted TSA.
    ///
    /// # Errors
    /// [`ConfError::Certificate`] if a PEM does not parse.
    pub fn trusted_tsa_certs(&self) -> Result<Vec<X509>, ConfError> {
        let mut out = Vec::new();
        for tsa in &self.tsas {
            out.extend(read_pem_chain(tsa.cert_pem.as_bytes()).map_err(ConfError::Certificate)?);
        }
        Ok(out)
    }

    /// Whether `now` is before `expires_at`.
    pub fn is_valid_at(&self, now: DateTime<Utc>) -> bool {
        self.expires_at > now
    }
}

/// Checks that `s` is an absolute URL with one of `schemes` and a host.
pub(crate) fn check_url(s: &str, schemes: &[&str]) -> Result<(), String> {
    let url = reqwest::Url::parse(s).map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    if !schemes.contains(&url.scheme()) {
        return Err(format!(
            "{s:?} must use {}",
            schemes
                .iter()
                .map(|x| format!("{x}://"))
                .collect::<Vec<_>>()
                .join(" or ")
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{s:?} has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{s:?} must not carry credentials"));
    }
    Ok(())
}
