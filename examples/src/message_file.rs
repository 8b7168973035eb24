//! Verifying a signed NDXP message saved as files, with `ndxp-sign` (and
//! `ndxp-core`) alone: what another vendor embeds to check a message a
//! node exchanged.
//!
//! # The head file
//!
//! The message head as it travelled, in HTTP/1.1 text form (RFC 9112 §2.1),
//! UTF-8 without a body:
//!
//! ```text
//! POST https://provider.example/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/persons HTTP/1.1
//! ndxp-client: VN/GOV/000.00.00.G22/QLHT
//! ndxp-id: 0192f3c4-...
//! content-digest: sha-256=:...:
//! ndxp-signer-cert: :MIIB...:
//! signature-input: ndxp=("@method" "@target-uri" ...);created=...;keyid="...";alg="...";tag="ndxp"
//! signature: ndxp=:...:
//! ```
//!
//! * A **request** starts with `METHOD TARGET HTTP/1.1`; the target is the
//!   absolute URI the sender signed (`@target-uri`). An origin-form target
//!   (`/r1/...`) is taken as `https://{Host}/r1/...`, as a node does.
//! * A **response** starts with `HTTP/1.1 STATUS [REASON]`; verifying it
//!   needs the head file of the request it answers (its signature covers
//!   the request's).
//! * Then one `Name: value` line per field, in order; lines end in LF or
//!   CRLF; the head ends at the first empty line or at the end of the file.
//!   Nothing may follow that empty line (the body is its own file, byte
//!   for byte). Folded lines, empty names and control characters are
//!   refused. At most [`MAX_HEAD_BYTES`] and [`MAX_FIELDS`] fields.
//!
//! # What is checked
//!
//! [`verify`] runs [`ndxp_sign::profile::verify_request_with_body`] (or
//! `verify_response_with_body`): the `ndxp` signature, its parameters, the
//! signer certificate's chain to the given CA certificates for signing, the
//! client subsystem's membership, and the body against `Content-Digest`.
//! It checks at the signature's own `created` time by default (a saved
//! message is old by nature), or at a time given. Revocation is not
//! checked: that needs the OCSP responder (or a logged OCSP answer).

use chrono::{DateTime, TimeZone, Utc};
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri};
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile::{self, ProfilePolicy, VerifiedMessage};

/// The largest head file accepted.
pub const MAX_HEAD_BYTES: usize = 256 * 1024;
/// The most header fields accepted in a head file.
pub const MAX_FIELDS: usize = 256;

/// A parsed head file.
#[derive(Debug)]
pub enum Head {
    /// A request head.
    Request(http::request::Parts),
    /// A response head.
    Response(http::response::Parts),
}

/// Why a head file could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeadError {
    /// The file is larger than [`MAX_HEAD_BYTES`].
    #[error("the head file has {0} bytes; at most {MAX_HEAD_BYTES} are accepted")]
    TooLarge(usize),
    /// The file is not UTF-8 text.
    #[error("the head file is not UTF-8 text")]
    NotText,
    /// The first line is neither a request line nor a status line.
    #[error("line 1 must be `METHOD TARGET HTTP/1.1` or `HTTP/1.1 STATUS REASON`, found {0:?}")]
    StartLine(String),
    /// A field line is malformed.
    #[error("line {line}: {what}")]
    Field {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
    /// More than [`MAX_FIELDS`] fields.
    #[error("more than {MAX_FIELDS} header fields")]
    TooManyFields,
    /// Text after the empty line that ends the head.
    #[error(
        "line {0}: text after the empty line that ends the head; put the body in its own file"
    )]
    TrailingText(usize),
    /// An origin-form request target without a usable `Host` field.
    #[error("the request target {0:?} is not an absolute URI and there is no valid Host field to complete it")]
    Target(String),
}

