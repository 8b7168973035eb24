//! OCSP (RFC 6960): a responder that answers for the certificates of one
//! issuing CA, and a client that builds requests and verifies responses.
//!
//! # Responder
//!
//! [`OcspResponder`] takes a DER `OCSPRequest` and always produces a DER
//! `OCSPResponse` ([`OcspReply`]), whatever the input:
//!
//! - bytes that are not exactly one `OCSPRequest`, or a request without any
//!   CertID, or with more than [`MAX_CERT_IDS`], get `malformedRequest`;
//! - each CertID is answered in order. A CertID whose issuer name hash or
//!   issuer key hash does not match the configured issuer (or that uses a
//!   hash algorithm libcrypto does not know) is answered `unknown` without
//!   consulting the status lookup, so a serial number of another CA can never
//!   be reported `good`;
//! - the request nonce, if any, is copied into the response (RFC 8954);
//! - `thisUpdate` is the caller's `now`, `nextUpdate` is `now + validity`;
//!   `producedAt` is the system clock at signing time (libcrypto sets it);
//! - the response is signed by the issuer itself or by a delegated responder
//!   certificate (checked at construction: issued by the issuer and carrying
//!   the `id-kp-OCSPSigning` extended key usage), and the signer certificate
//!   is included;
//! - a failure while building or signing gets `internalError`.
//!
//! Request signatures (`optionalSignature`) are not checked: RFC 6960 makes
//! them optional and NDXP does not restrict who may ask.
//!
//! # Client
//!
//! [`OcspClientRequest`] builds a request for one certificate with a fresh
//! 32-byte random nonce; [`OcspClientRequest::verify_response`] accepts a
//! response only if: its status is `successful`; it is signed by the issuer,
//! or by a delegated responder certificate issued by the issuer with the
//! `id-kp-OCSPSigning` EKU; the signer chains to the given trust anchors at
//! the given time; the nonce matches (when one was sent); it contains a
//! SingleResponse for exactly our CertID; and `thisUpdate <= at + skew` and
//! `at - skew <= nextUpdate` ([`CLOCK_SKEW`]).
//!
//! [`decode_get_request`] turns the RFC 6960 Appendix A.1 GET form (URL-encoded
//! base64 of the DER request) into DER.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, BigNumRef};
use openssl::error::ErrorStack;
use openssl::hash::{hash, MessageDigest};
use openssl::ocsp::{
    OcspCertId, OcspCertStatus, OcspFlag, OcspRequest, OcspResponse, OcspResponseStatus,
    OcspRevokedStatus,
};
use openssl::pkey::{Id, PKey, PKeyRef, Private};
use openssl::stack::Stack;
use openssl::x509::store::{X509Store, X509StoreBuilder};
use openssl::x509::verify::X509VerifyParam;
use openssl::x509::{X509Ref, X509VerifyResult, X509};

use crate::ffi;
use crate::revocation::{CertStatus, RevocationReason};

/// The largest number of CertIDs answered in one request; larger requests
/// get `malformedRequest`.
pub const MAX_CERT_IDS: usize = 100;

/// The largest request the responder parses, in bytes.
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// Allowed clock difference when checking `thisUpdate`/`nextUpdate`.
pub const CLOCK_SKEW: Duration = Duration::minutes(5);

/// Default validity of a response (`nextUpdate - thisUpdate`).
pub const DEFAULT_VALIDITY: Duration = Duration::hours(1);

