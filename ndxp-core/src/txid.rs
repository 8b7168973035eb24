//! Transaction ids: UUID version 7 (time-ordered), the same in the logs of
//! both parties of an exchange.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

/// A transaction id (`NDXP-Id`), always a UUID v7.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId(Uuid);

/// Why a text is not a transaction id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionIdError {
    /// Not a UUID in hyphenated form.
    #[error("transaction id is not a hyphenated UUID: {0}")]
    Syntax(String),
    /// A UUID, but not version 7.
    #[error("transaction id must be a UUID version 7, found version {0}")]
    Version(usize),
}

impl TransactionId {
    /// A fresh id from the system clock and random bits.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// Wraps a UUID, which must be version 7.
    pub fn from_uuid(u: Uuid) -> Result<Self, TransactionIdError> {
        match u.get_version_num() {
            7 => Ok(Self(u)),
            v => Err(TransactionIdError::Version(v)),
        }
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// Milliseconds since the Unix epoch encoded in the id.
    pub fn unix_millis(&self) -> u64 {
        let b = self.0.as_bytes();
        b[..6]
            .iter()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
    }
}

impl Default for TransactionId {
    fn default() -> Self {
        Self::new()
    }
}

impl FromStr for TransactionId {
    type Err = TransactionIdError;
    /// Accepts only the 36-character hyphenated form, lower or upper case.
    fn from_str(s: &str) -> Result<Self, TransactionIdError> {
        if s.len() != 36 {
            return Err(TransactionIdError::Syntax(format!(
                "expected 36 characters, found {}",
                s.len()
            )));
        }
        let u = Uuid::try_parse(s).map_err(|e| TransactionIdError::Syntax(e.to_string()))?;
        Self::from_uuid(u)
    }
}

impl fmt::Display for TransactionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl Serialize for TransactionId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TransactionId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_v7_ordered_and_round_trip() {
        let a = TransactionId::new();
        let b = TransactionId::new();
        assert!(a <= b || a.unix_millis() == b.unix_millis());
        assert_eq!(a.as_uuid().get_version_num(), 7);
        assert_eq!(a.to_string().parse::<TransactionId>().unwrap(), a);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        assert!(now.abs_diff(a.unix_millis()) < 60_000);
    }

    #[test]
    fn rejects_other_versions_and_forms() {
        let v4 = "936da01f-9abd-4d9d-80c7-02af85c822a8";
        assert_eq!(
            v4.parse::<TransactionId>(),
            Err(TransactionIdError::Version(4))
        );
        assert!("01936d1e6f1a7c3e9a2b0123456789ab"
            .parse::<TransactionId>()
            .is_err());
        assert!("{01936d1e-6f1a-7c3e-9a2b-0123456789ab}"
            .parse::<TransactionId>()
            .is_err());
    }
}
