//! Building certificates: names, serial numbers, validity and the
//! extensions of each profile.

use chrono::{Duration, Utc};
use openssl::asn1::Asn1Integer;
use openssl::bn::{BigNum, BigNumRef, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Extension, X509Name, X509NameRef, X509Ref, X509v3Context, X509};

use crate::cert::{self, Profile};

use super::{ossl, CaError, BACKDATE_SECS, DOCUMENT_SIGNING_OID};

pub(super) fn derived_names(name: &str) -> (String, String) {
    let base = name
        .strip_suffix(" Root CA")
        .or_else(|| name.strip_suffix(" CA"))
        .unwrap_or(name);
    (format!("{base} Issuing CA"), format!("{base} TSA"))
}

pub(super) fn cn_name(cn: &str) -> Result<X509Name, CaError> {
    let mut b = X509Name::builder().map_err(ossl("building a CA name"))?;
    b.append_entry_by_nid(Nid::COMMONNAME, cn).map_err(|e| {
        CaError::BadOptions(format!("name {cn:?} is not usable as a common name ({e})"))
    })?;
    Ok(b.build())
}

pub(super) fn random_serial() -> Result<BigNum, CaError> {
    let mut bn = BigNum::new().map_err(ossl("making a serial number"))?;
    // 128 bits with the top bit set: always positive, always 16 bytes of
    // magnitude (17 DER octets with the sign byte, under RFC 5280's 20).
    bn.rand(128, MsbOption::ONE, false)
        .map_err(ossl("making a serial number"))?;
    Ok(bn)
}

/// The extensions a certificate gets, by kind.
pub(super) enum Kind<'a> {
    Root {
        pathlen: u32,
    },
    Intermediate,
    Tsa,
    Leaf {
        profile: Profile,
        rsa: bool,
        san: &'a SubjectAlternativeName,
    },
}

pub(super) struct Issuer<'a> {
    pub(super) cert: &'a X509Ref,
    pub(super) key: &'a PKeyRef<Private>,
}

#[allow(clippy::too_many_arguments)]
pub(super) fn build_cert<T: HasPublic>(
    subject: &X509NameRef,
    pubkey: &PKeyRef<T>,
    issuer: Option<&Issuer<'_>>,
    self_key: Option<&PKeyRef<Private>>,
    days: u32,
    kind: Kind<'_>,
    ocsp_url: &str,
    serial: &BigNumRef,
) -> Result<X509, CaError> {
    if days == 0 {
        return Err(CaError::BadValidity(days));
    }
    let now = Utc::now();
    let not_before = now - Duration::seconds(BACKDATE_SECS);
    let mut not_after = now + Duration::days(i64::from(days));
    if let Some(i) = issuer {
        let cap = cert::asn1_to_utc(i.cert.not_after())?;
        if cap < not_after {
            not_after = cap;
        }
    }
    let e = ossl("building a certificate");
    let mut b = X509::builder().map_err(&e)?;
    b.set_version(2).map_err(&e)?;
    let serial = Asn1Integer::from_bn(serial).map_err(&e)?;
    b.set_serial_number(&serial).map_err(&e)?;
    b.set_subject_name(subject).map_err(&e)?;
    b.set_issuer_name(issuer.map_or(subject, |i| i.cert.subject_name()))
        .map_err(&e)?;
    b.set_pubkey(pubkey).map_err(&e)?;
    let not_before = cert::utc_to_asn1(not_before)?;
    let not_after = cert::utc_to_asn1(not_after)?;
    b.set_not_before(&not_before).map_err(&e)?;
    b.set_not_after(&not_after).map_err(&e)?;

    let exts = {
        let ctx = b.x509v3_context(issuer.map(|i| i.cert), None);
        extensions(&ctx, &kind, issuer.is_some(), ocsp_url).map_err(&e)?
    };
    for x in exts {
        b.append_extension(x).map_err(&e)?;
    }
    let signing_key = match (issuer, self_key) {
        (Some(i), _) => i.key,
        (None, Some(k)) => k,
        (None, None) => {
            return Err(CaError::BadOptions(
                "a self-signed certificate needs its own key".to_string(),
            ))
        }
    };
    b.sign(signing_key, MessageDigest::sha256()).map_err(&e)?;
    Ok(b.build())
}

/// keyUsage of certificates that sign documents or timestamps (critical
/// digitalSignature, nonRepudiation).
fn signing_key_usage() -> Result<X509Extension, ErrorStack> {
    KeyUsage::new()
        .critical()
        .digital_signature()
        .non_repudiation()
        .build()
}

pub(super) fn extensions(
    ctx: &X509v3Context<'_>,
    kind: &Kind<'_>,
    has_issuer: bool,
    ocsp_url: &str,
) -> Result<Vec<X509Extension>, ErrorStack> {
    let mut v = Vec::new();
    match kind {
        Kind::Root { .. } | Kind::Intermediate => {
            let pathlen = match kind {
                Kind::Root { pathlen } => *pathlen,
                _ => 0,
            };
            v.push(
                BasicConstraints::new()
                    .critical()
                    .ca()
                    .pathlen(pathlen)
                    .build()?,
            );
            v.push(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()?,
            );
        }
        Kind::Tsa => {
            v.push(BasicConstraints::new().critical().build()?);
            v.push(signing_key_usage()?);
            v.push(ExtendedKeyUsage::new().critical().time_stamping().build()?);
        }
        Kind::Leaf { profile, rsa, san } => {
            v.push(BasicConstraints::new().critical().build()?);
            match profile {
                Profile::Auth => {
                    let mut ku = KeyUsage::new();
                    ku.critical().digital_signature();
                    if *rsa {
                        ku.key_encipherment();
                    } else {
                        ku.key_agreement();
                    }
                    v.push(ku.build()?);
                    v.push(
                        ExtendedKeyUsage::new()
                            .server_auth()
                            .client_auth()
                            .build()?,
                    );
                }
                Profile::Sign => {
                    v.push(signing_key_usage()?);
                    // id-kp-documentSigning (RFC 9336): an explicit EKU
                    // keeps a signing certificate from passing as a TLS
                    // certificate in any standard verifier.
                    v.push(
                        ExtendedKeyUsage::new()
                            .other(DOCUMENT_SIGNING_OID)
                            .build()?,
                    );
                }
            }
            v.push(san.build(ctx)?);
        }
    }
    v.push(SubjectKeyIdentifier::new().build(ctx)?);
    if has_issuer {
        v.push(AuthorityKeyIdentifier::new().keyid(true).build(ctx)?);
    }
    if matches!(kind, Kind::Tsa | Kind::Leaf { .. }) {
        // The openssl crate has no builder for authorityInfoAccess; the
        // config-string constructor is deprecated but safe, and the URL was
        // checked to hold no config syntax (`,`/`;`/spaces).
        #[allow(deprecated)]
        let aia = X509Extension::new_nid(
            None,
            Some(ctx),
            Nid::INFO_ACCESS,
            &format!("OCSP;URI:{ocsp_url}"),
        )?;
        v.push(aia);
    }
    Ok(v)
}
