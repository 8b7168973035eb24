//! The central gateway's part of the registry (centralized model, docs/design.md
//! §9): how each service is served through the gateway, the consumers'
//! credentials (OAuth2 client credentials or a client certificate), and
//! per-subscription limits. Schema versions 2 (`migrations/0002_gateway.sql`)
//! and 4 (`migrations/0004_gateway_certificates.sql`).
//!
//! [`GatewayStore`] extends the registry; [`super::SqlStore`] implements it with
//! the same invariants as [`super::RegistryStore`]: every write is one
//! transaction that appends one audit entry and raises the registry
//! version, so a gateway that watches the version sees every change.
//!
//! Lifecycle of a gateway service: `registered` (by the provider or an
//! operator) → `published` (by an operator; callable) → `withdrawn`
//! (cancelled; refused) → `published` again if an operator decides so.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use ndxp_core::{ServiceId, SubsystemId};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::model::{state_names, Actor, Service};
use crate::store::{Result, StoreError};

/// Longest backend URL accepted, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Most address ranges on one application.
pub const MAX_CIDRS: usize = 64;
/// Longest per-service timeout, in milliseconds (10 minutes).
pub const MAX_TIMEOUT_MS: u64 = 600_000;

/// Publication state of a service on the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GatewayServiceState {
    /// Registered by the provider; not callable until published.
    Registered,
    /// Published by an operator: consumers with an approved subscription
    /// may call it.
    Published,
    /// Withdrawn (cancelled): every call is refused.
    Withdrawn,
}

state_names!(GatewayServiceState {
    Registered => "registered",
    Published => "published",
    Withdrawn => "withdrawn",
});

impl GatewayServiceState {
    /// Whether a service may move from this state to `to`: registered →
    /// published | withdrawn, published → withdrawn, withdrawn → published.
    pub fn can_become(self, to: GatewayServiceState) -> bool {
        use GatewayServiceState::*;
        matches!(
            (self, to),
            (Registered, Published)
                | (Registered, Withdrawn)
                | (Published, Withdrawn)
                | (Withdrawn, Published)
        )
    }
}

/// TLS towards a backend: files on the gateway host, read when the
/// gateway loads the service. Only an operator may set them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTls {
    /// Extra CA certificate (PEM) trusted for the backend's certificate.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Client certificate (PEM) the gateway presents to the backend.
    #[serde(default)]
    pub client_cert_file: Option<String>,
    /// Private key (PKCS#8 PEM) of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<String>,
}

impl BackendTls {
    /// Whether no TLS option is set.
    pub fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.client_cert_file.is_none() && self.client_key_file.is_none()
    }
}

/// How the gateway serves one service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySettings {
    /// Base URL of the provider's backend (`http://` or `https://`); the
    /// path after the service id is appended to it.
    pub backend_url: String,
    /// How long the backend may take to answer, in milliseconds.
    pub timeout_ms: u64,
    /// Default sustained rate per subscription, requests per second
    /// (0 = unlimited).
    pub rate_per_sec: u64,
    /// Default burst per subscription (requests that may arrive at once).
    pub burst: u64,
    /// Default quota per subscription, requests per UTC day (0 = unlimited).
    pub quota_per_day: u64,
    /// DigiSign adapter: sign each forwarded request (RFC 9421, NDXP
    /// profile) with the platform's signing key.
    pub sign_requests: bool,
    /// DigiSign adapter: require and verify a signed response.
    pub verify_responses: bool,
    /// TLS towards the backend.
    #[serde(default, skip_serializing_if = "BackendTls::is_empty")]
    pub backend_tls: BackendTls,
}

impl GatewaySettings {
    /// Settings with `backend_url` and the defaults: 30 s timeout, no rate
    /// limit, no quota, no signing.
    pub fn new(backend_url: impl Into<String>) -> Self {
        Self {
            backend_url: backend_url.into(),
            timeout_ms: 30_000,
            rate_per_sec: 0,
            burst: 0,
            quota_per_day: 0,
            sign_requests: false,
            verify_responses: false,
            backend_tls: BackendTls::default(),
        }
    }

