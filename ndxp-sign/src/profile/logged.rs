//! Offline re-verification of a logged signature ([`verify_logged`]).

use chrono::DateTime;
use http::header::{HeaderMap, HeaderValue};
use ndxp_core::MemberId;
use openssl::x509::X509;

use crate::cert::{self, CertError};
use crate::chain::{self, Purpose, RevocationChecker};
use crate::httpsig::{self, SignatureError, VerifyingKey};

use super::{ProfileError, Result, LABEL, TAG};

/// Re-verify a logged signature without the peer and without the HTTP
/// message: from the signature base, the `Signature-Input` and `Signature`
/// members and the certificates recorded in a [`VerifiedMessage`](super::VerifiedMessage) (or a
/// [`SignedInfo`](super::SignedInfo) plus the signer's certificate).
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
