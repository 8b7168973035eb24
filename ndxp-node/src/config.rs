//! The node's one configuration file (TOML), documented key by key in
//! `docs/node.md`.
//!
//! Every table refuses unknown keys, so a typo is an error that names the
//! key and its line rather than a setting silently ignored. Relative paths
//! are taken relative to the directory of the configuration file, never to
//! the working directory, so the same file works from any directory.
//!
//! Today's tables are `[node]`, `[management]`, `[conf]` and the optional
//! `[log]`; the exchange
//! roles add their own tables (`[client]`, `[peer]`, `[admin]`,
//! `[[services]]`) beside them as fields of [`NodeConfig`].
//!
//! ```
//! use ndxp_node::config::NodeConfig;
//! let toml = r#"
//! [node]
//! member = "VN/GOV/000.00.00.G22"
//! name = "node-g22"
//! address = "https://node.g22.example.vn:8443"
//! keys_dir = "keys"
//!
//! [management]
//! url = "https://management.ndxp.example.vn"
//!
//! [conf]
//! anchor = "anchor.json"
//! dir = "/var/lib/ndxp/node/conf"
//! "#;
//! let cfg = NodeConfig::from_toml(toml, "/etc/ndxp".as_ref())?;
//! assert_eq!(cfg.node.keys_dir, std::path::Path::new("/etc/ndxp/keys"));
//! assert_eq!(cfg.conf.refresh_secs, 60);
//! # Ok::<(), ndxp_node::config::ConfigError>(())
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ndxp_core::{MemberId, NodeName};
use ndxp_edge::config::env::Overrides;
use ndxp_edge::config::LoadError;
use ndxp_registry::globalconf::ConfAnchor;
use serde::Deserialize;

/// The default configuration file of `ndxp-node` (`NDXP_CONFIG` or
/// `--config` name another).
pub const DEFAULT_PATH: &str = "/etc/ndxp/node.toml";

/// The keys that may instead be given as `KEY_file = "/path"`, read from a
/// file only its owner can read: the message log's database URL (it may
/// carry a password). The admin token and the key passphrase are files
/// already (`admin.token_file`, `node.passphrase_file`).
pub const SECRET_KEYS: &[&str] = &["log.url"];

/// Largest configuration file read, in bytes.
pub const MAX_CONFIG_LEN: u64 = 1024 * 1024;

/// The serde default of a number key in a table that also has required
/// keys, so that the table cannot take `#[serde(default)]` as a whole:
/// `N`. A table whose keys are all optional is `#[serde(default)]` and
/// takes every default from its `Default` impl.
pub(crate) const fn number<const N: u64>() -> u64 {
    N
}

/// The whole configuration of a node process.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Who this node is and where its keys are.
    pub node: NodeSection,
    /// The management service of the platform (admission requests).
    pub management: ManagementSection,
    /// The global configuration: its anchor and the last-good copy.
    pub conf: ConfSection,
    /// The client port, where the member's information systems call.
    #[serde(default)]
    pub client: ClientSection,
    /// The peer port, where other nodes call (mutual TLS 1.3 only).
    #[serde(default)]
    pub peer: PeerSection,
    /// The admin port: health, readiness, metrics and the local admin API.
    #[serde(default)]
    pub admin: AdminSection,
    /// Limits and time-outs of the exchange.
    #[serde(default)]
    pub exchange: ExchangeSection,
    /// The message log.
    #[serde(default)]
    pub log: LogSection,
    /// The local configuration: subsystems, services and access rights.
    #[serde(default)]
    pub local: LocalSection,
    /// Status reports and reconciliation summaries sent to management.
    #[serde(default)]
    pub report: ReportSection,
    /// Time-outs and connection limits of every port (client, peer, admin).
    #[serde(default)]
    pub edge: ndxp_edge::EdgeSettings,
    /// OpenTelemetry export of the hops' spans (off by default).
    #[serde(default)]
    pub telemetry: ndxp_edge::telemetry::TelemetrySettings,
}

