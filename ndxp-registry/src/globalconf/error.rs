//! The one error type of the global configuration module.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use ndxp_core::{InstanceId, MemberId};
use ndxp_sign::cert::CertError;
use ndxp_sign::jws::JwsError;

/// Why a global configuration (or its anchor) was refused, or could not be
/// built, signed, fetched or stored.
///
/// A node maps every refusal of the document it serves on to
/// `ndxp.conf_expired` (when [`ConfError::Expired`] or
/// [`ConfError::NotLoaded`]) or keeps serving on the document it holds (any
/// other refusal of a newer offer).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// The compact JWS is not well formed (parts, base64url, header JSON,
    /// unsupported or disallowed algorithm, `crit`).
    #[error("the global configuration is not a well-formed JWS: {0}")]
    Envelope(#[source] JwsError),
    /// The JWS `typ` header is not the global configuration's.
    #[error("the JWS has type {found:?}, expected {expected:?}: it is not a global configuration")]
    WrongType {
        /// The `typ` required.
        expected: &'static str,
        /// The `typ` found (if any).
        found: Option<String>,
    },
    /// The signature does not verify with the signer certificate's key.
    #[error("the global configuration's signature is invalid: {0}")]
    Signature(#[source] JwsError),
    /// The `x5c` chain is missing or does not reach a trust anchor of the
    /// anchor file at the verification time.
    #[error("the global configuration's signer is not trusted by the anchor file: {0}")]
    Untrusted(#[source] JwsError),
    /// The signer certificate is not a signing certificate of the member the
    /// anchor file names.
    #[error("the global configuration is signed by {found}, but the anchor file requires member {expected}")]
    WrongSigner {
        /// The member the anchor requires.
        expected: MemberId,
        /// What the signer certificate identifies (or why it identifies
        /// nothing).
        found: String,
    },
    /// The payload is not a valid global configuration document (JSON
    /// shape, identifiers, or one of the document rules).
    #[error("the global configuration payload is malformed: {0}")]
    Malformed(#[source] serde_json::Error),
    /// A document built by the caller breaks a document rule.
    #[error("invalid global configuration: {reason}")]
    Invalid {
        /// The rule broken.
        reason: String,
    },
    /// The document is for another instance than the anchor's.
    #[error(
        "the global configuration is for instance {found}, but the anchor file is for {expected}"
    )]
    WrongInstance {
        /// The anchor's instance.
        expected: InstanceId,
        /// The document's instance.
        found: InstanceId,
    },
    /// The document has expired.
    #[error("the global configuration expired at {expires_at}; the management server must publish a new one")]
    Expired {
        /// When it expired.
        expires_at: DateTime<Utc>,
    },
    /// The document claims to be generated in the future (beyond the allowed
    /// clock skew): a clock is wrong on one side.
    #[error("the global configuration was generated at {generated_at}, which is in the future; check the clocks of this node and the management server")]
    FromFuture {
        /// The document's `generated_at`.
        generated_at: DateTime<Utc>,
    },
    /// The offered document is older than the one held (a rollback).
    #[error("refusing global configuration version {offered}: version {held} is already held")]
    Older {
        /// Version held.
        held: u64,
        /// Version offered.
        offered: u64,
    },
    /// The input is larger than the limit.
    #[error("the global configuration is larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The anchor file is not valid.
    #[error("invalid configuration anchor: {reason}")]
    Anchor {
        /// What is wrong.
        reason: String,
    },
    /// The anchor file is not valid JSON of the right shape.
    #[error("the configuration anchor is malformed: {0}")]
    AnchorJson(#[source] serde_json::Error),
    /// A certificate in the document or anchor could not be read.
    #[error("a certificate in the global configuration could not be read")]
    Certificate(#[source] CertError),
    /// Signing failed (unsuitable key, key and certificate do not match, ...).
    #[error("could not sign the global configuration: {0}")]
    Sign(#[source] JwsError),
    /// Reading or writing a file failed.
    #[error("{op} {path}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP request for the document failed.
    #[error("could not fetch the global configuration: {0}")]
    Fetch(#[source] reqwest::Error),
    /// The server answered with a status other than 200.
    #[error("the global configuration server answered HTTP {0}")]
    Status(u16),
    /// No document is held (none on disk, none fetched yet).
    #[error("no global configuration has been loaded yet")]
    NotLoaded,
}

impl ConfError {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::Invalid {
            reason: reason.into(),
        }
    }

    pub(crate) fn anchor(reason: impl Into<String>) -> Self {
        Self::Anchor {
            reason: reason.into(),
        }
    }
}
