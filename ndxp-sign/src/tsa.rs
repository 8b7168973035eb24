//! RFC 3161 time-stamping: an authority that answers `TimeStampReq`s and a
//! client that builds requests and verifies responses and stored tokens.
//!
//! # Authority
//!
//! [`TimestampAuthority`] wraps libcrypto's `TS_RESP_CTX`. For every query it
//! returns a DER `TimeStampResp` ([`TsaReply`]) and never panics:
//!
//! - a good query is `granted`: the token carries a fresh random 127-bit
//!   serial number, `genTime` from the system clock, the query's nonce, the
//!   configured (or requested and accepted) policy, the TSA name, and an ESS
//!   `SigningCertificateV2` (SHA-256) attribute; the TSA certificate and the
//!   configured chain are included when the query sets `certReq`;
//! - a bad one gets `rejection` with a `PKIFailureInfo`: `badDataFormat` for
//!   bytes that are not exactly one DER `TimeStampReq` or an imprint whose
//!   length does not fit its algorithm; `badRequest` for a version other
//!   than 1 or a query over [`MAX_QUERY_LEN`]; `badAlg` for a hash
//!   other than the accepted ones (SHA-256/384/512 by default) or with
//!   parameters; `unacceptedPolicy` for a policy it does not serve;
//!   `unacceptedExtension` for any request extension; `systemFailure` when
//!   signing fails.
//!
//! Each call uses its own `TS_RESP_CTX`, so one authority can serve many
//! threads at once.
//!
//! # Client
//!
//! [`TimestampRequest`] builds a query (random 64-bit nonce by default).
//! [`verify_response`] checks a response to it and [`verify_token`] a stored
//! token. Both accept only when: the CMS signature verifies; the signer
//! certificate is named by the ESS signing-certificate attribute, has a
//! critical extendedKeyUsage that is exactly `id-kp-timeStamping`, and
//! chains to the trust anchors *at the token's genTime* (so an archived
//! token stays verifiable after the TSA certificate expires); the message
//! imprint (algorithm and digest) is the expected one. A response must also
//! be `granted` (or `grantedWithMods`), echo the nonce, and carry the
//! requested policy when one was requested.
//!
//! Revocation of the TSA certificate is not checked here; combine with the
//! OCSP client if needed.

use chrono::{DateTime, Utc};
use openssl::asn1::Asn1Object;
use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::{X509Ref, X509};

use crate::ffi;
use crate::ocsp::trust_store;

/// The default TSA policy OID. It lies under `1.3.6.1.4.1.32473`, the private
/// enterprise number that RFC 5612 reserves for documentation and examples:
/// it is fine for tests and demos, and a production operator sets an OID
/// under its own arc with [`TimestampAuthority::with_policy`].
pub const DEFAULT_POLICY_OID: &str = "1.3.6.1.4.1.32473.3161.1";

/// The largest query the authority parses, in bytes.
pub const MAX_QUERY_LEN: usize = 16 * 1024;

/// The largest response or token the client parses, in bytes.
pub const MAX_RESPONSE_LEN: usize = 1024 * 1024;

