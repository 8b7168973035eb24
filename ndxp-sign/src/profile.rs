//! The NDXP profile of RFC 9421: how node-to-node requests and responses are
//! signed and verified (docs/design.md §5). `docs/signatures.md` is the normative
//! text; this module implements it on top of [`crate::httpsig`],
//! [`crate::digest`], [`crate::cert`] and [`crate::chain`], so another vendor
//! can verify an NDXP message with `ndxp-sign` alone.
//!
//! # The profile in short
//!
//! * One signature per message, labelled [`LABEL`] (`ndxp`), with the
//!   parameters `created`, `keyid`, `alg`, `tag` in that order; `tag` is
//!   [`TAG`] (`ndxp`), `keyid` is the SHA-256 fingerprint of the signer's
//!   certificate ([`cert::fingerprint_sha256`], 64 lowercase hex digits).
//! * A request covers `"@method" "@target-uri" "content-digest"
//!   "ndxp-client" "ndxp-id"`, then `"ndxp-user-id"` and `"ndxp-request-id"`
//!   when those fields are present ([`request_components`]).
//! * A response covers `"@status" "content-digest" "ndxp-id"
//!   "@method";req "@target-uri";req "content-digest";req
//!   "signature";req;key="ndxp"` ([`response_components`]), so it cannot be
//!   replayed onto another request.
//! * The body is bound by `Content-Digest` (RFC 9530, `sha-256`).
//! * The signer's certificate, then any intermediates, travel in
//!   [`SIGNER_CERT`] (`NDXP-Signer-Cert`) as an RFC 8941 List of Byte
//!   Sequences of DER: `NDXP-Signer-Cert: :MIIB...:, :MIIC...:`.
//! * A receiver accepts `created` within ±[`DEFAULT_WINDOW_SECS`] (300 s)
//!   of its clock and rejects an (`NDXP-Id`, signer) pair it has seen within
//!   that window ([`ReplayCache`]).
//!
//! # Bodies
//!
//! The functions here read message heads only. A proxy streams the body and
//! checks it against the signed `Content-Digest` as it goes:
//!
//! ```
//! # use ndxp_sign::digest::ContentDigestVerifier;
//! # fn f(verified: &ndxp_sign::profile::VerifiedMessage, chunks: &[&[u8]]) -> Result<(), Box<dyn std::error::Error>> {
//! // after verify_request(..) succeeded:
//! let mut check = ContentDigestVerifier::new(&verified.content_digest)?;
//! for chunk in chunks {
//!     check.update(chunk); // and forward the chunk
//! }
//! check.finish()?; // a mismatch: abort the exchange, log it as signature_invalid
//! # Ok(()) }
//! ```
//!
//! [`verify_request_with_body`] and [`verify_response_with_body`] do both
//! steps for a body already in memory.
//!
//! # Example
//!
//! ```
//! use ndxp_sign::ca::{InitOptions, Pki};
//! use ndxp_sign::cert::Profile;
//! use ndxp_sign::{csr, digest, key::KeyAlgorithm, profile};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let opts = InitOptions { ocsp_url: "http://127.0.0.1:1/ocsp".into(), ..InitOptions::default() };
//! let pki = Pki::init(&tmp.path().join("pki"), &opts)?;
//! let member = "VN/GOV/000.00.00.G22".parse()?;
//! let key = KeyAlgorithm::EcP256.generate()?;
//! let req = csr::build_sign_csr(&member, &key)?;
//! let cert = pki.issue(&req, Profile::Sign, 30)?;
//! let signer = profile::Signer::new(key, cert, pki.chain().to_vec())?;
//!
//! let body = br#"{"id":"001"}"#;
//! let (mut parts, ()) = http::Request::post("https://provider.example/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/lookup")
//!     .header(profile::NDXP_CLIENT, "VN/GOV/000.00.00.G22/QLHT")
//!     .header(profile::NDXP_ID, ndxp_core::TransactionId::new().to_string())
//!     .body(())?
//!     .into_parts();
//! let now = chrono::Utc::now();
//! profile::sign_request(&mut parts, &digest::content_digest(body), &signer, now)?;
//!
//! let policy = profile::ProfilePolicy::new(vec![pki.root_cert().clone()]);
//! let verified = profile::verify_request_with_body(&parts, body, &policy, now)?;
//! assert_eq!(verified.signer, member);
//! # Ok(()) }
//! ```

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use ndxp_core::{ErrorCode, MemberId, SubsystemId, TransactionId};
use openssl::pkey::{PKey, Private};
use openssl::sha::sha256;
use openssl::x509::X509;
use sfv::{BareItem, List, ListEntry, Parser, Version};

use crate::cert::{self, CertError};
use crate::chain::{self, BoxError, ChainError, Purpose, RevocationChecker};
use crate::digest::{self, DigestError};
use crate::httpsig::{
    self, Algorithm, Component, MessageView, RequestView, SignatureError, SignatureParams,
    SigningKey, VerifyPolicy, VerifyingKey,
};

/// The signature label used in `Signature-Input` and `Signature`.
pub const LABEL: &str = "ndxp";
/// The `tag` parameter of every NDXP signature.
pub const TAG: &str = "ndxp";
/// Default acceptance window: `created` may be this many seconds before or
/// after the receiver's clock.
pub const DEFAULT_WINDOW_SECS: u64 = 300;

/// `NDXP-Client`: the calling subsystem.
pub const NDXP_CLIENT: &str = "ndxp-client";
/// `NDXP-Id`: the transaction id (UUID v7), the same in both nodes' logs.
pub const NDXP_ID: &str = "ndxp-id";
/// `NDXP-User-Id`: the end user, optional, signed when present.
pub const NDXP_USER_ID: &str = "ndxp-user-id";
/// `NDXP-Request-Id`: the information system's correlation id, optional,
/// signed when present.
pub const NDXP_REQUEST_ID: &str = "ndxp-request-id";
/// `NDXP-Signer-Cert`: the signer's certificate then its intermediates, an
/// RFC 8941 List of Byte Sequences of DER. Not covered by the signature: the
/// signed `keyid` is the leaf's fingerprint, which binds it.
pub const SIGNER_CERT: &str = "ndxp-signer-cert";
/// `Content-Digest` (RFC 9530).
pub const CONTENT_DIGEST: &str = "content-digest";

/// At most this many certificates are read from [`SIGNER_CERT`].
pub const MAX_SIGNER_CERTS: usize = 8;

