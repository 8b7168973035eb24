//! # ndxp-node
//!
//! The DXL node of NDXP's distributed model, as a library; the `ndxp-node`
//! binary is a thin command line over it:
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the node's one TOML configuration file |
//! | [`keys`] | the node's authentication key and the member's signing key, each with a CSR for the platform CA |
//! | [`admission`] | the signed registration request sent to the management API |
//! | [`conf`] | fetching the global configuration and reporting its status, and this node's entry in it |
//! | [`http`] | the HTTP client towards the platform |
//! | [`local`] | the local configuration: subsystems, provided services, access rights |
//! | [`serve`] | `ndxp-node serve`: the client, peer and admin ports, the exchange in both roles |
//! | [`report`] | status reports, reconciliation summaries and drill-down answers sent to management (`docs/monitoring.md`) |
//! | [`diagnose`] | `ndxp-node diagnose` and the admin API's `/api/v1/diagnose`: every dependency checked, each ok or failed with a hint |
//! | [`logcmd`] | `log archive` and `log verify`: message log archives |
//!
//! See `docs/node.md` for the configuration keys and the commands.
//!
//! ```no_run
//! use ndxp_node::keys::{init_keys, KeysOptions};
//! let files = init_keys(&KeysOptions::new(
//!     "node-keys".into(),
//!     "VN/GOV/000.00.00.G22".parse()?,
//!     "node1".parse()?,
//! ))?;
//! println!("send {} and {} to the CA", files.auth_csr.display(), files.sign_csr.display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod admission;
pub mod conf;
pub mod config;
pub mod diagnose;
pub mod http;
pub mod keys;
pub mod local;
pub mod logcmd;
pub mod report;
pub mod serve;
