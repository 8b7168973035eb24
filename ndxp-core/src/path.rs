//! The one rule a request path must pass before the node or the gateway
//! signs it, sends it or hands it to a backend (`docs/design.md`, "The
//! edge").
//!
//! A backend, a proxy in front of it or a framework in between may decode
//! a path once more, treat `\` as `/`, drop `;` parameters or resolve dot
//! segments, and so reach a resource outside the service. The rule makes
//! every such spelling a `400 ndxp.bad_request` at the edge instead: the
//! path is decoded once and refused when it holds
//!
//! * an encoded separator (`%2f`, `%5c`), or a `\` in any form;
//! * a dot segment in any spelling: `.`, `..`, `%2e`, `%2e%2e`, with a
//!   `;` parameter (`..;/`, `.;x`), or as look-alike dots that Unicode
//!   normalisation turns into `.` (e.g. `U+FF0E`);
//! * double encoding: `%25` followed by two hex digits;
//! * a NUL or another control character, encoded or not;
//! * a `%` that does not start a two-hex-digit escape;
//! * bytes that are not UTF-8 once decoded, which covers overlong forms
//!   such as `%c0%ae` (an overlong `.`).
//!
//! ```
//! use ndxp_core::path::{check, PathRule};
//!
//! assert!(check("/persons/001").is_ok());
//! assert_eq!(check("/a/..;/admin").unwrap_err().rule(), PathRule::DotSegment);
//! assert_eq!(check("/a%2f..%2fadmin").unwrap_err().rule(), PathRule::EncodedSeparator);
//! ```

use std::fmt;

/// The part of the rule a path broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PathRule {
    /// `%2f` or `%5c`: a separator a later decoder would split on.
    EncodedSeparator,
    /// A literal `\`, which some servers read as `/`.
    Backslash,
    /// A `.` or `..` segment in any spelling.
    DotSegment,
    /// `%25` followed by two hex digits: a second decoding would change
    /// the path.
    DoubleEncoding,
    /// NUL or another control character.
    ControlCharacter,
    /// A `%` not followed by two hex digits.
    InvalidEscape,
    /// Bytes that are not UTF-8 once decoded (overlong forms included).
    InvalidUtf8,
}

impl PathRule {
    /// The rule's stable name, e.g. `dot-segment`, as it appears in the
    /// problem's detail.
    pub fn name(self) -> &'static str {
        match self {
            Self::EncodedSeparator => "encoded-separator",
            Self::Backslash => "backslash",
            Self::DotSegment => "dot-segment",
            Self::DoubleEncoding => "double-encoding",
            Self::ControlCharacter => "control-character",
            Self::InvalidEscape => "invalid-escape",
            Self::InvalidUtf8 => "invalid-utf8",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Self::EncodedSeparator => "an encoded separator (%2f or %5c)",
            Self::Backslash => "a backslash",
            Self::DotSegment => "a . or .. segment (in some spelling)",
            Self::DoubleEncoding => "a double-encoded character (%25 followed by two hex digits)",
            Self::ControlCharacter => "a NUL or control character",
            Self::InvalidEscape => "a % that is not followed by two hex digits",
            Self::InvalidUtf8 => "bytes that are not UTF-8 once decoded (e.g. overlong %c0%ae)",
        }
    }
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A path the rule refuses; its `Display` is the problem detail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the request path contains {} at byte {offset} (path rule {rule}); send the path without it",
    .rule.explain()
)]
#[non_exhaustive]
pub struct PathError {
    rule: PathRule,
    offset: usize,
}

impl PathError {
    /// The part of the rule the path broke.
    pub fn rule(&self) -> PathRule {
        self.rule
    }

    /// The byte offset in the (undecoded) path where the refusal was
    /// found.
    pub fn offset(&self) -> usize {
        self.offset
    }
}

