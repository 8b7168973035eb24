//! PKCS#10 certificate signing requests: building one for an
//! authentication identity (member + node, with optional DNS names and IP
//! addresses) or a signing identity (member), and reading one back with its
//! self-signature verified.
//!
//! The subject and the `urn:ndxp:` subjectAltName URI follow the mapping in
//! [`crate::cert`]. DNS names and IP addresses of an authentication request
//! travel in a requested subjectAltName extension. [`read_request`] is what
//! the CA uses: it returns only vetted values (the identity, syntactically
//! valid DNS names, IP addresses) and ignores every other requested
//! extension, so nothing the requester chose beyond those reaches a
//! certificate.
//!
//! # Example
//!
//! ```
//! use ndxp_sign::cert::{Identity, Profile};
//! use ndxp_sign::csr;
//! use ndxp_sign::key::KeyAlgorithm;
//!
//! let key = KeyAlgorithm::EcP256.generate()?;
//! let member = "VN/GOV/000.00.00.H29".parse()?;
//! let node = "node1".parse()?;
//! let req = csr::build_auth_csr(&member, &node, &["node1.example.vn".to_string()], &[], &key)?;
//! let pem = req.to_pem()?;
//!
//! let parsed = csr::parse_csr(&pem)?;
//! let wanted = csr::read_request(&parsed, Profile::Auth)?;
//! assert_eq!(wanted.identity, Identity::Node(member, node));
//! assert_eq!(wanted.dns_names, vec!["node1.example.vn".to_string()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::net::IpAddr;

use ndxp_core::id::{MemberId, NodeName};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Builder, X509Req, X509ReqRef};

use crate::cert::{CertError, Identity, Profile};
use crate::key::{self, KeyError};

