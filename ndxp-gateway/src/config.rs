//! The one TOML configuration file of `ndxp-gateway serve` and of the
//! operator commands that work on the same registry. Every key is listed,
//! with its default, in `docs/config.md`; a test keeps the two in step.
//!
//! Relative paths are resolved against the directory of the configuration
//! file, so a configuration directory can be moved as a whole.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ndxp_core::{InstanceId, MemberId};
use serde::{Deserialize, Serialize};

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The instance this platform serves, e.g. `VN`. Every identifier in the
    /// registry belongs to it.
    pub instance: InstanceId,
    /// Where the registry is stored.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The management API (members, nodes, services, subscriptions) and the
    /// global configuration download.
    #[serde(default)]
    pub management: ManagementConfig,
    /// The admin port: `/healthz`, `/readyz`, `/metrics`.
    #[serde(default)]
    pub admin: AdminConfig,
    /// How the global configuration is built and signed.
    pub globalconf: GlobalConfConfig,
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Database URL: `sqlite://PATH` (embedded default; the file is created
    /// if missing, PATH relative to the configuration file) or
    /// `postgres://user@host:port/db` (several gateway processes may share
    /// it).
    #[serde(default = "default_storage_url")]
    pub url: String,
}

fn default_storage_url() -> String {
    "sqlite://registry.db".to_string()
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: default_storage_url(),
        }
    }
}

/// `[management]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementConfig {
    /// Address of the management API, IPv4 or IPv6 (`[::1]:8100`).
    #[serde(default = "default_management_listen")]
    pub listen: SocketAddr,
    /// The base URL nodes use to reach this API; written into anchor files
    /// (the global configuration is at `{public_url}/globalconf`).
    #[serde(default = "default_public_url")]
    pub public_url: String,
    /// Largest request body accepted, in bytes; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
}

fn default_management_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8100))
}

fn default_public_url() -> String {
    "http://127.0.0.1:8100".to_string()
}

fn default_max_body() -> usize {
    1024 * 1024
}

impl Default for ManagementConfig {
    fn default() -> Self {
        Self {
            listen: default_management_listen(),
            public_url: default_public_url(),
            max_body_bytes: default_max_body(),
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of `/healthz`, `/readyz` and `/metrics` (Prometheus text).
    #[serde(default = "default_admin_listen")]
    pub listen: SocketAddr,
}

fn default_admin_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8101))
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: default_admin_listen(),
        }
    }
}

/// `[globalconf]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalConfConfig {
    /// Private key that signs the global configuration (PKCS#8 PEM, mode
    /// 0600): the signing key of the platform operator's member.
    pub signing_key: PathBuf,
    /// The signing certificate (PEM) for `signing_key`, issued with profile
    /// `sign`; intermediates may follow it in the same file.
    pub signing_cert: PathBuf,
    /// Extra intermediate certificates (PEM) to put in `x5c`, if not in
    /// `signing_cert`.
    #[serde(default)]
    pub signing_chain: Option<PathBuf>,
    /// A file whose first line is the passphrase of `signing_key`.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// How long a signed configuration stays valid, in seconds. Nodes refuse
    /// to exchange messages on an expired one; it is re-signed when half of
    /// this has passed, and whenever the registry changes.
    #[serde(default = "default_validity")]
    pub validity_secs: u64,
    /// Certification authorities the platform trusts (for node and member
    /// certificates). Listed in the global configuration; registration
    /// requests must chain to one of them.
    pub cas: Vec<CaConfig>,
    /// Timestamp authorities listed in the global configuration.
    #[serde(default)]
    pub tsas: Vec<TsaConfig>,
}

fn default_validity() -> u64 {
    86_400
}

/// `[[globalconf.cas]]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaConfig {
    /// A name for people, e.g. `NDXP Root CA`.
    pub name: String,
    /// The CA certificate (PEM). A root; its intermediates travel with the
    /// certificates they issue.
    pub cert: PathBuf,
    /// OCSP responders for certificates under this CA.
    #[serde(default)]
    pub ocsp_urls: Vec<String>,
}

/// `[[globalconf.tsas]]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TsaConfig {
    /// A name for people.
    pub name: String,
    /// The RFC 3161 endpoint, e.g. `http://127.0.0.1:8190/tsa`.
    pub url: String,
    /// The TSA certificate (PEM).
    pub cert: PathBuf,
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML for this configuration.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said, with the line and key.
        message: String,
    },
    /// A value is out of range or inconsistent.
    #[error("configuration file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl GatewayConfig {
    /// Reads, parses, resolves relative paths and validates a configuration
    /// file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::from_toml(&text, base).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })
    }

    /// Parses configuration text; relative paths are resolved against
    /// `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let mut c: GatewayConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::new(),
            message: e.to_string(),
        })?;
        c.resolve(base);
        c.validate().map_err(|message| ConfigError::Invalid {
            path: PathBuf::new(),
            message,
        })?;
        Ok(c)
    }

    fn resolve(&mut self, base: &Path) {
        let abs = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let g = &mut self.globalconf;
        abs(&mut g.signing_key);
        abs(&mut g.signing_cert);
        for p in [&mut g.signing_chain, &mut g.passphrase_file]
            .into_iter()
            .flatten()
        {
            abs(p);
        }
        for ca in &mut g.cas {
            abs(&mut ca.cert);
        }
        for tsa in &mut g.tsas {
            abs(&mut tsa.cert);
        }
        if let Some(rest) = self.storage.url.strip_prefix("sqlite://") {
            let p = Path::new(rest);
            if p.is_relative() && !rest.starts_with(':') {
                self.storage.url = format!("sqlite://{}", base.join(p).display());
            }
        }
    }

    fn validate(&self) -> Result<(), String> {
        let m = &self.management;
        // Plain HTTP is allowed only on loopback (DESIGN §11); HTTPS for
        // the management API is not built yet, so other addresses are
        // refused rather than served in the clear. Put a TLS-terminating
        // proxy in front to publish it.
        for (key, addr) in [("management", m.listen), ("admin", self.admin.listen)] {
            if !addr.ip().is_loopback() {
                return Err(format!(
                    "[{key}] listen = {addr} is not a loopback address; plain HTTP is only served on loopback (use 127.0.0.1 or [::1] behind a TLS-terminating proxy)"
                ));
            }
        }
        if !(m.public_url.starts_with("http://") || m.public_url.starts_with("https://")) {
            return Err("[management] public_url must start with http:// or https://".into());
        }
        if m.max_body_bytes == 0 {
            return Err("[management] max_body_bytes must be at least 1".into());
        }
        if !(self.storage.url.starts_with("sqlite:")
            || self.storage.url.starts_with("postgres://")
            || self.storage.url.starts_with("postgresql://"))
        {
            return Err("[storage] url must start with sqlite:// or postgres://".into());
        }
        let g = &self.globalconf;
        if g.validity_secs < 60 {
            return Err("[globalconf] validity_secs must be at least 60".into());
        }
        if g.cas.is_empty() {
            return Err("[globalconf] list at least one trusted CA in [[globalconf.cas]]".into());
        }
        Ok(())
    }

    /// The member named in the signing certificate is the one anchors
    /// require; this reads it from the certificate file.
    pub fn signer_member(&self) -> Option<MemberId> {
        let pem = std::fs::read(&self.globalconf.signing_cert).ok()?;
        let certs = ndxp_sign::cert::read_pem_chain(&pem).ok()?;
        ndxp_sign::cert::member_of(certs.first()?).ok()
    }
}