/// Parses a head file (see the module docs for the format).
///
/// # Errors
/// A [`HeadError`] naming the line at fault.
pub fn parse_head(data: &[u8]) -> Result<Head, HeadError> {
    if data.len() > MAX_HEAD_BYTES {
        return Err(HeadError::TooLarge(data.len()));
    }
    let text = std::str::from_utf8(data).map_err(|_| HeadError::NotText)?;
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .enumerate()
        .map(|(i, l)| (i + 1, l));
    let (_, start) = lines.next().unwrap_or((1, ""));
    let mut headers = http::HeaderMap::new();
    let mut ended = false;
    for (n, line) in lines.by_ref() {
        if line.is_empty() {
            ended = true;
            break;
        }
        if headers.len() >= MAX_FIELDS {
            return Err(HeadError::TooManyFields);
        }
        let (name, value) = parse_field(n, line)?;
        headers.append(name, value);
    }
    if ended {
        // Only empty lines (e.g. a final newline) may follow.
        if let Some((n, _)) = lines.find(|(_, l)| !l.is_empty()) {
            return Err(HeadError::TrailingText(n));
        }
    }
    let parts = start.split(' ').collect::<Vec<_>>();
    let bad_start = || HeadError::StartLine(start.chars().take(120).collect());
    match parts.as_slice() {
        [version, status, ..] if version.starts_with("HTTP/") => {
            if *version != "HTTP/1.1" || status.len() != 3 {
                return Err(bad_start());
            }
            let status = StatusCode::from_bytes(status.as_bytes()).map_err(|_| bad_start())?;
            let (mut p, ()) = http::Response::new(()).into_parts();
            p.status = status;
            p.headers = headers;
            Ok(Head::Response(p))
        }
        [method, target, rest @ ..] if rest.is_empty() || rest == ["HTTP/1.1"] => {
            let method = Method::from_bytes(method.as_bytes()).map_err(|_| bad_start())?;
            let uri = absolute_target(target, &headers)?;
            let (mut p, ()) = http::Request::new(()).into_parts();
            p.method = method;
            p.uri = uri;
            p.headers = headers;
            Ok(Head::Request(p))
        }
        _ => Err(bad_start()),
    }
}

fn parse_field(n: usize, line: &str) -> Result<(HeaderName, HeaderValue), HeadError> {
    let err = |what: &str| HeadError::Field {
        line: n,
        what: what.to_string(),
    };
    if line.starts_with([' ', '\t']) {
        return Err(err(
            "folded (obsolete line folding) fields are not accepted",
        ));
    }
    let (name, value) = line
        .split_once(':')
        .ok_or_else(|| err("expected `Name: value`"))?;
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| err("the field name is empty or not a token (no spaces before ':')"))?;
    let value = HeaderValue::from_str(value.trim_matches([' ', '\t']))
        .map_err(|_| err("the field value has control characters"))?;
    Ok((name, value))
}

fn absolute_target(target: &str, headers: &http::HeaderMap) -> Result<Uri, HeadError> {
    let bad = || HeadError::Target(target.chars().take(120).collect());
    if target.starts_with('/') {
        let host = headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .ok_or_else(bad)?;
        return format!("https://{host}{target}").parse().map_err(|_| bad());
    }
    let uri: Uri = target.parse().map_err(|_| bad())?;
    if uri.scheme().is_none() || uri.authority().is_none() {
        return Err(bad());
    }
    Ok(uri)
}

/// Writes a request head in the head-file format (absolute target URI,
/// CRLF line ends, a final empty line), e.g. to save a message a node
/// signed. [`parse_head`] reads it back.
pub fn request_head_text(parts: &http::request::Parts) -> String {
    let mut out = format!("{} {} HTTP/1.1\r\n", parts.method, parts.uri);
    write_fields(&mut out, &parts.headers);
    out
}

/// Writes a response head in the head-file format.
pub fn response_head_text(parts: &http::response::Parts) -> String {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\n",
        parts.status.as_str(),
        parts.status.canonical_reason().unwrap_or("")
    );
    write_fields(&mut out, &parts.headers);
    out
}