/// Why a message could not be signed or was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    /// A header field the profile requires is absent.
    #[error("missing header field {0}")]
    MissingHeader(&'static str),
    /// A header field is present but not valid (not ASCII, repeated, not
    /// the expected syntax, too large).
    #[error("header field {field} is malformed: {reason}")]
    MalformedHeader {
        /// The field name.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
        /// The parser's error, if any.
        #[source]
        source: Option<BoxError>,
    },
    /// The signer certificate cannot be read or is not a member signing
    /// certificate.
    #[error("the signer certificate is not a usable NDXP signing certificate")]
    BadCertificate(#[source] CertError),
    /// The signer certificate does not chain to a trusted CA, has expired,
    /// is revoked, or is not for signing.
    #[error("the signer certificate is not trusted")]
    UntrustedSigner(#[source] ChainError),
    /// The signature's `keyid` is not the fingerprint of the certificate in
    /// `NDXP-Signer-Cert`.
    #[error(
        "signature keyid {keyid:?} is not the fingerprint {fingerprint} of the signer certificate"
    )]
    KeyIdMismatch {
        /// The `keyid` parameter.
        keyid: String,
        /// SHA-256 fingerprint of the certificate sent.
        fingerprint: String,
    },
    /// The signature parameters do not follow the profile (`tag`, `alg`,
    /// `created`, `keyid` missing or wrong, algorithm not allowed).
    #[error("signature does not follow the NDXP profile: {0}")]
    ProfileViolation(&'static str),
    /// The RFC 9421 signature is missing, malformed, or does not verify.
    #[error("HTTP message signature rejected")]
    Signature(#[source] SignatureError),
    /// The body does not match the signed `Content-Digest`.
    #[error("the body does not match the signed Content-Digest")]
    Digest(#[source] DigestError),
    /// `NDXP-Client` names a subsystem of another member than the signer's.
    #[error("NDXP-Client {client} does not belong to the signing member {signer}")]
    ClientNotOfSigner {
        /// The `NDXP-Client` subsystem.
        client: Box<SubsystemId>,
        /// The member of the signer certificate.
        signer: Box<MemberId>,
    },
    /// The response's `NDXP-Id` differs from the request's.
    #[error("response NDXP-Id {response} does not match request NDXP-Id {request}")]
    IdMismatch {
        /// `NDXP-Id` of the request.
        request: TransactionId,
        /// `NDXP-Id` of the response.
        response: TransactionId,
    },
    /// `created` is outside the acceptance window around the receiver's
    /// clock (check both clocks, NTP).
    #[error("signature created at {created} is outside ±{window} s of now ({now})")]
    OutsideWindow {
        /// `created` (Unix seconds).
        created: i64,
        /// The receiver's time (Unix seconds).
        now: i64,
        /// The window in seconds.
        window: u64,
    },
    /// The same (`NDXP-Id`, signer) pair was accepted before within the
    /// window.
    #[error("replayed message: NDXP-Id {ndxp_id} from signer {fingerprint} was already accepted")]
    Replay {
        /// The transaction id.
        ndxp_id: TransactionId,
        /// The signer's certificate fingerprint.
        fingerprint: String,
    },
    /// The replay cache holds its maximum of live entries; the message is
    /// refused rather than risk accepting a replay. Raise
    /// `max_entries` above the peak message rate times twice the window.
    #[error(
        "replay cache is full ({max_entries} live entries); refusing rather than risking a replay"
    )]
    ReplayCacheFull {
        /// The configured bound.
        max_entries: usize,
    },
    /// The replay cache holds its per-member share of live entries for
    /// this signer's member; the message is refused so that one peer cannot
    /// crowd every other peer out of the cache. Raise the share above that
    /// member's peak message rate times twice the window.
    #[error(
        "member {member} has {max_per_member} live entries in the replay cache, its whole share; \
         refusing its new messages until old ones leave the window"
    )]
    ReplayShareFull {
        /// The signer's member.
        member: Box<MemberId>,
        /// The configured share.
        max_per_member: usize,
    },
    /// The local signing key does not match the local certificate, or the
    /// certificate is not a member signing certificate (a configuration
    /// error of this node).
    #[error("signer configuration is invalid: {0}")]
    BadSigner(&'static str),
}

impl ProfileError {
    /// The docs/design.md §4 problem code for this error: `ndxp.bad_request` for
    /// missing or malformed header fields, `ndxp.rate_limited` for a full
    /// replay cache, `ndxp.internal` for a bad local signer, otherwise
    /// `ndxp.signature_invalid` (answer 400 for a request, 502 for a
    /// provider's response).
    #[must_use]
    pub fn problem_code(&self) -> ErrorCode {
        match self {
            Self::MissingHeader(_) | Self::MalformedHeader { .. } => ErrorCode::BadRequest,
            Self::Signature(
                SignatureError::MissingHeader(_)
                | SignatureError::MalformedField { .. }
                | SignatureError::FieldTooLarge { .. },
            ) => ErrorCode::BadRequest,
            Self::ReplayCacheFull { .. } | Self::ReplayShareFull { .. } => ErrorCode::RateLimited,
            Self::BadSigner(_) => ErrorCode::Internal,
            _ => ErrorCode::SignatureInvalid,
        }
    }
}

type Result<T, E = ProfileError> = std::result::Result<T, E>;

fn malformed(field: &'static str, reason: &'static str) -> ProfileError {
    ProfileError::MalformedHeader {
        field,
        reason,
        source: None,
    }
}

fn malformed_by<E>(field: &'static str, reason: &'static str) -> impl FnOnce(E) -> ProfileError
where
    E: std::error::Error + Send + Sync + 'static,
{
    move |e| ProfileError::MalformedHeader {
        field,
        reason,
        source: Some(Box::new(e)),
    }
}

// ---------------------------------------------------------------------------
// Components
// ---------------------------------------------------------------------------

/// Covered components of a request signature, in order: `"@method"
/// "@target-uri" "content-digest" "ndxp-client" "ndxp-id"`, then
/// `"ndxp-user-id"` and `"ndxp-request-id"` when `headers` carries them.
#[must_use]
pub fn request_components(headers: &HeaderMap) -> Vec<Component> {
    let mut c = vec![
        Component::method(),
        Component::target_uri(),
        Component::field(CONTENT_DIGEST),
        Component::field(NDXP_CLIENT),
        Component::field(NDXP_ID),
    ];
    for optional in [NDXP_USER_ID, NDXP_REQUEST_ID] {
        if headers.contains_key(optional) {
            c.push(Component::field(optional));
        }
    }
    c
}

/// Covered components of a response signature, in order: `"@status"
/// "content-digest" "ndxp-id" "@method";req "@target-uri";req
/// "content-digest";req "signature";req;key="ndxp"`.
#[must_use]
pub fn response_components() -> Vec<Component> {
    vec![
        Component::status(),
        Component::field(CONTENT_DIGEST),
        Component::field(NDXP_ID),
        Component::method().req(),
        Component::target_uri().req(),
        Component::field(CONTENT_DIGEST).req(),
        Component::request_signature(LABEL),
    ]
}

/// The request view the profile signs and verifies: an origin-form URI
/// (what a server sees) is taken as `https` with the `Host` field as
/// authority. A receiver behind a proxy that rewrites `Host` sets
/// `parts.uri` to the absolute URI the sender used before verifying.
fn request_view(parts: &http::request::Parts) -> RequestView<'_> {
    let view = RequestView::from_parts(parts);
    if parts.uri.scheme().is_none() {
        view.with_scheme("https")
    } else {
        view
    }
}

// ---------------------------------------------------------------------------
// Signer
// ---------------------------------------------------------------------------

