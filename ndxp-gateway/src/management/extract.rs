//! Extractors that turn every malformed input into an [`ApiError`] (and so
//! into problem+json), never into axum's plain-text rejections: JSON bodies,
//! optional JSON bodies, query strings and identifier paths.
//!
//! Identifiers that contain `/` travel as separate path segments; each
//! segment is checked against the identifier segment rule and the whole is
//! parsed with the strict `FromStr` of [`ndxp_core::id`]. A path with a
//! percent-escape anywhere is refused: identifiers are never normalised.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use ndxp_core::id::check_segment;
use ndxp_core::{MemberId, NodeName, ServiceId, SubsystemId};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::error::ApiError;
use super::AppState;

/// Reads the whole body; a body over the limit is [`ApiError::PayloadTooLarge`].
pub(crate) async fn read_body(req: Request, state: &AppState) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.max_body_bytes,
            }
        } else {
            ApiError::BadRequest(format!("cannot read the request body: {e}"))
        }
    })
}

/// Whether the `Content-Type` is `essence` (parameters such as `charset`
/// are allowed).
pub(crate) fn has_media_type(headers: &HeaderMap, essence: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(essence))
}

fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))
}

/// A JSON body (`Content-Type: application/json`) of type `T`.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        if !has_media_type(req.headers(), "application/json") {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            ));
        }
        let body = read_body(req, state).await?;
        parse_json(&body).map(ApiJson)
    }
}

/// A JSON body that may be left out entirely (an empty body is
/// `T::default()`); a body that is present must be valid JSON.
#[derive(Debug)]
pub struct OptionalJson<T>(pub T);

impl<T: DeserializeOwned + Default> FromRequest<AppState> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let typed = req.headers().contains_key(header::CONTENT_TYPE);
        let json = has_media_type(req.headers(), "application/json");
        let body = read_body(req, state).await?;
        if body.is_empty() {
            return Ok(OptionalJson(T::default()));
        }
        if typed && !json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            ));
        }
        parse_json(&body).map(OptionalJson)
    }
}

/// A query string of type `T` (use `deny_unknown_fields` on `T`).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
    }
}

/// Path parameters of type `T`, refused when the raw path has a
/// percent-escape.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().contains('%') {
            return Err(ApiError::BadRequest(
                "percent-escapes are not allowed in identifier paths".into(),
            ));
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(p)| ApiPath(p))
            .map_err(|e| ApiError::BadRequest(format!("invalid path: {}", e.body_text())))
    }
}

fn seg(name: &'static str, s: &str) -> Result<(), ApiError> {
    check_segment(name, s).map_err(|e| ApiError::BadRequest(format!("invalid {name}: {e}")))
}

fn id<T: std::str::FromStr>(what: &str, text: &str) -> Result<T, ApiError>
where
    T::Err: std::fmt::Display,
{
    text.parse()
        .map_err(|e| ApiError::BadRequest(format!("invalid {what} {text:?}: {e}")))
}

/// A member identifier from its path segments.
fn member_id(instance: &str, class: &str, code: &str) -> Result<MemberId, ApiError> {
    seg("instance", instance)?;
    seg("member class", class)?;
    seg("member code", code)?;
    id("member", &format!("{instance}/{class}/{code}"))
}

/// A subsystem identifier from its path segments.
fn subsystem_id(
    instance: &str,
    class: &str,
    code: &str,
    subsystem: &str,
) -> Result<SubsystemId, ApiError> {
    seg("subsystem", subsystem)?;
    let m = member_id(instance, class, code)?;
    id("subsystem", &format!("{m}/{subsystem}"))
}

/// A service identifier from its path segments.
fn service_id(
    [instance, class, code, subsystem, service, version]: [&str; 6],
) -> Result<ServiceId, ApiError> {
    seg("service code", service)?;
    seg("version", version)?;
    let s = subsystem_id(instance, class, code, subsystem)?;
    id("service", &format!("{s}/{service}/{version}"))
}

/// `{instance}/{class}/{code}`: a member.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct MemberPath {
    /// Instance, e.g. `VN`.
    pub instance: String,
    /// Member class, e.g. `GOV`.
    pub class: String,
    /// Member code, e.g. `000.00.00.H29`.
    pub code: String,
}

impl MemberPath {
    /// The member identifier.
    pub fn id(&self) -> Result<MemberId, ApiError> {
        member_id(&self.instance, &self.class, &self.code)
    }
}

/// `{instance}/{class}/{code}/{subsystem}`: a subsystem.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct SubsystemPath {
    /// Instance.
    pub instance: String,
    /// Member class.
    pub class: String,
    /// Member code.
    pub code: String,
    /// Subsystem code, e.g. `CSDLDC`.
    pub subsystem: String,
}

impl SubsystemPath {
    /// The subsystem identifier.
    pub fn id(&self) -> Result<SubsystemId, ApiError> {
        subsystem_id(&self.instance, &self.class, &self.code, &self.subsystem)
    }
}

/// `{instance}/{class}/{code}/{node}`: a node.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodePath {
    /// Instance.
    pub instance: String,
    /// Member class.
    pub class: String,
    /// Member code.
    pub code: String,
    /// Node name.
    pub node: String,
}

impl NodePath {
    /// The member and node name.
    pub fn id(&self) -> Result<(MemberId, NodeName), ApiError> {
        let m = member_id(&self.instance, &self.class, &self.code)?;
        Ok((m, id("node name", &self.node)?))
    }
}

