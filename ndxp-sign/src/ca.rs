//! The central certificate authority, with all its state in one directory:
//! a root (and by default an intermediate that issues), a TSA certificate,
//! the certificates it issued and the revocations it recorded.
//!
//! # Directory layout
//!
//! ```text
//! <dir>/                 mode 0700
//!   pki.json             settings: format, CA name, key algorithm, OCSP URL, ...
//!   ca.pem               the root certificate (the trust anchor)
//!   ca.key               root key (0600; PKCS#8, encrypted if a passphrase was given)
//!   chain.pem            intermediate certificate(s), issuing CA first; empty without one
//!   intermediate.key     issuing CA key (0600), only with an intermediate
//!   tsa.pem              the RFC 3161 time-stamping certificate
//!   tsa.key              its key (0600)
//!   issued/<serial>.pem  every certificate issued by the issuing CA (TSA included)
//!   revoked/<serial>.json  one file per revocation: serial, reason, time
//! ```
//!
//! `<serial>` is [`serial_hex`]: lowercase hex without leading zeros.
//! Every file is written to a temporary name in the same directory, synced,
//! and moved into place, so a reader never sees half a file; revocation files
//! are created without replacing an existing one, so revoking twice fails
//! even when two processes race, and a running OCSP responder sees a
//! revocation as soon as [`Pki::revoke`] returns ([`Pki::status`] reads the
//! directory on every call). `init` builds the directory under a temporary
//! name and renames it into place, so a failed `init` leaves nothing behind.
//!
//! # What issued certificates contain
//!
//! Only vetted values from a CSR ([`crate::csr::read_request`]): the
//! identity (mapped as described in [`crate::cert`]), the public key and, for
//! authentication certificates, DNS names and IP addresses.
//! [`Pki::issue_expected`] (what `ndxp-gateway pki issue` calls) issues only
//! when the CSR names the identity the operator expects and asks for no
//! name the operator did not allow; the certificate then carries exactly
//! the operator's names. Every
//! certificate gets a random positive 128-bit serial, `notBefore` five
//! minutes in the past (clock skew), `notAfter` capped at the issuer's,
//! critical basicConstraints and keyUsage, subject and authority key
//! identifiers, and an authorityInfoAccess OCSP URL.
//!
//! | Profile | keyUsage (critical) | extendedKeyUsage |
//! |---|---|---|
//! | `auth` | digitalSignature + keyAgreement (EC) or keyEncipherment (RSA) | serverAuth, clientAuth |
//! | `sign` | digitalSignature, nonRepudiation | none |
//! | TSA | digitalSignature, nonRepudiation | timeStamping (critical, RFC 3161) |
//! | root, intermediate | keyCertSign, cRLSign | none; basicConstraints CA:TRUE with pathlen |
//!
//! # Example
//!
//! ```
//! use ndxp_sign::ca::{InitOptions, Pki};
//! use ndxp_sign::cert::{self, Profile};
//! use ndxp_sign::revocation::{CertStatus, RevocationReason};
//!
//! let tmp = tempfile::tempdir()?;
//! let dir = tmp.path().join("pki");
//! let opts = InitOptions { ocsp_url: "http://127.0.0.1:8080/ocsp".into(), ..InitOptions::default() };
//! let pki = Pki::init(&dir, &opts)?;
//!
//! let key = ndxp_sign::key::KeyAlgorithm::EcP256.generate()?;
//! let member = "VN/GOV/000.00.00.H29".parse()?;
//! let req = ndxp_sign::csr::build_sign_csr(&member, &key)?;
//! let c = pki.issue(&req, Profile::Sign, 365)?;
//! assert_eq!(cert::member_of(&c)?, member);
//!
//! let serial = c.serial_number().to_bn()?;
//! assert_eq!(pki.status(&serial), CertStatus::Good);
//! pki.revoke(&c, RevocationReason::KeyCompromise, chrono::Utc::now())?;
//! let other_process = Pki::open(&dir, None)?;
//! assert!(matches!(other_process.status(&serial), CertStatus::Revoked { .. }));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, Utc};
use openssl::asn1::Asn1Integer;
use openssl::bn::{BigNum, BigNumRef, MsbOption};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{HasPublic, PKey, PKeyRef, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{
    X509Extension, X509Name, X509NameRef, X509Ref, X509ReqRef, X509v3Context, X509,
};
use serde::{Deserialize, Serialize};

use crate::cert::{self, serial_hex, CertError, Profile};
use crate::csr::{self, CsrError};
use crate::key::{self, KeyAlgorithm, KeyError, KeyKind};
use crate::revocation::{CertStatus, RevocationReason};

/// The settings file's name.
pub const SETTINGS_FILE: &str = "pki.json";
/// The root certificate's file name.
pub const ROOT_CERT_FILE: &str = "ca.pem";
/// The root key's file name.
pub const ROOT_KEY_FILE: &str = "ca.key";
/// The intermediate certificates' file name.
pub const CHAIN_FILE: &str = "chain.pem";
/// The intermediate (issuing) key's file name.
pub const INTERMEDIATE_KEY_FILE: &str = "intermediate.key";
/// The TSA certificate's file name.
pub const TSA_CERT_FILE: &str = "tsa.pem";
/// The TSA key's file name.
pub const TSA_KEY_FILE: &str = "tsa.key";
/// The directory of issued certificates.
pub const ISSUED_DIR: &str = "issued";
/// The directory of revocation records.
pub const REVOKED_DIR: &str = "revoked";

const SETTINGS_FORMAT: u32 = 1;
const BACKDATE_SECS: i64 = 300;

/// Errors of the CA.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// An option of [`InitOptions`] is unusable.
    #[error("invalid PKI option: {0}")]
    BadOptions(String),
    /// `init` found an existing, non-empty directory.
    #[error("{} already exists and is not empty; refusing to overwrite an existing PKI", dir.display())]
    AlreadyExists {
        /// The directory.
        dir: PathBuf,
    },
    /// `open` found no settings file.
    #[error("{} is not a PKI directory (no {SETTINGS_FILE}); create one with `ndxp-gateway pki init`", dir.display())]
    NotAPki {
        /// The directory.
        dir: PathBuf,
    },
    /// A file operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file of the PKI directory is damaged or inconsistent.
    #[error("{} is corrupt: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// A key could not be generated, read or written.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The certificate request was refused.
    #[error("refusing the certificate request")]
    Csr(#[source] CsrError),
    /// A certificate operation failed.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The validity asked for is unusable.
    #[error("validity must be at least one day, got {0}")]
    BadValidity(u32),
    /// The CSR names another identity than the operator expects.
    #[error("the certificate request is for {requested}, not for {expected} as given on the command line; nothing was issued")]
    IdentityMismatch {
        /// The identity the CSR names (its `urn:ndxp:` URI).
        requested: String,
        /// The identity expected (its `urn:ndxp:` URI).
        expected: String,
    },
    /// The CSR asks for a DNS name or IP address the operator did not
    /// allow, or the operator's names do not fit the profile.
    #[error("{0}; nothing was issued")]
    NameNotAllowed(String),
    /// No certificate with this serial was issued here.
    #[error("no certificate with serial {serial} was issued by this CA")]
    UnknownSerial {
        /// The serial, as [`serial_hex`].
        serial: String,
    },
    /// The certificate given has a serial issued here but is a different
    /// certificate.
    #[error("the certificate with serial {serial} was not issued by this CA (a different certificate has that serial here)")]
    NotIssuedHere {
        /// The serial.
        serial: String,
    },
    /// The certificate was already revoked.
    #[error("certificate {serial} is already revoked ({reason} at {at})")]
    AlreadyRevoked {
        /// The serial.
        serial: String,
        /// The recorded reason.
        reason: RevocationReason,
        /// The recorded time.
        at: DateTime<Utc>,
    },
    /// An OpenSSL operation failed.
    #[error("OpenSSL failed while {0}")]
    OpenSsl(&'static str, #[source] ErrorStack),
}

fn ossl(what: &'static str) -> impl Fn(ErrorStack) -> CaError {
    move |e| CaError::OpenSsl(what, e)
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl Fn(io::Error) -> CaError + 'a {
    move |source| CaError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// id-kp-documentSigning (RFC 9336), the extended key usage of signing
/// certificates.
pub const DOCUMENT_SIGNING_OID: &str = "1.3.6.1.5.5.7.3.36";

/// Options for [`Pki::init`].
#[derive(Clone)]
pub struct InitOptions {
    /// Common name of the root CA (default `NDXP Root CA`); the issuing CA
    /// and the TSA are named after it (`NDXP Issuing CA`, `NDXP TSA`).
    pub name: String,
    /// Algorithm of the CA and TSA keys (default EC P-256).
    pub key_algorithm: KeyAlgorithm,
    /// Whether a root issues an intermediate that issues everything else
    /// (default true). Without one the root issues directly.
    pub intermediate: bool,
    /// The OCSP responder URL written into issued certificates
    /// (required: `http://` or `https://`).
    pub ocsp_url: String,
    /// Root validity in days (default 20 years).
    pub root_validity_days: u32,
    /// Intermediate validity in days (default 10 years).
    pub intermediate_validity_days: u32,
    /// TSA certificate validity in days (default 10 years, capped at the
    /// issuer's).
    pub tsa_validity_days: u32,
    /// Passphrase to encrypt the CA and TSA keys with (PKCS#8, AES-256-CBC).
    pub passphrase: Option<Vec<u8>>,
}

impl Default for InitOptions {
    fn default() -> Self {
        Self {
            name: "NDXP Root CA".to_string(),
            key_algorithm: KeyAlgorithm::EcP256,
            intermediate: true,
            ocsp_url: String::new(),
            root_validity_days: 7305,
            intermediate_validity_days: 3653,
            tsa_validity_days: 3653,
            passphrase: None,
        }
    }
}

impl fmt::Debug for InitOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InitOptions")
            .field("name", &self.name)
            .field("key_algorithm", &self.key_algorithm)
            .field("intermediate", &self.intermediate)
            .field("ocsp_url", &self.ocsp_url)
            .field("root_validity_days", &self.root_validity_days)
            .field(
                "intermediate_validity_days",
                &self.intermediate_validity_days,
            )
            .field("tsa_validity_days", &self.tsa_validity_days)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The contents of `pki.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    /// Format version of this file.
    format: u32,
    /// Root CA common name.
    name: String,
    /// Algorithm of the CA keys.
    key_algorithm: String,
    /// Whether there is an intermediate.
    intermediate: bool,
    /// The OCSP URL put into certificates.
    ocsp_url: String,
    /// Whether the keys are encrypted.
    encrypted_keys: bool,
    /// When the PKI was created.
    created: DateTime<Utc>,
}

/// One revocation record, `revoked/<serial>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevocationRecord {
    serial: String,
    reason: String,
    reason_code: i32,
    revoked_at: DateTime<Utc>,
    recorded_at: DateTime<Utc>,
}

/// What to revoke: a certificate or a bare serial number.
#[derive(Clone, Copy)]
pub enum RevokeTarget<'a> {
    /// A certificate; it must be the one issued here under its serial.
    Cert(&'a X509Ref),
    /// A serial number.
    Serial(&'a BigNumRef),
}

impl fmt::Debug for RevokeTarget<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeTarget::Cert(c) => f
                .debug_tuple("Cert")
                .field(&cert::subject_text(c.subject_name()))
                .finish(),
            RevokeTarget::Serial(s) => f.debug_tuple("Serial").field(&serial_hex(s)).finish(),
        }
    }
}

impl<'a> From<&'a X509Ref> for RevokeTarget<'a> {
    fn from(c: &'a X509Ref) -> Self {
        RevokeTarget::Cert(c)
    }
}
impl<'a> From<&'a X509> for RevokeTarget<'a> {
    fn from(c: &'a X509) -> Self {
        RevokeTarget::Cert(c)
    }
}
impl<'a> From<&'a BigNumRef> for RevokeTarget<'a> {
    fn from(s: &'a BigNumRef) -> Self {
        RevokeTarget::Serial(s)
    }
}
impl<'a> From<&'a BigNum> for RevokeTarget<'a> {
    fn from(s: &'a BigNum) -> Self {
        RevokeTarget::Serial(s)
    }
}