    /// Checks every value; the message says what to fix.
    ///
    /// # Errors
    /// [`StoreError::Invalid`].
    pub fn check(&self) -> Result<()> {
        check_backend_url(&self.backend_url)?;
        if self.timeout_ms == 0 || self.timeout_ms > MAX_TIMEOUT_MS {
            return Err(StoreError::Invalid(format!(
                "timeout_ms must be between 1 and {MAX_TIMEOUT_MS}"
            )));
        }
        for (what, v) in [
            ("rate_per_sec", self.rate_per_sec),
            ("burst", self.burst),
            ("quota_per_day", self.quota_per_day),
        ] {
            if i64::try_from(v).is_err() {
                return Err(StoreError::Invalid(format!("{what} is too large")));
            }
        }
        if self.verify_responses && !self.sign_requests {
            return Err(StoreError::Invalid(
                "verify_responses needs sign_requests: a signed response covers the signed \
                 request"
                    .into(),
            ));
        }
        let t = &self.backend_tls;
        if t.client_cert_file.is_some() != t.client_key_file.is_some() {
            return Err(StoreError::Invalid(
                "give both client_cert_file and client_key_file, or neither".into(),
            ));
        }
        for f in [&t.ca_file, &t.client_cert_file, &t.client_key_file]
            .into_iter()
            .flatten()
        {
            if f.trim().is_empty() || f.len() > 4096 || f.chars().any(char::is_control) {
                return Err(StoreError::Invalid(format!(
                    "TLS file name {f:?} is empty, too long or contains control characters"
                )));
            }
        }
        Ok(())
    }
}

/// Checks a backend base URL: `http://` or `https://` with a host, no
/// query, no fragment, no credentials.
///
/// # Errors
/// [`StoreError::Invalid`].
pub fn check_backend_url(url: &str) -> Result<()> {
    if url.len() > MAX_URL_BYTES {
        return Err(StoreError::Invalid(format!(
            "backend_url is longer than {MAX_URL_BYTES} bytes"
        )));
    }
    let parsed = reqwest::Url::parse(url)
        .map_err(|e| StoreError::Invalid(format!("backend_url {url:?} is not a URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none_or(str::is_empty) {
        return Err(StoreError::Invalid(format!(
            "backend_url {url:?} must be an http:// or https:// URL with a host"
        )));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(StoreError::Invalid(format!(
            "backend_url {url:?} must not have a query or fragment"
        )));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(StoreError::Invalid(format!(
            "backend_url {url:?} must not carry credentials"
        )));
    }
    Ok(())
}

/// A service as the gateway serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayService {
    /// The service (registered in the catalogue).
    pub service: ServiceId,
    /// Publication state.
    pub state: GatewayServiceState,
    /// Backend, limits and signing.
    #[serde(flatten)]
    pub settings: GatewaySettings,
    /// When it was registered on the gateway.
    pub created_at: DateTime<Utc>,
    /// When its settings or state last changed.
    pub updated_at: DateTime<Utc>,
}

/// Changes to [`GatewaySettings`]; `None` leaves a field as it is. This is
/// also the body of the management API's `PATCH` of a gateway service
/// (schema `GatewayServicePatch` with the `openapi` feature).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        as = GatewayServicePatch,
        description = "Body of `PATCH /api/v1/gateway/services/{...}`: the fields to change."
    )
)]
#[serde(deny_unknown_fields)]
pub struct GatewaySettingsUpdate {
    /// New backend base URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_url: Option<String>,
    /// New timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// New default rate (requests per second, 0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<u64>,
    /// New default burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// New default daily quota (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_per_day: Option<u64>,
    /// Sign forwarded requests or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_requests: Option<bool>,
    /// Require signed responses or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_responses: Option<bool>,
    /// New TLS options towards the backend (replaces all three files;
    /// operator only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub backend_tls: Option<BackendTls>,
}

impl GatewaySettingsUpdate {
    /// `settings` with this update applied.
    pub fn apply(&self, settings: &GatewaySettings) -> GatewaySettings {
        let mut s = settings.clone();
        if let Some(v) = &self.backend_url {
            s.backend_url.clone_from(v);
        }
        if let Some(v) = self.timeout_ms {
            s.timeout_ms = v;
        }
        if let Some(v) = self.rate_per_sec {
            s.rate_per_sec = v;
        }
        if let Some(v) = self.burst {
            s.burst = v;
        }
        if let Some(v) = self.quota_per_day {
            s.quota_per_day = v;
        }
        if let Some(v) = self.sign_requests {
            s.sign_requests = v;
        }
        if let Some(v) = self.verify_responses {
            s.verify_responses = v;
        }
        if let Some(v) = &self.backend_tls {
            s.backend_tls = v.clone();
        }
        s
    }
}

/// A client certificate registered as a consumer's credentials: what the
/// gateway matches a presented certificate against, and what is shown.
/// The certificate itself is not stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCertificate {
    /// SHA-256 of the certificate's DER encoding, 64 lowercase hex digits.
    pub sha256: String,
    /// The certificate's subject, for people.
    pub subject: String,
    /// When the certificate expires.
    pub not_after: DateTime<Utc>,
}

