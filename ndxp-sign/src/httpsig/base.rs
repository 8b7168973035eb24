//! The signature base (RFC 9421 §2.5): component values and [`signature_base`].

use std::borrow::Cow;

use http::header::{HeaderMap, HeaderName};
use http::Method;
use sfv::{BareItem, Dictionary, FieldType, Item, List, ListEntry, Parser};

use super::params::all_visible_ascii;
use super::{
    Component, ComponentParam, MessageView, RequestView, ResponseView, Result, SignatureError,
    SignatureParams,
};

const DERIVED: [&str; 9] = [
    "@method",
    "@target-uri",
    "@authority",
    "@scheme",
    "@request-target",
    "@path",
    "@query",
    "@query-param",
    "@status",
];

fn is_field_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b)
        })
}

fn trim_ows(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| *c != b' ' && *c != b'\t')
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| *c != b' ' && *c != b'\t')
        .map_or(start, |i| i + 1);
    &b[start..end.max(start)]
}

fn component_value<'a>(msg: &MessageView<'a>, c: &Component) -> Result<Cow<'a, str>> {
    // Parameter sanity (§2.5 step 2.4).
    let mut seen: Vec<&str> = Vec::new();
    for p in &c.params {
        if seen.contains(&p.key()) {
            return Err(c.invalid("duplicate parameter"));
        }
        seen.push(p.key());
    }
    let req = c.has("req");
    let derived = c.name.starts_with('@');
    if derived {
        if !DERIVED.contains(&c.name.as_str()) {
            return Err(c.invalid("unknown derived component"));
        }
        let name_ok = c.name == "@query-param";
        for p in &c.params {
            match p {
                ComponentParam::Req => {}
                ComponentParam::Name(_) if name_ok => {}
                _ => return Err(c.invalid("parameter not applicable to this derived component")),
            }
        }
    } else {
        if !is_field_name(&c.name) {
            return Err(c.invalid("not a lower-case field name"));
        }
        if c.has("name") {
            return Err(c.invalid("name applies only to @query-param"));
        }
        if c.has("tr") {
            return Err(c.invalid("trailer fields are not supported"));
        }
        if c.has("bs") && (c.has("sf") || c.has("key")) {
            return Err(c.invalid("bs cannot be combined with sf or key"));
        }
    }

    // Pick the message the value comes from.
    enum Target<'a> {
        Req(RequestView<'a>),
        Resp(ResponseView<'a>),
    }
    let target = match (msg, req) {
        (MessageView::Request(_), true) => return Err(c.invalid("req used on a request")),
        (MessageView::Request(r), false) => Target::Req(*r),
        (MessageView::Response { request, .. }, true) => match request {
            Some(r) => Target::Req(*r),
            None => return Err(SignatureError::MissingComponent(c.display_lossy())),
        },
        (MessageView::Response { response, .. }, false) => Target::Resp(*response),
    };

    let value = if derived {
        match (c.name.as_str(), target) {
            ("@status", Target::Resp(r)) => Cow::Owned(r.status.as_str().to_owned()),
            ("@status", Target::Req(_)) => {
                return Err(c.invalid("@status applies only to responses"))
            }
            (_, Target::Resp(_)) => {
                return Err(c.invalid("request component on a response (use req)"))
            }
            (name, Target::Req(r)) => derived_request_value(name, c, &r)?,
        }
    } else {
        let headers = match &target {
            Target::Req(r) => r.headers,
            Target::Resp(r) => r.headers,
        };
        field_value(headers, c)?
    };
    if !all_visible_ascii(&value) {
        return Err(SignatureError::InvalidComponentValue(c.display_lossy()));
    }
    Ok(value)
}

fn derived_request_value<'a>(
    name: &str,
    c: &Component,
    r: &RequestView<'a>,
) -> Result<Cow<'a, str>> {
    let missing = || SignatureError::MissingComponent(c.display_lossy());
    Ok(Cow::Owned(match name {
        "@method" => return Ok(Cow::Borrowed(r.method.as_str())),
        "@scheme" => return r.scheme_str().ok_or_else(missing),
        "@authority" => return r.authority_str(),
        "@target-uri" => {
            let scheme = r.scheme_str().ok_or_else(missing)?;
            let authority = r.authority_str()?;
            let path = r.path_str();
            let query = r.uri.query();
            let mut s = String::with_capacity(
                scheme.len() + 3 + authority.len() + path.len() + query.map_or(0, |q| q.len() + 1),
            );
            s.push_str(&scheme);
            s.push_str("://");
            s.push_str(&authority);
            s.push_str(path);
            if let Some(q) = query {
                s.push('?');
                s.push_str(q);
            }
            s
        }
        "@request-target" => {
            if r.method == Method::CONNECT {
                return r.authority_str();
            } else if r.uri.path() == "*" {
                "*".to_owned()
            } else {
                let mut s = r.path_str().to_owned();
                if let Some(q) = r.uri.query() {
                    s.push('?');
                    s.push_str(q);
                }
                s
            }
        }
        "@path" => return Ok(Cow::Borrowed(r.path_str())),
        "@query" => format!("?{}", r.uri.query().unwrap_or("")),
        "@query-param" => {
            let wanted = c
                .string_param("name")
                .ok_or_else(|| c.invalid("@query-param needs name"))?;
            let mut found: Option<String> = None;
            for (k, v) in form_urlencoded_pairs(r.uri.query().unwrap_or("")) {
                if form_encode(&k) == wanted {
                    if found.is_some() {
                        return Err(c.invalid("query parameter occurs more than once"));
                    }
                    found = Some(form_encode(&v));
                }
            }
            found.ok_or_else(missing)?
        }
        _ => return Err(c.invalid("unknown derived component")),
    }))
}

