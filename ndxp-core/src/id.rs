//! Identifiers of the platform (docs/design.md §3): instance, member, subsystem,
//! service with version.
//!
//! Every identifier is a `/`-separated list of segments. A segment matches
//! `[A-Za-z0-9][A-Za-z0-9._-]{0,63}` and never contains `..`; a version
//! matches `v[0-9]+(\.[0-9]+)*`. Parsing is strict: nothing is trimmed,
//! decoded or case-folded, so `parse(display(x)) == x` for every valid `x`
//! and any other input is an error that says what is wrong and where.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest segment allowed, in bytes.
pub const MAX_SEGMENT_LEN: usize = 64;

/// Why an identifier was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdError {
    /// The input was empty.
    #[error("{kind} identifier is empty")]
    Empty {
        /// Which identifier was being parsed.
        kind: &'static str,
    },
    /// Too few or too many `/`-separated segments.
    #[error("{kind} identifier must have {expected} segments ({shape}), found {found}")]
    WrongArity {
        /// Which identifier was being parsed.
        kind: &'static str,
        /// How many segments it needs.
        expected: usize,
        /// How many the input had.
        found: usize,
        /// The expected shape, for the message.
        shape: &'static str,
    },
    /// A segment between two `/` (or at either end) was empty.
    #[error("{kind} identifier has an empty {segment} segment")]
    EmptySegment {
        /// Which identifier was being parsed.
        kind: &'static str,
        /// The name of the empty segment.
        segment: &'static str,
    },
    /// A segment is longer than [`MAX_SEGMENT_LEN`].
    #[error("{segment} segment is {len} bytes long; at most {MAX_SEGMENT_LEN} are allowed")]
    TooLong {
        /// The name of the segment.
        segment: &'static str,
        /// Its length.
        len: usize,
    },
    /// A character outside the allowed set.
    #[error("{segment} segment has {what} {ch:?} at byte {pos}; allowed are A-Z, a-z, 0-9, '.', '_' and '-' (not first)")]
    BadChar {
        /// The name of the segment.
        segment: &'static str,
        /// The offending character.
        ch: char,
        /// Byte offset inside the segment.
        pos: usize,
        /// A word for the kind of character (whitespace, percent-escape, non-ASCII ...).
        what: &'static str,
    },
    /// The segment contains `..`.
    #[error("{segment} segment contains '..'")]
    DoubleDot {
        /// The name of the segment.
        segment: &'static str,
    },
    /// The version does not match `v[0-9]+(\.[0-9]+)*`.
    #[error("version {0:?} must look like v1, v2 or v1.1")]
    BadVersion(String),
}

fn describe(ch: char) -> &'static str {
    if !ch.is_ascii() {
        "non-ASCII character"
    } else if ch.is_ascii_whitespace() {
        "whitespace"
    } else if ch == '%' {
        "percent-escape"
    } else if ch.is_ascii_control() {
        "control character"
    } else {
        "character"
    }
}

/// Checks one segment against the segment rule.
pub fn check_segment(segment: &'static str, s: &str) -> Result<(), IdError> {
    if s.len() > MAX_SEGMENT_LEN {
        return Err(IdError::TooLong {
            segment,
            len: s.len(),
        });
    }
    for (pos, ch) in s.char_indices() {
        let ok = ch.is_ascii_alphanumeric() || (pos > 0 && matches!(ch, '.' | '_' | '-'));
        if !ok {
            return Err(IdError::BadChar {
                segment,
                ch,
                pos,
                what: describe(ch),
            });
        }
    }
    if s.contains("..") {
        return Err(IdError::DoubleDot { segment });
    }
    Ok(())
}

fn check_version(s: &str) -> Result<(), IdError> {
    check_segment("version", s)?;
    let rest = s
        .strip_prefix('v')
        .ok_or_else(|| IdError::BadVersion(s.to_string()))?;
    if rest
        .split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
    {
        Ok(())
    } else {
        Err(IdError::BadVersion(s.to_string()))
    }
}

/// Splits `s` into exactly `names.len()` segments and checks each one (the
/// segment called `version` against the version rule).
fn split<'a>(
    kind: &'static str,
    shape: &'static str,
    names: &[&'static str],
    s: &'a str,
) -> Result<Vec<&'a str>, IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    let parts: Vec<&str> = s.split('/').collect();
    if parts.len() != names.len() {
        return Err(IdError::WrongArity {
            kind,
            expected: names.len(),
            found: parts.len(),
            shape,
        });
    }
    for (name, part) in names.iter().zip(&parts) {
        if part.is_empty() {
            return Err(IdError::EmptySegment {
                kind,
                segment: name,
            });
        }
        if *name == "version" {
            check_version(part)?;
        } else {
            check_segment(name, part)?;
        }
    }
    Ok(parts)
}