/// `{instance}/{class}/{code}/{node}/certificates/{sha256}`: one
/// authentication certificate of a node.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct NodeCertPath {
    /// Instance.
    pub instance: String,
    /// Member class.
    pub class: String,
    /// Member code.
    pub code: String,
    /// Node name.
    pub node: String,
    /// SHA-256 of the certificate (DER), 64 lowercase hex digits.
    pub sha256: String,
}

impl NodeCertPath {
    /// The member, node name and fingerprint.
    pub fn id(&self) -> Result<(MemberId, NodeName, String), ApiError> {
        let m = member_id(&self.instance, &self.class, &self.code)?;
        let n: NodeName = id("node name", &self.node)?;
        let fp = self.sha256.to_ascii_lowercase();
        if fp.len() != 64 || !fp.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ApiError::BadRequest(format!(
                "{:?} is not a SHA-256 fingerprint (64 hexadecimal digits)",
                self.sha256
            )));
        }
        Ok((m, n, fp))
    }
}

/// `{instance}/{class}/{code}/{subsystem}/{service}/{version}`: a service.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServicePath {
    /// Instance.
    pub instance: String,
    /// Member class.
    pub class: String,
    /// Member code.
    pub code: String,
    /// Provider subsystem code.
    pub subsystem: String,
    /// Service code, e.g. `citizen`.
    pub service: String,
    /// Version, e.g. `v1`.
    pub version: String,
}

impl ServicePath {
    /// The service identifier.
    pub fn id(&self) -> Result<ServiceId, ApiError> {
        service_id([
            &self.instance,
            &self.class,
            &self.code,
            &self.subsystem,
            &self.service,
            &self.version,
        ])
    }
}

/// A service followed by a grantee subsystem
/// (`.../access/subsystem/{g_instance}/{g_class}/{g_code}/{g_subsystem}`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServiceSubsystemGranteePath {
    /// Instance of the service.
    pub instance: String,
    /// Member class of the provider.
    pub class: String,
    /// Member code of the provider.
    pub code: String,
    /// Provider subsystem code.
    pub subsystem: String,
    /// Service code.
    pub service: String,
    /// Version.
    pub version: String,
    /// Instance of the grantee subsystem.
    pub g_instance: String,
    /// Member class of the grantee.
    pub g_class: String,
    /// Member code of the grantee.
    pub g_code: String,
    /// Grantee subsystem code.
    pub g_subsystem: String,
}

impl ServiceSubsystemGranteePath {
    /// The service and the grantee subsystem.
    pub fn ids(&self) -> Result<(ServiceId, SubsystemId), ApiError> {
        let service = service_id([
            &self.instance,
            &self.class,
            &self.code,
            &self.subsystem,
            &self.service,
            &self.version,
        ])?;
        let grantee = subsystem_id(
            &self.g_instance,
            &self.g_class,
            &self.g_code,
            &self.g_subsystem,
        )?;
        Ok((service, grantee))
    }
}

/// A service followed by a grantee group (`.../access/group/{group}`).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ServiceGroupGranteePath {
    /// Instance.
    pub instance: String,
    /// Member class of the provider.
    pub class: String,
    /// Member code of the provider.
    pub code: String,
    /// Provider subsystem code.
    pub subsystem: String,
    /// Service code.
    pub service: String,
    /// Version.
    pub version: String,
    /// Group code.
    pub group: String,
}

impl ServiceGroupGranteePath {
    /// The service and the group code.
    pub fn ids(&self) -> Result<(ServiceId, String), ApiError> {
        let service = service_id([
            &self.instance,
            &self.class,
            &self.code,
            &self.subsystem,
            &self.service,
            &self.version,
        ])?;
        seg("group code", &self.group)?;
        Ok((service, self.group.clone()))
    }
}

/// `{group}`: a group code.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupPath {
    /// Group code.
    pub group: String,
}

impl GroupPath {
    /// The checked group code.
    pub fn code(&self) -> Result<String, ApiError> {
        seg("group code", &self.group)?;
        Ok(self.group.clone())
    }
}

/// `{group}/members/{instance}/{class}/{code}/{subsystem}`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct GroupMemberPath {
    /// Group code.
    pub group: String,
    /// Instance of the subsystem.
    pub instance: String,
    /// Member class.
    pub class: String,
    /// Member code.
    pub code: String,
    /// Subsystem code.
    pub subsystem: String,
}

impl GroupMemberPath {
    /// The group code and the subsystem.
    pub fn ids(&self) -> Result<(String, SubsystemId), ApiError> {
        seg("group code", &self.group)?;
        let s = subsystem_id(&self.instance, &self.class, &self.code, &self.subsystem)?;
        Ok((self.group.clone(), s))
    }
}

/// `{id}`: a record id (UUID, lowercase hyphenated form only).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct RecordPath {
    /// The record id, e.g. `0190f3c4-7b1a-7c3e-9d2a-1b2c3d4e5f60`.
    pub id: String,
}

impl RecordPath {
    /// The parsed id.
    pub fn id(&self) -> Result<Uuid, ApiError> {
        parse_uuid(&self.id)
    }
}

/// Parses a UUID in its canonical lowercase hyphenated form only.
pub fn parse_uuid(text: &str) -> Result<Uuid, ApiError> {
    match Uuid::try_parse(text) {
        Ok(u) if u.hyphenated().to_string() == text => Ok(u),
        _ => Err(ApiError::BadRequest(format!(
            "invalid id {text:?}: expected a lowercase hyphenated UUID"
        ))),
    }
}