/// What went wrong while answering or checking an OCSP request.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OcspError {
    /// The request bytes are not one DER `OCSPRequest`.
    #[error("the OCSP request is not a valid DER-encoded OCSPRequest")]
    MalformedRequest,
    /// The request is larger than [`MAX_REQUEST_LEN`].
    #[error("the OCSP request is {len} bytes long; at most {max} bytes are accepted")]
    RequestTooLarge {
        /// Size of the request.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The request asks about no certificate.
    #[error("the OCSP request does not ask about any certificate")]
    EmptyRequest,
    /// The request asks about more than [`MAX_CERT_IDS`] certificates.
    #[error(
        "the OCSP request asks about {count} certificates; at most {max} are answered at once"
    )]
    TooManyCertIds {
        /// Number of CertIDs in the request.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The GET form contains a `%` not followed by two hex digits.
    #[error("the OCSP GET request path has an invalid percent-escape")]
    BadPercentEncoding,
    /// The GET form is not base64.
    #[error("the OCSP GET request path is not base64 of a DER request")]
    BadBase64(#[source] base64::DecodeError),
    /// The delegated responder certificate may not sign for the issuer.
    #[error("the OCSP signer certificate is neither the issuer nor a responder certificate issued by it with the OCSPSigning extended key usage")]
    SignerNotAuthorized,
    /// The signer key does not belong to the signer certificate.
    #[error("the OCSP signer private key does not match the signer certificate")]
    SignerKeyMismatch,
    /// A time could not be represented for the response.
    #[error("the time {0} cannot be written into an OCSP response")]
    TimeOutOfRange(DateTime<Utc>),
    /// An OpenSSL operation failed.
    #[error("OpenSSL failed to {what}")]
    OpenSsl {
        /// What was being done.
        what: &'static str,
        /// The OpenSSL error queue.
        #[source]
        source: ErrorStack,
    },
    /// The response bytes are not one DER `OCSPResponse` with a basic response.
    #[error("the OCSP response is not a valid DER-encoded OCSPResponse")]
    MalformedResponse(#[source] ErrorStack),
    /// The responder answered with an error status.
    #[error("the OCSP responder refused to answer: {0}")]
    Unsuccessful(ResponseStatus),
    /// Signature, signer certificate chain or signer authorisation failed.
    #[error("the OCSP response is not signed by the issuing CA or by a responder it authorised, or the signer does not chain to a trusted CA")]
    BadSignature(#[source] ErrorStack),
    /// We sent a nonce and the response has none.
    #[error("the OCSP response does not echo the request nonce (possible replay)")]
    NonceMissing,
    /// The response nonce differs from ours.
    #[error("the OCSP response nonce does not match the request nonce (possible replay)")]
    NonceMismatch,
    /// The response has no status for the certificate asked about.
    #[error("the OCSP response does not contain a status for the requested certificate")]
    NoStatusForCertificate,
    /// `thisUpdate` is in the future.
    #[error("the OCSP response is not valid yet: thisUpdate {this_update} is after {at}")]
    NotYetValid {
        /// The response's thisUpdate.
        this_update: DateTime<Utc>,
        /// The time of the check.
        at: DateTime<Utc>,
    },
    /// `nextUpdate` has passed.
    #[error("the OCSP response is stale: nextUpdate {next_update} is before {at}")]
    Expired {
        /// The response's nextUpdate.
        next_update: DateTime<Utc>,
        /// The time of the check.
        at: DateTime<Utc>,
    },
    /// A time field could not be read.
    #[error("the OCSP response contains an unreadable {0} time")]
    BadTime(&'static str),
}

impl OcspError {
    fn ssl(what: &'static str) -> impl FnOnce(ErrorStack) -> OcspError {
        move |source| OcspError::OpenSsl { what, source }
    }
}

/// `OCSPResponseStatus` values (RFC 6960 §4.2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseStatus {
    /// `successful` (0)
    Successful,
    /// `malformedRequest` (1)
    MalformedRequest,
    /// `internalError` (2)
    InternalError,
    /// `tryLater` (3)
    TryLater,
    /// `sigRequired` (5)
    SigRequired,
    /// `unauthorized` (6)
    Unauthorized,
    /// A value RFC 6960 does not assign.
    Other(i32),
}

impl ResponseStatus {
    fn from_openssl(s: OcspResponseStatus) -> Self {
        match s {
            OcspResponseStatus::SUCCESSFUL => Self::Successful,
            OcspResponseStatus::MALFORMED_REQUEST => Self::MalformedRequest,
            OcspResponseStatus::INTERNAL_ERROR => Self::InternalError,
            OcspResponseStatus::TRY_LATER => Self::TryLater,
            OcspResponseStatus::SIG_REQUIRED => Self::SigRequired,
            OcspResponseStatus::UNAUTHORIZED => Self::Unauthorized,
            other => Self::Other(other.as_raw()),
        }
    }
}

impl std::fmt::Display for ResponseStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Successful => f.write_str("successful"),
            Self::MalformedRequest => f.write_str("malformedRequest"),
            Self::InternalError => f.write_str("internalError"),
            Self::TryLater => f.write_str("tryLater"),
            Self::SigRequired => f.write_str("sigRequired"),
            Self::Unauthorized => f.write_str("unauthorized"),
            Self::Other(n) => write!(f, "unassigned status {n}"),
        }
    }
}

