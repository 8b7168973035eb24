//! `ndxp-node keys`: the key material of this node and its member.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ndxp_core::{MemberId, NodeName};
use ndxp_node::keys::{init_keys, init_token_keys, KeysOptions};
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::pkcs11::Pkcs11Settings;

#[derive(clap::Subcommand)]
pub enum KeysCommand {
    /// Generate the authentication and signing keys (mode 0600) and their CSRs.
    ///
    /// With --pkcs11 the signing key is generated on (or, with
    /// --use-existing, found on) a PKCS#11 token and never written to a
    /// file: sign.csr is signed on the token, and no sign.key is written;
    /// auth.key/auth.csr are made when auth.key is missing and kept
    /// otherwise. The PIN comes from --pin-file or --pin-env, never from
    /// the command line.
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
        /// Put the member signing key on a PKCS#11 token (see above).
        #[arg(long, requires = "module")]
        pkcs11: bool,
        #[command(flatten)]
        token: TokenArgs,
        /// Use the key already on the token (--key-label/--key-id) instead
        /// of generating one.
        #[arg(long, requires = "pkcs11")]
        use_existing: bool,
    },
}

/// Where the signing key goes with `--pkcs11` (the keys of
/// `[node.sign_pkcs11]`).
#[derive(clap::Args)]
pub struct TokenArgs {
    /// The token vendor's PKCS#11 module, e.g. /usr/lib/softhsm/libsofthsm2.so.
    #[arg(long, requires = "pkcs11")]
    module: Option<PathBuf>,
    /// The token's label.
    #[arg(long, requires = "pkcs11", conflicts_with = "slot")]
    token_label: Option<String>,
    /// The token's slot id (instead of --token-label).
    #[arg(long, requires = "pkcs11")]
    slot: Option<u64>,
    /// File whose first line is the user PIN (mode 0600).
    #[arg(long, requires = "pkcs11", conflicts_with = "pin_env")]
    pin_file: Option<PathBuf>,
    /// Environment variable that holds the user PIN (instead of --pin-file).
    #[arg(long, requires = "pkcs11")]
    pin_env: Option<String>,
    /// The key's label on the token (CKA_LABEL), e.g. member-sign.
    #[arg(long, requires = "pkcs11", conflicts_with = "key_id")]
    key_label: Option<String>,
    /// The key's id on the token (CKA_ID, hexadecimal; instead of --key-label).
    #[arg(long, requires = "pkcs11")]
    key_id: Option<String>,
}

impl TokenArgs {
    fn settings(self) -> Pkcs11Settings {
        let absolute = |p: PathBuf| std::path::absolute(&p).unwrap_or(p);
        Pkcs11Settings {
            module: self.module.unwrap_or_default(),
            token_label: self.token_label,
            slot: self.slot,
            pin_file: self.pin_file.map(absolute),
            pin_env: self.pin_env,
            key_label: self.key_label,
            key_id: self.key_id,
            max_sessions: None,
        }
    }
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
            pkcs11,
            token,
            use_existing,
        } => {
            let mut opts = KeysOptions::new(dir, member, node);
            opts.algorithm = key_alg;
            opts.alt_names = alt_names;
            opts.passphrase = passphrase_file
                .as_deref()
                .map(ndxp_sign::key::read_passphrase_file)
                .transpose()?;
            if pkcs11 {
                return init_on_token(&opts, token.settings(), use_existing);
            }
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

fn init_on_token(opts: &KeysOptions, settings: Pkcs11Settings, use_existing: bool) -> Result<i32> {
    let config = match settings.to_config() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ndxp-node: error: --pkcs11: {e}");
            return Ok(64);
        }
    };
    let files = init_token_keys(opts, &config, use_existing)
        .context("putting the member signing key on the PKCS#11 token")?;
    println!(
        "signing key {} {} on PKCS#11 token {:?} (it never leaves the token; no sign.key is written)",
        config.key,
        if files.generated { "generated" } else { "found" },
        files.token_label
    );
    println!("wrote:");
    for p in [&files.auth_key, &files.auth_csr].into_iter().flatten() {
        println!("  {}", p.display());
    }
    println!("  {}", files.sign_csr.display());
    if files.auth_key.is_none() {
        println!("kept the existing {}", opts.dir.join("auth.key").display());
    }
    let table = toml::to_string(&settings).context("printing the configuration")?;
    println!("add to node.toml (after the [node] table):\n\n[node.sign_pkcs11]\n{table}");
    println!("next: have the CA issue sign.csr (profile sign) and install it as sign.pem");
    Ok(0)
}
