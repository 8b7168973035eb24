//! Certificates: how NDXP identities are written into certificates and read
//! back, fingerprints, serial numbers, validity times and PEM chains.
//!
//! # Identities in certificates
//!
//! A **signing** certificate belongs to a member (`VN/GOV/000.00.00.H29`); an
//! **authentication** (TLS) certificate belongs to one node of a member
//! (`VN/GOV/000.00.00.H29` + `node1`). The CA writes both into the
//! certificate in two places:
//!
//! | Field | Signing | Authentication |
//! |---|---|---|
//! | subject `C` | the instance, only if it is two letters `A-Z` | same |
//! | subject `O` | member class (`GOV`) | same |
//! | subject `serialNumber` (2.5.4.5) | full member id `VN/GOV/000.00.00.H29` | same |
//! | subject `CN` | member code (`000.00.00.H29`) | node name (`node1`) |
//! | SAN URI | `urn:ndxp:member:VN/GOV/000.00.00.H29` | `urn:ndxp:node:VN/GOV/000.00.00.H29/node1` |
//!
//! **The SAN URI is authoritative.** [`identity_of`] reads exactly one
//! `urn:ndxp:` URI from the subjectAltName, parses it strictly, and then
//! checks that the subject fields that are present agree with it (a mismatch
//! is an error, never silently resolved). The subject fields exist for
//! humans and for tools that show only the subject. `serialNumber` is a
//! PrintableString when the text allows it (≤ 64 characters, no `_`), a
//! UTF8String otherwise.
//!
//! # Fingerprints and serials
//!
//! [`fingerprint_sha256`] is the SHA-256 of the certificate's DER encoding
//! as 64 lowercase hex digits without separators. [`serial_hex`] is the
//! serial number as lowercase hex without leading zeros (the form used for
//! file names in the CA directory).
//!
//! # Example
//!
//! ```
//! use ndxp_sign::cert::{Identity, Profile};
//!
//! let id: Identity = Identity::from_uri("urn:ndxp:node:VN/GOV/000.00.00.H29/node1")?;
//! assert_eq!(id.profile(), Profile::Auth);
//! assert_eq!(id.member().to_string(), "VN/GOV/000.00.00.H29");
//! assert_eq!(id.uri(), "urn:ndxp:node:VN/GOV/000.00.00.H29/node1");
//! assert_eq!("sign".parse::<Profile>()?, Profile::Sign);
//! # Ok::<(), ndxp_sign::cert::CertError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use ndxp_core::id::{IdError, MemberId, NodeName};
use openssl::asn1::{Asn1Time, Asn1TimeRef, Asn1Type};
use openssl::bn::BigNumRef;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::x509::{X509Name, X509NameRef, X509Ref, X509};

/// URI prefix of a member (signing) identity.
pub const MEMBER_URI_PREFIX: &str = "urn:ndxp:member:";
/// URI prefix of a node (authentication) identity.
pub const NODE_URI_PREFIX: &str = "urn:ndxp:node:";

/// Errors reading identities and certificates.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// The profile name is not `auth` or `sign`.
    #[error("unknown certificate profile {0:?}; expected auth or sign")]
    UnknownProfile(String),
    /// The certificate carries no `urn:ndxp:` URI in its subjectAltName.
    #[error("the certificate (subject {subject}) has no urn:ndxp: identity in its subjectAltName; it was not issued for NDXP")]
    NoIdentity {
        /// The subject, for the message.
        subject: String,
    },
    /// The certificate carries more than one `urn:ndxp:` URI.
    #[error("the certificate (subject {subject}) carries {count} urn:ndxp: identities; exactly one is allowed")]
    AmbiguousIdentity {
        /// The subject, for the message.
        subject: String,
        /// How many were found.
        count: usize,
    },
    /// A `urn:ndxp:` URI that does not parse.
    #[error("bad NDXP identity URI {uri:?}")]
    BadUri {
        /// The URI.
        uri: String,
        /// Why the identifier inside is invalid, if that is the reason.
        #[source]
        source: Option<IdError>,
    },
    /// A subject field that does not parse as the identifier it must hold.
    #[error("subject field {field} {value:?} is not a valid {expected}")]
    BadSubjectField {
        /// The field, e.g. `serialNumber`.
        field: &'static str,
        /// Its value.
        value: String,
        /// What it should be, e.g. "member id".
        expected: &'static str,
        /// The identifier error.
        #[source]
        source: IdError,
    },
    /// A subject field is missing or appears more than once.
    #[error("the subject must contain exactly one {field} field")]
    SubjectField {
        /// The field.
        field: &'static str,
    },
    /// Subject fields disagree with the identity.
    #[error("subject field {field} is {found:?} but the identity says {expected:?}")]
    Inconsistent {
        /// The field.
        field: &'static str,
        /// The value in the certificate.
        found: String,
        /// The value the identity implies.
        expected: String,
    },
    /// The certificate is for a node where a member was expected, or the
    /// other way round.
    #[error("expected a {expected} certificate, found a {found} certificate for {identity}")]
    WrongProfile {
        /// What was asked for.
        expected: Profile,
        /// What the certificate is.
        found: Profile,
        /// The identity found.
        identity: String,
    },
    /// PEM input that is not a certificate list.
    #[error("not a PEM certificate list: {detail}")]
    BadPem {
        /// What is wrong.
        detail: &'static str,
        /// The OpenSSL error, if OpenSSL failed.
        #[source]
        source: Option<ErrorStack>,
    },
    /// An OpenSSL failure.
    #[error("OpenSSL failed while {0}")]
    OpenSsl(&'static str, #[source] ErrorStack),
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// Node authentication (mutual TLS), `auth`.
    Auth,
    /// Member message signing, `sign`.
    Sign,
}