/// The responder's answer: always a DER `OCSPResponse`, plus the reason when
/// it is not `successful` (for logging).
#[derive(Debug)]
pub struct OcspReply {
    /// DER `OCSPResponse`, to send with `Content-Type: application/ocsp-response`.
    pub der: Vec<u8>,
    /// The response status that `der` carries.
    pub status: ResponseStatus,
    /// Why the request was not answered successfully, if it was not.
    pub error: Option<OcspError>,
}

/// Answers OCSP requests for the certificates issued by one CA.
pub struct OcspResponder {
    issuer: X509,
    signer_cert: X509,
    signer_key: PKey<Private>,
    extra_certs: Vec<X509>,
    validity: Duration,
}

impl std::fmt::Debug for OcspResponder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspResponder")
            .field("issuer", &self.issuer.subject_name())
            .field("signer", &self.signer_cert.subject_name())
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl OcspResponder {
    /// A responder for certificates issued by `issuer`, signing with
    /// `signer_cert`/`signer_key`. The signer is either the issuer itself or a
    /// delegated responder certificate issued by it with the
    /// `id-kp-OCSPSigning` EKU; anything else is refused here, since clients
    /// would reject its responses.
    pub fn new(
        issuer: &X509Ref,
        signer_cert: &X509Ref,
        signer_key: &PKeyRef<Private>,
    ) -> Result<Self, OcspError> {
        let signer_pub = signer_cert
            .public_key()
            .map_err(OcspError::ssl("read the signer certificate's public key"))?;
        if !signer_pub.public_eq(signer_key) {
            return Err(OcspError::SignerKeyMismatch);
        }
        let same_cert = signer_cert
            .to_der()
            .map_err(OcspError::ssl("encode the signer certificate"))?
            == issuer
                .to_der()
                .map_err(OcspError::ssl("encode the issuer certificate"))?;
        if !same_cert {
            let issuer_key = issuer
                .public_key()
                .map_err(OcspError::ssl("read the issuer's public key"))?;
            let signed_by_issuer = issuer.issued(signer_cert) == X509VerifyResult::OK
                && signer_cert.verify(&issuer_key).unwrap_or(false);
            if !signed_by_issuer || !ffi::has_ocsp_signing_eku(signer_cert) {
                return Err(OcspError::SignerNotAuthorized);
            }
        }
        Ok(OcspResponder {
            issuer: issuer.to_owned(),
            signer_cert: signer_cert.to_owned(),
            signer_key: signer_key.to_owned(),
            extra_certs: Vec::new(),
            validity: DEFAULT_VALIDITY,
        })
    }

    /// Sets how long responses are valid (`nextUpdate = now + validity`).
    pub fn with_validity(mut self, validity: Duration) -> Self {
        self.validity = validity;
        self
    }

    /// Adds certificates to include in every response besides the signer's
    /// (for example the issuer, when a delegated responder signs).
    pub fn with_extra_certs(mut self, certs: Vec<X509>) -> Self {
        self.extra_certs = certs;
        self
    }

    /// The issuer this responder answers for.
    pub fn issuer(&self) -> &X509Ref {
        &self.issuer
    }

    /// Answers a DER `OCSPRequest`. Never panics; malformed input gets a
    /// `malformedRequest` response and internal failures an `internalError`
    /// response, with the reason in [`OcspReply::error`].
    pub fn respond(
        &self,
        request_der: &[u8],
        lookup: &dyn Fn(&BigNumRef) -> CertStatus,
        now: DateTime<Utc>,
    ) -> OcspReply {
        match self.try_respond(request_der, lookup, now) {
            Ok(der) => OcspReply {
                der,
                status: ResponseStatus::Successful,
                error: None,
            },
            Err(e) => {
                let status = match e {
                    OcspError::MalformedRequest
                    | OcspError::RequestTooLarge { .. }
                    | OcspError::EmptyRequest
                    | OcspError::TooManyCertIds { .. } => ResponseStatus::MalformedRequest,
                    _ => ResponseStatus::InternalError,
                };
                OcspReply {
                    der: error_response(status),
                    status,
                    error: Some(e),
                }
            }
        }
    }

    fn try_respond(
        &self,
        request_der: &[u8],
        lookup: &dyn Fn(&BigNumRef) -> CertStatus,
        now: DateTime<Utc>,
    ) -> Result<Vec<u8>, OcspError> {
        if request_der.len() > MAX_REQUEST_LEN {
            return Err(OcspError::RequestTooLarge {
                len: request_der.len(),
                max: MAX_REQUEST_LEN,
            });
        }
        let request = parse_request(request_der)?;
        let ids = ffi::ocsp_request_ids(&request);
        if ids.is_empty() {
            return Err(OcspError::EmptyRequest);
        }
        if ids.len() > MAX_CERT_IDS {
            return Err(OcspError::TooManyCertIds {
                count: ids.len(),
                max: MAX_CERT_IDS,
            });
        }
        let this_update = asn1_time(now)?;
        let next_at = now
            .checked_add_signed(self.validity)
            .ok_or(OcspError::TimeOutOfRange(now))?;
        let next_update = asn1_time(next_at)?;
        let issuer_name = self
            .issuer
            .subject_name()
            .to_der()
            .map_err(OcspError::ssl("encode the issuer name"))?;
        let issuer_key = ffi::public_key_bits(&self.issuer);

        let mut basic = ffi::ocsp_basic_new().map_err(OcspError::ssl("create a basic response"))?;
        for id in ids {
            let status = match ffi::ocsp_cert_id_info(id) {
                Some(info) if cert_id_matches(&info, &issuer_name, &issuer_key) => {
                    lookup(&info.serial)
                }
                _ => CertStatus::Unknown,
            };
            let revoked_at;
            let single = match status {
                CertStatus::Good => ffi::SingleStatus::Good,
                CertStatus::Unknown => ffi::SingleStatus::Unknown,
                CertStatus::Revoked { at, reason } => {
                    revoked_at = asn1_time(at)?;
                    // RFC 5280 §5.3.1: omit the reason rather than say "unspecified".
                    let code = (reason != RevocationReason::Unspecified).then(|| reason.code());
                    ffi::SingleStatus::Revoked(&revoked_at, code)
                }
            };
            ffi::ocsp_basic_add_status(&mut basic, id, single, &this_update, Some(&next_update))
                .map_err(OcspError::ssl("add a certificate status"))?;
        }
        ffi::ocsp_copy_nonce(&mut basic, &request)
            .map_err(OcspError::ssl("copy the request nonce"))?;
        let digest = match self.signer_key.id() {
            Id::ED25519 | Id::ED448 => None,
            _ => Some(MessageDigest::sha256()),
        };
        ffi::ocsp_basic_sign(
            &mut basic,
            &self.signer_cert,
            &self.signer_key,
            digest,
            &self.extra_certs,
        )
        .map_err(OcspError::ssl("sign the OCSP response"))?;
        OcspResponse::create(OcspResponseStatus::SUCCESSFUL, Some(&basic))
            .and_then(|r| r.to_der())
            .map_err(OcspError::ssl("encode the OCSP response"))
    }
}

