//! Verifying requests and responses under a [`ProfilePolicy`].

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use http::header::HeaderMap;
use ndxp_core::{MemberId, SubsystemId, TransactionId};
use openssl::x509::X509;

use crate::chain::RevocationChecker;
use crate::digest;
use crate::httpsig::{self, Algorithm, Component, MessageView, SignatureError, VerifyPolicy};

use super::components::request_view;
use super::headers::{check_optional_fields, read_client, read_id, required};
use super::signer_cache::signer_entry;
use super::{
    malformed_by, request_components, response_components, ProfileError, ReplayCache, Result,
    SignerCache, CONTENT_DIGEST, DEFAULT_WINDOW_SECS, LABEL, TAG,
};

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
/// [`verify_logged`](super::verify_logged)).
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

pub(super) fn unix(now: DateTime<Utc>) -> i64 {
    now.timestamp()
}

pub(super) fn check_window(created: i64, now: i64, window: u64) -> Result<()> {
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
pub(super) fn verify_message(
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
    let (params, signature) =
        httpsig::parse_signature_headers(headers, LABEL, policy.max_field_bytes).map_err(|e| {
            match e {
                SignatureError::MissingHeader(h) => ProfileError::MissingHeader(h),
                e => ProfileError::Signature(e),
            }
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
    let entry = signer_entry(headers, &keyid, alg, policy, now)?;
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
    // The fields were parsed once above; the base is built once, verified
    // and kept for the log.
    let verified =
        httpsig::verify_parsed(msg, LABEL, params, signature, &vpolicy, now_s, &resolver)
            .map_err(ProfileError::Signature)?;
    let signature_input = format!("{LABEL}={}", verified.serialized_params());
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
        base_sha256: verified.base_sha256,
        base: verified.base,
        fingerprint,
    };
    Ok(vm)
}

pub(super) fn check_replay(
    vm: &VerifiedMessage,
    policy: &ProfilePolicy,
    now: DateTime<Utc>,
) -> Result<()> {
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
    verify_request_from_intermediary(parts, policy, &[], now)
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

/// Verify a request head signed either by the client's own member or by
/// one of `intermediaries` (e.g. the central gateway's member) acting for
/// it ([`SignerRole::Intermediary`](super::SignerRole::Intermediary) with [`sign_request`](super::sign_request)).
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
    // Only a message that passed every other check reaches the replay
    // cache, so a forged message cannot block the genuine one.
    check_replay(&vm, policy, now)?;
    vm.client = Some(client);
    Ok(vm)
}
