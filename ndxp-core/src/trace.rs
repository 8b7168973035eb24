//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the
//! `traceparent` and `tracestate` header values that let an operator follow
//! one request through the information system, both nodes, the central
//! gateway and the backend.
//!
//! Parsing never fails loudly: a value that is not a valid `traceparent`
//! is `None`, and the caller starts a fresh trace (the specification's
//! rule: a malformed header is ignored, not an error).
//!
//! ```
//! use ndxp_core::trace::{TraceParent, TraceState};
//!
//! let tp = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
//! assert_eq!(tp.trace_id.to_string(), "4bf92f3577b34da6a3ce929d0e0e4736");
//! assert!(tp.sampled());
//! // A child hop keeps the trace id and names its own span as the parent.
//! let child = tp.child([1, 2, 3, 4, 5, 6, 7, 8].into());
//! assert_eq!(child.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-0102030405060708-01");
//! assert!(TraceParent::parse("00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
//! assert!(TraceState::parse("vendor=x\u{7}").is_none());
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The `traceparent` header name.
pub const TRACEPARENT: &str = "traceparent";
/// The `tracestate` header name.
pub const TRACESTATE: &str = "tracestate";

/// Longest `tracestate` value carried on (the specification lets a hop
/// truncate at 512 characters; NDXP drops a longer one whole).
pub const MAX_TRACESTATE: usize = 512;

/// A 16-byte trace id, written as 32 lowercase hex digits; never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId([u8; 16]);

/// An 8-byte span id, written as 16 lowercase hex digits; never all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId([u8; 8]);

/// Why a text is not a trace id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a trace id: use 32 lowercase hex digits, not all zero")]
pub struct TraceIdError(pub String);

fn lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let b = s.as_bytes();
    if b.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let d = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = (d(pair[0])? << 4) | d(pair[1])?;
    }
    Some(out)
}

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl TraceId {
    /// The id's bytes, or `None` for the invalid all-zero id.
    pub fn from_bytes(b: [u8; 16]) -> Option<Self> {
        (b != [0; 16]).then_some(Self(b))
    }

    /// The 16 bytes.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0
    }
}

impl SpanId {
    /// The id's bytes, or `None` for the invalid all-zero id.
    pub fn from_bytes(b: [u8; 8]) -> Option<Self> {
        (b != [0; 8]).then_some(Self(b))
    }

    /// The 8 bytes.
    pub fn to_bytes(self) -> [u8; 8] {
        self.0
    }
}

impl From<[u8; 8]> for SpanId {
    /// Bytes as a span id; the all-zero value becomes `…01` so that the
    /// result is always valid (for callers that draw random bytes).
    fn from(mut b: [u8; 8]) -> Self {
        if b == [0; 8] {
            b[7] = 1;
        }
        Self(b)
    }
}

impl From<[u8; 16]> for TraceId {
    /// Bytes as a trace id; the all-zero value becomes `…01` so that the
    /// result is always valid (for callers that draw random bytes).
    fn from(mut b: [u8; 16]) -> Self {
        if b == [0; 16] {
            b[15] = 1;
        }
        Self(b)
    }
}

impl FromStr for TraceId {
    type Err = TraceIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        lower_hex::<16>(s)
            .and_then(Self::from_bytes)
            .ok_or_else(|| TraceIdError(s.to_string()))
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl Serialize for TraceId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A parsed `traceparent`: the trace, the caller's span and the flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace the request belongs to.
    pub trace_id: TraceId,
    /// The span of the hop that sent the request (`parent-id`).
    pub parent_id: SpanId,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceParent {
    /// Parses a `traceparent` value; `None` when it is not valid.
    ///
    /// Version `00` must be exactly `00-<32 hex>-<16 hex>-<2 hex>`; a
    /// later version (not `ff`) is read by its first four fields when what
    /// follows starts with `-`, as the specification asks. Hex is lowercase
    /// only; all-zero ids are invalid. Surrounding spaces and tabs are
    /// ignored.
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim_matches([' ', '\t']);
        if v.len() < 55 || !v.is_char_boundary(55) {
            return None;
        }
        let (head, rest) = v.split_at(55);
        let version = lower_hex::<1>(head.get(0..2)?)?[0];
        if version == 0xff || (version == 0 && !rest.is_empty()) {
            return None;
        }
        if version != 0 && !rest.is_empty() && !rest.starts_with('-') {
            return None;
        }
        let b = head.as_bytes();
        if b[2] != b'-' || b[35] != b'-' || b[52] != b'-' {
            return None;
        }
        Some(Self {
            trace_id: TraceId::from_bytes(lower_hex::<16>(head.get(3..35)?)?)?,
            parent_id: SpanId::from_bytes(lower_hex::<8>(head.get(36..52)?)?)?,
            flags: lower_hex::<1>(head.get(53..55)?)?[0],
        })
    }

    /// A fresh trace's first hop: `trace_id`, `span` as the parent, sampled.
    pub fn new_root(trace_id: TraceId, span: SpanId) -> Self {
        Self {
            trace_id,
            parent_id: span,
            flags: 0x01,
        }
    }

    /// The value to send on from a hop whose own span is `span`: the same
    /// trace and flags, `span` as the parent.
    pub fn child(&self, span: SpanId) -> Self {
        Self {
            parent_id: span,
            ..*self
        }
    }

