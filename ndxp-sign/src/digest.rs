//! RFC 9530 `Content-Digest`: compute, stream and verify body digests.
//!
//! NDXP binds message bodies to RFC 9421 signatures through the
//! `Content-Digest` field, always emitted as `sha-256`. Verification accepts
//! `sha-256` and `sha-512` members, ignores members with algorithms it does
//! not know, and fails when no supported member is present. Every supported
//! member that is present must match; comparisons are constant-time.
//!
//! ```
//! use ndxp_sign::digest::{content_digest, verify_content_digest, ContentDigester, DigestAlgorithm};
//!
//! let body = b"{\"hello\": \"world\"}\n";
//! // RFC 9530 section 2 example value.
//! assert_eq!(content_digest(body), "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:");
//!
//! // Streamed body, e.g. chunks forwarded by a proxy.
//! let mut d = ContentDigester::new(DigestAlgorithm::Sha256);
//! d.update(b"{\"hello\": ");
//! d.update(b"\"world\"}\n");
//! let header = d.finish();
//! assert_eq!(verify_content_digest(&header, body).unwrap(), vec![DigestAlgorithm::Sha256]);
//! assert!(verify_content_digest(&header, b"tampered").is_err());
//! ```

use base64::Engine as _;
use openssl::sha::{Sha256, Sha512};
use sfv::{BareItem, Dictionary, ListEntry, Parser, Version};

/// Errors raised while parsing or checking a `Content-Digest` field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DigestError {
    /// The field value is not a valid RFC 8941 Dictionary.
    #[error("malformed Content-Digest field")]
    MalformedField(#[source] sfv::Error),
    /// A member for a supported algorithm is not a Byte Sequence of the
    /// digest's length.
    #[error("Content-Digest member {algorithm} is not a byte sequence of the right length")]
    MalformedMember {
        /// The algorithm key of the bad member.
        algorithm: &'static str,
    },
    /// The field carries no member with an algorithm this implementation
    /// supports (`sha-256`, `sha-512`).
    #[error("Content-Digest has no supported algorithm (sha-256 or sha-512)")]
    NoSupportedAlgorithm,
    /// The digest does not match the body.
    #[error("Content-Digest {algorithm} does not match the content")]
    Mismatch {
        /// The algorithm whose digest did not match.
        algorithm: &'static str,
    },
}

/// Hash algorithms supported for `Content-Digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DigestAlgorithm {
    /// `sha-256` (what NDXP emits).
    Sha256,
    /// `sha-512` (accepted on verification).
    Sha512,
}

impl DigestAlgorithm {
    /// The RFC 9530 algorithm key (`sha-256`, `sha-512`).
    #[must_use]
    pub fn key(self) -> &'static str {
        match self {
            Self::Sha256 => "sha-256",
            Self::Sha512 => "sha-512",
        }
    }

    /// The digest length in bytes.
    #[must_use]
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    fn from_key(key: &str) -> Option<Self> {
        match key {
            "sha-256" => Some(Self::Sha256),
            "sha-512" => Some(Self::Sha512),
            _ => None,
        }
    }
}

enum Hasher {
    Sha256(Sha256),
    Sha512(Box<Sha512>),
}

impl Hasher {
    fn new(alg: DigestAlgorithm) -> Self {
        match alg {
            DigestAlgorithm::Sha256 => Self::Sha256(Sha256::new()),
            DigestAlgorithm::Sha512 => Self::Sha512(Box::new(Sha512::new())),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Self::Sha256(h) => h.update(data),
            Self::Sha512(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Self::Sha256(h) => h.finish().to_vec(),
            Self::Sha512(h) => h.finish().to_vec(),
        }
    }
}

/// Incremental digester for a streamed body; produces a `Content-Digest`
/// field value with a single member.
pub struct ContentDigester {
    alg: DigestAlgorithm,
    hasher: Hasher,
}

impl std::fmt::Debug for ContentDigester {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentDigester")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl ContentDigester {
    /// Start a digest with the given algorithm.
    #[must_use]
    pub fn new(alg: DigestAlgorithm) -> Self {
        Self {
            alg,
            hasher: Hasher::new(alg),
        }
    }

    /// Feed the next chunk of content.
    pub fn update(&mut self, chunk: &[u8]) {
        self.hasher.update(chunk);
    }

    /// Finish and return the raw digest bytes.
    #[must_use]
    pub fn finish_raw(self) -> Vec<u8> {
        self.hasher.finish()
    }