fn write_fields(out: &mut String, headers: &http::HeaderMap) {
    for (name, value) in headers {
        out.push_str(name.as_str());
        out.push_str(": ");
        out.push_str(&String::from_utf8_lossy(value.as_bytes()));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
}

/// When to check the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckTime {
    /// At the signature's own `created` parameter.
    Created,
    /// At the given instant (e.g. now, to also check freshness).
    At(DateTime<Utc>),
}

/// Why a message failed, or could not be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A head file is malformed.
    #[error("{file}: {source}")]
    Head {
        /// Which file.
        file: &'static str,
        /// What is wrong.
        #[source]
        source: HeadError,
    },
    /// The files do not fit together (e.g. a response without its request).
    #[error("{0}")]
    Usage(String),
    /// The signature's `created` could not be read.
    #[error("the message carries no readable ndxp signature: {0}")]
    NoSignature(String),
    /// The message does not verify.
    #[error("{0}")]
    Invalid(#[from] profile::ProfileError),
}

/// Verifies a saved message: `head` with `body`, and for a response the
/// head of the request it answers, against the trust anchors `anchors`.
///
/// # Errors
/// [`VerifyError::Invalid`] when the message does not verify (the
/// [`profile::ProfileError`] says which check failed); the other variants
/// when it could not be checked.
pub fn verify(
    head: &Head,
    body: &[u8],
    request: Option<&Head>,
    anchors: Vec<X509>,
    when: CheckTime,
) -> Result<VerifiedMessage, VerifyError> {
    let policy = ProfilePolicy::new(anchors);
    let headers = match head {
        Head::Request(p) => &p.headers,
        Head::Response(p) => &p.headers,
    };
    let now = match when {
        CheckTime::At(t) => t,
        CheckTime::Created => created_of(headers, policy.max_field_bytes)?,
    };
    match (head, request) {
        (Head::Request(p), None) => Ok(profile::verify_request_with_body(p, body, &policy, now)?),
        (Head::Request(_), Some(_)) => Err(VerifyError::Usage(
            "the message is a request: give --request only with a response".into(),
        )),
        (Head::Response(p), Some(Head::Request(req))) => Ok(profile::verify_response_with_body(
            p, req, body, &policy, now,
        )?),
        (Head::Response(_), Some(Head::Response(_))) => Err(VerifyError::Usage(
            "--request must be the head of the request the response answers, not a response"
                .into(),
        )),
        (Head::Response(_), None) => Err(VerifyError::Usage(
            "the message is a response: give the head of its request with --request (the response's signature covers it)".into(),
        )),
    }
}

