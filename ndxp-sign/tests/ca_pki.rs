#![allow(clippy::unwrap_used)]
//! The CA: init/open, issuing from CSRs, extensions (checked with the openssl
//! crate and the stock `openssl` command line), revocation seen by another
//! `Pki::open`, serials, and the identity mapping.

use std::collections::HashSet;
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::{Duration, Utc};
use ndxp_core::id::{MemberId, NodeName};
use ndxp_sign::ca::{CaError, InitOptions, Pki};
use ndxp_sign::cert::{self, CertError, Identity, Profile};
use ndxp_sign::csr::{self, CsrError};
use ndxp_sign::key::{KeyAlgorithm, KeyError};
use ndxp_sign::revocation::{CertStatus, RevocationReason};
use openssl::asn1::Asn1Type;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::stack::Stack;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509ExtendedKeyUsage, X509KeyUsage, X509Name, X509Req, X509};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const OPENSSL: &str = "/usr/bin/openssl";
const OCSP: &str = "http://ocsp.ndxp.test:8080/ocsp";

fn opts() -> InitOptions {
    InitOptions {
        ocsp_url: OCSP.to_string(),
        ..InitOptions::default()
    }
}

fn new_pki(opts: &InitOptions) -> (tempfile::TempDir, PathBuf, Pki) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let pki = Pki::init(&dir, opts).unwrap();
    (tmp, dir, pki)
}

fn member() -> MemberId {
    "VN/GOV/000.00.00.H29".parse().unwrap()
}

fn node() -> NodeName {
    "node1".parse().unwrap()
}

fn ec() -> PKey<Private> {
    KeyAlgorithm::EcP256.generate().unwrap()
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Runs the stock openssl command line; fails clearly if it is missing.
fn openssl(args: &[&str]) -> (bool, String) {
    assert!(
        Path::new(OPENSSL).exists(),
        "{OPENSSL} is needed for interop tests; install the openssl command line"
    );
    let out = Command::new(OPENSSL).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn write_cert(dir: &Path, name: &str, c: &X509) -> String {
    let p = dir.join(name);
    fs::write(&p, c.to_pem().unwrap()).unwrap();
    p.to_str().unwrap().to_string()
}

fn verify_cli(dir: &Path, cert: &str, purpose: Option<&str>) -> (bool, String) {
    let ca = dir.join("ca.pem");
    let chain = dir.join("chain.pem");
    let mut args = vec!["verify", "-CAfile", ca.to_str().unwrap()];
    if fs::metadata(&chain).unwrap().len() > 0 {
        args.extend(["-untrusted", chain.to_str().unwrap()]);
    }
    if let Some(p) = purpose {
        args.extend(["-purpose", p]);
    }
    args.push(cert);
    openssl(&args)
}

fn x509_text(path: &str) -> String {
    let (ok, text) = openssl(&["x509", "-noout", "-text", "-in", path]);
    assert!(ok, "{text}");
    text
}

#[test]
fn init_writes_files_with_modes_and_refuses_a_second_init() {
    let (tmp, dir, pki) = new_pki(&opts());
    assert_eq!(mode(&dir), 0o700);
    for f in ["ca.key", "intermediate.key", "tsa.key"] {
        assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
    }
    for f in ["ca.pem", "chain.pem", "tsa.pem", "pki.json"] {
        assert!(dir.join(f).is_file(), "{f}");
    }
    let chain = cert::read_pem_chain(&fs::read(dir.join("chain.pem")).unwrap()).unwrap();
    assert_eq!(chain.len(), 1);
    assert_eq!(pki.chain().len(), 1);
    assert_eq!(
        pki.issuing_cert().to_der().unwrap(),
        chain[0].to_der().unwrap()
    );
    assert_eq!(pki.ocsp_url(), OCSP);
    let subject = cert::subject_text(pki.root_cert().subject_name());
    assert_eq!(subject, "CN=NDXP Root CA");
    assert_eq!(
        cert::subject_text(pki.issuing_cert().subject_name()),
        "CN=NDXP Issuing CA"
    );
    // Nothing left over from staging.
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);

    let ca_before = fs::read(dir.join("ca.pem")).unwrap();
    let err = Pki::init(&dir, &opts()).unwrap_err();
    assert!(matches!(err, CaError::AlreadyExists { .. }), "{err:?}");
    assert_eq!(fs::read(dir.join("ca.pem")).unwrap(), ca_before);

    // A directory that holds anything is refused too.
    let other = tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("notes.txt"), "x").unwrap();
    assert!(matches!(
        Pki::init(&other, &opts()),
        Err(CaError::AlreadyExists { .. })
    ));
    // An empty directory is fine.
    let empty = tmp.path().join("empty");
    fs::create_dir(&empty).unwrap();
    Pki::init(&empty, &opts()).unwrap();
    assert_eq!(mode(&empty), 0o700);
}