impl fmt::Display for Profile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Profile::Auth => "auth",
            Profile::Sign => "sign",
        })
    }
}

impl FromStr for Profile {
    type Err = CertError;
    fn from_str(s: &str) -> Result<Self, CertError> {
        match s {
            "auth" => Ok(Profile::Auth),
            "sign" => Ok(Profile::Sign),
            _ => Err(CertError::UnknownProfile(s.to_string())),
        }
    }
}

/// The identity a certificate is issued to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A member, for signing certificates.
    Member(MemberId),
    /// A node of a member, for authentication certificates.
    Node(MemberId, NodeName),
}

impl Identity {
    /// The member (for a node, the member that runs it).
    pub fn member(&self) -> &MemberId {
        match self {
            Identity::Member(m) | Identity::Node(m, _) => m,
        }
    }

    /// The profile that goes with this identity.
    pub fn profile(&self) -> Profile {
        match self {
            Identity::Member(_) => Profile::Sign,
            Identity::Node(..) => Profile::Auth,
        }
    }

    /// The `urn:ndxp:` URI written into the subjectAltName.
    pub fn uri(&self) -> String {
        match self {
            Identity::Member(m) => format!("{MEMBER_URI_PREFIX}{m}"),
            Identity::Node(m, n) => format!("{NODE_URI_PREFIX}{m}/{n}"),
        }
    }

    /// Parses a `urn:ndxp:member:…` or `urn:ndxp:node:…` URI strictly.
    pub fn from_uri(uri: &str) -> Result<Identity, CertError> {
        let bad = |source| CertError::BadUri {
            uri: uri.to_string(),
            source,
        };
        if let Some(rest) = uri.strip_prefix(MEMBER_URI_PREFIX) {
            let member = rest.parse().map_err(|e| bad(Some(e)))?;
            Ok(Identity::Member(member))
        } else if let Some(rest) = uri.strip_prefix(NODE_URI_PREFIX) {
            let (member, node) = rest.rsplit_once('/').ok_or_else(|| bad(None))?;
            let member = member.parse().map_err(|e| bad(Some(e)))?;
            let node = node.parse().map_err(|e| bad(Some(e)))?;
            Ok(Identity::Node(member, node))
        } else {
            Err(bad(None))
        }
    }

    /// The subject name for this identity (see the module docs).
    pub fn subject_name(&self) -> Result<X509Name, CertError> {
        let m = self.member();
        let cn = match self {
            Identity::Member(m) => m.code().to_string(),
            Identity::Node(_, n) => n.to_string(),
        };
        let err = |e| CertError::OpenSsl("building a subject name", e);
        let mut b = X509Name::builder().map_err(err)?;
        if let Some(c) = country(m) {
            b.append_entry_by_nid_with_type(Nid::COUNTRYNAME, c, Asn1Type::PRINTABLESTRING)
                .map_err(err)?;
        }
        b.append_entry_by_nid_with_type(Nid::ORGANIZATIONNAME, m.class(), Asn1Type::UTF8STRING)
            .map_err(err)?;
        let serial = m.to_string();
        let serial_type = if serial.len() <= 64 && !serial.contains('_') {
            Asn1Type::PRINTABLESTRING
        } else {
            Asn1Type::UTF8STRING
        };
        b.append_entry_by_nid_with_type(Nid::SERIALNUMBER, &serial, serial_type)
            .map_err(err)?;
        b.append_entry_by_nid_with_type(Nid::COMMONNAME, &cn, Asn1Type::UTF8STRING)
            .map_err(err)?;
        Ok(b.build())
    }

