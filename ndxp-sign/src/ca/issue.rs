//! Issuing, revoking and looking up certificates.

use std::fs;
use std::io;

use chrono::{DateTime, Utc};
use openssl::bn::BigNumRef;
use openssl::x509::extension::SubjectAlternativeName;
use openssl::x509::{X509ReqRef, X509};

use crate::cert::{self, serial_hex, Profile};
use crate::csr;
use crate::key::{self, KeyKind};
use crate::revocation::{CertStatus, RevocationReason};

use super::build::{build_cert, random_serial, Issuer, Kind};
use super::dir::read_one_cert;
use super::{io_err, issued_path, ossl, CaError, Pki, RevocationRecord, RevokeTarget, REVOKED_DIR};

impl Pki {
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
}
