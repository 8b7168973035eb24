//! Mutual TLS 1.3 between nodes (docs/design.md §5): the node's TLS identity, what
//! a peer must be ([`PeerPolicy`]), OpenSSL acceptors and connectors built
//! from them, and async handshake helpers for tokio streams.
//!
//! # What a peer must be
//!
//! Both ends present their node **authentication** certificate. A peer is
//! accepted only if all of these hold ([`PeerPolicy::check_peer`]):
//!
//! 1. its certificate chains to one of the policy's trust anchors (the CAs
//!    listed in the global configuration), is valid now, is fit for
//!    authentication (serverAuth + clientAuth) and is not revoked —
//!    all decided by [`chain::verify_chain`] with [`Purpose::Auth`];
//! 2. it carries a node identity ([`cert::node_of`]; a signing certificate
//!    is refused);
//! 3. the [`PeerRule`] accepts it: a server asks "is this node, with this
//!    certificate fingerprint, registered?" ([`PeerRule::Registered`]); a
//!    client dialling a node accepts exactly the fingerprint registered for
//!    that node ([`PeerRule::Fingerprints`], or the fingerprints given to
//!    [`connect`] with [`PeerRule::PinnedPerConnection`]; several while the
//!    node rotates its certificate).
//!
//! # Where the check runs
//!
//! **Inside the handshake.** The acceptor and the connector install an
//! OpenSSL verify callback. OpenSSL first validates the peer's chain against
//! a store holding exactly the policy's anchors (partial chains allowed, so
//! a listed intermediate is an anchor on its own); the callback then runs
//! the full [`PeerPolicy::check_peer`] decision on the leaf and the chain
//! OpenSSL built. A peer is accepted only if **both** OpenSSL and the
//! policy accept it; on any rejection the callback fails the handshake, so
//! a bad peer never gets an established connection and never sends a byte
//! of application data. The typed reason is kept in the connection and
//! returned by [`accept`] and [`connect`].
//!
//! After the handshake [`accept`] and [`connect`] check once more that the
//! in-handshake decision was made and accepted this very certificate over
//! TLS 1.3 ([`accept`] re-runs [`verify_peer`] in full). Code that drives an
//! `SslAcceptor`/`SslConnector` from this module by other means (e.g. a
//! hyper integration) must call [`verify_peer`] on the established
//! session to learn the peer's identity; it fails closed when the check
//! cannot be made.
//!
//! # Other behaviour
//!
//! - TLS 1.3 only (minimum and maximum); a TLS 1.2 peer is refused with
//!   [`TlsError::WrongProtocolVersion`].
//! - The server requires a client certificate (`PEER | FAIL_IF_NO_PEER_CERT`).
//! - **No hostname verification**: a node is identified by the certificate
//!   fingerprint registered for it in the global configuration, not by a
//!   DNS name, so [`connect`] turns hostname checks and SNI off. (Driving a
//!   connector through `SslConnector::connect` with a domain keeps
//!   OpenSSL's hostname check on, which our certificates fail — use
//!   [`connect`].)
//! - No session resumption (no tickets, no server session cache): every
//!   connection runs the full check, so a revocation known to the checker
//!   takes effect for the next connection.
//! - ALPN offers/selects `h2` then `http/1.1`; a client offering neither is
//!   served without ALPN.
//! - Revocation is asked of a synchronous [`RevocationChecker`] (normally
//!   [`crate::ocsp::OcspStatusCache`], filled in the background); no network
//!   call happens inside a handshake. A policy without a checker does **not**
//!   check revocation — for tests and closed set-ups only.
//! - Certificates are reloaded by building a new acceptor/connector; existing
//!   connections keep the old ones.
//!
//! # HTTPS servers
//!
//! The node's client port and the central gateway serve information
//! systems, not nodes: [`https_acceptor`] builds their acceptor (TLS 1.2 or
//! 1.3, any certificate profile) with client certificates not asked for,
//! required from a CA file, or requested but optional and judged by the
//! application after [`accept_https`] from [`presented_chain`]
//! ([`ClientCertificates`]).
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use ndxp_sign::tls::{self, PeerPolicy, TlsIdentity};
//! # async fn run(anchors: Vec<ndxp_sign::openssl::x509::X509>) -> Result<(), Box<dyn std::error::Error>> {
//! let me = TlsIdentity::from_pem_files("auth.key".as_ref(), None, "auth.pem".as_ref())?;
//! let policy = PeerPolicy::registered(anchors, |member, node, fingerprint| {
//!     // look the node up in the global configuration
//!     # let _ = (member, node, fingerprint);
//!     true
//! });
//! let acceptor = tls::server_acceptor(&me, policy.clone())?;
//! let listener = tokio::net::TcpListener::bind("[::]:8443").await?;
//! let (tcp, _) = listener.accept().await?;
//! let (stream, peer) = tls::accept(&acceptor, tcp, &policy, Duration::from_secs(10)).await?;
//! println!("{}/{} ({})", peer.member, peer.node, peer.fingerprint);
//! # drop(stream); Ok(()) }
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndxp_core::id::{MemberId, NodeName};
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{
    self, select_next_proto, AlpnError, Ssl, SslAcceptor, SslConnector, SslContextBuilder,
    SslMethod, SslRef, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509Ref, X509StoreContext, X509StoreContextRef, X509VerifyResult, X509};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_openssl::SslStream;

