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
use openssl::pkey::{HasPublic, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509Builder, X509Req, X509ReqBuilder, X509ReqRef};

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
    /// The external signer of [`build_csr_with_signer`] failed.
    #[error("the key holder could not sign the certificate request")]
    Signer(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// OpenSSL produced a request this module could not take apart.
    #[error("could not encode the certificate request")]
    Encode,
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
    let b = request_builder(identity, dns_names, ip_addresses, key)?;
    let sign = |mut b: X509ReqBuilder| -> Result<X509Req, ErrorStack> {
        b.sign(key, MessageDigest::sha256())?;
        Ok(b.build())
    };
    sign(b).map_err(CsrError::Build)
}

/// Builds a CSR (SHA-256) for `identity` whose key is held elsewhere, such
/// as on a PKCS#11 token: `public_key` goes into the request and `sign`
/// signs the DER `CertificationRequestInfo`. `sign` gets the exact bytes to
/// sign and must return an ECDSA-with-SHA-256 signature (DER
/// `ECDSA-Sig-Value`) for an EC key, an RSASSA-PKCS1-v1_5 SHA-256 signature
/// for an RSA key: what [`crate::key::KeyStore::sign`] returns for
/// `MessageDigest::sha256()` and [`crate::key::RsaPadding::Pkcs1v15`]. The
/// request is checked against `public_key` before it is returned, so a
/// signer that signs with another key gives [`CsrError::BadSignature`].
pub fn build_csr_with_signer<T, F, E>(
    identity: &Identity,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
    public_key: &PKeyRef<T>,
    sign: F,
) -> Result<X509Req, CsrError>
where
    T: HasPublic,
    F: FnOnce(&[u8]) -> Result<Vec<u8>, E>,
    E: std::error::Error + Send + Sync + 'static,
{
    let kind = key::check_acceptable(public_key).map_err(CsrError::Key)?;
    let b = request_builder(identity, dns_names, ip_addresses, public_key)?;
    // The builder only signs with a private key it holds: sign with a
    // throwaway key, keep the CertificationRequestInfo and put the real
    // signature around it.
    let throwaway = key::KeyAlgorithm::EcP256
        .generate()
        .map_err(CsrError::Key)?;
    let draft = {
        let mut b = b;
        b.sign(&throwaway, MessageDigest::sha256())
            .map_err(CsrError::Build)?;
        b.build().to_der().map_err(CsrError::Build)?
    };
    let info = der_first_element(&draft).ok_or(CsrError::Encode)?;
    let signature = sign(info).map_err(|e| CsrError::Signer(Box::new(e)))?;
    let algorithm: &[u8] = match kind {
        // ecdsa-with-SHA256 (RFC 5758 §3.2): no parameters.
        key::KeyKind::EcP256 => &[
            0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04, 0x03, 0x02,
        ],
        // sha256WithRSAEncryption (RFC 4055 §5): NULL parameters.
        key::KeyKind::Rsa(_) => &[
            0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
            0x00,
        ],
    };
    let mut bits = Vec::with_capacity(signature.len() + 1);
    bits.push(0); // no unused bits
    bits.extend_from_slice(&signature);
    let mut body = Vec::with_capacity(info.len() + algorithm.len() + bits.len() + 8);
    body.extend_from_slice(info);
    body.extend_from_slice(algorithm);
    der_push(&mut body, 0x03, &bits);
    let mut der = Vec::with_capacity(body.len() + 4);
    der_push(&mut der, 0x30, &body);
    let req = X509Req::from_der(&der).map_err(CsrError::Build)?;
    match req.verify(public_key) {
        Ok(true) => Ok(req),
        Ok(false) | Err(_) => Err(CsrError::BadSignature),
    }
}

/// The subject, public key and subjectAltName of a request, checked as the
/// CA will check them; not yet signed.
fn request_builder<T: HasPublic>(
    identity: &Identity,
    dns_names: &[String],
    ip_addresses: &[IpAddr],
    key: &PKeyRef<T>,
) -> Result<X509ReqBuilder, CsrError> {
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
    let build = || -> Result<X509ReqBuilder, ErrorStack> {
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
        Ok(b)
    };
    build().map_err(CsrError::Build)
}