/// A consumer application's credentials (one client subsystem): OAuth2
/// client credentials, or a client certificate when
/// [`certificate`](Self::certificate) is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayApp {
    /// The OAuth2 `client_id`.
    pub client_id: String,
    /// The consumer subsystem the application acts as.
    pub client: SubsystemId,
    /// Salted hash of the secret (never shown by the API).
    #[serde(skip_serializing, default)]
    pub secret_hash: String,
    /// Grows with each rotation; tokens of an older generation are refused.
    pub generation: i64,
    /// Source address ranges calls may come from; empty means any.
    pub allowed_cidrs: Vec<IpNet>,
    /// When the credentials were created.
    pub created_at: DateTime<Utc>,
    /// When the secret was last set.
    pub rotated_at: DateTime<Utc>,
    /// When the credentials were revoked, if they were.
    pub revoked_at: Option<DateTime<Utc>>,
    /// The client certificate, for certificate credentials (which have no
    /// secret and get no tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<ClientCertificate>,
}

/// Per-subscription overrides of a service's limits; `None` keeps the
/// service's default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionLimits {
    /// Sustained rate, requests per second (0 = unlimited).
    #[serde(default)]
    pub rate_per_sec: Option<u64>,
    /// Burst.
    #[serde(default)]
    pub burst: Option<u64>,
    /// Requests per UTC day (0 = unlimited).
    #[serde(default)]
    pub quota_per_day: Option<u64>,
}

/// An approved subscription, as the gateway enforces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySubscription {
    /// The subscription id.
    pub id: Uuid,
    /// The service.
    pub service: ServiceId,
    /// The client subsystem.
    pub client: SubsystemId,
    /// Its limit overrides.
    pub limits: SubscriptionLimits,
}

/// A gateway service with its catalogue entry (deprecation, sunset).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutedService {
    /// The catalogue entry.
    pub service: Service,
    /// How the gateway serves it.
    pub gateway: GatewayService,
}

/// Everything the gateway's request path needs, read in one transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySnapshot {
    /// The registry version it reflects.
    pub registry_version: i64,
    /// Every gateway service in any state, sorted by id.
    pub services: Vec<RoutedService>,
    /// Unrevoked applications, sorted by client id.
    pub apps: Vec<GatewayApp>,
    /// Approved subscriptions, sorted by id.
    pub subscriptions: Vec<GatewaySubscription>,
}

/// Checks and de-duplicates a list of address ranges.
///
/// # Errors
/// [`StoreError::Invalid`] when there are more than [`MAX_CIDRS`].
pub fn normalise_cidrs(cidrs: &[IpNet]) -> Result<Vec<IpNet>> {
    if cidrs.len() > MAX_CIDRS {
        return Err(StoreError::Invalid(format!(
            "at most {MAX_CIDRS} address ranges are allowed"
        )));
    }
    let mut v: Vec<IpNet> = cidrs.iter().map(IpNet::trunc).collect();
    v.sort();
    v.dedup();
    Ok(v)
}

/// The gateway's registry operations. Writes are atomic and audited and
/// raise the registry version.
#[async_trait]
pub trait GatewayStore: Send + Sync {
    /// Registers a service on the gateway in state `registered`. When the
    /// service is not yet in the catalogue it is added in the same
    /// transaction with `description` (required then) and `openapi`.
    /// `AlreadyExists` when the service is already on the gateway.
    async fn register_gateway_service(
        &self,
        id: &ServiceId,
        description: Option<&str>,
        openapi: Option<&str>,
        settings: &GatewaySettings,
        actor: &Actor,
    ) -> Result<GatewayService>;
    /// One gateway service; `NotFound` if absent.
    async fn get_gateway_service(&self, id: &ServiceId) -> Result<GatewayService>;
    /// Gateway services, of one provider subsystem or all, sorted by id.
    async fn list_gateway_services(
        &self,
        provider: Option<&SubsystemId>,
    ) -> Result<Vec<GatewayService>>;
    /// Changes settings; takes effect on the gateway's next refresh.
    async fn update_gateway_service(
        &self,
        id: &ServiceId,
        update: &GatewaySettingsUpdate,
        actor: &Actor,
    ) -> Result<GatewayService>;
    /// Publishes or withdraws; `InvalidTransition` unless
    /// [`GatewayServiceState::can_become`] allows it.
    async fn set_gateway_service_state(
        &self,
        id: &ServiceId,
        to: GatewayServiceState,
        actor: &Actor,
    ) -> Result<GatewayService>;