/// The `created` parameter of the `ndxp` signature.
fn created_of(headers: &http::HeaderMap, max: usize) -> Result<DateTime<Utc>, VerifyError> {
    let (params, _) = ndxp_sign::httpsig::parse_signature_headers(headers, profile::LABEL, max)
        .map_err(|e| VerifyError::NoSignature(e.to_string()))?;
    let created = params
        .created()
        .ok_or_else(|| VerifyError::NoSignature("it has no `created` parameter".into()))?;
    Utc.timestamp_opt(created, 0)
        .single()
        .ok_or_else(|| VerifyError::NoSignature(format!("`created` {created} is out of range")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_a_request_head() {
        let h = parse_head(
            b"POST https://p.example/r1/x?a=1 HTTP/1.1\r\nNDXP-Client: A/B/C/D\r\nX:  v \r\n\r\n",
        )
        .unwrap();
        let Head::Request(p) = h else {
            panic!("not a request")
        };
        assert_eq!(p.method, Method::POST);
        assert_eq!(p.uri.to_string(), "https://p.example/r1/x?a=1");
        assert_eq!(p.headers["ndxp-client"], "A/B/C/D");
        assert_eq!(p.headers["x"], "v");
    }

    #[test]
    fn origin_form_needs_host() {
        let h = parse_head(b"GET /r1/x HTTP/1.1\nHost: p.example:8443\n").unwrap();
        let Head::Request(p) = h else {
            panic!("not a request")
        };
        assert_eq!(p.uri.to_string(), "https://p.example:8443/r1/x");
        assert!(matches!(
            parse_head(b"GET /r1/x HTTP/1.1\n"),
            Err(HeadError::Target(_))
        ));
    }

    #[test]
    fn reads_a_response_head() {
        let Head::Response(p) = parse_head(b"HTTP/1.1 404 Not Found\nA: b\n").unwrap() else {
            panic!("not a response")
        };
        assert_eq!(p.status, 404);
        assert_eq!(p.headers["a"], "b");
    }

    #[test]
    fn refuses_malformed_heads() {
        for (bad, want) in [
            (&b"HTTP/1.0 200 OK\n"[..], "line 1"),
            (b"HTTP/1.1 20 OK\n", "line 1"),
            (b"GET\n", "line 1"),
            (b"GET https://a/ HTTP/2 x\n", "line 1"),
            (b"GET https://a/ HTTP/1.1\nno colon\n", "line 2"),
            (b"GET https://a/ HTTP/1.1\nA: b\n c\n", "line 3"),
            (b"GET https://a/ HTTP/1.1\nBad Name: b\n", "line 2"),
            (b"GET https://a/ HTTP/1.1\nA: b\x01\n", "line 2"),
            (b"GET https://a/ HTTP/1.1\nA: b\n\nbody\n", "line 4"),
            (b"\xff\xfe", "UTF-8"),
        ] {
            let e = parse_head(bad).expect_err(&String::from_utf8_lossy(bad));
            assert!(e.to_string().contains(want), "{e} for {bad:?}");
        }
        let big = vec![b'a'; MAX_HEAD_BYTES + 1];
        assert_eq!(
            parse_head(&big).unwrap_err(),
            HeadError::TooLarge(MAX_HEAD_BYTES + 1)
        );
        let many = format!(
            "GET https://a/ HTTP/1.1\n{}",
            "A: b\n".repeat(MAX_FIELDS + 1)
        );
        assert_eq!(
            parse_head(many.as_bytes()).unwrap_err(),
            HeadError::TooManyFields
        );
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse_head(&data);
        }

        #[test]
        fn never_panics_on_near_valid_text(
            start in "(GET|POST|HTTP/1\\.1) [ -~]{0,40}",
            fields in proptest::collection::vec("[ -~\t]{0,40}", 0..8),
        ) {
            let text = format!("{start}\n{}\n", fields.join("\r\n"));
            let _ = parse_head(text.as_bytes());
        }

        #[test]
        fn written_heads_read_back(
            path in "/[a-z0-9/._-]{0,30}",
            fields in proptest::collection::vec(("[a-z][a-z0-9-]{0,15}", "[!-~]([ -~]{0,30}[!-~])?"), 0..10),
            status in 200u16..600,
        ) {
            let mut req = http::Request::put(format!("https://node.example:8443{path}"));
            let mut resp = http::Response::builder().status(status);
            for (n, v) in &fields {
                req = req.header(n.as_str(), v.as_str());
                resp = resp.header(n.as_str(), v.as_str());
            }
            let (req, ()) = req.body(()).map_err(|e| TestCaseError::fail(e.to_string()))?.into_parts();
            let (resp, ()) = resp.body(()).map_err(|e| TestCaseError::fail(e.to_string()))?.into_parts();
            let Ok(Head::Request(p)) = parse_head(request_head_text(&req).as_bytes()) else {
                return Err(TestCaseError::fail("the request did not read back"));
            };
            prop_assert_eq!(&p.method, &req.method);
            prop_assert_eq!(&p.uri, &req.uri);
            prop_assert_eq!(&p.headers, &req.headers);
            let Ok(Head::Response(p)) = parse_head(response_head_text(&resp).as_bytes()) else {
                return Err(TestCaseError::fail("the response did not read back"));
            };
            prop_assert_eq!(p.status, resp.status);
            prop_assert_eq!(&p.headers, &resp.headers);
        }
    }
}
