//! Key material of a node: the **authentication key** (TLS between nodes,
//! certificate profile `auth`) and the member's **signing key** (RFC 9421
//! message signatures, profile `sign`), each written with mode 0600 beside a
//! PKCS#10 CSR for the platform CA.
//!
//! Layout of the directory:
//!
//! | file | what |
//! |---|---|
//! | `auth.key` | node authentication private key, PKCS#8 PEM, mode 0600 |
//! | `auth.csr` | CSR for the `auth` profile (member + node name) |
//! | `sign.key` | member signing private key, PKCS#8 PEM, mode 0600 |
//! | `sign.csr` | CSR for the `sign` profile (member) |
//!
//! With [`init_token_keys`] the signing key is made (or found) on a PKCS#11
//! token instead and never written anywhere: the directory gets
//! `sign.csr`, signed on the token, and no `sign.key`; the authentication
//! key stays a file (made when `auth.key` is missing, kept otherwise).

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ndxp_core::{MemberId, NodeName};
use ndxp_sign::csr::{build_auth_csr, build_sign_csr, csr_to_pem};
use ndxp_sign::key::{self, KeyAlgorithm};

/// What to generate.
#[derive(Debug, Clone)]
pub struct KeysOptions {
    /// Directory to write into; created with mode 0700 if missing.
    pub dir: PathBuf,
    /// The member that owns the node.
    pub member: MemberId,
    /// The node's name, unique within the member.
    pub node: NodeName,
    /// Key algorithm for both keys.
    pub algorithm: KeyAlgorithm,
    /// DNS names and IP addresses to request in the authentication
    /// certificate's subjectAltName (the CA decides what it grants).
    pub alt_names: Vec<String>,
    /// Encrypt both private keys with this passphrase (PKCS#8, AES-256).
    pub passphrase: Option<Vec<u8>>,
}

impl KeysOptions {
    /// Defaults: EC P-256 keys, no alternative names, no passphrase.
    pub fn new(dir: PathBuf, member: MemberId, node: NodeName) -> Self {
        Self {
            dir,
            member,
            node,
            algorithm: KeyAlgorithm::EcP256,
            alt_names: Vec::new(),
            passphrase: None,
        }
    }
}

/// The files written by [`init_keys`].
#[derive(Debug, Clone)]
pub struct KeyFiles {
    /// `auth.key`
    pub auth_key: PathBuf,
    /// `auth.csr`
    pub auth_csr: PathBuf,
    /// `sign.key`
    pub sign_key: PathBuf,
    /// `sign.csr`
    pub sign_csr: PathBuf,
}

