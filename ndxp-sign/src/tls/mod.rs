//! Mutual TLS 1.3 between nodes (docs/design.md §5): the node's TLS identity, what
//! a peer must be ([`PeerPolicy`]), OpenSSL acceptors and connectors built
//! from them, and async handshake helpers for tokio streams ([`accept`],
//! [`connect`], [`accept_https`]: with the `tokio` feature, on by default).
//!
//! # What a peer must be
//!
//! Both ends present their node **authentication** certificate. A peer is
//! accepted only if all of these hold ([`PeerPolicy::check_peer`]):
//!
//! 1. its certificate chains to one of the policy's trust anchors (the CAs
//!    listed in the global configuration), is valid now, is fit for
//!    authentication (serverAuth + clientAuth) and is not revoked —
//!    all decided by [`chain::verify_chain`](crate::chain::verify_chain) with [`Purpose::Auth`](crate::chain::Purpose::Auth);
//! 2. it carries a node identity ([`cert::node_of`](crate::cert::node_of); a signing certificate
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
//! - Revocation is asked of a synchronous [`RevocationChecker`](crate::chain::RevocationChecker) (normally
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
//! # #[cfg(feature = "tokio")]
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

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use ndxp_core::id::{MemberId, NodeName};
use openssl::error::ErrorStack;
use openssl::ssl;

use crate::cert::CertError;
use crate::chain::ChainError;
use crate::key::KeyError;

mod handshake;
mod https;
mod identity;
mod policy;
#[cfg(feature = "tokio")]
mod stream;

pub use handshake::{client_connector, server_acceptor, verify_peer};
pub use https::{https_acceptor, presented_chain, ClientCertificates};
pub use identity::TlsIdentity;
pub use policy::{ClockFn, PeerIdentity, PeerPolicy, PeerRule, RegisteredFn};
#[cfg(feature = "tokio")]
pub use stream::{accept, accept_https, connect};

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