/// A member's signing identity: its key, certificate and intermediates.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    cert: X509,
    chain: Vec<X509>,
    member: MemberId,
    fingerprint: String,
    cert_header: HeaderValue,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("member", &self.member)
            .field("fingerprint", &self.fingerprint)
            .field("algorithm", &self.key.algorithm())
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer with the key's default algorithm (`ecdsa-p256-sha256` for
    /// EC P-256, `rsa-pss-sha512` for RSA). `cert` must be a member signing
    /// certificate for `key`; `chain` holds the intermediates (the root may
    /// be left out), sent along for the receiver's path building.
    ///
    /// # Errors
    /// [`ProfileError::BadSigner`] when the key does not fit the
    /// certificate or any supported algorithm;
    /// [`ProfileError::BadCertificate`] when `cert` carries no member
    /// identity.
    pub fn new(key: PKey<Private>, cert: X509, chain: Vec<X509>) -> Result<Self> {
        let alg = Algorithm::default_for_key(&key)
            .map_err(|_| ProfileError::BadSigner("the key is neither EC P-256 nor RSA"))?;
        Self::with_algorithm(key, alg, cert, chain)
    }

    /// A signer with an explicit algorithm, e.g. `rsa-v1_5-sha256` for an
    /// older RSA key.
    ///
    /// # Errors
    /// As [`Signer::new`].
    pub fn with_algorithm(
        key: PKey<Private>,
        alg: Algorithm,
        cert: X509,
        chain: Vec<X509>,
    ) -> Result<Self> {
        let cert_public = cert
            .public_key()
            .map_err(|_| ProfileError::BadSigner("the certificate's public key is unreadable"))?;
        if !key.public_eq(&cert_public) {
            return Err(ProfileError::BadSigner(
                "the signing key does not belong to the signing certificate",
            ));
        }
        let member = cert::member_of(&cert).map_err(ProfileError::BadCertificate)?;
        let fingerprint =
            cert::try_fingerprint_sha256(&cert).map_err(ProfileError::BadCertificate)?;
        let key = SigningKey::with_algorithm(key, alg, fingerprint.clone())
            .map_err(|_| ProfileError::BadSigner("the key cannot be used with this algorithm"))?;
        let cert_header = encode_cert_header(&cert, &chain)?;
        Ok(Self {
            key,
            cert,
            chain,
            member,
            fingerprint,
            cert_header,
        })
    }

    /// The member this signer signs for.
    #[must_use]
    pub fn member(&self) -> &MemberId {
        &self.member
    }

    /// The certificate's SHA-256 fingerprint (the `keyid`).
    #[must_use]
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The signing certificate.
    #[must_use]
    pub fn certificate(&self) -> &X509 {
        &self.cert
    }

    /// The intermediates sent after the certificate.
    #[must_use]
    pub fn chain(&self) -> &[X509] {
        &self.chain
    }

    /// The algorithm this signer uses.
    #[must_use]
    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// The underlying RFC 9421 signing key (its `keyid` is the
    /// fingerprint).
    #[must_use]
    pub fn signing_key(&self) -> &SigningKey {
        &self.key
    }

    fn params(&self, components: Vec<Component>, created: i64) -> SignatureParams {
        SignatureParams::new(components)
            .with_created(created)
            .with_keyid(self.key.keyid())
            .with_alg(self.key.algorithm())
            .with_tag(TAG)
    }
}

fn encode_cert_header(cert: &X509, chain: &[X509]) -> Result<HeaderValue> {
    let mut out = String::new();
    for (i, c) in std::iter::once(cert).chain(chain).enumerate() {
        let der = c
            .to_der()
            .map_err(|_| ProfileError::BadSigner("a certificate cannot be encoded as DER"))?;
        if i > 0 {
            out.push_str(", ");
        }
        out.push(':');
        base64::engine::general_purpose::STANDARD.encode_string(&der, &mut out);
        out.push(':');
    }
    HeaderValue::from_str(&out).map_err(|_| ProfileError::BadSigner("certificate header"))
}

/// What was signed; the sender logs it like a [`VerifiedMessage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedInfo {
    /// The transaction id signed.
    pub ndxp_id: TransactionId,
    /// `created` (Unix seconds).
    pub created: i64,
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// The `keyid`: the signer certificate's fingerprint.
    pub fingerprint: String,
    /// The `Signature-Input` member, e.g. `ndxp=("@method" ...);created=...`.
    pub signature_input: String,
    /// The `Signature` member, e.g. `ndxp=:...:`.
    pub signature: String,
    /// The signature base that was signed.
    pub base: String,
    /// SHA-256 of the signature base.
    pub base_sha256: [u8; 32],
}

fn set_header(headers: &mut HeaderMap, name: &'static str, value: HeaderValue) {
    headers.insert(HeaderName::from_static(name), value);
}

fn content_digest_value(body_digest: &str) -> Result<HeaderValue> {
    digest::ParsedContentDigest::parse(body_digest).map_err(malformed_by(
        CONTENT_DIGEST,
        "not a valid RFC 9530 field value",
    ))?;
    HeaderValue::from_str(body_digest)
        .map_err(malformed_by(CONTENT_DIGEST, "not a valid header value"))
}

fn to_signed_info(
    out: httpsig::SignatureOutput,
    ndxp_id: TransactionId,
    created: i64,
    signer: &Signer,
) -> SignedInfo {
    SignedInfo {
        ndxp_id,
        created,
        algorithm: signer.algorithm(),
        fingerprint: signer.fingerprint.clone(),
        signature_input: out.signature_input,
        signature: out.signature,
        base_sha256: sha256(out.base.as_bytes()),
        base: out.base,
    }
}

/// Sign a node-to-node request head.
///
/// The caller has set `NDXP-Client`, `NDXP-Id` and, when known,
/// `NDXP-User-Id` and `NDXP-Request-Id`. This sets `Content-Digest` to
/// `body_digest` (computed while streaming, e.g. with
/// [`digest::ContentDigester`]), `NDXP-Signer-Cert`, and adds the `ndxp`
/// members of `Signature-Input` and `Signature`. `parts.uri` should be the
/// absolute URI sent to the peer.
///
/// # Errors
/// [`ProfileError::MissingHeader`] / [`ProfileError::MalformedHeader`] for
/// absent or invalid `NDXP-Client`, `NDXP-Id` or `body_digest`;
/// [`ProfileError::ClientNotOfSigner`] when `NDXP-Client` is not a
/// subsystem of the signer's member; [`ProfileError::Signature`] when the
/// head cannot be signed (e.g. a non-ASCII covered field, an `ndxp`
/// signature already present).
pub fn sign_request(
    parts: &mut http::request::Parts,
    body_digest: &str,
    signer: &Signer,
    now: DateTime<Utc>,
) -> Result<SignedInfo> {
    let client = read_client(&parts.headers)?;
    if client.member() != signer.member() {
        return Err(ProfileError::ClientNotOfSigner {
            client: Box::new(client),
            signer: Box::new(signer.member.clone()),
        });
    }
    let ndxp_id = read_id(&parts.headers)?;
    check_optional_fields(&parts.headers)?;
    set_header(
        &mut parts.headers,
        CONTENT_DIGEST,
        content_digest_value(body_digest)?,
    );
    set_header(&mut parts.headers, SIGNER_CERT, signer.cert_header.clone());
    let created = now.timestamp();
    let params = signer.params(request_components(&parts.headers), created);
    let out = httpsig::create_signature(
        &MessageView::Request(request_view(parts)),
        LABEL,
        &params,
        &signer.key,
    )
    .map_err(ProfileError::Signature)?;
    httpsig::attach_signature(&mut parts.headers, &out).map_err(ProfileError::Signature)?;
    Ok(to_signed_info(out, ndxp_id, created, signer))
}