/// `[report]`: what the node sends to management (`docs/monitoring.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportSection {
    /// Send status reports, summaries and drill-down answers.
    pub enabled: bool,
    /// Seconds between two rounds (status, closed periods, drill-downs).
    pub interval_secs: u64,
    /// The reconciliation period: `day`, `hour` or `minute`; must match
    /// management's `[monitoring] period`.
    pub period: ndxp_audit::reconcile::PeriodLength,
    /// Seconds after a period ends before its summary is sent; at least
    /// management's `[monitoring] grace_secs`.
    pub grace_secs: u64,
    /// The file that remembers which periods were sent.
    pub state_file: PathBuf,
}

impl Default for ReportSection {
    fn default() -> Self {
        Self {
            enabled: true,
            interval_secs: 60,
            period: ndxp_audit::reconcile::PeriodLength::Day,
            grace_secs: 600,
            state_file: PathBuf::from("report-state.json"),
        }
    }
}

/// `[client]`: the port the member's information systems call (docs/design.md §4).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSection {
    /// Address to listen on. Plain HTTP is allowed only on loopback
    /// addresses; elsewhere set `tls_cert` and `tls_key`. With
    /// `tls_listen` set, this port stays plain HTTP.
    pub listen: SocketAddr,
    /// A second, HTTPS client port beside the plain-HTTP `listen` (needs
    /// `tls_cert` and `tls_key`). Without it, `tls_cert` turns `listen`
    /// itself into HTTPS.
    pub tls_listen: Option<SocketAddr>,
    /// Host names the client port answers to (`Host` / `:authority`),
    /// besides `localhost`, loopback addresses and the addresses it
    /// listens on; other names are refused with 421.
    pub hosts: Vec<String>,
    /// PEM certificate (then chain) of the client port, for HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the client port, for HTTPS.
    pub tls_key: Option<PathBuf>,
    /// PEM file of CA certificates that issue the information systems'
    /// client certificates. When set, every HTTPS connection must present
    /// a client certificate chaining to one of them (checked in the
    /// handshake), on top of the subsystems' connection types; without it
    /// a certificate is asked for but optional, and `https-cert`
    /// subsystems pin theirs.
    pub tls_client_ca: Option<PathBuf>,
}

impl Default for ClientSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8201)),
            tls_listen: None,
            hosts: Vec::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

/// `[peer]`: the node-to-node port (mutual TLS 1.3 with the node's
/// authentication certificate).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PeerSection {
    /// Address to listen on; `[::]:8202` takes IPv6 and IPv4.
    pub listen: SocketAddr,
}

impl Default for PeerSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8202)),
        }
    }
}

/// `[admin]`: health, readiness, metrics and the local admin API.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Address to listen on; loopback only (the admin port has no TLS).
    pub listen: SocketAddr,
    /// File holding the bearer token of the local admin API (mode 0600).
    /// `serve` creates it with a fresh random token when it is missing.
    pub token_file: PathBuf,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8203)),
            token_file: PathBuf::from("admin.token"),
        }
    }
}

/// `[exchange]`: limits and time-outs of the exchange.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExchangeSection {
    /// Largest request or response body, in bytes (default 10 MiB).
    pub max_body_bytes: u64,
    /// How long the consumer's node waits for the provider's node to
    /// answer, in seconds (the provider's backend time-out is per service).
    pub timeout_secs: u64,
    /// Time limit for a TCP connection plus TLS handshake to a peer node.
    pub connect_timeout_secs: u64,
    /// Acceptance window of signed messages (`created` within ± this many
    /// seconds; replays refused within it).
    pub window_secs: u64,
    /// Seconds between two refreshes of the OCSP answers held.
    pub ocsp_refresh_secs: u64,
    /// HTTP/2 connections kept to each peer node address; requests take
    /// them in turn. More than one spreads this node's calls over the
    /// processes behind a load balancer that balances connections.
    pub peer_connections: u64,
    /// Most live entries one signer member may hold in the replay cache
    /// (of its 4 000 000); beyond it that member's new messages are
    /// refused with `ndxp.rate_limited` while other members keep being
    /// accepted.
    pub replay_entries_per_member: u64,
}

impl Default for ExchangeSection {
    fn default() -> Self {
        Self {
            max_body_bytes: 10 * 1024 * 1024,
            timeout_secs: 30,
            connect_timeout_secs: 5,
            window_secs: 300,
            ocsp_refresh_secs: 300,
            peer_connections: 1,
            replay_entries_per_member: 1_000_000,
        }
    }
}

