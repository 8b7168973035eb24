//! The client: building queries and verifying responses and tokens.

use chrono::{DateTime, Utc};
use openssl::bn::BigNum;
use openssl::pkcs7::{Pkcs7, Pkcs7Flags};
use openssl::stack::Stack;
use openssl::x509::X509;

use crate::ffi;
use crate::ocsp::trust_store;

use super::authority::parse_oid;
use super::{check_len, status_of, ImprintAlgorithm, TsaError, MAX_RESPONSE_LEN};

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
pub(super) struct TokenFields {
    gen_time: DateTime<Utc>,
    serial: BigNum,
    policy: String,
    algorithm: ImprintAlgorithm,
    imprint: Vec<u8>,
    nonce: Option<BigNum>,
}

pub(super) fn read_fields(token: &Pkcs7) -> Result<TokenFields, TsaError> {
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
pub(super) fn signer_of(token: &Pkcs7, trust: &TsaTrust) -> Result<X509, TsaError> {
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

pub(super) fn finish(
    token: &Pkcs7,
    f: TokenFields,
    trust: &TsaTrust,
) -> Result<TimestampToken, TsaError> {
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

pub(super) fn parse_token(token_der: &[u8]) -> Result<(Pkcs7, TokenFields), TsaError> {
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

pub(super) fn verify_parsed(
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