/// The certificate a request asks about, when an answer produced ahead of
/// time may serve it: see [`OcspResponder::cache_key`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertIdKey {
    /// The CertID's hash algorithm (the answer repeats the CertID, so an
    /// answer made for SHA-1 CertIDs cannot serve a SHA-256 one).
    pub hash_alg: i32,
    /// The serial number, big-endian bytes.
    pub serial: Vec<u8>,
}

impl CertIdKey {
    /// The serial number.
    ///
    /// # Errors
    /// When OpenSSL cannot allocate the number.
    pub fn serial_bn(&self) -> Result<BigNum, OcspError> {
        BigNum::from_slice(&self.serial).map_err(OcspError::ssl("read the serial number"))
    }
}

impl OcspResponder {
    /// The key under which an answer produced ahead of time may serve this
    /// request: `Some` only for a request about exactly one certificate of
    /// this responder's issuer that carries no nonce. Anything else
    /// (several CertIDs, a nonce to echo, another issuer, malformed bytes)
    /// must be answered by [`respond`](Self::respond).
    pub fn cache_key(&self, request_der: &[u8]) -> Option<CertIdKey> {
        if request_der.len() > MAX_REQUEST_LEN {
            return None;
        }
        let request = parse_request(request_der).ok()?;
        let empty = ffi::ocsp_basic_new().ok()?;
        if ffi::ocsp_check_nonce(&request, &empty) != ffi::NonceMatch::BothAbsent {
            return None;
        }
        let [id] = ffi::ocsp_request_ids(&request)[..] else {
            return None;
        };
        let info = ffi::ocsp_cert_id_info(id)?;
        let issuer_name = self.issuer.subject_name().to_der().ok()?;
        if !cert_id_matches(&info, &issuer_name, &ffi::public_key_bits(&self.issuer)) {
            return None;
        }
        Some(CertIdKey {
            hash_alg: info.hash_alg.as_raw(),
            serial: info.serial.to_vec(),
        })
    }