fn refuse(rule: PathRule, offset: usize) -> PathError {
    PathError { rule, offset }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Characters that Unicode compatibility normalisation (NFKC) turns into
/// `.` or `..`; a segment made of them is a dot segment to a backend that
/// normalises.
fn dots_of(c: char) -> Option<usize> {
    match c {
        '.' | '\u{FF0E}' | '\u{2024}' | '\u{FE52}' => Some(1),
        '\u{2025}' => Some(2),
        _ => None,
    }
}

/// Whether a decoded segment (its `;` parameters removed) is `.` or `..`.
fn is_dot_segment(segment: &str) -> bool {
    let name = segment.split(';').next().unwrap_or("");
    let mut dots = 0;
    for c in name.chars() {
        match dots_of(c) {
            Some(n) => dots += n,
            None => return false,
        }
    }
    dots == 1 || dots == 2
}

/// Checks a request path (or a path rest) as it came on the wire, still
/// percent-encoded, without the query.
///
/// # Errors
/// [`PathError`] naming the first part of the rule the path breaks.
pub fn check(path: &str) -> Result<(), PathError> {
    let raw = path.as_bytes();
    let mut decoded = Vec::with_capacity(raw.len());
    // The offset in `raw` where each decoded byte came from.
    let mut origin = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        let byte = if b == b'%' {
            let (Some(hi), Some(lo)) = (
                raw.get(i + 1).copied().and_then(hex),
                raw.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(refuse(PathRule::InvalidEscape, i));
            };
            let v = hi * 16 + lo;
            match v {
                b'/' | b'\\' => return Err(refuse(PathRule::EncodedSeparator, i)),
                _ => {}
            }
            origin.push(i);
            i += 3;
            v
        } else {
            if b == b'\\' {
                return Err(refuse(PathRule::Backslash, i));
            }
            origin.push(i);
            i += 1;
            b
        };
        if byte < 0x20 || byte == 0x7f {
            return Err(refuse(PathRule::ControlCharacter, origin[origin.len() - 1]));
        }
        decoded.push(byte);
    }
    // A decoded `%` always came from `%25`; followed by two hex digits it
    // is a second escape (`%252e`, `%25%32%65`).
    for (n, w) in decoded.windows(3).enumerate() {
        if w[0] == b'%' && hex(w[1]).is_some() && hex(w[2]).is_some() {
            return Err(refuse(PathRule::DoubleEncoding, origin[n]));
        }
    }
    let text = match std::str::from_utf8(&decoded) {
        Ok(t) => t,
        Err(e) => {
            let at = origin.get(e.valid_up_to()).copied().unwrap_or(0);
            return Err(refuse(PathRule::InvalidUtf8, at));
        }
    };
    if let Some(c) = text.chars().find(|c| c.is_control()) {
        let at = text.find(c).map_or(0, |n| origin[n]);
        return Err(refuse(PathRule::ControlCharacter, at));
    }
    let mut start = 0;
    for segment in text.split('/') {
        if is_dot_segment(segment) {
            return Err(refuse(
                PathRule::DotSegment,
                origin.get(start).copied().unwrap_or(0),
            ));
        }
        start += segment.len() + 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rule(p: &str) -> Option<PathRule> {
        check(p).err().map(|e| e.rule())
    }

    #[test]
    fn the_known_tricks_are_refused_by_the_right_rule() {
        use PathRule::*;
        for (path, want) in [
            ("/a%2f..%2f..%2fadmin", EncodedSeparator),
            ("/a%2F..", EncodedSeparator),
            ("/a%5c..%5cb", EncodedSeparator),
            ("/..;/admin", DotSegment),
            ("/a/.;x/b", DotSegment),
            ("/%2e%2e;jsessionid=1/admin", DotSegment),
            ("/%252e%252e/admin", DoubleEncoding),
            ("/%25%32%65", DoubleEncoding),
            ("/%c0%ae%c0%ae/x", InvalidUtf8),
            ("/%e0%80%ae/x", InvalidUtf8),
            ("/..", DotSegment),
            ("/../x", DotSegment),
            ("/./x", DotSegment),
            ("/%2e%2e/x", DotSegment),
            ("/%2E", DotSegment),
            ("/.%2e/x", DotSegment),
            ("/%ef%bc%8e%ef%bc%8e/x", DotSegment),
            ("/\u{2025}/x", DotSegment),
            ("/%00", ControlCharacter),
            ("/a%0ab", ControlCharacter),
            ("/a%7f", ControlCharacter),
            ("/a%c2%85", ControlCharacter),
            ("/a\\b", Backslash),
            ("/a%", InvalidEscape),
            ("/a%4", InvalidEscape),
            ("/a%zz", InvalidEscape),
            ("/a%%41", InvalidEscape),
        ] {
            assert_eq!(rule(path), Some(want), "{path}");
        }
    }

    #[test]
    fn ordinary_paths_pass() {
        for ok in [
            "",
            "/",
            "/persons/001",
            "/a.b/c..d/.well-known/...",
            "/%25",
            "/100%25off",
            "/a;b=c/d",
            "/caf%c3%a9",
            "/Vi%E1%BB%87t%20Nam",
            "/a//b",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn the_detail_names_the_rule() {
        let e = check("/a/..;/admin").expect_err("refused");
        let detail = e.to_string();
        assert!(detail.contains("dot-segment"), "{detail}");
        assert_eq!(e.offset(), 3);
    }

    /// Decodes once (for the property below); `None` when not decodable.
    fn decode(p: &str) -> Option<String> {
        let b = p.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let v = u8::from_str_radix(p.get(i + 1..i + 3)?, 16).ok()?;
                out.push(v);
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).ok()
    }

    const FORBIDDEN: &[&str] = &[
        "%2f",
        "%2F",
        "%5c",
        "%5C",
        "\\",
        "/./",
        "/../",
        "/%2e/",
        "/%2e%2e/",
        "/.%2E/",
        "/..;/",
        "/.;a/",
        "/%2e%2e;x=1/",
        "%252e",
        "%2541",
        "%00",
        "%0a",
        "%1f",
        "%7f",
        "%c0%ae",
        "%e0%80%ae",
        "%",
        "%g0",
        "%4",
    ];

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(p in any::<String>()) {
            let _ = check(&p);
        }

        #[test]
        fn accepted_paths_hold_no_dot_segment_or_separator_after_one_decode(
            p in "(/|[a-z]|[.]|;|%2[eEfF]|%5[cC]|%25|%[0-9a-fA-F]{2}|\\\\|%){0,16}"
        ) {
            if check(&p).is_ok() {
                let d = decode(&p).expect("an accepted path decodes");
                prop_assert!(!d.contains('\\'), "{} decodes to {}", p, d);
                prop_assert_eq!(d.matches('/').count(), p.matches('/').count());
                for seg in d.split('/') {
                    let name = seg.split(';').next().unwrap_or("");
                    prop_assert!(name != "." && name != "..", "{} decodes to {}", p, d);
                }
                prop_assert!(!d.chars().any(char::is_control));
            }
        }

        #[test]
        fn any_forbidden_form_inserted_anywhere_is_refused(
            prefix in "(/[a-z0-9]{0,4}){0,3}",
            suffix in "(/[a-z0-9]{0,4}){0,3}",
            which in 0..FORBIDDEN.len(),
        ) {
            let p = format!("{prefix}{}{suffix}", FORBIDDEN[which]);
            prop_assert!(check(&p).is_err(), "{} was accepted", p);
        }
    }
}