/// The header length and content length of the DER element at the start of
/// `der`, or `None` if it is not a well-formed definite-length header.
fn der_header(der: &[u8]) -> Option<(usize, usize)> {
    let first = *der.get(1)?;
    if first < 0x80 {
        return Some((2, usize::from(first)));
    }
    let n = usize::from(first & 0x7f);
    if n == 0 || n > 4 {
        return None;
    }
    let bytes = der.get(2..2 + n)?;
    let len = bytes
        .iter()
        .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
    Some((2 + n, len))
}

/// The first element inside the DER SEQUENCE `der` (header included).
fn der_first_element(der: &[u8]) -> Option<&[u8]> {
    if *der.first()? != 0x30 {
        return None;
    }
    let (outer_header, outer_len) = der_header(der)?;
    let inner = der.get(outer_header..outer_header.checked_add(outer_len)?)?;
    let (header, len) = der_header(inner)?;
    inner.get(..header.checked_add(len)?)
}

/// Appends a DER element with `tag` and `content`.
fn der_push(out: &mut Vec<u8>, tag: u8, content: &[u8]) {
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::key::{sign_with, KeyAlgorithm, RsaPadding};

    fn member() -> Identity {
        Identity::Member("VN/GOV/000.00.00.H29".parse().unwrap())
    }

    #[test]
    fn der_helpers_refuse_malformed_input() {
        for bad in [
            &[][..],
            &[0x30],
            &[0x31, 0x00],
            &[0x30, 0x85, 1, 2, 3, 4, 5],
            &[0x30, 0x80],
            &[0x30, 0x05, 0x02, 0x10, 0x00],
            &[0x30, 0x82, 0xff],
        ] {
            assert_eq!(der_first_element(bad), None, "{bad:?}");
        }
        assert_eq!(
            der_first_element(&[0x30, 0x05, 0x02, 0x01, 0x07, 0x05, 0x00]),
            Some(&[0x02, 0x01, 0x07][..])
        );
        let mut out = Vec::new();
        der_push(&mut out, 0x04, &[0u8; 300]);
        assert_eq!(&out[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(der_header(&out), Some((4, 300)));
    }

    #[test]
    fn external_signer_makes_the_same_request_a_key_in_memory_makes() {
        for alg in [KeyAlgorithm::EcP256, KeyAlgorithm::Rsa2048] {
            let key = alg.generate().unwrap();
            let req = build_csr_with_signer(&member(), &[], &[], &key, |tbs| {
                sign_with(&key, MessageDigest::sha256(), RsaPadding::Pkcs1v15, tbs)
            })
            .unwrap();
            let parsed = parse_csr(&req.to_pem().unwrap()).unwrap();
            assert_eq!(
                read_request(&parsed, Profile::Sign).unwrap().identity,
                member()
            );
        }
    }

    #[test]
    fn external_signer_with_another_key_or_failing_is_an_error() {
        let key = KeyAlgorithm::EcP256.generate().unwrap();
        let other = KeyAlgorithm::EcP256.generate().unwrap();
        let wrong = build_csr_with_signer(&member(), &[], &[], &key, |tbs| {
            sign_with(&other, MessageDigest::sha256(), RsaPadding::Pss, tbs)
        });
        assert!(matches!(wrong, Err(CsrError::BadSignature)));
        let failing = build_csr_with_signer(&member(), &[], &[], &key, |_| {
            Err(std::io::Error::other("token gone"))
        });
        assert!(matches!(failing, Err(CsrError::Signer(_))));
        let garbage = build_csr_with_signer(&member(), &[], &[], &key, |_| {
            Ok::<_, std::io::Error>(vec![0x30, 0x01])
        });
        assert!(matches!(garbage, Err(CsrError::BadSignature)));
    }
}
