//! A [`KeyStore`] whose private key lives on a PKCS#11 token (an HSM, a
//! smart card, or SoftHSM2 for testing), through the `cryptoki` binding.
//! Behind the `pkcs11` feature, off by default.
//!
//! A [`Pkcs11KeyStore`] holds one key pair of one token, named by a
//! [`Pkcs11Config`]: the module (the vendor's `.so`), the token (by label
//! or slot id), where the user PIN comes from ([`PinSource`]: a file only
//! its owner may read, or an environment variable; never the configuration
//! itself) and the key (by `CKA_LABEL` or `CKA_ID`).
//!
//! - [`Pkcs11KeyStore::find_key`] uses a key pair already on the token;
//!   [`Pkcs11KeyStore::generate_key`] makes one there (EC P-256 or RSA):
//!   the private key is `CKA_TOKEN`, `CKA_PRIVATE`, `CKA_SENSITIVE` and not
//!   `CKA_EXTRACTABLE`, so it never leaves the token.
//! - Signing follows the [`KeyStore`] contract: the data is hashed here
//!   and the digest signed on the token (`CKM_ECDSA`, `CKM_RSA_PKCS_PSS`);
//!   RSASSA-PKCS1-v1_5 uses the token's hash-and-sign mechanisms
//!   (`CKM_SHA256_RSA_PKCS`, ...). ECDSA signatures come back as DER
//!   `ECDSA-Sig-Value`, like [`crate::key::FileKeyStore`]'s.
//! - [`Pkcs11KeyStore::build_csr`] makes a PKCS#10 request signed on the
//!   token ([`crate::csr::build_csr_with_signer`]).
//! - Sessions are pooled: at most [`Pkcs11Config::max_sessions`] sessions
//!   are open, each reused by whichever thread needs one next; the token
//!   is logged in once (login state is shared by all sessions of a
//!   process). A session that fails because the token went away is closed
//!   rather than reused, and the operation is tried once more on a fresh
//!   session, so a token that comes back is picked up again.
//!
//! Errors name what is wrong ([`Pkcs11Error`]): the module is missing, the
//! token is not there, the PIN is wrong or locked, the key is not on the
//! token, the token was removed. The PIN is never printed: `Debug` of every
//! type here shows where the PIN comes from, not the PIN.
//!
//! ```no_run
//! use ndxp_sign::key::{KeyAlgorithm, KeyStore, RsaPadding};
//! use ndxp_sign::openssl::hash::MessageDigest;
//! use ndxp_sign::pkcs11::{KeySelector, PinSource, Pkcs11Config, Pkcs11KeyStore, TokenSelector};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = Pkcs11Config::new(
//!     "/usr/lib/softhsm/libsofthsm2.so",
//!     TokenSelector::Label("ndxp".into()),
//!     PinSource::File("/etc/ndxp/token.pin".into()),
//!     KeySelector::Label("member-sign".into()),
//! );
//! let store = Pkcs11KeyStore::open(&config)?;
//! store.find_key()?;
//! let sig = store.sign(store.key_name(), MessageDigest::sha256(), RsaPadding::Pss, b"data")?;
//! # let _ = (sig, KeyAlgorithm::EcP256);
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, PoisonError};

pub use cryptoki;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::ecdsa::EcdsaSig;
use openssl::error::ErrorStack;
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use openssl::x509::{X509Req, X509};

use crate::cert::Identity;
use crate::csr::{self, CsrError};
use crate::key::{KeyAlgorithm, KeyError, KeyStore, RsaPadding};

/// DER of the OID of NIST P-256 (`prime256v1`), the `CKA_EC_PARAMS` of our
/// EC keys.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

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
    fn attribute(&self) -> Attribute {
        match self {
            KeySelector::Label(l) => Attribute::Label(l.as_bytes().to_vec()),
            KeySelector::Id(id) => Attribute::Id(id.clone()),
        }
    }
}

/// Configuration of a [`Pkcs11KeyStore`]: which module, token, PIN and
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

