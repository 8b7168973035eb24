//! What nodes send to management for monitoring and reconciliation
//! (`docs/monitoring.md`), shared by the sender (`ndxp_node::report`) and
//! the receiver (the management API of `ndxp-gateway`).
//!
//! Every upload is an [`Envelope`] signed as a compact JWS (RFC 7515) with
//! the member's signing key, `x5c` carrying the signing certificate and its
//! intermediates, and a `typ` naming what it carries:
//!
//! | `typ` | body | endpoint |
//! |---|---|---|
//! | [`STATUS_TYP`] | [`NodeStatus`] | `POST /api/v1/monitoring/status` |
//! | [`SUMMARY_TYP`] | [`crate::reconcile::Summary`] | `POST /api/v1/reconciliation/summaries` |
//! | [`POLL_TYP`] | [`DrilldownPoll`] | `POST /api/v1/reconciliation/drilldowns/poll` |
//! | [`ANSWER_TYP`] | [`DrilldownAnswer`] | `POST /api/v1/reconciliation/drilldowns/{id}` |
//!
//! [`verify_envelope`] checks what needs no database: the chain to a
//! trusted CA (signing certificate profile), the `typ`, the signer's member
//! against the envelope's `member`, `iat` within [`MAX_SKEW_SECS`] and the
//! form of `jti`. The receiver then checks that the node is registered for
//! the member and that the `jti` was not seen before.

use chrono::{DateTime, Utc};
use ndxp_core::{MemberId, NodeName, ServiceId, TransactionId};
use ndxp_sign::chain::{verify_chain, NoRevocationCheck, Purpose};
use ndxp_sign::jws::{self, JwsAlgorithm, JwsError, VerifyOptions};
use ndxp_sign::openssl::pkey::{Id, PKeyRef, Private};
use ndxp_sign::openssl::x509::X509;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::reconcile::{BucketKey, Period, Side};

/// `typ` of a signed node status.
pub const STATUS_TYP: &str = "ndxp-node-status+json";
/// `typ` of a signed reconciliation summary upload.
pub const SUMMARY_TYP: &str = "ndxp-reconcile-upload+json";
/// `typ` of a signed drill-down poll.
pub const POLL_TYP: &str = "ndxp-drilldown-poll+json";
/// `typ` of a signed drill-down answer.
pub const ANSWER_TYP: &str = "ndxp-drilldown-answer+json";

/// How far `iat` may lie from the receiver's clock, in seconds.
pub const MAX_SKEW_SECS: i64 = 300;

/// Largest signed upload accepted, in bytes (a summary of ~10,000 buckets,
/// or a drill-down answer of ~200,000 ids).
pub const MAX_UPLOAD_BYTES: usize = 16 * 1024 * 1024;

/// Most services in one [`NodeStatus`].
pub const MAX_SERVICES: usize = 10_000;

/// Longest text field (software version, detail) in a [`NodeStatus`].
pub const MAX_TEXT_CHARS: usize = 500;

/// What a node (or a member without a node) signs and sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope<T> {
    /// The member whose signing key signs the envelope.
    pub member: MemberId,
    /// The node sending it; absent for a member without a node (a provider
    /// submitting its summaries itself).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<NodeName>,
    /// Issued at, Unix seconds.
    pub iat: i64,
    /// A value never used twice by this member: 1 to 128 characters of
    /// `A-Z a-z 0-9 . _ -` (a UUID is fine).
    pub jti: String,
    /// What is sent.
    pub body: T,
}

impl<T> Envelope<T> {
    /// An envelope issued now with a fresh UUID v7 `jti`.
    pub fn new(member: MemberId, node: Option<NodeName>, now: DateTime<Utc>, body: T) -> Self {
        Self {
            member,
            node,
            iat: now.timestamp(),
            jti: Uuid::now_v7().to_string(),
            body,
        }
    }
}

/// The status of one provided service, as its node sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceStatus {
    /// The service.
    pub service: ServiceId,
    /// Whether the backend answered the node's last check.
    pub backend_reachable: bool,
    /// How long that check took, in milliseconds.
    #[serde(default)]
    pub latency_ms: Option<u64>,
    /// Why the backend is unreachable, for the operator.
    #[serde(default)]
    pub detail: Option<String>,
}

