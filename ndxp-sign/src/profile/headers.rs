//! Readers of the profile's header fields.

use http::header::HeaderMap;
use ndxp_core::{SubsystemId, TransactionId};
use openssl::x509::X509;
use sfv::{BareItem, List, ListEntry, Parser, Version};

use crate::cert::CertError;

use super::{
    malformed, malformed_by, ProfileError, Result, MAX_SIGNER_CERTS, NDXP_CLIENT, NDXP_ID,
    NDXP_REQUEST_ID, NDXP_USER_ID, SIGNER_CERT,
};

/// The single value of `name` as text; repeated or non-ASCII values are
/// malformed.
pub(super) fn single<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>> {
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

pub(super) fn required<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str> {
    single(headers, name)?.ok_or(ProfileError::MissingHeader(name))
}

pub(super) fn read_client(headers: &HeaderMap) -> Result<SubsystemId> {
    required(headers, NDXP_CLIENT)?
        .parse()
        .map_err(malformed_by(NDXP_CLIENT, "not a subsystem identifier"))
}

pub(super) fn read_id(headers: &HeaderMap) -> Result<TransactionId> {
    required(headers, NDXP_ID)?
        .parse()
        .map_err(malformed_by(NDXP_ID, "not a UUID v7 transaction id"))
}

pub(super) fn check_optional_fields(headers: &HeaderMap) -> Result<()> {
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
pub(super) fn raw_signer_cert_header(headers: &HeaderMap, max_bytes: usize) -> Result<Vec<u8>> {
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

pub(super) fn parse_cert_list(joined: &[u8]) -> Result<Vec<X509>> {
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
