//! The node's local configuration: which of the member's subsystems live on
//! this node, which services it provides (service → backend), and who may
//! call them. It is a JSON file (`[local] file`, default `local.json`
//! beside the configuration file) that the `ndxp-node subsystems | services
//! | access` commands and the admin API edit, and that a running node
//! re-reads within a second of a change — no restart.
//!
//! Edits are read-modify-write under an exclusive lock on a `.lock` file
//! beside it, written to a temporary file and renamed into place, so a
//! command and the admin API never lose each other's changes and a crash
//! never leaves half a file.
//!
//! Each subsystem has a **connection type** on the client port
//! ([`ConnectionType`]: `http`, `https`, `https-cert`) and, for
//! `https-cert`, the information-system certificates registered for it,
//! pinned by their SHA-256 fingerprint ([`IsCertificate`]). A subsystem
//! without an entry in `connections` has type `http`, so files written
//! before connection types existed keep working, from loopback only.
//!
//! ```
//! use ndxp_node::local::{LocalConfig, ServiceEntry};
//! let member = "VN/GOV/000.00.00.H29".parse()?;
//! let mut local = LocalConfig::default();
//! local.add_subsystem(&member, "VN/GOV/000.00.00.H29/CSDLDC".parse()?)?;
//! local.put_service(&member, ServiceEntry::new(
//!     "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1".parse()?,
//!     "http://127.0.0.1:8400".into(),
//! ))?;
//! assert!(local.service(&"VN/GOV/000.00.00.H29/CSDLDC/citizen/v1".parse()?).is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use ndxp_edge::forward::ExtraHeaders;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use ndxp_core::{MemberId, ServiceId, SubsystemId};
use ndxp_registry::globalconf::ConfGrantee;
use serde::{Deserialize, Serialize};

/// Largest local configuration file read, in bytes (OpenAPI documents
/// included).
pub const MAX_LOCAL_LEN: u64 = 16 * 1024 * 1024;

/// Default backend time-out of a service, in seconds.
pub const DEFAULT_SERVICE_TIMEOUT_SECS: u64 = 30;

/// A provided service: where its backend is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// The service, with its version; its subsystem must live on this node.
    pub service: ServiceId,
    /// The backend's base URL (`http://` or `https://`); the request's path
    /// rest and query are appended.
    pub backend: String,
    /// Seconds to wait for the backend's answer.
    #[serde(default = "crate::config::number::<DEFAULT_SERVICE_TIMEOUT_SECS>")]
    pub timeout_secs: u64,
    /// The service's OpenAPI document, served by the `openapi` metadata
    /// service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<serde_json::Value>,
    /// Keep the bodies of this service's exchanges in the message log
    /// (overrides `[log] keep_bodies` when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_bodies: Option<bool>,
    /// Headers this service's backend needs besides the edge's allowlists
    /// (`request`: from the client to the backend, `response`: back).
    #[serde(default, skip_serializing_if = "ExtraHeaders::is_empty")]
    pub forward_headers: ExtraHeaders,
}

impl ServiceEntry {
    /// A service with the default time-out and no OpenAPI document.
    pub fn new(service: ServiceId, backend: String) -> Self {
        Self {
            service,
            backend,
            timeout_secs: DEFAULT_SERVICE_TIMEOUT_SECS,
            openapi: None,
            keep_bodies: None,
            forward_headers: ExtraHeaders::default(),
        }
    }
}

/// A right of a client (a subsystem or a global group) to call a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    /// The service.
    pub service: ServiceId,
    /// Who may call it.
    pub client: ConfGrantee,
}

/// How an information system must connect to the client port to call as
/// a subsystem (`docs/node.md`, "Connection types").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionType {
    /// Plain HTTP or HTTPS, from a loopback address only (the default).
    #[default]
    Http,
    /// HTTPS from anywhere; no client certificate needed.
    Https,
    /// HTTPS with a client certificate registered for the subsystem.
    HttpsCert,
}

impl ConnectionType {
    /// The name used in the file, the commands and the admin API.
    pub fn name(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::HttpsCert => "https-cert",
        }
    }
}

