//! The problem answers of every operation in the OpenAPI document, declared
//! once for the whole API instead of on every handler.
//!
//! Handlers declare the answers only their own logic gives (403 for a
//! caller without the right, 404 for a lookup, 409 for a unique constraint
//! or a state change that is not allowed). [`ProblemResponses`] adds what
//! the shared extractors give to every operation that uses them, read from
//! the operation's own description:
//!
//! | the operation has | it can answer | because of |
//! |---|---|---|
//! | path or query parameters | 400 | `ApiPath` / `ApiQuery` and the identifier checks |
//! | a request body | 400, 413, 415 | `ApiJson` / `OptionalJson` / the signed-upload reader, `DefaultBodyLimit` |
//! | bearer security | 401 | the `Caller` extractor |
//! | any of these | 500 | an unreachable registry or a bug ([`super::error`]) |
//!
//! It then gives every 4xx and 5xx answer the media type
//! `application/problem+json` and the `Problem` schema, and the 401 answers
//! their `WWW-Authenticate` header. The two public documents (`/globalconf`,
//! `/openapi.json`) read nothing from the request and declare their own. The management API has no rate limit,
//! so no operation answers 429.

use ndxp_core::problem::PROBLEM_CONTENT_TYPE;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::header::Header;
use utoipa::openapi::path::Operation;
use utoipa::openapi::{Components, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, PartialSchema};

use super::schema::ProblemSchema;

/// The name of the problem document's schema in `components.schemas`.
const PROBLEM_SCHEMA: &str = "Problem";

/// Adds the shared problem answers to every operation and types every
/// error answer as problem+json (see the module documentation).
#[derive(Debug, Clone, Copy, Default)]
pub struct ProblemResponses;

impl Modify for ProblemResponses {
    fn modify(&self, openapi: &mut OpenApi) {
        openapi
            .components
            .get_or_insert_with(Components::new)
            .schemas
            .entry(PROBLEM_SCHEMA.to_string())
            .or_insert_with(ProblemSchema::schema);
        for item in openapi.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                add_shared(op);
                type_problems(op);
            }
        }
    }
}

/// The answers an operation's extractors can give, with a description.
fn shared(op: &Operation) -> Vec<(u16, &'static str)> {
    let params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
    let body = op.request_body.is_some();
    let bearer = op.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut out = Vec::new();
    if params || body {
        out.push((
            400,
            "A malformed identifier, path, query string or body (ndxp.bad_request)",
        ));
    }
    if bearer {
        out.push((
            401,
            "No bearer token, or one that is unknown or revoked (ndxp.unauthorized)",
        ));
    }
    if body {
        out.push((
            413,
            "The body is larger than [management] max_body_bytes (ndxp.payload_too_large)",
        ));
        out.push((
            415,
            "The body is not of the media type this operation takes (ndxp.bad_request)",
        ));
    }
    if params || body || bearer {
        out.push((
            500,
            "The registry cannot be reached, or a bug; the detail names a reference in the server log (ndxp.internal)",
        ));
    }
    out
}

fn add_shared(op: &mut Operation) {
    for (status, description) in shared(op) {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| ResponseBuilder::new().description(description).into());
    }
}

/// Every 4xx/5xx answer: problem+json with the `Problem` schema; 401 with
/// its challenge header.
fn type_problems(op: &mut Operation) {
    for (status, response) in &mut op.responses.responses {
        let RefOr::T(response) = response else {
            continue;
        };
        if !(status.starts_with('4') || status.starts_with('5')) {
            continue;
        }
        response.content.clear();
        response.content.insert(
            PROBLEM_CONTENT_TYPE.to_string(),
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name(PROBLEM_SCHEMA)))
                .build()
                .into(),
        );
        if status == "401" {
            // `Header::default()` is a string header.
            let mut challenge = Header::default();
            challenge.description = Some("`Bearer realm=\"ndxp-management\"`".to_string());
            response
                .headers
                .insert("WWW-Authenticate".to_string(), challenge.into());
        }
    }
}