/// Errors building or reading a CSR.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// The input is neither a PEM `CERTIFICATE REQUEST` nor DER.
    #[error("not a PKCS#10 certificate request in PEM or DER form")]
    Malformed(#[source] ErrorStack),
    /// The self-signature does not verify with the request's public key.
    #[error("the certificate request's signature does not verify; it was altered or signed with another key")]
    BadSignature,
    /// The OpenSSL signature check itself failed.
    #[error("could not check the certificate request's signature")]
    Verify(#[source] ErrorStack),
    /// The requested key is not acceptable.
    #[error("the certificate request's public key is not acceptable")]
    Key(#[source] KeyError),
    /// The requested identity is invalid.
    #[error("the certificate request does not name a valid {profile} identity")]
    Identity {
        /// The profile asked for.
        profile: Profile,
        /// Why.
        #[source]
        source: CertError,
    },
    /// The requested subjectAltName holds something that cannot be issued.
    #[error("requested subjectAltName: {0}")]
    AltName(String),
    /// Building or signing the request failed.
    #[error("could not build the certificate request")]
    Build(#[source] ErrorStack),
}

/// What a CSR asks for, after vetting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestedCertificate {
    /// The identity, from the subject (and the SAN URI, if present, which
    /// must agree).
    pub identity: Identity,
    /// DNS names for an authentication certificate (lowercased).
    pub dns_names: Vec<String>,
    /// IP addresses for an authentication certificate.
    pub ip_addresses: Vec<IpAddr>,
}

/// Encodes a CSR as PEM (`CERTIFICATE REQUEST`).
pub fn csr_to_pem(req: &X509ReqRef) -> Result<Vec<u8>, CsrError> {
    req.to_pem().map_err(CsrError::Build)
}

/// Builds and signs a CSR for a node's authentication (TLS) certificate.
pub fn build_auth_csr(
    member: &MemberId,
    node: &NodeName,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
    key: &PKeyRef<Private>,
) -> Result<X509Req, CsrError> {
    build_csr(
        &Identity::Node(member.clone(), node.clone()),
        dns_names,
        ip_addresses,
        key,
    )
}

/// Builds and signs a CSR for a member's signing certificate.
pub fn build_sign_csr(member: &MemberId, key: &PKeyRef<Private>) -> Result<X509Req, CsrError> {
    build_csr(&Identity::Member(member.clone()), &[], &[], key)
}

/// Builds and signs a CSR (SHA-256) for `identity`. DNS names and IP
/// addresses are only allowed for node identities and are checked as the CA
/// will check them.
pub fn build_csr(
    identity: &Identity,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
    key: &PKeyRef<Private>,
) -> Result<X509Req, CsrError> {
    key::check_acceptable(key).map_err(CsrError::Key)?;
    if identity.profile() == Profile::Sign && !(dns_names.is_empty() && ip_addresses.is_empty()) {
        return Err(CsrError::AltName(
            "a signing certificate carries no DNS names or IP addresses".to_string(),
        ));
    }
    for d in dns_names {
        check_dns_name(d)?;
    }
    let subject = identity
        .subject_name()
        .map_err(|source| CsrError::Identity {
            profile: identity.profile(),
            source,
        })?;
    let build = || -> Result<X509Req, ErrorStack> {
        let mut b = X509Req::builder()?;
        b.set_version(0)?;
        b.set_subject_name(&subject)?;
        b.set_pubkey(key)?;
        let mut san = SubjectAlternativeName::new();
        san.uri(&identity.uri());
        for d in dns_names {
            san.dns(d);
        }
        for ip in ip_addresses {
            san.ip(&ip.to_string());
        }
        let ctx = b.x509v3_context(None);
        let ext = san.build(&ctx)?;
        let mut exts = Stack::new()?;
        exts.push(ext)?;
        b.add_extensions(&exts)?;
        b.sign(key, MessageDigest::sha256())?;
        Ok(b.build())
    };
    build().map_err(CsrError::Build)
}

/// Parses a CSR from PEM or DER and verifies its self-signature.
pub fn parse_csr(data: &[u8]) -> Result<X509Req, CsrError> {
    let trimmed = data.trim_ascii_start();
    let req = if trimmed.starts_with(b"-----BEGIN") {
        X509Req::from_pem(data)
    } else {
        X509Req::from_der(data)
    }
    .map_err(CsrError::Malformed)?;
    verify_csr(&req)?;
    Ok(req)
}

/// Verifies a CSR's self-signature.
pub fn verify_csr(req: &X509ReqRef) -> Result<(), CsrError> {
    let pubkey = req.public_key().map_err(CsrError::Verify)?;
    // OpenSSL returns an error (rather than `false`) for some corrupt
    // signatures; both mean the same to the requester.
    match req.verify(&pubkey) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(CsrError::BadSignature),
    }
}

/// Verifies a CSR and extracts the vetted values a certificate of `profile`
/// may carry. Requested extensions other than subjectAltName are ignored;
/// a subjectAltName may only hold this identity's `urn:ndxp:` URI and, for
/// `Auth`, DNS names and IP addresses.
pub fn read_request(req: &X509ReqRef, profile: Profile) -> Result<RequestedCertificate, CsrError> {
    verify_csr(req)?;
    let pubkey = req.public_key().map_err(CsrError::Verify)?;
    key::check_acceptable(&pubkey).map_err(CsrError::Key)?;
    let identity = Identity::from_subject(req.subject_name(), profile)
        .map_err(|source| CsrError::Identity { profile, source })?;

    let mut out = RequestedCertificate {
        identity,
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
    };
    let exts = req.extensions().map_err(CsrError::Malformed)?;
    let san_count = exts
        .iter()
        .filter(|e| e.to_der().map(|d| is_san(&d)).unwrap_or(false))
        .count();
    if san_count == 0 {
        return Ok(out);
    }
    if san_count > 1 {
        return Err(CsrError::AltName(
            "more than one subjectAltName extension".to_string(),
        ));
    }
    // Let OpenSSL decode the GeneralNames: attach the requested extensions to
    // a scratch certificate that is never signed nor used otherwise.
    let names = {
        let mut scratch = X509Builder::new().map_err(CsrError::Malformed)?;
        for e in exts.iter() {
            scratch.append_extension2(e).map_err(CsrError::Malformed)?;
        }
        scratch.build().subject_alt_names().ok_or_else(|| {
            CsrError::AltName("the subjectAltName extension cannot be decoded".to_string())
        })?
    };
    let want_uri = out.identity.uri();
    for n in names.iter() {
        if let Some(uri) = n.uri() {
            if uri != want_uri {
                return Err(CsrError::AltName(format!(
                    "URI {uri:?} does not match the subject's identity {want_uri:?}"
                )));
            }
        } else if let Some(d) = n.dnsname() {
            if profile != Profile::Auth {
                return Err(CsrError::AltName(format!(
                    "DNS name {d:?} is not allowed in a {profile} certificate"
                )));
            }
            check_dns_name(d)?;
            let d = d.to_ascii_lowercase();
            if !out.dns_names.contains(&d) {
                out.dns_names.push(d);
            }
        } else if let Some(ip) = n.ipaddress() {
            if profile != Profile::Auth {
                return Err(CsrError::AltName(format!(
                    "IP addresses are not allowed in a {profile} certificate"
                )));
            }
            let ip = match ip.len() {
                4 => IpAddr::from(<[u8; 4]>::try_from(ip).unwrap_or_default()),
                16 => IpAddr::from(<[u8; 16]>::try_from(ip).unwrap_or_default()),
                n => {
                    return Err(CsrError::AltName(format!(
                        "an IP address of {n} bytes (expected 4 or 16)"
                    )))
                }
            };
            if !out.ip_addresses.contains(&ip) {
                out.ip_addresses.push(ip);
            }
        } else {
            return Err(CsrError::AltName(
                "only the urn:ndxp: URI, DNS names and IP addresses may be requested".to_string(),
            ));
        }
    }
    Ok(out)
}

/// Is this DER `Extension` a subjectAltName (OID 2.5.29.17)?
fn is_san(der: &[u8]) -> bool {
    const OID: [u8; 5] = [0x06, 0x03, 0x55, 0x1d, 0x11];
    let header = match der {
        [0x30, l, ..] if *l < 0x80 => 2,
        [0x30, l, ..] => 2 + usize::from(*l & 0x7f),
        _ => return false,
    };
    der.get(header..).is_some_and(|rest| rest.starts_with(&OID))
}

/// Checks a DNS name: dot-separated labels of letters, digits and `-` (not
/// first or last), 1–63 bytes each, at most 253 bytes. No wildcards.
pub fn check_dns_name(name: &str) -> Result<(), CsrError> {
    let bad = |why: &str| Err(CsrError::AltName(format!("DNS name {name:?} {why}")));
    if name.is_empty() || name.len() > 253 {
        return bad("must be 1 to 253 characters long");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("has an empty or over-long label");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return bad("may contain only letters, digits, '-' and '.' (no wildcards)");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("has a label that starts or ends with '-'");
        }
    }
    Ok(())
}