/// `[log]`: the message log.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// Database URL: `sqlite://PATH` (default `sqlite://log.db` beside the
    /// configuration file) or `postgres://...`.
    pub url: String,
    /// Keep request and response bodies in the log (default: metadata,
    /// signatures and digests only).
    pub keep_bodies: bool,
    /// Seconds between two batch timestamping runs.
    pub timestamp_interval_secs: u64,
    /// The oldest a record may be without a time-stamp token, in seconds,
    /// before the node refuses new exchanges.
    pub timestamp_max_lag_secs: u64,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            // A relative `sqlite://` path is taken relative to the
            // configuration file's directory, like every other path.
            url: "sqlite://log.db".to_owned(),
            keep_bodies: false,
            timestamp_interval_secs: 10,
            timestamp_max_lag_secs: 600,
        }
    }
}

/// `[local]`: where the local configuration lives.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LocalSection {
    /// The local configuration file (JSON), edited by `ndxp-node
    /// subsystems|services|access` and the admin API; a running node
    /// picks changes up within a second.
    pub file: PathBuf,
}

impl Default for LocalSection {
    fn default() -> Self {
        Self {
            file: PathBuf::from("local.json"),
        }
    }
}

/// The log URL with a relative SQLite path taken from `base`; an empty URL
/// is `sqlite://<base>/log.db`.
fn resolve_log_url(url: &str, base: &Path) -> String {
    if url.is_empty() {
        return format!("sqlite://{}", base.join("log.db").display());
    }
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !rest.starts_with(':') => {
            format!("sqlite://{}", base.join(rest).display())
        }
        _ => url.to_string(),
    }
}

/// `[node]`: the node's identity, address and key material.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    /// The member that owns this node, e.g. `VN/GOV/000.00.00.G22`.
    pub member: MemberId,
    /// The node's name, unique within the member (the `--node` given to
    /// `keys init`).
    pub name: NodeName,
    /// The `https://` URL of this node's peer (node-to-node) port, as other
    /// nodes reach it, e.g. `https://node.g22.example.vn:8443`.
    pub address: String,
    /// Directory with `auth.key`, `auth.pem`, `sign.key`, `sign.pem` and,
    /// optionally, `chain.pem` (intermediate CA certificates).
    pub keys_dir: PathBuf,
    /// File whose first line is the passphrase of the private keys, when
    /// `keys init` encrypted them.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// `[node.sign_pkcs11]`: the member signing key is on a PKCS#11 token
    /// (docs/pki.md), not in `keys_dir/sign.key`; `keys_dir/sign.pem`
    /// stays the certificate. Absent: the key is the file.
    #[serde(default)]
    pub sign_pkcs11: Option<ndxp_sign::pkcs11::Pkcs11Settings>,
}

/// `[management]`: the platform's management service.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManagementSection {
    /// Base URL of the management API, e.g.
    /// `https://management.ndxp.example.vn`; registrations go to
    /// `{url}/api/v1/registrations`.
    pub url: String,
    /// PEM file of extra CA certificates trusted for the management API's
    /// TLS certificate (in addition to the system's), e.g. the platform
    /// CA's `ca.pem`.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Time limit of one request to the management API, in seconds.
    #[serde(default = "number::<30>")]
    pub timeout_secs: u64,
}

/// `[conf]`: the global configuration client.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfSection {
    /// The configuration anchor file the operator installed
    /// (`ndxp-gateway conf anchor`); it names the URL of the global
    /// configuration and what it must be signed by.
    pub anchor: PathBuf,
    /// Directory of the last good global configuration
    /// (`globalconf.jws`); created when the first document is written.
    pub dir: PathBuf,
    /// Seconds between two fetches while the node runs.
    #[serde(default = "number::<60>")]
    pub refresh_secs: u64,
    /// Time limit of one fetch, in seconds.
    #[serde(default = "number::<30>")]
    pub fetch_timeout_secs: u64,
}

