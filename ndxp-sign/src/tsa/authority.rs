//! The time-stamp authority: parsing queries, answering them with a token or
//! a refusal.

use openssl::asn1::Asn1Object;
use openssl::bn::BigNum;
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, PKeyRef, Private};
use openssl::x509::{X509Ref, X509};

use crate::ffi;

use super::{
    check_len, status_of, ImprintAlgorithm, PkiFailureInfo, PkiStatus, TsaError,
    DEFAULT_POLICY_OID, MAX_QUERY_LEN,
};

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

pub(super) fn parse_oid(s: &str) -> Result<Asn1Object, TsaError> {
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

pub(super) fn system_failure(error: TsaError) -> TsaReply {
    rejection(PkiFailureInfo::SystemFailure, "System failure.", error)
}

/// A DER `TimeStampResp` carrying only a rejection status.
pub(super) fn rejection(failure: PkiFailureInfo, text: &str, error: TsaError) -> TsaReply {
    TsaReply {
        der: rejection_der(failure, text),
        status: PkiStatus::Rejection,
        error: Some(error),
    }
}

pub(super) fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
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
pub(super) fn rejection_der(failure: PkiFailureInfo, text: &str) -> Vec<u8> {
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
