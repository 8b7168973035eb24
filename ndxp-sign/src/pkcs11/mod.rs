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

mod config;
mod token;

pub use config::{
    KeySelector, PinSource, Pkcs11Config, Pkcs11Error, Pkcs11Settings, TokenSelector,
};
pub use cryptoki;

use std::fmt;
use std::net::IpAddr;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::PkcsPssParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey, EcPoint};
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Rsa;
use openssl::x509::{X509Req, X509};

use crate::cert::Identity;
use crate::csr;
use crate::key::{KeyAlgorithm, KeyError, KeyStore, RsaPadding};
use token::{
    digest_mechanisms, ecdsa_raw_to_der, find_slot, module_context, session_lost, token_gone,
    unwrap_ec_point,
};

/// DER of the OID of NIST P-256 (`prime256v1`), the `CKA_EC_PARAMS` of our
/// EC keys.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

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

    /// Checks that the token is present and the key in use signs: what a
    /// readiness probe or a diagnosis asks. Signs a fixed short text on
    /// the token (one signature, through the session pool).
    ///
    /// # Errors
    /// [`Pkcs11Error::TokenRemoved`] when the token is gone,
    /// [`Pkcs11Error::NoKeySelected`], or the signing failure.
    pub fn check(&self) -> Result<(), Pkcs11Error> {
        if !self.token_present() {
            return Err(Pkcs11Error::TokenRemoved {
                token: self.token.clone(),
            });
        }
        self.sign_data(
            MessageDigest::sha256(),
            RsaPadding::Pss,
            b"ndxp PKCS#11 health check",
        )
        .map(|_| ())
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
