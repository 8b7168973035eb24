//! The node's TLS identity ([`TlsIdentity`]).

use std::fmt;
use std::path::Path;

use ndxp_core::id::{MemberId, NodeName};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::x509::X509;

use crate::cert::{self, CertError};
use crate::key;

use super::{config, TlsError};

/// The node's TLS identity: its authentication key, certificate and the CA
/// certificates sent along with it.
#[derive(Clone)]
pub struct TlsIdentity {
    pub(super) key: PKey<Private>,
    pub(super) cert: X509,
    pub(super) chain: Vec<X509>,
    pub(super) member: MemberId,
    pub(super) node: NodeName,
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
