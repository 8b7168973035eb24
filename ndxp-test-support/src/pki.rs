//! A test PKI: the CA of `ndxp_sign::ca` in a directory, and certificates
//! it issues from fresh EC P-256 keys, valid 30 days.

use std::path::Path;

use ndxp_core::{MemberId, NodeName};
use ndxp_sign::ca::{InitOptions, Pki};
use ndxp_sign::cert::Profile;
use ndxp_sign::csr;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::openssl::pkey::{PKey, PKeyRef, Private};
use ndxp_sign::openssl::x509::X509;

/// How long the certificates issued here are valid, in days.
pub const VALIDITY_DAYS: u32 = 30;

/// `Pki::init` in `dir` with the default names and `ocsp_url` as the OCSP
/// responder named in the certificates.
pub fn init_pki(dir: &Path, ocsp_url: &str) -> Pki {
    init(
        dir,
        InitOptions {
            ocsp_url: ocsp_url.into(),
            ..InitOptions::default()
        },
    )
}

/// Like [`init_pki`], with `name` as the root CA's name.
pub fn init_named_pki(dir: &Path, name: &str, ocsp_url: &str) -> Pki {
    init(
        dir,
        InitOptions {
            name: name.into(),
            ocsp_url: ocsp_url.into(),
            ..InitOptions::default()
        },
    )
}

fn init(dir: &Path, opts: InitOptions) -> Pki {
    Pki::init(dir, &opts)
        .unwrap_or_else(|e| panic!("cannot create a test PKI in {}: {e}", dir.display()))
}

/// A fresh EC P-256 key.
pub fn ec_key() -> PKey<Private> {
    KeyAlgorithm::EcP256
        .generate()
        .unwrap_or_else(|e| panic!("cannot generate an EC key: {e}"))
}

/// A signing certificate of `member` for `key`, then the CA's
/// intermediates.
pub fn sign_chain(pki: &Pki, member: &MemberId, key: &PKeyRef<Private>) -> Vec<X509> {
    let req = csr::build_sign_csr(member, key)
        .unwrap_or_else(|e| panic!("cannot build a signing CSR for {member}: {e}"));
    let cert = pki
        .issue(&req, Profile::Sign, VALIDITY_DAYS)
        .unwrap_or_else(|e| panic!("cannot issue a signing certificate for {member}: {e}"));
    let mut chain = vec![cert];
    chain.extend(pki.chain().iter().cloned());
    chain
}

/// A member's signing key and its chain (signing certificate first).
pub struct Signer {
    /// The member.
    pub member: MemberId,
    /// The fresh EC P-256 signing key.
    pub key: PKey<Private>,
    /// The signing certificate, then the CA's intermediates.
    pub chain: Vec<X509>,
}

impl Signer {
    /// The signing certificate (the first of [`chain`](Signer::chain)).
    pub fn cert(&self) -> &X509 {
        &self.chain[0]
    }
}

/// A fresh signing key of `member` and a certificate for it.
pub fn member_signer(pki: &Pki, member: &MemberId) -> Signer {
    let key = ec_key();
    let chain = sign_chain(pki, member, &key);
    Signer {
        member: member.clone(),
        key,
        chain,
    }
}

/// A TLS authentication certificate of `member`'s node `node`, for a fresh
/// key (which the tests do not need and is dropped).
pub fn node_auth_cert(pki: &Pki, member: &MemberId, node: &NodeName) -> X509 {
    let key = ec_key();
    let req = csr::build_auth_csr(member, node, &[], &[], &key)
        .unwrap_or_else(|e| panic!("cannot build an auth CSR for {member}/{node}: {e}"));
    pki.issue(&req, Profile::Auth, VALIDITY_DAYS)
        .unwrap_or_else(|e| panic!("cannot issue an auth certificate for {member}/{node}: {e}"))
}

/// A certificate as PEM text.
pub fn pem(cert: &X509) -> String {
    let bytes = cert
        .to_pem()
        .unwrap_or_else(|e| panic!("cannot encode a certificate as PEM: {e}"));
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("PEM is not UTF-8: {e}"))
}
