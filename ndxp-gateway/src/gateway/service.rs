//! The central gateway's service layer: the catalogue, subscription and
//! credential operations that need more than one registry call or a check
//! before it. The management API's handlers (`/api/v1/gateway/...`) and the
//! binary's `ndxp-gateway gateway ...` commands both call these functions;
//! every other operation is one [`GatewayStore`] or [`RegistryStore`]
//! call that both make directly.
//!
//! [`RegistryStore`]: ndxp_registry::store::RegistryStore

use chrono::{DateTime, SecondsFormat, Utc};
use ipnet::IpNet;
use ndxp_core::{InstanceId, MemberId, ServiceId, SubsystemId};
use ndxp_registry::model::{Actor, Service, ServiceUpdate};
use ndxp_registry::store::gateway::{ClientCertificate, GatewayApp, GatewayStore};
use ndxp_registry::store::{RegistryStore, StoreError};

use super::token::{self, TokenError};

/// Why a gateway operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// An argument is wrong; the message says how to fix it.
    #[error("{0}")]
    Invalid(String),
    /// The registry refused the change or could not be reached.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Credentials could not be generated.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The certificate belongs to another member than the client's: a
    /// member registers only its own certificates.
    #[error("{0}")]
    NotOwner(String),
}

impl ServiceError {
    /// Whether the error is the caller's input (exit status 64 on the
    /// command line).
    pub fn is_usage(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::NotOwner(_))
    }
}

/// Refuses an identifier of another instance than `instance` (the
/// `instance` of the configuration file); `what` names it in the message.
///
/// # Errors
/// [`ServiceError::Invalid`].
pub fn check_instance(
    instance: &InstanceId,
    what: &str,
    id: &MemberId,
) -> Result<(), ServiceError> {
    if id.instance() == instance {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "{what} of {id} is not in instance {instance}, the `instance` of the configuration file"
        )))
    }
}

/// Deprecates the service version `id` at `at` and retires it at
/// `sunset`: calls get Deprecation and Sunset headers, and are refused
/// from the sunset on.
///
/// # Errors
/// [`ServiceError::Invalid`] when `sunset` is before `at`; store errors.
pub async fn deprecate_service(
    store: &dyn RegistryStore,
    id: &ServiceId,
    at: DateTime<Utc>,
    sunset: DateTime<Utc>,
    actor: &Actor,
) -> Result<Service, ServiceError> {
    if sunset < at {
        return Err(ServiceError::Invalid(
            "--sunset must not be before the deprecation time".into(),
        ));
    }
    let update = ServiceUpdate {
        deprecated_at: Some(Some(at)),
        sunset_at: Some(Some(sunset)),
        ..ServiceUpdate::default()
    };
    Ok(store.update_service(id, &update, actor).await?)
}

/// New credentials: the stored application and the secret to show once.
#[derive(Debug, Clone)]
pub struct IssuedCredentials {
    /// The stored application.
    pub app: GatewayApp,
    /// The client secret, never stored.
    pub client_secret: String,
}

async fn hashed(secret: &str) -> Result<String, TokenError> {
    let s = secret.to_string();
    tokio::task::spawn_blocking(move || token::hash_secret(&s))
        .await
        .unwrap_or(Err(TokenError::Invalid("the hashing task failed")))
}

/// Creates credentials for `client`: a fresh client id and secret, the
/// secret stored only as a salted hash.
///
/// # Errors
/// Store errors (e.g. no such subsystem) and random-generator failures.
pub async fn create_credentials(
    store: &dyn GatewayStore,
    client: &SubsystemId,
    allowed: &[IpNet],
    actor: &Actor,
) -> Result<IssuedCredentials, ServiceError> {
    let client_id = token::generate_client_id()?;
    let secret = token::generate_secret()?;
    let hash = hashed(&secret).await?;
    let app = store
        .create_gateway_app(&client_id, client, &hash, allowed, actor)
        .await?;
    Ok(IssuedCredentials {
        app,
        client_secret: secret,
    })
}