/// What went wrong with a time-stamp query, response or token.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TsaError {
    /// The TSA certificate lacks a critical EKU of exactly id-kp-timeStamping.
    #[error("the certificate is not a time-stamping certificate: RFC 3161 requires a critical extendedKeyUsage containing only id-kp-timeStamping")]
    NotATsaCertificate,
    /// The private key does not belong to the TSA certificate.
    #[error("the TSA private key does not match the TSA certificate")]
    KeyMismatch,
    /// A policy string is not a dotted OID.
    #[error("{0:?} is not a valid policy OID (expected dotted digits such as 1.2.3.4)")]
    BadPolicyOid(String, #[source] ErrorStack),
    /// An imprint's length does not match its hash algorithm.
    #[error(
        "the message imprint is {got} bytes long but {algorithm} digests are {expected} bytes"
    )]
    ImprintLength {
        /// The algorithm.
        algorithm: ImprintAlgorithm,
        /// Its digest length.
        expected: usize,
        /// The imprint's length.
        got: usize,
    },
    /// The query bytes are not one DER `TimeStampReq`.
    #[error("the time-stamp query is not a valid DER-encoded TimeStampReq")]
    MalformedQuery,
    /// The query is larger than [`MAX_QUERY_LEN`].
    #[error("the time-stamp query is {len} bytes long; at most {max} bytes are accepted")]
    QueryTooLarge {
        /// Size of the query.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The query or token uses a hash algorithm that is not SHA-256/384/512.
    #[error("the message imprint uses hash algorithm {0}, but only SHA-256, SHA-384 and SHA-512 are accepted")]
    UnsupportedAlgorithm(String),
    /// The query's version is not 1.
    #[error("the time-stamp query has version {0}; only version 1 exists")]
    UnsupportedVersion(i64),
    /// The authority refused the query (see the reply's status).
    #[error("the time-stamp query was rejected ({failure:?}): {text}")]
    QueryRejected {
        /// The failure reasons put into the response.
        failure: Vec<PkiFailureInfo>,
        /// The status text put into the response.
        text: String,
    },
    /// An OpenSSL operation failed.
    #[error("OpenSSL failed to {what}")]
    OpenSsl {
        /// What was being done.
        what: &'static str,
        /// The OpenSSL error queue.
        #[source]
        source: ErrorStack,
    },
    /// The response bytes are not one DER `TimeStampResp`.
    #[error("the time-stamp response is not a valid DER-encoded TimeStampResp")]
    MalformedResponse,
    /// The response or token is larger than [`MAX_RESPONSE_LEN`].
    #[error(
        "the time-stamp response or token is {len} bytes long; at most {max} bytes are accepted"
    )]
    ResponseTooLarge {
        /// Size of the input.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The authority did not grant the request.
    #[error("the time-stamp authority answered {status:?} ({failure:?}): {text}")]
    Rejected {
        /// The PKIStatus.
        status: PkiStatus,
        /// The PKIFailureInfo bits.
        failure: Vec<PkiFailureInfo>,
        /// The statusString texts, joined.
        text: String,
    },
    /// The token is not a SignedData with a TSTInfo.
    #[error("the time-stamp token is not a CMS SignedData containing a TSTInfo")]
    MalformedToken,
    /// A field of the TSTInfo could not be read.
    #[error("the time-stamp token has an unreadable {0}")]
    BadTokenField(&'static str),
    /// The imprint in the token is not the expected one.
    #[error("the time-stamp token is for different data: its message imprint does not match")]
    ImprintMismatch,
    /// The response has no nonce although the request had one.
    #[error("the time-stamp response does not echo the request nonce (possible replay)")]
    NonceMissing,
    /// The response nonce differs from the request's.
    #[error("the time-stamp response nonce does not match the request nonce (possible replay)")]
    NonceMismatch,
    /// The token's policy is not the requested one.
    #[error("the time-stamp token has policy {got}, but {requested} was requested")]
    PolicyMismatch {
        /// Requested policy.
        requested: String,
        /// Policy in the token.
        got: String,
    },
    /// Signature, ESS attribute or certificate chain did not verify.
    #[error("the time-stamp token signature or its TSA certificate chain did not verify against the trusted CAs")]
    BadSignature(#[source] ErrorStack),
    /// The token's signer certificate is not available.
    #[error("the TSA certificate is neither in the token nor among the given certificates")]
    SignerNotFound,
}

impl TsaError {
    fn ssl(what: &'static str) -> impl FnOnce(ErrorStack) -> TsaError {
        move |source| TsaError::OpenSsl { what, source }
    }
}

/// Hash algorithms accepted for message imprints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ImprintAlgorithm {
    /// SHA-256
    Sha256,
    /// SHA-384
    Sha384,
    /// SHA-512
    Sha512,
}

impl ImprintAlgorithm {
    /// All accepted algorithms.
    pub const ALL: [ImprintAlgorithm; 3] = [Self::Sha256, Self::Sha384, Self::Sha512];

    /// The OpenSSL digest.
    pub fn digest(self) -> MessageDigest {
        match self {
            Self::Sha256 => MessageDigest::sha256(),
            Self::Sha384 => MessageDigest::sha384(),
            Self::Sha512 => MessageDigest::sha512(),
        }
    }

    /// Digest length in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Hashes `data`.
    pub fn hash(self, data: &[u8]) -> Result<Vec<u8>, TsaError> {
        hash(self.digest(), data)
            .map(|d| d.to_vec())
            .map_err(TsaError::ssl("hash the data"))
    }

    fn from_nid(nid: Nid) -> Option<Self> {
        match nid {
            Nid::SHA256 => Some(Self::Sha256),
            Nid::SHA384 => Some(Self::Sha384),
            Nid::SHA512 => Some(Self::Sha512),
            _ => None,
        }
    }

    fn from_raw(raw: &ffi::RawImprint) -> Result<Self, TsaError> {
        Self::from_nid(raw.alg).ok_or_else(|| {
            TsaError::UnsupportedAlgorithm(raw.alg_oid.clone().unwrap_or_else(|| "?".into()))
        })
    }
}

impl std::fmt::Display for ImprintAlgorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        })
    }
}

