//! Signature parameters (RFC 9421 §2.3): [`SignatureParams`] and the
//! RFC 8941 string writer shared with component identifiers.

use std::borrow::Borrow;

use sfv::{GenericBareItem, KeyRef, List, ListEntry, Parser, StringRef, Version};

use super::{Algorithm, Component, Result, SignatureError, SIGNATURE_INPUT};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ParamName {
    Created,
    Expires,
    Nonce,
    Alg,
    Keyid,
    Tag,
}

/// Covered components plus signature metadata (RFC 9421 §2.3), kept in the
/// order given so that a parsed value re-serialises byte for byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    pub(super) components: Vec<Component>,
    pub(super) created: Option<i64>,
    pub(super) expires: Option<i64>,
    pub(super) nonce: Option<String>,
    pub(super) alg: Option<Algorithm>,
    pub(super) keyid: Option<String>,
    pub(super) tag: Option<String>,
    pub(super) order: Vec<ParamName>,
}

impl SignatureParams {
    /// Parameters covering `components`, with no metadata yet.
    #[must_use]
    pub fn new(components: Vec<Component>) -> Self {
        Self {
            components,
            created: None,
            expires: None,
            nonce: None,
            alg: None,
            keyid: None,
            tag: None,
            order: Vec::with_capacity(6),
        }
    }

    fn touch(&mut self, p: ParamName) {
        if !self.order.contains(&p) {
            self.order.push(p);
        }
    }

    /// Set `created` (Unix seconds).
    #[must_use]
    pub fn with_created(mut self, t: i64) -> Self {
        self.created = Some(t);
        self.touch(ParamName::Created);
        self
    }
    /// Set `expires` (Unix seconds).
    #[must_use]
    pub fn with_expires(mut self, t: i64) -> Self {
        self.expires = Some(t);
        self.touch(ParamName::Expires);
        self
    }
    /// Set `nonce`.
    #[must_use]
    pub fn with_nonce(mut self, n: impl Into<String>) -> Self {
        self.nonce = Some(n.into());
        self.touch(ParamName::Nonce);
        self
    }
    /// Set `alg`.
    #[must_use]
    pub fn with_alg(mut self, alg: Algorithm) -> Self {
        self.alg = Some(alg);
        self.touch(ParamName::Alg);
        self
    }
    /// Set `keyid`.
    #[must_use]
    pub fn with_keyid(mut self, k: impl Into<String>) -> Self {
        self.keyid = Some(k.into());
        self.touch(ParamName::Keyid);
        self
    }
    /// Set `tag`.
    #[must_use]
    pub fn with_tag(mut self, t: impl Into<String>) -> Self {
        self.tag = Some(t.into());
        self.touch(ParamName::Tag);
        self
    }

