//! Private keys: generation, PKCS#8 PEM (optionally encrypted), key files
//! that only their owner can read, and the [`KeyStore`] abstraction that
//! signing code uses so that a PKCS#11 HSM can replace files later.
//!
//! # Security behaviour
//!
//! - Encrypted keys are PKCS#8 `ENCRYPTED PRIVATE KEY` blocks using PBES2
//!   with AES-256-CBC (OpenSSL's PBKDF2 defaults).
//! - [`write_private_key_file`] creates the file with mode `0600` from its
//!   first byte (a temporary file in the same directory, `fsync`ed, then moved
//!   into place), and refuses to replace an existing file unless asked.
//! - [`read_private_key_file`] refuses a file that group or others may access
//!   in any way (`mode & 0o077 != 0`), like OpenSSH does, with an error that
//!   names the path, the mode and the fix.
//! - Reading never prompts: an encrypted key without a passphrase is a
//!   [`KeyError::PassphraseRequired`] error.
//!
//! # Example
//!
//! ```
//! use ndxp_sign::key::{self, KeyAlgorithm};
//!
//! let key = KeyAlgorithm::EcP256.generate()?;
//! let pem = key::private_key_to_pem(&key, Some(b"secret"))?;
//! assert!(key::private_key_from_pem(&pem, None).is_err());
//! let back = key::private_key_from_pem(&pem, Some(b"secret"))?;
//! assert!(back.public_eq(&key));
//! assert_eq!(KeyAlgorithm::of(&back), Some(KeyAlgorithm::EcP256));
//! # Ok::<(), ndxp_sign::key::KeyError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, Id, PKey, PKeyRef, Private, Public};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{RsaPssSaltlen, Signer};
use openssl::symm::Cipher;
use openssl::x509::X509;

/// Errors from key generation, encoding, files and key stores.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The algorithm name is not one of `ec-p256`, `rsa-2048`, `rsa-3072`.
    #[error("unknown key algorithm {0:?}; expected ec-p256, rsa-2048 or rsa-3072")]
    UnknownAlgorithm(String),
    /// OpenSSL could not generate a key.
    #[error("could not generate a {algorithm} key")]
    Generate {
        /// The algorithm asked for.
        algorithm: KeyAlgorithm,
        /// The OpenSSL error.
        #[source]
        source: ErrorStack,
    },
    /// OpenSSL could not encode a key.
    #[error("could not encode the private key as PKCS#8 PEM")]
    Encode(#[source] ErrorStack),
    /// The key is encrypted and no passphrase was given.
    #[error("{what} is encrypted; supply its passphrase")]
    PassphraseRequired {
        /// What was being read (a file path or "PEM input").
        what: String,
    },
    /// Decryption failed: the passphrase is wrong (or the data is corrupt).
    #[error("could not decrypt {what}: wrong passphrase, or the key is corrupt")]
    WrongPassphrase {
        /// What was being read.
        what: String,
        /// The OpenSSL error.
        #[source]
        source: ErrorStack,
    },
    /// The input is not a PEM private key OpenSSL can read.
    #[error("{what} is not a PEM private key (expected a PKCS#8 `PRIVATE KEY` or `ENCRYPTED PRIVATE KEY` block)")]
    Malformed {
        /// What was being read.
        what: String,
        /// The OpenSSL error.
        #[source]
        source: ErrorStack,
    },
    /// A file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done, e.g. "could not read".
        op: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The key file exists and overwriting was not asked for.
    #[error("{} already exists; refusing to overwrite a private key (remove it first, or ask for overwriting explicitly)", path.display())]
    AlreadyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// The key file may be read or written by group or others.
    #[error("private key file {} has mode {mode:04o}, which lets group or others access it; run `chmod 600 {}`", path.display(), path.display())]
    InsecurePermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// The key is neither an EC P-256 nor an RSA (2048 bits or more) key.
    #[error("unsupported key type: {0}; NDXP uses EC P-256 or RSA keys of 2048 bits or more")]
    UnsupportedKey(String),
    /// A passphrase file whose first line is empty.
    #[error("the passphrase file {} is empty; its first line must hold the passphrase", path.display())]
    EmptyPassphrase {
        /// The file.
        path: PathBuf,
    },
    /// A key store has no key under this name.
    #[error("the key store has no key named {0:?}")]
    UnknownKey(String),
    /// A key store has no certificate for this key.
    #[error("the key store has no certificate for key {0:?}")]
    NoCertificate(String),
    /// Signing failed.
    #[error("signing with key {name:?} failed")]
    Sign {
        /// The key name.
        name: String,
        /// The OpenSSL error.
        #[source]
        source: ErrorStack,
    },
    /// Reading a public key or certificate from the store failed.
    #[error("could not read the public key of {name:?}")]
    PublicKey {
        /// The key name.
        name: String,
        /// The OpenSSL error.
        #[source]
        source: ErrorStack,
    },
    /// A PKCS#11 token failed (see [`crate::pkcs11::Pkcs11Error`]).
    #[cfg(feature = "pkcs11")]
    #[error(transparent)]
    Pkcs11(Box<crate::pkcs11::Pkcs11Error>),
    /// A certificate file could not be parsed.
    #[error("{} is not a PEM certificate", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// The OpenSSL error.
        #[source]
        source: ErrorStack,
    },
}

