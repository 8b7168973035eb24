//! Node-to-node acceptors and connectors: the OpenSSL verify callback that
//! runs the peer policy inside the handshake, and [`verify_peer`] for an
//! established session.

use std::sync::{Mutex, OnceLock};

use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::ssl::{
    select_next_proto, AlpnError, Ssl, SslAcceptor, SslConnector, SslContextBuilder, SslMethod,
    SslRef, SslSessionCacheMode, SslVerifyMode, SslVersion,
};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::verify::X509VerifyFlags;
use openssl::x509::{X509Ref, X509StoreContext, X509StoreContextRef, X509VerifyResult, X509};

use crate::cert;
use crate::chain::ChainError;

use super::identity::TlsIdentity;
use super::policy::{PeerIdentity, PeerPolicy};
use super::{config, TlsError, ALPN_PROTOCOLS};

/// Per-connection state kept in the `Ssl`: the fingerprints pinned for it
/// and the verify callback's decision.
pub(super) struct HandshakeState {
    pub(super) pinned: Option<Vec<String>>,
    pub(super) outcome: Mutex<Option<Result<PeerIdentity, TlsError>>>,
}

pub(super) fn state_index() -> Result<Index<Ssl, HandshakeState>, TlsError> {
    static INDEX: OnceLock<Result<Index<Ssl, HandshakeState>, ErrorStack>> = OnceLock::new();
    INDEX
        .get_or_init(Ssl::new_ex_index)
        .clone()
        .map_err(config("allocating per-connection state"))
}

pub(super) fn state_of(ssl: &SslRef) -> Option<&HandshakeState> {
    ssl.ex_data(state_index().ok()?)
}

/// The verify callback: accepts only if OpenSSL's own chain check and
/// [`PeerPolicy::check_peer`] both accept, deciding once per connection.
pub(super) fn verify_callback(
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

pub(super) fn decide(
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

/// What the node-to-node acceptor and connector share: TLS 1.3 only,
/// `identity`, the policy's anchors, no session resumption, and the verify
/// callback running `policy` with `mode`.
pub(super) fn configure(
    ctx: &mut SslContextBuilder,
    identity: &TlsIdentity,
    policy: PeerPolicy,
    mode: SslVerifyMode,
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
    ctx.set_verify_callback(mode, verify_callback(policy));
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
    configure(
        &mut b,
        identity,
        policy,
        SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
    )?;
    b.set_alpn_select_callback(|_, client| {
        select_next_proto(ALPN_PROTOCOLS, client).ok_or(AlpnError::NOACK)
    });
    Ok(b.build())
}

/// A client configuration: presents `identity`, TLS 1.3 only, offers ALPN
/// `h2`/`http/1.1`, and accepts a server only if `policy` does (checked
/// inside the handshake; with [`PeerRule::PinnedPerConnection`](super::PeerRule::PinnedPerConnection) the
/// fingerprint comes from [`connect`](super::connect)). No hostname verification.
pub fn client_connector(
    identity: &TlsIdentity,
    policy: PeerPolicy,
) -> Result<SslConnector, TlsError> {
    let mut b = SslConnector::builder(SslMethod::tls_client())
        .map_err(config("creating a TLS client context"))?;
    configure(&mut b, identity, policy, SslVerifyMode::PEER)?;
    b.set_alpn_protos(ALPN_PROTOCOLS)
        .map_err(config("setting ALPN protocols"))?;
    Ok(b.build())
}

/// The identity of the peer of an established session, checked in full
/// against `policy` (TLS 1.3, chain, revocation, node identity, rule, and
/// the fingerprints pinned by [`connect`](super::connect) if any).
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

pub(super) fn check_version(ssl: &SslRef) -> Result<(), TlsError> {
    if ssl.version2() == Some(SslVersion::TLS1_3) {
        Ok(())
    } else {
        Err(TlsError::WrongProtocolVersion {
            detail: format!("negotiated {}", ssl.version_str()),
        })
    }
}