    /// Answers `request_der` like [`respond`](Self::respond), and also
    /// returns the status the lookup gave for the request's first CertID
    /// of this issuer (`None` when the lookup was not consulted), so that a
    /// caller can keep the answer for later requests.
    pub fn respond_with_status(
        &self,
        request_der: &[u8],
        lookup: &dyn Fn(&BigNumRef) -> CertStatus,
        now: DateTime<Utc>,
    ) -> (OcspReply, Option<CertStatus>) {
        let seen = std::cell::RefCell::new(None);
        let reply = self.respond(
            request_der,
            &|serial| {
                let status = lookup(serial);
                seen.borrow_mut().get_or_insert_with(|| status.clone());
                status
            },
            now,
        );
        (reply, seen.into_inner())
    }

    /// An answer produced ahead of time about `cert` (issued by this
    /// responder's issuer) with `status`: a SHA-1 CertID (what `openssl
    /// ocsp` and NDXP's clients send), no nonce, `thisUpdate = now`,
    /// `nextUpdate = now + validity`. Returns its cache key and DER.
    ///
    /// # Errors
    /// When the CertID cannot be computed or signing fails.
    pub fn produce(
        &self,
        cert: &X509Ref,
        status: &CertStatus,
        now: DateTime<Utc>,
    ) -> Result<(CertIdKey, Vec<u8>), OcspError> {
        let request =
            OcspClientRequest::with_options(cert, &self.issuer, MessageDigest::sha1(), false)?;
        let key = self
            .cache_key(request.der())
            .ok_or(OcspError::MalformedRequest)?;
        let der = self.try_respond(request.der(), &|_| status.clone(), now)?;
        Ok((key, der))
    }

    /// How long answers are valid (`nextUpdate - thisUpdate`).
    pub fn validity(&self) -> Duration {
        self.validity
    }
}

/// Parses exactly one `OCSPRequest` (no trailing bytes).
/// Parses a request, which RFC 6960 §4.1 says is DER: input OpenSSL accepts
/// but would encode differently (BER lengths, odd algorithm parameters) is
/// malformed, so that nothing it cannot copy into an answer gets that far.
fn parse_request(der: &[u8]) -> Result<OcspRequest, OcspError> {
    let request = ffi::ocsp_request_from_der(der).ok_or(OcspError::MalformedRequest)?;
    match request.to_der() {
        Ok(again) if again == der => Ok(request),
        _ => Err(OcspError::MalformedRequest),
    }
}

/// Whether a CertID names our issuer (RFC 6960 §4.1.1: hashes of the issuer's
/// DER subject name and of its public key bits).
fn cert_id_matches(info: &ffi::CertIdInfo, issuer_name: &[u8], issuer_key: &[u8]) -> bool {
    let Some(md) = MessageDigest::from_nid(info.hash_alg) else {
        return false;
    };
    let (Ok(name_hash), Ok(key_hash)) = (hash(md, issuer_name), hash(md, issuer_key)) else {
        return false;
    };
    *name_hash == *info.name_hash && *key_hash == *info.key_hash
}

/// A DER `OCSPResponse` with only an error status (no responseBytes).
fn error_response(status: ResponseStatus) -> Vec<u8> {
    let code: u8 = match status {
        ResponseStatus::MalformedRequest => 1,
        ResponseStatus::TryLater => 3,
        ResponseStatus::SigRequired => 5,
        ResponseStatus::Unauthorized => 6,
        _ => 2,
    };
    // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED }
    vec![0x30, 0x03, 0x0a, 0x01, code]
}

fn asn1_time(t: DateTime<Utc>) -> Result<Asn1Time, OcspError> {
    let secs = libc::time_t::try_from(t.timestamp()).map_err(|_| OcspError::TimeOutOfRange(t))?;
    Asn1Time::from_unix(secs).map_err(|_| OcspError::TimeOutOfRange(t))
}

/// Builds an `X509Store` of `anchors` that verifies chains as of `at`.
pub(crate) fn trust_store(anchors: &[X509], at: DateTime<Utc>) -> Result<X509Store, ErrorStack> {
    let mut builder = X509StoreBuilder::new()?;
    for a in anchors {
        builder.add_cert(a.clone())?;
    }
    let mut param = X509VerifyParam::new()?;
    let secs = libc::time_t::try_from(at.timestamp()).map_err(|_| ErrorStack::get())?;
    param.set_time(secs);
    builder.set_param(&param)?;
    Ok(builder.build())
}

