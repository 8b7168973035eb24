//! HTTPS servers for information systems ([`https_acceptor`]).

use std::path::Path;

use openssl::ssl::{
    select_next_proto, AlpnError, SslAcceptor, SslMethod, SslRef, SslVerifyMode, SslVersion,
};
use openssl::x509::X509;

use crate::cert::{self, CertError};
use crate::key;

use super::{config, TlsError, ALPN_PROTOCOLS};

/// Which client certificates an HTTPS server ([`https_acceptor`]) asks for.
/// Unlike the node-to-node acceptor ([`server_acceptor`](super::server_acceptor)), these servers
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