/// A key algorithm NDXP generates keys for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (`ec-p256`), the default.
    #[default]
    EcP256,
    /// RSA with a 2048-bit modulus (`rsa-2048`).
    Rsa2048,
    /// RSA with a 3072-bit modulus (`rsa-3072`).
    Rsa3072,
}

impl KeyAlgorithm {
    /// The name used on the command line and in files, e.g. `ec-p256`.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcP256 => "ec-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa3072 => "rsa-3072",
        }
    }

    /// Generates a new private key.
    pub fn generate(self) -> Result<PKey<Private>, KeyError> {
        let gen = || -> Result<PKey<Private>, ErrorStack> {
            match self {
                KeyAlgorithm::EcP256 => {
                    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
                    PKey::from_ec_key(EcKey::generate(&group)?)
                }
                KeyAlgorithm::Rsa2048 => PKey::from_rsa(Rsa::generate(2048)?),
                KeyAlgorithm::Rsa3072 => PKey::from_rsa(Rsa::generate(3072)?),
            }
        };
        gen().map_err(|source| KeyError::Generate {
            algorithm: self,
            source,
        })
    }

    /// The algorithm of an existing key, if it is exactly one of ours.
    pub fn of<T: HasPublic>(key: &PKeyRef<T>) -> Option<KeyAlgorithm> {
        match key_kind(key) {
            Some(KeyKind::EcP256) => Some(KeyAlgorithm::EcP256),
            Some(KeyKind::Rsa(2048)) => Some(KeyAlgorithm::Rsa2048),
            Some(KeyKind::Rsa(3072)) => Some(KeyAlgorithm::Rsa3072),
            _ => None,
        }
    }
}

/// The broad kind of a key NDXP accepts (used for CSR vetting and key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    EcP256,
    Rsa(u32),
}

/// Classifies a key: EC P-256, or RSA with its size. `None` for anything else.
pub(crate) fn key_kind<T: HasPublic>(key: &PKeyRef<T>) -> Option<KeyKind> {
    match key.id() {
        Id::EC => {
            let ec = key.ec_key().ok()?;
            (ec.group().curve_name() == Some(Nid::X9_62_PRIME256V1)).then_some(KeyKind::EcP256)
        }
        Id::RSA => Some(KeyKind::Rsa(key.bits())),
        _ => None,
    }
}

/// Checks that a key is one NDXP accepts: EC P-256 or RSA of at least 2048 bits.
pub(crate) fn check_acceptable<T: HasPublic>(key: &PKeyRef<T>) -> Result<KeyKind, KeyError> {
    match key_kind(key) {
        Some(KeyKind::Rsa(bits)) if bits < 2048 => {
            Err(KeyError::UnsupportedKey(format!("RSA {bits} bits")))
        }
        Some(k) => Ok(k),
        None => Err(KeyError::UnsupportedKey(describe_key(key))),
    }
}

fn describe_key<T: HasPublic>(key: &PKeyRef<T>) -> String {
    match key.id() {
        Id::EC => match key.ec_key().ok().and_then(|k| k.group().curve_name()) {
            Some(nid) => format!(
                "EC curve {}",
                nid.short_name().unwrap_or("with an unknown name")
            ),
            None => "EC with explicit parameters".to_string(),
        },
        Id::ED25519 => "Ed25519".to_string(),
        Id::ED448 => "Ed448".to_string(),
        Id::DSA => "DSA".to_string(),
        other => format!("key type {}", other.as_raw()),
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        match s {
            "ec-p256" => Ok(KeyAlgorithm::EcP256),
            "rsa-2048" => Ok(KeyAlgorithm::Rsa2048),
            "rsa-3072" => Ok(KeyAlgorithm::Rsa3072),
            _ => Err(KeyError::UnknownAlgorithm(s.to_string())),
        }
    }
}