/// Process-wide module contexts: `C_Initialize` may be called once per
/// module and process, and several stores (several keys) share a module.
fn module_context(path: &Path) -> Result<Pkcs11, Pkcs11Error> {
    static MODULES: OnceLock<Mutex<HashMap<PathBuf, Pkcs11>>> = OnceLock::new();
    if !path.is_file() {
        return Err(Pkcs11Error::ModuleNotFound {
            path: path.to_path_buf(),
        });
    }
    let mut modules = MODULES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(ctx) = modules.get(path) {
        return Ok(ctx.clone());
    }
    let load_err = |source| Pkcs11Error::ModuleLoad {
        path: path.to_path_buf(),
        source,
    };
    let ctx = Pkcs11::new(path).map_err(load_err)?;
    match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(load_err(e)),
    }
    modules.insert(path.to_path_buf(), ctx.clone());
    Ok(ctx)
}

/// Whether an error means the session (or the token behind it) is gone, so
/// the session must not be reused and a fresh one may succeed.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::UserNotLoggedIn,
            _
        )
    )
}

fn token_gone(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::DeviceRemoved | RvError::TokenNotPresent | RvError::SlotIdInvalid,
            _
        )
    )
}

struct PoolState {
    idle: Vec<Session>,
    open: usize,
}

/// The key pair in use: object handles and the public key.
#[derive(Clone)]
struct KeyPair {
    private: ObjectHandle,
    public: PKey<Public>,
    algorithm: KeyAlgorithm,
}

/// A [`KeyStore`] over one key pair on a PKCS#11 token. See the module
/// documentation.
pub struct Pkcs11KeyStore {
    ctx: Pkcs11,
    slot: Slot,
    token: String,
    key: KeySelector,
    key_name: String,
    pin: AuthPin,
    max_sessions: usize,
    pool: Mutex<PoolState>,
    freed: Condvar,
    pair: Mutex<Option<KeyPair>>,
    cert: Mutex<Option<X509>>,
    opened_total: std::sync::atomic::AtomicUsize,
    logins: std::sync::atomic::AtomicUsize,
}

impl fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The PIN is held as a `SecretString`, whose Debug redacts; it is
        // left out here altogether.
        f.debug_struct("Pkcs11KeyStore")
            .field("token", &self.token)
            .field("slot", &self.slot.id())
            .field("key", &self.key_name)
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

/// A session borrowed from the pool; returned on drop unless discarded.
struct Lease<'a> {
    store: &'a Pkcs11KeyStore,
    session: Option<Session>,
}

impl Lease<'_> {
    fn session(&self) -> &Session {
        // Present from acquisition until drop or discard.
        self.session.as_ref().unwrap_or_else(|| unreachable!())
    }

    /// Closes the session instead of returning it to the pool.
    fn discard(mut self) {
        if let Some(s) = self.session.take() {
            drop(s);
            let mut pool = self.store.lock_pool();
            pool.open = pool.open.saturating_sub(1);
            self.store.freed.notify_one();
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(s) = self.session.take() {
            let mut pool = self.store.lock_pool();
            pool.idle.push(s);
            self.store.freed.notify_one();
        }
    }
}