/// The health of one node, reported on an interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeStatus {
    /// The node software's version, e.g. `0.1.0`.
    pub software_version: String,
    /// The version of the global configuration the node holds.
    #[serde(default)]
    pub globalconf_version: Option<i64>,
    /// Seconds since that configuration was generated.
    #[serde(default)]
    pub globalconf_age_secs: Option<u64>,
    /// When the node's authentication (TLS) certificate expires.
    #[serde(default)]
    pub auth_cert_expires_at: Option<DateTime<Utc>>,
    /// When the member's signing certificate expires.
    #[serde(default)]
    pub sign_cert_expires_at: Option<DateTime<Utc>>,
    /// Seconds the message log's group commit is behind (oldest queued
    /// append), when known.
    #[serde(default)]
    pub log_lag_secs: Option<f64>,
    /// Seconds since the oldest record not yet covered by a timestamp.
    #[serde(default)]
    pub timestamp_lag_secs: Option<f64>,
    /// Every service the node provides.
    #[serde(default)]
    pub services: Vec<ServiceStatus>,
}

impl NodeStatus {
    /// Checks the limits ([`MAX_SERVICES`], [`MAX_TEXT_CHARS`], no
    /// negative or non-finite lag).
    ///
    /// # Errors
    /// A message naming the field.
    pub fn validate(&self) -> Result<(), String> {
        let text_ok = |s: &str| s.chars().count() <= MAX_TEXT_CHARS;
        if self.software_version.trim().is_empty() || !text_ok(&self.software_version) {
            return Err(format!(
                "software_version must be 1 to {MAX_TEXT_CHARS} characters"
            ));
        }
        if self.services.len() > MAX_SERVICES {
            return Err(format!("at most {MAX_SERVICES} services per status"));
        }
        for (name, v) in [
            ("log_lag_secs", self.log_lag_secs),
            ("timestamp_lag_secs", self.timestamp_lag_secs),
        ] {
            if v.is_some_and(|v| !v.is_finite() || v < 0.0) {
                return Err(format!(
                    "{name} must be a finite number of seconds, 0 or more"
                ));
            }
        }
        for s in &self.services {
            if s.detail.as_deref().is_some_and(|d| !text_ok(d)) {
                return Err(format!(
                    "the detail of service {} is longer than {MAX_TEXT_CHARS} characters",
                    s.service
                ));
            }
        }
        Ok(())
    }
}

/// Body of a drill-down poll (nothing beyond the envelope).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrilldownPoll {}

/// A drill-down request management hands a node: send the ids you logged
/// in this bucket of this side for this period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrilldownRequest {
    /// The request's id (answer to `/api/v1/reconciliation/drilldowns/{id}`).
    pub id: Uuid,
    /// The period.
    pub period: Period,
    /// The side of the node's log (`provider`, `consumer`).
    pub side: Side,
    /// The bucket.
    pub key: BucketKey,
}

/// A node's answer to a [`DrilldownRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrilldownAnswer {
    /// The request answered.
    pub id: Uuid,
    /// Every transaction id the node logged in that bucket (the outcome is
    /// the bucket's).
    pub ids: Vec<TransactionId>,
}