    /// Creates client credentials for a subsystem (it must exist).
    /// `secret_hash` is the salted hash of the secret; the caller shows the
    /// secret once and forgets it.
    async fn create_gateway_app(
        &self,
        client_id: &str,
        client: &SubsystemId,
        secret_hash: &str,
        allowed_cidrs: &[IpNet],
        actor: &Actor,
    ) -> Result<GatewayApp>;
    /// Registers a client certificate as credentials for a subsystem (it
    /// must exist): calls presenting that certificate act as `client`.
    /// `AlreadyExists` when the certificate is registered and not revoked.
    /// The caller checks the certificate itself (chain, expiry).
    async fn create_gateway_cert_app(
        &self,
        client_id: &str,
        client: &SubsystemId,
        certificate: &ClientCertificate,
        allowed_cidrs: &[IpNet],
        actor: &Actor,
    ) -> Result<GatewayApp>;
    /// One application, revoked or not; `NotFound` if absent.
    async fn get_gateway_app(&self, client_id: &str) -> Result<GatewayApp>;
    /// Applications, of one client subsystem or all, oldest first.
    async fn list_gateway_apps(&self, client: Option<&SubsystemId>) -> Result<Vec<GatewayApp>>;
    /// Replaces the secret hash and raises the generation, so that tokens
    /// issued before stop working. `InvalidTransition` when revoked;
    /// `Invalid` for certificate credentials (register the new certificate
    /// and revoke the old credentials instead).
    async fn rotate_gateway_secret(
        &self,
        client_id: &str,
        secret_hash: &str,
        actor: &Actor,
    ) -> Result<GatewayApp>;
    /// Replaces the allowed source address ranges (empty: any).
    async fn set_gateway_app_cidrs(
        &self,
        client_id: &str,
        allowed_cidrs: &[IpNet],
        actor: &Actor,
    ) -> Result<GatewayApp>;
    /// Revokes the credentials; `InvalidTransition` when already revoked.
    async fn revoke_gateway_app(&self, client_id: &str, actor: &Actor) -> Result<GatewayApp>;

    /// Sets the limit overrides of a subscription (it must exist).
    async fn set_subscription_limits(
        &self,
        subscription: Uuid,
        limits: &SubscriptionLimits,
        actor: &Actor,
    ) -> Result<SubscriptionLimits>;
    /// The limit overrides of a subscription (all `None` when never set).
    async fn subscription_limits(&self, subscription: Uuid) -> Result<SubscriptionLimits>;

    /// The registry version (cheap; the gateway polls it).
    async fn gateway_registry_version(&self) -> Result<i64>;
    /// Everything the gateway needs, consistently.
    async fn gateway_snapshot(&self) -> Result<GatewaySnapshot>;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn states_move_only_along_the_lifecycle() {
        use GatewayServiceState::*;
        assert!(Registered.can_become(Published));
        assert!(Published.can_become(Withdrawn));
        assert!(Withdrawn.can_become(Published));
        assert!(!Published.can_become(Registered));
        assert!(!Withdrawn.can_become(Registered));
        for s in [Registered, Published, Withdrawn] {
            assert_eq!(s.as_str().parse::<GatewayServiceState>().unwrap(), s);
            assert!(!s.can_become(s));
        }
    }

    #[test]
    fn backend_urls_are_checked() {
        for ok in ["http://127.0.0.1:8080", "https://backend.example/api/v1/"] {
            check_backend_url(ok).unwrap();
        }
        for bad in [
            "ftp://x",
            "http://",
            "not a url",
            "http://u:p@host/",
            "http://host/?q=1",
            "http://host/#f",
        ] {
            assert!(check_backend_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn settings_refuse_out_of_range_values() {
        let mut s = GatewaySettings::new("http://127.0.0.1:1");
        s.check().unwrap();
        s.timeout_ms = 0;
        assert!(s.check().is_err());
        s.timeout_ms = 10;
        s.backend_tls.client_cert_file = Some("c.pem".into());
        assert!(s.check().is_err(), "a certificate without its key");
        s.backend_tls.client_key_file = Some("c.key".into());
        s.check().unwrap();
        s.quota_per_day = u64::MAX;
        assert!(s.check().is_err());
        s.quota_per_day = 0;
        s.verify_responses = true;
        assert!(
            s.check().is_err(),
            "verifying responses needs signed requests"
        );
        s.sign_requests = true;
        s.check().unwrap();
    }

    #[test]
    fn ranges_are_truncated_and_deduplicated() {
        let v: Vec<IpNet> = ["10.1.2.3/8", "10.0.0.0/8", "::1/128"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let n = normalise_cidrs(&v).unwrap();
        assert_eq!(n.len(), 2);
        assert!(n.contains(&"10.0.0.0/8".parse().unwrap()));
        let many = vec!["10.0.0.0/8".parse().unwrap(); MAX_CIDRS + 1];
        assert!(normalise_cidrs(&many).is_err());
    }
}
