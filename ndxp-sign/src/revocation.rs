//! Revocation vocabulary shared by the CA, the OCSP responder and client, and
//! chain validation: the status of one certificate and the RFC 5280 reason
//! codes.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// The revocation status of one certificate, as a CA knows it or as an OCSP
/// response states it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CertStatus {
    /// Issued by this CA and not revoked.
    Good,
    /// Revoked at `at` for `reason`.
    Revoked {
        /// When the revocation took effect.
        at: DateTime<Utc>,
        /// Why it was revoked.
        reason: RevocationReason,
    },
    /// The responder does not know the certificate (not issued by this CA).
    Unknown,
}

/// Revocation reasons of RFC 5280 §5.3.1 (`CRLReason`), with their numeric
/// codes. Code 7 is unassigned in the RFC and has no variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevocationReason {
    /// `unspecified` (0)
    Unspecified,
    /// `keyCompromise` (1)
    KeyCompromise,
    /// `cACompromise` (2)
    CaCompromise,
    /// `affiliationChanged` (3)
    AffiliationChanged,
    /// `superseded` (4)
    Superseded,
    /// `cessationOfOperation` (5)
    CessationOfOperation,
    /// `certificateHold` (6)
    CertificateHold,
    /// `removeFromCRL` (8)
    RemoveFromCrl,
    /// `privilegeWithdrawn` (9)
    PrivilegeWithdrawn,
    /// `aACompromise` (10)
    AaCompromise,
}

const REASONS: [(RevocationReason, &str, i32); 10] = [
    (RevocationReason::Unspecified, "unspecified", 0),
    (RevocationReason::KeyCompromise, "keyCompromise", 1),
    (RevocationReason::CaCompromise, "cACompromise", 2),
    (RevocationReason::AffiliationChanged, "affiliationChanged", 3),
    (RevocationReason::Superseded, "superseded", 4),
    (RevocationReason::CessationOfOperation, "cessationOfOperation", 5),
    (RevocationReason::CertificateHold, "certificateHold", 6),
    (RevocationReason::RemoveFromCrl, "removeFromCRL", 8),
    (RevocationReason::PrivilegeWithdrawn, "privilegeWithdrawn", 9),
    (RevocationReason::AaCompromise, "aACompromise", 10),
];

impl RevocationReason {
    /// The RFC 5280 name, e.g. `keyCompromise`.
    pub fn name(self) -> &'static str {
        REASONS
            .iter()
            .find(|(r, _, _)| *r == self)
            .map(|(_, n, _)| *n)
            .unwrap_or("unspecified")
    }

    /// The RFC 5280 numeric code, e.g. 1 for `keyCompromise`.
    pub fn code(self) -> i32 {
        REASONS
            .iter()
            .find(|(r, _, _)| *r == self)
            .map(|(_, _, c)| *c)
            .unwrap_or(0)
    }

    /// The reason for a numeric code, if the code is assigned.
    pub fn from_code(code: i32) -> Option<Self> {
        REASONS.iter().find(|(_, _, c)| *c == code).map(|(r, _, _)| *r)
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The error for a reason name that RFC 5280 does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown revocation reason {0:?}; expected one of: unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, removeFromCRL, privilegeWithdrawn, aACompromise")]
pub struct UnknownReason(pub String);

impl FromStr for RevocationReason {
    type Err = UnknownReason;

    /// Parses an RFC 5280 reason name. Matching ignores ASCII case, so
    /// `keycompromise` and `caCompromise` are accepted too.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        REASONS
            .iter()
            .find(|(_, n, _)| n.eq_ignore_ascii_case(s))
            .map(|(r, _, _)| *r)
            .ok_or_else(|| UnknownReason(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_codes_round_trip() {
        for (r, n, c) in REASONS {
            assert_eq!(r.name(), n);
            assert_eq!(r.code(), c);
            assert_eq!(n.parse::<RevocationReason>().unwrap(), r);
            assert_eq!(RevocationReason::from_code(c), Some(r));
        }
        assert_eq!(RevocationReason::from_code(7), None);
        let err = "stolen".parse::<RevocationReason>().unwrap_err();
        assert!(err.to_string().contains("keyCompromise"));
    }
}