/// Decodes the RFC 6960 Appendix A.1 GET form: `segment` is what follows
/// `/ocsp/` in the request path, i.e. the URL-encoded base64 of the DER
/// request. Returns the DER bytes (not yet parsed).
pub fn decode_get_request(segment: &str) -> Result<Vec<u8>, OcspError> {
    // base64 grows data by 4/3 and percent-encoding by 3.
    let max = MAX_REQUEST_LEN * 4;
    if segment.len() > max {
        return Err(OcspError::RequestTooLarge {
            len: segment.len(),
            max,
        });
    }
    let bytes = segment.as_bytes();
    let mut b64 = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c == b'%' {
            let hi = bytes.get(i + 1).and_then(|h| (*h as char).to_digit(16));
            let lo = bytes.get(i + 2).and_then(|l| (*l as char).to_digit(16));
            let (Some(hi), Some(lo)) = (hi, lo) else {
                return Err(OcspError::BadPercentEncoding);
            };
            b64.push(u8::try_from(hi * 16 + lo).map_err(|_| OcspError::BadPercentEncoding)?);
            i += 3;
        } else {
            b64.push(c);
            i += 1;
        }
    }
    let engine = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(&b64).map_err(OcspError::BadBase64)
}

/// The verified answer about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspCheck {
    /// The certificate's status.
    pub status: CertStatus,
    /// When the responder knew the status to be correct.
    pub this_update: DateTime<Utc>,
    /// When newer information will be available, if the responder said.
    pub next_update: Option<DateTime<Utc>>,
    /// When the response was signed.
    pub produced_at: DateTime<Utc>,
}

/// An OCSP request for one certificate, kept so that the response can be
/// checked against it.
pub struct OcspClientRequest {
    der: Vec<u8>,
    cert: X509,
    issuer: X509,
    cert_id_digest: MessageDigest,
    nonce: Option<Vec<u8>>,
}

impl std::fmt::Debug for OcspClientRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OcspClientRequest")
            .field("cert", &self.cert.serial_number().to_bn().ok())
            .field("nonce", &self.nonce.as_deref().map(hex::encode))
            .finish_non_exhaustive()
    }
}

/// Length of the random nonce the client sends (RFC 8954 recommends 32).
pub const NONCE_LEN: usize = 32;

impl OcspClientRequest {
    /// A request about `cert` (issued by `issuer`) with a random nonce. The
    /// CertID uses SHA-1 for the name and key hashes, the algorithm every
    /// responder supports (RFC 5019); it identifies, it does not sign.
    pub fn new(cert: &X509Ref, issuer: &X509Ref) -> Result<Self, OcspError> {
        Self::with_options(cert, issuer, MessageDigest::sha1(), true)
    }

    /// A request with a chosen CertID hash algorithm and with or without a
    /// nonce.
    pub fn with_options(
        cert: &X509Ref,
        issuer: &X509Ref,
        cert_id_digest: MessageDigest,
        with_nonce: bool,
    ) -> Result<Self, OcspError> {
        let mut req = OcspRequest::new().map_err(OcspError::ssl("create an OCSP request"))?;
        let id = OcspCertId::from_cert(cert_id_digest, cert, issuer)
            .map_err(OcspError::ssl("compute the certificate ID"))?;
        req.add_id(id)
            .map_err(OcspError::ssl("add the certificate ID"))?;
        let nonce = if with_nonce {
            let mut n = vec![0u8; NONCE_LEN];
            openssl::rand::rand_bytes(&mut n).map_err(OcspError::ssl("generate a nonce"))?;
            ffi::ocsp_request_add_nonce(&mut req, &n).map_err(OcspError::ssl("add the nonce"))?;
            Some(n)
        } else {
            None
        };
        let der = req
            .to_der()
            .map_err(OcspError::ssl("encode the OCSP request"))?;
        Ok(OcspClientRequest {
            der,
            cert: cert.to_owned(),
            issuer: issuer.to_owned(),
            cert_id_digest,
            nonce,
        })
    }

    /// The DER `OCSPRequest` to POST (`application/ocsp-request`).
    pub fn der(&self) -> &[u8] {
        &self.der
    }

    /// The nonce value sent, if any.
    pub fn nonce(&self) -> Option<&[u8]> {
        self.nonce.as_deref()
    }