use crate::cert::{self, CertError};
use crate::chain::{self, ChainError, NoRevocationCheck, Purpose, RevocationChecker};
use crate::key::{self, KeyError};

/// The ALPN protocols offered and accepted, in preference order, in wire
/// format (length-prefixed): `h2`, `http/1.1`.
pub const ALPN_PROTOCOLS: &[u8] = b"\x02h2\x08http/1.1";

/// Errors building TLS configurations and running handshakes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The node's private key could not be loaded.
    #[error("could not load the node's TLS private key")]
    Key(#[source] KeyError),
    /// A certificate file could not be read.
    #[error("could not read the certificate file {path}")]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The node's certificate (chain) could not be parsed.
    #[error("could not load the node's TLS certificate; give a PEM file with the authentication certificate first, then its CA certificates")]
    Certificate(#[source] Box<CertError>),
    /// The node's certificate is not a node authentication certificate.
    #[error("the TLS certificate {subject} is not a node authentication certificate; use the `auth` certificate issued for this node")]
    NotNodeCertificate {
        /// Subject of the certificate.
        subject: String,
        /// Why its identity was refused.
        #[source]
        source: Box<CertError>,
    },
    /// The private key does not belong to the certificate.
    #[error("the private key does not belong to the certificate {subject}; check that the key and certificate files are a pair")]
    KeyMismatch {
        /// Subject of the certificate.
        subject: String,
    },
    /// The policy lists no trust anchors.
    #[error("no trust anchors are configured; list the accepted CA certificates in the global configuration")]
    NoTrustAnchors,
    /// OpenSSL failed while building a configuration or session.
    #[error("OpenSSL failed while {what}")]
    Config {
        /// What was being done.
        what: &'static str,
        /// The OpenSSL error.
        #[source]
        source: ErrorStack,
    },
    /// The handshake failed for a reason reported by OpenSSL (e.g. the peer
    /// refused our certificate, or closed the connection).
    #[error("TLS handshake failed: {reason}")]
    Handshake {
        /// OpenSSL's reason.
        reason: String,
        /// The OpenSSL error.
        #[source]
        source: ssl::Error,
    },
    /// The peer presented no certificate.
    #[error(
        "the peer presented no certificate; every node must present its authentication certificate"
    )]
    NoPeerCertificate,
    /// The peer's certificate chain was rejected (unknown CA, expired,
    /// revoked, wrong purpose, no revocation answer, ...).
    #[error("the peer's certificate is not trusted")]
    PeerUntrusted(#[source] ChainError),
    /// The peer's certificate carries no node identity (e.g. a signing
    /// certificate).
    #[error("the peer's certificate {subject} is not a node authentication certificate")]
    PeerNotNode {
        /// Subject of the certificate.
        subject: String,
        /// Why its identity was refused.
        #[source]
        source: Box<CertError>,
    },
    /// The peer is a valid node but not registered with this certificate.
    #[error("node {member}/{node} with certificate {fingerprint} is not registered in the global configuration")]
    PeerNotRegistered {
        /// The peer's member.
        member: MemberId,
        /// The peer's node name.
        node: NodeName,
        /// SHA-256 fingerprint of its certificate.
        fingerprint: String,
    },
    /// The peer's certificate is not the one registered for the node dialled.
    #[error("the peer's certificate {found} is not one registered for the node dialled ({})", expected.join(", "))]
    FingerprintMismatch {
        /// The pinned fingerprints.
        expected: Vec<String>,
        /// The peer's fingerprint.
        found: String,
    },
    /// The policy pins a fingerprint per connection but none was given.
    #[error("no fingerprint was pinned for this connection; dial nodes with tls::connect and the fingerprint registered for the node")]
    NoPinnedFingerprint,
    /// The peer does not speak TLS 1.3.
    #[error("the peer does not speak TLS 1.3 ({detail}); nodes talk TLS 1.3 only")]
    WrongProtocolVersion {
        /// What was seen.
        detail: String,
    },
    /// The handshake did not finish in time.
    #[error("the TLS handshake did not finish within {0:?}")]
    Timeout(Duration),
    /// The connection failed during the handshake.
    #[error("network I/O failed during the TLS handshake")]
    Io(#[source] io::Error),
}

fn config(what: &'static str) -> impl Fn(ErrorStack) -> TlsError {
    move |source| TlsError::Config { what, source }
}

/// The node's TLS identity: its authentication key, certificate and the CA
/// certificates sent along with it.
#[derive(Clone)]
pub struct TlsIdentity {
    key: PKey<Private>,
    cert: X509,
    chain: Vec<X509>,
    member: MemberId,
    node: NodeName,
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("member", &self.member)
            .field("node", &self.node)
            .field("fingerprint", &cert::fingerprint_sha256(&self.cert))
            .finish_non_exhaustive()
    }
}