/// `PKIStatus` (RFC 3161 §2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PkiStatus {
    /// `granted` (0)
    Granted,
    /// `grantedWithMods` (1)
    GrantedWithMods,
    /// `rejection` (2)
    Rejection,
    /// `waiting` (3)
    Waiting,
    /// `revocationWarning` (4)
    RevocationWarning,
    /// `revocationNotification` (5)
    RevocationNotification,
    /// Any other value.
    Other(i64),
}

impl PkiStatus {
    fn from_raw(v: i64) -> Self {
        match v {
            0 => Self::Granted,
            1 => Self::GrantedWithMods,
            2 => Self::Rejection,
            3 => Self::Waiting,
            4 => Self::RevocationWarning,
            5 => Self::RevocationNotification,
            n => Self::Other(n),
        }
    }

    /// Whether a token was issued.
    pub fn is_granted(self) -> bool {
        matches!(self, Self::Granted | Self::GrantedWithMods)
    }
}

/// `PKIFailureInfo` bits (RFC 3161 §2.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PkiFailureInfo {
    /// `badAlg` (0): unrecognised or unsupported algorithm.
    BadAlg,
    /// `badRequest` (2): transaction not permitted or supported.
    BadRequest,
    /// `badDataFormat` (5): the data submitted has the wrong format.
    BadDataFormat,
    /// `timeNotAvailable` (14): the TSA's time source is not available.
    TimeNotAvailable,
    /// `unacceptedPolicy` (15): the requested policy is not supported.
    UnacceptedPolicy,
    /// `unacceptedExtension` (16): the requested extension is not supported.
    UnacceptedExtension,
    /// `addInfoNotAvailable` (17): the additional information is not available.
    AddInfoNotAvailable,
    /// `systemFailure` (25): the request cannot be handled due to system failure.
    SystemFailure,
    /// A bit RFC 3161 does not assign.
    Other(u8),
}

impl PkiFailureInfo {
    /// The bit number.
    pub fn bit(self) -> u8 {
        match self {
            Self::BadAlg => 0,
            Self::BadRequest => 2,
            Self::BadDataFormat => 5,
            Self::TimeNotAvailable => 14,
            Self::UnacceptedPolicy => 15,
            Self::UnacceptedExtension => 16,
            Self::AddInfoNotAvailable => 17,
            Self::SystemFailure => 25,
            Self::Other(b) => b,
        }
    }

    fn from_bit(b: u8) -> Self {
        match b {
            0 => Self::BadAlg,
            2 => Self::BadRequest,
            5 => Self::BadDataFormat,
            14 => Self::TimeNotAvailable,
            15 => Self::UnacceptedPolicy,
            16 => Self::UnacceptedExtension,
            17 => Self::AddInfoNotAvailable,
            25 => Self::SystemFailure,
            other => Self::Other(other),
        }
    }
}

/// The status part of a parsed `TimeStampResp`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseStatus {
    /// The PKIStatus.
    pub status: PkiStatus,
    /// The PKIFailureInfo bits that are set.
    pub failure: Vec<PkiFailureInfo>,
    /// The statusString texts.
    pub text: Vec<String>,
}