impl std::fmt::Display for ConnectionType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ConnectionType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http" => Ok(Self::Http),
            "https" => Ok(Self::Https),
            "https-cert" => Ok(Self::HttpsCert),
            _ => Err(format!(
                "{s:?} is not a connection type; use http, https or https-cert"
            )),
        }
    }
}

/// An information system's certificate registered for a subsystem: pinned
/// by the SHA-256 fingerprint of its DER, whoever issued it (self-signed
/// certificates are common).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsCertificate {
    /// SHA-256 of the certificate's DER, 64 lowercase hex digits.
    pub sha256: String,
    /// The certificate's subject, for people.
    pub subject: String,
    /// When the certificate expires; it is refused after that.
    pub not_after: chrono::DateTime<chrono::Utc>,
    /// The certificate, PEM.
    pub pem: String,
}

impl IsCertificate {
    /// Reads the first certificate of a PEM text.
    ///
    /// # Errors
    /// [`LocalError::Refused`] when the text holds no certificate.
    pub fn from_pem(pem: &str) -> Result<Self, LocalError> {
        let bad = |e: &dyn std::fmt::Display| refused(format!("the certificate: {e}"));
        let cert = ndxp_sign::cert::read_pem_chain(pem.as_bytes())
            .map_err(|e| bad(&e))?
            .into_iter()
            .next()
            .ok_or_else(|| refused("the certificate file holds no PEM certificate"))?;
        let pem =
            ndxp_sign::cert::write_pem_chain(std::slice::from_ref(&cert)).map_err(|e| bad(&e))?;
        Ok(Self {
            sha256: ndxp_sign::cert::try_fingerprint_sha256(&cert).map_err(|e| bad(&e))?,
            subject: ndxp_sign::cert::subject_text(cert.subject_name()),
            not_after: ndxp_sign::cert::asn1_to_utc(cert.not_after()).map_err(|e| bad(&e))?,
            pem: String::from_utf8_lossy(&pem).into_owned(),
        })
    }
}

/// The connection type of a subsystem and its registered certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientConnection {
    /// The subsystem; it must be in `subsystems`.
    pub subsystem: SubsystemId,
    /// How its information systems must connect.
    #[serde(rename = "type")]
    pub connection: ConnectionType,
    /// Certificates accepted for it when the type is `https-cert` (kept,
    /// but not asked for, under the other types).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certs: Vec<IsCertificate>,
}

/// The whole local configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Subsystems of this node's member whose information systems call
    /// through this node, or whose services it provides.
    #[serde(default)]
    pub subsystems: Vec<SubsystemId>,
    /// Services this node provides.
    #[serde(default)]
    pub services: Vec<ServiceEntry>,
    /// Access rights to those services.
    #[serde(default)]
    pub access: Vec<AccessEntry>,
    /// Connection types and certificates of subsystems; a subsystem not
    /// listed has type `http`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub connections: Vec<ClientConnection>,
}

/// Why a local configuration change or file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// The file could not be read, written or locked.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid local configuration.
    #[error("{path} is not a valid local configuration: {detail}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The change is not acceptable.
    #[error("{0}")]
    Refused(String),
    /// The thing to change or remove does not exist.
    #[error("{0}")]
    NotFound(String),
}

fn refused(s: impl Into<String>) -> LocalError {
    LocalError::Refused(s.into())
}

/// Checks a backend URL: `http://` or `https://`, a host, no credentials,
/// query or fragment (the rule of the configuration file's URLs).
pub fn check_backend_url(url: &str) -> Result<(), String> {
    crate::config::check_url(url, &["http", "https"])
}

impl LocalConfig {
    /// Whether `id` is a subsystem of this node.
    pub fn has_subsystem(&self, id: &SubsystemId) -> bool {
        self.subsystems.contains(id)
    }

    /// The connection type of subsystem `id` and its registered
    /// certificates (`http` and none when it has no entry).
    pub fn connection(&self, id: &SubsystemId) -> (ConnectionType, &[IsCertificate]) {
        self.connections
            .iter()
            .find(|c| &c.subsystem == id)
            .map_or((ConnectionType::Http, &[][..]), |c| {
                (c.connection, c.certs.as_slice())
            })
    }

