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

use openssl::error::ErrorStack;
use openssl::hash::{hash, MessageDigest};
use openssl::nid::Nid;

use crate::ffi;

mod authority;
mod client;

#[cfg(test)]
mod tests;

pub use authority::{TimestampAuthority, TimestampQuery, TsaReply};
pub use client::{
    verify_response, verify_token, verify_token_for_data, TimestampRequest, TimestampToken,
    TsaTrust,
};

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