    /// Reads the identity from a subject name alone (used for CSRs, whose
    /// subject the requester chose): `serialNumber` is the member id, `CN` is
    /// the member code (`Sign`) or the node name (`Auth`); `O` and `C`, when
    /// present, must agree.
    pub fn from_subject(name: &X509NameRef, profile: Profile) -> Result<Identity, CertError> {
        let serial = single_entry(name, Nid::SERIALNUMBER, "serialNumber")?.ok_or(
            CertError::SubjectField {
                field: "serialNumber",
            },
        )?;
        let member: MemberId = serial
            .parse()
            .map_err(|source| CertError::BadSubjectField {
                field: "serialNumber",
                value: serial.clone(),
                expected: "member id (instance/class/code)",
                source,
            })?;
        let cn = single_entry(name, Nid::COMMONNAME, "CN")?
            .ok_or(CertError::SubjectField { field: "CN" })?;
        let identity = match profile {
            Profile::Sign => Identity::Member(member),
            Profile::Auth => {
                let node = cn.parse().map_err(|source| CertError::BadSubjectField {
                    field: "CN",
                    value: cn.clone(),
                    expected: "node name",
                    source,
                })?;
                Identity::Node(member, node)
            }
        };
        check_subject(name, &identity)?;
        Ok(identity)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Member(m) => write!(f, "member {m}"),
            Identity::Node(m, n) => write!(f, "node {m}/{n}"),
        }
    }
}

fn country(m: &MemberId) -> Option<&str> {
    let i = m.instance().as_str();
    (i.len() == 2 && i.bytes().all(|b| b.is_ascii_uppercase())).then_some(i)
}

/// The text of the only entry `nid` in `name`; `None` if absent; an error if
/// repeated or not a string.
fn single_entry(
    name: &X509NameRef,
    nid: Nid,
    field: &'static str,
) -> Result<Option<String>, CertError> {
    let mut it = name.entries_by_nid(nid);
    let Some(first) = it.next() else {
        return Ok(None);
    };
    if it.next().is_some() {
        return Err(CertError::SubjectField { field });
    }
    let text = first
        .data()
        .to_string()
        .map_err(|e| CertError::OpenSsl("reading a subject field", e))?;
    Ok(Some(text))
}

/// Checks that the subject fields present agree with `identity`.
fn check_subject(name: &X509NameRef, identity: &Identity) -> Result<(), CertError> {
    let m = identity.member();
    let cn = match identity {
        Identity::Member(m) => m.code().to_string(),
        Identity::Node(_, n) => n.to_string(),
    };
    let mut expected = vec![
        (Nid::SERIALNUMBER, "serialNumber", Some(m.to_string())),
        (Nid::COMMONNAME, "CN", Some(cn)),
        (Nid::ORGANIZATIONNAME, "O", Some(m.class().to_string())),
    ];
    expected.push((Nid::COUNTRYNAME, "C", country(m).map(str::to_string)));
    for (nid, field, want) in expected {
        let found = single_entry(name, nid, field)?;
        match (found, want) {
            (Some(f), Some(w)) if f != w => {
                return Err(CertError::Inconsistent {
                    field,
                    found: f,
                    expected: w,
                })
            }
            (Some(f), None) => {
                return Err(CertError::Inconsistent {
                    field,
                    found: f,
                    expected: String::new(),
                })
            }
            _ => {}
        }
    }
    Ok(())
}

