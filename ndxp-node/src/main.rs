//! `ndxp-node`: the DXL node of NDXP's distributed model. See `docs/pki.md`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use ndxp_core::{MemberId, NodeName};
use ndxp_node::keys::{init_keys, KeysOptions};
use ndxp_sign::key::KeyAlgorithm;

/// Exit status for a bad command line or configuration (EX_USAGE).
const EXIT_USAGE: i32 = 64;

#[derive(Parser)]
#[command(name = "ndxp-node", version, about = "NDXP distributed-model node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Key material of this node and its member.
    #[command(subcommand)]
    Keys(KeysCommand),
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate the authentication and signing keys (mode 0600) and their CSRs.
    Init {
        /// Directory to write auth.key, auth.csr, sign.key and sign.csr into.
        #[arg(long)]
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
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    if let Err(e) = run(cli.command) {
        eprintln!("ndxp-node: error: {e:#}");
        std::process::exit(1);
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Keys(KeysCommand::Init {
            dir,
            member,
            node,
            key_alg,
            alt_names,
            passphrase_file,
        }) => {
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
            Ok(())
        }
    }
}