impl TlsIdentity {
    /// An identity from a key, its authentication certificate and the CA
    /// certificates to send with it (intermediates; the root may be left
    /// out). Refuses a certificate without a node identity and a key that
    /// does not match the certificate.
    pub fn new(key: PKey<Private>, cert: X509, chain: Vec<X509>) -> Result<Self, TlsError> {
        let subject = cert::subject_text(cert.subject_name());
        let (member, node) =
            cert::node_of(&cert).map_err(|source| TlsError::NotNodeCertificate {
                subject: subject.clone(),
                source: Box::new(source),
            })?;
        let public = cert
            .public_key()
            .map_err(config("reading the certificate's public key"))?;
        if !public.public_eq(&key) {
            return Err(TlsError::KeyMismatch { subject });
        }
        Ok(Self {
            key,
            cert,
            chain,
            member,
            node,
        })
    }

    /// Loads the key with [`key::read_private_key_file`] (refused if group
    /// or others can read it) and a PEM file holding the authentication
    /// certificate first, then its CA certificates.
    pub fn from_pem_files(
        key_path: &Path,
        passphrase: Option<&[u8]>,
        cert_path: &Path,
    ) -> Result<Self, TlsError> {
        let key = key::read_private_key_file(key_path, passphrase).map_err(TlsError::Key)?;
        let pem = std::fs::read(cert_path).map_err(|source| TlsError::ReadFile {
            path: cert_path.to_path_buf(),
            source,
        })?;
        let mut certs = cert::read_pem_chain(&pem)
            .map_err(|e| TlsError::Certificate(Box::new(e)))?
            .into_iter();
        let leaf = certs.next().ok_or_else(|| {
            TlsError::Certificate(Box::new(CertError::OpenSsl(
                "reading a certificate file without certificates",
                ErrorStack::get(),
            )))
        })?;
        Self::new(key, leaf, certs.collect())
    }

    /// The authentication certificate.
    pub fn certificate(&self) -> &X509 {
        &self.cert
    }

    /// The CA certificates sent with it.
    pub fn chain(&self) -> &[X509] {
        &self.chain
    }

    /// The member the node belongs to.
    pub fn member(&self) -> &MemberId {
        &self.member
    }

    /// The node's name.
    pub fn node(&self) -> &NodeName {
        &self.node
    }

    /// SHA-256 fingerprint of the certificate ([`cert::fingerprint_sha256`]),
    /// the value registered for the node in the global configuration.
    pub fn fingerprint(&self) -> String {
        cert::fingerprint_sha256(&self.cert)
    }
}

/// The function deciding whether a node (member, node name, certificate
/// fingerprint) is registered.
pub type RegisteredFn = dyn Fn(&MemberId, &NodeName, &str) -> bool + Send + Sync;

/// A clock for validation times.
pub type ClockFn = dyn Fn() -> DateTime<Utc> + Send + Sync;

/// Which valid node certificates are accepted.
#[derive(Clone)]
#[non_exhaustive]
pub enum PeerRule {
    /// Any node for which the function returns true, given its member, node
    /// name and certificate fingerprint (backed by the global
    /// configuration). The server side.
    Registered(Arc<RegisteredFn>),
    /// Exactly the certificates with these SHA-256 fingerprints (hex, case
    /// and `:` separators ignored).
    Fingerprints(Vec<String>),
    /// The certificate whose fingerprint is given for each connection
    /// ([`connect`]); a connection without one is refused. The client side.
    PinnedPerConnection,
}

impl fmt::Debug for PeerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerRule::Registered(_) => f.write_str("Registered(..)"),
            PeerRule::Fingerprints(fp) => f.debug_tuple("Fingerprints").field(fp).finish(),
            PeerRule::PinnedPerConnection => f.write_str("PinnedPerConnection"),
        }
    }
}

/// What a peer must be: trust anchors, a revocation checker and a
/// [`PeerRule`]. Cheap to clone.
#[derive(Clone)]
pub struct PeerPolicy {
    anchors: Arc<[X509]>,
    revocation: Option<Arc<dyn RevocationChecker + Send + Sync>>,
    rule: PeerRule,
    clock: Option<Arc<ClockFn>>,
}

impl fmt::Debug for PeerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerPolicy")
            .field("anchors", &self.anchors.len())
            .field("revocation", &self.revocation.is_some())
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