#[test]
fn init_rejects_a_bad_ocsp_url_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    for url in ["", "ftp://x", "http://a b", "http://x,OCSP;URI:http://evil"] {
        let o = InitOptions {
            ocsp_url: url.to_string(),
            ..InitOptions::default()
        };
        let err = Pki::init(&tmp.path().join("pki"), &o).unwrap_err();
        assert!(matches!(err, CaError::BadOptions(_)), "{url}: {err:?}");
    }
    assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
}

#[test]
fn ca_certificates_have_ca_extensions_and_pass_openssl() {
    let (_tmp, dir, pki) = new_pki(&opts());
    let root = pki.root_cert();
    let inter = pki.issuing_cert();
    assert_eq!(root.pathlen(), Some(1));
    assert_eq!(inter.pathlen(), Some(0));
    for c in [root, inter] {
        assert_eq!(
            c.key_usage(),
            Some(X509KeyUsage::KEY_CERT_SIGN | X509KeyUsage::CRL_SIGN)
        );
        assert!(c.subject_key_id().is_some());
    }
    assert_eq!(
        inter.authority_key_id().unwrap().as_slice(),
        root.subject_key_id().unwrap().as_slice()
    );
    let root_text = x509_text(dir.join("ca.pem").to_str().unwrap());
    assert!(
        root_text
            .contains("X509v3 Basic Constraints: critical\n                CA:TRUE, pathlen:1"),
        "{root_text}"
    );
    assert!(root_text
        .contains("X509v3 Key Usage: critical\n                Certificate Sign, CRL Sign"));
    let (ok, text) = verify_cli(&dir, dir.join("chain.pem").to_str().unwrap(), None);
    assert!(ok, "{text}");
}

#[test]
fn tsa_certificate_is_fit_for_rfc3161() {
    let (_tmp, dir, pki) = new_pki(&opts());
    let tsa = pki.tsa_cert();
    assert_eq!(
        tsa.extended_key_usage(),
        Some(X509ExtendedKeyUsage::TIMESTAMP)
    );
    assert_eq!(
        tsa.key_usage(),
        Some(X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::NON_REPUDIATION)
    );
    assert!(tsa.public_key().unwrap().public_eq(pki.tsa_key()));
    let path = dir.join("tsa.pem");
    let path = path.to_str().unwrap();
    let text = x509_text(path);
    assert!(
        text.contains("X509v3 Extended Key Usage: critical\n                Time Stamping"),
        "{text}"
    );
    assert!(text.contains("CA:FALSE"));
    assert!(text.contains(&format!("OCSP - URI:{OCSP}")));
    let (ok, out) = verify_cli(&dir, path, Some("timestampsign"));
    assert!(ok, "{out}");
    // The TSA certificate is recorded, so OCSP can answer for it.
    let serial = tsa.serial_number().to_bn().unwrap();
    assert_eq!(pki.status(&serial), CertStatus::Good);
}