/// Reads the status of a DER `TimeStampResp` without verifying anything.
pub fn response_status(resp_der: &[u8]) -> Result<ResponseStatus, TsaError> {
    if resp_der.len() > MAX_RESPONSE_LEN {
        return Err(TsaError::ResponseTooLarge {
            len: resp_der.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    let resp = ffi::TsResp::from_der(resp_der).ok_or(TsaError::MalformedResponse)?;
    status_of(&resp)
}

fn status_of(resp: &ffi::TsResp) -> Result<ResponseStatus, TsaError> {
    let raw = resp.status().ok_or(TsaError::MalformedResponse)?;
    Ok(ResponseStatus {
        status: PkiStatus::from_raw(raw.status),
        failure: raw
            .failure_bits
            .into_iter()
            .map(PkiFailureInfo::from_bit)
            .collect(),
        text: raw.text,
    })
}

/// The authority's answer: always a DER `TimeStampResp`, plus its status and
/// the reason for a refusal (for logging).
#[derive(Debug)]
pub struct TsaReply {
    /// DER `TimeStampResp`, to send as `application/timestamp-reply`.
    pub der: Vec<u8>,
    /// The PKIStatus in `der`.
    pub status: PkiStatus,
    /// Why the query was refused, if it was.
    pub error: Option<TsaError>,
}

/// A time-stamp authority: a TSA certificate and key plus what it accepts.
pub struct TimestampAuthority {
    cert: X509,
    key: PKey<Private>,
    chain: Vec<X509>,
    policy: Asn1Object,
    policy_text: String,
    other_policies: Vec<Asn1Object>,
    algorithms: Vec<ImprintAlgorithm>,
    accuracy_secs: Option<u32>,
}

impl std::fmt::Debug for TimestampAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TimestampAuthority")
            .field("subject", &self.cert.subject_name())
            .field("policy", &self.policy_text)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

fn parse_oid(s: &str) -> Result<Asn1Object, TsaError> {
    // Only dotted numbers: names such as "sha256" would be accepted by
    // OpenSSL but are not policy identifiers.
    let dotted = !s.is_empty()
        && s.split('.')
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    Asn1Object::from_str(s)
        .and_then(|o| {
            if dotted {
                Ok(o)
            } else {
                Err(ErrorStack::get())
            }
        })
        .map_err(|e| TsaError::BadPolicyOid(s.to_string(), e))
}

impl TimestampAuthority {
    /// An authority signing with `cert`/`key`. The certificate must have a
    /// critical extendedKeyUsage of exactly id-kp-timeStamping (RFC 3161
    /// §2.3). Policy: [`DEFAULT_POLICY_OID`]; algorithms: SHA-256/384/512.
    pub fn new(cert: &X509Ref, key: &PKeyRef<Private>) -> Result<Self, TsaError> {
        if !ffi::has_critical_timestamping_eku(cert) {
            return Err(TsaError::NotATsaCertificate);
        }
        let public = cert
            .public_key()
            .map_err(TsaError::ssl("read the TSA certificate's public key"))?;
        if !public.public_eq(key) {
            return Err(TsaError::KeyMismatch);
        }
        Ok(TimestampAuthority {
            cert: cert.to_owned(),
            key: key.to_owned(),
            chain: Vec::new(),
            policy: parse_oid(DEFAULT_POLICY_OID)?,
            policy_text: DEFAULT_POLICY_OID.to_string(),
            other_policies: Vec::new(),
            algorithms: ImprintAlgorithm::ALL.to_vec(),
            accuracy_secs: None,
        })
    }

    /// Certificates (intermediates) to include with the TSA certificate when
    /// a query sets certReq.
    pub fn with_chain(mut self, chain: Vec<X509>) -> Self {
        self.chain = chain;
        self
    }

    /// Sets the default policy OID (dotted form).
    pub fn with_policy(mut self, oid: &str) -> Result<Self, TsaError> {
        self.policy = parse_oid(oid)?;
        self.policy_text = oid.to_string();
        Ok(self)
    }

    /// Further policy OIDs a query may request.
    pub fn with_accepted_policies(mut self, oids: &[&str]) -> Result<Self, TsaError> {
        self.other_policies = oids
            .iter()
            .map(|o| parse_oid(o))
            .collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Restricts the accepted imprint algorithms.
    pub fn with_algorithms(mut self, algorithms: &[ImprintAlgorithm]) -> Self {
        self.algorithms = algorithms.to_vec();
        self
    }

    /// States an accuracy of `secs` seconds in every token.
    pub fn with_accuracy_secs(mut self, secs: u32) -> Self {
        self.accuracy_secs = Some(secs);
        self
    }

    /// The default policy OID.
    pub fn policy(&self) -> &str {
        &self.policy_text
    }

    /// The TSA certificate.
    pub fn certificate(&self) -> &X509Ref {
        &self.cert
    }

    /// Answers a DER `TimeStampReq` (see the module documentation).
    pub fn respond(&self, query_der: &[u8]) -> TsaReply {
        if query_der.len() > MAX_QUERY_LEN {
            return rejection(
                PkiFailureInfo::BadRequest,
                "Request too large.",
                TsaError::QueryTooLarge {
                    len: query_der.len(),
                    max: MAX_QUERY_LEN,
                },
            );
        }
        if ffi::TsReq::from_der(query_der).is_none() {
            return rejection(
                PkiFailureInfo::BadDataFormat,
                "Bad request format.",
                TsaError::MalformedQuery,
            );
        }
        let digests: Vec<MessageDigest> = self.algorithms.iter().map(|a| a.digest()).collect();
        let params = ffi::TsaParams {
            cert: &self.cert,
            key: &self.key,
            chain: &self.chain,
            policy: &self.policy,
            other_policies: &self.other_policies,
            digests: &digests,
            signer_digest: MessageDigest::sha256(),
            accuracy_secs: self.accuracy_secs,
        };
        let resp = match ffi::ts_create_response(&params, query_der) {
            Ok(r) => r,
            Err(e) => return system_failure(TsaError::ssl("create the time-stamp response")(e)),
        };
        let der = match resp.to_der() {
            Ok(d) => d,
            Err(e) => return system_failure(TsaError::ssl("encode the time-stamp response")(e)),
        };
        match status_of(&resp) {
            Ok(st) if st.status.is_granted() => TsaReply {
                der,
                status: st.status,
                error: None,
            },
            Ok(st) => TsaReply {
                der,
                status: st.status,
                error: Some(TsaError::QueryRejected {
                    failure: st.failure,
                    text: st.text.join("; "),
                }),
            },
            Err(e) => system_failure(e),
        }
    }
}

fn system_failure(error: TsaError) -> TsaReply {
    rejection(PkiFailureInfo::SystemFailure, "System failure.", error)
}

/// A DER `TimeStampResp` carrying only a rejection status.
fn rejection(failure: PkiFailureInfo, text: &str, error: TsaError) -> TsaReply {
    TsaReply {
        der: rejection_der(failure, text),
        status: PkiStatus::Rejection,
        error: Some(error),
    }
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        let significant = bytes.get(skip..).unwrap_or_default();
        out.push(0x80 | significant.len() as u8);
        out.extend_from_slice(significant);
    }
    out.extend_from_slice(content);
    out
}

/// Encodes `TimeStampResp { PKIStatusInfo { rejection, statusString, failInfo } }`.
fn rejection_der(failure: PkiFailureInfo, text: &str) -> Vec<u8> {
    let bit = usize::from(failure.bit());
    let mut bits = vec![0u8; bit / 8 + 1];
    if let Some(byte) = bits.get_mut(bit / 8) {
        *byte = 0x80 >> (bit % 8);
    }
    let mut bit_string = vec![(7 - bit % 8) as u8];
    bit_string.extend_from_slice(&bits);
    let mut info = der_tlv(0x02, &[2]);
    info.extend(der_tlv(0x30, &der_tlv(0x0c, text.as_bytes())));
    info.extend(der_tlv(0x03, &bit_string));
    der_tlv(0x30, &der_tlv(0x30, &info))
}

/// A parsed `TimeStampReq`, as the authority sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct TimestampQuery {
    /// The imprint algorithm.
    pub algorithm: ImprintAlgorithm,
    /// The hashed message.
    pub imprint: Vec<u8>,
    /// The requested policy, dotted.
    pub policy: Option<String>,
    /// The nonce.
    pub nonce: Option<BigNum>,
    /// Whether the TSA certificate is requested in the token.
    pub cert_req: bool,
    /// Number of request extensions.
    pub extensions: usize,
}

impl TimestampQuery {
    /// Parses and checks a DER `TimeStampReq`: exactly one DER object,
    /// version 1, a SHA-256/384/512 imprint with absent or NULL parameters
    /// and the right length.
    pub fn from_der(der: &[u8]) -> Result<Self, TsaError> {
        if der.len() > MAX_QUERY_LEN {
            return Err(TsaError::QueryTooLarge {
                len: der.len(),
                max: MAX_QUERY_LEN,
            });
        }
        let req = ffi::TsReq::from_der(der).ok_or(TsaError::MalformedQuery)?;
        let version = req.version();
        if version != 1 {
            return Err(TsaError::UnsupportedVersion(version));
        }
        let raw = req.imprint().ok_or(TsaError::MalformedQuery)?;
        let algorithm = ImprintAlgorithm::from_raw(&raw)?;
        if !raw.params_ok {
            return Err(TsaError::UnsupportedAlgorithm(format!(
                "{algorithm} with parameters"
            )));
        }
        check_len(algorithm, &raw.digest)?;
        Ok(TimestampQuery {
            algorithm,
            imprint: raw.digest,
            policy: req.policy(),
            nonce: req.nonce(),
            cert_req: req.cert_req(),
            extensions: req.extension_count(),
        })
    }
}

fn check_len(algorithm: ImprintAlgorithm, imprint: &[u8]) -> Result<(), TsaError> {
    if imprint.len() == algorithm.digest_len() {
        Ok(())
    } else {
        Err(TsaError::ImprintLength {
            algorithm,
            expected: algorithm.digest_len(),
            got: imprint.len(),
        })
    }
}

/// A time-stamp query made by this client, kept to check the response.
#[derive(Debug)]
pub struct TimestampRequest {
    der: Vec<u8>,
    algorithm: ImprintAlgorithm,
    imprint: Vec<u8>,
    nonce: Option<BigNum>,
    policy: Option<String>,
}

impl TimestampRequest {
    /// A query for an already computed imprint, with a random 64-bit nonce
    /// when `with_nonce`, asking for the TSA certificate when `cert_req`.
    pub fn new(
        algorithm: ImprintAlgorithm,
        imprint: &[u8],
        with_nonce: bool,
        cert_req: bool,
    ) -> Result<Self, TsaError> {
        Self::build(algorithm, imprint, None, with_nonce, cert_req)
    }

    /// A query for `data`, hashed with `algorithm`, with a nonce and certReq.
    pub fn for_data(algorithm: ImprintAlgorithm, data: &[u8]) -> Result<Self, TsaError> {
        Self::build(algorithm, &algorithm.hash(data)?, None, true, true)
    }

    /// A query that also requests a policy (dotted OID).
    pub fn with_policy(
        algorithm: ImprintAlgorithm,
        imprint: &[u8],
        policy: &str,
        with_nonce: bool,
        cert_req: bool,
    ) -> Result<Self, TsaError> {
        Self::build(algorithm, imprint, Some(policy), with_nonce, cert_req)
    }

    fn build(
        algorithm: ImprintAlgorithm,
        imprint: &[u8],
        policy: Option<&str>,
        with_nonce: bool,
        cert_req: bool,
    ) -> Result<Self, TsaError> {
        check_len(algorithm, imprint)?;
        let policy_obj = policy.map(parse_oid).transpose()?;
        let nonce = if with_nonce {
            let mut n = BigNum::new().map_err(TsaError::ssl("allocate a nonce"))?;
            n.rand(64, openssl::bn::MsbOption::MAYBE_ZERO, false)
                .map_err(TsaError::ssl("generate a nonce"))?;
            Some(n)
        } else {
            None
        };
        let req = ffi::TsReq::build(
            algorithm.digest(),
            imprint,
            policy_obj.as_deref(),
            nonce.as_ref(),
            cert_req,
        )
        .map_err(TsaError::ssl("build the time-stamp query"))?;
        let der = req
            .to_der()
            .map_err(TsaError::ssl("encode the time-stamp query"))?;
        Ok(TimestampRequest {
            der,
            algorithm,
            imprint: imprint.to_vec(),
            nonce,
            policy: policy.map(str::to_string),
        })
    }

    /// The DER `TimeStampReq` to POST (`application/timestamp-query`).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The nonce sent, if any.
    pub fn nonce(&self) -> Option<&openssl::bn::BigNumRef> {
        self.nonce.as_deref()
    }

    /// The imprint algorithm.
    pub fn algorithm(&self) -> ImprintAlgorithm {
        self.algorithm
    }

    /// The imprint.
    pub fn imprint(&self) -> &[u8] {
        &self.imprint
    }
}

/// Trust settings for verifying tokens: the CA certificates to chain TSA
/// certificates to, and untrusted certificates that may help build the chain
/// (or supply the TSA certificate when a token does not carry it).
#[derive(Debug, Clone, Default)]
pub struct TsaTrust {
    anchors: Vec<X509>,
    untrusted: Vec<X509>,
}

impl TsaTrust {
    /// Trust TSAs whose certificates chain to `anchors`.
    pub fn new(anchors: Vec<X509>) -> Self {
        TsaTrust {
            anchors,
            untrusted: Vec::new(),
        }
    }

    /// Adds untrusted intermediates / TSA certificates.
    pub fn with_untrusted(mut self, certs: Vec<X509>) -> Self {
        self.untrusted = certs;
        self
    }
}

/// A verified time-stamp token.
#[derive(Debug)]
#[non_exhaustive]
pub struct TimestampToken {
    /// genTime: when the TSA stamped the imprint.
    pub gen_time: DateTime<Utc>,
    /// The token's serial number.
    pub serial: BigNum,
    /// The TSA policy under which it was issued, dotted.
    pub policy: String,
    /// The imprint algorithm.
    pub algorithm: ImprintAlgorithm,
    /// The imprint.
    pub imprint: Vec<u8>,
    /// The nonce, if any.
    pub nonce: Option<BigNum>,
    /// The TSA certificate that signed it.
    pub tsa_cert: X509,
    /// The token (DER `ContentInfo` with `SignedData`), to store and re-verify
    /// later with [`verify_token`].
    pub der: Vec<u8>,
}

/// The TSTInfo fields, read but not yet verified.
struct TokenFields {
    gen_time: DateTime<Utc>,
    serial: BigNum,
    policy: String,
    algorithm: ImprintAlgorithm,
    imprint: Vec<u8>,
    nonce: Option<BigNum>,
}

fn read_fields(token: &Pkcs7) -> Result<TokenFields, TsaError> {
    let tst = ffi::TsTstInfo::from_token(token).map_err(|_| TsaError::MalformedToken)?;
    if tst.version() != 1 {
        return Err(TsaError::BadTokenField("version"));
    }
    let raw = tst
        .imprint()
        .ok_or(TsaError::BadTokenField("message imprint"))?;
    let algorithm = ImprintAlgorithm::from_raw(&raw)?;
    Ok(TokenFields {
        gen_time: tst.gen_time().ok_or(TsaError::BadTokenField("genTime"))?,
        serial: tst
            .serial()
            .ok_or(TsaError::BadTokenField("serial number"))?,
        policy: tst.policy().ok_or(TsaError::BadTokenField("policy"))?,
        algorithm,
        imprint: raw.digest,
        nonce: tst.nonce(),
    })
}

/// Finds the signer certificate and checks its EKU.
fn signer_of(token: &Pkcs7, trust: &TsaTrust) -> Result<X509, TsaError> {
    let mut certs = Stack::new().map_err(TsaError::ssl("allocate a stack"))?;
    for c in &trust.untrusted {
        certs
            .push(c.clone())
            .map_err(TsaError::ssl("allocate a stack"))?;
    }
    let signers = token
        .signers(&certs, Pkcs7Flags::empty())
        .map_err(|_| TsaError::SignerNotFound)?;
    let signer = match (signers.len(), signers.get(0)) {
        (1, Some(s)) => s.to_owned(),
        _ => return Err(TsaError::SignerNotFound),
    };
    if !ffi::has_critical_timestamping_eku(&signer) {
        return Err(TsaError::NotATsaCertificate);
    }
    Ok(signer)
}

fn finish(token: &Pkcs7, f: TokenFields, trust: &TsaTrust) -> Result<TimestampToken, TsaError> {
    let tsa_cert = signer_of(token, trust)?;
    let der = token
        .to_der()
        .map_err(TsaError::ssl("encode the time-stamp token"))?;
    Ok(TimestampToken {
        gen_time: f.gen_time,
        serial: f.serial,
        policy: f.policy,
        algorithm: f.algorithm,
        imprint: f.imprint,
        nonce: f.nonce,
        tsa_cert,
        der,
    })
}

/// Verifies a DER `TimeStampResp` to `request` (see the module
/// documentation) and returns the token.
pub fn verify_response(
    resp_der: &[u8],
    request: &TimestampRequest,
    trust: &TsaTrust,
) -> Result<TimestampToken, TsaError> {
    if resp_der.len() > MAX_RESPONSE_LEN {
        return Err(TsaError::ResponseTooLarge {
            len: resp_der.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    let resp = ffi::TsResp::from_der(resp_der).ok_or(TsaError::MalformedResponse)?;
    let st = status_of(&resp)?;
    if !st.status.is_granted() {
        return Err(TsaError::Rejected {
            status: st.status,
            failure: st.failure,
            text: st.text.join("; "),
        });
    }
    let token = resp.token().ok_or(TsaError::MalformedToken)?;
    let fields = read_fields(&token)?;
    // Clear, specific errors first; OpenSSL then re-checks all of it.
    if fields.algorithm != request.algorithm || fields.imprint != request.imprint {
        return Err(TsaError::ImprintMismatch);
    }
    if let Some(sent) = &request.nonce {
        match &fields.nonce {
            None => return Err(TsaError::NonceMissing),
            Some(got) if got != sent => return Err(TsaError::NonceMismatch),
            Some(_) => {}
        }
    }
    if let Some(requested) = &request.policy {
        if *requested != fields.policy {
            return Err(TsaError::PolicyMismatch {
                requested: requested.clone(),
                got: fields.policy,
            });
        }
    }
    let req = ffi::TsReq::from_der(&request.der).ok_or(TsaError::MalformedQuery)?;
    let store = trust_store(&trust.anchors, fields.gen_time)
        .map_err(TsaError::ssl("build the trust store"))?;
    ffi::ts_verify_response(&resp, &req, &store, &trust.untrusted)
        .map_err(TsaError::BadSignature)?;
    finish(&token, fields, trust)
}

/// Verifies a stored token (DER `ContentInfo`) for an imprint computed with
/// `algorithm` (see the module documentation). No nonce is involved.
pub fn verify_token(
    token_der: &[u8],
    algorithm: ImprintAlgorithm,
    imprint: &[u8],
    trust: &TsaTrust,
) -> Result<TimestampToken, TsaError> {
    let (token, fields) = parse_token(token_der)?;
    if fields.algorithm != algorithm || fields.imprint != imprint {
        return Err(TsaError::ImprintMismatch);
    }
    verify_parsed(&token, fields, trust)
}

/// Verifies a stored token for `data`, hashed with the token's own imprint
/// algorithm (which must be SHA-256/384/512).
pub fn verify_token_for_data(
    token_der: &[u8],
    data: &[u8],
    trust: &TsaTrust,
) -> Result<TimestampToken, TsaError> {
    let (token, fields) = parse_token(token_der)?;
    if fields.imprint != fields.algorithm.hash(data)? {
        return Err(TsaError::ImprintMismatch);
    }
    verify_parsed(&token, fields, trust)
}

fn parse_token(token_der: &[u8]) -> Result<(Pkcs7, TokenFields), TsaError> {
    if token_der.len() > MAX_RESPONSE_LEN {
        return Err(TsaError::ResponseTooLarge {
            len: token_der.len(),
            max: MAX_RESPONSE_LEN,
        });
    }
    let token = Pkcs7::from_der(token_der).map_err(|_| TsaError::MalformedToken)?;
    let fields = read_fields(&token)?;
    Ok((token, fields))
}

fn verify_parsed(
    token: &Pkcs7,
    fields: TokenFields,
    trust: &TsaTrust,
) -> Result<TimestampToken, TsaError> {
    let store = trust_store(&trust.anchors, fields.gen_time)
        .map_err(TsaError::ssl("build the trust store"))?;
    ffi::ts_verify_token_signature(token, &store, &trust.untrusted)
        .map_err(TsaError::BadSignature)?;
    finish(token, fields, trust)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejection_der_is_parsed_by_openssl() {
        for f in [
            PkiFailureInfo::BadAlg,
            PkiFailureInfo::BadRequest,
            PkiFailureInfo::BadDataFormat,
            PkiFailureInfo::UnacceptedPolicy,
            PkiFailureInfo::SystemFailure,
        ] {
            let der = rejection_der(f, "Nope.");
            let st = response_status(&der).unwrap();
            assert_eq!(st.status, PkiStatus::Rejection);
            assert_eq!(st.failure, vec![f]);
            assert_eq!(st.text, vec!["Nope.".to_string()]);
        }
        let long = "x".repeat(300);
        let st = response_status(&rejection_der(PkiFailureInfo::BadRequest, &long)).unwrap();
        assert_eq!(st.text, vec![long]);
    }

    #[test]
    fn policy_oids_must_be_dotted() {
        assert!(parse_oid("1.2.3").is_ok());
        assert!(matches!(
            parse_oid("sha256"),
            Err(TsaError::BadPolicyOid(..))
        ));
        assert!(matches!(parse_oid("1..2"), Err(TsaError::BadPolicyOid(..))));
        assert!(matches!(parse_oid(""), Err(TsaError::BadPolicyOid(..))));
    }
}