    /// The entry of subsystem `id` in `connections`, created with type
    /// `http` when missing.
    fn connection_mut(&mut self, id: &SubsystemId) -> Result<&mut ClientConnection, LocalError> {
        if !self.has_subsystem(id) {
            return Err(LocalError::NotFound(format!(
                "subsystem {id} is not on this node; add it first"
            )));
        }
        let at = match self.connections.iter().position(|c| &c.subsystem == id) {
            Some(i) => i,
            None => {
                self.connections.push(ClientConnection {
                    subsystem: id.clone(),
                    connection: ConnectionType::Http,
                    certs: Vec::new(),
                });
                self.connections.len() - 1
            }
        };
        Ok(&mut self.connections[at])
    }

    /// Sets the connection type of subsystem `id`.
    ///
    /// # Errors
    /// [`LocalError::NotFound`] when it is not on this node.
    pub fn set_connection(
        &mut self,
        id: &SubsystemId,
        connection: ConnectionType,
    ) -> Result<(), LocalError> {
        self.connection_mut(id)?.connection = connection;
        Ok(())
    }

    /// Registers an information-system certificate for subsystem `id`
    /// (idempotent); returns its SHA-256 fingerprint.
    ///
    /// # Errors
    /// [`LocalError::NotFound`] when the subsystem is not on this node.
    pub fn add_is_cert(
        &mut self,
        id: &SubsystemId,
        cert: IsCertificate,
    ) -> Result<String, LocalError> {
        let entry = self.connection_mut(id)?;
        let fp = cert.sha256.clone();
        if !entry.certs.iter().any(|c| c.sha256 == fp) {
            entry.certs.push(cert);
        }
        Ok(fp)
    }

    /// Removes the certificate with fingerprint `sha256` (hex, any case,
    /// colons allowed) from subsystem `id`.
    ///
    /// # Errors
    /// [`LocalError::NotFound`] when it is not registered there.
    pub fn remove_is_cert(&mut self, id: &SubsystemId, sha256: &str) -> Result<(), LocalError> {
        let fp = normalize_fingerprint(sha256);
        let entry = self.connection_mut(id)?;
        let before = entry.certs.len();
        entry.certs.retain(|c| c.sha256 != fp);
        if entry.certs.len() == before {
            return Err(LocalError::NotFound(format!(
                "no certificate {fp} is registered for subsystem {id}"
            )));
        }
        Ok(())
    }

    /// The entry of a provided service.
    pub fn service(&self, id: &ServiceId) -> Option<&ServiceEntry> {
        self.services.iter().find(|s| &s.service == id)
    }