#[test]
fn issues_auth_certificates_with_the_specified_extensions() {
    let (tmp, dir, pki) = new_pki(&opts());
    let key = ec();
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    let req = csr::build_auth_csr(
        &member(),
        &node(),
        &["node1.ndxp.test".to_string()],
        &[ip],
        &key,
    )
    .unwrap();
    let c = pki.issue(&req, Profile::Auth, 365).unwrap();

    assert!(c.public_key().unwrap().public_eq(&key));
    assert_eq!(
        cert::node_of(&c).unwrap(),
        (member(), node()),
        "identity mapping"
    );
    assert_eq!(
        c.key_usage(),
        Some(X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::KEY_AGREEMENT)
    );
    assert_eq!(
        c.extended_key_usage(),
        Some(X509ExtendedKeyUsage::SSL_SERVER | X509ExtendedKeyUsage::SSL_CLIENT)
    );
    let sans = c.subject_alt_names().unwrap();
    let uris: Vec<_> = sans.iter().filter_map(|n| n.uri()).collect();
    let dns: Vec<_> = sans.iter().filter_map(|n| n.dnsname()).collect();
    let ips: Vec<_> = sans.iter().filter_map(|n| n.ipaddress()).collect();
    assert_eq!(uris, ["urn:ndxp:node:VN/GOV/000.00.00.H29/node1"]);
    assert_eq!(dns, ["node1.ndxp.test"]);
    assert_eq!(ips, [&[10u8, 0, 0, 7][..]]);
    let ocsp = c.ocsp_responders().unwrap();
    assert_eq!(
        ocsp.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        [OCSP]
    );
    assert!(c.subject_key_id().is_some());
    assert_eq!(
        c.authority_key_id().unwrap().as_slice(),
        pki.issuing_cert().subject_key_id().unwrap().as_slice()
    );
    assert_eq!(c.pathlen(), None);
    assert_eq!(
        cert::subject_text(c.subject_name()),
        "C=VN, O=GOV, serialNumber=VN/GOV/000.00.00.H29, CN=node1"
    );
    // Recorded under issued/.
    let serial_hex = cert::cert_serial_hex(&c).unwrap();
    assert!(dir
        .join("issued")
        .join(format!("{serial_hex}.pem"))
        .is_file());

    let path = write_cert(tmp.path(), "auth.pem", &c);
    let text = x509_text(&path);
    assert!(text.contains("X509v3 Basic Constraints: critical\n                CA:FALSE"));
    assert!(text.contains("X509v3 Key Usage: critical"));
    for purpose in [None, Some("sslclient"), Some("sslserver")] {
        let (ok, out) = verify_cli(&dir, &path, purpose);
        assert!(ok, "{purpose:?}: {out}");
    }
    // The same check fails for a purpose the certificate lacks.
    let (ok, _) = verify_cli(&dir, &path, Some("timestampsign"));
    assert!(!ok);
}

#[test]
fn issues_sign_certificates_with_the_specified_extensions() {
    let (tmp, dir, pki) = new_pki(&opts());
    let req = csr::build_sign_csr(&member(), &ec()).unwrap();
    let c = pki.issue(&req, Profile::Sign, 30).unwrap();
    assert_eq!(cert::member_of(&c).unwrap(), member());
    assert_eq!(
        c.key_usage(),
        Some(X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::NON_REPUDIATION)
    );
    // Only id-kp-documentSigning, which OpenSSL has no flag for.
    let eku = c
        .extended_key_usage()
        .expect("signing certificates carry an EKU");
    assert!(!eku.intersects(X509ExtendedKeyUsage::SSL_SERVER | X509ExtendedKeyUsage::SSL_CLIENT));
    let sans = c.subject_alt_names().unwrap();
    let names: Vec<_> = sans.iter().map(|n| n.uri().map(str::to_string)).collect();
    assert_eq!(
        names,
        [Some("urn:ndxp:member:VN/GOV/000.00.00.H29".to_string())]
    );
    assert_eq!(
        cert::subject_text(c.subject_name()),
        "C=VN, O=GOV, serialNumber=VN/GOV/000.00.00.H29, CN=000.00.00.H29"
    );
    // Validity: about 30 days, starting slightly in the past.
    let nb = cert::asn1_to_utc(c.not_before()).unwrap();
    let na = cert::asn1_to_utc(c.not_after()).unwrap();
    let now = Utc::now();
    assert!(nb <= now && nb > now - Duration::minutes(10));
    assert!((na - now - Duration::days(30)).num_seconds().abs() < 60);

    let path = write_cert(tmp.path(), "sign.pem", &c);
    let (ok, out) = verify_cli(&dir, &path, None);
    assert!(ok, "{out}");
    // The documentSigning EKU keeps stock verifiers from taking it for a
    // TLS or time-stamping certificate.
    for purpose in ["sslclient", "sslserver", "timestampsign"] {
        let (ok, _) = verify_cli(&dir, &path, Some(purpose));
        assert!(!ok, "a signing certificate must not pass as {purpose}");
    }
    // Identity accessors refuse the other profile.
    assert!(matches!(
        cert::node_of(&c),
        Err(CertError::WrongProfile { .. })
    ));
}

