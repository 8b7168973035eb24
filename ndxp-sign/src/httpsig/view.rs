//! Borrowed views of the message a signature applies to.

use std::borrow::Cow;

use http::header::HeaderMap;
use http::{Method, StatusCode, Uri};

use super::{Result, SignatureError};

/// Borrowed view of a request head, with the context needed for derived
/// components that a server-side `Uri` (origin-form) does not carry.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    pub(super) method: &'a Method,
    pub(super) uri: &'a Uri,
    pub(super) headers: &'a HeaderMap,
    pub(super) scheme: Option<&'a str>,
    pub(super) authority: Option<&'a str>,
}

impl<'a> RequestView<'a> {
    /// View of method, URI and headers.
    #[must_use]
    pub fn new(method: &'a Method, uri: &'a Uri, headers: &'a HeaderMap) -> Self {
        Self {
            method,
            uri,
            headers,
            scheme: None,
            authority: None,
        }
    }

    /// View of `http::request::Parts`.
    #[must_use]
    pub fn from_parts(parts: &'a http::request::Parts) -> Self {
        Self::new(&parts.method, &parts.uri, &parts.headers)
    }

    /// View of an `http::Request`.
    #[must_use]
    pub fn from_request<B>(req: &'a http::Request<B>) -> Self {
        Self::new(req.method(), req.uri(), req.headers())
    }

    /// Scheme to use when the URI is in origin-form (a server typically
    /// knows it from the listener, e.g. `https`).
    #[must_use]
    pub fn with_scheme(mut self, scheme: &'a str) -> Self {
        self.scheme = Some(scheme);
        self
    }

    /// Authority to use instead of the URI's or the `Host` field's.
    #[must_use]
    pub fn with_authority(mut self, authority: &'a str) -> Self {
        self.authority = Some(authority);
        self
    }

    pub(super) fn scheme_str(&self) -> Option<Cow<'a, str>> {
        self.scheme.or_else(|| self.uri.scheme_str()).map(lower)
    }

    pub(super) fn authority_str(&self) -> Result<Cow<'a, str>> {
        let raw: &'a str = if let Some(a) = self.authority {
            a
        } else if let Some(a) = self.uri.authority() {
            a.as_str()
        } else {
            let mut hosts = self.headers.get_all(http::header::HOST).iter();
            let host = hosts
                .next()
                .ok_or_else(|| SignatureError::MissingComponent("\"@authority\"".into()))?;
            if hosts.next().is_some() {
                return Err(SignatureError::InvalidComponentValue(
                    "\"@authority\"".into(),
                ));
            }
            host.to_str()
                .map_err(|_| SignatureError::InvalidComponentValue("\"@authority\"".into()))?
                .trim()
        };
        // Drop userinfo, lower-case, and omit the scheme's default port.
        let host_port = raw.rsplit_once('@').map_or(raw, |(_, h)| h);
        let default_port = match self.scheme_str().as_deref() {
            Some("https") => Some(":443"),
            Some("http") => Some(":80"),
            _ => None,
        };
        // The port is ASCII, so it can be stripped before lower-casing.
        let host_port = default_port
            .and_then(|p| host_port.strip_suffix(p))
            .unwrap_or(host_port);
        Ok(lower(host_port))
    }

    pub(super) fn path_str(&self) -> &'a str {
        match self.uri.path() {
            "" => "/",
            p => p,
        }
    }
}

/// `s` in ASCII lower case, borrowed when it already is.
fn lower(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(s.to_ascii_lowercase())
    } else {
        Cow::Borrowed(s)
    }
}

/// Borrowed view of a response head.
#[derive(Debug, Clone, Copy)]
pub struct ResponseView<'a> {
    pub(super) status: StatusCode,
    pub(super) headers: &'a HeaderMap,
}

impl<'a> ResponseView<'a> {
    /// View of a status and headers.
    #[must_use]
    pub fn new(status: StatusCode, headers: &'a HeaderMap) -> Self {
        Self { status, headers }
    }

    /// View of `http::response::Parts`.
    #[must_use]
    pub fn from_parts(parts: &'a http::response::Parts) -> Self {
        Self::new(parts.status, &parts.headers)
    }
}

/// The message a signature applies to.
#[derive(Debug, Clone, Copy)]
pub enum MessageView<'a> {
    /// A request.
    Request(RequestView<'a>),
    /// A response, with the request it answers when `req` components are
    /// used.
    Response {
        /// The response.
        response: ResponseView<'a>,
        /// The triggering request, if known.
        request: Option<RequestView<'a>>,
    },
}

impl<'a> MessageView<'a> {
    /// A request message from its parts.
    #[must_use]
    pub fn request(parts: &'a http::request::Parts) -> Self {
        Self::Request(RequestView::from_parts(parts))
    }

    /// A response message from its parts and the triggering request.
    #[must_use]
    pub fn response(parts: &'a http::response::Parts, request: Option<RequestView<'a>>) -> Self {
        Self::Response {
            response: ResponseView::from_parts(parts),
            request,
        }
    }

    pub(super) fn headers(&self) -> &'a HeaderMap {
        match self {
            Self::Request(r) => r.headers,
            Self::Response { response, .. } => response.headers,
        }
    }
}