macro_rules! string_serde {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// An instance: the whole platform of one country or environment, e.g. `VN`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceId(String);

impl InstanceId {
    /// The instance code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for InstanceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        split("instance", "instance", &["instance"], s)?;
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A member: `instance/memberClass/memberCode`, e.g. `VN/GOV/000.00.00.H29`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    instance: InstanceId,
    class: String,
    code: String,
}

impl MemberId {
    /// The instance the member belongs to.
    pub fn instance(&self) -> &InstanceId {
        &self.instance
    }
    /// The member class, e.g. `GOV`.
    pub fn class(&self) -> &str {
        &self.class
    }
    /// The member code, e.g. `000.00.00.H29`.
    pub fn code(&self) -> &str {
        &self.code
    }
    /// A subsystem of this member; the code is checked against the segment rule.
    pub fn subsystem(&self, code: &str) -> Result<SubsystemId, IdError> {
        check_segment("subsystem", code)?;
        if code.is_empty() {
            return Err(IdError::EmptySegment {
                kind: "subsystem",
                segment: "subsystem",
            });
        }
        Ok(SubsystemId {
            member: self.clone(),
            code: code.to_string(),
        })
    }
}

const MEMBER: [&str; 3] = ["instance", "member class", "member code"];

impl FromStr for MemberId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split("member", "instance/class/member", &MEMBER, s)?;
        Ok(Self {
            instance: InstanceId(p[0].to_string()),
            class: p[1].to_string(),
            code: p[2].to_string(),
        })
    }
}

impl fmt::Display for MemberId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.instance, self.class, self.code)
    }
}

/// A subsystem (an information system of a member):
/// `instance/class/member/subsystem`, e.g. `VN/GOV/000.00.00.H29/CSDLDC`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubsystemId {
    member: MemberId,
    code: String,
}

impl SubsystemId {
    /// The member that owns the subsystem.
    pub fn member(&self) -> &MemberId {
        &self.member
    }
    /// The subsystem code, e.g. `CSDLDC`.
    pub fn code(&self) -> &str {
        &self.code
    }
}

const SUBSYSTEM: [&str; 4] = ["instance", "member class", "member code", "subsystem"];

impl FromStr for SubsystemId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split(
            "subsystem",
            "instance/class/member/subsystem",
            &SUBSYSTEM,
            s,
        )?;
        Ok(Self {
            member: MemberId {
                instance: InstanceId(p[0].to_string()),
                class: p[1].to_string(),
                code: p[2].to_string(),
            },
            code: p[3].to_string(),
        })
    }
}

impl fmt::Display for SubsystemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.member, self.code)
    }
}

/// A service version: `v1`, `v2`, `v1.1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(String);

impl Version {
    /// The version text, e.g. `v1.1`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The numeric parts, e.g. `[1, 1]` for `v1.1` (saturating at `u64::MAX`).
    pub fn numbers(&self) -> Vec<u64> {
        self.0[1..]
            .split('.')
            .map(|p| p.parse().unwrap_or(u64::MAX))
            .collect()
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Version {
    /// Numeric order (`v2` < `v10`), then text order as a tie-break (`v1` vs `v01`).
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.numbers()
            .cmp(&other.numbers())
            .then_with(|| self.0.cmp(&other.0))
    }
}

impl FromStr for Version {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        split("version", "vN", &["version"], s)?;
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A service with its version: `subsystem/serviceCode/version`, e.g.
/// `VN/GOV/000.00.00.H29/CSDLDC/citizen/v1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceId {
    subsystem: SubsystemId,
    code: String,
    version: Version,
}

impl ServiceId {
    /// The provider subsystem.
    pub fn subsystem(&self) -> &SubsystemId {
        &self.subsystem
    }
    /// The service code, e.g. `citizen`.
    pub fn code(&self) -> &str {
        &self.code
    }
    /// The version, e.g. `v1`.
    pub fn version(&self) -> &Version {
        &self.version
    }
    /// The provider member.
    pub fn member(&self) -> &MemberId {
        self.subsystem.member()
    }

    /// Parses the leading six segments of a `/`-separated path (as in a
    /// request path `/r1/{service id}/{rest...}`) and returns the service and
    /// the rest, which starts with `/` or is empty.
    pub fn split_path(path: &str) -> Result<(ServiceId, &str), IdError> {
        let mut end = 0;
        let mut seen = 0;
        for (i, b) in path.bytes().enumerate() {
            if b == b'/' {
                seen += 1;
                if seen == SERVICE.len() {
                    end = i;
                    break;
                }
            }
        }
        if seen < SERVICE.len() {
            end = path.len();
        }
        Ok((path[..end].parse()?, &path[end..]))
    }
}

const SERVICE: [&str; 6] = [
    "instance",
    "member class",
    "member code",
    "subsystem",
    "service code",
    "version",
];

impl FromStr for ServiceId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let p = split(
            "service",
            "instance/class/member/subsystem/service/version",
            &SERVICE,
            s,
        )?;
        Ok(Self {
            subsystem: SubsystemId {
                member: MemberId {
                    instance: InstanceId(p[0].to_string()),
                    class: p[1].to_string(),
                    code: p[2].to_string(),
                },
                code: p[3].to_string(),
            },
            code: p[4].to_string(),
            version: Version(p[5].to_string()),
        })
    }
}

impl fmt::Display for ServiceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.subsystem, self.code, self.version)
    }
}

string_serde!(InstanceId);
string_serde!(MemberId);
string_serde!(SubsystemId);
string_serde!(Version);
string_serde!(ServiceId);

/// A node name, unique within its member, e.g. `node1`. Same rule as a segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeName(String);

impl NodeName {
    /// The name text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeName {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        split("node", "name", &["node name"], s)?;
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(NodeName);
