//! The one TOML configuration file of `ndxp-gateway serve` and of the
//! operator commands that work on the same registry. Every key is listed,
//! with its default, in `docs/config.md`; a test keeps the two in step.
//!
//! Relative paths are resolved against the directory of the configuration
//! file, so a configuration directory can be moved as a whole.
//!
//! The file is read from `--config`, `NDXP_CONFIG` or [`DEFAULT_PATH`];
//! `NDXP_<SECTION>__<KEY>` variables override its keys and the database
//! URLs may be read from files ([`SECRET_KEYS`]), both through
//! `ndxp_edge::config`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ndxp_core::{InstanceId, MemberId};
use ndxp_edge::config::env::Overrides;
use ndxp_edge::config::LoadError;
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
    /// Connection status and reconciliation (docs/monitoring.md).
    #[serde(default)]
    pub monitoring: MonitoringConfig,
    /// The central gateway role (centralized model); absent: not run.
    #[serde(default)]
    pub gateway: Option<GatewayRoleConfig>,
    /// Time-outs and connection limits of every listener of `serve`
    /// (management API, admin port, central gateway).
    #[serde(default)]
    pub edge: ndxp_edge::EdgeSettings,
    /// OpenTelemetry export of the hops' spans (off by default).
    #[serde(default)]
    pub telemetry: ndxp_edge::telemetry::TelemetrySettings,
}

/// `[monitoring]`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitoringConfig {
    /// How often nodes are expected to report their status, in seconds.
    pub status_interval_secs: u64,
    /// A node whose last report is older than this many intervals is
    /// `stale`.
    pub stale_after_intervals: u32,
    /// A node whose last report is older than this many intervals (or that
    /// never reported) is `down`.
    pub down_after_intervals: u32,
    /// A certificate expiring within this many days makes its node
    /// `degraded`.
    pub cert_warning_days: u32,
    /// Message log lag above this makes the node `degraded`, in seconds.
    pub max_log_lag_secs: f64,
    /// Timestamp lag above this makes the node `degraded`, in seconds.
    pub max_timestamp_lag_secs: f64,
    /// A backend slower than this makes its service `degraded`, in ms.
    pub max_backend_latency_ms: u64,
    /// A global configuration older than this makes the node `degraded`,
    /// in seconds.
    pub max_globalconf_age_secs: u64,
    /// Reconciliation period: `day` or `hour` (whole UTC days or hours);
    /// `minute` for demonstrations and tests.
    pub period: ndxp_audit::reconcile::PeriodLength,
    /// Seconds after a period ends before its summaries are accepted and
    /// nodes upload them (late records settle).
    pub grace_secs: u64,
    /// The central gateway's own message log (database URL), which takes
    /// part in reconciliation as the consumer-facing side of the calls it
    /// relayed. Absent: the gateway side is left out.
    pub gateway_log_url: Option<String>,
}

impl Default for MonitoringConfig {
    fn default() -> Self {
        Self {
            status_interval_secs: 60,
            stale_after_intervals: 3,
            down_after_intervals: 10,
            cert_warning_days: 30,
            max_log_lag_secs: 5.0,
            max_timestamp_lag_secs: 600.0,
            max_backend_latency_ms: 2000,
            max_globalconf_age_secs: 86_400,
            period: ndxp_audit::reconcile::PeriodLength::Day,
            grace_secs: 300,
            gateway_log_url: None,
        }
    }
}