/// Why the configuration could not be used. The binary exits with status
/// 64 for each of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration file {path}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_CONFIG_LEN`].
    #[error("the configuration file {path} is larger than {MAX_CONFIG_LEN} bytes")]
    TooLarge {
        /// The configuration file.
        path: PathBuf,
    },
    /// The file is not valid TOML, a key is unknown or missing, or a value
    /// has the wrong type or form.
    #[error("{}", parse_text(path, key.as_deref()))]
    Parse {
        /// The configuration file.
        path: PathBuf,
        /// Line and column (1-based) where the problem is, when known.
        location: Option<(usize, usize)>,
        /// The key (`table.key`) at fault, when known.
        key: Option<String>,
        /// What is wrong (the TOML error's message, without location).
        message: String,
        /// The TOML error; it shows the line and marks the place.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// A value parsed but is not acceptable.
    #[error("{}{key}: {reason}", file_prefix(path))]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// The key, as `table.key`.
        key: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// An environment override or a secret file (`log.url_file`) cannot
    /// be used.
    #[error("{}cannot apply the environment or a secret file", file_prefix(path))]
    Source {
        /// The configuration file.
        path: PathBuf,
        /// The variable or secret file at fault.
        #[source]
        source: LoadError,
    },
    /// The configuration anchor file named by `conf.anchor` is missing or
    /// not valid.
    #[error("conf.anchor: the configuration anchor {path} cannot be used; install the file the platform operator exported with `ndxp-gateway conf anchor`")]
    Anchor {
        /// The anchor file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<ndxp_registry::globalconf::ConfError>,
    },
}

fn file_prefix(path: &Path) -> String {
    if path.as_os_str().is_empty() {
        String::new()
    } else {
        format!("{}: ", path.display())
    }
}

fn parse_text(path: &Path, key: Option<&str>) -> String {
    let mut s = file_prefix(path);
    s.push_str("invalid configuration");
    if let Some(k) = key {
        s.push_str(&format!(" in `{k}`"));
    }
    s
}

impl NodeConfig {
    /// Parses configuration text; relative paths are resolved against
    /// `base_dir`. The text is checked as [`load`] checks a file, except
    /// that files named by the configuration are not looked at.
    ///
    /// # Errors
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`] (with an empty
    /// path).
    pub fn from_toml(text: &str, base_dir: &Path) -> Result<Self, ConfigError> {
        parse(text, base_dir, Path::new(""), &Overrides::none()).map(|(c, _)| c)
    }

    /// The URL registration requests are sent to.
    pub fn registrations_url(&self) -> String {
        format!(
            "{}/api/v1/registrations",
            self.management.url.trim_end_matches('/')
        )
    }

    /// The node's authentication private key file.
    pub fn auth_key_path(&self) -> PathBuf {
        self.node.keys_dir.join("auth.key")
    }

    /// The node's authentication (TLS) certificate file.
    pub fn auth_cert_path(&self) -> PathBuf {
        self.node.keys_dir.join("auth.pem")
    }

    /// The member's signing private key file.
    pub fn sign_key_path(&self) -> PathBuf {
        self.node.keys_dir.join("sign.key")
    }

    /// The PKCS#11 token configuration of the member signing key, when
    /// `[node.sign_pkcs11]` is set; an error names the fields at fault.
    pub fn sign_token(&self) -> Option<Result<ndxp_sign::pkcs11::Pkcs11Config, String>> {
        self.node.sign_pkcs11.as_ref().map(|s| s.to_config())
    }

    /// The member's signing certificate file.
    pub fn sign_cert_path(&self) -> PathBuf {
        self.node.keys_dir.join("sign.pem")
    }

    /// Reads and checks the configuration anchor file (`conf.anchor`).
    ///
    /// # Errors
    /// [`ConfigError::Anchor`].
    pub fn load_anchor(&self) -> Result<ConfAnchor, ConfigError> {
        ConfAnchor::load(&self.conf.anchor).map_err(|source| ConfigError::Anchor {
            path: self.conf.anchor.clone(),
            source: Box::new(source),
        })
    }

    /// The optional intermediate CA certificates file.
    pub fn chain_path(&self) -> PathBuf {
        self.node.keys_dir.join("chain.pem")
    }

    /// What `ndxp-node backup` saves for this configuration read from
    /// `config_file`: the message log (snapshotted, or listed for
    /// `pg_dump`), the local configuration, the last-good global
    /// configuration, the report state and the configuration file; the
    /// keys, anchor, admin token and TLS files are listed to be kept
    /// separately (`docs/operator-guide.md#back-up-and-restore`).
    pub fn backup_items(&self, config_file: &Path) -> Vec<ndxp_audit::backup::Item> {
        use ndxp_audit::backup::Item;
        let mut items = vec![
            Item::database("log.db", "log.url", &self.log.url),
            Item::file("local.json", "local.file", &self.local.file),
            Item::file(
                "globalconf.jws",
                "conf.dir",
                self.conf
                    .dir
                    .join(ndxp_registry::globalconf::LAST_GOOD_FILE),
            ),
            Item::file(
                "report-state.json",
                "report.state_file",
                &self.report.state_file,
            ),
            Item::file("node.toml", "--config", config_file),
            Item::keep("node.keys_dir", &self.node.keys_dir),
            Item::keep("conf.anchor", &self.conf.anchor),
            Item::keep("admin.token_file", &self.admin.token_file),
        ];
        let optional = [
            ("node.passphrase_file", &self.node.passphrase_file),
            ("management.tls_ca_file", &self.management.tls_ca_file),
            ("client.tls_cert", &self.client.tls_cert),
            ("client.tls_key", &self.client.tls_key),
            ("client.tls_client_ca", &self.client.tls_client_ca),
        ];
        for (key, path) in optional {
            if let Some(p) = path {
                items.push(Item::keep(key, p));
            }
        }
        items
    }
}