    /// The services provided by subsystem `provider`.
    pub fn services_of<'a>(
        &'a self,
        provider: &'a SubsystemId,
    ) -> impl Iterator<Item = &'a ServiceEntry> + 'a {
        self.services
            .iter()
            .filter(move |s| s.service.subsystem() == provider)
    }

    /// The grantees of `service`.
    pub fn grantees<'a>(&'a self, service: &'a ServiceId) -> impl Iterator<Item = &'a ConfGrantee> {
        self.access
            .iter()
            .filter(move |a| &a.service == service)
            .map(|a| &a.client)
    }

    /// Checks every rule: subsystems of `member`, unique; services of local
    /// subsystems with a valid backend and time-out; rights on provided
    /// services only.
    ///
    /// # Errors
    /// [`LocalError::Refused`] naming the first broken rule.
    pub fn validate(&self, member: &MemberId) -> Result<(), LocalError> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.subsystems {
            if s.member() != member {
                return Err(refused(format!(
                    "subsystem {s} does not belong to this node's member {member}"
                )));
            }
            if !seen.insert(s) {
                return Err(refused(format!("subsystem {s} is listed twice")));
            }
        }
        let mut services = std::collections::HashSet::new();
        for s in &self.services {
            let sub = s.service.subsystem();
            if !self.has_subsystem(sub) {
                return Err(refused(format!(
                    "service {}: its subsystem {sub} is not a subsystem of this node; add it first",
                    s.service
                )));
            }
            check_backend_url(&s.backend)
                .map_err(|e| refused(format!("service {}: backend {e}", s.service)))?;
            if !(1..=3600).contains(&s.timeout_secs) {
                return Err(refused(format!(
                    "service {}: timeout_secs {} is not between 1 and 3600",
                    s.service, s.timeout_secs
                )));
            }
            s.forward_headers
                .check()
                .map_err(|e| refused(format!("service {}: {e}", s.service)))?;
            if !services.insert(&s.service) {
                return Err(refused(format!("service {} is listed twice", s.service)));
            }
        }
        for a in &self.access {
            if !services.contains(&a.service) {
                return Err(refused(format!(
                    "access right on {}: this node does not provide that service",
                    a.service
                )));
            }
        }
        self.validate_connections()
    }

    /// Connections: of local subsystems, one entry each, certificates
    /// whose recorded fingerprint is that of their PEM.
    fn validate_connections(&self) -> Result<(), LocalError> {
        let mut seen = std::collections::HashSet::new();
        for c in &self.connections {
            if !self.has_subsystem(&c.subsystem) {
                return Err(refused(format!(
                    "connection of {}: it is not a subsystem of this node",
                    c.subsystem
                )));
            }
            if !seen.insert(&c.subsystem) {
                return Err(refused(format!(
                    "connection of {} is listed twice",
                    c.subsystem
                )));
            }
            for cert in &c.certs {
                let read = IsCertificate::from_pem(&cert.pem)?;
                if read.sha256 != cert.sha256 {
                    return Err(refused(format!(
                        "certificate {} of {}: its PEM has fingerprint {}; register the certificate again with `ndxp-node subsystems add-cert`",
                        cert.sha256, c.subsystem, read.sha256
                    )));
                }
            }
        }
        Ok(())
    }

    /// Adds a subsystem (idempotent).
    ///
    /// # Errors
    /// [`LocalError::Refused`] when it is not of `member`.
    pub fn add_subsystem(&mut self, member: &MemberId, id: SubsystemId) -> Result<(), LocalError> {
        if id.member() != member {
            return Err(refused(format!(
                "subsystem {id} does not belong to this node's member {member}"
            )));
        }
        if !self.has_subsystem(&id) {
            self.subsystems.push(id);
        }
        Ok(())
    }

    /// Removes a subsystem that provides no service here.
    ///
    /// # Errors
    /// [`LocalError::NotFound`], or [`LocalError::Refused`] while services
    /// of it are configured.
    pub fn remove_subsystem(&mut self, id: &SubsystemId) -> Result<(), LocalError> {
        if !self.has_subsystem(id) {
            return Err(LocalError::NotFound(format!(
                "subsystem {id} is not on this node"
            )));
        }
        if self.services_of(id).next().is_some() {
            return Err(refused(format!(
                "subsystem {id} still provides services here; remove them first"
            )));
        }
        self.subsystems.retain(|s| s != id);
        self.connections.retain(|c| &c.subsystem != id);
        Ok(())
    }

    /// Adds a service or replaces its entry (backend, time-out, document):
    /// the way to change a backend address.
    ///
    /// # Errors
    /// [`LocalError::Refused`] when the result breaks a rule.
    pub fn put_service(
        &mut self,
        member: &MemberId,
        entry: ServiceEntry,
    ) -> Result<(), LocalError> {
        let mut next = self.clone();
        match next
            .services
            .iter_mut()
            .find(|s| s.service == entry.service)
        {
            Some(s) => *s = entry,
            None => next.services.push(entry),
        }
        next.validate(member)?;
        *self = next;
        Ok(())
    }

    /// Removes a service and its access rights.
    ///
    /// # Errors
    /// [`LocalError::NotFound`].
    pub fn remove_service(&mut self, id: &ServiceId) -> Result<(), LocalError> {
        if self.service(id).is_none() {
            return Err(LocalError::NotFound(format!(
                "service {id} is not provided by this node"
            )));
        }
        self.services.retain(|s| &s.service != id);
        self.access.retain(|a| &a.service != id);
        Ok(())
    }

    /// Grants `client` the right to call `service` (idempotent).
    ///
    /// # Errors
    /// [`LocalError::Refused`] when the service is not provided here.
    pub fn grant(&mut self, service: ServiceId, client: ConfGrantee) -> Result<(), LocalError> {
        if self.service(&service).is_none() {
            return Err(refused(format!(
                "service {service} is not provided by this node; add it first"
            )));
        }
        let entry = AccessEntry { service, client };
        if !self.access.contains(&entry) {
            self.access.push(entry);
        }
        Ok(())
    }

    /// Withdraws a right.
    ///
    /// # Errors
    /// [`LocalError::NotFound`] when it was not granted.
    pub fn revoke(&mut self, service: &ServiceId, client: &ConfGrantee) -> Result<(), LocalError> {
        let before = self.access.len();
        self.access
            .retain(|a| !(&a.service == service && &a.client == client));
        if self.access.len() == before {
            return Err(LocalError::NotFound(format!(
                "no access right of {} on {service}",
                grantee_text(client)
            )));
        }
        Ok(())
    }
}

