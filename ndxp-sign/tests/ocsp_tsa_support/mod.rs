//! Test PKI for the OCSP and TSA tests: built with the `openssl` crate so the
//! tests do not depend on the CA module.

#![allow(dead_code, clippy::unwrap_used)] // test fixtures: a failure here is a broken test setup

use std::path::Path;
use std::process::{Command, Output};

use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

/// A key pair and its certificate.
pub struct Identity {
    pub cert: X509,
    pub key: PKey<Private>,
}

pub fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

pub enum Kind {
    Ca,
    EndEntity,
    OcspResponder,
    /// EKU timeStamping, critical as RFC 3161 requires.
    Tsa,
    /// EKU timeStamping but not critical (invalid TSA certificate).
    TsaNonCriticalEku,
}

/// Issues a certificate. `issuer = None` makes it self-signed. Validity is
/// `[now + not_before_days, now + not_after_days]`.
/// [`issue`] by `issuer`, valid from a day ago for `days` days.
pub fn issue_from_yesterday(
    cn: &str,
    kind: Kind,
    serial: u32,
    issuer: &Identity,
    days: i64,
) -> Identity {
    issue(cn, kind, serial, Some(issuer), -1, days)
}

pub fn issue(
    cn: &str,
    kind: Kind,
    serial: u32,
    issuer: Option<&Identity>,
    not_before_days: i64,
    not_after_days: i64,
) -> Identity {
    let key = ec_key();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("C", "VN").unwrap();
    name.append_entry_by_text("O", "NDXP Test").unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_serial_number(&BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap())
        .unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |i| i.cert.subject_name()))
        .unwrap();
    b.set_pubkey(&key).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    b.set_not_before(&Asn1Time::from_unix(now + not_before_days * 86400).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(now + not_after_days * 86400).unwrap())
        .unwrap();
    match kind {
        Kind::Ca => {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .digital_signature()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        Kind::EndEntity | Kind::OcspResponder | Kind::Tsa | Kind::TsaNonCriticalEku => {
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .build()
                    .unwrap(),
            )
            .unwrap();
            let mut eku = ExtendedKeyUsage::new();
            match kind {
                Kind::OcspResponder => {
                    eku.other("OCSPSigning");
                }
                Kind::Tsa => {
                    eku.critical().time_stamping();
                }
                Kind::TsaNonCriticalEku => {
                    eku.time_stamping();
                }
                _ => {}
            }
            if !matches!(kind, Kind::EndEntity) {
                b.append_extension(eku.build().unwrap()).unwrap();
            }
        }
    }
    let ctx = b.x509v3_context(issuer.map(|i| i.cert.as_ref()), None);
    let ski = SubjectKeyIdentifier::new().build(&ctx).unwrap();
    b.append_extension(ski).unwrap();
    let signing_key = issuer.map_or(&key, |i| &i.key);
    b.sign(signing_key, MessageDigest::sha256()).unwrap();
    Identity {
        cert: b.build(),
        key,
    }
}

/// A self-signed root valid from yesterday for ten years.
pub fn root(cn: &str) -> Identity {
    issue(cn, Kind::Ca, 1, None, -1, 3650)
}

/// Writes a certificate as PEM.
pub fn write_pem(path: &Path, cert: &X509) {
    std::fs::write(path, cert.to_pem().unwrap()).unwrap();
}

/// Writes a key as PKCS#8 PEM.
pub fn write_key(path: &Path, key: &PKey<Private>) {
    std::fs::write(path, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
}

/// Runs the `openssl` command line. Fails the test with a clear message when
/// the tool is not installed (CI installs it; nothing is skipped silently).
pub fn openssl(args: &[&str], dir: &Path) -> Output {
    match Command::new("openssl").args(args).current_dir(dir).output() {
        Ok(out) => out,
        Err(e) => panic!(
            "the `openssl` command line tool is required for interop tests but could not be run: {e}; install OpenSSL (e.g. apt-get install openssl)"
        ),
    }
}

/// Output as text for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A valid DER input with some bytes overwritten, inserted or removed: a
/// proptest strategy for the parsers of the OCSP and TSA peers.
pub fn mutated(base: &'static [u8]) -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
    use proptest::prelude::*;
    let len = base.len();
    prop::collection::vec((0..len, any::<u8>(), 0u8..3), 1..6).prop_map(move |edits| {
        let mut v = base.to_vec();
        for (pos, byte, kind) in edits {
            let pos = pos.min(v.len().saturating_sub(1));
            match kind {
                0 if !v.is_empty() => v[pos] = byte,
                1 => v.insert(pos, byte),
                _ if !v.is_empty() => {
                    v.remove(pos);
                }
                _ => {}
            }
        }
        v
    })
}