/// Fingerprints are compared as lowercase hex without separators, so the
/// `AB:CD:..` form printed by `openssl x509 -fingerprint` is accepted too.
fn normalize_fingerprint(fp: &str) -> String {
    fp.chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl PeerPolicy {
    /// A policy with the given anchors and rule, without revocation checks
    /// (add them with [`with_revocation`](Self::with_revocation)).
    pub fn new(anchors: Vec<X509>, rule: PeerRule) -> Self {
        let rule = match rule {
            PeerRule::Fingerprints(fps) => {
                PeerRule::Fingerprints(fps.iter().map(|f| normalize_fingerprint(f)).collect())
            }
            other => other,
        };
        Self {
            anchors: anchors.into(),
            revocation: None,
            rule,
            clock: None,
        }
    }

    /// Accepts nodes for which `registered(member, node, fingerprint)` is
    /// true.
    pub fn registered<F>(anchors: Vec<X509>, registered: F) -> Self
    where
        F: Fn(&MemberId, &NodeName, &str) -> bool + Send + Sync + 'static,
    {
        Self::new(anchors, PeerRule::Registered(Arc::new(registered)))
    }

    /// Accepts exactly the certificates with these SHA-256 fingerprints
    /// (hex, case and `:` separators ignored).
    pub fn pinned<S: AsRef<str>>(anchors: Vec<X509>, fingerprints: &[S]) -> Self {
        let fps = fingerprints
            .iter()
            .map(|f| f.as_ref().to_string())
            .collect();
        Self::new(anchors, PeerRule::Fingerprints(fps))
    }

    /// Accepts the certificate whose fingerprint is given to [`connect`] for
    /// each connection: the policy of a node's client side.
    pub fn pinned_per_connection(anchors: Vec<X509>) -> Self {
        Self::new(anchors, PeerRule::PinnedPerConnection)
    }

    /// Checks revocation with `checker` (normally an
    /// [`OcspStatusCache`](crate::ocsp::OcspStatusCache)). It must answer
    /// from memory: it runs inside the handshake.
    pub fn with_revocation(mut self, checker: Arc<dyn RevocationChecker + Send + Sync>) -> Self {
        self.revocation = Some(checker);
        self
    }

    /// Validates certificates at the time `clock` returns instead of now
    /// (tests, simulations).
    pub fn with_clock<F>(mut self, clock: F) -> Self
    where
        F: Fn() -> DateTime<Utc> + Send + Sync + 'static,
    {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The trust anchors.
    pub fn anchors(&self) -> &[X509] {
        &self.anchors
    }

    /// The rule.
    pub fn rule(&self) -> &PeerRule {
        &self.rule
    }

    /// Whether revocation is checked.
    pub fn checks_revocation(&self) -> bool {
        self.revocation.is_some()
    }

    /// The whole acceptance decision for a peer certificate `leaf` sent with
    /// `untrusted` CA certificates; `pinned` are the fingerprints expected
    /// for this connection, if any (one must then match, whatever the
    /// rule; an empty list matches nothing). Fingerprints in `pinned` must
    /// be lowercase hex without separators.
    pub fn check_peer(
        &self,
        leaf: &X509Ref,
        untrusted: &[X509],
        pinned: Option<&[String]>,
    ) -> Result<PeerIdentity, TlsError> {
        if self.anchors.is_empty() {
            return Err(TlsError::NoTrustAnchors);
        }
        let now = self.clock.as_ref().map_or_else(Utc::now, |c| c());
        let checker: &dyn RevocationChecker = match &self.revocation {
            Some(c) => c.as_ref(),
            None => &NoRevocationCheck,
        };
        chain::verify_chain(leaf, untrusted, &self.anchors, now, Purpose::Auth, checker)
            .map_err(TlsError::PeerUntrusted)?;
        let (member, node) = cert::node_of(leaf).map_err(|source| TlsError::PeerNotNode {
            subject: cert::subject_text(leaf.subject_name()),
            source: Box::new(source),
        })?;
        let fingerprint =
            cert::try_fingerprint_sha256(leaf).map_err(|e| TlsError::Certificate(Box::new(e)))?;
        let must_match = |expected: &[String]| {
            if expected.contains(&fingerprint) {
                Ok(())
            } else {
                Err(TlsError::FingerprintMismatch {
                    expected: expected.to_vec(),
                    found: fingerprint.clone(),
                })
            }
        };
        if let Some(p) = pinned {
            must_match(p)?;
        }
        match &self.rule {
            PeerRule::Registered(f) => {
                if !f(&member, &node, &fingerprint) {
                    return Err(TlsError::PeerNotRegistered {
                        member,
                        node,
                        fingerprint,
                    });
                }
            }
            PeerRule::Fingerprints(fps) => must_match(fps)?,
            PeerRule::PinnedPerConnection => {
                if pinned.is_none() {
                    return Err(TlsError::NoPinnedFingerprint);
                }
            }
        }
        Ok(PeerIdentity {
            member,
            node,
            fingerprint,
        })
    }
}

/// The authenticated peer of a connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerIdentity {
    /// The member the peer node belongs to.
    pub member: MemberId,
    /// The peer node's name.
    pub node: NodeName,
    /// SHA-256 fingerprint of the peer's certificate.
    pub fingerprint: String,
}

/// Per-connection state kept in the `Ssl`: the fingerprints pinned for it
/// and the verify callback's decision.
struct HandshakeState {
    pinned: Option<Vec<String>>,
    outcome: Mutex<Option<Result<PeerIdentity, TlsError>>>,
}

impl HandshakeState {
    fn new(pinned: Option<Vec<String>>) -> Self {
        Self {
            pinned,
            outcome: Mutex::new(None),
        }
    }

    fn take_error(&self) -> Option<TlsError> {
        let mut slot = self.outcome.lock().ok()?;
        match slot.take() {
            Some(Err(e)) => Some(e),
            other => {
                *slot = other;
                None
            }
        }
    }

    fn accepted(&self) -> Option<PeerIdentity> {
        match self.outcome.lock().ok()?.as_ref() {
            Some(Ok(p)) => Some(p.clone()),
            _ => None,
        }
    }
}

fn state_index() -> Result<Index<Ssl, HandshakeState>, TlsError> {
    static INDEX: OnceLock<Result<Index<Ssl, HandshakeState>, ErrorStack>> = OnceLock::new();
    INDEX
        .get_or_init(Ssl::new_ex_index)
        .clone()
        .map_err(config("allocating per-connection state"))
}

fn state_of(ssl: &SslRef) -> Option<&HandshakeState> {
    ssl.ex_data(state_index().ok()?)
}

/// The verify callback: accepts only if OpenSSL's own chain check and
/// [`PeerPolicy::check_peer`] both accept, deciding once per connection.
fn verify_callback(
    policy: PeerPolicy,
) -> impl Fn(bool, &mut X509StoreContextRef) -> bool + Send + Sync + 'static {
    move |preverify_ok, ctx| {
        if preverify_ok && ctx.error_depth() != 0 {
            return true;
        }
        let built: Vec<X509> = ctx
            .chain()
            .map(|s| s.iter().map(X509Ref::to_owned).collect())
            .unwrap_or_default();
        let openssl_error = ctx.error();
        let error_cert = ctx.current_cert().map(X509Ref::to_owned);
        let accept = {
            let state = X509StoreContext::ssl_idx()
                .ok()
                .and_then(|i| ctx.ex_data(i))
                .and_then(state_of);
            decide(
                &policy,
                state,
                &built,
                (!preverify_ok).then_some((openssl_error, error_cert)),
            )
        };
        if !accept && preverify_ok {
            ctx.set_error(X509VerifyResult::APPLICATION_VERIFICATION);
        }
        accept
    }
}