/// Sign a response head to `request` (the signed request as received).
///
/// Sets `Content-Digest` to `body_digest`, `NDXP-Id` to the request's when
/// absent (an existing different value is an error), `NDXP-Signer-Cert`, and
/// adds the `ndxp` signature covering [`response_components`].
///
/// # Errors
/// [`ProfileError::MissingHeader`] / [`ProfileError::MalformedHeader`] when
/// the request has no valid `NDXP-Id` or `body_digest` is invalid;
/// [`ProfileError::IdMismatch`] when the response already carries another
/// `NDXP-Id`; [`ProfileError::Signature`] when a covered component is
/// missing (e.g. the request carries no `ndxp` signature).
pub fn sign_response(
    parts: &mut http::response::Parts,
    request: &http::request::Parts,
    body_digest: &str,
    signer: &Signer,
    now: DateTime<Utc>,
) -> Result<SignedInfo> {
    let ndxp_id = read_id(&request.headers)?;
    if parts.headers.contains_key(NDXP_ID) {
        let own = read_id(&parts.headers)?;
        if own != ndxp_id {
            return Err(ProfileError::IdMismatch {
                request: ndxp_id,
                response: own,
            });
        }
    } else {
        let v = HeaderValue::from_str(&ndxp_id.to_string())
            .map_err(malformed_by(NDXP_ID, "not a valid header value"))?;
        set_header(&mut parts.headers, NDXP_ID, v);
    }
    set_header(
        &mut parts.headers,
        CONTENT_DIGEST,
        content_digest_value(body_digest)?,
    );
    set_header(&mut parts.headers, SIGNER_CERT, signer.cert_header.clone());
    let created = now.timestamp();
    let params = signer.params(response_components(), created);
    let out = httpsig::create_signature(
        &MessageView::response(parts, Some(request_view(request))),
        LABEL,
        &params,
        &signer.key,
    )
    .map_err(ProfileError::Signature)?;
    httpsig::attach_signature(&mut parts.headers, &out).map_err(ProfileError::Signature)?;
    Ok(to_signed_info(out, ndxp_id, created, signer))
}

// ---------------------------------------------------------------------------
// Header readers
// ---------------------------------------------------------------------------

/// The single value of `name` as text; repeated or non-ASCII values are
/// malformed.
fn single<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(malformed(name, "the field appears more than once"));
    }
    first
        .to_str()
        .map(|s| Some(s.trim()))
        .map_err(malformed_by(name, "the value is not visible ASCII"))
}

fn required<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str> {
    single(headers, name)?.ok_or(ProfileError::MissingHeader(name))
}

fn read_client(headers: &HeaderMap) -> Result<SubsystemId> {
    required(headers, NDXP_CLIENT)?
        .parse()
        .map_err(malformed_by(NDXP_CLIENT, "not a subsystem identifier"))
}

fn read_id(headers: &HeaderMap) -> Result<TransactionId> {
    required(headers, NDXP_ID)?
        .parse()
        .map_err(malformed_by(NDXP_ID, "not a UUID v7 transaction id"))
}

fn check_optional_fields(headers: &HeaderMap) -> Result<()> {
    for name in [NDXP_USER_ID, NDXP_REQUEST_ID] {
        single(headers, name)?;
    }
    Ok(())
}

/// Parse an `NDXP-Signer-Cert` value: the leaf, then intermediates.
///
/// # Errors
/// [`ProfileError::MissingHeader`], [`ProfileError::MalformedHeader`] (not
/// a List of Byte Sequences, empty, over `max_bytes` or
/// [`MAX_SIGNER_CERTS`]), [`ProfileError::BadCertificate`] (not DER).
pub fn parse_signer_cert_header(headers: &HeaderMap, max_bytes: usize) -> Result<Vec<X509>> {
    parse_cert_list(&raw_signer_cert_header(headers, max_bytes)?)
}

/// The `NDXP-Signer-Cert` field value as sent (lines joined with `, `).
fn raw_signer_cert_header(headers: &HeaderMap, max_bytes: usize) -> Result<Vec<u8>> {
    let mut joined = Vec::new();
    for (i, v) in headers.get_all(SIGNER_CERT).iter().enumerate() {
        if i > 0 {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(v.as_bytes());
        if joined.len() > max_bytes {
            return Err(malformed(SIGNER_CERT, "the field is larger than allowed"));
        }
    }
    if joined.is_empty() {
        return Err(ProfileError::MissingHeader(SIGNER_CERT));
    }
    Ok(joined)
}

fn parse_cert_list(joined: &[u8]) -> Result<Vec<X509>> {
    let list: List = Parser::new(joined)
        .with_version(Version::Rfc8941)
        .parse()
        .map_err(malformed_by(SIGNER_CERT, "not an RFC 8941 list"))?;
    if list.is_empty() {
        return Err(malformed(SIGNER_CERT, "the list is empty"));
    }
    if list.len() > MAX_SIGNER_CERTS {
        return Err(malformed(SIGNER_CERT, "too many certificates"));
    }
    list.iter()
        .map(|entry| match entry {
            ListEntry::Item(item) => match &item.bare_item {
                BareItem::ByteSequence(der) => X509::from_der(der).map_err(|e| {
                    ProfileError::BadCertificate(CertError::BadPem {
                        detail: "an NDXP-Signer-Cert member is not a DER certificate",
                        source: Some(e),
                    })
                }),
                _ => Err(malformed(SIGNER_CERT, "a member is not a byte sequence")),
            },
            ListEntry::InnerList(_) => Err(malformed(SIGNER_CERT, "a member is an inner list")),
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Signer cache
// ---------------------------------------------------------------------------

/// Signer certificates already validated, so that a busy receiver builds
/// and checks a signer's chain once per [`recheck`](SignerCache::new)
/// interval instead of on every message.
///
/// An entry is keyed by the exact `NDXP-Signer-Cert` value and the
/// algorithm, and holds the validated path, the member, the fingerprint and
/// a ready verifying key. On every use the path's **revocation** is still
/// asked of the policy's checker (a revocation known to the checker takes
/// effect on the next message); the chain itself (signatures, validity
/// period, purpose) is validated again once the entry is older than
/// `recheck` seconds or its leaf expires. The signature of each message is
/// always verified.
pub struct SignerCache {
    entries: Mutex<HashMap<SignerKey, Arc<SignerEntry>>>,
    max_entries: usize,
    recheck_secs: i64,
}

impl fmt::Debug for SignerCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignerCache")
            .field("max_entries", &self.max_entries)
            .field("recheck_secs", &self.recheck_secs)
            .finish_non_exhaustive()
    }
}

/// The exact `NDXP-Signer-Cert` value and the algorithm.
type SignerKey = (Vec<u8>, Algorithm);

/// A validated signer.
struct SignerEntry {
    path: Vec<X509>,
    fingerprint: String,
    member: MemberId,
    key: VerifyingKey,
    leaf_der: Vec<u8>,
    chain_der: Vec<Vec<u8>>,
    until: i64,
}

impl SignerCache {
    /// A cache of at most `max_entries` signers, each validated again after
    /// `recheck_secs` seconds.
    #[must_use]
    pub fn new(max_entries: usize, recheck_secs: u64) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            max_entries,
            recheck_secs: i64::try_from(recheck_secs).unwrap_or(i64::MAX),
        }
    }

    /// How many signers are held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether none is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, raw: &[u8], alg: Algorithm, now: i64) -> Option<Arc<SignerEntry>> {
        let map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(&(raw.to_vec(), alg))
            .filter(|e| now < e.until)
            .cloned()
    }

    fn insert(&self, raw: Vec<u8>, alg: Algorithm, entry: Arc<SignerEntry>, now: i64) {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.max_entries {
            map.retain(|_, e| now < e.until);
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
        map.insert((raw, alg), entry);
    }
}

