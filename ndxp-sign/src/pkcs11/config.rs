//! Configuration and errors of the PKCS#11 key store.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use cryptoki::error::Error as CkError;
use cryptoki::object::Attribute;
use cryptoki::types::AuthPin;
use openssl::error::ErrorStack;

use crate::csr::CsrError;
use crate::key::KeyError;

/// Errors of the PKCS#11 key store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Pkcs11Error {
    /// The module path does not name a file.
    #[error("PKCS#11 module {} not found; install the token vendor's library (for SoftHSM2: apt-get install softhsm2) or fix the module path", path.display())]
    ModuleNotFound {
        /// The configured path.
        path: PathBuf,
    },
    /// The module exists but could not be loaded or initialised.
    #[error("could not load the PKCS#11 module {}", path.display())]
    ModuleLoad {
        /// The configured path.
        path: PathBuf,
        /// What the loader or the module said.
        #[source]
        source: CkError,
    },
    /// No slot holds the configured token.
    #[error("no PKCS#11 token {wanted} in module {}; tokens present: {}", module.display(), if present.is_empty() { "none".to_string() } else { present.join(", ") })]
    TokenNotFound {
        /// The token asked for (`label "x"` or `slot 3`).
        wanted: String,
        /// The module.
        module: PathBuf,
        /// The tokens the module shows (label and slot id).
        present: Vec<String>,
    },
    /// More than one slot holds a token with the configured label.
    #[error("more than one PKCS#11 token is labelled {0:?}; select the token by slot id")]
    AmbiguousToken(String),
    /// The token refused the PIN (`CKR_PIN_INCORRECT`).
    #[error("the PIN for PKCS#11 token {token} is incorrect")]
    PinIncorrect {
        /// The token.
        token: String,
    },
    /// The token's user PIN is locked after too many wrong attempts.
    #[error(
        "the user PIN of PKCS#11 token {token} is locked; the security officer must unlock it"
    )]
    PinLocked {
        /// The token.
        token: String,
    },
    /// The PIN file may be read or written by group or others.
    #[error("PIN file {} has mode {mode:04o}, which lets group or others access it; run `chmod 600 {}`", path.display(), path.display())]
    PinFileInsecure {
        /// The PIN file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The PIN file could not be read, or its first line is empty.
    #[error("could not read the PIN file")]
    PinFile(#[source] KeyError),
    /// The PIN environment variable is unset, empty or not UTF-8.
    #[error("the PIN environment variable {0} is not set (or is empty)")]
    PinEnvMissing(String),
    /// The PIN is not valid UTF-8.
    #[error("the PIN from {0} is not UTF-8 text")]
    PinNotText(String),
    /// No key pair with the configured label or id is on the token.
    #[error("no key {key} on PKCS#11 token {token}")]
    KeyNotFound {
        /// The key asked for.
        key: String,
        /// The token.
        token: String,
    },
    /// More than one private key matches the configured label or id.
    #[error("more than one private key {key} on PKCS#11 token {token}; select the key by id")]
    AmbiguousKey {
        /// The key asked for.
        key: String,
        /// The token.
        token: String,
    },
    /// The private key has no matching public key object on the token.
    #[error("the private key {key} on PKCS#11 token {token} has no public key object with the same CKA_ID")]
    NoPublicKey {
        /// The key.
        key: String,
        /// The token.
        token: String,
    },
    /// Generating refused because a key with that label or id exists.
    #[error("a key {key} already exists on PKCS#11 token {token}; refusing to make a second one")]
    KeyExists {
        /// The key.
        key: String,
        /// The token.
        token: String,
    },
    /// No key has been found or generated in this store yet.
    #[error("no key selected yet: call find_key or generate_key first")]
    NoKeySelected,
    /// The token was removed, or the module lost it.
    #[error("PKCS#11 token {token} was removed or is not present")]
    TokenRemoved {
        /// The token.
        token: String,
    },
    /// The key on the token is not EC P-256 or RSA of 2048 bits or more.
    #[error("the key on the token is not usable: {0}")]
    UnsupportedKey(String),
    /// The digest is not SHA-256, SHA-384 or SHA-512.
    #[error("digest {0} is not supported for PKCS#11 signing (SHA-256, SHA-384 and SHA-512 are)")]
    UnsupportedDigest(String),
    /// The pool size is zero.
    #[error("max_sessions must be at least 1")]
    NoSessions,
    /// Any other failure reported by the module.
    #[error("PKCS#11 {op} failed on token {token}")]
    Token {
        /// What was being done.
        op: &'static str,
        /// The token.
        token: String,
        /// The module's error.
        #[source]
        source: CkError,
    },
    /// OpenSSL failed on what the token returned.
    #[error("could not decode the token's {what}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The OpenSSL error.
        #[source]
        source: ErrorStack,
    },
    /// Building the CSR failed.
    #[error("could not build the certificate request")]
    Csr(#[source] CsrError),
}

impl From<Pkcs11Error> for KeyError {
    fn from(e: Pkcs11Error) -> Self {
        KeyError::Pkcs11(Box::new(e))
    }
}

/// Which token to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSelector {
    /// The token whose `CKA_LABEL`/token label is this (trailing blanks of
    /// the 32-byte field ignored).
    Label(String),
    /// The token in the slot with this id.
    Slot(u64),
}