/// Reads a passphrase from the first line of a file (without its line
/// ending), as operators pass it with `--passphrase-file`. An empty first
/// line is an error rather than an empty passphrase.
pub fn read_passphrase_file(path: &Path) -> Result<Vec<u8>, KeyError> {
    let data = std::fs::read(path).map_err(|source| KeyError::Io {
        op: "could not read the passphrase file",
        path: path.to_path_buf(),
        source,
    })?;
    let line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        return Err(KeyError::EmptyPassphrase {
            path: path.to_path_buf(),
        });
    }
    Ok(line.to_vec())
}

/// Encodes a private key as PKCS#8 PEM; with a passphrase, as an encrypted
/// PKCS#8 block (PBES2, AES-256-CBC).
pub fn private_key_to_pem(
    key: &PKeyRef<Private>,
    passphrase: Option<&[u8]>,
) -> Result<Vec<u8>, KeyError> {
    match passphrase {
        Some(p) => key.private_key_to_pem_pkcs8_passphrase(Cipher::aes_256_cbc(), p),
        None => key.private_key_to_pem_pkcs8(),
    }
    .map_err(KeyError::Encode)
}

/// Reads a PEM private key (PKCS#8, encrypted or not; traditional
/// `EC PRIVATE KEY`/`RSA PRIVATE KEY` blocks are accepted too).
pub fn private_key_from_pem(
    pem: &[u8],
    passphrase: Option<&[u8]>,
) -> Result<PKey<Private>, KeyError> {
    parse_key(pem, passphrase, "PEM input")
}