/// Why a signed upload was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// Signing failed (the key does not fit the certificate, ...).
    #[error("cannot sign: {0}")]
    Sign(#[source] JwsError),
    /// The JWS or its certificate chain did not verify.
    #[error("the signature or its certificates do not verify: {0}")]
    Signature(#[source] JwsError),
    /// The signer's certificate is not a signing certificate from a trusted
    /// CA.
    #[error("the signer's certificate is not a member signing certificate of a trusted CA: {0}")]
    Certificate(String),
    /// The JWS carries another kind of document.
    #[error("the document is of type {found:?}; this endpoint takes {expected:?}")]
    WrongType {
        /// The `typ` expected.
        expected: &'static str,
        /// The `typ` found.
        found: Option<String>,
    },
    /// The payload is not an envelope of the expected body.
    #[error("the signed payload is malformed: {0}")]
    Malformed(String),
    /// The signer is not the member the envelope names.
    #[error("signed by {signer}, not by a signing certificate of member {member}")]
    WrongSigner {
        /// The signer certificate's subject.
        signer: String,
        /// The member named in the envelope.
        member: MemberId,
    },
    /// `iat` is too far from now.
    #[error("issued at {iat} (Unix seconds), more than {MAX_SKEW_SECS} s from the receiver's clock {now}; check the sender's clock")]
    Stale {
        /// The envelope's `iat`.
        iat: i64,
        /// The receiver's clock.
        now: i64,
    },
    /// `jti` is empty, too long or has other characters.
    #[error("jti must be 1 to 128 characters of A-Z a-z 0-9 . _ -")]
    BadJti,
}

/// The JWS algorithm for a signing key: ES256 for EC keys, PS256 for RSA.
pub fn algorithm_for(key: &PKeyRef<Private>) -> JwsAlgorithm {
    if key.id() == Id::EC {
        JwsAlgorithm::Es256
    } else {
        JwsAlgorithm::Ps256
    }
}

/// Signs `envelope` as a compact JWS of type `typ` with the member's
/// signing `key`; `chain` is the signing certificate then its
/// intermediates.
///
/// # Errors
/// [`EnvelopeError::Sign`], [`EnvelopeError::Malformed`] when the body
/// cannot be encoded.
pub fn sign_envelope<T: Serialize>(
    envelope: &Envelope<T>,
    typ: &str,
    key: &PKeyRef<Private>,
    chain: &[X509],
) -> Result<String, EnvelopeError> {
    let payload =
        serde_json::to_vec(envelope).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    jws::sign(&payload, key, algorithm_for(key), chain, Some(typ)).map_err(EnvelopeError::Sign)
}

fn jti_ok(jti: &str) -> bool {
    (1..=128).contains(&jti.len())
        && jti
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Verifies a signed envelope of type `typ` against the trusted CA
/// certificates `anchors` at `now` (see the module docs for every check).
///
/// # Errors
/// [`EnvelopeError`].
pub fn verify_envelope<T: DeserializeOwned>(
    signed: &str,
    typ: &'static str,
    anchors: &[X509],
    now: DateTime<Utc>,
) -> Result<Envelope<T>, EnvelopeError> {
    let opts = VerifyOptions {
        max_len: MAX_UPLOAD_BYTES,
        ..VerifyOptions::default()
    };
    let v = jws::verify_with_anchors(signed.trim(), anchors, now, &opts)
        .map_err(EnvelopeError::Signature)?;
    if v.header.typ.as_deref() != Some(typ) {
        return Err(EnvelopeError::WrongType {
            expected: typ,
            found: v.header.typ,
        });
    }
    let env: Envelope<T> =
        serde_json::from_slice(&v.payload).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
    let (leaf, intermediates) = v
        .chain
        .split_first()
        .ok_or_else(|| EnvelopeError::Certificate("no signer certificate".into()))?;
    verify_chain(
        leaf,
        intermediates,
        anchors,
        now,
        Purpose::Sign,
        &NoRevocationCheck,
    )
    .map_err(|e| EnvelopeError::Certificate(e.to_string()))?;
    if !ndxp_sign::cert::member_of(leaf).is_ok_and(|m| m == env.member) {
        return Err(EnvelopeError::WrongSigner {
            signer: ndxp_sign::cert::subject_text(leaf.subject_name()),
            member: env.member,
        });
    }
    if (env.iat - now.timestamp()).abs() > MAX_SKEW_SECS {
        return Err(EnvelopeError::Stale {
            iat: env.iat,
            now: now.timestamp(),
        });
    }
    if !jti_ok(&env.jti) {
        return Err(EnvelopeError::BadJti);
    }
    Ok(env)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn jti_rule() {
        assert!(jti_ok("0192f0c4-aa.b_c"));
        assert!(!jti_ok(""));
        assert!(!jti_ok(&"a".repeat(129)));
        assert!(!jti_ok("a b"));
        assert!(!jti_ok("é"));
    }

    #[test]
    fn status_limits() {
        let mut s = NodeStatus {
            software_version: "0.1.0".into(),
            globalconf_version: Some(3),
            globalconf_age_secs: Some(10),
            auth_cert_expires_at: None,
            sign_cert_expires_at: None,
            log_lag_secs: Some(0.5),
            timestamp_lag_secs: None,
            services: vec![],
        };
        assert!(s.validate().is_ok());
        s.log_lag_secs = Some(f64::NAN);
        assert!(s.validate().unwrap_err().contains("log_lag_secs"));
        s.log_lag_secs = Some(-1.0);
        assert!(s.validate().is_err());
        s.log_lag_secs = None;
        s.software_version = " ".into();
        assert!(s.validate().unwrap_err().contains("software_version"));
    }

    proptest! {
        #[test]
        fn verify_never_panics_on_garbage(s in ".{0,400}") {
            let _ = verify_envelope::<NodeStatus>(&s, STATUS_TYP, &[], Utc::now());
        }

        #[test]
        fn envelope_json_parser_never_panics(s in ".{0,400}") {
            let _ = serde_json::from_str::<Envelope<NodeStatus>>(&s);
            let _ = serde_json::from_str::<Envelope<DrilldownAnswer>>(&s);
        }
    }
}