    /// Covered components in order.
    #[must_use]
    pub fn components(&self) -> &[Component] {
        &self.components
    }
    /// `created`.
    #[must_use]
    pub fn created(&self) -> Option<i64> {
        self.created
    }
    /// `expires`.
    #[must_use]
    pub fn expires(&self) -> Option<i64> {
        self.expires
    }
    /// `nonce`.
    #[must_use]
    pub fn nonce(&self) -> Option<&str> {
        self.nonce.as_deref()
    }
    /// `alg`.
    #[must_use]
    pub fn alg(&self) -> Option<Algorithm> {
        self.alg
    }
    /// `keyid`.
    #[must_use]
    pub fn keyid(&self) -> Option<&str> {
        self.keyid.as_deref()
    }
    /// `tag`.
    #[must_use]
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// Append the serialized inner list to `out`; byte for byte what `sfv`
    /// makes of the equivalent `InnerList`.
    pub(super) fn write_serialized(&self, out: &mut String) -> Result<()> {
        out.push('(');
        for (i, c) in self.components.iter().enumerate() {
            if i > 0 {
                out.push(' ');
            }
            c.write_identifier(out)?;
        }
        out.push(')');
        let string = |out: &mut String, k: &str, v: &str, what: &str| {
            out.push(';');
            out.push_str(k);
            out.push('=');
            if push_sf_string(out, v) {
                Ok(())
            } else {
                Err(SignatureError::InvalidSignatureParams(format!(
                    "{what} is not a valid string"
                )))
            }
        };
        let int = |out: &mut String, k: &str, v: i64| {
            if !(SF_INTEGER_MIN..=SF_INTEGER_MAX).contains(&v) {
                return Err(SignatureError::InvalidSignatureParams(
                    "integer out of range".into(),
                ));
            }
            out.push(';');
            out.push_str(k);
            out.push('=');
            out.push_str(&v.to_string());
            Ok(())
        };
        for p in &self.order {
            match p {
                ParamName::Created => {
                    if let Some(v) = self.created {
                        int(out, "created", v)?;
                    }
                }
                ParamName::Expires => {
                    if let Some(v) = self.expires {
                        int(out, "expires", v)?;
                    }
                }
                ParamName::Nonce => {
                    if let Some(v) = &self.nonce {
                        string(out, "nonce", v, "nonce")?;
                    }
                }
                ParamName::Alg => {
                    if let Some(a) = self.alg {
                        string(out, "alg", a.as_str(), "alg")?;
                    }
                }
                ParamName::Keyid => {
                    if let Some(v) = &self.keyid {
                        string(out, "keyid", v, "keyid")?;
                    }
                }
                ParamName::Tag => {
                    if let Some(v) = &self.tag {
                        string(out, "tag", v, "tag")?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Serialize as the `@signature-params` value / `Signature-Input` member
    /// value, e.g. `("@method");created=1618884473;keyid="k"`.
    ///
    /// # Errors
    /// [`SignatureError::InvalidComponent`] or
    /// [`SignatureError::InvalidSignatureParams`] for values that are not
    /// valid structured-field strings or integers.
    pub fn serialize(&self) -> Result<String> {
        let mut out = String::with_capacity(128);
        self.write_serialized(&mut out)?;
        Ok(out)
    }

    /// Parse a serialized inner list (the inverse of [`serialize`](Self::serialize)).
    ///
    /// # Errors
    /// [`SignatureError::MalformedField`] or
    /// [`SignatureError::InvalidSignatureParams`].
    pub fn parse(s: &str) -> Result<Self> {
        let list: List = Parser::new(s)
            .with_version(Version::Rfc8941)
            .parse()
            .map_err(|e| SignatureError::MalformedField {
                field: SIGNATURE_INPUT.into(),
                source: e,
            })?;
        match list.as_slice() {
            [entry] => Self::from_entry(entry),
            _ => Err(SignatureError::InvalidSignatureParams(
                "expected exactly one inner list".into(),
            )),
        }
    }

    pub(super) fn from_entry(entry: &ListEntry) -> Result<Self> {
        let ListEntry::InnerList(il) = entry else {
            return Err(SignatureError::InvalidSignatureParams(
                "signature input member is not an inner list".into(),
            ));
        };
        let components = il
            .items
            .iter()
            .map(Component::from_item)
            .collect::<Result<Vec<_>>>()?;
        Self::from_parts(components, il.params.iter().map(|(k, v)| (&**k, v)))
    }

    /// Signature parameters from parsed inner-list parameters.
    pub(super) fn from_parts<'a, S, B, T, D>(
        components: Vec<Component>,
        params: impl IntoIterator<Item = (&'a KeyRef, &'a GenericBareItem<S, B, T, D>)>,
    ) -> Result<Self>
    where
        S: Borrow<StringRef> + 'a,
        B: 'a,
        T: 'a,
        D: 'a,
    {
        let mut out = SignatureParams::new(components);
        let bad = |what: &str| {
            SignatureError::InvalidSignatureParams(format!("{what} has the wrong type"))
        };
        for (k, v) in params {
            out = match k.as_str() {
                "created" => out.with_created(
                    v.as_integer()
                        .map(i64::from)
                        .ok_or_else(|| bad("created"))?,
                ),
                "expires" => out.with_expires(
                    v.as_integer()
                        .map(i64::from)
                        .ok_or_else(|| bad("expires"))?,
                ),
                "nonce" => out.with_nonce(v.as_string().ok_or_else(|| bad("nonce"))?.as_str()),
                "alg" => out.with_alg(v.as_string().ok_or_else(|| bad("alg"))?.as_str().parse()?),
                "keyid" => out.with_keyid(v.as_string().ok_or_else(|| bad("keyid"))?.as_str()),
                "tag" => out.with_tag(v.as_string().ok_or_else(|| bad("tag"))?.as_str()),
                other => {
                    return Err(SignatureError::InvalidSignatureParams(format!(
                        "unknown signature parameter {other:?}"
                    )))
                }
            };
        }
        Ok(out)
    }
}

/// Range of an RFC 8941 Integer.
const SF_INTEGER_MAX: i64 = 999_999_999_999_999;
const SF_INTEGER_MIN: i64 = -SF_INTEGER_MAX;

/// Append `s` as an RFC 8941 sf-string; `false` (with `out` partly
/// written) if `s` has a character outside `0x20..=0x7e`.
pub(super) fn push_sf_string(out: &mut String, s: &str) -> bool {
    if !all_visible_ascii(s) {
        return false;
    }
    out.reserve(s.len() + 2);
    out.push('"');
    let mut rest = s;
    while let Some(i) = rest.bytes().position(|b| b == b'\\' || b == b'"') {
        out.push_str(&rest[..i]);
        out.push('\\');
        out.push_str(&rest[i..=i]);
        rest = &rest[i + 1..];
    }
    out.push_str(rest);
    out.push('"');
    true
}

/// Whether every byte of `s` is in `0x20..=0x7e` (SP or VCHAR). Written
/// without early exit so that it vectorises.
pub(super) fn all_visible_ascii(s: &str) -> bool {
    s.bytes()
        .fold(true, |ok, b| ok & (b.wrapping_sub(0x20) < 0x5f))
}