    /// Finish and return the field value, e.g. `sha-256=:...:`.
    #[must_use]
    pub fn finish(self) -> String {
        let alg = self.alg;
        format_member(alg, &self.finish_raw())
    }
}

fn format_member(alg: DigestAlgorithm, digest: &[u8]) -> String {
    format!(
        "{}=:{}:",
        alg.key(),
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// `Content-Digest` field value (`sha-256=:<base64>:`) for a complete body.
#[must_use]
pub fn content_digest(body: &[u8]) -> String {
    content_digest_with(DigestAlgorithm::Sha256, body)
}

/// `Content-Digest` field value for a complete body with the chosen algorithm.
#[must_use]
pub fn content_digest_with(alg: DigestAlgorithm, body: &[u8]) -> String {
    let mut d = ContentDigester::new(alg);
    d.update(body);
    d.finish()
}

/// The supported members of a parsed `Content-Digest` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedContentDigest {
    members: Vec<(DigestAlgorithm, Vec<u8>)>,
}

impl ParsedContentDigest {
    /// Parse a field value (several field lines may be joined with `", "`).
    ///
    /// Unknown algorithms are ignored; at least one supported member is
    /// required.
    ///
    /// # Errors
    /// [`DigestError::MalformedField`], [`DigestError::MalformedMember`],
    /// [`DigestError::NoSupportedAlgorithm`].
    pub fn parse(value: &str) -> Result<Self, DigestError> {
        let dict: Dictionary = Parser::new(value)
            .with_version(Version::Rfc8941)
            .parse()
            .map_err(DigestError::MalformedField)?;
        let mut members = Vec::new();
        for (key, entry) in &dict {
            let Some(alg) = DigestAlgorithm::from_key(key.as_str()) else {
                continue;
            };
            let bytes = match entry {
                ListEntry::Item(item) => match &item.bare_item {
                    BareItem::ByteSequence(b) if b.len() == alg.output_len() => b.clone(),
                    _ => {
                        return Err(DigestError::MalformedMember {
                            algorithm: alg.key(),
                        })
                    }
                },
                ListEntry::InnerList(_) => {
                    return Err(DigestError::MalformedMember {
                        algorithm: alg.key(),
                    })
                }
            };
            members.push((alg, bytes));
        }
        if members.is_empty() {
            return Err(DigestError::NoSupportedAlgorithm);
        }
        Ok(Self { members })
    }

    /// The supported algorithms present, in field order.
    #[must_use]
    pub fn algorithms(&self) -> Vec<DigestAlgorithm> {
        self.members.iter().map(|(a, _)| *a).collect()
    }

    /// The digest value for an algorithm, if present.
    #[must_use]
    pub fn get(&self, alg: DigestAlgorithm) -> Option<&[u8]> {
        self.members
            .iter()
            .find(|(a, _)| *a == alg)
            .map(|(_, d)| d.as_slice())
    }

    /// Start a streaming check of content against this field.
    #[must_use]
    pub fn verifier(&self) -> ContentDigestVerifier {
        ContentDigestVerifier {
            expected: self.members.clone(),
            hashers: self.members.iter().map(|(a, _)| Hasher::new(*a)).collect(),
        }
    }

    /// [`Self::verifier`] without copying the expected digests.
    fn into_verifier(self) -> ContentDigestVerifier {
        ContentDigestVerifier {
            hashers: self.members.iter().map(|(a, _)| Hasher::new(*a)).collect(),
            expected: self.members,
        }
    }

    /// Check a complete body against every supported member.
    ///
    /// # Errors
    /// [`DigestError::Mismatch`] naming the first failing algorithm.
    pub fn verify(&self, body: &[u8]) -> Result<Vec<DigestAlgorithm>, DigestError> {
        let mut v = self.verifier();
        v.update(body);
        v.finish()
    }
}

/// Streaming verifier: feed the body in chunks, then call
/// [`finish`](Self::finish).
pub struct ContentDigestVerifier {
    expected: Vec<(DigestAlgorithm, Vec<u8>)>,
    hashers: Vec<Hasher>,
}

impl std::fmt::Debug for ContentDigestVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentDigestVerifier")
            .field(
                "algorithms",
                &self.expected.iter().map(|(a, _)| *a).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl ContentDigestVerifier {
    /// Parse the field value and start a streaming check.
    ///
    /// # Errors
    /// As [`ParsedContentDigest::parse`].
    pub fn new(value: &str) -> Result<Self, DigestError> {
        Ok(ParsedContentDigest::parse(value)?.verifier())
    }

    /// Feed the next chunk of content.
    pub fn update(&mut self, chunk: &[u8]) {
        for h in &mut self.hashers {
            h.update(chunk);
        }
    }

    /// Compare all computed digests; returns the algorithms that were checked.
    ///
    /// # Errors
    /// [`DigestError::Mismatch`] naming the first failing algorithm.
    pub fn finish(self) -> Result<Vec<DigestAlgorithm>, DigestError> {
        let mut checked = Vec::with_capacity(self.expected.len());
        for ((alg, expected), hasher) in self.expected.into_iter().zip(self.hashers) {
            let got = hasher.finish();
            // Lengths are fixed by the algorithm (checked at parse time), so
            // `memcmp::eq` never sees unequal lengths here.
            if got.len() != expected.len() || !openssl::memcmp::eq(&got, &expected) {
                return Err(DigestError::Mismatch {
                    algorithm: alg.key(),
                });
            }
            checked.push(alg);
        }
        Ok(checked)
    }
}

/// Verify a `Content-Digest` field value against a complete body.
///
/// Returns the algorithms that were checked (all supported members present).
///
/// # Errors
/// Any [`DigestError`].
pub fn verify_content_digest(
    value: &str,
    body: &[u8],
) -> Result<Vec<DigestAlgorithm>, DigestError> {
    let mut v = ParsedContentDigest::parse(value)?.into_verifier();
    v.update(body);
    v.finish()
}