impl fmt::Display for TokenSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSelector::Label(l) => write!(f, "label {l:?}"),
            TokenSelector::Slot(s) => write!(f, "slot {s}"),
        }
    }
}

/// Where the user PIN comes from. Never the PIN itself: configuration
/// files and command lines are read by too many people and tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// The first line of this file, which must not be accessible to group
    /// or others (mode `0600` or stricter).
    File(PathBuf),
    /// The value of this environment variable.
    Env(String),
}

impl PinSource {
    /// Reads the PIN.
    ///
    /// # Errors
    /// [`Pkcs11Error::PinFileInsecure`] for a file group or others may
    /// access, [`Pkcs11Error::PinFile`] for an unreadable or empty one,
    /// [`Pkcs11Error::PinEnvMissing`] for an unset or empty variable.
    pub fn read(&self) -> Result<AuthPin, Pkcs11Error> {
        match self {
            PinSource::File(path) => {
                let meta = std::fs::metadata(path).map_err(|source| {
                    Pkcs11Error::PinFile(KeyError::Io {
                        op: "could not read the PIN file",
                        path: path.clone(),
                        source,
                    })
                })?;
                let mode = meta.permissions().mode() & 0o7777;
                if mode & 0o077 != 0 {
                    return Err(Pkcs11Error::PinFileInsecure {
                        path: path.clone(),
                        mode,
                    });
                }
                let line = crate::key::read_passphrase_file(path).map_err(Pkcs11Error::PinFile)?;
                let text = String::from_utf8(line)
                    .map_err(|_| Pkcs11Error::PinNotText(path.display().to_string()))?;
                Ok(AuthPin::from(text))
            }
            PinSource::Env(var) => match std::env::var(var) {
                Ok(v) if !v.is_empty() => Ok(AuthPin::from(v)),
                Ok(_) | Err(std::env::VarError::NotPresent) => {
                    Err(Pkcs11Error::PinEnvMissing(var.clone()))
                }
                Err(std::env::VarError::NotUnicode(_)) => Err(Pkcs11Error::PinNotText(var.clone())),
            },
        }
    }
}

/// Which key pair on the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// The key pair with this `CKA_LABEL`.
    Label(String),
    /// The key pair with this `CKA_ID` (bytes).
    Id(Vec<u8>),
}

impl fmt::Display for KeySelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySelector::Label(l) => f.write_str(l),
            KeySelector::Id(id) => write!(f, "id:{}", hex::encode(id)),
        }
    }
}

impl KeySelector {
    pub(super) fn attribute(&self) -> Attribute {
        match self {
            KeySelector::Label(l) => Attribute::Label(l.as_bytes().to_vec()),
            KeySelector::Id(id) => Attribute::Id(id.clone()),
        }
    }
}