/// Largest client certificate file accepted, in bytes.
pub const MAX_CERT_PEM_BYTES: usize = 64 * 1024;

/// Registers the client certificate in `pem` (its CA certificates may
/// follow it) as credentials of `client`. The certificate must be valid
/// now, fit for TLS client authentication, when `anchors` are given (the
/// gateway's client CAs) chain to one of them, and name an NDXP identity
/// of `client`'s own member (a node authentication certificate of one of
/// its nodes, or its signing certificate: see `ndxp_sign::cert`), so that
/// no member registers, or blocks by registering first, another member's
/// certificate; revocation is checked when it is used.
///
/// # Errors
/// [`ServiceError::Invalid`] for a certificate that cannot be used;
/// [`ServiceError::NotOwner`] for another member's certificate; store errors
/// (no such subsystem, certificate already registered).
pub async fn register_certificate(
    store: &dyn GatewayStore,
    client: &SubsystemId,
    pem: &[u8],
    allowed: &[IpNet],
    anchors: Option<&[ndxp_sign::openssl::x509::X509]>,
    actor: &Actor,
) -> Result<GatewayApp, ServiceError> {
    use ndxp_sign::cert;
    use ndxp_sign::chain::{verify_chain, NoRevocationCheck, Purpose};
    if pem.len() > MAX_CERT_PEM_BYTES {
        return Err(ServiceError::Invalid(format!(
            "the certificate is larger than {MAX_CERT_PEM_BYTES} bytes"
        )));
    }
    let bad = |why: String| {
        ServiceError::Invalid(format!("the client certificate cannot be used: {why}"))
    };
    let chain = cert::read_pem_chain(pem).map_err(|e| bad(e.to_string()))?;
    let Some((leaf, rest)) = chain.split_first() else {
        return Err(bad("no -----BEGIN CERTIFICATE----- block found".into()));
    };
    let now = Utc::now();
    let not_after = cert::asn1_to_utc(leaf.not_after()).map_err(|e| bad(e.to_string()))?;
    match anchors {
        Some(anchors) => {
            verify_chain(
                leaf,
                rest,
                anchors,
                now,
                Purpose::ClientAuth,
                &NoRevocationCheck,
            )
            .map_err(|e| bad(e.to_string()))?;
        }
        None => {
            if not_after <= now {
                return Err(bad(format!("it expired at {}", time_text(Some(not_after)))));
            }
        }
    }
    let owner = cert::identity_of(leaf).map_err(|e| bad(e.to_string()))?;
    if owner.member() != client.member() {
        return Err(ServiceError::NotOwner(format!(
            "the certificate belongs to {} ({}), not to {}, the member of {client}: a member \
             may register only its own certificates as gateway credentials",
            owner.member(),
            owner.uri(),
            client.member()
        )));
    }
    let certificate = ClientCertificate {
        sha256: cert::try_fingerprint_sha256(leaf).map_err(|e| bad(e.to_string()))?,
        subject: cert::subject_text(leaf.subject_name()),
        not_after,
    };
    let client_id = token::generate_client_id()?;
    Ok(store
        .create_gateway_cert_app(&client_id, client, &certificate, allowed, actor)
        .await?)
}

/// Rotates the secret of `client_id`.
///
/// # Errors
/// Store errors (no such or revoked credentials).
pub async fn rotate_credentials(
    store: &dyn GatewayStore,
    client_id: &str,
    actor: &Actor,
) -> Result<IssuedCredentials, ServiceError> {
    let secret = token::generate_secret()?;
    let hash = hashed(&secret).await?;
    let app = store.rotate_gateway_secret(client_id, &hash, actor).await?;
    Ok(IssuedCredentials {
        app,
        client_secret: secret,
    })
}

/// A time as RFC 3339 in whole seconds, `-` for none.
pub fn time_text(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(
        || "-".into(),
        |t| t.to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}