/// A SHA-256 fingerprint as stored: lowercase hex without colons.
pub fn normalize_fingerprint(s: &str) -> String {
    s.trim().replace(':', "").to_ascii_lowercase()
}

/// A grantee as text: the subsystem id, or `group:CODE`.
pub fn grantee_text(g: &ConfGrantee) -> String {
    match g {
        ConfGrantee::Subsystem(s) => s.to_string(),
        ConfGrantee::Group(c) => format!("group:{c}"),
    }
}

/// Parses a grantee: a subsystem id, or `group:CODE`.
///
/// # Errors
/// A message when it is neither.
pub fn parse_grantee(s: &str) -> Result<ConfGrantee, String> {
    match s.strip_prefix("group:") {
        Some(code) => {
            if code.is_empty() {
                return Err(
                    "group: needs the group's code after it, e.g. group:tax-offices".into(),
                );
            }
            ndxp_core::id::check_segment("group code", code).map_err(|e| e.to_string())?;
            Ok(ConfGrantee::Group(code.to_owned()))
        }
        None => s
            .parse()
            .map(ConfGrantee::Subsystem)
            .map_err(|e| format!("{s:?} is neither a subsystem id nor group:CODE ({e})")),
    }
}

/// The local configuration file: reads, locked edits, change detection.
#[derive(Debug, Clone)]
pub struct LocalFile {
    path: PathBuf,
    member: MemberId,
}

impl LocalFile {
    /// The file at `path` for a node of `member`.
    pub fn new(path: PathBuf, member: MemberId) -> Self {
        Self { path, member }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, op: &'static str) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
        move |source| LocalError::Io {
            op,
            path: self.path.clone(),
            source,
        }
    }