impl Pkcs11KeyStore {
    /// Loads the module, finds the token, reads the PIN and logs in.
    ///
    /// # Errors
    /// [`Pkcs11Error::ModuleNotFound`], [`Pkcs11Error::ModuleLoad`],
    /// [`Pkcs11Error::TokenNotFound`], the PIN source's errors,
    /// [`Pkcs11Error::PinIncorrect`], [`Pkcs11Error::PinLocked`].
    pub fn open(config: &Pkcs11Config) -> Result<Self, Pkcs11Error> {
        if config.max_sessions == 0 {
            return Err(Pkcs11Error::NoSessions);
        }
        let ctx = module_context(&config.module)?;
        let (slot, token) = find_slot(&ctx, &config.module, &config.token)?;
        let pin = config.pin.read()?;
        let store = Self {
            ctx,
            slot,
            token,
            key: config.key.clone(),
            key_name: config.key.to_string(),
            pin,
            max_sessions: config.max_sessions,
            pool: Mutex::new(PoolState {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
            pair: Mutex::new(None),
            cert: Mutex::new(None),
            opened_total: Default::default(),
            logins: Default::default(),
        };
        // Open (and log in) the first session now, so that a wrong PIN is
        // an error at start rather than at the first signature.
        drop(store.acquire()?);
        Ok(store)
    }

    /// The name under which [`KeyStore`] methods find this store's key:
    /// the key label, or `id:<hex>` for a key selected by id.
    pub fn key_name(&self) -> &str {
        &self.key_name
    }

    /// The token's label.
    pub fn token_label(&self) -> &str {
        &self.token
    }

    /// How many sessions this store has opened since it was created
    /// (reopened ones included): with a healthy token, never more than
    /// `max_sessions`.
    pub fn sessions_opened(&self) -> usize {
        self.opened_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many times this store has sent the PIN to the token.
    pub fn logins(&self) -> usize {
        self.logins.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn lock_pool(&self) -> MutexGuard<'_, PoolState> {
        self.pool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn ck_err(&self, op: &'static str, e: CkError) -> Pkcs11Error {
        match e {
            CkError::Pkcs11(RvError::PinIncorrect, _) => Pkcs11Error::PinIncorrect {
                token: self.token.clone(),
            },
            CkError::Pkcs11(RvError::PinLocked, _) => Pkcs11Error::PinLocked {
                token: self.token.clone(),
            },
            e if token_gone(&e) => Pkcs11Error::TokenRemoved {
                token: self.token.clone(),
            },
            source => Pkcs11Error::Token {
                op,
                token: self.token.clone(),
                source,
            },
        }
    }

    /// Borrows a logged-in session: an idle one, a new one while fewer
    /// than `max_sessions` are open, or else the next one returned.
    fn acquire(&self) -> Result<Lease<'_>, Pkcs11Error> {
        let mut pool = self.lock_pool();
        loop {
            if let Some(s) = pool.idle.pop() {
                return Ok(Lease {
                    store: self,
                    session: Some(s),
                });
            }
            if pool.open < self.max_sessions {
                pool.open += 1;
                break;
            }
            pool = self
                .freed
                .wait(pool)
                .unwrap_or_else(PoisonError::into_inner);
        }
        drop(pool);
        match self.open_session() {
            Ok(s) => Ok(Lease {
                store: self,
                session: Some(s),
            }),
            Err(e) => {
                let mut pool = self.lock_pool();
                pool.open = pool.open.saturating_sub(1);
                self.freed.notify_one();
                Err(e)
            }
        }
    }

    fn open_session(&self) -> Result<Session, Pkcs11Error> {
        let session = self
            .ctx
            .open_rw_session(self.slot)
            .map_err(|e| self.ck_err("C_OpenSession", e))?;
        self.opened_total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Login state belongs to the application, not the session: once
        // one session is logged in, new ones are too.
        let state = session
            .get_session_info()
            .map_err(|e| self.ck_err("C_GetSessionInfo", e))?
            .session_state();
        if !matches!(state, SessionState::RoUser | SessionState::RwUser) {
            self.logins
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            match session.login(UserType::User, Some(&self.pin)) {
                Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
                Err(e) => return Err(self.ck_err("C_Login", e)),
            }
        }
        Ok(session)
    }

    /// Runs `op` on a pooled session; if the session turns out to be lost
    /// (token removed and back, handle invalid), closes it and tries once
    /// more on a fresh one.
    fn with_session<T>(
        &self,
        op: &'static str,
        mut f: impl FnMut(&Session) -> Result<T, CkError>,
    ) -> Result<T, Pkcs11Error> {
        let mut retried = false;
        loop {
            let lease = self.acquire()?;
            match f(lease.session()) {
                Ok(v) => return Ok(v),
                Err(e) if session_lost(&e) => {
                    lease.discard();
                    if retried || token_gone(&e) && !self.token_present() {
                        return Err(self.ck_err(op, e));
                    }
                    retried = true;
                }
                Err(e) => return Err(self.ck_err(op, e)),
            }
        }
    }

    /// Whether the slot still holds this token (the same label): a token
    /// pulled out, or replaced by another, or deleted, is not.
    fn token_present(&self) -> bool {
        self.ctx
            .get_token_info(self.slot)
            .map(|i| i.label().trim_end() == self.token)
            .unwrap_or(false)
    }

    /// Runs `f` with a logged-in session of the pool, for what this store
    /// does not offer (listing objects, reading attributes). The session
    /// goes back to the pool afterwards.
    ///
    /// # Errors
    /// When no session can be had, or `f` fails.
    pub fn run<T>(&self, f: impl FnMut(&Session) -> Result<T, CkError>) -> Result<T, Pkcs11Error> {
        self.with_session("operation", f)
    }

    /// The handle of the private key in use, for [`Pkcs11KeyStore::run`].
    ///
    /// # Errors
    /// [`Pkcs11Error::NoKeySelected`] before `find_key`/`generate_key`.
    pub fn private_key_handle(&self) -> Result<ObjectHandle, Pkcs11Error> {
        Ok(self.pair()?.private)
    }

    fn pair(&self) -> Result<KeyPair, Pkcs11Error> {
        self.pair
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or(Pkcs11Error::NoKeySelected)
    }

    /// Finds the configured key pair on the token and uses it.
    ///
    /// # Errors
    /// [`Pkcs11Error::KeyNotFound`], [`Pkcs11Error::AmbiguousKey`],
    /// [`Pkcs11Error::NoPublicKey`], [`Pkcs11Error::UnsupportedKey`].
    pub fn find_key(&self) -> Result<PKey<Public>, Pkcs11Error> {
        let template = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            self.key.attribute(),
        ];
        let found = self.with_session("C_FindObjects", |s| s.find_objects(&template))?;
        let private = match found.as_slice() {
            [] => {
                return Err(Pkcs11Error::KeyNotFound {
                    key: self.key_name.clone(),
                    token: self.token.clone(),
                })
            }
            [one] => *one,
            _ => {
                return Err(Pkcs11Error::AmbiguousKey {
                    key: self.key_name.clone(),
                    token: self.token.clone(),
                })
            }
        };
        // The public key object: same CKA_ID as the private key (the
        // PKCS#11 convention for pairs), else the same selector.
        let id = self.with_session("C_GetAttributeValue", |s| {
            s.get_attributes(private, &[AttributeType::Id])
        })?;
        let public_template = match id.into_iter().next() {
            Some(Attribute::Id(id)) if !id.is_empty() => {
                vec![Attribute::Class(ObjectClass::PUBLIC_KEY), Attribute::Id(id)]
            }
            _ => vec![
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                self.key.attribute(),
            ],
        };
        let publics = self.with_session("C_FindObjects", |s| s.find_objects(&public_template))?;
        let Some(public_handle) = publics.first().copied() else {
            return Err(Pkcs11Error::NoPublicKey {
                key: self.key_name.clone(),
                token: self.token.clone(),
            });
        };
        let (public, algorithm) = self.read_public(public_handle)?;
        self.set_pair(KeyPair {
            private,
            public: public.clone(),
            algorithm,
        });
        Ok(public)
    }

    /// Generates a key pair of `algorithm` on the token under the
    /// configured label (with a random `CKA_ID`) or id, and uses it. The
    /// private key is a token object, private, sensitive and not
    /// extractable.
    ///
    /// # Errors
    /// [`Pkcs11Error::KeyExists`] when a private key with that label or id
    /// is already on the token; the module's errors.
    pub fn generate_key(&self, algorithm: KeyAlgorithm) -> Result<PKey<Public>, Pkcs11Error> {
        let existing = vec![
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            self.key.attribute(),
        ];
        if !self
            .with_session("C_FindObjects", |s| s.find_objects(&existing))?
            .is_empty()
        {
            return Err(Pkcs11Error::KeyExists {
                key: self.key_name.clone(),
                token: self.token.clone(),
            });
        }
        let (label, id) = match &self.key {
            KeySelector::Label(l) => {
                let mut id = vec![0u8; 16];
                openssl::rand::rand_bytes(&mut id).map_err(|source| Pkcs11Error::Decode {
                    what: "random key id",
                    source,
                })?;
                (l.as_bytes().to_vec(), id)
            }
            KeySelector::Id(id) => (Vec::new(), id.clone()),
        };
        let mut public_template = vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::Id(id.clone()),
        ];
        let mut private_template = vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Id(id),
        ];
        if !label.is_empty() {
            public_template.push(Attribute::Label(label.clone()));
            private_template.push(Attribute::Label(label));
        }
        let mechanism = match algorithm {
            KeyAlgorithm::EcP256 => {
                public_template.push(Attribute::EcParams(P256_PARAMS.to_vec()));
                Mechanism::EccKeyPairGen
            }
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => {
                let bits: u64 = if algorithm == KeyAlgorithm::Rsa2048 {
                    2048
                } else {
                    3072
                };
                public_template.push(Attribute::ModulusBits(bits.into()));
                public_template.push(Attribute::PublicExponent(vec![0x01, 0x00, 0x01]));
                Mechanism::RsaPkcsKeyPairGen
            }
        };
        let (public_handle, private) = self.with_session("C_GenerateKeyPair", |s| {
            s.generate_key_pair(&mechanism, &public_template, &private_template)
        })?;
        let (public, algorithm) = self.read_public(public_handle)?;
        self.set_pair(KeyPair {
            private,
            public: public.clone(),
            algorithm,
        });
        Ok(public)
    }

