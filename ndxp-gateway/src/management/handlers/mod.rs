//! The handlers of the management API, one module per registry area.
//!
//! The registry operations of members, subsystems, nodes, registration
//! requests and credentials are those of the registry service
//! ([`crate::management::registry::Admin`], through
//! [`AppState::admin`](crate::management::AppState)); the handlers add the
//! API's part: reading the request, the caller's authorization, and the
//! problem answer of each [`AdminError`] (below).

use ndxp_registry::store::StoreError;

use crate::management::error::ApiError;
use crate::management::registry::AdminError;

pub mod admin;
pub mod gateway;
pub mod groups;
pub mod members;
pub mod monitoring;
pub mod public;
pub mod registrations;
pub mod services;
pub mod subscriptions;

/// The answer to an [`AdminError`] of an identifier in the request's body
/// or query: an identifier of another instance, or a bad name or reason,
/// is a malformed request (400 `ndxp.bad_request`); the registry's errors
/// are answered as the registry's.
impl From<AdminError> for ApiError {
    fn from(e: AdminError) -> Self {
        match e {
            AdminError::WrongInstance { what, id, instance } => {
                ApiError::BadRequest(format!("{what} {id} is not in instance {instance}"))
            }
            AdminError::Invalid(m) => ApiError::BadRequest(m),
            AdminError::NoReason => ApiError::BadRequest(e.to_string()),
            AdminError::Store(s) => s.into(),
            AdminError::Random(r) => ApiError::Internal(format!("random generator failed: {r}")),
            e => ApiError::Internal(ndxp_core::ErrorChain(&e).to_string()),
        }
    }
}

/// The answer to an [`AdminError`] of an operation on an object named in
/// the request's path: an identifier of another instance names nothing in
/// this registry, so it is an unknown object (404 `ndxp.service_unknown`),
/// as the registry answers any other; everything else as [`From`] says.
fn in_path(e: AdminError) -> ApiError {
    match e {
        AdminError::WrongInstance { what, id, .. } => StoreError::NotFound { what, id }.into(),
        e => e.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(e: ApiError) -> (u16, String, String) {
        let (status, problem) = e.to_problem();
        (
            status.as_u16(),
            problem.code,
            problem.detail.unwrap_or_default(),
        )
    }

    fn foreign() -> AdminError {
        AdminError::WrongInstance {
            what: "member",
            id: "LA/GOV/1".into(),
            instance: "VN".parse().unwrap_or_else(|e| panic!("{e}")),
        }
    }

    #[test]
    fn service_errors_get_the_api_answers() {
        assert_eq!(
            answer(foreign().into()),
            (
                400,
                "ndxp.bad_request".into(),
                "member LA/GOV/1 is not in instance VN".into()
            )
        );
        assert_eq!(
            answer(in_path(foreign())),
            (
                404,
                "ndxp.service_unknown".into(),
                "member LA/GOV/1 does not exist".into()
            )
        );
        assert_eq!(
            answer(AdminError::NoReason.into()),
            (
                400,
                "ndxp.bad_request".into(),
                "give a reason for the rejection".into()
            )
        );
        assert_eq!(
            answer(in_path(AdminError::Invalid("bad".into()))),
            (400, "ndxp.bad_request".into(), "bad".into())
        );
        let conflict = StoreError::AlreadyExists {
            what: "member",
            id: "VN/GOV/1".into(),
        };
        assert_eq!(answer(AdminError::Store(conflict).into()).0, 409);
    }
}