/// `[gateway]`: the central gateway role (`docs/gateway.md`). Present:
/// `serve` runs it beside (or, with `[management] enabled = false`,
/// instead of) the management role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayRoleConfig {
    /// Address consumers call: `{listen}/{service id}/{path}` and
    /// `/oauth2/token`. Loopback only with plain HTTP; any address with
    /// `tls_cert` and `tls_key` (HTTPS).
    pub listen: SocketAddr,
    /// The gateway's HTTPS certificate (PEM; intermediates may follow it).
    /// Set with `tls_key` to serve HTTPS (TLS 1.2 or 1.3) instead of plain
    /// HTTP; consumers may then also present a client certificate.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM, unencrypted).
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to; default
    /// the platform's CAs (`[[globalconf.cas]]`). Their OCSP answers are
    /// fetched from the responder a certificate names, or the
    /// `ocsp_urls` of `[[globalconf.cas]]`.
    pub client_ca: Option<PathBuf>,
    /// Largest request or response body, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Lifetime of issued access tokens, in seconds.
    pub token_lifetime_secs: u64,
    /// The `iss` (and `aud`) of issued tokens; default
    /// `urn:ndxp:gateway:{instance}`.
    pub issuer: Option<String>,
    /// The message log database: `sqlite://PATH` (relative to the
    /// configuration file) or `postgres://...`.
    pub log_url: String,
    /// Keep request and response bodies in the message log.
    pub log_bodies: bool,
    /// How often the gateway checks the registry version for changes made
    /// by other processes (command lines, other management processes), in
    /// milliseconds. Changes through this process's management API apply
    /// before its response.
    pub registry_poll_ms: u64,
    /// Most idle keep-alive connections kept per backend host.
    pub pool_max_idle_per_host: usize,
    /// Costly client secret checks (PBKDF2 hashes stored by earlier
    /// versions) the token endpoint admits at once, running or waiting;
    /// past it such a token request is refused at once with `429` and
    /// `Retry-After`.
    pub token_check_queue: usize,
    /// Failed token requests of one client id from one address before
    /// that client id is refused at that address for a growing time (an
    /// address is refused for every client id after four times as many).
    pub token_failures_before_backoff: u32,
    /// Longest backoff after failed token requests, in seconds.
    pub token_backoff_max_secs: u64,
    /// Headers a service lets through besides the edge's allowlists
    /// (`[[gateway.forward_headers]]`, one table per service).
    pub forward_headers: Vec<ForwardHeadersConfig>,
}

/// `[[gateway.forward_headers]]`: the extra headers of one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardHeadersConfig {
    /// The service id, with its version.
    pub service: String,
    /// Request header names that reach the backend too.
    #[serde(default)]
    pub request: Vec<String>,
    /// Response header names that reach the consumer too.
    #[serde(default)]
    pub response: Vec<String>,
}

impl Default for GatewayRoleConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8300)),
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            max_body_bytes: 10 * 1024 * 1024,
            token_lifetime_secs: 300,
            issuer: None,
            log_url: "sqlite://gateway-log.db".to_string(),
            log_bodies: false,
            registry_poll_ms: 1000,
            pool_max_idle_per_host: 256,
            token_check_queue: 16,
            token_failures_before_backoff: 5,
            token_backoff_max_secs: 60,
            forward_headers: Vec::new(),
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Database URL: `sqlite://PATH` (embedded default; the file is created
    /// if missing, PATH relative to the configuration file) or
    /// `postgres://user@host:port/db` (several gateway processes may share
    /// it).
    pub url: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://registry.db".to_string(),
        }
    }
}

/// `[management]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ManagementConfig {
    /// Address of the management API, IPv4 or IPv6 (`[::1]:8100`).
    pub listen: SocketAddr,
    /// The base URL nodes use to reach this API; written into anchor files
    /// (the global configuration is at `{public_url}/globalconf`).
    pub public_url: String,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Run the management role. `false` runs only the other roles (e.g.
    /// a gateway-only process sharing a PostgreSQL registry).
    pub enabled: bool,
}

impl Default for ManagementConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8100)),
            public_url: "http://127.0.0.1:8100".to_string(),
            max_body_bytes: 1024 * 1024,
            enabled: true,
        }
    }
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of `/healthz`, `/readyz` and `/metrics` (Prometheus text).
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8101)),
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
    /// An environment override or a secret file (`x_file`) cannot be
    /// used.
    #[error("configuration file {path}")]
    Source {
        /// The file.
        path: PathBuf,
        /// The variable or secret file at fault.
        #[source]
        source: LoadError,
    },
}

/// The default configuration file of `ndxp-gateway` (`NDXP_CONFIG` or
/// `--config` name another).
pub const DEFAULT_PATH: &str = "/etc/ndxp/gateway.toml";

/// The keys that may instead be given as `KEY_file = "/path"`, read from a
/// file only its owner can read: the database URLs (they may carry a
/// password).
pub const SECRET_KEYS: &[&str] = &[
    "storage.url",
    "gateway.log_url",
    "monitoring.gateway_log_url",
];

