//! The in-memory routing table: what the request path reads instead of the
//! registry. Built from a [`GatewaySnapshot`] whenever the registry version
//! changes, and swapped in whole, so a request sees one consistent view.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{HeaderValue, Uri};
use chrono::{DateTime, Utc};
use ipnet::IpNet;
use ndxp_core::{ServiceId, SubsystemId};
use ndxp_edge::forward::{
    parse_base, BackendTls as EdgeTls, ExtraHeaders, ForwardError, Forwarder, ForwarderOptions,
    HeaderPolicy,
};
use ndxp_registry::store::gateway::{
    BackendTls, GatewayServiceState, GatewaySettings, GatewaySnapshot,
};
use uuid::Uuid;

use super::limits::Limit;

/// One service as the request path sees it.
#[derive(Debug)]
pub struct Route {
    /// The service.
    pub id: ServiceId,
    /// Its publication state.
    pub state: GatewayServiceState,
    /// Its settings.
    pub settings: GatewaySettings,
    /// `backend_url`, parsed.
    pub backend: Uri,
    /// The forwarder to its backend (shared unless it has TLS options).
    pub client: Forwarder,
    /// The headers that cross between the consumer and the backend.
    pub headers: HeaderPolicy,
    /// `Deprecation` header value (RFC 9745), when deprecated.
    pub deprecation: Option<HeaderValue>,
    /// `Sunset` header value (RFC 8594), when a sunset is set.
    pub sunset_header: Option<HeaderValue>,
    /// When the version stops answering.
    pub sunset_at: Option<DateTime<Utc>>,
    /// The per-service timeout.
    pub timeout: Duration,
}

/// A consumer application.
#[derive(Debug)]
pub struct App {
    /// The client subsystem.
    pub client: SubsystemId,
    /// Salted secret hash.
    pub secret_hash: String,
    /// Current generation.
    pub generation: i64,
    /// Allowed source ranges; empty = any.
    pub cidrs: Vec<IpNet>,
}

/// An approved subscription with its effective limits.
#[derive(Debug, Clone, Copy)]
pub struct Sub {
    /// The subscription id (the limiter's key).
    pub id: Uuid,
    /// Effective limits (overrides over the service's defaults).
    pub limit: Limit,
}

/// The whole table.
#[derive(Debug, Default)]
pub struct Routing {
    /// The registry version it was built from (-1: nothing loaded yet).
    pub version: i64,
    /// Every gateway service, by id.
    pub services: HashMap<ServiceId, Arc<Route>>,
    /// Unrevoked OAuth2 client credentials, by client id.
    pub apps: HashMap<String, Arc<App>>,
    /// Unrevoked client certificate credentials, by the certificate's
    /// SHA-256 fingerprint (lowercase hex).
    pub certs: HashMap<String, Arc<App>>,
    /// Approved subscriptions, by client then service.
    pub subs: HashMap<SubsystemId, HashMap<ServiceId, Sub>>,
}

/// Why a backend client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("service {service}: {reason}")]
pub struct ClientError {
    /// The service.
    pub service: String,
    /// What went wrong.
    pub reason: String,
}

/// Builds the backend forwarders, and knows the extra headers each
/// service lets through (`[[gateway.forward_headers]]`).
pub struct ClientFactory {
    shared: Forwarder,
    pool_idle: usize,
    extra: HashMap<ServiceId, ExtraHeaders>,
}

impl std::fmt::Debug for ClientFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFactory")
            .field("pool_idle", &self.pool_idle)
            .finish_non_exhaustive()
    }
}

fn options(pool_idle: usize, tls: EdgeTls) -> ForwarderOptions {
    ForwarderOptions {
        pool_max_idle_per_host: pool_idle,
        tls,
        ..ForwarderOptions::default()
    }
}

impl ClientFactory {
    /// A factory whose shared forwarder keeps `pool_idle` idle connections
    /// per host; `extra` are the extra headers of each service.
    ///
    /// # Errors
    /// When the TLS backend cannot be initialised.
    pub fn new(
        pool_idle: usize,
        extra: HashMap<ServiceId, ExtraHeaders>,
    ) -> Result<Self, ForwardError> {
        Ok(Self {
            shared: Forwarder::new(&options(pool_idle, EdgeTls::default()))?,
            pool_idle,
            extra,
        })
    }