fn decide(
    policy: &PeerPolicy,
    state: Option<&HandshakeState>,
    built: &[X509],
    openssl_failure: Option<(X509VerifyResult, Option<X509>)>,
) -> bool {
    let mut slot = match state.map(|s| s.outcome.lock()) {
        Some(Ok(guard)) => Some(guard),
        // A poisoned lock: refuse.
        Some(Err(_)) => return false,
        None => None,
    };
    if let Some(Some(prior)) = slot.as_deref() {
        if prior.is_err() {
            return false;
        }
        if openssl_failure.is_none() {
            return true;
        }
    }
    let Some((leaf, untrusted)) = built.split_first() else {
        return false;
    };
    let pinned = state.and_then(|s| s.pinned.as_deref());
    let mut outcome = policy.check_peer(leaf, untrusted, pinned);
    if let (Ok(_), Some((err, cert))) = (&outcome, &openssl_failure) {
        // OpenSSL refused what the policy accepts: refuse, with OpenSSL's reason.
        let subject = cert.as_deref().map_or_else(
            || cert::subject_text(leaf.subject_name()),
            |c| cert::subject_text(c.subject_name()),
        );
        outcome = Err(TlsError::PeerUntrusted(ChainError::Untrusted {
            subject,
            reason: err.error_string(),
            code: err.as_raw(),
        }));
    }
    let accept = outcome.is_ok();
    if let Some(slot) = slot.as_deref_mut() {
        *slot = Some(outcome);
    }
    accept
}