/// Configuration of a [`Pkcs11KeyStore`](super::Pkcs11KeyStore): which module, token, PIN and
/// key. Holds no secret, so its `Debug` output is safe to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library) of the token's vendor.
    pub module: PathBuf,
    /// The token.
    pub token: TokenSelector,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// The key pair.
    pub key: KeySelector,
    /// How many sessions the store keeps open at most (default 4). Signing
    /// threads beyond this wait for a free session.
    pub max_sessions: usize,
}

impl Pkcs11Config {
    /// A configuration with the default pool size.
    pub fn new(
        module: impl Into<PathBuf>,
        token: TokenSelector,
        pin: PinSource,
        key: KeySelector,
    ) -> Self {
        Self {
            module: module.into(),
            token,
            pin,
            key,
            max_sessions: 4,
        }
    }
}

/// The configuration-file form of a [`Pkcs11Config`], shared by the
/// binaries (`ndxp-node`'s `[node.sign_pkcs11]`): plain fields that
/// `serde` reads from TOML and that environment overrides can set one by
/// one. [`Pkcs11Settings::to_config`] checks that exactly one token, one
/// PIN source and one key are named.
///
/// ```
/// use ndxp_sign::pkcs11::{KeySelector, Pkcs11Settings, TokenSelector};
///
/// let s: Pkcs11Settings = serde_json::from_str(
///     r#"{"module": "/usr/lib/softhsm/libsofthsm2.so", "token_label": "ndxp",
///         "pin_file": "/etc/ndxp/token.pin", "key_label": "member-sign"}"#,
/// ).unwrap();
/// let c = s.to_config().unwrap();
/// assert_eq!(c.token, TokenSelector::Label("ndxp".into()));
/// assert_eq!(c.key, KeySelector::Label("member-sign".into()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Settings {
    /// The vendor's PKCS#11 module (shared library).
    pub module: PathBuf,
    /// The token's label; or give `slot`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_label: Option<String>,
    /// The token's slot id; or give `token_label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slot: Option<u64>,
    /// File whose first line is the user PIN (mode 0600); or give `pin_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    /// Environment variable holding the user PIN; or give `pin_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
    /// The key pair's `CKA_LABEL`; or give `key_id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_label: Option<String>,
    /// The key pair's `CKA_ID` in hexadecimal; or give `key_label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Most sessions open at once (default 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
}

