//! The binary's commands: each module holds one command group's clap
//! definitions and the handlers that call the library and print.

pub mod conf;
// `generate`: one source for both binaries (clap lives only in binaries,
// so no library can hold it).
pub mod config;
pub mod diagnose;
#[path = "../../../ndxp-gateway/src/cli/generate.rs"]
pub(crate) mod generate;
pub mod keys;
pub mod local;
pub mod log;
pub mod serve;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ndxp_node::config::{self as node_config, NodeConfig};

/// Exit status for a bad command line or configuration (EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// `--config FILE`, the argument of every command that reads the node's
/// configuration.
#[derive(clap::Args)]
pub struct ConfigArg {
    /// The node's configuration file [default: $NDXP_CONFIG, else
    /// /etc/ndxp/node.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    /// The configuration file: `--config`, `NDXP_CONFIG` or the default.
    pub fn path(&self) -> PathBuf {
        ndxp_edge::config::config_path(self.config.as_deref(), node_config::DEFAULT_PATH)
    }

    /// The configuration file, loaded (with the environment's overrides)
    /// and checked.
    pub fn load(&self) -> Result<NodeConfig> {
        load(&self.path())
    }
}

/// Loads a configuration file with the `NDXP_<SECTION>__<KEY>` overrides
/// of this process's environment, warning when others can read the file
/// (it holds no secret itself: keys and the admin token live in files
/// that are refused when open, but a PostgreSQL URL may carry a password).
pub fn load(path: &Path) -> Result<NodeConfig> {
    let overrides = ndxp_edge::config::env::Overrides::from_env().map_err(|source| {
        node_config::ConfigError::Source {
            path: path.to_path_buf(),
            source: source.into(),
        }
    })?;
    let (config, _) = node_config::load_with(path, &overrides)?;
    if let Err(e) = ndxp_sign::files::check_mode(path, ndxp_sign::files::Readers::OwnerAndGroup) {
        tracing::warn!("the configuration file is readable by every user of this host: {e}");
    }
    Ok(config)
}

/// A single-threaded runtime for the commands that make a few requests.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
