//! What a peer must be ([`PeerPolicy`], [`PeerRule`]) and who it is
//! ([`PeerIdentity`]).

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use ndxp_core::id::{MemberId, NodeName};
use openssl::x509::{X509Ref, X509};

use crate::cert;
use crate::chain::{self, NoRevocationCheck, Purpose, RevocationChecker};

use super::TlsError;

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
    /// ([`connect`](super::connect)); a connection without one is refused. The client side.
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
    pub(super) anchors: Arc<[X509]>,
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
pub(super) fn normalize_fingerprint(fp: &str) -> String {
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

    /// Accepts the certificate whose fingerprint is given to [`connect`](super::connect) for
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