    /// Reads and checks the file; a missing file is an empty configuration.
    ///
    /// # Errors
    /// [`LocalError::Io`], [`LocalError::Invalid`].
    pub fn read(&self) -> Result<LocalConfig, LocalError> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(LocalConfig::default()),
            Err(e) => return Err(self.io("cannot read the local configuration")(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_LOCAL_LEN + 1)
            .read_to_end(&mut bytes)
            .map_err(self.io("cannot read the local configuration"))?;
        if bytes.len() as u64 > MAX_LOCAL_LEN {
            return Err(LocalError::Invalid {
                path: self.path.clone(),
                detail: format!("larger than {MAX_LOCAL_LEN} bytes"),
            });
        }
        let cfg: LocalConfig = serde_json::from_slice(&bytes).map_err(|e| LocalError::Invalid {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        cfg.validate(&self.member)
            .map_err(|e| LocalError::Invalid {
                path: self.path.clone(),
                detail: e.to_string(),
            })?;
        Ok(cfg)
    }

    /// Applies `change` under the file lock and writes the result
    /// atomically; nothing is written when `change` or the check fails.
    /// Returns the new configuration.
    ///
    /// # Errors
    /// What `change` returns, [`LocalError::Refused`] from the check,
    /// [`LocalError::Io`].
    pub fn edit<F>(&self, change: F) -> Result<LocalConfig, LocalError>
    where
        F: FnOnce(&mut LocalConfig, &MemberId) -> Result<(), LocalError>,
    {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            ndxp_sign::files::create_private_dir_all(dir)
                .map_err(self.io("cannot create the directory of"))?;
        }
        let lock_path = self.path.with_extension("json.lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(ndxp_sign::files::PRIVATE_FILE_MODE)
            .open(&lock_path)
            .map_err(self.io("cannot open the lock file of"))?;
        lock.lock().map_err(self.io("cannot lock"))?;
        let mut cfg = self.read()?;
        change(&mut cfg, &self.member)?;
        cfg.validate(&self.member)?;
        let text = serde_json::to_vec_pretty(&cfg).map_err(|e| LocalError::Invalid {
            path: self.path.clone(),
            detail: e.to_string(),
        })?;
        let tmp = self.path.with_extension("json.tmp");
        {
            let mut f = ndxp_sign::files::create_private(&tmp).map_err(self.io("cannot write"))?;
            f.write_all(&text).map_err(self.io("cannot write"))?;
            f.write_all(b"\n").map_err(self.io("cannot write"))?;
            f.sync_all().map_err(self.io("cannot write"))?;
        }
        fs::rename(&tmp, &self.path).map_err(self.io("cannot replace"))?;
        drop(lock);
        Ok(cfg)
    }

    fn modified(&self) -> Option<Stamp> {
        let m = fs::metadata(&self.path).ok()?;
        Some((m.modified().ok()?, m.len()))
    }
}

/// A file's modification time and length, to notice changes.
type Stamp = (SystemTime, u64);

/// The local configuration a running node uses: read once, then re-read
/// by [`LocalHandle::reload_if_changed`] when the file changes.
#[derive(Debug)]
pub struct LocalHandle {
    file: LocalFile,
    current: RwLock<(Arc<LocalConfig>, Option<Stamp>)>,
}

impl LocalHandle {
    /// Reads the file.
    ///
    /// # Errors
    /// As [`LocalFile::read`].
    pub fn open(file: LocalFile) -> Result<Self, LocalError> {
        let stamp = file.modified();
        let cfg = file.read()?;
        Ok(Self {
            file,
            current: RwLock::new((Arc::new(cfg), stamp)),
        })
    }

    /// The file.
    pub fn file(&self) -> &LocalFile {
        &self.file
    }

    /// The configuration in force.
    pub fn get(&self) -> Arc<LocalConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            .clone()
    }

    /// Re-reads the file when its time stamp or size changed. A file that
    /// became invalid is reported and the configuration in force is kept.
    /// Returns whether a new configuration took effect.
    ///
    /// # Errors
    /// As [`LocalFile::read`]; the old configuration stays in force.
    pub fn reload_if_changed(&self) -> Result<bool, LocalError> {
        let stamp = self.file.modified();
        if stamp
            == self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .1
        {
            return Ok(false);
        }
        let cfg = self.file.read();
        let mut cur = self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cur.1 = stamp;
        let cfg = cfg?;
        cur.0 = Arc::new(cfg);
        Ok(true)
    }

    /// Edits the file (see [`LocalFile::edit`]) and puts the result in
    /// force at once.
    ///
    /// # Errors
    /// As [`LocalFile::edit`].
    pub fn edit<F>(&self, change: F) -> Result<Arc<LocalConfig>, LocalError>
    where
        F: FnOnce(&mut LocalConfig, &MemberId) -> Result<(), LocalError>,
    {
        let cfg = Arc::new(self.file.edit(change)?);
        let stamp = self.file.modified();
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (cfg.clone(), stamp);
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member() -> MemberId {
        "VN/GOV/000.00.00.H29".parse().expect("member")
    }

    #[test]
    fn edits_are_checked_and_persisted() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = LocalFile::new(dir.path().join("local.json"), member());
        let svc: ServiceId = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1"
            .parse()
            .expect("svc");
        let err = file
            .edit(|c, m| c.put_service(m, ServiceEntry::new(svc.clone(), "http://b".into())))
            .expect_err("no subsystem yet");
        assert!(err.to_string().contains("add it first"), "{err}");
        assert!(!file.path().exists(), "a refused edit writes nothing");
        file.edit(|c, m| c.add_subsystem(m, "VN/GOV/000.00.00.H29/CSDLDC".parse().expect("s")))
            .expect("subsystem");
        file.edit(|c, m| c.put_service(m, ServiceEntry::new(svc.clone(), "http://b:1".into())))
            .expect("service");
        let err = file
            .edit(|c, m| c.put_service(m, ServiceEntry::new(svc.clone(), "ftp://b".into())))
            .expect_err("bad url");
        assert!(err.to_string().contains("http://"), "{err}");
        let g = parse_grantee("VN/GOV/000.00.00.G22/QLHT").expect("grantee");
        file.edit(|c, _| c.grant(svc.clone(), g.clone()))
            .expect("grant");
        let read = file.read().expect("read");
        assert_eq!(read.grantees(&svc).collect::<Vec<_>>(), vec![&g]);
        let err = file
            .edit(|c, m| c.add_subsystem(m, "VN/GOV/000.00.00.G22/QLHT".parse().expect("s")))
            .expect_err("other member");
        assert!(err.to_string().contains("does not belong"), "{err}");
    }

    #[test]
    fn a_damaged_file_keeps_the_old_configuration() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = LocalFile::new(dir.path().join("local.json"), member());
        file.edit(|c, m| c.add_subsystem(m, "VN/GOV/000.00.00.H29/CSDLDC".parse().expect("s")))
            .expect("edit");
        let handle = LocalHandle::open(file.clone()).expect("open");
        std::fs::write(file.path(), b"{ not json").expect("damage");
        assert!(handle.reload_if_changed().is_err());
        assert_eq!(handle.get().subsystems.len(), 1);
    }