    fn set_pair(&self, pair: KeyPair) {
        *self.pair.lock().unwrap_or_else(PoisonError::into_inner) = Some(pair);
    }

    /// Reads a public key object into an OpenSSL key.
    fn read_public(
        &self,
        handle: ObjectHandle,
    ) -> Result<(PKey<Public>, KeyAlgorithm), Pkcs11Error> {
        let attrs = self.with_session("C_GetAttributeValue", |s| {
            s.get_attributes(
                handle,
                &[
                    AttributeType::KeyType,
                    AttributeType::EcParams,
                    AttributeType::EcPoint,
                    AttributeType::Modulus,
                    AttributeType::PublicExponent,
                ],
            )
        })?;
        let mut key_type = None;
        let (mut params, mut point, mut modulus, mut exponent) = (None, None, None, None);
        for a in attrs {
            match a {
                Attribute::KeyType(t) => key_type = Some(t),
                Attribute::EcParams(p) => params = Some(p),
                Attribute::EcPoint(p) => point = Some(p),
                Attribute::Modulus(m) => modulus = Some(m),
                Attribute::PublicExponent(e) => exponent = Some(e),
                _ => {}
            }
        }
        let decode = |what| move |source| Pkcs11Error::Decode { what, source };
        match key_type {
            Some(KeyType::EC) => {
                if params.as_deref() != Some(&P256_PARAMS[..]) {
                    return Err(Pkcs11Error::UnsupportedKey(
                        "an EC key on a curve other than P-256".into(),
                    ));
                }
                let point = point.ok_or_else(|| {
                    Pkcs11Error::UnsupportedKey("an EC public key without CKA_EC_POINT".into())
                })?;
                let raw = unwrap_ec_point(&point).ok_or_else(|| {
                    Pkcs11Error::UnsupportedKey(
                        "an EC point that is not an uncompressed P-256 point".into(),
                    )
                })?;
                let group =
                    EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).map_err(decode("EC group"))?;
                let mut ctx = openssl::bn::BigNumContext::new().map_err(decode("EC point"))?;
                let point =
                    EcPoint::from_bytes(&group, raw, &mut ctx).map_err(decode("EC point"))?;
                let key = EcKey::from_public_key(&group, &point)
                    .and_then(PKey::from_ec_key)
                    .map_err(decode("EC public key"))?;
                Ok((key, KeyAlgorithm::EcP256))
            }
            Some(KeyType::RSA) => {
                let (Some(n), Some(e)) = (modulus, exponent) else {
                    return Err(Pkcs11Error::UnsupportedKey(
                        "an RSA public key without modulus or exponent".into(),
                    ));
                };
                let rsa = Rsa::from_public_components(
                    BigNum::from_slice(&n).map_err(decode("RSA modulus"))?,
                    BigNum::from_slice(&e).map_err(decode("RSA exponent"))?,
                )
                .map_err(decode("RSA public key"))?;
                let bits = rsa.size() * 8;
                let key = PKey::from_rsa(rsa).map_err(decode("RSA public key"))?;
                let algorithm = match bits {
                    2048 => KeyAlgorithm::Rsa2048,
                    3072 => KeyAlgorithm::Rsa3072,
                    b if b > 2048 => KeyAlgorithm::Rsa3072,
                    b => return Err(Pkcs11Error::UnsupportedKey(format!("RSA {b} bits"))),
                };
                Ok((key, algorithm))
            }
            other => Err(Pkcs11Error::UnsupportedKey(match other {
                Some(t) => format!("key type {t}"),
                None => "an object without CKA_KEY_TYPE".into(),
            })),
        }
    }

    /// Signs `data` with the key in use (see [`KeyStore::sign`]). If the
    /// token no longer knows the key's handle (it was removed and put back,
    /// which may renumber objects), finds the key again and retries once.
    fn sign_data(
        &self,
        digest: MessageDigest,
        padding: RsaPadding,
        data: &[u8],
    ) -> Result<Vec<u8>, Pkcs11Error> {
        let pair = self.pair()?;
        match self.sign_with(&pair, digest, padding, data) {
            Err(Pkcs11Error::Token {
                source: CkError::Pkcs11(RvError::KeyHandleInvalid | RvError::ObjectHandleInvalid, _),
                ..
            }) => {
                match self.find_key() {
                    Ok(_) => {}
                    // The key is gone because the token is: say so.
                    Err(Pkcs11Error::KeyNotFound { .. }) if !self.token_present() => {
                        return Err(Pkcs11Error::TokenRemoved {
                            token: self.token.clone(),
                        })
                    }
                    Err(e) => return Err(e),
                }
                let pair = self.pair()?;
                self.sign_with(&pair, digest, padding, data)
            }
            other => other,
        }
    }

    fn sign_with(
        &self,
        pair: &KeyPair,
        digest: MessageDigest,
        padding: RsaPadding,
        data: &[u8],
    ) -> Result<Vec<u8>, Pkcs11Error> {
        let (hash_mech, mgf, pkcs1) = digest_mechanisms(digest)?;
        let sign = |s: &Session, key: ObjectHandle, mech: &Mechanism, input: &[u8]| {
            s.sign(mech, key, input)
        };
        match pair.algorithm {
            KeyAlgorithm::EcP256 => {
                let h = hash(digest, data).map_err(|source| Pkcs11Error::Decode {
                    what: "digest",
                    source,
                })?;
                let raw =
                    self.with_session("C_Sign", |s| sign(s, pair.private, &Mechanism::Ecdsa, &h))?;
                ecdsa_raw_to_der(&raw)
            }
            KeyAlgorithm::Rsa2048 | KeyAlgorithm::Rsa3072 => match padding {
                RsaPadding::Pss => {
                    let h = hash(digest, data).map_err(|source| Pkcs11Error::Decode {
                        what: "digest",
                        source,
                    })?;
                    let params = PkcsPssParams {
                        hash_alg: hash_mech,
                        mgf,
                        s_len: (digest.size() as u64).into(),
                    };
                    let mech = Mechanism::RsaPkcsPss(params);
                    self.with_session("C_Sign", |s| sign(s, pair.private, &mech, &h))
                }
                RsaPadding::Pkcs1v15 => {
                    self.with_session("C_Sign", |s| sign(s, pair.private, &pkcs1, data))
                }
            },
        }
    }

    /// Builds a PKCS#10 request for `identity` with the key in use, signed
    /// on the token (ECDSA with SHA-256, or RSASSA-PKCS1-v1_5 with SHA-256),
    /// as [`crate::csr::build_csr`] does with a key in memory.
    ///
    /// # Errors
    /// [`Pkcs11Error::NoKeySelected`], [`Pkcs11Error::Csr`] (invalid
    /// identity or names, or the token failed to sign).
    pub fn build_csr(
        &self,
        identity: &Identity,
        dns_names: &[String],
        ip_addresses: &[IpAddr],
    ) -> Result<X509Req, Pkcs11Error> {
        let pair = self.pair()?;
        csr::build_csr_with_signer(identity, dns_names, ip_addresses, &pair.public, |tbs| {
            self.sign_data(MessageDigest::sha256(), RsaPadding::Pkcs1v15, tbs)
        })
        .map_err(Pkcs11Error::Csr)
    }

    /// Attaches the certificate issued for the key, returned by
    /// [`KeyStore::certificate`]. The certificate must be for this key.
    ///
    /// # Errors
    /// [`Pkcs11Error::NoKeySelected`]; [`Pkcs11Error::UnsupportedKey`] when
    /// the certificate is for another key.
    pub fn set_certificate(&self, cert: X509) -> Result<(), Pkcs11Error> {
        let pair = self.pair()?;
        let matches = cert
            .public_key()
            .map(|k| k.public_eq(&pair.public))
            .unwrap_or(false);
        if !matches {
            return Err(Pkcs11Error::UnsupportedKey(
                "the certificate is for another key".into(),
            ));
        }
        *self.cert.lock().unwrap_or_else(PoisonError::into_inner) = Some(cert);
        Ok(())
    }

    fn check_name(&self, name: &str) -> Result<(), KeyError> {
        if name == self.key_name {
            Ok(())
        } else {
            Err(KeyError::UnknownKey(name.to_string()))
        }
    }
}