    /// The forwarder for a service: the shared one, or one with its TLS
    /// files (read now).
    ///
    /// # Errors
    /// When a file cannot be read or parsed.
    pub fn client_for(
        &self,
        service: &ServiceId,
        tls: &BackendTls,
    ) -> Result<Forwarder, ClientError> {
        if tls.is_empty() {
            return Ok(self.shared.clone());
        }
        let err = |reason: String| ClientError {
            service: service.to_string(),
            reason,
        };
        let read = |p: &str| std::fs::read(p).map_err(|e| err(format!("cannot read {p}: {e}")));
        let mut edge = EdgeTls::default();
        if let Some(ca) = &tls.ca_file {
            edge.ca_pem = Some(read(ca)?);
        }
        if let (Some(cert), Some(key)) = (&tls.client_cert_file, &tls.client_key_file) {
            edge.identity = Some((read(cert)?, read(key)?));
        }
        Forwarder::new(&options(self.pool_idle, edge)).map_err(|e| {
            err(format!(
                "the TLS files cannot be used ({}); check that they are PEM certificates and a \
                 PKCS#8 PEM key",
                e.reason()
            ))
        })
    }

    /// The header policy of a service.
    pub fn headers_for(&self, service: &ServiceId) -> HeaderPolicy {
        self.extra.get(service).map_or_else(
            || HeaderPolicy::new(&ExtraHeaders::default()),
            HeaderPolicy::new,
        )
    }
}

/// `Deprecation: @<unix seconds>` (RFC 9745, an RFC 9651 Date).
pub fn deprecation_value(at: DateTime<Utc>) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!("@{}", at.timestamp())).ok()
}

/// `Sunset: <IMF-fixdate>` (RFC 8594).
pub fn sunset_value(at: DateTime<Utc>) -> Option<HeaderValue> {
    HeaderValue::from_str(&at.format("%a, %d %b %Y %H:%M:%S GMT").to_string()).ok()
}

impl Routing {
    /// Builds the table. A service whose backend client cannot be built is
    /// left out (and reported in the returned list), so one bad file does
    /// not stop every other service.
    pub fn build(snapshot: GatewaySnapshot, clients: &ClientFactory) -> (Self, Vec<ClientError>) {
        let mut problems = Vec::new();
        let mut services = HashMap::new();
        let mut defaults = HashMap::new();
        for rs in snapshot.services {
            let g = rs.gateway;
            let client = match clients.client_for(&g.service, &g.settings.backend_tls) {
                Ok(c) => c,
                Err(e) => {
                    problems.push(e);
                    continue;
                }
            };
            let backend = match parse_base(&g.settings.backend_url) {
                Ok(u) => u,
                Err(reason) => {
                    problems.push(ClientError {
                        service: g.service.to_string(),
                        reason,
                    });
                    continue;
                }
            };
            defaults.insert(g.service.clone(), g.settings.clone());
            let route = Route {
                id: g.service.clone(),
                state: g.state,
                backend,
                client,
                headers: clients.headers_for(&g.service),
                deprecation: rs.service.deprecated_at.and_then(deprecation_value),
                sunset_header: rs.service.sunset_at.and_then(sunset_value),
                sunset_at: rs.service.sunset_at,
                timeout: Duration::from_millis(g.settings.timeout_ms),
                settings: g.settings,
            };
            services.insert(g.service, Arc::new(route));
        }
        let mut apps = HashMap::new();
        let mut certs = HashMap::new();
        for a in snapshot.apps {
            let app = Arc::new(App {
                client: a.client,
                secret_hash: a.secret_hash,
                generation: a.generation,
                cidrs: a.allowed_cidrs,
            });
            match a.certificate {
                Some(c) => certs.insert(c.sha256, app),
                None => apps.insert(a.client_id, app),
            };
        }
        let mut subs: HashMap<SubsystemId, HashMap<ServiceId, Sub>> = HashMap::new();
        for s in snapshot.subscriptions {
            let Some(d) = defaults.get(&s.service) else {
                continue;
            };
            let limit = Limit {
                rate_per_sec: s.limits.rate_per_sec.unwrap_or(d.rate_per_sec),
                burst: s.limits.burst.unwrap_or(d.burst),
                quota_per_day: s.limits.quota_per_day.unwrap_or(d.quota_per_day),
            };
            subs.entry(s.client)
                .or_default()
                .insert(s.service, Sub { id: s.id, limit });
        }
        (
            Self {
                version: snapshot.registry_version,
                services,
                apps,
                certs,
                subs,
            },
            problems,
        )
    }

    /// Whether subscription `id` is in the table.
    pub fn has_subscription(&self, id: &Uuid) -> bool {
        self.subs.values().any(|m| m.values().any(|s| &s.id == id))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn deprecation_and_sunset_headers_follow_their_rfcs() {
        let at = DateTime::parse_from_rfc3339("2026-11-11T23:59:59Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(deprecation_value(at).unwrap(), "@1794441599");
        assert_eq!(sunset_value(at).unwrap(), "Wed, 11 Nov 2026 23:59:59 GMT");
    }
}
