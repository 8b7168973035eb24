//! Component identifiers (RFC 9421 §2): [`Component`] and [`ComponentParam`].

use std::borrow::Borrow;
use std::fmt;

use sfv::{FieldType, GenericBareItem, Item, KeyRef, StringRef};

use super::params::push_sf_string;
use super::{Result, SignatureError, SIGNATURE};

/// A parameter of a component identifier (RFC 9421 §2.1, §2.2.8, §2.4).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ComponentParam {
    /// `sf`: strict structured-field re-serialisation.
    Sf,
    /// `key="..."`: one Dictionary member.
    Key(String),
    /// `bs`: each field line wrapped as a Byte Sequence.
    Bs,
    /// `req`: taken from the request that triggered this response.
    Req,
    /// `tr`: taken from trailers (not supported: always an error).
    Tr,
    /// `name="..."`: the query parameter of `@query-param`.
    Name(String),
}

impl ComponentParam {
    pub(super) fn key(&self) -> &'static str {
        match self {
            Self::Sf => "sf",
            Self::Key(_) => "key",
            Self::Bs => "bs",
            Self::Req => "req",
            Self::Tr => "tr",
            Self::Name(_) => "name",
        }
    }
}

/// A component identifier: a field name or derived component name with
/// parameters (order preserved).
///
/// Equality ignores parameter order, as RFC 9421 §2 requires.
#[derive(Debug, Clone, Eq)]
pub struct Component {
    pub(super) name: String,
    pub(super) params: Vec<ComponentParam>,
}

impl PartialEq for Component {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
            && self.params.len() == other.params.len()
            && self.params.iter().all(|p| other.params.contains(p))
    }
}

impl Component {
    /// A component with the given name (case preserved), no parameters.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// An HTTP field component; the name is lower-cased.
    #[must_use]
    pub fn field(name: &str) -> Self {
        Self::new(name.to_ascii_lowercase())
    }

    /// `@method`.
    #[must_use]
    pub fn method() -> Self {
        Self::new("@method")
    }
    /// `@target-uri`.
    #[must_use]
    pub fn target_uri() -> Self {
        Self::new("@target-uri")
    }
    /// `@authority`.
    #[must_use]
    pub fn authority() -> Self {
        Self::new("@authority")
    }
    /// `@scheme`.
    #[must_use]
    pub fn scheme() -> Self {
        Self::new("@scheme")
    }
    /// `@request-target`.
    #[must_use]
    pub fn request_target() -> Self {
        Self::new("@request-target")
    }
    /// `@path`.
    #[must_use]
    pub fn path() -> Self {
        Self::new("@path")
    }
    /// `@query`.
    #[must_use]
    pub fn query() -> Self {
        Self::new("@query")
    }
    /// `@query-param;name="..."` (the name in its encoded form).
    #[must_use]
    pub fn query_param(name: impl Into<String>) -> Self {
        Self::new("@query-param").with_param(ComponentParam::Name(name.into()))
    }
    /// `@status`.
    #[must_use]
    pub fn status() -> Self {
        Self::new("@status")
    }

    /// `"signature";req;key="<label>"`: the request's signature value, for
    /// a response signature.
    #[must_use]
    pub fn request_signature(label: &str) -> Self {
        Self::field(SIGNATURE)
            .req()
            .with_param(ComponentParam::Key(label.to_owned()))
    }

    /// Add a parameter (kept in insertion order).
    #[must_use]
    pub fn with_param(mut self, p: ComponentParam) -> Self {
        self.params.push(p);
        self
    }
    /// Add `;sf`.
    #[must_use]
    pub fn sf(self) -> Self {
        self.with_param(ComponentParam::Sf)
    }
    /// Add `;key="..."`.
    #[must_use]
    pub fn key(self, member: impl Into<String>) -> Self {
        self.with_param(ComponentParam::Key(member.into()))
    }
    /// Add `;bs`.
    #[must_use]
    pub fn bs(self) -> Self {
        self.with_param(ComponentParam::Bs)
    }
    /// Add `;req`.
    #[must_use]
    pub fn req(self) -> Self {
        self.with_param(ComponentParam::Req)
    }

    /// The component name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parameters in order.
    #[must_use]
    pub fn params(&self) -> &[ComponentParam] {
        &self.params
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.params.iter().any(|p| p.key() == key)
    }