/// The hash mechanism, MGF and hash-and-sign PKCS#1 v1.5 mechanism for a
/// digest.
fn digest_mechanisms(
    digest: MessageDigest,
) -> Result<(MechanismType, PkcsMgfType, Mechanism<'static>), Pkcs11Error> {
    let nid = digest.type_();
    if nid == Nid::SHA256 {
        Ok((
            MechanismType::SHA256,
            PkcsMgfType::MGF1_SHA256,
            Mechanism::Sha256RsaPkcs,
        ))
    } else if nid == Nid::SHA384 {
        Ok((
            MechanismType::SHA384,
            PkcsMgfType::MGF1_SHA384,
            Mechanism::Sha384RsaPkcs,
        ))
    } else if nid == Nid::SHA512 {
        Ok((
            MechanismType::SHA512,
            PkcsMgfType::MGF1_SHA512,
            Mechanism::Sha512RsaPkcs,
        ))
    } else {
        Err(Pkcs11Error::UnsupportedDigest(
            nid.short_name().unwrap_or("unknown").to_string(),
        ))
    }
}

/// `CKA_EC_POINT` is a DER OCTET STRING around the point (PKCS#11 2.40);
/// some modules return the bare point. Either way, the uncompressed point.
fn unwrap_ec_point(v: &[u8]) -> Option<&[u8]> {
    match v {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 && rest[0] == 0x04 => Some(rest),
        [0x04, ..] if v.len() == 65 => Some(v),
        _ => None,
    }
}