/// Reads, parses and checks a configuration file: every key known, every
/// value well formed, `node.address` an `https://` URL, `management.url`
/// an `http(s)://` URL, intervals positive, and the directories and files
/// that must already exist (`node.keys_dir`, `node.passphrase_file`,
/// `management.tls_ca_file`) present. Relative paths are resolved against
/// the file's directory.
///
/// # Errors
/// [`ConfigError`], naming the file and the key or line.
pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
    load_with(path, &Overrides::none()).map(|(c, _)| c)
}

/// [`load`] with `overrides` (`NDXP_<SECTION>__<KEY>`) applied on top of
/// the file; also returns the secret files read (`log.url_file`) with
/// their keys.
///
/// # Errors
/// [`ConfigError`], naming the file and the key, line or variable.
pub fn load_with(
    path: &Path,
    overrides: &Overrides,
) -> Result<(NodeConfig, Vec<(String, PathBuf)>), ConfigError> {
    use std::io::Read;
    let read_err = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read_err)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_CONFIG_LEN {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| {
        read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the file is not UTF-8 text",
        ))
    })?;
    let base = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let (cfg, secrets) = parse(&text, &base, path, overrides)?;
    check_files(&cfg, path)?;
    Ok((cfg, secrets))
}

fn parse(
    text: &str,
    base: &Path,
    path: &Path,
    overrides: &Overrides,
) -> Result<(NodeConfig, Vec<(String, PathBuf)>), ConfigError> {
    let loaded = ndxp_edge::config::load::<NodeConfig>(text, base, overrides, SECRET_KEYS)
        .map_err(|e| match e {
            LoadError::Parse {
                key,
                location,
                message,
                source,
            } => ConfigError::Parse {
                path: path.to_path_buf(),
                location,
                key,
                message,
                source,
            },
            source => ConfigError::Source {
                path: path.to_path_buf(),
                source,
            },
        })?;
    let mut cfg = loaded.value;
    let resolve = |p: &mut PathBuf| {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    };
    resolve(&mut cfg.node.keys_dir);
    if let Some(p) = cfg.node.passphrase_file.as_mut() {
        resolve(p);
    }
    if let Some(p) = cfg
        .node
        .sign_pkcs11
        .as_mut()
        .and_then(|t| t.pin_file.as_mut())
    {
        resolve(p);
    }
    if let Some(p) = cfg.management.tls_ca_file.as_mut() {
        resolve(p);
    }
    resolve(&mut cfg.conf.anchor);
    resolve(&mut cfg.conf.dir);
    resolve(&mut cfg.admin.token_file);
    resolve(&mut cfg.local.file);
    resolve(&mut cfg.report.state_file);
    for p in [
        &mut cfg.client.tls_cert,
        &mut cfg.client.tls_key,
        &mut cfg.client.tls_client_ca,
    ]
    .into_iter()
    .flatten()
    {
        resolve(p);
    }
    cfg.log.url = resolve_log_url(&cfg.log.url, base);
    validate(&cfg, path)?;
    Ok((cfg, loaded.secret_files))
}

