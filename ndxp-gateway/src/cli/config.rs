//! `ndxp-gateway config check`: the configuration and every file it names,
//! checked without starting (docs/config.md).

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Subcommand;
use ndxp_edge::config::check::{FileKind, Report};
use ndxp_gateway::config::GatewayConfig;

use super::{ConfigArg, JsonArg};

#[derive(Subcommand)]
pub(crate) enum ConfigCommand {
    /// Check the configuration without starting: it parses (with the
    /// NDXP_<SECTION>__<KEY> overrides of the environment), every file it
    /// names is present with a safe mode (keys and secrets 0600), the
    /// signing certificate matches its key and chains to the
    /// [[globalconf.cas]] certificates. Exits 0 when every check passes,
    /// 64 otherwise.
    Check {
        #[command(flatten)]
        cfg: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
}

/// Runs a `config` command; returns the exit status.
pub(crate) fn run(command: ConfigCommand) -> Result<i32> {
    match command {
        ConfigCommand::Check { cfg, out } => {
            let report = check(&cfg.path());
            if out.json {
                println!("{}", report.to_json());
            } else {
                print!("{}", report.to_text());
            }
            Ok(report.exit_code())
        }
    }
}

/// Every check of `config check` for the file at `path`.
fn check(path: &Path) -> Report {
    Report::of_config(path, GatewayConfig::load_with, files)
}

fn files(r: &mut Report, cfg: &GatewayConfig) {
    let g = &cfg.globalconf;
    let cas: Vec<(String, PathBuf)> = g
        .cas
        .iter()
        .enumerate()
        .map(|(i, ca)| (format!("globalconf.cas[{i}].cert"), ca.cert.clone()))
        .collect();
    for (key, path) in &cas {
        r.file(key, path, FileKind::Public);
    }
    let anchors = r.anchors(&cas);
    let passphrase = match &g.passphrase_file {
        Some(p) => match r.passphrase("globalconf.passphrase_file", p) {
            Some(p) => Some(p),
            None => return,
        },
        None => None,
    };
    let intermediates = match &g.signing_chain {
        Some(p) => r
            .cert_file("globalconf.signing_chain", p)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    r.key_pair(
        ("globalconf.signing_cert", &g.signing_cert),
        ("globalconf.signing_key", &g.signing_key),
        passphrase.as_deref(),
        &intermediates,
        (!anchors.is_empty()).then_some(anchors.as_slice()),
    );
    for (i, tsa) in g.tsas.iter().enumerate() {
        let key = format!("globalconf.tsas[{i}].cert");
        r.cert_file(&key, &tsa.cert);
    }
    if let Some(gw) = &cfg.gateway {
        if let (Some(cert), Some(key)) = (&gw.tls_cert, &gw.tls_key) {
            r.key_pair(
                ("gateway.tls_cert", cert),
                ("gateway.tls_key", key),
                None,
                &[],
                None,
            );
        }
        if let Some(ca) = &gw.client_ca {
            r.cert_file("gateway.client_ca", ca);
        }
    }
}