/// An open PKI directory: see the module docs.
pub struct Pki {
    dir: PathBuf,
    settings: Settings,
    root: X509,
    chain: Vec<X509>,
    issuing_key: PKey<Private>,
    tsa: X509,
    tsa_key: PKey<Private>,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("dir", &self.dir)
            .field("name", &self.settings.name)
            .field("intermediate", &self.settings.intermediate)
            .field("ocsp_url", &self.settings.ocsp_url)
            .finish_non_exhaustive()
    }
}

fn check_url(url: &str) -> Result<(), CaError> {
    let ok_scheme = url.starts_with("http://") || url.starts_with("https://");
    let ok_chars = url
        .bytes()
        .all(|b| b.is_ascii_graphic() && b != b',' && b != b';');
    if !ok_scheme || !ok_chars || url.len() <= "https://".len() {
        return Err(CaError::BadOptions(format!(
            "ocsp_url {url:?} must be an http:// or https:// URL without spaces, ',' or ';'"
        )));
    }
    Ok(())
}

fn derived_names(name: &str) -> (String, String) {
    let base = name
        .strip_suffix(" Root CA")
        .or_else(|| name.strip_suffix(" CA"))
        .unwrap_or(name);
    (format!("{base} Issuing CA"), format!("{base} TSA"))
}