    pub(super) fn string_param(&self, key: &str) -> Option<&str> {
        self.params.iter().find_map(|p| match p {
            ComponentParam::Key(v) if key == "key" => Some(v.as_str()),
            ComponentParam::Name(v) if key == "name" => Some(v.as_str()),
            _ => None,
        })
    }

    /// Append the serialized identifier (an sf-string with parameters) to
    /// `out`; byte for byte what `sfv` makes of the equivalent `Item`.
    pub(super) fn write_identifier(&self, out: &mut String) -> Result<()> {
        if !push_sf_string(out, &self.name) {
            return Err(self.invalid_unserializable("name is not a valid string"));
        }
        for (i, p) in self.params.iter().enumerate() {
            out.push(';');
            out.push_str(p.key());
            if let ComponentParam::Key(v) | ComponentParam::Name(v) = p {
                out.push('=');
                if !push_sf_string(out, v) {
                    return Err(self.invalid_unserializable("parameter is not a valid string"));
                }
            }
            if self.params[..i].iter().any(|q| q.key() == p.key()) {
                return Err(self.invalid_unserializable("duplicate parameter"));
            }
        }
        Ok(())
    }

    /// The serialized identifier, e.g. `"@query-param";name="Pet"`.
    ///
    /// # Errors
    /// [`SignatureError::InvalidComponent`] if the name or a parameter value
    /// is not a valid structured-field string.
    pub fn identifier(&self) -> Result<String> {
        let mut out = String::with_capacity(self.name.len() + 2);
        self.write_identifier(&mut out)?;
        Ok(out)
    }

    pub(super) fn from_item(item: &Item) -> Result<Self> {
        Self::from_parts(
            &item.bare_item,
            item.params.iter().map(|(k, v)| (&**k, v)),
            || item.serialize(),
        )
    }

    /// A covered component from a parsed item; `serialize` gives the item's
    /// text for an error message.
    pub(super) fn from_parts<'a, S, B, T, D>(
        bare_item: &'a GenericBareItem<S, B, T, D>,
        params: impl IntoIterator<Item = (&'a KeyRef, &'a GenericBareItem<S, B, T, D>)>,
        serialize: impl FnOnce() -> String,
    ) -> Result<Self>
    where
        S: Borrow<StringRef> + 'a,
        B: 'a,
        T: 'a,
        D: 'a,
    {
        let Some(name) = bare_item.as_string() else {
            return Err(SignatureError::InvalidSignatureParams(
                "covered component is not a string".into(),
            ));
        };
        let mut c = Component::new(name.as_str());
        for (k, v) in params {
            let p = match (k.as_str(), v) {
                ("sf", GenericBareItem::Boolean(true)) => ComponentParam::Sf,
                ("bs", GenericBareItem::Boolean(true)) => ComponentParam::Bs,
                ("req", GenericBareItem::Boolean(true)) => ComponentParam::Req,
                ("tr", GenericBareItem::Boolean(true)) => ComponentParam::Tr,
                ("key", GenericBareItem::String(s)) => {
                    ComponentParam::Key(s.borrow().as_str().to_owned())
                }
                ("name", GenericBareItem::String(s)) => {
                    ComponentParam::Name(s.borrow().as_str().to_owned())
                }
                _ => {
                    return Err(SignatureError::InvalidComponent {
                        component: serialize(),
                        reason: "unknown or mistyped component parameter",
                    })
                }
            };
            c.params.push(p);
        }
        Ok(c)
    }

    /// Error for a component that cannot even be serialized; must not call
    /// [`Self::identifier`] (which would recurse).
    fn invalid_unserializable(&self, reason: &'static str) -> SignatureError {
        SignatureError::InvalidComponent {
            component: format!("{:?}", self.name),
            reason,
        }
    }

    pub(super) fn invalid(&self, reason: &'static str) -> SignatureError {
        SignatureError::InvalidComponent {
            component: self.display_lossy(),
            reason,
        }
    }

    pub(super) fn display_lossy(&self) -> String {
        self.identifier()
            .unwrap_or_else(|_| format!("{:?}", self.name))
    }
}

impl fmt::Display for Component {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.display_lossy())
    }
}