/// `CKM_ECDSA` returns `r || s`; key stores return DER `ECDSA-Sig-Value`.
fn ecdsa_raw_to_der(raw: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
    if raw.len() != 64 {
        return Err(Pkcs11Error::UnsupportedKey(format!(
            "the token returned a {}-byte ECDSA signature, expected 64",
            raw.len()
        )));
    }
    let decode = |source| Pkcs11Error::Decode {
        what: "ECDSA signature",
        source,
    };
    let r = BigNum::from_slice(&raw[..32]).map_err(decode)?;
    let s = BigNum::from_slice(&raw[32..]).map_err(decode)?;
    EcdsaSig::from_private_components(r, s)
        .and_then(|sig| sig.to_der())
        .map_err(decode)
}

/// Finds the slot of the configured token; returns it with the token label.
fn find_slot(
    ctx: &Pkcs11,
    module: &Path,
    wanted: &TokenSelector,
) -> Result<(Slot, String), Pkcs11Error> {
    let list_err = |source| Pkcs11Error::Token {
        op: "C_GetSlotList",
        token: wanted.to_string(),
        source,
    };
    let slots = ctx.get_slots_with_token().map_err(list_err)?;
    let mut present = Vec::new();
    let mut matching = Vec::new();
    for slot in slots {
        let Ok(info) = ctx.get_token_info(slot) else {
            continue;
        };
        let label = info.label().trim_end().to_string();
        present.push(format!("{label:?} (slot {})", slot.id()));
        let hit = match wanted {
            TokenSelector::Label(l) => *l == label,
            TokenSelector::Slot(id) => *id == slot.id(),
        };
        if hit {
            matching.push((slot, label));
        }
    }
    match matching.len() {
        0 => Err(Pkcs11Error::TokenNotFound {
            wanted: wanted.to_string(),
            module: module.to_path_buf(),
            present,
        }),
        1 => Ok(matching.remove(0)),
        _ => Err(Pkcs11Error::AmbiguousToken(wanted.to_string())),
    }
}