/// The NDXP identity of a certificate, read from its single `urn:ndxp:` SAN
/// URI and checked against its subject fields.
pub fn identity_of(cert: &X509Ref) -> Result<Identity, CertError> {
    let subject = subject_text(cert.subject_name());
    let uris: Vec<String> = cert
        .subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.uri())
                .filter(|u| u.starts_with("urn:ndxp:"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let uri = match uris.as_slice() {
        [] => return Err(CertError::NoIdentity { subject }),
        [one] => one,
        many => {
            return Err(CertError::AmbiguousIdentity {
                subject,
                count: many.len(),
            })
        }
    };
    let identity = Identity::from_uri(uri)?;
    check_subject(cert.subject_name(), &identity)?;
    Ok(identity)
}

/// The member of a signing certificate. An authentication certificate is a
/// [`CertError::WrongProfile`] error (use [`node_of`], or
/// [`identity_of`]`(..).member()` for the member behind any certificate).
pub fn member_of(cert: &X509Ref) -> Result<MemberId, CertError> {
    match identity_of(cert)? {
        Identity::Member(m) => Ok(m),
        other => Err(CertError::WrongProfile {
            expected: Profile::Sign,
            found: other.profile(),
            identity: other.to_string(),
        }),
    }
}

/// The member and node of an authentication certificate. A signing
/// certificate is a [`CertError::WrongProfile`] error.
pub fn node_of(cert: &X509Ref) -> Result<(MemberId, NodeName), CertError> {
    match identity_of(cert)? {
        Identity::Node(m, n) => Ok((m, n)),
        other => Err(CertError::WrongProfile {
            expected: Profile::Auth,
            found: other.profile(),
            identity: other.to_string(),
        }),
    }
}

/// SHA-256 over the certificate's DER, as 64 lowercase hex digits.
///
/// OpenSSL can fail here only when it cannot allocate memory; then the
/// result is an empty string, which never equals a real fingerprint. Use
/// [`try_fingerprint_sha256`] to see that error.
pub fn fingerprint_sha256(cert: &X509Ref) -> String {
    try_fingerprint_sha256(cert).unwrap_or_default()
}

/// [`fingerprint_sha256`] with the OpenSSL error kept.
pub fn try_fingerprint_sha256(cert: &X509Ref) -> Result<String, CertError> {
    cert.digest(MessageDigest::sha256())
        .map(|d| hex::encode(&*d))
        .map_err(|e| CertError::OpenSsl("hashing a certificate", e))
}

/// A serial number as lowercase hex without leading zeros (`0` for zero).
pub fn serial_hex(serial: &BigNumRef) -> String {
    let bytes = serial.to_vec();
    let s = hex::encode(bytes);
    let trimmed = s.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".to_string()
    } else {
        trimmed.to_string()
    }
}

/// The serial number of a certificate as [`serial_hex`] text.
pub fn cert_serial_hex(cert: &X509Ref) -> Result<String, CertError> {
    let bn = cert
        .serial_number()
        .to_bn()
        .map_err(|e| CertError::OpenSsl("reading a serial number", e))?;
    Ok(serial_hex(&bn))
}

/// A distinguished name as one line, `C=VN, O=GOV, CN=...`, for messages.
pub fn subject_text(name: &X509NameRef) -> String {
    let parts: Vec<String> = name
        .entries()
        .map(|e| {
            let key = e.object().nid().short_name().unwrap_or("?").to_string();
            let val = e
                .data()
                .to_string()
                .unwrap_or_else(|_| "<unreadable>".to_string());
            format!("{key}={val}")
        })
        .collect();
    parts.join(", ")
}

/// Converts an ASN.1 time to UTC.
pub fn asn1_to_utc(t: &Asn1TimeRef) -> Result<DateTime<Utc>, CertError> {
    let err = |e| CertError::OpenSsl("converting a certificate time", e);
    let epoch = Asn1Time::from_unix(0).map_err(err)?;
    let d = epoch.diff(t).map_err(err)?;
    let secs = i64::from(d.days) * 86_400 + i64::from(d.secs);
    Ok(DateTime::from_timestamp(secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC))
}

/// Converts a UTC time to ASN.1 (whole seconds).
pub fn utc_to_asn1(t: DateTime<Utc>) -> Result<Asn1Time, CertError> {
    Asn1Time::from_unix(t.timestamp() as _)
        .map_err(|e| CertError::OpenSsl("converting a time to ASN.1", e))
}

/// Reads every certificate in PEM text, in order. Empty input (or input with
/// only whitespace) is an empty list; anything else that holds no
/// certificate is an error.
pub fn read_pem_chain(pem: &[u8]) -> Result<Vec<X509>, CertError> {
    let certs = X509::stack_from_pem(pem).map_err(|e| CertError::BadPem {
        detail: "a certificate block could not be parsed",
        source: Some(e),
    })?;
    if certs.is_empty() && !pem.iter().all(u8::is_ascii_whitespace) {
        return Err(CertError::BadPem {
            detail: "no -----BEGIN CERTIFICATE----- block found",
            source: None,
        });
    }
    Ok(certs)
}

