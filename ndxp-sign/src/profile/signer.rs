//! A member's signing identity ([`Signer`]) and its `NDXP-Signer-Cert` header.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use http::header::HeaderValue;
use ndxp_core::MemberId;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::X509;

use crate::cert;
use crate::httpsig::{
    Algorithm, Component, MessageSigner, SignatureParams, SigningKey, StoreSigningKey,
};
use crate::key::KeyStore;

use super::{ProfileError, Result, TAG};

/// A member's signing identity: its key, certificate and intermediates.
#[derive(Clone)]
pub struct Signer {
    pub(super) key: SignerKey,
    pub(super) cert: X509,
    pub(super) chain: Vec<X509>,
    pub(super) member: MemberId,
    pub(super) fingerprint: String,
    pub(super) cert_header: HeaderValue,
    pub(super) role: SignerRole,
}

/// Where a [`Signer`]'s private key is: in memory, or in a [`KeyStore`]
/// such as a PKCS#11 token.
#[derive(Clone)]
pub(super) enum SignerKey {
    File(SigningKey),
    Store(StoreSigningKey),
}

impl MessageSigner for SignerKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            SignerKey::File(k) => k.algorithm(),
            SignerKey::Store(k) => MessageSigner::algorithm(k),
        }
    }
    fn keyid(&self) -> &str {
        match self {
            SignerKey::File(k) => k.keyid(),
            SignerKey::Store(k) => MessageSigner::keyid(k),
        }
    }
    fn sign_bytes(&self, data: &[u8]) -> Result<Vec<u8>, crate::httpsig::SignatureError> {
        match self {
            SignerKey::File(k) => k.sign_bytes(data),
            SignerKey::Store(k) => k.sign_bytes(data),
        }
    }
}

/// Where a [`Signer`]'s private key is ([`Signer::key_source`]).
#[derive(Clone, Copy)]
pub enum SignerKeySource<'a> {
    /// In memory.
    Private(&'a PKeyRef<Private>),
    /// Key `.1` of the key store `.0` (e.g. on a PKCS#11 token).
    Store(&'a Arc<dyn KeyStore>, &'a str),
}

impl fmt::Debug for SignerKeySource<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignerKeySource::Private(_) => f.write_str("Private(..)"),
            SignerKeySource::Store(_, name) => f.debug_tuple("Store").field(name).finish(),
        }
    }
}