    #[test]
    fn an_old_file_gives_its_subsystems_type_http_and_certificates_are_pinned() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("local.json");
        std::fs::write(
            &path,
            br#"{"subsystems": ["VN/GOV/000.00.00.H29/CSDLDC"], "services": [], "access": []}"#,
        )
        .expect("old file");
        let file = LocalFile::new(path, member());
        let sub: SubsystemId = "VN/GOV/000.00.00.H29/CSDLDC".parse().expect("s");
        let old = file.read().expect("an old file still reads");
        assert_eq!(old.connection(&sub).0, ConnectionType::Http);

        let key = ndxp_sign::key::KeyAlgorithm::EcP256
            .generate()
            .expect("key");
        let cert = ndxp_sign::cert::self_signed("qlht-is", &key, &[], &[], 30).expect("cert");
        let pem = String::from_utf8(ndxp_sign::cert::write_pem_chain(&[cert]).expect("pem"))
            .expect("utf8");
        let is = IsCertificate::from_pem(&pem).expect("is cert");
        let fp = is.sha256.clone();
        file.edit(|c, _| {
            c.set_connection(&sub, ConnectionType::HttpsCert)?;
            c.add_is_cert(&sub, is).map(drop)
        })
        .expect("edit");
        let read = file.read().expect("read");
        let (kind, certs) = read.connection(&sub);
        assert_eq!((kind, certs.len()), (ConnectionType::HttpsCert, 1));
        assert_eq!(certs[0].sha256, fp);

        // A hand-edited fingerprint that is not the PEM's is refused.
        let text = std::fs::read_to_string(file.path()).expect("text");
        std::fs::write(file.path(), text.replace(&fp, &"0".repeat(64))).expect("tamper");
        let err = file.read().expect_err("tampered");
        assert!(err.to_string().contains("fingerprint"), "{err}");
        std::fs::write(file.path(), text).expect("restore");

        let upper = fp.to_ascii_uppercase();
        file.edit(|c, _| c.remove_is_cert(&sub, &upper))
            .expect("remove by upper-case fingerprint");
        let err = file
            .edit(|c, _| c.remove_is_cert(&sub, &fp))
            .expect_err("already removed");
        assert!(matches!(err, LocalError::NotFound(_)), "{err}");
        file.edit(|c, _| c.remove_subsystem(&sub))
            .expect("remove subsystem");
        assert!(file.read().expect("read").connections.is_empty());
    }

    #[test]
    fn grantee_forms() {
        assert_eq!(
            parse_grantee("group:tax-offices").expect("group"),
            ConfGrantee::Group("tax-offices".into())
        );
        assert!(parse_grantee("group:").is_err());
        assert!(parse_grantee("VN/GOV").is_err());
    }
}