fn configure(
    ctx: &mut SslContextBuilder,
    identity: &TlsIdentity,
    policy: &PeerPolicy,
) -> Result<(), TlsError> {
    if policy.anchors.is_empty() {
        return Err(TlsError::NoTrustAnchors);
    }
    ctx.set_min_proto_version(Some(SslVersion::TLS1_3))
        .map_err(config("setting the minimum TLS version"))?;
    ctx.set_max_proto_version(Some(SslVersion::TLS1_3))
        .map_err(config("setting the maximum TLS version"))?;
    ctx.set_private_key(&identity.key)
        .map_err(config("setting the private key"))?;
    ctx.set_certificate(&identity.cert)
        .map_err(config("setting the certificate"))?;
    for c in &identity.chain {
        ctx.add_extra_chain_cert(c.clone())
            .map_err(config("adding a chain certificate"))?;
    }
    ctx.check_private_key()
        .map_err(config("checking the private key against the certificate"))?;
    let mut store = X509StoreBuilder::new().map_err(config("creating a certificate store"))?;
    for a in policy.anchors.iter() {
        store
            .add_cert(a.clone())
            .map_err(config("adding a trust anchor"))?;
    }
    ctx.set_cert_store(store.build());
    ctx.verify_param_mut()
        .set_flags(X509VerifyFlags::PARTIAL_CHAIN)
        .map_err(config("setting verify flags"))?;
    ctx.set_session_cache_mode(SslSessionCacheMode::OFF);
    ctx.set_num_tickets(0)
        .map_err(config("turning session tickets off"))?;
    Ok(())
}

/// A server configuration: presents `identity`, requires a client
/// certificate, TLS 1.3 only, ALPN `h2`/`http/1.1`, and accepts a client
/// only if `policy` does (checked inside the handshake).
pub fn server_acceptor(
    identity: &TlsIdentity,
    policy: PeerPolicy,
) -> Result<SslAcceptor, TlsError> {
    let mut b = SslAcceptor::mozilla_modern_v5(SslMethod::tls_server())
        .map_err(config("creating a TLS server context"))?;
    configure(&mut b, identity, &policy)?;
    b.set_alpn_select_callback(|_, client| {
        select_next_proto(ALPN_PROTOCOLS, client).ok_or(AlpnError::NOACK)
    });
    b.set_verify_callback(
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
        verify_callback(policy),
    );
    Ok(b.build())
}

/// A client configuration: presents `identity`, TLS 1.3 only, offers ALPN
/// `h2`/`http/1.1`, and accepts a server only if `policy` does (checked
/// inside the handshake; with [`PeerRule::PinnedPerConnection`] the
/// fingerprint comes from [`connect`]). No hostname verification.
pub fn client_connector(
    identity: &TlsIdentity,
    policy: PeerPolicy,
) -> Result<SslConnector, TlsError> {
    let mut b = SslConnector::builder(SslMethod::tls_client())
        .map_err(config("creating a TLS client context"))?;
    configure(&mut b, identity, &policy)?;
    b.set_alpn_protos(ALPN_PROTOCOLS)
        .map_err(config("setting ALPN protocols"))?;
    b.set_verify_callback(SslVerifyMode::PEER, verify_callback(policy));
    Ok(b.build())
}

/// The identity of the peer of an established session, checked in full
/// against `policy` (TLS 1.3, chain, revocation, node identity, rule, and
/// the fingerprints pinned by [`connect`] if any).
pub fn verify_peer(ssl: &SslRef, policy: &PeerPolicy) -> Result<PeerIdentity, TlsError> {
    check_version(ssl)?;
    let leaf = ssl.peer_certificate().ok_or(TlsError::NoPeerCertificate)?;
    let untrusted: Vec<X509> = ssl
        .peer_cert_chain()
        .map(|s| s.iter().map(X509Ref::to_owned).collect())
        .unwrap_or_default();
    let pinned = state_of(ssl).and_then(|s| s.pinned.as_deref());
    policy.check_peer(&leaf, &untrusted, pinned)
}

fn check_version(ssl: &SslRef) -> Result<(), TlsError> {
    if ssl.version2() == Some(SslVersion::TLS1_3) {
        Ok(())
    } else {
        Err(TlsError::WrongProtocolVersion {
            detail: format!("negotiated {}", ssl.version_str()),
        })
    }
}

/// After a successful handshake: the in-handshake decision must exist, have
/// accepted, and be about the certificate the peer actually presented.
fn decided_peer(ssl: &SslRef) -> Result<PeerIdentity, TlsError> {
    check_version(ssl)?;
    let leaf = ssl.peer_certificate().ok_or(TlsError::NoPeerCertificate)?;
    let found =
        cert::try_fingerprint_sha256(&leaf).map_err(|e| TlsError::Certificate(Box::new(e)))?;
    let peer = state_of(ssl)
        .and_then(HandshakeState::accepted)
        .ok_or_else(|| {
            TlsError::PeerUntrusted(ChainError::Untrusted {
                subject: cert::subject_text(leaf.subject_name()),
                reason: "the peer was not checked during the handshake",
                code: X509VerifyResult::APPLICATION_VERIFICATION.as_raw(),
            })
        })?;
    if peer.fingerprint != found {
        return Err(TlsError::FingerprintMismatch {
            expected: vec![peer.fingerprint],
            found,
        });
    }
    Ok(peer)
}