/// Reads one certificate, PEM or DER (the first one when PEM holds several).
pub fn parse_certificate(data: &[u8]) -> Result<X509, CertError> {
    if data.windows(11).any(|w| w == b"-----BEGIN ") {
        return read_pem_chain(data)?
            .into_iter()
            .next()
            .ok_or(CertError::BadPem {
                detail: "no -----BEGIN CERTIFICATE----- block found",
                source: None,
            });
    }
    X509::from_der(data).map_err(|e| CertError::BadPem {
        detail: "neither a PEM certificate nor a DER certificate",
        source: Some(e),
    })
}

/// A self-signed TLS certificate for `key`: subject `CN=common_name`, the
/// DNS names and IP addresses given as subjectAltName, valid from a minute
/// ago for `days` days, fit for both TLS server and client authentication.
/// For information systems that call a node's client port (which pins the
/// certificate rather than its issuer) and for a client port's own
/// certificate in closed set-ups and demos.
///
/// # Errors
/// [`CertError::OpenSsl`] when OpenSSL fails, e.g. on an empty DNS name.
pub fn self_signed(
    common_name: &str,
    key: &openssl::pkey::PKeyRef<openssl::pkey::Private>,
    dns: &[&str],
    ips: &[std::net::IpAddr],
    days: u32,
) -> Result<X509, CertError> {
    use openssl::x509::extension::{
        BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    };
    let ossl = |what| move |e| CertError::OpenSsl(what, e);
    let mut name = openssl::x509::X509NameBuilder::new().map_err(ossl("building a name"))?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)
        .map_err(ossl("building a name"))?;
    let name = name.build();
    let mut b = X509::builder().map_err(ossl("building a certificate"))?;
    b.set_version(2).map_err(ossl("building a certificate"))?;
    let mut serial = openssl::bn::BigNum::new().map_err(ossl("making a serial number"))?;
    serial
        .rand(127, openssl::bn::MsbOption::MAYBE_ZERO, false)
        .map_err(ossl("making a serial number"))?;
    let serial = serial
        .to_asn1_integer()
        .map_err(ossl("making a serial number"))?;
    b.set_serial_number(&serial)
        .map_err(ossl("building a certificate"))?;
    b.set_subject_name(&name)
        .map_err(ossl("building a certificate"))?;
    b.set_issuer_name(&name)
        .map_err(ossl("building a certificate"))?;
    b.set_pubkey(key).map_err(ossl("building a certificate"))?;
    let now = Utc::now();
    let not_before = utc_to_asn1(now - chrono::TimeDelta::minutes(1))?;
    let not_after = utc_to_asn1(now + chrono::TimeDelta::days(i64::from(days)))?;
    b.set_not_before(&not_before)
        .map_err(ossl("setting the validity"))?;
    b.set_not_after(&not_after)
        .map_err(ossl("setting the validity"))?;
    b.append_extension(
        BasicConstraints::new()
            .build()
            .map_err(ossl("adding extensions"))?,
    )
    .map_err(ossl("adding extensions"))?;
    b.append_extension(
        KeyUsage::new()
            .digital_signature()
            .key_encipherment()
            .build()
            .map_err(ossl("adding extensions"))?,
    )
    .map_err(ossl("adding extensions"))?;
    b.append_extension(
        ExtendedKeyUsage::new()
            .server_auth()
            .client_auth()
            .build()
            .map_err(ossl("adding extensions"))?,
    )
    .map_err(ossl("adding extensions"))?;
    if !dns.is_empty() || !ips.is_empty() {
        let mut san = SubjectAlternativeName::new();
        for d in dns {
            san.dns(d);
        }
        for ip in ips {
            san.ip(&ip.to_string());
        }
        let ext = san
            .build(&b.x509v3_context(None, None))
            .map_err(ossl("adding the subjectAltName"))?;
        b.append_extension(ext)
            .map_err(ossl("adding the subjectAltName"))?;
    }
    b.sign(key, MessageDigest::sha256())
        .map_err(ossl("signing a certificate"))?;
    Ok(b.build())
}

/// Writes certificates as concatenated PEM blocks, in order.
pub fn write_pem_chain(certs: &[X509]) -> Result<Vec<u8>, CertError> {
    let mut out = Vec::new();
    for c in certs {
        out.extend(
            c.to_pem()
                .map_err(|e| CertError::OpenSsl("encoding a certificate", e))?,
        );
    }
    Ok(out)
}