#[test]
fn validity_is_capped_at_the_issuer() {
    let o = InitOptions {
        intermediate_validity_days: 10,
        ..opts()
    };
    let (_tmp, _dir, pki) = new_pki(&o);
    let req = csr::build_sign_csr(&member(), &ec()).unwrap();
    let c = pki.issue(&req, Profile::Sign, 3650).unwrap();
    assert!(c.not_after() <= pki.issuing_cert().not_after());
    assert!(pki.tsa_cert().not_after() <= pki.issuing_cert().not_after());
    assert!(matches!(
        pki.issue(&req, Profile::Sign, 0),
        Err(CaError::BadValidity(0))
    ));
}

#[test]
fn rsa_auth_certificate_gets_key_encipherment_and_root_only_pki_works() {
    let o = InitOptions {
        intermediate: false,
        ..opts()
    };
    let (tmp, dir, pki) = new_pki(&o);
    assert!(pki.chain().is_empty());
    assert!(!dir.join("intermediate.key").exists());
    assert_eq!(fs::read(dir.join("chain.pem")).unwrap().len(), 0);
    assert_eq!(pki.root_cert().pathlen(), Some(0));
    let key = KeyAlgorithm::Rsa2048.generate().unwrap();
    let req = csr::build_auth_csr(&member(), &node(), &[], &[], &key).unwrap();
    let c = pki.issue(&req, Profile::Auth, 30).unwrap();
    assert_eq!(
        c.key_usage(),
        Some(X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::KEY_ENCIPHERMENT)
    );
    let path = write_cert(tmp.path(), "rsa.pem", &c);
    for purpose in ["sslclient", "sslserver"] {
        let (ok, out) = verify_cli(&dir, &path, Some(purpose));
        assert!(ok, "{out}");
    }
    // Reopening a root-only PKI works.
    let again = Pki::open(&dir, None).unwrap();
    assert!(again.chain().is_empty());
}

