//! Authentication of management callers and the rules of what each may do.
//!
//! A caller presents `Authorization: Bearer <token>`. The token is hashed
//! (SHA-256, lowercase hex of its UTF-8 bytes) and the hash is looked up
//! among the active credentials; the secret itself is never compared, so
//! there is no timing oracle on it, and the registry stores only hashes.
//!
//! - An **operator** may do everything.
//! - A **member** may read and change only its own entries: its member
//!   record, its subsystems, nodes and registration requests, services its
//!   subsystems provide and the access rights on them, and subscriptions
//!   where the client or the provider is one of its subsystems.
//!
//! Client-certificate authentication needs the management API to speak
//! TLS, which it does not yet (it listens on loopback only).

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine as _;
use ndxp_core::MemberId;
use ndxp_registry::model::{Actor, CredentialKind};

use super::error::ApiError;
use super::AppState;

/// Prefix of every token this API issues.
pub const TOKEN_PREFIX: &str = "ndxp_";

/// A fresh bearer token: [`TOKEN_PREFIX`] and 32 random bytes, base64url.
///
/// # Errors
/// When the system random generator fails.
pub fn generate_token() -> Result<String, ndxp_sign::openssl::error::ErrorStack> {
    let mut bytes = [0u8; 32];
    ndxp_sign::openssl::rand::rand_bytes(&mut bytes)?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// The stored form of a token: SHA-256 of its UTF-8 bytes, lowercase hex.
pub fn hash_token(token: &str) -> String {
    hex::encode(ndxp_sign::openssl::sha::sha256(token.as_bytes()))
}

/// Who is calling, after authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// An operator, by credential name.
    Operator {
        /// The credential's name.
        name: String,
    },
    /// A member acting for itself.
    Member {
        /// The member.
        member: MemberId,
    },
}

impl Caller {
    /// The actor recorded in the audit trail.
    pub fn actor(&self) -> Actor {
        match self {
            Caller::Operator { name } => Actor::operator(name),
            Caller::Member { member } => Actor::member(member),
        }
    }

    /// Whether the caller is an operator.
    pub fn is_operator(&self) -> bool {
        matches!(self, Caller::Operator { .. })
    }

    /// Whether the caller is an operator or the member `m`.
    pub fn may_act_for(&self, m: &MemberId) -> bool {
        match self {
            Caller::Operator { .. } => true,
            Caller::Member { member } => member == m,
        }
    }

    /// Refuses anyone but an operator.
    pub fn require_operator(&self) -> Result<(), ApiError> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "only an operator may do this".to_string(),
            ))
        }
    }

    /// Refuses anyone but an operator or the member `m`.
    pub fn require_member(&self, m: &MemberId) -> Result<(), ApiError> {
        if self.may_act_for(m) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "the entries of member {m} belong to that member"
            )))
        }
    }

    /// The member, when the caller is one.
    pub fn member(&self) -> Option<&MemberId> {
        match self {
            Caller::Operator { .. } => None,
            Caller::Member { member } => Some(member),
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| {
                ApiError::Unauthorized("send Authorization: Bearer <token>".to_string())
            })?
            .to_str()
            .map_err(|_| ApiError::Unauthorized("the Authorization header is not text".into()))?;
        let (scheme, token) = value.split_once(' ').ok_or_else(|| {
            ApiError::Unauthorized("send Authorization: Bearer <token>".to_string())
        })?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(ApiError::Unauthorized(
                "send Authorization: Bearer <token>".to_string(),
            ));
        }
        let credential = state
            .store
            .find_active_credential(&hash_token(token))
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the token is unknown or revoked".to_string()))?;
        Ok(match credential.kind {
            CredentialKind::Operator => Caller::Operator {
                name: credential.name,
            },
            CredentialKind::Member(member) => Caller::Member { member },
        })
    }
}