fn parse_key(pem: &[u8], passphrase: Option<&[u8]>, what: &str) -> Result<PKey<Private>, KeyError> {
    let encrypted = contains(pem, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(pem, b"Proc-Type: 4,ENCRYPTED");
    if !encrypted {
        // A callback that supplies no passphrase: OpenSSL never prompts.
        return PKey::private_key_from_pem_callback(pem, |_| Ok(0)).map_err(|source| {
            KeyError::Malformed {
                what: what.to_string(),
                source,
            }
        });
    }
    let Some(pass) = passphrase else {
        return Err(KeyError::PassphraseRequired {
            what: what.to_string(),
        });
    };
    PKey::private_key_from_pem_passphrase(pem, pass).map_err(|source| KeyError::WrongPassphrase {
        what: what.to_string(),
        source,
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Writes `key` to `path` as PKCS#8 PEM (encrypted if a passphrase is given),
/// in a file with mode `0600` from its creation. Refuses to replace an
/// existing file unless `overwrite` is true.
pub fn write_private_key_file(
    path: &Path,
    key: &PKeyRef<Private>,
    passphrase: Option<&[u8]>,
    overwrite: bool,
) -> Result<(), KeyError> {
    let pem = private_key_to_pem(key, passphrase)?;
    write_file_atomic(path, &pem, 0o600, overwrite).map_err(|source| {
        if source.kind() == io::ErrorKind::AlreadyExists {
            KeyError::AlreadyExists {
                path: path.to_path_buf(),
            }
        } else {
            KeyError::Io {
                op: "could not write private key file",
                path: path.to_path_buf(),
                source,
            }
        }
    })
}

/// Reads a private key file, refusing one that group or others can access.
pub fn read_private_key_file(
    path: &Path,
    passphrase: Option<&[u8]>,
) -> Result<PKey<Private>, KeyError> {
    let io_err = |source| KeyError::Io {
        op: "could not read private key file",
        path: path.to_path_buf(),
        source,
    };
    let meta = fs::metadata(path).map_err(io_err)?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let pem = fs::read(path).map_err(io_err)?;
    parse_key(
        &pem,
        passphrase,
        &format!("private key file {}", path.display()),
    )
}

pub(crate) use crate::files::write_file_atomic;

/// How an RSA signature is padded (ignored for EC keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RsaPadding {
    /// RSASSA-PSS with MGF1 using the same digest and a salt as long as the
    /// digest (the RFC 9421 `rsa-pss-sha512` convention). The default: current
    /// Vietnamese rules require PSS.
    #[default]
    Pss,
    /// RSASSA-PKCS1-v1_5, for older keys and peers.
    Pkcs1v15,
}

/// Signs with named keys. Implemented by [`FileKeyStore`] and, with the
/// `pkcs11` feature, by `pkcs11::Pkcs11KeyStore` (a key on a token).
///
/// Signatures are in OpenSSL's native form: DER `ECDSA-Sig-Value` for EC
/// keys, the raw RSA signature block for RSA keys.
pub trait KeyStore: Send + Sync {
    /// Signs `data` (hashed with `digest` inside the store) with key `name`.
    fn sign(
        &self,
        name: &str,
        digest: MessageDigest,
        padding: RsaPadding,
        data: &[u8],
    ) -> Result<Vec<u8>, KeyError>;

    /// The public key of `name`.
    fn public_key(&self, name: &str) -> Result<PKey<Public>, KeyError>;

    /// The certificate of `name`.
    fn certificate(&self, name: &str) -> Result<X509, KeyError>;
}

struct Entry {
    key: PKey<Private>,
    cert: Option<X509>,
}

/// A [`KeyStore`] of keys loaded from files (or added directly), held in
/// memory.
#[derive(Default)]
pub struct FileKeyStore {
    entries: HashMap<String, Entry>,
}

impl fmt::Debug for FileKeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material; names only.
        let mut names: Vec<&String> = self.entries.keys().collect();
        names.sort();
        f.debug_struct("FileKeyStore")
            .field("keys", &names)
            .finish()
    }
}

impl FileKeyStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a key and its optional certificate under `name`.
    pub fn insert(&mut self, name: &str, key: PKey<Private>, cert: Option<X509>) {
        self.entries.insert(name.to_string(), Entry { key, cert });
    }

    /// Loads a key file (checked as [`read_private_key_file`] does) and an
    /// optional PEM certificate file under `name`.
    pub fn load(
        &mut self,
        name: &str,
        key_path: &Path,
        cert_path: Option<&Path>,
        passphrase: Option<&[u8]>,
    ) -> Result<(), KeyError> {
        let key = read_private_key_file(key_path, passphrase)?;
        let cert = match cert_path {
            Some(p) => {
                let pem = fs::read(p).map_err(|source| KeyError::Io {
                    op: "could not read certificate file",
                    path: p.to_path_buf(),
                    source,
                })?;
                Some(
                    X509::from_pem(&pem).map_err(|source| KeyError::BadCertificate {
                        path: p.to_path_buf(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        self.insert(name, key, cert);
        Ok(())
    }

    fn entry(&self, name: &str) -> Result<&Entry, KeyError> {
        self.entries
            .get(name)
            .ok_or_else(|| KeyError::UnknownKey(name.to_string()))
    }
}

/// Signs `data` with `key`: ECDSA (DER signature) for EC keys, RSA with the
/// given padding for RSA keys.
pub fn sign_with(
    key: &PKeyRef<Private>,
    digest: MessageDigest,
    padding: RsaPadding,
    data: &[u8],
) -> Result<Vec<u8>, ErrorStack> {
    let mut signer = Signer::new(digest, key)?;
    if key.id() == Id::RSA {
        match padding {
            RsaPadding::Pss => {
                signer.set_rsa_padding(Padding::PKCS1_PSS)?;
                signer.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH)?;
            }
            RsaPadding::Pkcs1v15 => signer.set_rsa_padding(Padding::PKCS1)?,
        }
    }
    signer.sign_oneshot_to_vec(data)
}

impl KeyStore for FileKeyStore {
    fn sign(
        &self,
        name: &str,
        digest: MessageDigest,
        padding: RsaPadding,
        data: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let entry = self.entry(name)?;
        sign_with(&entry.key, digest, padding, data).map_err(|source| KeyError::Sign {
            name: name.to_string(),
            source,
        })
    }

    fn public_key(&self, name: &str) -> Result<PKey<Public>, KeyError> {
        let entry = self.entry(name)?;
        entry
            .key
            .public_key_to_der()
            .and_then(|der| PKey::public_key_from_der(&der))
            .map_err(|source| KeyError::PublicKey {
                name: name.to_string(),
                source,
            })
    }

    fn certificate(&self, name: &str) -> Result<X509, KeyError> {
        self.entry(name)?
            .cert
            .clone()
            .ok_or_else(|| KeyError::NoCertificate(name.to_string()))
    }
}