/// Builds a CSR with a hand-made subject (to test what the CA refuses).
fn raw_csr(
    key: &PKey<Private>,
    fields: &[(Nid, &str)],
    san: Option<&SubjectAlternativeName>,
) -> X509Req {
    let mut name = X509Name::builder().unwrap();
    for (nid, v) in fields {
        name.append_entry_by_nid_with_type(*nid, v, Asn1Type::UTF8STRING)
            .unwrap();
    }
    let name = name.build();
    let mut b = X509Req::builder().unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    if let Some(san) = san {
        let ext = san.build(&b.x509v3_context(None)).unwrap();
        let mut st = Stack::new().unwrap();
        st.push(ext).unwrap();
        b.add_extensions(&st).unwrap();
    }
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

#[test]
fn csrs_with_bad_identities_are_refused() {
    let (_tmp, _dir, pki) = new_pki(&opts());
    let key = ec();
    let refused = |req: &X509Req, profile| {
        let err = pki.issue(req, profile, 30).unwrap_err();
        assert!(matches!(err, CaError::Csr(_)), "{err:?}");
        err
    };

    // Member id with an empty segment.
    let bad = raw_csr(
        &key,
        &[
            (Nid::SERIALNUMBER, "VN//000.00.00.H29"),
            (Nid::COMMONNAME, "x"),
        ],
        None,
    );
    let err = refused(&bad, Profile::Sign);
    assert!(matches!(
        err,
        CaError::Csr(CsrError::Identity {
            source: CertError::BadSubjectField { .. },
            ..
        })
    ));
    // No serialNumber at all.
    refused(
        &raw_csr(&key, &[(Nid::COMMONNAME, "node1")], None),
        Profile::Auth,
    );
    // Node name with a space.
    refused(
        &raw_csr(
            &key,
            &[
                (Nid::SERIALNUMBER, "VN/GOV/000.00.00.H29"),
                (Nid::COMMONNAME, "node 1"),
            ],
            None,
        ),
        Profile::Auth,
    );
    // An auth request presented as a signing request: CN is not the member code.
    let auth = csr::build_auth_csr(&member(), &node(), &[], &[], &key).unwrap();
    refused(&auth, Profile::Sign);
    // A SAN URI naming another member.
    let mut san = SubjectAlternativeName::new();
    san.uri("urn:ndxp:member:VN/GOV/999");
    let other = raw_csr(
        &key,
        &[
            (Nid::SERIALNUMBER, "VN/GOV/000.00.00.H29"),
            (Nid::COMMONNAME, "000.00.00.H29"),
        ],
        Some(&san),
    );
    refused(&other, Profile::Sign);
    // An email address is never copied; the request is refused.
    let mut san = SubjectAlternativeName::new();
    san.email("a@b.c");
    let mail = raw_csr(
        &key,
        &[
            (Nid::SERIALNUMBER, "VN/GOV/000.00.00.H29"),
            (Nid::COMMONNAME, "node1"),
        ],
        Some(&san),
    );
    refused(&mail, Profile::Auth);
    // A DNS name in a signing request.
    let mut san = SubjectAlternativeName::new();
    san.dns("x.test");
    let dns = raw_csr(
        &key,
        &[
            (Nid::SERIALNUMBER, "VN/GOV/000.00.00.H29"),
            (Nid::COMMONNAME, "000.00.00.H29"),
        ],
        Some(&san),
    );
    refused(&dns, Profile::Sign);
    // A wildcard DNS name.
    assert!(csr::build_auth_csr(&member(), &node(), &["*.x.test".into()], &[], &key).is_err());
    // Nothing was recorded for refused requests.
    assert_eq!(fs::read_dir(pki.dir().join("issued")).unwrap().count(), 1); // the TSA
}

#[test]
fn a_csr_without_san_is_accepted_with_the_identity_from_the_subject() {
    let (_tmp, _dir, pki) = new_pki(&opts());
    let key = ec();
    let req = raw_csr(
        &key,
        &[
            (Nid::SERIALNUMBER, "VN/GOV/000.00.00.H29"),
            (Nid::COMMONNAME, "node1"),
        ],
        None,
    );
    let c = pki.issue(&req, Profile::Auth, 30).unwrap();
    assert_eq!(cert::node_of(&c).unwrap(), (member(), node()));
}

#[test]
fn csrs_with_broken_signatures_are_refused() {
    let (_tmp, _dir, pki) = new_pki(&opts());
    let req = csr::build_sign_csr(&member(), &ec()).unwrap();
    let mut der = req.to_der().unwrap();
    // Flip a bit inside the subject (the signed part).
    let pos = der.windows(3).position(|w| w == b"GOV").unwrap();
    der[pos] ^= 0x01;
    assert!(matches!(csr::parse_csr(&der), Err(CsrError::BadSignature)));
    let tampered = X509Req::from_der(&der).unwrap();
    let err = pki.issue(&tampered, Profile::Sign, 30).unwrap_err();
    assert!(
        matches!(err, CaError::Csr(CsrError::BadSignature)),
        "{err:?}"
    );

    // Signed by another key than the one inside.
    let key = ec();
    let other = ec();
    let name = Identity::Member(member()).subject_name().unwrap();
    let mut b = X509Req::builder().unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_pubkey(&key).unwrap();
    b.sign(&other, MessageDigest::sha256()).unwrap();
    let err = pki.issue(&b.build(), Profile::Sign, 30).unwrap_err();
    assert!(
        matches!(err, CaError::Csr(CsrError::BadSignature)),
        "{err:?}"
    );

    assert!(matches!(
        csr::parse_csr(
            b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        ),
        Err(CsrError::Malformed(_))
    ));
}

#[test]
fn csr_pem_and_der_parse_and_carry_the_identity() {
    let key = ec();
    let req = csr::build_auth_csr(&member(), &node(), &["A.test".into()], &[], &key).unwrap();
    for bytes in [req.to_pem().unwrap(), req.to_der().unwrap()] {
        let parsed = csr::parse_csr(&bytes).unwrap();
        let wanted = csr::read_request(&parsed, Profile::Auth).unwrap();
        assert_eq!(wanted.identity, Identity::Node(member(), node()));
        assert_eq!(wanted.dns_names, ["a.test"]);
    }
}

#[test]
fn revocation_is_seen_by_another_open_of_the_same_directory() {
    let (_tmp, dir, pki) = new_pki(&opts());
    let a = pki
        .issue(
            &csr::build_sign_csr(&member(), &ec()).unwrap(),
            Profile::Sign,
            30,
        )
        .unwrap();
    let b = pki
        .issue(
            &csr::build_auth_csr(&member(), &node(), &[], &[], &ec()).unwrap(),
            Profile::Auth,
            30,
        )
        .unwrap();
    let sa = a.serial_number().to_bn().unwrap();
    let sb = b.serial_number().to_bn().unwrap();

    // A responder that opened the PKI before the revocation.
    let server = Pki::open(&dir, None).unwrap();
    assert_eq!(server.status(&sa), CertStatus::Good);

    let at = Utc::now() - Duration::hours(1);
    let at = at - Duration::nanoseconds(i64::from(at.timestamp_subsec_nanos()));
    pki.revoke(&a, RevocationReason::KeyCompromise, at).unwrap();
    pki.revoke(&sb, RevocationReason::Superseded, Utc::now())
        .unwrap();

    let expected = CertStatus::Revoked {
        at,
        reason: RevocationReason::KeyCompromise,
    };
    assert_eq!(server.status(&sa), expected);
    assert_eq!(Pki::open(&dir, None).unwrap().status(&sa), expected);
    assert!(matches!(
        server.status(&sb),
        CertStatus::Revoked {
            reason: RevocationReason::Superseded,
            ..
        }
    ));
    assert!(dir
        .join("revoked")
        .join(format!("{}.json", cert::cert_serial_hex(&a).unwrap()))
        .is_file());

    // Twice: typed error with the first record.
    let err = pki
        .revoke(&a, RevocationReason::Unspecified, Utc::now())
        .unwrap_err();
    match err {
        CaError::AlreadyRevoked {
            reason, at: when, ..
        } => {
            assert_eq!(reason, RevocationReason::KeyCompromise);
            assert_eq!(when, at);
        }
        other => panic!("expected AlreadyRevoked, got {other:?}"),
    }
    // Unknown serial.
    let unknown = BigNum::from_u32(12345).unwrap();
    assert!(matches!(
        pki.revoke(&unknown, RevocationReason::KeyCompromise, Utc::now()),
        Err(CaError::UnknownSerial { .. })
    ));
    assert_eq!(pki.status(&unknown), CertStatus::Unknown);

    // A certificate from another CA, even with a known serial, is refused.
    let (_t2, _d2, other) = new_pki(&opts());
    let foreign = other
        .issue(
            &csr::build_sign_csr(&member(), &ec()).unwrap(),
            Profile::Sign,
            30,
        )
        .unwrap();
    assert!(matches!(
        pki.revoke(&foreign, RevocationReason::KeyCompromise, Utc::now()),
        Err(CaError::UnknownSerial { .. })
    ));
}

#[test]
fn serials_are_unique_positive_and_128_bit() {
    let (_tmp, dir, pki) = new_pki(&opts());
    let key = ec();
    let req = csr::build_sign_csr(&member(), &key).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..25 {
        let c = pki.issue(&req, Profile::Sign, 30).unwrap();
        let bn = c.serial_number().to_bn().unwrap();
        assert!(!bn.is_negative());
        assert_eq!(bn.num_bits(), 128);
        assert!(seen.insert(cert::serial_hex(&bn)));
    }
    for c in [pki.root_cert(), pki.issuing_cert(), pki.tsa_cert()] {
        let bn = c.serial_number().to_bn().unwrap();
        assert_eq!(bn.num_bits(), 128);
        assert!(seen.insert(cert::serial_hex(&bn)));
    }
    // 25 leaves + the TSA.
    assert_eq!(fs::read_dir(dir.join("issued")).unwrap().count(), 26);
}

#[test]
fn open_reports_missing_corrupt_and_protected_state_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Pki::open(&tmp.path().join("nope"), None).unwrap_err();
    assert!(matches!(err, CaError::NotAPki { .. }));
    assert!(err.to_string().contains("pki init"), "{err}");

    let o = InitOptions {
        passphrase: Some(b"s3cret".to_vec()),
        ..opts()
    };
    let dir = tmp.path().join("enc");
    Pki::init(&dir, &o).unwrap();
    let key_text = fs::read_to_string(dir.join("intermediate.key")).unwrap();
    assert!(key_text.contains("ENCRYPTED PRIVATE KEY"));
    assert!(matches!(
        Pki::open(&dir, None),
        Err(CaError::Key(KeyError::PassphraseRequired { .. }))
    ));
    assert!(matches!(
        Pki::open(&dir, Some(b"wrong")),
        Err(CaError::Key(KeyError::WrongPassphrase { .. }))
    ));
    let pki = Pki::open(&dir, Some(b"s3cret")).unwrap();
    assert!(pki
        .issue(
            &csr::build_sign_csr(&member(), &ec()).unwrap(),
            Profile::Sign,
            1
        )
        .is_ok());

    fs::set_permissions(dir.join("tsa.key"), fs::Permissions::from_mode(0o644)).unwrap();
    let err = Pki::open(&dir, Some(b"s3cret")).unwrap_err();
    assert!(
        matches!(err, CaError::Key(KeyError::InsecurePermissions { .. })),
        "{err:?}"
    );
    fs::set_permissions(dir.join("tsa.key"), fs::Permissions::from_mode(0o600)).unwrap();

    fs::write(dir.join("pki.json"), "{not json").unwrap();
    let err = Pki::open(&dir, Some(b"s3cret")).unwrap_err();
    assert!(matches!(err, CaError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("pki.json"));

    let (_t, dir2, _) = new_pki(&opts());
    fs::write(dir2.join("ca.pem"), "garbage").unwrap();
    assert!(matches!(
        Pki::open(&dir2, None),
        Err(CaError::Corrupt { .. })
    ));
    let (_t, dir3, _) = new_pki(&opts());
    fs::remove_file(dir3.join("tsa.pem")).unwrap();
    let err = Pki::open(&dir3, None).unwrap_err();
    assert!(matches!(err, CaError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("tsa.pem"));
}

#[test]
fn profile_names_parse() {
    assert_eq!("auth".parse::<Profile>().unwrap(), Profile::Auth);
    assert_eq!("sign".parse::<Profile>().unwrap(), Profile::Sign);
    assert_eq!(Profile::Auth.to_string(), "auth");
    assert!("tls".parse::<Profile>().is_err());
}

#[test]
fn fingerprints_and_pem_chains() {
    let (_tmp, dir, pki) = new_pki(&opts());
    let fp = cert::fingerprint_sha256(pki.root_cert());
    assert_eq!(fp.len(), 64);
    assert!(fp
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    let (ok, out) = openssl(&[
        "x509",
        "-noout",
        "-fingerprint",
        "-sha256",
        "-in",
        dir.join("ca.pem").to_str().unwrap(),
    ]);
    assert!(ok);
    let cli: String = out
        .split('=')
        .nth(1)
        .unwrap()
        .trim()
        .replace(':', "")
        .to_lowercase();
    assert_eq!(fp, cli);

    let both = vec![pki.issuing_cert().clone(), pki.root_cert().clone()];
    let pem = cert::write_pem_chain(&both).unwrap();
    let back = cert::read_pem_chain(&pem).unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[1].to_der().unwrap(), pki.root_cert().to_der().unwrap());
    assert!(cert::read_pem_chain(b"").unwrap().is_empty());
    assert!(cert::read_pem_chain(b"not pem").is_err());
}

fn segment() -> impl Strategy<Value = String> {
    // Segment rule: [A-Za-z0-9][A-Za-z0-9._-]{0,63}, never "..".
    "[A-Za-z0-9]([A-Za-z0-9_-]|\\.[A-Za-z0-9]){0,30}"
}

#[test]
fn identity_mapping_round_trips_for_random_members() {
    let (_tmp, _dir, pki) = new_pki(&opts());
    let key = ec();
    let mut runner = TestRunner::new(Config::with_cases(40));
    runner
        .run(
            &(segment(), segment(), segment(), segment()),
            |(i, c, m, n)| {
                let member: MemberId = format!("{i}/{c}/{m}").parse().unwrap();
                let node: NodeName = n.parse().unwrap();

                let req = csr::build_sign_csr(&member, &key).unwrap();
                let signed = pki.issue(&req, Profile::Sign, 1).unwrap();
                prop_assert_eq!(cert::member_of(&signed).unwrap(), member.clone());

                let req = csr::build_auth_csr(&member, &node, &[], &[], &key).unwrap();
                let auth = pki.issue(&req, Profile::Auth, 1).unwrap();
                prop_assert_eq!(
                    cert::node_of(&auth).unwrap(),
                    (member.clone(), node.clone())
                );

                let id = Identity::Node(member, node);
                prop_assert_eq!(Identity::from_uri(&id.uri()).unwrap(), id);
                Ok(())
            },
        )
        .unwrap();
}

#[test]
fn longest_identifiers_fit() {
    let (_tmp, _dir, pki) = new_pki(&opts());
    let long = "a".repeat(64);
    let member: MemberId = format!("{long}/{long}/{long}").parse().unwrap();
    let node: NodeName = "n_1".parse().unwrap();
    let req = csr::build_auth_csr(&member, &node, &[], &[], &ec()).unwrap();
    let c = pki.issue(&req, Profile::Auth, 1).unwrap();
    assert_eq!(cert::node_of(&c).unwrap(), (member, node));
}

#[test]
fn a_damaged_revocation_record_never_reads_as_good() {
    let (_tmp, dir, pki) = new_pki(&opts());
    let c = pki
        .issue(
            &csr::build_sign_csr(&member(), &ec()).unwrap(),
            Profile::Sign,
            30,
        )
        .unwrap();
    let serial = c.serial_number().to_bn().unwrap();
    let hex = cert::serial_hex(&serial);
    fs::write(dir.join("revoked").join(format!("{hex}.json")), "{").unwrap();
    assert_eq!(pki.status(&serial), CertStatus::Unknown);
    let err = pki.try_status(&serial).unwrap_err();
    assert!(matches!(err, CaError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains(&hex));
}