/// The validated signer of a message: from the cache, or parsed and
/// validated now (and then cached).
fn signer_entry(
    headers: &HeaderMap,
    alg: Algorithm,
    policy: &ProfilePolicy,
    now: DateTime<Utc>,
) -> Result<Arc<SignerEntry>> {
    let raw = raw_signer_cert_header(headers, policy.max_field_bytes)?;
    let revocation: &dyn RevocationChecker = match &policy.revocation {
        Some(r) => r.as_ref(),
        None => &chain::NoRevocationCheck,
    };
    let now_s = now.timestamp();
    if let Some(cache) = &policy.signer_cache {
        if let Some(e) = cache.get(&raw, alg, now_s) {
            chain::check_revocation(&e.path, now, revocation)
                .map_err(ProfileError::UntrustedSigner)?;
            return Ok(e);
        }
    }
    let mut certs = parse_cert_list(&raw)?.into_iter();
    let leaf = certs
        .next()
        .ok_or(ProfileError::MissingHeader(SIGNER_CERT))?;
    let intermediates: Vec<X509> = certs.collect();
    let fingerprint = cert::try_fingerprint_sha256(&leaf).map_err(ProfileError::BadCertificate)?;
    let member = cert::member_of(&leaf).map_err(ProfileError::BadCertificate)?;
    let verified = chain::verify_chain(
        &leaf,
        &intermediates,
        &policy.anchors,
        now,
        Purpose::Sign,
        revocation,
    )
    .map_err(ProfileError::UntrustedSigner)?;
    let public = leaf.public_key().map_err(|e| {
        ProfileError::BadCertificate(CertError::OpenSsl("reading the public key", e))
    })?;
    let key = VerifyingKey::with_algorithm(public, alg, fingerprint.clone())
        .map_err(ProfileError::Signature)?;
    let der = |c: &X509| {
        c.to_der().map_err(|e| {
            ProfileError::BadCertificate(CertError::OpenSsl("encoding a certificate", e))
        })
    };
    let not_after = cert::asn1_to_utc(leaf.not_after())
        .map(|t| t.timestamp())
        .unwrap_or(now_s);
    let entry = Arc::new(SignerEntry {
        path: verified.certs().to_vec(),
        leaf_der: der(&leaf)?,
        chain_der: intermediates.iter().map(der).collect::<Result<_>>()?,
        fingerprint,
        member,
        key,
        until: not_after
            .min(now_s.saturating_add(policy.signer_cache.as_ref().map_or(0, |c| c.recheck_secs))),
    });
    if let Some(cache) = &policy.signer_cache {
        cache.insert(raw, alg, entry.clone(), now_s);
    }
    Ok(entry)
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

/// What a receiver trusts and accepts.
#[derive(Clone)]
pub struct ProfilePolicy {
    /// Trust anchors: the CAs the global configuration lists.
    pub anchors: Vec<X509>,
    /// Revocation source for the signer chain (e.g. the node's OCSP cache).
    /// `None` skips revocation checks: for tests and offline tools only.
    pub revocation: Option<Arc<dyn RevocationChecker + Send + Sync>>,
    /// Acceptance window in seconds: `created` must lie within
    /// `now ± window`.
    pub window: u64,
    /// Algorithms accepted (default all three of docs/design.md §5).
    pub allowed_algorithms: Vec<Algorithm>,
    /// If set, every verified message is checked against (and recorded in)
    /// this cache; a repeat of (`NDXP-Id`, signer) is refused.
    pub replay: Option<Arc<ReplayCache>>,
    /// Upper bound on `NDXP-Signer-Cert`, `Signature-Input` and `Signature`
    /// sizes in bytes (default 32 KiB).
    pub max_field_bytes: usize,
    /// If set, validated signer certificates are kept here (see
    /// [`SignerCache`]).
    pub signer_cache: Option<Arc<SignerCache>>,
}

impl fmt::Debug for ProfilePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProfilePolicy")
            .field("anchors", &self.anchors.len())
            .field("revocation", &self.revocation.is_some())
            .field("window", &self.window)
            .field("allowed_algorithms", &self.allowed_algorithms)
            .field("replay", &self.replay.is_some())
            .field("max_field_bytes", &self.max_field_bytes)
            .field("signer_cache", &self.signer_cache.is_some())
            .finish()
    }
}

impl ProfilePolicy {
    /// A policy trusting `anchors`, with no revocation check and no replay
    /// cache, the default window and all algorithms. Set
    /// [`revocation`](Self::revocation) and [`replay`](Self::replay) in a
    /// node.
    #[must_use]
    pub fn new(anchors: Vec<X509>) -> Self {
        Self {
            anchors,
            revocation: None,
            window: DEFAULT_WINDOW_SECS,
            allowed_algorithms: Algorithm::ALL.to_vec(),
            replay: None,
            max_field_bytes: 32 * 1024,
            signer_cache: None,
        }
    }

    /// With a cache of validated signers.
    #[must_use]
    pub fn with_signer_cache(mut self, cache: Arc<SignerCache>) -> Self {
        self.signer_cache = Some(cache);
        self
    }

    /// With a revocation checker.
    #[must_use]
    pub fn with_revocation(mut self, checker: Arc<dyn RevocationChecker + Send + Sync>) -> Self {
        self.revocation = Some(checker);
        self
    }

    /// With a replay cache. Build it with the same window as the policy:
    /// the cache refuses `created` outside its own window.
    #[must_use]
    pub fn with_replay_cache(mut self, cache: Arc<ReplayCache>) -> Self {
        self.replay = Some(cache);
        self
    }

    /// With another window.
    #[must_use]
    pub fn with_window(mut self, secs: u64) -> Self {
        self.window = secs;
        self
    }
}

/// A verified message: everything a log record needs so that the signature
/// can be checked again offline, years later, without the peer (see
/// [`verify_logged`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedMessage {
    /// The signing member (from the certificate). For a response, the
    /// caller checks it is the provider it called.
    pub signer: MemberId,
    /// SHA-256 fingerprint of the signer certificate (the `keyid`).
    pub fingerprint: String,
    /// The transaction id.
    pub ndxp_id: TransactionId,
    /// `NDXP-Client` of a request (`None` for a response).
    pub client: Option<SubsystemId>,
    /// The algorithm used.
    pub algorithm: Algorithm,
    /// `created` (Unix seconds).
    pub created: i64,
    /// The `Signature-Input` member, e.g. `ndxp=("@method" ...);created=...`.
    pub signature_input: String,
    /// The `Signature` member, e.g. `ndxp=:...:`.
    pub signature: String,
    /// The signed `Content-Digest` value; the caller checks the body
    /// against it.
    pub content_digest: String,
    /// DER of the signer certificate.
    pub signer_cert_der: Vec<u8>,
    /// DER of the intermediates sent with it.
    pub chain_der: Vec<Vec<u8>>,
    /// The signature base that was verified.
    pub base: String,
    /// SHA-256 of the signature base.
    pub base_sha256: [u8; 32],
}

fn unix(now: DateTime<Utc>) -> i64 {
    now.timestamp()
}

fn check_window(created: i64, now: i64, window: u64) -> Result<()> {
    let w = i64::try_from(window).unwrap_or(i64::MAX);
    if created < now.saturating_sub(w) || created > now.saturating_add(w) {
        return Err(ProfileError::OutsideWindow {
            created,
            now,
            window,
        });
    }
    Ok(())
}