fn invalid(path: &Path, key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_path_buf(),
        key,
        reason: reason.into(),
    }
}

/// Checks a URL: one of `schemes`, a host, no user name or password, no
/// query or fragment.
pub(crate) fn check_url(url: &str, schemes: &[&str]) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL ({e})"))?;
    if !schemes.contains(&parsed.scheme()) {
        let want = schemes
            .iter()
            .map(|s| format!("{s}://"))
            .collect::<Vec<_>>()
            .join(" or ");
        return Err(format!("{url:?} must start with {want}"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("{url:?} has no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(format!("{url:?} must not contain a user name or password"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} must not have a query or fragment"));
    }
    Ok(())
}

fn validate(cfg: &NodeConfig, path: &Path) -> Result<(), ConfigError> {
    check_url(&cfg.node.address, &["https"]).map_err(|r| {
        invalid(
            path,
            "node.address",
            format!("{r}; it is the https:// URL of this node's peer port as other nodes reach it"),
        )
    })?;
    if cfg.node.address.len() > 2048 {
        return Err(invalid(path, "node.address", "longer than 2048 characters"));
    }
    check_url(&cfg.management.url, &["http", "https"])
        .map_err(|r| invalid(path, "management.url", r))?;
    for (key, v) in [
        ("management.timeout_secs", cfg.management.timeout_secs),
        ("conf.fetch_timeout_secs", cfg.conf.fetch_timeout_secs),
    ] {
        if !(1..=3600).contains(&v) {
            return Err(invalid(path, key, format!("{v} is not between 1 and 3600")));
        }
    }
    // The URL itself is not shown: it may carry a password.
    ndxp_core::dburl::parse(&cfg.log.url).map_err(|_| {
        invalid(
            path,
            "log.url",
            format!(
                "unsupported database URL {}; use sqlite://PATH or postgres://USER@HOST/DB",
                ndxp_core::dburl::redact(&cfg.log.url)
            ),
        )
    })?;
    if !(1..=3600).contains(&cfg.log.timestamp_interval_secs) {
        return Err(invalid(
            path,
            "log.timestamp_interval_secs",
            format!(
                "{} is not between 1 and 3600",
                cfg.log.timestamp_interval_secs
            ),
        ));
    }
    if cfg.log.timestamp_max_lag_secs < cfg.log.timestamp_interval_secs
        || cfg.log.timestamp_max_lag_secs > 7 * 86_400
    {
        return Err(invalid(
            path,
            "log.timestamp_max_lag_secs",
            format!(
                "{} must be at least log.timestamp_interval_secs ({}) and at most 604800 (7 days)",
                cfg.log.timestamp_max_lag_secs, cfg.log.timestamp_interval_secs
            ),
        ));
    }
    if !(1..=86_400).contains(&cfg.conf.refresh_secs) {
        return Err(invalid(
            path,
            "conf.refresh_secs",
            format!("{} is not between 1 and 86400", cfg.conf.refresh_secs),
        ));
    }
    cfg.edge.check().map_err(|e| match e {
        ndxp_edge::settings::SettingsError::Invalid { key, detail } => invalid(path, key, detail),
        other => invalid(path, "edge", other.to_string()),
    })?;
    cfg.telemetry.check().map_err(|e| match e {
        ndxp_edge::settings::SettingsError::Invalid { key, detail } => invalid(path, key, detail),
        other => invalid(path, "telemetry", other.to_string()),
    })?;
    validate_ports(cfg, path)
}