/// For whose clients a [`Signer`] signs requests ([`sign_request`](super::sign_request)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SignerRole {
    /// Only for clients of its own member (`NDXP-Client` is a subsystem of
    /// the signer's member), as a node does.
    #[default]
    Member,
    /// Also for clients of other members that it authenticated itself, as
    /// the central gateway does for consumers without a node (DigiSign
    /// adapter, docs/design.md §9): the signer vouches for the client.
    Intermediary,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("member", &self.member)
            .field("fingerprint", &self.fingerprint)
            .field("algorithm", &self.key.algorithm())
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with the key's default algorithm (`ecdsa-p256-sha256` for
    /// EC P-256, `rsa-pss-sha512` for RSA). `cert` must be a member signing
    /// certificate for `key`; `chain` holds the intermediates (the root may
    /// be left out), sent along for the receiver's path building.
    ///
    /// # Errors
    /// [`ProfileError::BadSigner`] when the key does not fit the
    /// certificate or any supported algorithm;
    /// [`ProfileError::BadCertificate`] when `cert` carries no member
    /// identity.
    pub fn new(key: PKey<Private>, cert: X509, chain: Vec<X509>) -> Result<Self> {
        let alg = Algorithm::default_for_key(&key)
            .map_err(|_| ProfileError::BadSigner("the key is neither EC P-256 nor RSA"))?;
        Self::with_algorithm(key, alg, cert, chain)
    }

    /// A signer with an explicit algorithm, e.g. `rsa-v1_5-sha256` for an
    /// older RSA key.
    ///
    /// # Errors
    /// As [`Signer::new`].
    pub fn with_algorithm(
        key: PKey<Private>,
        alg: Algorithm,
        cert: X509,
        chain: Vec<X509>,
    ) -> Result<Self> {
        let cert_public = cert
            .public_key()
            .map_err(|_| ProfileError::BadSigner("the certificate's public key is unreadable"))?;
        if !key.public_eq(&cert_public) {
            return Err(ProfileError::BadSigner(
                "the signing key does not belong to the signing certificate",
            ));
        }
        let member = cert::member_of(&cert).map_err(ProfileError::BadCertificate)?;
        let fingerprint =
            cert::try_fingerprint_sha256(&cert).map_err(ProfileError::BadCertificate)?;
        let key = SigningKey::with_algorithm(key, alg, fingerprint.clone())
            .map_err(|_| ProfileError::BadSigner("the key cannot be used with this algorithm"))?;
        let cert_header = encode_cert_header(&cert, &chain)?;
        Ok(Self {
            key: SignerKey::File(key),
            cert,
            chain,
            member,
            fingerprint,
            cert_header,
            role: SignerRole::Member,
        })
    }

    /// A signer whose private key is `name` in `store` (for instance a
    /// [`Pkcs11KeyStore`](crate::pkcs11) whose key never leaves the token),
    /// with the key's default algorithm. Checks, as [`Signer::new`], that
    /// `cert` is a member certificate for the store's key.
    ///
    /// # Errors
    /// As [`Signer::new`]; [`ProfileError::BadSigner`] also when the store
    /// has no key `name`.
    pub fn from_store(
        store: Arc<dyn KeyStore>,
        name: &str,
        cert: X509,
        chain: Vec<X509>,
    ) -> Result<Self> {
        let cert_public = cert
            .public_key()
            .map_err(|_| ProfileError::BadSigner("the certificate's public key is unreadable"))?;
        let public = store
            .public_key(name)
            .map_err(|_| ProfileError::BadSigner("the key store has no such key"))?;
        if !public.public_eq(&cert_public) {
            return Err(ProfileError::BadSigner(
                "the signing key does not belong to the signing certificate",
            ));
        }
        let member = cert::member_of(&cert).map_err(ProfileError::BadCertificate)?;
        let fingerprint =
            cert::try_fingerprint_sha256(&cert).map_err(ProfileError::BadCertificate)?;
        let key = StoreSigningKey::new(store, name, fingerprint.clone())
            .map_err(|_| ProfileError::BadSigner("the key is neither EC P-256 nor RSA"))?;
        let cert_header = encode_cert_header(&cert, &chain)?;
        Ok(Self {
            key: SignerKey::Store(key),
            cert,
            chain,
            member,
            fingerprint,
            cert_header,
            role: SignerRole::Member,
        })
    }

    /// This signer in `role`; a new signer is a [`SignerRole::Member`].
    #[must_use]
    pub fn with_role(mut self, role: SignerRole) -> Self {
        self.role = role;
        self
    }

    /// For whose clients this signer signs requests.
    #[must_use]
    pub fn role(&self) -> SignerRole {
        self.role
    }

    /// The member this signer signs for.
    #[must_use]
    pub fn member(&self) -> &MemberId {
        &self.member
    }

    /// The certificate's SHA-256 fingerprint (the `keyid`).
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The signing certificate.
    #[must_use]
    pub fn certificate(&self) -> &X509 {
        &self.cert
    }

    /// The intermediates sent after the certificate.
    #[must_use]
    pub fn chain(&self) -> &[X509] {
        &self.chain
    }

    /// The algorithm this signer uses.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// The underlying RFC 9421 signing key (its `keyid` is the
    /// fingerprint).
    #[must_use]
    pub fn signing_key(&self) -> &(dyn MessageSigner + Send + Sync) {
        &self.key
    }

    /// Where the private key is: in memory ([`Signer::new`]) or in a key
    /// store ([`Signer::from_store`]), for signing other things with it
    /// (e.g. JWS documents).
    #[must_use]
    pub fn key_source(&self) -> SignerKeySource<'_> {
        match &self.key {
            SignerKey::File(k) => SignerKeySource::Private(k.private_key()),
            SignerKey::Store(k) => SignerKeySource::Store(k.store(), k.name()),
        }
    }

    pub(super) fn params(&self, components: Vec<Component>, created: i64) -> SignatureParams {
        SignatureParams::new(components)
            .with_created(created)
            .with_keyid(self.key.keyid())
            .with_alg(self.key.algorithm())
            .with_tag(TAG)
    }
}

pub(super) fn encode_cert_header(cert: &X509, chain: &[X509]) -> Result<HeaderValue> {
    let mut out = String::new();
    for (i, c) in std::iter::once(cert).chain(chain).enumerate() {
        let der = c
            .to_der()
            .map_err(|_| ProfileError::BadSigner("a certificate cannot be encoded as DER"))?;
        if i > 0 {
            out.push_str(", ");
        }
        out.push(':');
        base64::engine::general_purpose::STANDARD.encode_string(&der, &mut out);
        out.push(':');
    }
    HeaderValue::from_str(&out).map_err(|_| ProfileError::BadSigner("certificate header"))
}