impl Pkcs11Settings {
    /// The key store configuration these settings describe.
    ///
    /// # Errors
    /// A sentence naming the fields at fault: none or both of
    /// `token_label`/`slot`, `pin_file`/`pin_env`, `key_label`/`key_id`;
    /// an empty module path or label; a `key_id` that is not hexadecimal;
    /// `max_sessions = 0`.
    pub fn to_config(&self) -> Result<Pkcs11Config, String> {
        if self.module.as_os_str().is_empty() {
            return Err("`module` is empty: give the path of the token's PKCS#11 library".into());
        }
        let token = match (&self.token_label, self.slot) {
            (Some(l), None) if !l.is_empty() => TokenSelector::Label(l.clone()),
            (None, Some(s)) => TokenSelector::Slot(s),
            (Some(_), None) => return Err("`token_label` is empty".into()),
            (None, None) => return Err("name the token: set `token_label` or `slot`".into()),
            (Some(_), Some(_)) => return Err("set only one of `token_label` and `slot`".into()),
        };
        let pin = match (&self.pin_file, &self.pin_env) {
            (Some(f), None) => PinSource::File(f.clone()),
            (None, Some(v)) if !v.is_empty() => PinSource::Env(v.clone()),
            (None, Some(_)) => return Err("`pin_env` is empty".into()),
            (None, None) => {
                return Err(
                    "say where the PIN is: set `pin_file` or `pin_env` (never the PIN itself)"
                        .into(),
                )
            }
            (Some(_), Some(_)) => return Err("set only one of `pin_file` and `pin_env`".into()),
        };
        let key = match (&self.key_label, &self.key_id) {
            (Some(l), None) if !l.is_empty() => KeySelector::Label(l.clone()),
            (None, Some(id)) => match hex::decode(id) {
                Ok(b) if !b.is_empty() => KeySelector::Id(b),
                _ => {
                    return Err(format!(
                        "`key_id` {id:?} is not a non-empty hexadecimal string"
                    ))
                }
            },
            (Some(_), None) => return Err("`key_label` is empty".into()),
            (None, None) => return Err("name the key: set `key_label` or `key_id`".into()),
            (Some(_), Some(_)) => return Err("set only one of `key_label` and `key_id`".into()),
        };
        let mut config = Pkcs11Config::new(self.module.clone(), token, pin, key);
        if let Some(n) = self.max_sessions {
            if n == 0 {
                return Err("`max_sessions` must be at least 1".into());
            }
            config.max_sessions = n;
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Pkcs11Settings {
        Pkcs11Settings {
            module: "/usr/lib/softhsm/libsofthsm2.so".into(),
            token_label: Some("ndxp".into()),
            pin_file: Some("/etc/ndxp/token.pin".into()),
            key_label: Some("member-sign".into()),
            ..Pkcs11Settings::default()
        }
    }

    #[test]
    fn settings_name_exactly_one_token_pin_source_and_key() {
        let c = full().to_config().unwrap();
        assert_eq!(c.pin, PinSource::File("/etc/ndxp/token.pin".into()));
        assert_eq!(c.max_sessions, 4);
        let by_ids = Pkcs11Settings {
            token_label: None,
            slot: Some(7),
            pin_file: None,
            pin_env: Some("NDXP_PIN".into()),
            key_label: None,
            key_id: Some("0a1B".into()),
            max_sessions: Some(2),
            ..full()
        }
        .to_config()
        .unwrap();
        assert_eq!(by_ids.token, TokenSelector::Slot(7));
        assert_eq!(by_ids.pin, PinSource::Env("NDXP_PIN".into()));
        assert_eq!(by_ids.key, KeySelector::Id(vec![0x0a, 0x1b]));
        assert_eq!(by_ids.max_sessions, 2);

        let cases: [(Pkcs11Settings, &str); 9] = [
            (
                Pkcs11Settings {
                    module: PathBuf::new(),
                    ..full()
                },
                "`module` is empty",
            ),
            (
                Pkcs11Settings {
                    token_label: None,
                    ..full()
                },
                "set `token_label` or `slot`",
            ),
            (
                Pkcs11Settings {
                    slot: Some(1),
                    ..full()
                },
                "only one of `token_label` and `slot`",
            ),
            (
                Pkcs11Settings {
                    pin_file: None,
                    ..full()
                },
                "set `pin_file` or `pin_env`",
            ),
            (
                Pkcs11Settings {
                    pin_env: Some("X".into()),
                    ..full()
                },
                "only one of `pin_file` and `pin_env`",
            ),
            (
                Pkcs11Settings {
                    key_label: None,
                    ..full()
                },
                "set `key_label` or `key_id`",
            ),
            (
                Pkcs11Settings {
                    key_label: None,
                    key_id: Some("xyz".into()),
                    ..full()
                },
                "not a non-empty hexadecimal",
            ),
            (
                Pkcs11Settings {
                    key_label: Some(String::new()),
                    ..full()
                },
                "`key_label` is empty",
            ),
            (
                Pkcs11Settings {
                    max_sessions: Some(0),
                    ..full()
                },
                "at least 1",
            ),
        ];
        for (s, want) in cases {
            let e = s.to_config().unwrap_err();
            assert!(e.contains(want), "{s:?}: {e}");
        }
    }

    #[test]
    fn settings_refuse_unknown_fields_such_as_a_pin() {
        let e = serde_json::from_str::<Pkcs11Settings>(
            r#"{"module": "/m.so", "token_label": "t", "pin": "1234", "key_label": "k"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("unknown field `pin`"), "{e}");
    }
}
