//! The node's view of the global configuration: `ndxp-node conf fetch`
//! (one refresh now) and `ndxp-node conf status` (what the last-good copy on
//! disk says, without the network), both over
//! [`ndxp_registry::globalconf::ConfClient`].
//!
//! The status also answers the admission question "is this node in the
//! configuration yet, and as what": the entry for `node.member` /
//! `node.name`, its address, and whether the fingerprint of
//! `keys_dir/auth.pem` is among those registered.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndxp_core::{ErrorChain, MemberId, NodeName};
use ndxp_registry::globalconf::{ConfClient, ConfDocument, ConfError, ConfStatus, RefreshOutcome};
use serde::Serialize;

use crate::admission::read_certs;
use crate::config::{ConfigError, NodeConfig};
use crate::http::{platform_client, HttpSetupError};

/// Why a global configuration command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfCommandError {
    /// The configuration (here: the anchor file) is not usable.
    #[error("the node configuration cannot be used")]
    Config(#[from] ConfigError),
    /// The HTTP client could not be set up.
    #[error(transparent)]
    Http(#[from] HttpSetupError),
    /// The last-good file exists but could not be read or verified.
    #[error("the last-good global configuration {path} is not usable")]
    LastGood {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<ConfError>,
    },
    /// The fetch failed or the document offered was refused; the last-good
    /// copy (if any) is unchanged.
    #[error("refused the global configuration from {url}; the last-good copy is unchanged")]
    Refresh {
        /// Where it was fetched from.
        url: String,
        /// Why.
        #[source]
        source: Box<ConfError>,
    },
}

/// What `conf fetch` did.
#[derive(Debug, Clone, Serialize)]
pub struct FetchReport {
    /// The outcome of the refresh.
    pub outcome: RefreshOutcome,
    /// The last-good file.
    pub path: PathBuf,
    /// When the previous last-good file could not be used (it is then
    /// replaced by the document fetched), why.
    pub previous_unusable: Option<String>,
    /// The state after the refresh, with this node's entry.
    pub status: NodeConfStatus,
}

/// This node's entry in the global configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThisNode {
    /// `node.member`.
    pub member: MemberId,
    /// `node.name`.
    pub name: NodeName,
    /// The configuration lists this node.
    pub listed: bool,
    /// The address registered for it.
    pub address: Option<String>,
    /// The address registered equals `node.address`.
    pub address_matches: bool,
    /// The authentication certificate fingerprints registered for it.
    pub auth_cert_sha256: Vec<String>,
    /// The fingerprint of `keys_dir/auth.pem`, when it can be read.
    pub local_auth_cert_sha256: Option<String>,
    /// The local certificate's fingerprint is among those registered.
    pub local_cert_listed: bool,
}

/// What `conf status` reports.
#[derive(Debug, Clone, Serialize)]
pub struct NodeConfStatus {
    /// The last-good file.
    pub path: PathBuf,
    /// The client's status (version, times, validity).
    #[serde(flatten)]
    pub conf: ConfStatus,
    /// This node's entry; `None` when no document is held.
    pub this_node: Option<ThisNode>,
}

pub(crate) fn client(config: &NodeConfig) -> Result<ConfClient, ConfCommandError> {
    let anchor = config.load_anchor()?;
    let http = platform_client(config)?;
    Ok(ConfClient::new(anchor, config.conf.dir.clone(), http)
        .with_fetch_timeout(Duration::from_secs(config.conf.fetch_timeout_secs)))
}

/// This node's entry in `doc`.
pub fn this_node(config: &NodeConfig, doc: &ConfDocument) -> ThisNode {
    let entry = doc.node(&config.node.member, &config.node.name);
    let local = read_certs(&config.auth_cert_path())
        .ok()
        .and_then(|c| {
            c.first()
                .map(|x| ndxp_sign::cert::try_fingerprint_sha256(x))
        })
        .and_then(Result::ok);
    let registered = entry
        .map(|n| n.auth_cert_sha256.clone())
        .unwrap_or_default();
    ThisNode {
        member: config.node.member.clone(),
        name: config.node.name.clone(),
        listed: entry.is_some(),
        address: entry.map(|n| n.address.clone()),
        address_matches: entry.is_some_and(|n| n.address == config.node.address),
        local_cert_listed: local.as_ref().is_some_and(|l| registered.contains(l)),
        auth_cert_sha256: registered,
        local_auth_cert_sha256: local,
    }
}

fn node_status(config: &NodeConfig, client: &ConfClient, now: DateTime<Utc>) -> NodeConfStatus {
    NodeConfStatus {
        path: client.last_good_path(),
        conf: client.status(now),
        this_node: client.current().map(|d| this_node(config, &d)),
    }
}

/// `conf status`: reads and verifies the last-good file (an expired one is
/// reported, not refused), without the network.
///
/// # Errors
/// [`ConfCommandError::Config`] for a bad anchor,
/// [`ConfCommandError::LastGood`] for a damaged or wrongly signed file.
/// No file is not an error: the status then holds no version.
pub fn status(config: &NodeConfig, now: DateTime<Utc>) -> Result<NodeConfStatus, ConfCommandError> {
    let client = client(config)?;
    client
        .load_last_good(now)
        .map_err(|source| ConfCommandError::LastGood {
            path: client.last_good_path(),
            source: Box::new(source),
        })?;
    Ok(node_status(config, &client, now))
}

/// `conf fetch`: loads the last-good file (so that an older version is
/// refused), then fetches, verifies and, when newer, stores the document.
/// A last-good file that cannot be used does not stop the fetch; the
/// report says why it was set aside.
///
/// # Errors
/// [`ConfCommandError::Config`], [`ConfCommandError::Http`],
/// [`ConfCommandError::Refresh`] with the reason of the refusal.
pub async fn fetch(
    config: &NodeConfig,
    now: DateTime<Utc>,
) -> Result<FetchReport, ConfCommandError> {
    let client = client(config)?;
    let previous_unusable = client
        .load_last_good(now)
        .err()
        .map(|e| ErrorChain(&e).to_string());
    let outcome = client
        .refresh(now)
        .await
        .map_err(|source| ConfCommandError::Refresh {
            url: client.anchor().conf_url.clone(),
            source: Box::new(source),
        })?;
    Ok(FetchReport {
        outcome,
        path: client.last_good_path(),
        previous_unusable,
        status: node_status(config, &client, now),
    })
}
