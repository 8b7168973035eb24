//! The covered components of the profile's request and response signatures.

use http::header::HeaderMap;

use crate::httpsig::{Component, RequestView};

use super::{CONTENT_DIGEST, LABEL, NDXP_CLIENT, NDXP_ID, NDXP_REQUEST_ID, NDXP_USER_ID};

/// Covered components of a request signature, in order: `"@method"
/// "@target-uri" "content-digest" "ndxp-client" "ndxp-id"`, then
/// `"ndxp-user-id"` and `"ndxp-request-id"` when `headers` carries them.
#[must_use]
pub fn request_components(headers: &HeaderMap) -> Vec<Component> {
    let mut c = vec![
        Component::method(),
        Component::target_uri(),
        Component::field(CONTENT_DIGEST),
        Component::field(NDXP_CLIENT),
        Component::field(NDXP_ID),
    ];
    for optional in [NDXP_USER_ID, NDXP_REQUEST_ID] {
        if headers.contains_key(optional) {
            c.push(Component::field(optional));
        }
    }
    c
}

/// Covered components of a response signature, in order: `"@status"
/// "content-digest" "ndxp-id" "@method";req "@target-uri";req
/// "content-digest";req "signature";req;key="ndxp"`.
#[must_use]
pub fn response_components() -> Vec<Component> {
    vec![
        Component::status(),
        Component::field(CONTENT_DIGEST),
        Component::field(NDXP_ID),
        Component::method().req(),
        Component::target_uri().req(),
        Component::field(CONTENT_DIGEST).req(),
        Component::request_signature(LABEL),
    ]
}

/// The request view the profile signs and verifies: an origin-form URI
/// (what a server sees) is taken as `https` with the `Host` field as
/// authority. A receiver behind a proxy that rewrites `Host` sets
/// `parts.uri` to the absolute URI the sender used before verifying.
pub(super) fn request_view(parts: &http::request::Parts) -> RequestView<'_> {
    let view = RequestView::from_parts(parts);
    if parts.uri.scheme().is_none() {
        view.with_scheme("https")
    } else {
        view
    }
}