// OpenSSL SSL-library reason codes (sslerr.h).
const ERR_LIB_SSL: i32 = 20;
const SSL_R_NO_PROTOCOLS_AVAILABLE: i32 = 191;
const SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE: i32 = 199;
const SSL_R_UNSUPPORTED_PROTOCOL: i32 = 258;
const SSL_R_TLSV1_ALERT_PROTOCOL_VERSION: i32 = 1070;

fn handshake_error(ssl: &SslRef, error: ssl::Error, server: bool) -> TlsError {
    if let Some(e) = state_of(ssl).and_then(HandshakeState::take_error) {
        return e;
    }
    let reasons: Vec<i32> = error
        .ssl_error()
        .map(|s| {
            s.errors()
                .iter()
                .filter(|e| e.library_code() == ERR_LIB_SSL)
                .map(|e| e.reason_code())
                .collect()
        })
        .unwrap_or_default();
    if reasons.iter().any(|r| {
        matches!(
            *r,
            SSL_R_NO_PROTOCOLS_AVAILABLE
                | SSL_R_UNSUPPORTED_PROTOCOL
                | SSL_R_TLSV1_ALERT_PROTOCOL_VERSION
        )
    }) {
        return TlsError::WrongProtocolVersion {
            detail: error.to_string(),
        };
    }
    if server && reasons.contains(&SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        return TlsError::NoPeerCertificate;
    }
    if error.ssl_error().is_some() {
        return TlsError::Handshake {
            reason: error.to_string(),
            source: error,
        };
    }
    match error.into_io_error() {
        Ok(io) => TlsError::Io(io),
        Err(error) => TlsError::Handshake {
            reason: error.to_string(),
            source: error,
        },
    }
}

async fn handshake<S>(
    ssl: Ssl,
    stream: S,
    timeout: Duration,
    server: bool,
) -> Result<SslStream<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut tls = SslStream::new(ssl, stream).map_err(config("creating a TLS stream"))?;
    let result = if server {
        tokio::time::timeout(timeout, Pin::new(&mut tls).accept()).await
    } else {
        tokio::time::timeout(timeout, Pin::new(&mut tls).connect()).await
    };
    match result {
        Err(_) => Err(TlsError::Timeout(timeout)),
        Ok(Err(e)) => Err(handshake_error(tls.ssl(), e, server)),
        Ok(Ok(())) => Ok(tls),
    }
}

// ------------------------------------------------------------- HTTPS

/// Which client certificates an HTTPS server ([`https_acceptor`]) asks for.
/// Unlike the node-to-node acceptor ([`server_acceptor`]), these servers
/// talk to information systems and browsers: TLS 1.2 or 1.3 (1.3 when the
/// client offers it), any certificate profile.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ClientCertificates<'a> {
    /// No client certificate is asked for.
    NotRequested,
    /// A client certificate is required and must chain to a CA in this PEM
    /// file; OpenSSL checks the chain in the handshake and refuses the
    /// connection otherwise.
    Required(&'a Path),
    /// A client certificate is asked for but optional. A certificate that is
    /// presented is accepted by the handshake whatever its chain (the
    /// client still proves it holds the key); the application decides
    /// what it is worth after the handshake — chain, expiry, revocation —
    /// from [`presented_chain`], and can answer with an error the client
    /// reads instead of a bare TLS alert. The anchors' names are sent as the
    /// acceptable CAs.
    Requested(&'a [X509]),
}

/// An HTTPS server configuration: the certificate chain of `cert_file`
/// (PEM, the server certificate first) with the key of `key_file` (PEM,
/// unencrypted), TLS 1.2 or 1.3, ALPN `h2`/`http/1.1`, and client
/// certificates as `clients` says.
///
/// # Errors
/// A file cannot be read or parsed, the key does not match, or OpenSSL
/// fails.
pub fn https_acceptor(
    cert_file: &Path,
    key_file: &Path,
    clients: ClientCertificates<'_>,
) -> Result<SslAcceptor, TlsError> {
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(config("creating a TLS server context"))?;
    b.set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(config("setting the minimum TLS version"))?;
    let read = |path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::ReadFile {
            path: path.to_path_buf(),
            source,
        })
    };
    let mut chain = cert::read_pem_chain(&read(cert_file)?)
        .map_err(|e| TlsError::Certificate(Box::new(e)))?
        .into_iter();
    let leaf = chain.next().ok_or_else(|| {
        TlsError::Certificate(Box::new(CertError::BadPem {
            detail: "the file holds no certificate",
            source: None,
        }))
    })?;
    let pkey = key::private_key_from_pem(&read(key_file)?, None).map_err(TlsError::Key)?;
    b.set_certificate(&leaf)
        .map_err(config("setting the certificate"))?;
    for c in chain {
        b.add_extra_chain_cert(c)
            .map_err(config("adding a chain certificate"))?;
    }
    b.set_private_key(&pkey)
        .map_err(config("setting the private key"))?;
    if b.check_private_key().is_err() {
        return Err(TlsError::KeyMismatch {
            subject: cert::subject_text(leaf.subject_name()),
        });
    }
    match clients {
        ClientCertificates::NotRequested => {}
        ClientCertificates::Required(ca) => {
            b.set_ca_file(ca)
                .map_err(config("reading the client CA file"))?;
            b.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
        }
        ClientCertificates::Requested(anchors) => {
            let mut names = openssl::stack::Stack::new()
                .map_err(config("listing the acceptable client CAs"))?;
            for a in anchors {
                names
                    .push(
                        a.subject_name()
                            .to_owned()
                            .map_err(config("listing the acceptable client CAs"))?,
                    )
                    .map_err(config("listing the acceptable client CAs"))?;
            }
            b.set_client_ca_list(names);
            // The handshake takes any certificate; the application judges it.
            b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
        }
    }
    b.set_alpn_select_callback(|_, client| {
        select_next_proto(ALPN_PROTOCOLS, client).ok_or(AlpnError::NOACK)
    });
    Ok(b.build())
}