impl GatewayConfig {
    /// Reads, parses, resolves relative paths and validates a configuration
    /// file, without environment overrides.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with(path, &Overrides::none()).map(|(c, _)| c)
    }

    /// [`load`](Self::load) with `overrides` (`NDXP_<SECTION>__<KEY>`)
    /// applied on top of the file; also returns the secret files read
    /// (`storage.url_file`, ...) with their keys.
    pub fn load_with(
        path: &Path,
        overrides: &Overrides,
    ) -> Result<(Self, Vec<(String, PathBuf)>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, overrides).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.to_path_buf(),
                message,
            },
            ConfigError::Source { source, .. } => ConfigError::Source {
                path: path.to_path_buf(),
                source,
            },
            other => other,
        })
    }

    /// What `ndxp-gateway backup` saves for this configuration read from
    /// `config_file`: the registry and the gateway's message log
    /// (snapshotted, or listed for `pg_dump`), the configuration file, and
    /// the signing key, certificates and passphrase file listed to be kept
    /// separately (`docs/operator-guide.md#back-up-and-restore`).
    pub fn backup_items(&self, config_file: &Path) -> Vec<ndxp_audit::backup::Item> {
        use ndxp_audit::backup::Item;
        let mut items = vec![
            Item::database("registry.db", "storage.url", &self.storage.url),
            Item::file("gateway.toml", "--config", config_file),
        ];
        if let Some(g) = &self.gateway {
            items.push(Item::database(
                "gateway-log.db",
                "gateway.log_url",
                &g.log_url,
            ));
        }
        if let Some(url) = &self.monitoring.gateway_log_url {
            // The same database as gateway.log_url in most installations
            // (then backed up once).
            items.push(Item::database(
                "monitoring-gateway-log.db",
                "monitoring.gateway_log_url",
                url,
            ));
        }
        let g = &self.globalconf;
        items.push(Item::keep("globalconf.signing_key", &g.signing_key));
        items.push(Item::keep("globalconf.signing_cert", &g.signing_cert));
        if let Some(p) = &g.signing_chain {
            items.push(Item::keep("globalconf.signing_chain", p));
        }
        if let Some(p) = &g.passphrase_file {
            items.push(Item::keep("globalconf.passphrase_file", p));
        }
        for ca in &g.cas {
            items.push(Item::keep("globalconf.cas[].cert", &ca.cert));
        }
        for tsa in &g.tsas {
            items.push(Item::keep("globalconf.tsas[].cert", &tsa.cert));
        }
        items
    }

    /// Parses configuration text; relative paths are resolved against
    /// `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Self, ConfigError> {
        Self::parse(text, base, &Overrides::none()).map(|(c, _)| c)
    }

    fn parse(
        text: &str,
        base: &Path,
        overrides: &Overrides,
    ) -> Result<(Self, Vec<(String, PathBuf)>), ConfigError> {
        let loaded = ndxp_edge::config::load::<GatewayConfig>(text, base, overrides, SECRET_KEYS)
            .map_err(|e| match e {
            // An error in the file's own text: the TOML message with
            // the line, as it always was.
            LoadError::Parse {
                location: Some(_),
                source,
                ..
            } => ConfigError::Parse {
                path: PathBuf::new(),
                message: source.to_string(),
            },
            e @ LoadError::Parse { .. } => ConfigError::Parse {
                path: PathBuf::new(),
                message: e.to_string(),
            },
            source => ConfigError::Source {
                path: PathBuf::new(),
                source,
            },
        })?;
        let mut c = loaded.value;
        c.resolve(base);
        c.validate().map_err(|message| ConfigError::Invalid {
            path: PathBuf::new(),
            message,
        })?;
        Ok((c, loaded.secret_files))
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
        let sqlite_abs = |url: &mut String| {
            if let Some(rest) = url.strip_prefix("sqlite://") {
                let p = Path::new(rest);
                if p.is_relative() && !rest.starts_with(':') {
                    *url = format!("sqlite://{}", base.join(p).display());
                }
            }
        };
        sqlite_abs(&mut self.storage.url);
        if let Some(g) = &mut self.gateway {
            sqlite_abs(&mut g.log_url);
            for p in [&mut g.tls_cert, &mut g.tls_key, &mut g.client_ca]
                .into_iter()
                .flatten()
            {
                abs(p);
            }
        }
        if let Some(url) = &mut self.monitoring.gateway_log_url {
            sqlite_abs(url);
        }
    }

    fn validate(&self) -> Result<(), String> {
        self.edge.check().map_err(|e| e.to_string())?;
        self.telemetry.check().map_err(|e| e.to_string())?;
        let m = &self.management;
        // Plain HTTP is allowed only on loopback (docs/design.md §11); HTTPS for
        // the management API is not built yet, so other addresses are
        // refused rather than served in the clear. Put a TLS-terminating
        // proxy in front to publish it.
        let mut listeners = vec![("management", m.listen), ("admin", self.admin.listen)];
        if let Some(g) = &self.gateway {
            if g.tls_cert.is_some() != g.tls_key.is_some() {
                return Err("[gateway] give both tls_cert and tls_key, or neither".into());
            }
            if g.client_ca.is_some() && g.tls_cert.is_none() {
                return Err("[gateway] client_ca needs tls_cert and tls_key (client certificates come over HTTPS)".into());
            }
            if g.tls_cert.is_none() {
                listeners.push(("gateway", g.listen));
            }
        }
        for (key, addr) in listeners {
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
        let mo = &self.monitoring;
        if mo.status_interval_secs == 0 {
            return Err("[monitoring] status_interval_secs must be at least 1".into());
        }
        if mo.stale_after_intervals == 0 || mo.down_after_intervals < mo.stale_after_intervals {
            return Err("[monitoring] stale_after_intervals must be at least 1 and down_after_intervals at least stale_after_intervals".into());
        }
        let lag_ok = |v: f64| v.is_finite() && v >= 0.0;
        if !lag_ok(mo.max_log_lag_secs) || !lag_ok(mo.max_timestamp_lag_secs) {
            return Err(
                "[monitoring] max_log_lag_secs and max_timestamp_lag_secs must be 0 or more".into(),
            );
        }
        if let Some(url) = &mo.gateway_log_url {
            if ndxp_core::dburl::parse(url).is_err() {
                return Err(
                    "[monitoring] gateway_log_url must start with sqlite:// or postgres://".into(),
                );
            }
        }
        if let Some(g) = &self.gateway {
            if g.max_body_bytes == 0 {
                return Err("[gateway] max_body_bytes must be at least 1".into());
            }
            if !(1..=100_000).contains(&g.token_check_queue) {
                return Err("[gateway] token_check_queue must be between 1 and 100000".into());
            }
            if !(1..=1000).contains(&g.token_failures_before_backoff) {
                return Err(
                    "[gateway] token_failures_before_backoff must be between 1 and 1000".into(),
                );
            }
            if !(1..=86_400).contains(&g.token_backoff_max_secs) {
                return Err("[gateway] token_backoff_max_secs must be between 1 and 86400".into());
            }
            if !(30..=86_400).contains(&g.token_lifetime_secs) {
                return Err("[gateway] token_lifetime_secs must be between 30 and 86400".into());
            }
            if !(10..=600_000).contains(&g.registry_poll_ms) {
                return Err("[gateway] registry_poll_ms must be between 10 and 600000".into());
            }
            if !(g.log_url.starts_with("sqlite:")
                || g.log_url.starts_with("postgres://")
                || g.log_url.starts_with("postgresql://"))
            {
                return Err("[gateway] log_url must start with sqlite:// or postgres://".into());
            }
            if g.issuer.as_deref().is_some_and(|i| i.trim().is_empty()) {
                return Err("[gateway] issuer must not be empty".into());
            }
            let mut seen = std::collections::HashSet::new();
            for f in &g.forward_headers {
                if f.service.parse::<ndxp_core::ServiceId>().is_err() {
                    return Err(format!(
                        "[[gateway.forward_headers]] service = {:?} is not a service id with its version",
                        f.service
                    ));
                }
                if !seen.insert(f.service.as_str()) {
                    return Err(format!(
                        "[[gateway.forward_headers]] lists {} twice; merge the two tables",
                        f.service
                    ));
                }
                ndxp_edge::forward::ExtraHeaders {
                    request: f.request.clone(),
                    response: f.response.clone(),
                }
                .check()
                .map_err(|e| format!("[[gateway.forward_headers]] {}: {e}", f.service))?;
            }
        } else if !m.enabled {
            return Err("[management] enabled = false leaves nothing to serve: add a [gateway] table or enable the management role".into());
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

    /// The `iss` and `aud` of gateway access tokens.
    pub fn gateway_issuer(&self) -> String {
        self.gateway
            .as_ref()
            .and_then(|g| g.issuer.clone())
            .unwrap_or_else(|| format!("urn:ndxp:gateway:{}", self.instance))
    }

    /// The CA certificates client certificates must chain to:
    /// `[gateway] client_ca`, or else every `[[globalconf.cas]]` certificate.
    ///
    /// # Errors
    /// A file cannot be read or holds no certificate; the message names it.
    pub fn client_cert_anchors(&self) -> Result<Vec<ndxp_sign::openssl::x509::X509>, String> {
        let files: Vec<&Path> = match self.gateway.as_ref().and_then(|g| g.client_ca.as_deref()) {
            Some(ca) => vec![ca],
            None => self
                .globalconf
                .cas
                .iter()
                .map(|c| c.cert.as_path())
                .collect(),
        };
        let mut anchors = Vec::new();
        for f in files {
            let pem = std::fs::read(f).map_err(|e| format!("{}: {e}", f.display()))?;
            let certs = ndxp_sign::cert::read_pem_chain(&pem)
                .map_err(|e| format!("{}: {e}", f.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: holds no certificate", f.display()));
            }
            anchors.extend(certs);
        }
        Ok(anchors)
    }

    /// The member named in the signing certificate is the one anchors
    /// require; this reads it from the certificate file.
    pub fn signer_member(&self) -> Option<MemberId> {
        let pem = std::fs::read(&self.globalconf.signing_cert).ok()?;
        let certs = ndxp_sign::cert::read_pem_chain(&pem).ok()?;
        ndxp_sign::cert::member_of(certs.first()?).ok()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const MINIMAL: &str = r#"
instance = "VN"
[globalconf]
signing_key = "keys/sign.key"
signing_cert = "keys/sign.pem"
[[globalconf.cas]]
name = "NDXP Root CA"
cert = "pki/ca.pem"
"#;

    fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
        GatewayConfig::from_toml(text, Path::new("/etc/ndxp"))
    }

    fn message(e: ConfigError) -> String {
        e.to_string()
    }

    #[test]
    fn defaults_fill_every_optional_key() {
        let c = parse(MINIMAL).unwrap();
        assert_eq!(c.instance.as_str(), "VN");
        assert_eq!(c.storage.url, "sqlite:///etc/ndxp/registry.db");
        assert_eq!(c.management.listen, "127.0.0.1:8100".parse().unwrap());
        assert_eq!(c.management.public_url, "http://127.0.0.1:8100");
        assert_eq!(c.management.max_body_bytes, 1024 * 1024);
        assert_eq!(c.admin.listen, "127.0.0.1:8101".parse().unwrap());
        assert_eq!(c.globalconf.validity_secs, 86_400);
        assert_eq!(c.globalconf.signing_chain, None);
        assert_eq!(c.globalconf.passphrase_file, None);
        assert!(c.globalconf.tsas.is_empty());
        assert!(c.globalconf.cas[0].ocsp_urls.is_empty());
    }

    #[test]
    fn relative_paths_resolve_against_the_file_directory() {
        let text = format!(
            "{MINIMAL}\n[[globalconf.tsas]]\nname = \"TSA\"\nurl = \"http://127.0.0.1:8190/tsa\"\ncert = \"/abs/tsa.pem\"\n"
        )
        .replace(
            "signing_cert = \"keys/sign.pem\"",
            "signing_cert = \"keys/sign.pem\"\nsigning_chain = \"keys/chain.pem\"\npassphrase_file = \"../secret/pass\"",
        );
        let c = parse(&text).unwrap();
        let g = &c.globalconf;
        assert_eq!(g.signing_key, Path::new("/etc/ndxp/keys/sign.key"));
        assert_eq!(g.signing_cert, Path::new("/etc/ndxp/keys/sign.pem"));
        assert_eq!(
            g.signing_chain.as_deref(),
            Some(Path::new("/etc/ndxp/keys/chain.pem"))
        );
        assert_eq!(
            g.passphrase_file.as_deref(),
            Some(Path::new("/etc/ndxp/../secret/pass"))
        );
        assert_eq!(g.cas[0].cert, Path::new("/etc/ndxp/pki/ca.pem"));
        // Absolute paths are kept as written.
        assert_eq!(g.tsas[0].cert, Path::new("/abs/tsa.pem"));
    }

    #[test]
    fn storage_urls_other_than_relative_sqlite_are_kept() {
        for (url, want) in [
            ("sqlite:///var/lib/r.db", "sqlite:///var/lib/r.db"),
            ("sqlite://data/r.db", "sqlite:///etc/ndxp/data/r.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            (
                "postgres://ndxp@db.example:5432/ndxp",
                "postgres://ndxp@db.example:5432/ndxp",
            ),
        ] {
            let c = parse(&format!("{MINIMAL}\n[storage]\nurl = \"{url}\"\n")).unwrap();
            assert_eq!(c.storage.url, want, "{url}");
        }
        let e = parse(&format!("{MINIMAL}\n[storage]\nurl = \"mysql://x\"\n")).unwrap_err();
        assert!(message(e).contains("[storage] url"));
    }

    #[test]
    fn an_unknown_key_is_refused_by_name() {
        let e = parse(&format!("colour = \"blue\"\n{MINIMAL}")).unwrap_err();
        assert!(matches!(e, ConfigError::Parse { .. }));
        assert!(message(e).contains("colour"));
        let e = parse(&format!(
            "{MINIMAL}\n[management]\nlisten_addr = \"127.0.0.1:1\"\n"
        ))
        .unwrap_err();
        assert!(message(e).contains("listen_addr"));
        let e = parse(&MINIMAL.replace("cert = \"pki/ca.pem\"", "cert = \"x\"\nocsp = []"))
            .unwrap_err();
        assert!(message(e).contains("ocsp"));
    }

    #[test]
    fn a_missing_required_key_is_named() {
        let e = parse(&MINIMAL.replace("instance = \"VN\"", "")).unwrap_err();
        assert!(message(e).contains("instance"));
    }

    #[test]
    fn listeners_beyond_loopback_are_refused() {
        for (section, addr) in [
            ("management", "0.0.0.0:8100"),
            ("management", "[::]:8100"),
            ("admin", "192.0.2.1:8101"),
        ] {
            let e = parse(&format!("{MINIMAL}\n[{section}]\nlisten = \"{addr}\"\n")).unwrap_err();
            assert!(matches!(e, ConfigError::Invalid { .. }));
            let m = message(e);
            assert!(m.contains(&format!("[{section}] listen")), "{m}");
            assert!(m.contains("loopback"), "{m}");
        }
        let c = parse(&format!("{MINIMAL}\n[admin]\nlisten = \"[::1]:9000\"\n")).unwrap();
        assert_eq!(c.admin.listen, "[::1]:9000".parse().unwrap());
    }

    #[test]
    fn the_gateway_listens_beyond_loopback_only_over_https() {
        let plain = format!("{MINIMAL}\n[gateway]\nlisten = \"0.0.0.0:8443\"\n");
        assert!(message(parse(&plain).unwrap_err()).contains("[gateway] listen"));
        let https = format!("{plain}tls_cert = \"tls/gw.pem\"\ntls_key = \"tls/gw.key\"\n");
        let c = parse(&https).unwrap();
        let g = c.gateway.unwrap();
        assert_eq!(g.tls_cert.unwrap(), Path::new("/etc/ndxp/tls/gw.pem"));
        assert_eq!(g.client_ca, None);
        let half = format!("{plain}tls_cert = \"tls/gw.pem\"\n");
        assert!(message(parse(&half).unwrap_err()).contains("both tls_cert and tls_key"));
        let ca_only = format!("{MINIMAL}\n[gateway]\nclient_ca = \"ca.pem\"\n");
        assert!(message(parse(&ca_only).unwrap_err()).contains("client_ca needs tls_cert"));
    }

    #[test]
    fn a_configuration_without_cas_is_refused() {
        let text = MINIMAL
            .replace(
                "[[globalconf.cas]]\nname = \"NDXP Root CA\"\ncert = \"pki/ca.pem\"\n",
                "",
            )
            .replace(
                "signing_cert = \"keys/sign.pem\"",
                "signing_cert = \"keys/sign.pem\"\ncas = []",
            );
        let e = parse(&text).unwrap_err();
        assert!(matches!(e, ConfigError::Invalid { .. }));
        assert!(message(e).contains("[[globalconf.cas]]"));
    }

    #[test]
    fn out_of_range_values_are_refused() {
        let e = parse(&MINIMAL.replace(
            "signing_cert = \"keys/sign.pem\"",
            "signing_cert = \"keys/sign.pem\"\nvalidity_secs = 59",
        ))
        .unwrap_err();
        assert!(message(e).contains("validity_secs"));
        let e = parse(&format!("{MINIMAL}\n[management]\nmax_body_bytes = 0\n")).unwrap_err();
        assert!(message(e).contains("max_body_bytes"));
        let e = parse(&format!(
            "{MINIMAL}\n[management]\npublic_url = \"ftp://x\"\n"
        ))
        .unwrap_err();
        assert!(message(e).contains("public_url"));
    }

    #[test]
    fn monitoring_settings_are_checked() {
        let c = parse(&format!("{MINIMAL}\n[monitoring]\nperiod = \"minute\"\ngrace_secs = 2\ngateway_log_url = \"sqlite://gw.db\"\n")).unwrap();
        assert_eq!(
            c.monitoring.period,
            ndxp_audit::reconcile::PeriodLength::Minute
        );
        assert_eq!(
            c.monitoring.gateway_log_url.as_deref(),
            Some("sqlite:///etc/ndxp/gw.db")
        );
        for (bad, key) in [
            ("period = \"week\"", "period"),
            ("status_interval_secs = 0", "status_interval_secs"),
            (
                "stale_after_intervals = 5\ndown_after_intervals = 4",
                "down_after_intervals",
            ),
            ("max_log_lag_secs = -1.0", "max_log_lag_secs"),
            ("gateway_log_url = \"mysql://x\"", "gateway_log_url"),
        ] {
            let m = message(parse(&format!("{MINIMAL}\n[monitoring]\n{bad}\n")).unwrap_err());
            assert!(m.contains(key), "{bad}: {m}");
        }
    }

    #[test]
    fn the_gateway_table_has_defaults_and_limits() {
        let c = parse(MINIMAL).unwrap();
        assert!(c.gateway.is_none(), "no [gateway] table, no gateway role");
        let c = parse(&format!("{MINIMAL}\n[gateway]\n")).unwrap();
        let g = c.gateway.as_ref().unwrap();
        assert_eq!(
            g,
            &GatewayRoleConfig {
                log_url: "sqlite:///etc/ndxp/gateway-log.db".into(),
                ..GatewayRoleConfig::default()
            }
        );
        assert_eq!(g.listen, "127.0.0.1:8300".parse().unwrap());
        assert_eq!(g.max_body_bytes, 10 * 1024 * 1024);
        assert_eq!(c.gateway_issuer(), "urn:ndxp:gateway:VN");
        for (line, key) in [
            ("listen = \"0.0.0.0:8300\"", "[gateway] listen"),
            ("max_body_bytes = 0", "max_body_bytes"),
            ("token_lifetime_secs = 5", "token_lifetime_secs"),
            ("registry_poll_ms = 1", "registry_poll_ms"),
            ("log_url = \"mysql://x\"", "log_url"),
            ("issuer = \" \"", "issuer"),
        ] {
            let e = parse(&format!("{MINIMAL}\n[gateway]\n{line}\n")).unwrap_err();
            assert!(message(e).contains(key), "{line}");
        }
        // A gateway-only process; but not a process with no role at all.
        let c = parse(&format!(
            "{MINIMAL}\n[management]\nenabled = false\n[gateway]\nissuer = \"urn:x\"\n"
        ))
        .unwrap();
        assert!(!c.management.enabled);
        assert_eq!(c.gateway_issuer(), "urn:x");
        let e = parse(&format!("{MINIMAL}\n[management]\nenabled = false\n")).unwrap_err();
        assert!(message(e).contains("enabled = false"));
    }

    #[test]
    fn load_names_the_file_in_every_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.toml");
        let e = GatewayConfig::load(&path).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }));
        assert!(message(e).contains("gateway.toml"));
        std::fs::write(&path, format!("{MINIMAL}\nbogus = 1\n")).unwrap();
        let m = message(GatewayConfig::load(&path).unwrap_err());
        assert!(m.contains("gateway.toml") && m.contains("bogus"), "{m}");
        std::fs::write(&path, MINIMAL).unwrap();
        let c = GatewayConfig::load(&path).unwrap();
        assert_eq!(c.globalconf.signing_key, dir.path().join("keys/sign.key"));
    }
}