/// The profile checks common to requests and responses.
fn verify_message(
    msg: &MessageView<'_>,
    headers: &HeaderMap,
    required_components: Vec<Component>,
    policy: &ProfilePolicy,
    now: DateTime<Utc>,
) -> Result<VerifiedMessage> {
    let now_s = unix(now);
    let ndxp_id = read_id(headers)?;
    let content_digest = required(headers, CONTENT_DIGEST)?.to_owned();
    digest::ParsedContentDigest::parse(&content_digest).map_err(malformed_by(
        CONTENT_DIGEST,
        "not a valid RFC 9530 field value",
    ))?;
    check_optional_fields(headers)?;

    // Cheap checks on the parameters first.
    let (params, _) = httpsig::parse_signature_headers(headers, LABEL, policy.max_field_bytes)
        .map_err(|e| match e {
            SignatureError::MissingHeader(h) => ProfileError::MissingHeader(h),
            e => ProfileError::Signature(e),
        })?;
    if params.tag() != Some(TAG) {
        return Err(ProfileError::ProfileViolation("tag is not \"ndxp\""));
    }
    let created = params
        .created()
        .ok_or(ProfileError::ProfileViolation("created is missing"))?;
    check_window(created, now_s, policy.window)?;
    let alg = params
        .alg()
        .ok_or(ProfileError::ProfileViolation("alg is missing"))?;
    if !policy.allowed_algorithms.contains(&alg) {
        return Err(ProfileError::ProfileViolation(
            "the algorithm is not allowed by this receiver",
        ));
    }
    let keyid = params
        .keyid()
        .ok_or(ProfileError::ProfileViolation("keyid is missing"))?
        .to_owned();

    // The certificate (validated now or taken from the cache); keyid
    // binds it.
    let entry = signer_entry(headers, alg, policy, now)?;
    if keyid != entry.fingerprint {
        return Err(ProfileError::KeyIdMismatch {
            keyid,
            fingerprint: entry.fingerprint.clone(),
        });
    }
    let fingerprint = entry.fingerprint.clone();
    let signer = entry.member.clone();
    let key = entry.key.clone();
    let mut vpolicy = VerifyPolicy::new(required_components);
    // The window was checked above; let httpsig apply the same bound.
    vpolicy.max_age = None;
    vpolicy.clock_skew = policy.window;
    vpolicy.required_tag = Some(TAG.to_owned());
    vpolicy.allowed_algorithms = vec![alg];
    vpolicy.max_field_bytes = policy.max_field_bytes;
    let resolver = |id: &str| (id == fingerprint).then(|| key.clone());
    let verified =
        httpsig::verify(msg, LABEL, &vpolicy, now_s, &resolver).map_err(ProfileError::Signature)?;
    let base = httpsig::signature_base(msg, &verified.params).map_err(ProfileError::Signature)?;
    let signature_input = format!(
        "{LABEL}={}",
        verified
            .params
            .serialize()
            .map_err(ProfileError::Signature)?
    );
    let signature = format!(
        "{LABEL}=:{}:",
        base64::engine::general_purpose::STANDARD.encode(&verified.signature)
    );
    let vm = VerifiedMessage {
        signer,
        ndxp_id,
        client: None,
        algorithm: verified.algorithm,
        created,
        signature_input,
        signature,
        content_digest,
        signer_cert_der: entry.leaf_der.clone(),
        chain_der: entry.chain_der.clone(),
        base,
        base_sha256: verified.base_sha256,
        fingerprint,
    };
    Ok(vm)
}

fn check_replay(vm: &VerifiedMessage, policy: &ProfilePolicy, now: DateTime<Utc>) -> Result<()> {
    match &policy.replay {
        Some(cache) => {
            cache.check_and_insert(vm.ndxp_id, &vm.signer, &vm.fingerprint, vm.created, now)
        }
        None => Ok(()),
    }
}

/// Verify a node-to-node request head at `now`.
///
/// Checks, in order: `NDXP-Id`, `NDXP-Client` and `Content-Digest` are
/// present and well-formed; the `ndxp` signature carries `tag="ndxp"`,
/// `created` within the window, an allowed `alg`, and a `keyid` equal to
/// the fingerprint of the certificate in `NDXP-Signer-Cert`; that
/// certificate chains to `policy.anchors` for signing at `now` and is not
/// revoked; the signature covers [`request_components`] (so also
/// `NDXP-User-Id` / `NDXP-Request-Id` when present) and verifies;
/// `NDXP-Client` belongs to the signing member; the (`NDXP-Id`, signer)
/// pair is new to `policy.replay`. The body is not read: check it against
/// [`VerifiedMessage::content_digest`] while streaming.
///
/// # Errors
/// The first failed check as a [`ProfileError`].
pub fn verify_request(
    parts: &http::request::Parts,
    policy: &ProfilePolicy,
    now: DateTime<Utc>,
) -> Result<VerifiedMessage> {
    let client = read_client(&parts.headers)?;
    let required_components = request_components(&parts.headers);
    let msg = MessageView::Request(request_view(parts));
    let mut vm = verify_message(&msg, &parts.headers, required_components, policy, now)?;
    if client.member() != &vm.signer {
        return Err(ProfileError::ClientNotOfSigner {
            client: Box::new(client),
            signer: Box::new(vm.signer),
        });
    }
    // Only a message that passed every other check reaches the replay
    // cache, so a forged message cannot block the genuine one.
    check_replay(&vm, policy, now)?;
    vm.client = Some(client);
    Ok(vm)
}

/// [`verify_request`], then the body against the signed `Content-Digest`.
///
/// # Errors
/// As [`verify_request`]; [`ProfileError::Digest`] when the body does not
/// match.
pub fn verify_request_with_body(
    parts: &http::request::Parts,
    body: &[u8],
    policy: &ProfilePolicy,
    now: DateTime<Utc>,
) -> Result<VerifiedMessage> {
    let vm = verify_request(parts, policy, now)?;
    digest::verify_content_digest(&vm.content_digest, body).map_err(ProfileError::Digest)?;
    Ok(vm)
}

/// Verify a node-to-node response head against the request it answers
/// (`request`: the signed request as sent).
///
/// Checks as [`verify_request`] (without `NDXP-Client`), with
/// [`response_components`] required, and that the response's `NDXP-Id`
/// equals the request's. The returned [`VerifiedMessage::signer`] is the
/// responding member: the caller checks it is the provider it called.
///
/// # Errors
/// The first failed check as a [`ProfileError`];
/// [`ProfileError::IdMismatch`] for a response to another transaction.
pub fn verify_response(
    parts: &http::response::Parts,
    request: &http::request::Parts,
    policy: &ProfilePolicy,
    now: DateTime<Utc>,
) -> Result<VerifiedMessage> {
    let request_id = read_id(&request.headers)?;
    let response_id = read_id(&parts.headers)?;
    if request_id != response_id {
        return Err(ProfileError::IdMismatch {
            request: request_id,
            response: response_id,
        });
    }
    let msg = MessageView::response(parts, Some(request_view(request)));
    let vm = verify_message(&msg, &parts.headers, response_components(), policy, now)?;
    check_replay(&vm, policy, now)?;
    Ok(vm)
}

/// [`verify_response`], then the body against the signed `Content-Digest`.
///
/// # Errors
/// As [`verify_response`]; [`ProfileError::Digest`] when the body does not
/// match.
pub fn verify_response_with_body(
    parts: &http::response::Parts,
    request: &http::request::Parts,
    body: &[u8],
    policy: &ProfilePolicy,
    now: DateTime<Utc>,
) -> Result<VerifiedMessage> {
    let vm = verify_response(parts, request, policy, now)?;
    digest::verify_content_digest(&vm.content_digest, body).map_err(ProfileError::Digest)?;
    Ok(vm)
}

// ---------------------------------------------------------------------------
// Offline re-verification
// ---------------------------------------------------------------------------

