//! `ndxp-node keys`: the key material of this node and its member.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ndxp_core::{MemberId, NodeName};
use ndxp_node::keys::{init_keys, KeysOptions};
use ndxp_sign::key::KeyAlgorithm;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Generate the authentication and signing keys (mode 0600) and their CSRs.
    Init {
        /// Directory to write auth.key, auth.csr, sign.key and sign.csr into.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The member that owns this node, e.g. VN/GOV/000.00.00.G22.
        #[arg(long)]
        member: MemberId,
        /// The node's name, unique within the member.
        #[arg(long)]
        node: NodeName,
        /// Key algorithm: ec-p256 (default), rsa-2048 or rsa-3072.
        #[arg(long, default_value = "ec-p256")]
        key_alg: KeyAlgorithm,
        /// DNS name or IP address for the authentication certificate (repeatable).
        #[arg(long = "alt-name")]
        alt_names: Vec<String>,
        /// Encrypt the keys with the passphrase on the first line of this file.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<PathBuf>,
    },
}

/// Runs a `keys` command.
pub fn run(command: KeysCommand) -> Result<i32> {
    match command {
        KeysCommand::Init {
            dir,
            member,
            node,
            key_alg,
            alt_names,
            passphrase_file,
        } => {
            let mut opts = KeysOptions::new(dir, member, node);
            opts.algorithm = key_alg;
            opts.alt_names = alt_names;
            opts.passphrase = passphrase_file
                .as_deref()
                .map(ndxp_sign::key::read_passphrase_file)
                .transpose()?;
            let files = init_keys(&opts).context("generating node keys")?;
            println!("wrote (keys with mode 0600):");
            for p in [
                &files.auth_key,
                &files.auth_csr,
                &files.sign_key,
                &files.sign_csr,
            ] {
                println!("  {}", p.display());
            }
            println!("next: have the CA issue auth.csr (profile auth) and sign.csr (profile sign)");
            Ok(0)
        }
    }
}
