//! Signing requests and responses under the profile.

use chrono::{DateTime, Utc};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use ndxp_core::TransactionId;
use openssl::sha::sha256;

use crate::digest;
use crate::httpsig::{self, Algorithm, MessageView};

use super::components::request_view;
use super::headers::{check_optional_fields, read_client, read_id};
use super::{
    malformed_by, request_components, response_components, ProfileError, Result, Signer,
    SignerRole, CONTENT_DIGEST, LABEL, NDXP_ID, SIGNER_CERT,
};

/// What was signed; the sender logs it like a [`VerifiedMessage`](super::VerifiedMessage).
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

pub(super) fn set_header(headers: &mut HeaderMap, name: &'static str, value: HeaderValue) {
    headers.insert(HeaderName::from_static(name), value);
}

pub(super) fn content_digest_value(body_digest: &str) -> Result<HeaderValue> {
    digest::ParsedContentDigest::parse(body_digest).map_err(malformed_by(
        CONTENT_DIGEST,
        "not a valid RFC 9530 field value",
    ))?;
    HeaderValue::from_str(body_digest)
        .map_err(malformed_by(CONTENT_DIGEST, "not a valid header value"))
}

/// Set `Content-Digest` to `body_digest` and `NDXP-Signer-Cert` to the
/// signer's certificates on a head about to be signed.
fn set_signed_fields(headers: &mut HeaderMap, body_digest: &str, signer: &Signer) -> Result<()> {
    set_header(headers, CONTENT_DIGEST, content_digest_value(body_digest)?);
    set_header(headers, SIGNER_CERT, signer.cert_header.clone());
    Ok(())
}

/// Attach the signature `out` to `headers` and say what was signed.
fn attach(
    headers: &mut HeaderMap,
    out: std::result::Result<httpsig::SignatureOutput, httpsig::SignatureError>,
    ndxp_id: TransactionId,
    created: i64,
    signer: &Signer,
) -> Result<SignedInfo> {
    let out = out.map_err(ProfileError::Signature)?;
    httpsig::attach_signature(headers, &out).map_err(ProfileError::Signature)?;
    Ok(SignedInfo {
        ndxp_id,
        created,
        algorithm: signer.algorithm(),
        fingerprint: signer.fingerprint.clone(),
        signature_input: out.signature_input,
        signature: out.signature,
        base_sha256: sha256(out.base.as_bytes()),
        base: out.base,
    })
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
/// A signer in the [`SignerRole::Member`] role (a node) signs only for
/// clients of its own member. One in the [`SignerRole::Intermediary`] role
/// (the central gateway's DigiSign adapter, docs/design.md §9) signs for a
/// client of any member it authenticated itself; the signature is the same
/// ordinary NDXP-profile signature, which a receiver accepts with
/// [`verify_request_from_intermediary`](super::verify_request_from_intermediary)
/// when it names the intermediary ([`verify_request`](super::verify_request)
/// refuses it).
///
/// # Errors
/// [`ProfileError::MissingHeader`] / [`ProfileError::MalformedHeader`] for
/// absent or invalid `NDXP-Client`, `NDXP-Id` or `body_digest`;
/// [`ProfileError::ClientNotOfSigner`] when `NDXP-Client` is not a
/// subsystem of the signer's member and the signer is not an intermediary;
/// [`ProfileError::Signature`] when the
/// head cannot be signed (e.g. a non-ASCII covered field, an `ndxp`
/// signature already present).
pub fn sign_request(
    parts: &mut http::request::Parts,
    body_digest: &str,
    signer: &Signer,
    now: DateTime<Utc>,
) -> Result<SignedInfo> {
    let client = read_client(&parts.headers)?;
    if signer.role == SignerRole::Member && client.member() != signer.member() {
        return Err(ProfileError::ClientNotOfSigner {
            client: Box::new(client),
            signer: Box::new(signer.member.clone()),
        });
    }
    let ndxp_id = read_id(&parts.headers)?;
    check_optional_fields(&parts.headers)?;
    set_signed_fields(&mut parts.headers, body_digest, signer)?;
    let created = now.timestamp();
    let params = signer.params(request_components(&parts.headers), created);
    let out = httpsig::create_signature(
        &MessageView::Request(request_view(parts)),
        LABEL,
        &params,
        &signer.key,
    );
    attach(&mut parts.headers, out, ndxp_id, created, signer)
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
    set_signed_fields(&mut parts.headers, body_digest, signer)?;
    let created = now.timestamp();
    let params = signer.params(response_components(), created);
    let out = httpsig::create_signature(
        &MessageView::response(parts, Some(request_view(request))),
        LABEL,
        &params,
        &signer.key,
    );
    attach(&mut parts.headers, out, ndxp_id, created, signer)
}