    /// Whether the caller recorded its span (flag bit 0).
    pub fn sampled(&self) -> bool {
        self.flags & 0x01 != 0
    }
}

impl fmt::Display for TraceParent {
    /// Always version `00`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id, self.parent_id, self.flags
        )
    }
}

/// A `tracestate` value, carried on unchanged when it is well formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceState(String);

impl TraceState {
    /// Accepts a value of at most [`MAX_TRACESTATE`] characters made of
    /// list members `key=value` separated by commas (optional spaces and
    /// empty members allowed), with at most 32 members, keys of lowercase
    /// letters, digits and `_-*/@`, and values of printable ASCII other
    /// than `,` and `=`; anything else is `None` (dropped, never an error).
    pub fn parse(value: &str) -> Option<Self> {
        let v = value.trim_matches([' ', '\t']);
        if v.is_empty() || v.len() > MAX_TRACESTATE {
            return None;
        }
        let mut members = 0;
        for member in v.split(',') {
            let member = member.trim_matches([' ', '\t']);
            if member.is_empty() {
                continue;
            }
            members += 1;
            let (key, val) = member.split_once('=')?;
            let key_ok = !key.is_empty()
                && key.len() <= 256
                && key.bytes().all(
                    |c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'),
                );
            let val_ok = !val.is_empty()
                && val.len() <= 256
                && val
                    .bytes()
                    .all(|c| (0x20..=0x7e).contains(&c) && c != b',' && c != b'=')
                && !val.ends_with(' ');
            if !key_ok || !val_ok || members > 32 {
                return None;
            }
        }
        (members > 0).then(|| Self(v.to_string()))
    }

    /// The value as received (trimmed).
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specification_examples() {
        let tp = TraceParent::parse(GOOD).unwrap();
        assert_eq!(tp.to_string(), GOOD);
        assert_eq!(tp.parent_id.to_string(), "00f067aa0ba902b7");
        let unsampled = TraceParent::parse(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn malformed_values_are_none() {
        for bad in [
            "",
            "00",
            &GOOD[..54],
            &format!("{GOOD}-"),             // version 00 takes nothing after
            &GOOD.replace("4bf9", "4BF9"),   // uppercase
            &GOOD.replacen("00-", "ff-", 1), // version ff
            &GOOD.replacen('-', "_", 1),     // separator
            &GOOD.replace("00f067aa0ba902b7", "0000000000000000"), // zero parent
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0x",
            "é0-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let v = GOOD.replacen("00-", "cc-", 1);
        assert!(TraceParent::parse(&v).is_some());
        assert!(TraceParent::parse(&format!("{v}-what-ever")).is_some());
        assert!(TraceParent::parse(&format!("{v}what")).is_none());
        // What is sent on is always version 00.
        assert_eq!(TraceParent::parse(&v).unwrap().to_string(), GOOD);
    }

    #[test]
    fn tracestate_is_checked_not_rewritten() {
        assert_eq!(
            TraceState::parse("rojo=00f067aa0ba902b7, congo=t61rcWkgMzE")
                .unwrap()
                .as_str(),
            "rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"
        );
        assert!(TraceState::parse("tenant@vendor=x,,").is_some());
        for bad in ["", "noequals", "Upper=x", "k=", "k=a,b", &"k=v,".repeat(33)] {
            assert_eq!(TraceState::parse(bad), None, "{bad:?}");
        }
        assert!(TraceState::parse(&format!("k={}", "v".repeat(MAX_TRACESTATE))).is_none());
    }

    #[test]
    fn trace_id_text_and_json() {
        let id: TraceId = "4bf92f3577b34da6a3ce929d0e0e4736".parse().unwrap();
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"4bf92f3577b34da6a3ce929d0e0e4736\""
        );
        assert!("00000000000000000000000000000000"
            .parse::<TraceId>()
            .is_err());
        assert!(serde_json::from_str::<TraceId>("\"4BF92F3577B34DA6A3CE929D0E0E4736\"").is_err());
    }

    proptest! {
        /// Any text: no panic, and what parses prints back to a value that
        /// parses to the same thing.
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            if let Some(tp) = TraceParent::parse(&s) {
                prop_assert_eq!(TraceParent::parse(&tp.to_string()), Some(tp));
            }
            let _ = TraceState::parse(&s);
            let _ = s.parse::<TraceId>();
        }

        /// Near-valid text (the right alphabet and length): the same.
        #[test]
        fn near_valid_never_panics(s in "[0-9a-fA-F-]{50,60}") {
            if let Some(tp) = TraceParent::parse(&s) {
                prop_assert_eq!(TraceParent::parse(&tp.to_string()), Some(tp));
            }
        }

        /// Every valid value round-trips.
        #[test]
        fn valid_values_round_trip(t in any::<[u8; 16]>(), p in any::<[u8; 8]>(), f in any::<u8>()) {
            prop_assume!(t != [0; 16] && p != [0; 8]);
            let tp = TraceParent { trace_id: TraceId(t), parent_id: SpanId(p), flags: f };
            prop_assert_eq!(TraceParent::parse(&tp.to_string()), Some(tp));
            let id = TraceId(t);
            prop_assert_eq!(id.to_string().parse::<TraceId>(), Ok(id));
        }
    }
}