/// Runs the server side of an HTTPS handshake with an acceptor of
/// [`https_acceptor`] within `timeout`. Identity checks, if any, are the
/// caller's (see [`ClientCertificates`]).
///
/// # Errors
/// The handshake failed or timed out.
pub async fn accept_https<S>(
    acceptor: &SslAcceptor,
    stream: S,
    timeout: Duration,
) -> Result<SslStream<S>, TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let ssl = Ssl::new(acceptor.context()).map_err(config("creating a TLS session"))?;
    handshake(ssl, stream, timeout, true).await
}

/// The certificates the peer of an established session presented: its
/// certificate first, then the others it sent (not verified).
pub fn presented_chain(ssl: &SslRef) -> Vec<X509> {
    let mut out: Vec<X509> = ssl.peer_certificate().into_iter().collect();
    if let Some(stack) = ssl.peer_cert_chain() {
        for c in stack {
            if out
                .first()
                .is_none_or(|l| l.to_der().ok() != c.to_der().ok())
            {
                out.push(c.to_owned());
            }
        }
    }
    out
}

/// Runs the server side of a handshake on `stream` (normally a
/// `tokio::net::TcpStream`) within `timeout`, and returns the TLS stream and
/// the authenticated client. The client is checked inside the handshake by
/// the acceptor's policy, then once more with [`verify_peer`] against
/// `policy` (normally the one given to [`server_acceptor`]).
pub async fn accept<S>(
    acceptor: &SslAcceptor,
    stream: S,
    policy: &PeerPolicy,
    timeout: Duration,
) -> Result<(SslStream<S>, PeerIdentity), TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let index = state_index()?;
    let mut ssl = Ssl::new(acceptor.context()).map_err(config("creating a TLS session"))?;
    ssl.set_ex_data(index, HandshakeState::new(None));
    let tls = handshake(ssl, stream, timeout, true).await?;
    let decided = decided_peer(tls.ssl())?;
    let peer = verify_peer(tls.ssl(), policy)?;
    if peer != decided {
        return Err(TlsError::FingerprintMismatch {
            expected: vec![decided.fingerprint],
            found: peer.fingerprint,
        });
    }
    Ok((tls, peer))
}

/// Runs the client side of a handshake on `stream` (normally a
/// `tokio::net::TcpStream`) within `timeout`, accepting only the server
/// whose certificate has one of `expected_fingerprints` (those registered
/// for the node dialled, e.g. `auth_cert_sha256` of the global
/// configuration; hex, case and `:` separators ignored) and which the connector's policy accepts. No SNI, no
/// hostname check.
pub async fn connect<S>(
    connector: &SslConnector,
    stream: S,
    expected_fingerprints: &[impl AsRef<str>],
    timeout: Duration,
) -> Result<(SslStream<S>, PeerIdentity), TlsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let index = state_index()?;
    let mut cfg = connector
        .configure()
        .map_err(config("creating a TLS session"))?;
    cfg.set_verify_hostname(false);
    cfg.set_use_server_name_indication(false);
    let mut ssl = cfg.into_ssl("").map_err(config("creating a TLS session"))?;
    ssl.set_ex_data(
        index,
        HandshakeState::new(Some(
            expected_fingerprints
                .iter()
                .map(|f| normalize_fingerprint(f.as_ref()))
                .collect(),
        )),
    );
    let tls = handshake(ssl, stream, timeout, false).await?;
    let peer = decided_peer(tls.ssl())?;
    Ok((tls, peer))
}