fn field_value<'a>(headers: &'a HeaderMap, c: &Component) -> Result<Cow<'a, str>> {
    let missing = || SignatureError::MissingComponent(c.display_lossy());
    // Look up by `&str`: `HeaderName::from_bytes` would allocate for every
    // non-standard name. A name that is not a valid header name finds
    // nothing; tell that case apart only then.
    let mut lines = headers
        .get_all(c.name.as_str())
        .iter()
        .map(|v| trim_ows(v.as_bytes()));
    let Some(first) = lines.next() else {
        return Err(match HeaderName::from_bytes(c.name.as_bytes()) {
            Ok(_) => missing(),
            Err(_) => c.invalid("invalid field name"),
        });
    };
    if c.has("bs") {
        let list: List = std::iter::once(first)
            .chain(lines)
            .map(|l| ListEntry::Item(Item::new(BareItem::ByteSequence(l.to_vec()))))
            .collect();
        return list.serialize().map(Cow::Owned).ok_or_else(missing);
    }
    let invalid_value = || SignatureError::InvalidComponentValue(c.display_lossy());
    let joined: Cow<'a, str> = match lines.next() {
        // One field line, the common case: borrow it.
        None => Cow::Borrowed(std::str::from_utf8(first).map_err(|_| invalid_value())?),
        Some(second) => {
            let mut joined = first.to_vec();
            for l in std::iter::once(second).chain(lines) {
                joined.extend_from_slice(b", ");
                joined.extend_from_slice(l);
            }
            Cow::Owned(String::from_utf8(joined).map_err(|_| invalid_value())?)
        }
    };
    if !joined.is_ascii() {
        return Err(invalid_value());
    }
    let malformed = |e| SignatureError::MalformedField {
        field: c.name.clone(),
        source: e,
    };
    if let Some(member) = c.string_param("key") {
        let dict: Dictionary = Parser::new(&*joined).parse().map_err(malformed)?;
        let entry = dict.get(member).ok_or_else(missing)?;
        let list: List = vec![entry.clone()];
        return list.serialize().map(Cow::Owned).ok_or_else(missing);
    }
    if c.has("sf") {
        // Type is not known in general: Dictionary first, then List (whose
        // single-member serialisation is also the Item serialisation).
        if let Ok(dict) = Parser::new(&*joined).parse::<Dictionary>() {
            if let Some(s) = dict.serialize() {
                return Ok(Cow::Owned(s));
            }
        }
        let list: List = Parser::new(&*joined).parse().map_err(malformed)?;
        return Ok(Cow::Owned(list.serialize().unwrap_or_default()));
    }
    Ok(joined)
}

/// WHATWG `application/x-www-form-urlencoded` parsing: `+` is a space,
/// percent escapes are decoded (invalid ones kept), then UTF-8 lossily.
pub(super) fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < b.len() => {
                    let hi = (b[i + 1] as char).to_digit(16);
                    let lo = (b[i + 2] as char).to_digit(16);
                    match (hi, lo) {
                        (Some(h), Some(l)) => {
                            out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                            i += 2;
                        }
                        _ => out.push(b'%'),
                    }
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    }
    query
        .split('&')
        .filter(|s| !s.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

/// Percent-encode with the `application/x-www-form-urlencoded` set, spaces
/// as `%20` (RFC 9421 §2.2.8).
pub(super) fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'*' | b'-' | b'.' | b'_') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Build the RFC 9421 §2.5 signature base for `params` over `msg`.
///
/// # Errors
/// Any component error ([`SignatureError::MissingComponent`],
/// [`SignatureError::InvalidComponent`],
/// [`SignatureError::DuplicateComponent`], ...).
pub fn signature_base(msg: &MessageView<'_>, params: &SignatureParams) -> Result<String> {
    signature_base_at(msg, params).map(|(base, _)| base)
}

/// [`signature_base`], plus the offset in it of the serialized signature
/// parameters (the last line's value).
pub(super) fn signature_base_at(
    msg: &MessageView<'_>,
    params: &SignatureParams,
) -> Result<(String, usize)> {
    let mut out = String::with_capacity(512);
    for (i, c) in params.components.iter().enumerate() {
        if params.components[..i].contains(c) {
            return Err(SignatureError::DuplicateComponent(c.display_lossy()));
        }
        c.write_identifier(&mut out)?;
        let value = component_value(msg, c)?;
        out.push_str(": ");
        out.push_str(&value);
        out.push('\n');
    }
    out.push_str("\"@signature-params\": ");
    let at = out.len();
    params.write_serialized(&mut out)?;
    if !out.is_ascii() {
        return Err(SignatureError::InvalidSignatureParams(
            "signature base is not ASCII".into(),
        ));
    }
    Ok((out, at))
}