/// Why key generation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeysError {
    /// A file that would be written exists already; nothing was written.
    #[error("{0} exists already; refusing to overwrite key material")]
    Exists(PathBuf),
    /// The directory could not be created or written.
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Key generation or writing failed.
    #[error("key generation failed")]
    Key(#[from] ndxp_sign::key::KeyError),
    /// CSR building failed.
    #[error("building the certificate signing request failed")]
    Csr(#[from] ndxp_sign::csr::CsrError),
    /// The PKCS#11 token refused or failed.
    #[error("PKCS#11 token")]
    Token(#[from] ndxp_sign::pkcs11::Pkcs11Error),
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeysError + '_ {
    move |source| KeysError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Generates both keys and their CSRs. Refuses to touch a directory that
/// already holds any of the four files.
pub fn init_keys(opts: &KeysOptions) -> Result<KeyFiles, KeysError> {
    let d = &opts.dir;
    let files = KeyFiles {
        auth_key: d.join("auth.key"),
        auth_csr: d.join("auth.csr"),
        sign_key: d.join("sign.key"),
        sign_csr: d.join("sign.csr"),
    };
    for p in [
        &files.auth_key,
        &files.auth_csr,
        &files.sign_key,
        &files.sign_csr,
    ] {
        if p.exists() {
            return Err(KeysError::Exists(p.clone()));
        }
    }
    let pass = opts.passphrase.as_deref();

    let (ips, dns) = split_alt_names(&opts.alt_names);

    // Build everything before writing anything, so bad input leaves no files.
    let auth = opts.algorithm.generate()?;
    let auth_req = build_auth_csr(&opts.member, &opts.node, &dns, &ips, &auth)?;
    let auth_csr = csr_to_pem(&auth_req)?;
    let sign = opts.algorithm.generate()?;
    let sign_req = build_sign_csr(&opts.member, &sign)?;
    let sign_csr = csr_to_pem(&sign_req)?;

    create_private_dir(d)?;
    key::write_private_key_file(&files.auth_key, &auth, pass, false)?;
    write_public(&files.auth_csr, &auth_csr)?;
    key::write_private_key_file(&files.sign_key, &sign, pass, false)?;
    write_public(&files.sign_csr, &sign_csr)?;
    Ok(files)
}

fn write_public(path: &Path, data: &[u8]) -> Result<(), KeysError> {
    std::fs::write(path, data).map_err(io_err(path))
}

fn create_private_dir(dir: &Path) -> Result<(), KeysError> {
    ndxp_sign::files::create_private_dir_all(dir).map_err(io_err(dir))
}

/// The files written by [`init_token_keys`].
#[derive(Debug, Clone)]
pub struct TokenKeyFiles {
    /// `auth.key`, when it was made now (`None`: an existing one was kept).
    pub auth_key: Option<PathBuf>,
    /// `auth.csr`, when it was made now.
    pub auth_csr: Option<PathBuf>,
    /// `sign.csr`, signed with the key on the token.
    pub sign_csr: PathBuf,
    /// Whether the signing key was generated now (`false`: found).
    pub generated: bool,
    /// The token's label.
    pub token_label: String,
}

/// Puts the member signing key on a PKCS#11 token: generates it there
/// (`opts.algorithm`; refused when the token already holds a key with the
/// configured label or id) or, with `use_existing`, finds it; then writes
/// `sign.csr`, signed on the token. The private key never leaves the token
/// and no `sign.key` is written. `auth.key` and `auth.csr` are made as by
/// [`init_keys`] when `auth.key` is missing, and left alone otherwise (a
/// node that moves its signing key to a token keeps its authentication
/// key). Refuses to overwrite `sign.csr` (and `auth.csr` when it would
/// write it).
pub fn init_token_keys(
    opts: &KeysOptions,
    token: &ndxp_sign::pkcs11::Pkcs11Config,
    use_existing: bool,
) -> Result<TokenKeyFiles, KeysError> {
    let d = &opts.dir;
    let sign_csr_path = d.join("sign.csr");
    let auth_key_path = d.join("auth.key");
    let auth_csr_path = d.join("auth.csr");
    let make_auth = !auth_key_path.exists();
    let mut must_be_new = vec![&sign_csr_path];
    if make_auth {
        must_be_new.push(&auth_csr_path);
    }
    for p in must_be_new {
        if p.exists() {
            return Err(KeysError::Exists(p.clone()));
        }
    }
    let auth = if make_auth {
        let (ips, dns) = split_alt_names(&opts.alt_names);
        let key = opts.algorithm.generate()?;
        let req = build_auth_csr(&opts.member, &opts.node, &dns, &ips, &key)?;
        Some((key, csr_to_pem(&req)?))
    } else {
        None
    };
    let store = ndxp_sign::pkcs11::Pkcs11KeyStore::open(token)?;
    if use_existing {
        store.find_key()?;
    } else {
        store.generate_key(opts.algorithm)?;
    }
    let sign_req = store.build_csr(
        &ndxp_sign::cert::Identity::Member(opts.member.clone()),
        &[],
        &[],
    )?;
    let sign_csr = csr_to_pem(&sign_req)?;

    create_private_dir(d)?;
    let (auth_key, auth_csr) = match auth {
        Some((key, csr)) => {
            key::write_private_key_file(&auth_key_path, &key, opts.passphrase.as_deref(), false)?;
            write_public(&auth_csr_path, &csr)?;
            (Some(auth_key_path), Some(auth_csr_path))
        }
        None => (None, None),
    };
    write_public(&sign_csr_path, &sign_csr)?;
    Ok(TokenKeyFiles {
        auth_key,
        auth_csr,
        sign_csr: sign_csr_path,
        generated: !use_existing,
        token_label: store.token_label().to_string(),
    })
}

fn split_alt_names(names: &[String]) -> (Vec<IpAddr>, Vec<String>) {
    let (ips, dns): (Vec<_>, Vec<_>) = names.iter().partition(|n| n.parse::<IpAddr>().is_ok());
    let ips = ips.iter().filter_map(|n| n.parse().ok()).collect();
    (ips, dns.into_iter().cloned().collect())
}