impl KeyStore for Pkcs11KeyStore {
    fn sign(
        &self,
        name: &str,
        digest: MessageDigest,
        padding: RsaPadding,
        data: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        self.check_name(name)?;
        Ok(self.sign_data(digest, padding, data)?)
    }

    fn public_key(&self, name: &str) -> Result<PKey<Public>, KeyError> {
        self.check_name(name)?;
        Ok(self.pair()?.public)
    }

    fn certificate(&self, name: &str) -> Result<X509, KeyError> {
        self.check_name(name)?;
        self.cert
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| KeyError::NoCertificate(name.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec_point_forms() {
        let mut wrapped = vec![0x04, 0x41, 0x04];
        wrapped.extend([7u8; 64]);
        assert_eq!(unwrap_ec_point(&wrapped).map(<[u8]>::len), Some(65));
        assert_eq!(unwrap_ec_point(&wrapped[2..]).map(<[u8]>::len), Some(65));
        // Compressed points and truncated input are refused, not misread.
        assert_eq!(unwrap_ec_point(&[0x04, 0x21, 0x02, 1, 2]), None);
        assert_eq!(unwrap_ec_point(&[]), None);
    }

    #[test]
    fn raw_ecdsa_signature_of_wrong_length_is_an_error() {
        assert!(ecdsa_raw_to_der(&[1u8; 63]).is_err());
        let der = ecdsa_raw_to_der(&[1u8; 64]).expect("64 bytes convert");
        let back = EcdsaSig::from_der(&der).expect("DER parses");
        assert_eq!(back.r().to_vec(), vec![1u8; 32]);
    }

    #[test]
    fn only_sha2_digests_are_accepted() {
        assert!(digest_mechanisms(MessageDigest::sha256()).is_ok());
        assert!(digest_mechanisms(MessageDigest::sha512()).is_ok());
        assert!(matches!(
            digest_mechanisms(MessageDigest::sha1()),
            Err(Pkcs11Error::UnsupportedDigest(_))
        ));
    }

    #[test]
    fn missing_module_is_named() {
        let err = module_context(Path::new("/nonexistent/libnothing.so")).unwrap_err();
        assert!(matches!(err, Pkcs11Error::ModuleNotFound { .. }));
        assert!(err.to_string().contains("/nonexistent/libnothing.so"));
    }
}
