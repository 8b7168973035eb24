//! Unauthenticated documents: the signed global configuration and this
//! API's OpenAPI description.

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};

use crate::management::error::ApiError;
use crate::management::schema::ProblemSchema;
use crate::management::AppState;

/// The current signed global configuration (compact JWS, docs/design.md §7). It
/// is rebuilt when the registry changed or half its validity has passed.
#[utoipa::path(get, path = "/globalconf", tag = "global configuration",
    responses((status = 200, description = "The signed document",
               content_type = "application/jose", body = String),
              (status = 500, description = "It cannot be built", body = ProblemSchema)))]
pub async fn get_globalconf(State(st): State<AppState>) -> Result<Response, ApiError> {
    let conf = st.publisher.ensure_current(chrono::Utc::now()).await?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(ndxp_registry::globalconf::MEDIA_TYPE),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        conf.document,
    )
        .into_response())
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "The OpenAPI document", body = Object)))]
pub async fn get_openapi(State(st): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        st.openapi_json.as_ref().clone(),
    )
        .into_response()
}