fn cn_name(cn: &str) -> Result<X509Name, CaError> {
    let mut b = X509Name::builder().map_err(ossl("building a CA name"))?;
    b.append_entry_by_nid(Nid::COMMONNAME, cn).map_err(|e| {
        CaError::BadOptions(format!("name {cn:?} is not usable as a common name ({e})"))
    })?;
    Ok(b.build())
}

fn random_serial() -> Result<BigNum, CaError> {
    let mut bn = BigNum::new().map_err(ossl("making a serial number"))?;
    // 128 bits with the top bit set: always positive, always 16 bytes of
    // magnitude (17 DER octets with the sign byte, under RFC 5280's 20).
    bn.rand(128, MsbOption::ONE, false)
        .map_err(ossl("making a serial number"))?;
    Ok(bn)
}

/// The extensions a certificate gets, by kind.
enum Kind<'a> {
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

struct Issuer<'a> {
    cert: &'a X509Ref,
    key: &'a PKeyRef<Private>,
}

#[allow(clippy::too_many_arguments)]
fn build_cert<T: HasPublic>(
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

fn extensions(
    ctx: &X509v3Context<'_>,
    kind: &Kind<'_>,
    has_issuer: bool,
    ocsp_url: &str,
) -> Result<Vec<X509Extension>, ErrorStack> {
    let mut v = Vec::new();
    match kind {
        Kind::Root { pathlen } => {
            v.push(
                BasicConstraints::new()
                    .critical()
                    .ca()
                    .pathlen(*pathlen)
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
        Kind::Intermediate => {
            v.push(BasicConstraints::new().critical().ca().pathlen(0).build()?);
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
            v.push(
                KeyUsage::new()
                    .critical()
                    .digital_signature()
                    .non_repudiation()
                    .build()?,
            );
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
                    v.push(
                        KeyUsage::new()
                            .critical()
                            .digital_signature()
                            .non_repudiation()
                            .build()?,
                    );
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

fn read_file(path: &Path) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(io_err("could not read", path))
}

fn read_one_cert(path: &Path) -> Result<X509, CaError> {
    let pem = read_file(path)?;
    let mut certs = cert::read_pem_chain(&pem).map_err(|e| CaError::Corrupt {
        path: path.to_path_buf(),
        detail: "not a PEM certificate".to_string(),
        source: Some(Box::new(e)),
    })?;
    if certs.len() != 1 {
        return Err(CaError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("expected exactly one certificate, found {}", certs.len()),
            source: None,
        });
    }
    Ok(certs.remove(0))
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    key::write_file_atomic(path, bytes, mode, false).map_err(io_err("could not write", path))
}

fn check_pair(cert: &X509Ref, key: &PKeyRef<Private>, path: &Path) -> Result<(), CaError> {
    let pubkey = cert
        .public_key()
        .map_err(ossl("reading a certificate's public key"))?;
    if !pubkey.public_eq(key) {
        return Err(CaError::Corrupt {
            path: path.to_path_buf(),
            detail: "the key does not belong to its certificate".to_string(),
            source: None,
        });
    }
    Ok(())
}

impl Pki {
    /// Creates a new PKI in `dir` (which must not exist, or be empty): keys,
    /// root, optional intermediate, TSA certificate and `pki.json`.
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<Pki, CaError> {
        check_url(&opts.ocsp_url)?;
        if opts.name.trim().is_empty() {
            return Err(CaError::BadOptions("the CA name is empty".to_string()));
        }
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(CaError::AlreadyExists {
                        dir: dir.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(CaError::AlreadyExists {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err("could not inspect", dir)(e)),
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let leaf_name = dir.file_name().ok_or_else(|| {
            CaError::BadOptions(format!("{} has no directory name", dir.display()))
        })?;
        fs::create_dir_all(&parent).map_err(io_err("could not create", &parent))?;
        let mut rnd = [0u8; 8];
        openssl::rand::rand_bytes(&mut rnd).map_err(ossl("making a temporary name"))?;
        let staging = parent.join(format!(
            ".{}.init-{}",
            leaf_name.to_string_lossy(),
            hex::encode(rnd)
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io_err("could not create", &staging))?;

        let result = Self::populate(&staging, opts).and_then(|pki| {
            fs::rename(&staging, dir).map_err(|e| {
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
                ) {
                    CaError::AlreadyExists {
                        dir: dir.to_path_buf(),
                    }
                } else {
                    io_err("could not move the new PKI into place at", dir)(e)
                }
            })?;
            Ok(pki)
        });
        match result {
            Ok(mut pki) => {
                pki.dir = dir.to_path_buf();
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(io_err("could not set permissions on", dir))?;
                fs::File::open(&parent)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err("could not sync", &parent))?;
                Ok(pki)
            }
            Err(e) => {
                // Best effort: the staging directory holds nothing of value.
                let _ = fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    fn populate(dir: &Path, opts: &InitOptions) -> Result<Pki, CaError> {
        let pass = opts.passphrase.as_deref();
        let (issuing_name, tsa_name) = derived_names(&opts.name);
        for d in [ISSUED_DIR, REVOKED_DIR] {
            let p = dir.join(d);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&p)
                .map_err(io_err("could not create", &p))?;
        }

        let root_key = opts.key_algorithm.generate()?;
        let root_serial = random_serial()?;
        let root_subject = cn_name(&opts.name)?;
        let root = build_cert(
            &root_subject,
            &root_key,
            None,
            Some(&root_key),
            opts.root_validity_days,
            Kind::Root {
                pathlen: u32::from(opts.intermediate),
            },
            &opts.ocsp_url,
            &root_serial,
        )?;
        key::write_private_key_file(&dir.join(ROOT_KEY_FILE), &root_key, pass, false)?;
        let pem = root.to_pem().map_err(ossl("encoding a certificate"))?;
        write_new(&dir.join(ROOT_CERT_FILE), &pem, 0o644)?;

        let (chain, issuing_key) = if opts.intermediate {
            let ikey = opts.key_algorithm.generate()?;
            let isubject = cn_name(&issuing_name)?;
            let iserial = random_serial()?;
            let icert = build_cert(
                &isubject,
                &ikey,
                Some(&Issuer {
                    cert: &root,
                    key: &root_key,
                }),
                None,
                opts.intermediate_validity_days,
                Kind::Intermediate,
                &opts.ocsp_url,
                &iserial,
            )?;
            key::write_private_key_file(&dir.join(INTERMEDIATE_KEY_FILE), &ikey, pass, false)?;
            (vec![icert], ikey)
        } else {
            (Vec::new(), root_key)
        };
        write_new(
            &dir.join(CHAIN_FILE),
            &cert::write_pem_chain(&chain)?,
            0o644,
        )?;

        let issuing_cert = chain.first().unwrap_or(&root);
        let tsa_key = opts.key_algorithm.generate()?;
        let tsa_serial = random_serial()?;
        let tsa_subject = cn_name(&tsa_name)?;
        let tsa = build_cert(
            &tsa_subject,
            &tsa_key,
            Some(&Issuer {
                cert: issuing_cert,
                key: &issuing_key,
            }),
            None,
            opts.tsa_validity_days,
            Kind::Tsa,
            &opts.ocsp_url,
            &tsa_serial,
        )?;
        key::write_private_key_file(&dir.join(TSA_KEY_FILE), &tsa_key, pass, false)?;
        let tsa_pem = tsa.to_pem().map_err(ossl("encoding a certificate"))?;
        write_new(&dir.join(TSA_CERT_FILE), &tsa_pem, 0o644)?;
        write_new(&issued_path(dir, &serial_hex(&tsa_serial)), &tsa_pem, 0o644)?;

        let settings = Settings {
            format: SETTINGS_FORMAT,
            name: opts.name.clone(),
            key_algorithm: opts.key_algorithm.to_string(),
            intermediate: opts.intermediate,
            ocsp_url: opts.ocsp_url.clone(),
            encrypted_keys: pass.is_some(),
            created: Utc::now(),
        };
        let json = serde_json::to_vec_pretty(&settings).map_err(|e| CaError::Corrupt {
            path: dir.join(SETTINGS_FILE),
            detail: "could not encode settings".to_string(),
            source: Some(Box::new(e)),
        })?;
        // Written last: its presence marks a complete PKI.
        write_new(&dir.join(SETTINGS_FILE), &json, 0o644)?;

        Ok(Pki {
            dir: dir.to_path_buf(),
            settings,
            root,
            chain,
            issuing_key,
            tsa,
            tsa_key,
        })
    }

    /// Opens an existing PKI directory. The passphrase is needed if the keys
    /// were encrypted at `init`.
    pub fn open(dir: &Path, passphrase: Option<&[u8]>) -> Result<Pki, CaError> {
        let settings_path = dir.join(SETTINGS_FILE);
        let json = match fs::read(&settings_path) {
            Ok(j) => j,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CaError::NotAPki {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err("could not read", &settings_path)(e)),
        };
        let settings: Settings = serde_json::from_slice(&json).map_err(|e| CaError::Corrupt {
            path: settings_path.clone(),
            detail: "not valid PKI settings JSON".to_string(),
            source: Some(Box::new(e)),
        })?;
        if settings.format != SETTINGS_FORMAT {
            return Err(CaError::Corrupt {
                path: settings_path,
                detail: format!(
                    "format {} is not supported (this version reads format {SETTINGS_FORMAT})",
                    settings.format
                ),
                source: None,
            });
        }
        if settings.encrypted_keys && passphrase.is_none() {
            return Err(CaError::Key(KeyError::PassphraseRequired {
                what: format!("the CA keys in {}", dir.display()),
            }));
        }
        let root = read_one_cert(&dir.join(ROOT_CERT_FILE))?;
        let chain_path = dir.join(CHAIN_FILE);
        let chain =
            cert::read_pem_chain(&read_file(&chain_path)?).map_err(|e| CaError::Corrupt {
                path: chain_path.clone(),
                detail: "not a PEM certificate list".to_string(),
                source: Some(Box::new(e)),
            })?;
        if chain.is_empty() == settings.intermediate {
            return Err(CaError::Corrupt {
                path: chain_path,
                detail: format!(
                    "{SETTINGS_FILE} says intermediate = {} but the file holds {} certificate(s)",
                    settings.intermediate,
                    chain.len()
                ),
                source: None,
            });
        }
        let (issuing_cert, key_path) = match chain.first() {
            Some(c) => (c, dir.join(INTERMEDIATE_KEY_FILE)),
            None => (&root, dir.join(ROOT_KEY_FILE)),
        };
        let issuing_key = key::read_private_key_file(&key_path, passphrase)?;
        check_pair(issuing_cert, &issuing_key, &key_path)?;
        let tsa = read_one_cert(&dir.join(TSA_CERT_FILE))?;
        let tsa_key_path = dir.join(TSA_KEY_FILE);
        let tsa_key = key::read_private_key_file(&tsa_key_path, passphrase)?;
        check_pair(&tsa, &tsa_key, &tsa_key_path)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            settings,
            root,
            chain,
            issuing_key,
            tsa,
            tsa_key,
        })
    }

    /// Issues a certificate of `profile` for a CSR, valid for
    /// `validity_days` (capped at the issuing CA's expiry), and records it
    /// under `issued/`. The identity and names are the CSR's own (vetted by
    /// [`csr::read_request`]); the operator's command issues with
    /// [`Pki::issue_expected`], which checks them against what the operator
    /// vouches for.
    pub fn issue(
        &self,
        csr: &X509ReqRef,
        profile: Profile,
        validity_days: u32,
    ) -> Result<X509, CaError> {
        let wanted = csr::read_request(csr, profile).map_err(CaError::Csr)?;
        self.issue_request(csr, &wanted, validity_days)
    }

    /// Issues a certificate for a CSR only when it names exactly
    /// `expected.identity` (the profile follows from it) and asks for no
    /// DNS name or IP address outside `expected`'s; the certificate
    /// carries exactly `expected`'s names. Otherwise
    /// [`CaError::IdentityMismatch`] or [`CaError::NameNotAllowed`], and
    /// nothing is issued.
    pub fn issue_expected(
        &self,
        csr: &X509ReqRef,
        expected: &csr::RequestedCertificate,
        validity_days: u32,
    ) -> Result<X509, CaError> {
        let profile = expected.identity.profile();
        if profile == Profile::Sign
            && !(expected.dns_names.is_empty() && expected.ip_addresses.is_empty())
        {
            return Err(CaError::NameNotAllowed(
                "a signing certificate carries no DNS names or IP addresses".into(),
            ));
        }
        let mut names = csr::RequestedCertificate {
            identity: expected.identity.clone(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
        };
        for d in &expected.dns_names {
            csr::check_dns_name(d).map_err(CaError::Csr)?;
            let d = d.to_ascii_lowercase();
            if !names.dns_names.contains(&d) {
                names.dns_names.push(d);
            }
        }
        for ip in &expected.ip_addresses {
            if !names.ip_addresses.contains(ip) {
                names.ip_addresses.push(*ip);
            }
        }
        let wanted = csr::read_request(csr, profile).map_err(CaError::Csr)?;
        if wanted.identity != names.identity {
            return Err(CaError::IdentityMismatch {
                requested: wanted.identity.uri(),
                expected: names.identity.uri(),
            });
        }
        if let Some(d) = wanted
            .dns_names
            .iter()
            .find(|d| !names.dns_names.contains(d))
        {
            return Err(CaError::NameNotAllowed(format!(
                "the certificate request asks for DNS name {d:?}, which was not allowed \
                 explicitly (--dns {d})"
            )));
        }
        if let Some(ip) = wanted
            .ip_addresses
            .iter()
            .find(|ip| !names.ip_addresses.contains(ip))
        {
            return Err(CaError::NameNotAllowed(format!(
                "the certificate request asks for IP address {ip}, which was not allowed \
                 explicitly (--ip {ip})"
            )));
        }
        self.issue_request(csr, &names, validity_days)
    }

    fn issue_request(
        &self,
        csr: &X509ReqRef,
        wanted: &csr::RequestedCertificate,
        validity_days: u32,
    ) -> Result<X509, CaError> {
        if validity_days == 0 {
            return Err(CaError::BadValidity(validity_days));
        }
        let profile = wanted.identity.profile();
        let pubkey = csr
            .public_key()
            .map_err(ossl("reading the request's public key"))?;
        let rsa = matches!(key::key_kind(&pubkey), Some(KeyKind::Rsa(_)));
        let subject = wanted.identity.subject_name()?;
        let mut san = SubjectAlternativeName::new();
        san.uri(&wanted.identity.uri());
        for d in &wanted.dns_names {
            san.dns(d);
        }
        for ip in &wanted.ip_addresses {
            san.ip(&ip.to_string());
        }
        let issuer = Issuer {
            cert: self.issuing_cert(),
            key: &self.issuing_key,
        };
        // A collision of 128-bit random serials is not expected; retry a few
        // times rather than ever reuse one.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let serial = random_serial()?;
            let cert = build_cert(
                &subject,
                &pubkey,
                Some(&issuer),
                None,
                validity_days,
                Kind::Leaf {
                    profile,
                    rsa,
                    san: &san,
                },
                &self.settings.ocsp_url,
                &serial,
            )?;
            let pem = cert.to_pem().map_err(ossl("encoding a certificate"))?;
            let path = issued_path(&self.dir, &serial_hex(&serial));
            match key::write_file_atomic(&path, &pem, 0o644, false) {
                Ok(()) => return Ok(cert),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => continue,
                Err(e) => {
                    return Err(io_err("could not record the issued certificate in", &path)(
                        e,
                    ))
                }
            }
        }
    }

    /// Revokes a certificate issued here, recording `reason` and the time
    /// the revocation takes effect. Visible to every process reading the
    /// directory once this returns.
    pub fn revoke<'a>(
        &self,
        target: impl Into<RevokeTarget<'a>>,
        reason: RevocationReason,
        at: DateTime<Utc>,
    ) -> Result<(), CaError> {
        let (serial, given) = match target.into() {
            RevokeTarget::Cert(c) => (cert::cert_serial_hex(c)?, Some(c)),
            RevokeTarget::Serial(s) => (serial_hex(s), None),
        };
        let Some(issued) = self.issued_cert_hex(&serial)? else {
            return Err(CaError::UnknownSerial { serial });
        };
        if let Some(c) = given {
            let a = c.to_der().map_err(ossl("encoding a certificate"))?;
            let b = issued.to_der().map_err(ossl("encoding a certificate"))?;
            if a != b {
                return Err(CaError::NotIssuedHere { serial });
            }
        }
        let record = RevocationRecord {
            serial: serial.clone(),
            reason: reason.name().to_string(),
            reason_code: reason.code(),
            revoked_at: at,
            recorded_at: Utc::now(),
        };
        let path = self.dir.join(REVOKED_DIR).join(format!("{serial}.json"));
        let json = serde_json::to_vec_pretty(&record).map_err(|e| CaError::Corrupt {
            path: path.clone(),
            detail: "could not encode the revocation".to_string(),
            source: Some(Box::new(e)),
        })?;
        match key::write_file_atomic(&path, &json, 0o644, false) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let (at, reason) = match self.revocation(&serial)? {
                    Some(CertStatus::Revoked { at, reason }) => (at, reason),
                    _ => (at, reason),
                };
                Err(CaError::AlreadyRevoked { serial, reason, at })
            }
            Err(e) => Err(io_err("could not record the revocation in", &path)(e)),
        }
    }

    /// The status of a serial, read from the directory now: `Good` if issued
    /// here and not revoked, `Revoked` with the recorded reason and time,
    /// `Unknown` if never issued here. A damaged record also gives `Unknown`
    /// (never `Good`); use [`Pki::try_status`] to see the error.
    pub fn status(&self, serial: &BigNumRef) -> CertStatus {
        self.try_status(serial).unwrap_or(CertStatus::Unknown)
    }

    /// [`Pki::status`] with file errors reported.
    pub fn try_status(&self, serial: &BigNumRef) -> Result<CertStatus, CaError> {
        let serial = serial_hex(serial);
        if let Some(s) = self.revocation(&serial)? {
            return Ok(s);
        }
        let path = issued_path(&self.dir, &serial);
        match fs::metadata(&path) {
            Ok(_) => Ok(CertStatus::Good),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(CertStatus::Unknown),
            Err(e) => Err(io_err("could not read", &path)(e)),
        }
    }

    fn revocation(&self, serial: &str) -> Result<Option<CertStatus>, CaError> {
        let path = self.dir.join(REVOKED_DIR).join(format!("{serial}.json"));
        let json = match fs::read(&path) {
            Ok(j) => j,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err("could not read", &path)(e)),
        };
        let corrupt = |detail: &str, source: Option<Box<dyn std::error::Error + Send + Sync>>| {
            CaError::Corrupt {
                path: path.clone(),
                detail: detail.to_string(),
                source,
            }
        };
        let rec: RevocationRecord = serde_json::from_slice(&json)
            .map_err(|e| corrupt("not a revocation record", Some(Box::new(e))))?;
        let reason = rec
            .reason
            .parse::<RevocationReason>()
            .map_err(|e| corrupt("unknown revocation reason", Some(Box::new(e))))?;
        if rec.serial != serial {
            return Err(corrupt(
                "the serial inside does not match the file name",
                None,
            ));
        }
        Ok(Some(CertStatus::Revoked {
            at: rec.revoked_at,
            reason,
        }))
    }

    /// The certificate issued here under `serial`, if any.
    pub fn issued_cert(&self, serial: &BigNumRef) -> Result<Option<X509>, CaError> {
        self.issued_cert_hex(&serial_hex(serial))
    }

    fn issued_cert_hex(&self, serial: &str) -> Result<Option<X509>, CaError> {
        let path = issued_path(&self.dir, serial);
        match fs::metadata(&path) {
            Ok(_) => read_one_cert(&path).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("could not read", &path)(e)),
        }
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The root CA's common name.
    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// The root certificate (the trust anchor).
    pub fn root_cert(&self) -> &X509 {
        &self.root
    }

    /// The intermediate certificates, issuing CA first (empty without an
    /// intermediate).
    pub fn chain(&self) -> &[X509] {
        &self.chain
    }

    /// The certificate of the CA that issues leaf certificates (and signs
    /// OCSP responses about them): the intermediate, or the root.
    pub fn issuing_cert(&self) -> &X509 {
        self.chain.first().unwrap_or(&self.root)
    }

    /// The issuing CA's private key.
    pub fn issuing_key(&self) -> &PKey<Private> {
        &self.issuing_key
    }

    /// The TSA certificate.
    pub fn tsa_cert(&self) -> &X509 {
        &self.tsa
    }

    /// The TSA's private key.
    pub fn tsa_key(&self) -> &PKey<Private> {
        &self.tsa_key
    }

    /// The OCSP URL written into issued certificates.
    pub fn ocsp_url(&self) -> &str {
        &self.settings.ocsp_url
    }
}

fn issued_path(dir: &Path, serial: &str) -> PathBuf {
    dir.join(ISSUED_DIR).join(format!("{serial}.pem"))
}

/// The CA answers for the certificates its issuing CA issued (read from the
/// directory on every call) and reports its own intermediates as `Good`
/// (this tool has no way to revoke them); anything else is `Unknown`.
impl crate::chain::RevocationChecker for Pki {
    fn status(
        &self,
        cert: &X509Ref,
        issuer: &X509Ref,
    ) -> Result<CertStatus, crate::chain::BoxError> {
        let cert_der = cert.to_der()?;
        for c in &self.chain {
            if c.to_der()? == cert_der {
                return Ok(CertStatus::Good);
            }
        }
        let ours = issuer.to_der()? == self.issuing_cert().to_der()?;
        if !ours {
            return Ok(CertStatus::Unknown);
        }
        let serial = cert.serial_number().to_bn()?;
        Ok(self.try_status(&serial)?)
    }
}
