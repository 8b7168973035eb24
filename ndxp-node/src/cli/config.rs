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
    match cfg.sign_token() {
        None => r.key_pair(
            ("node.keys_dir/sign.pem", &cfg.sign_cert_path()),
            ("node.keys_dir/sign.key", &cfg.sign_key_path()),
            pass,
            &intermediates,
            anchors.as_deref(),
        ),
        Some(token) => sign_token(r, cfg, token, &intermediates, anchors.as_deref()),
    }
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

/// The member signing key on a PKCS#11 token (`[node.sign_pkcs11]`): the
/// PIN file is private, the token opens with the PIN, the key is on it
/// and signs, `sign.pem` is its certificate and chains to the anchor, and
/// no `sign.key` file is left beside it.
fn sign_token(
    r: &mut Report,
    cfg: &NodeConfig,
    token: Result<ndxp_sign::pkcs11::Pkcs11Config, String>,
    intermediates: &[ndxp_sign::openssl::x509::X509],
    anchors: Option<&[ndxp_sign::openssl::x509::X509]>,
) {
    const KEY: &str = "node.sign_pkcs11";
    let token = match token {
        Ok(t) => t,
        Err(e) => {
            r.fail(
                KEY,
                e,
                "see docs/config.md for the keys of [node.sign_pkcs11]",
            );
            return;
        }
    };
    if let ndxp_sign::pkcs11::PinSource::File(p) = &token.pin {
        if !r.file("node.sign_pkcs11.pin_file", p, FileKind::Secret) {
            return;
        }
    }
    let old_key = cfg.sign_key_path();
    if old_key.exists() {
        r.fail(
            "node.keys_dir/sign.key",
            format!(
                "{} exists, but the signing key is on PKCS#11 token {}",
                old_key.display(),
                token.token
            ),
            "the node does not use it: once the token's certificate is installed as sign.pem, delete the old file key (shred -u) so that no copy of a signing key stays on disk",
        );
    }
    let opened = ndxp_sign::pkcs11::Pkcs11KeyStore::open(&token).and_then(|s| {
        s.find_key()?;
        s.check()?;
        Ok(s)
    });
    let store = match opened {
        Ok(s) => {
            r.pass(
                KEY,
                format!(
                    "key {} on PKCS#11 token {:?} found and signs",
                    s.key_name(),
                    s.token_label()
                ),
            );
            s
        }
        Err(e) => {
            r.fail(
                KEY,
                ErrorChain(&e).to_string(),
                "check the module path, the token label or slot, the PIN and the key label or id (docs/pki.md, \"Keys in a PKCS#11 token\")",
            );
            return;
        }
    };
    let cert_key = "node.keys_dir/sign.pem";
    if !r.file(cert_key, &cfg.sign_cert_path(), FileKind::Public) {
        return;
    }
    let Some(certs) = r.certs(cert_key, &cfg.sign_cert_path()) else {
        return;
    };
    let public = ndxp_sign::key::KeyStore::public_key(&store, store.key_name());
    let matches = match (certs.first().map(|c| c.public_key()), public) {
        (Some(Ok(c)), Ok(k)) => c.public_eq(&k),
        _ => false,
    };
    if matches {
        r.pass(
            format!("{cert_key} matches the token's key"),
            "the certificate is for the key on the token",
        );
    } else {
        r.fail(
            format!("{cert_key} matches the token's key"),
            format!(
                "the certificate is not for key {} on token {:?}",
                store.key_name(),
                store.token_label()
            ),
            "install the certificate the CA issued for the sign.csr that `keys init --pkcs11` made",
        );
    }
    if let Some(a) = anchors {
        r.chains(cert_key, &certs, intermediates, a);
    }
}