/// Re-verify a logged signature without the peer and without the HTTP
/// message: from the signature base, the `Signature-Input` and `Signature`
/// members and the certificates recorded in a [`VerifiedMessage`] (or a
/// [`SignedInfo`] plus the signer's certificate).
///
/// Checks that the base ends in the logged `@signature-params`, that the
/// parameters follow the profile (`tag`, `alg`, `keyid` = fingerprint of
/// `signer_cert_der`), that the signature verifies over the base, and that
/// the certificate chained to `anchors` for signing **at `created`** (a
/// certificate that has since expired still verifies; one revoked before
/// `created`, as `revocation` reports it, does not). No window or replay
/// check applies. The caller compares the covered values in the base
/// (`"ndxp-id": ...`, `"content-digest": ...`) with the rest of the record.
///
/// Returns the signing member and `created`.
///
/// # Errors
/// [`ProfileError::Signature`] for a base or signature that does not
/// match; [`ProfileError::ProfileViolation`], [`ProfileError::KeyIdMismatch`],
/// [`ProfileError::BadCertificate`], [`ProfileError::UntrustedSigner`].
pub fn verify_logged(
    base: &str,
    signature_input: &str,
    signature: &str,
    signer_cert_der: &[u8],
    chain_der: &[Vec<u8>],
    anchors: &[X509],
    revocation: &dyn RevocationChecker,
) -> Result<(MemberId, i64)> {
    let mut headers = HeaderMap::new();
    let value = |s: &str| {
        HeaderValue::from_str(s).map_err(|_| {
            ProfileError::Signature(SignatureError::InvalidSignatureParams(
                "the logged member is not a valid header value".into(),
            ))
        })
    };
    headers.insert(httpsig::SIGNATURE_INPUT, value(signature_input)?);
    headers.insert(httpsig::SIGNATURE, value(signature)?);
    let (params, sig) = httpsig::parse_signature_headers(&headers, LABEL, usize::MAX)
        .map_err(ProfileError::Signature)?;
    let expected_last = format!(
        "\"@signature-params\": {}",
        params.serialize().map_err(ProfileError::Signature)?
    );
    if base.rsplit('\n').next() != Some(expected_last.as_str()) {
        return Err(ProfileError::Signature(
            SignatureError::InvalidSignatureParams(
                "the base does not end in the logged signature parameters".into(),
            ),
        ));
    }
    if params.tag() != Some(TAG) {
        return Err(ProfileError::ProfileViolation("tag is not \"ndxp\""));
    }
    let created = params
        .created()
        .ok_or(ProfileError::ProfileViolation("created is missing"))?;
    let alg = params
        .alg()
        .ok_or(ProfileError::ProfileViolation("alg is missing"))?;
    let keyid = params
        .keyid()
        .ok_or(ProfileError::ProfileViolation("keyid is missing"))?;
    let leaf = X509::from_der(signer_cert_der).map_err(|e| {
        ProfileError::BadCertificate(CertError::BadPem {
            detail: "the logged signer certificate is not DER",
            source: Some(e),
        })
    })?;
    let fingerprint = cert::try_fingerprint_sha256(&leaf).map_err(ProfileError::BadCertificate)?;
    if keyid != fingerprint {
        return Err(ProfileError::KeyIdMismatch {
            keyid: keyid.to_owned(),
            fingerprint,
        });
    }
    let intermediates = chain_der
        .iter()
        .map(|d| {
            X509::from_der(d).map_err(|e| {
                ProfileError::BadCertificate(CertError::BadPem {
                    detail: "a logged intermediate certificate is not DER",
                    source: Some(e),
                })
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let member = cert::member_of(&leaf).map_err(ProfileError::BadCertificate)?;
    let public = leaf.public_key().map_err(|e| {
        ProfileError::BadCertificate(CertError::OpenSsl("reading the public key", e))
    })?;
    VerifyingKey::with_algorithm(public, alg, fingerprint)
        .and_then(|k| k.verify_bytes(base.as_bytes(), &sig))
        .map_err(ProfileError::Signature)?;
    let at = DateTime::from_timestamp(created, 0)
        .ok_or(ProfileError::ProfileViolation("created is out of range"))?;
    chain::verify_chain(
        &leaf,
        &intermediates,
        anchors,
        at,
        Purpose::Sign,
        revocation,
    )
    .map_err(ProfileError::UntrustedSigner)?;
    Ok((member, created))
}

// ---------------------------------------------------------------------------
// Replay cache
// ---------------------------------------------------------------------------

type ReplayKey = (TransactionId, String);

struct ReplayInner {
    /// Live entries: key → (expiry, sequence number of its queue entry).
    map: HashMap<ReplayKey, (i64, u64)>,
    /// Insertion order with a conservative deadline (insertion time plus
    /// twice the window, never before the entry's own expiry), and the
    /// signer's member the entry counts against.
    queue: VecDeque<(i64, u64, ReplayKey, Arc<MemberId>)>,
    /// Queue entries per signer member (members with none are removed).
    per_member: HashMap<Arc<MemberId>, usize>,
    seq: u64,
}

/// Remembers accepted (`NDXP-Id`, signer fingerprint) pairs for the
/// acceptance window, to refuse replays (`docs/signatures.md`).
///
/// An entry for a message created at `created` expires at
/// `created + window`: after that a replay fails the window check anyway.
/// The cache is bounded: when `max_entries` are held, expired entries are
/// dropped first (oldest first, O(1) amortised per insertion); if all are
/// still live, the new message is refused with
/// [`ProfileError::ReplayCacheFull`] rather than forgetting a live entry.
/// Size it above the peak message rate times twice the window.
///
/// Each signer member may hold at most its share of the entries
/// ([`ReplayCache::with_max_per_member`], default all of them): beyond it
/// that member's new messages are refused with
/// [`ProfileError::ReplayShareFull`] while other members keep being
/// accepted. The count is one more hash lookup per message.
///
/// Thread-safe (one mutex). **Each node process has its own cache**; several
/// processes behind a load balancer share no memory, so there the node
/// backs the replay check with its database instead.
pub struct ReplayCache {
    window: u64,
    max_entries: usize,
    max_per_member: usize,
    inner: Mutex<ReplayInner>,
}

impl fmt::Debug for ReplayCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplayCache")
            .field("window", &self.window)
            .field("max_entries", &self.max_entries)
            .field("max_per_member", &self.max_per_member)
            .field("len", &self.len())
            .finish()
    }
}

impl ReplayCache {
    /// A cache for `window` seconds holding at most `max_entries` entries,
    /// with no per-member share below that.
    #[must_use]
    pub fn new(window: u64, max_entries: usize) -> Self {
        Self {
            window,
            max_entries,
            max_per_member: max_entries,
            inner: Mutex::new(ReplayInner {
                map: HashMap::new(),
                queue: VecDeque::new(),
                per_member: HashMap::new(),
                seq: 0,
            }),
        }
    }

    /// With at most `max_per_member` live entries for any one signer
    /// member (capped at `max_entries`).
    #[must_use]
    pub fn with_max_per_member(mut self, max_per_member: usize) -> Self {
        self.max_per_member = max_per_member.min(self.max_entries);
        self
    }

    /// The window in seconds.
    #[must_use]
    pub fn window(&self) -> u64 {
        self.window
    }

    /// The per-member share.
    #[must_use]
    pub fn max_per_member(&self) -> usize {
        self.max_per_member
    }

    /// Entries currently held (live or not yet evicted).
    #[must_use]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    /// Whether no entry is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayInner> {
        // A panic while holding the lock cannot leave the maps inconsistent
        // in a way that accepts a replay; keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Record (`id`, `signer`) for a message of `member` created at
    /// `created`, or refuse it as a replay.
    ///
    /// # Errors
    /// [`ProfileError::OutsideWindow`] when `created` is not within
    /// `now ± window`; [`ProfileError::Replay`] when the pair is held and
    /// live; [`ProfileError::ReplayShareFull`] when `member` holds its
    /// share; [`ProfileError::ReplayCacheFull`] when no room can be made.
    pub fn check_and_insert(
        &self,
        id: TransactionId,
        member: &MemberId,
        signer: &str,
        created: i64,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let now = unix(now);
        check_window(created, now, self.window)?;
        let w = i64::try_from(self.window).unwrap_or(i64::MAX);
        let expiry = created.saturating_add(w);
        let key = (id, signer.to_owned());
        let mut inner = self.lock();
        if let Some((exp, _)) = inner.map.get(&key) {
            if *exp >= now {
                return Err(ProfileError::Replay {
                    ndxp_id: id,
                    fingerprint: signer.to_owned(),
                });
            }
        }
        // Evict from the front while the conservative deadline has passed.
        while let Some((deadline, ..)) = inner.queue.front() {
            if *deadline >= now {
                break;
            }
            if let Some((_, seq, k, m)) = inner.queue.pop_front() {
                if inner.map.get(&k).is_some_and(|(_, s)| *s == seq) {
                    inner.map.remove(&k);
                }
                if let Some(n) = inner.per_member.get_mut(&m) {
                    *n -= 1;
                    if *n == 0 {
                        inner.per_member.remove(&m);
                    }
                }
            }
        }
        if inner.queue.len() >= self.max_entries {
            return Err(ProfileError::ReplayCacheFull {
                max_entries: self.max_entries,
            });
        }
        let member = match inner.per_member.get_key_value(member) {
            Some((_, n)) if *n >= self.max_per_member => {
                return Err(ProfileError::ReplayShareFull {
                    member: Box::new(member.clone()),
                    max_per_member: self.max_per_member,
                })
            }
            Some((m, _)) => m.clone(),
            None => Arc::new(member.clone()),
        };
        *inner.per_member.entry(member.clone()).or_insert(0) += 1;
        inner.seq += 1;
        let seq = inner.seq;
        let deadline = now.saturating_add(w.saturating_mul(2)).max(expiry);
        inner.map.insert(key.clone(), (expiry, seq));
        inner.queue.push_back((deadline, seq, key, member));
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Intermediaries: the central gateway's DigiSign adapter
// ---------------------------------------------------------------------------

/// Sign a request head on behalf of a client of another member, as the
/// central gateway does for consumers without a node (DigiSign adapter,
/// docs/design.md §9).
///
/// The same as [`sign_request`] (same headers, components and parameters,
/// so the result is an ordinary NDXP-profile signature), except that
/// `NDXP-Client` need not belong to the signer's member: the signer vouches
/// that it authenticated that client. A receiver accepts such a request
/// with [`verify_request_from_intermediary`], naming the intermediaries it
/// trusts; [`verify_request`] refuses it.
///
/// # Errors
/// As [`sign_request`], without [`ProfileError::ClientNotOfSigner`].
pub fn sign_request_as_intermediary(
    parts: &mut http::request::Parts,
    body_digest: &str,
    signer: &Signer,
    now: DateTime<Utc>,
) -> Result<SignedInfo> {
    read_client(&parts.headers)?;
    let ndxp_id = read_id(&parts.headers)?;
    check_optional_fields(&parts.headers)?;
    set_header(
        &mut parts.headers,
        CONTENT_DIGEST,
        content_digest_value(body_digest)?,
    );
    set_header(&mut parts.headers, SIGNER_CERT, signer.cert_header.clone());
    let created = now.timestamp();
    let params = signer.params(request_components(&parts.headers), created);
    let out = httpsig::create_signature(
        &MessageView::Request(request_view(parts)),
        LABEL,
        &params,
        &signer.key,
    )
    .map_err(ProfileError::Signature)?;
    httpsig::attach_signature(&mut parts.headers, &out).map_err(ProfileError::Signature)?;
    Ok(to_signed_info(out, ndxp_id, created, signer))
}

/// Verify a request head signed either by the client's own member or by
/// one of `intermediaries` (e.g. the central gateway's member) acting for
/// it; see [`sign_request_as_intermediary`].
///
/// Every check of [`verify_request`] applies, except that the signing
/// member may also be one of `intermediaries`.
///
/// # Errors
/// As [`verify_request`]; [`ProfileError::ClientNotOfSigner`] when the
/// signer is neither the client's member nor a listed intermediary.
pub fn verify_request_from_intermediary(
    parts: &http::request::Parts,
    policy: &ProfilePolicy,
    intermediaries: &[MemberId],
    now: DateTime<Utc>,
) -> Result<VerifiedMessage> {
    let client = read_client(&parts.headers)?;
    let required_components = request_components(&parts.headers);
    let msg = MessageView::Request(request_view(parts));
    let mut vm = verify_message(&msg, &parts.headers, required_components, policy, now)?;
    if client.member() != &vm.signer && !intermediaries.contains(&vm.signer) {
        return Err(ProfileError::ClientNotOfSigner {
            client: Box::new(client),
            signer: Box::new(vm.signer),
        });
    }
    check_replay(&vm, policy, now)?;
    vm.client = Some(client);
    Ok(vm)
}

#[cfg(test)]
mod intermediary_tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::ca::{InitOptions, Pki};
    use crate::cert::Profile;
    use crate::{csr, key::KeyAlgorithm};

    fn signer_of(pki: &Pki, member: &str) -> Signer {
        let member: MemberId = member.parse().unwrap();
        let key = KeyAlgorithm::EcP256.generate().unwrap();
        let req = csr::build_sign_csr(&member, &key).unwrap();
        let cert = pki.issue(&req, Profile::Sign, 30).unwrap();
        Signer::new(key, cert, pki.chain().to_vec()).unwrap()
    }

    fn head(client: &str) -> http::request::Parts {
        http::Request::get("http://backend.example/persons/001")
            .header(NDXP_CLIENT, client)
            .header(NDXP_ID, TransactionId::new().to_string())
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    #[test]
    fn a_gateway_signs_for_a_client_of_another_member() {
        let tmp = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            ocsp_url: "http://127.0.0.1:1/ocsp".into(),
            ..InitOptions::default()
        };
        let pki = Pki::init(&tmp.path().join("pki"), &opts).unwrap();
        let gateway = signer_of(&pki, "VN/GOV/000.00.00.A01");
        let now = Utc::now();
        let body = b"{}";
        let digest = digest::content_digest(body);

        // The ordinary signer refuses; the intermediary form signs.
        let mut parts = head("VN/GOV/000.00.00.G22/QLHT");
        assert!(matches!(
            sign_request(&mut parts, &digest, &gateway, now),
            Err(ProfileError::ClientNotOfSigner { .. })
        ));
        let mut parts = head("VN/GOV/000.00.00.G22/QLHT");
        let info = sign_request_as_intermediary(&mut parts, &digest, &gateway, now).unwrap();
        assert_eq!(info.fingerprint, gateway.fingerprint());

        let policy = ProfilePolicy::new(vec![pki.root_cert().clone()]);
        // A receiver that does not name the gateway refuses the request ...
        assert!(matches!(
            verify_request(&parts, &policy, now),
            Err(ProfileError::ClientNotOfSigner { .. })
        ));
        assert!(matches!(
            verify_request_from_intermediary(&parts, &policy, &[], now),
            Err(ProfileError::ClientNotOfSigner { .. })
        ));
        // ... one that trusts it as an intermediary accepts it.
        let vm =
            verify_request_from_intermediary(&parts, &policy, &[gateway.member().clone()], now)
                .unwrap();
        assert_eq!(&vm.signer, gateway.member());
        assert_eq!(vm.client.unwrap().to_string(), "VN/GOV/000.00.00.G22/QLHT");
        digest::verify_content_digest(&vm.content_digest, body).unwrap();

        // A tampered head fails like any other NDXP signature.
        parts.headers.insert(
            NDXP_CLIENT,
            HeaderValue::from_static("VN/GOV/000.00.00.G22/OTHER"),
        );
        assert!(verify_request_from_intermediary(
            &parts,
            &policy,
            &[gateway.member().clone()],
            now
        )
        .is_err());
    }
}
