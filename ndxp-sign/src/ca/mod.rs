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
use std::io;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use openssl::bn::{BigNum, BigNumRef};
use openssl::error::ErrorStack;
use openssl::pkey::{PKey, Private};
use openssl::x509::{X509Ref, X509};
use serde::{Deserialize, Serialize};

use crate::cert::{self, serial_hex, CertError};
use crate::csr::CsrError;
use crate::key::{KeyAlgorithm, KeyError};
use crate::revocation::{CertStatus, RevocationReason};

mod build;
mod dir;
mod issue;

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

/// `From<&T>` for each listed reference type `T` of a variant (owned types
/// through their `Deref` to the `Ref` type).
macro_rules! revoke_target_from {
    ($($t:ty => $variant:ident),* $(,)?) => {$(
        impl<'a> From<&'a $t> for RevokeTarget<'a> {
            fn from(x: &'a $t) -> Self {
                RevokeTarget::$variant(x)
            }
        }
    )*};
}

revoke_target_from!(
    X509Ref => Cert,
    X509 => Cert,
    BigNumRef => Serial,
    BigNum => Serial,
);

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

impl Pki {
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
