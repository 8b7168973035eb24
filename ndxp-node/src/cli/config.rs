//! `ndxp-node config check`: the configuration and every file it names,
//! checked without starting the node (docs/config.md).

use std::path::Path;

use anyhow::Result;
use ndxp_core::ErrorChain;
use ndxp_edge::config::check::{FileKind, Report};
use ndxp_node::config::{self, NodeConfig};

use super::ConfigArg;

#[derive(clap::Subcommand)]
pub enum ConfigCommand {
    /// Check the configuration without starting: it parses (with the
    /// NDXP_<SECTION>__<KEY> overrides of the environment), every file it
    /// names is present with a safe mode (keys and secrets 0600), each
    /// certificate matches its key and chains to the anchor's CAs. Exits 0
    /// when every check passes, 64 otherwise.
    Check {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `config` command; returns the exit status.
pub fn run(command: ConfigCommand) -> Result<i32> {
    match command {
        ConfigCommand::Check { config, json } => {
            let report = check(&config.path());
            if json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            Ok(report.exit_code())
        }
    }
}

/// Every check of `config check` for the file at `path`.
pub fn check(path: &Path) -> Report {
    Report::of_config(path, config::load_with, files)
}

fn files(r: &mut Report, cfg: &NodeConfig) {
    let n = &cfg.node;
    r.file("node.keys_dir", &n.keys_dir, FileKind::Dir);
    let passphrase = match &n.passphrase_file {
        Some(p) => match r.passphrase("node.passphrase_file", p) {
            Some(p) => Some(p),
            None => return,
        },
        None => None,
    };
    // The anchor names the CAs the node's certificates chain to.
    let anchors = if r.file("conf.anchor", &cfg.conf.anchor, FileKind::Public) {
        let read = cfg
            .load_anchor()
            .map_err(|e| ErrorChain(&e).to_string())
            .and_then(|a| a.trust_anchors().map_err(|e| ErrorChain(&e).to_string()));
        match read {
            Ok(a) => {
                r.pass(
                    "conf.anchor readable",
                    format!("{} trust anchor(s)", a.len()),
                );
                Some(a)
            }
            Err(e) => {
                r.fail(
                    "conf.anchor readable",
                    e,
                    "install the anchor file exported by `ndxp-gateway conf anchor`",
                );
                None
            }
        }
    } else {
        None
    };
    let chain_path = cfg.chain_path();
    let intermediates = if chain_path.exists() {
        r.cert_file("node.keys_dir/chain.pem", &chain_path)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    let pass = passphrase.as_deref();
    r.key_pair(
        ("node.keys_dir/auth.pem", &cfg.auth_cert_path()),
        ("node.keys_dir/auth.key", &cfg.auth_key_path()),
        pass,
        &intermediates,
        anchors.as_deref(),
    );
    r.key_pair(
        ("node.keys_dir/sign.pem", &cfg.sign_cert_path()),
        ("node.keys_dir/sign.key", &cfg.sign_key_path()),
        pass,
        &intermediates,
        anchors.as_deref(),
    );
    if let Some(ca) = &cfg.management.tls_ca_file {
        r.cert_file("management.tls_ca_file", ca);
    }
    // Created by `serve` when missing; checked when present.
    if cfg.admin.token_file.exists() {
        r.file("admin.token_file", &cfg.admin.token_file, FileKind::Secret);
    }
    let c = &cfg.client;
    if let (Some(cert), Some(key)) = (&c.tls_cert, &c.tls_key) {
        r.key_pair(
            ("client.tls_cert", cert),
            ("client.tls_key", key),
            None,
            &[],
            None,
        );
    }
    if let Some(ca) = &c.tls_client_ca {
        r.cert_file("client.tls_client_ca", ca);
    }
}