    /// Verifies a DER `OCSPResponse` to this request as of `at` (see the
    /// module documentation for every check) and returns the status.
    pub fn verify_response(
        &self,
        response_der: &[u8],
        trust_anchors: &[X509],
        at: DateTime<Utc>,
    ) -> Result<OcspCheck, OcspError> {
        let response =
            OcspResponse::from_der(response_der).map_err(OcspError::MalformedResponse)?;
        let status = ResponseStatus::from_openssl(response.status());
        if status != ResponseStatus::Successful {
            return Err(OcspError::Unsuccessful(status));
        }
        let basic = response.basic().map_err(OcspError::MalformedResponse)?;

        let store =
            trust_store(trust_anchors, at).map_err(OcspError::ssl("build the trust store"))?;
        let mut untrusted = Stack::new().map_err(OcspError::ssl("allocate a stack"))?;
        untrusted
            .push(self.issuer.clone())
            .map_err(OcspError::ssl("allocate a stack"))?;
        basic
            .verify(&untrusted, &store, OcspFlag::empty())
            .map_err(OcspError::BadSignature)?;

        if self.nonce.is_some() {
            let request = OcspRequest::from_der(&self.der)
                .map_err(OcspError::ssl("decode our own request"))?;
            match ffi::ocsp_check_nonce(&request, &basic) {
                ffi::NonceMatch::Equal => {}
                ffi::NonceMatch::RequestOnly => return Err(OcspError::NonceMissing),
                _ => return Err(OcspError::NonceMismatch),
            }
        }

        let id = OcspCertId::from_cert(self.cert_id_digest, &self.cert, &self.issuer)
            .map_err(OcspError::ssl("compute the certificate ID"))?;
        let single = basic
            .find_status(&id)
            .ok_or(OcspError::NoStatusForCertificate)?;
        let this_update = ffi::generalized_time_to_utc(single.this_update)
            .ok_or(OcspError::BadTime("thisUpdate"))?;
        let next_update = match single.next_update() {
            Some(t) => {
                Some(ffi::generalized_time_to_utc(t).ok_or(OcspError::BadTime("nextUpdate"))?)
            }
            None => None,
        };
        let produced_at = ffi::ocsp_produced_at(&basic).ok_or(OcspError::BadTime("producedAt"))?;
        if this_update > at + CLOCK_SKEW {
            return Err(OcspError::NotYetValid { this_update, at });
        }
        if let Some(next_update) = next_update {
            if next_update < at - CLOCK_SKEW {
                return Err(OcspError::Expired { next_update, at });
            }
        }
        let status = match single.status {
            OcspCertStatus::GOOD => CertStatus::Good,
            OcspCertStatus::REVOKED => {
                let at = single
                    .revocation_time
                    .and_then(ffi::generalized_time_to_utc)
                    .ok_or(OcspError::BadTime("revocationTime"))?;
                let reason = if single.reason == OcspRevokedStatus::NO_STATUS {
                    RevocationReason::Unspecified
                } else {
                    // An unassigned code still means "revoked"; keep that
                    // fact and report the reason as unspecified.
                    RevocationReason::from_code(single.reason.as_raw())
                        .unwrap_or(RevocationReason::Unspecified)
                };
                CertStatus::Revoked { at, reason }
            }
            _ => CertStatus::Unknown,
        };
        Ok(OcspCheck {
            status,
            this_update,
            next_update,
            produced_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_response_is_parsed_by_openssl() {
        for status in [
            ResponseStatus::MalformedRequest,
            ResponseStatus::InternalError,
            ResponseStatus::TryLater,
        ] {
            let der = error_response(status);
            let parsed = OcspResponse::from_der(&der).unwrap();
            assert_eq!(ResponseStatus::from_openssl(parsed.status()), status);
        }
    }

    #[test]
    fn get_form_percent_and_padding() {
        assert_eq!(decode_get_request("AQID").unwrap(), vec![1, 2, 3]);
        assert_eq!(decode_get_request("AQI%3D").unwrap(), vec![1, 2]);
        assert_eq!(decode_get_request("AQI").unwrap(), vec![1, 2]);
        assert!(matches!(
            decode_get_request("AQ%zz"),
            Err(OcspError::BadPercentEncoding)
        ));
        assert!(matches!(
            decode_get_request("AQ%4"),
            Err(OcspError::BadPercentEncoding)
        ));
        assert!(matches!(
            decode_get_request("!!!"),
            Err(OcspError::BadBase64(_))
        ));
    }
}

/// What [`OcspStatusCache`] answers for CA certificates in a chain (those
/// with the keyCertSign key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntermediatePolicy {
    /// Require a cached OCSP answer for intermediates too.
    RequireOcsp,
    /// Treat intermediates as good: the platform CA's responder answers for
    /// the certificates its issuing CA issued, and an intermediate is
    /// withdrawn by changing the trust anchors in the global configuration.
    TrustIntermediates,
}

/// Verified OCSP answers, kept per certificate, that chain validation
/// ([`crate::chain::verify_chain`]) consults as its
/// [`RevocationChecker`](crate::chain::RevocationChecker).
///
/// The cache is filled asynchronously (fetch with any HTTP client, check
/// with [`OcspClientRequest::verify_response`], [`insert`](Self::insert))
/// and read synchronously during validation, so no network call ever sits
/// inside a TLS handshake or a signature check. An answer whose
/// `nextUpdate` has passed (beyond [`CLOCK_SKEW`]) is not used.
///
/// ```
/// use ndxp_sign::ocsp::{IntermediatePolicy, OcspStatusCache};
/// let cache = OcspStatusCache::new(IntermediatePolicy::TrustIntermediates);
/// assert!(cache.is_empty());
/// ```
#[derive(Debug)]
pub struct OcspStatusCache {
    policy: IntermediatePolicy,
    entries: std::sync::RwLock<std::collections::HashMap<String, OcspCheck>>,
    /// Changes on every insert; unique across caches (see
    /// [`RevocationChecker::generation`](crate::chain::RevocationChecker::generation)).
    generation: std::sync::atomic::AtomicU64,
}

/// The source of cache generations, shared by every [`OcspStatusCache`] so
/// that two caches never show the same generation.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1
}

impl OcspStatusCache {
    /// An empty cache.
    pub fn new(policy: IntermediatePolicy) -> Self {
        Self {
            policy,
            entries: std::sync::RwLock::new(std::collections::HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(next_generation()),
        }
    }

    /// Remembers a verified answer for `cert`, replacing an older one.
    pub fn insert(&self, cert: &X509Ref, check: OcspCheck) {
        let key = crate::cert::fingerprint_sha256(cert);
        if let Ok(mut map) = self.entries.write() {
            map.insert(key, check);
            // Inside the lock: a reader that saw the old generation reads
            // again after this answer is in.
            self.generation
                .store(next_generation(), std::sync::atomic::Ordering::Release);
        }
    }

    /// The answer held for `cert`, if any.
    pub fn get(&self, cert: &X509Ref) -> Option<OcspCheck> {
        let key = crate::cert::fingerprint_sha256(cert);
        self.entries.read().ok()?.get(&key).cloned()
    }

    /// Whether `cert` has no usable answer at `now`: none held, or one
    /// whose `nextUpdate` has passed (or, without `nextUpdate`, one older
    /// than [`DEFAULT_VALIDITY`]).
    pub fn needs_refresh(&self, cert: &X509Ref, now: DateTime<Utc>) -> bool {
        match self.get(cert) {
            None => true,
            Some(c) => now > c.next_update.unwrap_or(c.this_update + DEFAULT_VALIDITY),
        }
    }

    /// How many certificates have an answer.
    pub fn len(&self) -> usize {
        self.entries.read().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no certificate has an answer.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl crate::chain::RevocationChecker for OcspStatusCache {
    fn status(
        &self,
        cert: &X509Ref,
        issuer: &X509Ref,
    ) -> Result<CertStatus, crate::chain::BoxError> {
        self.status_until(cert, issuer).map(|(s, _)| s)
    }

    fn status_until(
        &self,
        cert: &X509Ref,
        _issuer: &X509Ref,
    ) -> Result<(CertStatus, Option<DateTime<Utc>>), crate::chain::BoxError> {
        let is_ca = cert
            .key_usage()
            .is_some_and(|k| k.contains(openssl::x509::X509KeyUsage::KEY_CERT_SIGN));
        if is_ca && self.policy == IntermediatePolicy::TrustIntermediates {
            return Ok((CertStatus::Good, Some(DateTime::<Utc>::MAX_UTC)));
        }
        let subject = || crate::cert::subject_text(cert.subject_name());
        let check = self
            .get(cert)
            .ok_or_else(|| format!("no OCSP answer is held for {}", subject()))?;
        let now = Utc::now();
        let expires = check
            .next_update
            .unwrap_or(check.this_update + DEFAULT_VALIDITY);
        if now > expires + CLOCK_SKEW {
            return Err(format!("the OCSP answer for {} expired at {expires}", subject()).into());
        }
        Ok((check.status, Some(expires + CLOCK_SKEW)))
    }

    fn generation(&self) -> Option<u64> {
        Some(self.generation.load(std::sync::atomic::Ordering::Acquire))
    }
}