fn validate_ports(cfg: &NodeConfig, path: &Path) -> Result<(), ConfigError> {
    let c = &cfg.client;
    if c.tls_cert.is_some() != c.tls_key.is_some() {
        return Err(invalid(
            path,
            "client.tls_cert",
            "set both client.tls_cert and client.tls_key for HTTPS, or neither",
        ));
    }
    if c.tls_client_ca.is_some() && c.tls_cert.is_none() {
        return Err(invalid(
            path,
            "client.tls_client_ca",
            "client certificates need HTTPS: set client.tls_cert and client.tls_key too",
        ));
    }
    if let Some(tls) = c.tls_listen {
        if c.tls_cert.is_none() {
            return Err(invalid(
                path,
                "client.tls_listen",
                "the HTTPS client port needs client.tls_cert and client.tls_key",
            ));
        }
        if tls == c.listen {
            return Err(invalid(
                path,
                "client.tls_listen",
                format!(
                    "{tls} is also client.listen; give the HTTPS client port an address of its own"
                ),
            ));
        }
        if !c.listen.ip().is_loopback() {
            return Err(invalid(
                path,
                "client.listen",
                format!(
                    "{} is not a loopback address; with client.tls_listen set, client.listen is plain HTTP and allowed only on loopback",
                    c.listen
                ),
            ));
        }
    }
    for h in &c.hosts {
        let ok = !h.is_empty()
            && h.len() <= 253
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !ok {
            return Err(invalid(
                path,
                "client.hosts",
                format!("{h:?} is not a host name or IPv4 address (no scheme, port or path)"),
            ));
        }
    }
    if c.tls_cert.is_none() && !c.listen.ip().is_loopback() {
        return Err(invalid(
            path,
            "client.listen",
            format!(
                "{} is not a loopback address; plain HTTP is allowed only on loopback, so set client.tls_cert and client.tls_key",
                c.listen
            ),
        ));
    }
    if !cfg.admin.listen.ip().is_loopback() {
        return Err(invalid(
            path,
            "admin.listen",
            format!(
                "{} is not a loopback address; the admin port has no TLS, publish it through a TLS-terminating proxy",
                cfg.admin.listen
            ),
        ));
    }
    let x = &cfg.exchange;
    if !(1024..=1024 * 1024 * 1024).contains(&x.max_body_bytes) {
        return Err(invalid(
            path,
            "exchange.max_body_bytes",
            format!("{} is not between 1024 and 1073741824", x.max_body_bytes),
        ));
    }
    for (key, v, max) in [
        ("exchange.timeout_secs", x.timeout_secs, 3600),
        ("exchange.connect_timeout_secs", x.connect_timeout_secs, 600),
        ("exchange.window_secs", x.window_secs, 3600),
        ("exchange.ocsp_refresh_secs", x.ocsp_refresh_secs, 86_400),
        ("exchange.peer_connections", x.peer_connections, 64),
        (
            "exchange.replay_entries_per_member",
            x.replay_entries_per_member,
            crate::serve::REPLAY_CACHE_ENTRIES as u64,
        ),
    ] {
        if !(1..=max).contains(&v) {
            return Err(invalid(
                path,
                key,
                format!("{v} is not between 1 and {max}"),
            ));
        }
    }
    if !(1..=86_400).contains(&cfg.report.interval_secs) {
        return Err(invalid(
            path,
            "report.interval_secs",
            format!("{} is not between 1 and 86400", cfg.report.interval_secs),
        ));
    }
    if cfg.report.grace_secs > 86_400 {
        return Err(invalid(
            path,
            "report.grace_secs",
            format!("{} is more than 86400", cfg.report.grace_secs),
        ));
    }
    if !cfg.log.url.starts_with("sqlite:") && !cfg.log.url.starts_with("postgres") {
        return Err(invalid(
            path,
            "log.url",
            "use sqlite://PATH or postgres://USER@HOST/DB",
        ));
    }
    Ok(())
}

fn check_files(cfg: &NodeConfig, path: &Path) -> Result<(), ConfigError> {
    if let Some(Err(e)) = cfg.sign_token() {
        return Err(invalid(path, "node.sign_pkcs11", e));
    }
    if !cfg.node.keys_dir.is_dir() {
        return Err(invalid(
            path,
            "node.keys_dir",
            format!(
                "{} is not a directory; create it with `ndxp-node keys init --dir {}`",
                cfg.node.keys_dir.display(),
                cfg.node.keys_dir.display()
            ),
        ));
    }
    for (key, file) in [
        ("node.passphrase_file", &cfg.node.passphrase_file),
        ("management.tls_ca_file", &cfg.management.tls_ca_file),
    ] {
        if let Some(f) = file {
            if !f.is_file() {
                return Err(invalid(
                    path,
                    key,
                    format!("{} does not exist or is not a file", f.display()),
                ));
            }
        }
    }
    Ok(())
}
