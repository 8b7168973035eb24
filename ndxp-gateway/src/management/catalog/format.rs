//! The registry file: its types (TOML, `deny_unknown_fields`), reading
//! with line numbers, writing in a stable order, and the checks of
//! [`CatalogFile::check`] that need nothing but the file.

use std::collections::BTreeSet;
use std::ops::Range;

use chrono::{DateTime, Utc};
use ndxp_core::{InstanceId, MemberId, ServiceId, SubsystemId};
use ndxp_registry::model::Grantee;
use ndxp_registry::store::gateway::{
    BackendTls, GatewayServiceState, GatewaySettings, SubscriptionLimits,
};
use serde::{Deserialize, Serialize};
use toml::Spanned;

use super::CatalogError;
use crate::management::registry::check_name;

/// The version of the file format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// Largest file accepted, in bytes (16 MiB: OpenAPI documents included).
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// The registry as a file (docs/config-as-code.md). Every list is sorted
/// by its key when written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogFile {
    /// [`FORMAT_VERSION`].
    pub format: u32,
    /// The instance the file belongs to; applying it elsewhere is refused.
    pub instance: String,
    /// Member organisations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberEntry>,
    /// Subsystems of the members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsystems: Vec<SubsystemEntry>,
    /// Groups of subsystems with their members.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupEntry>,
    /// Services (each version is its own service id).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceEntry>,
    /// Access rights: who may call which service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<AccessEntry>,
    /// Services served by the central gateway.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateway_services: Vec<GatewayServiceEntry>,
    /// Subscriptions (requested or approved) with their limits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions: Vec<SubscriptionEntry>,
}

/// A member.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberEntry {
    /// `instance/class/code`.
    pub id: Spanned<MemberId>,
    /// The organisation's name.
    pub name: String,
}

/// A subsystem (its member is part of its id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubsystemEntry {
    /// `instance/class/code/subsystem`.
    pub id: Spanned<SubsystemId>,
}

/// A group with its member subsystems.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupEntry {
    /// The group code.
    pub code: Spanned<String>,
    /// What the group is for.
    pub description: String,
    /// Its subsystems, sorted.
    #[serde(default)]
    pub members: Vec<SubsystemId>,
}

/// A service version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceEntry {
    /// `instance/class/code/subsystem/service/version`.
    pub id: Spanned<ServiceId>,
    /// What it does.
    pub description: String,
    /// The OpenAPI document, JSON text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub openapi: Option<String>,
    /// When the version is (or was) deprecated, RFC 3339 in quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecated_at: Option<DateTime<Utc>>,
    /// When it stops answering, RFC 3339 in quotes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sunset_at: Option<DateTime<Utc>>,
}

/// An access right: `service` granted to one `subsystem` or one `group`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessEntry {
    /// The service granted.
    pub service: Spanned<ServiceId>,
    /// The client subsystem granted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subsystem: Option<SubsystemId>,
    /// The group granted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// How the central gateway serves a service (fields as
/// [`GatewaySettings`]; absent ones take its defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayServiceEntry {
    /// The service (also listed under `services`).
    pub service: Spanned<ServiceId>,
    /// `registered`, `published` or `withdrawn`.
    pub state: GatewayServiceState,
    /// The backend's base URL.
    pub backend_url: String,
    /// Backend timeout, milliseconds.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Default rate per subscription, requests per second (0 = unlimited).
    #[serde(default)]
    pub rate_per_sec: u64,
    /// Default burst per subscription.
    #[serde(default)]
    pub burst: u64,
    /// Default quota per subscription, requests per UTC day (0 = unlimited).
    #[serde(default)]
    pub quota_per_day: u64,
    /// Sign forwarded requests.
    #[serde(default)]
    pub sign_requests: bool,
    /// Require signed responses.
    #[serde(default)]
    pub verify_responses: bool,
    /// TLS towards the backend (file names on the gateway host).
    #[serde(default, skip_serializing_if = "BackendTls::is_empty")]
    pub backend_tls: BackendTls,
}

fn default_timeout() -> u64 {
    GatewaySettings::new("").timeout_ms
}

/// States a subscription can be given in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WantedSubscription {
    /// Asked for; no decision yet.
    Requested,
    /// The client may call the service.
    Approved,
}

/// A subscription of `client` to `service`, with its limit overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionEntry {
    /// The service.
    pub service: Spanned<ServiceId>,
    /// The client subsystem.
    pub client: SubsystemId,
    /// `requested` or `approved`.
    pub state: WantedSubscription,
    /// Rate override, requests per second (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<u64>,
    /// Burst override.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Daily quota override (0 = unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_per_day: Option<u64>,
}

impl GatewayServiceEntry {
    /// The settings it describes.
    pub fn settings(&self) -> GatewaySettings {
        GatewaySettings {
            backend_url: self.backend_url.clone(),
            timeout_ms: self.timeout_ms,
            rate_per_sec: self.rate_per_sec,
            burst: self.burst,
            quota_per_day: self.quota_per_day,
            sign_requests: self.sign_requests,
            verify_responses: self.verify_responses,
            backend_tls: self.backend_tls.clone(),
        }
    }
}

impl AccessEntry {
    /// Who is granted the service; `None` unless exactly one of
    /// `subsystem` and `group` is given.
    pub fn grantee(&self) -> Option<Grantee> {
        match (&self.subsystem, &self.group) {
            (Some(s), None) => Some(Grantee::Subsystem(s.clone())),
            (None, Some(g)) => Some(Grantee::Group(g.clone())),
            _ => None,
        }
    }
}

impl SubscriptionEntry {
    /// Its limit overrides.
    pub fn limits(&self) -> SubscriptionLimits {
        SubscriptionLimits {
            rate_per_sec: self.rate_per_sec,
            burst: self.burst,
            quota_per_day: self.quota_per_day,
        }
    }
}

/// A value without a place in a file (written by export).
pub(super) fn unplaced<T>(v: T) -> Spanned<T> {
    Spanned::new(0..0, v)
}

const HEADER: &str = "\
# NDXP registry configuration (docs/config-as-code.md).
# Written by `ndxp-gateway registry export`; apply with
# `ndxp-gateway registry apply -f FILE` (review with `registry diff` first).
# Nodes, credentials, tokens, the audit trail and global configuration
# versions are not part of this file.
";

impl CatalogFile {
    /// An empty file for `instance`.
    pub fn new(instance: &InstanceId) -> Self {
        Self {
            format: FORMAT_VERSION,
            instance: instance.to_string(),
            members: Vec::new(),
            subsystems: Vec::new(),
            groups: Vec::new(),
            services: Vec::new(),
            access: Vec::new(),
            gateway_services: Vec::new(),
            subscriptions: Vec::new(),
        }
    }

    /// Reads a file's text; errors name the line. The result is checked
    /// with [`check`](Self::check) but not against any registry.
    ///
    /// # Errors
    /// [`CatalogError::Syntax`] and [`CatalogError::Invalid`].
    pub fn parse(text: &str) -> Result<Self, CatalogError> {
        if text.len() > MAX_FILE_BYTES {
            return Err(CatalogError::Syntax(format!(
                "the file is larger than {MAX_FILE_BYTES} bytes"
            )));
        }
        let file: Self = toml::from_str(text).map_err(|e| {
            let place = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, &s)))
                .unwrap_or_default();
            CatalogError::Syntax(format!("{place}{}", e.message().trim_end()))
        })?;
        file.check(text)?;
        Ok(file)
    }

    /// The file's text: a comment header, then every list in its order.
    /// The same registry always gives the same bytes.
    ///
    /// # Errors
    /// [`CatalogError::Syntax`] if TOML cannot represent a value.
    pub fn render(&self) -> Result<String, CatalogError> {
        let body = toml::to_string(self).map_err(|e| CatalogError::Syntax(e.to_string()))?;
        Ok(format!("{HEADER}\n{body}"))
    }

    /// Puts every list in its canonical order (as export writes it).
    pub fn sort(&mut self) {
        self.members
            .sort_by(|a, b| a.id.get_ref().cmp(b.id.get_ref()));
        self.subsystems
            .sort_by(|a, b| a.id.get_ref().cmp(b.id.get_ref()));
        for g in &mut self.groups {
            g.members.sort();
        }
        self.groups
            .sort_by(|a, b| a.code.get_ref().cmp(b.code.get_ref()));
        self.services
            .sort_by(|a, b| a.id.get_ref().cmp(b.id.get_ref()));
        self.access.sort_by(|a, b| {
            (a.service.get_ref(), a.grantee()).cmp(&(b.service.get_ref(), b.grantee()))
        });
        self.gateway_services
            .sort_by(|a, b| a.service.get_ref().cmp(b.service.get_ref()));
        self.subscriptions.sort_by(|a, b| {
            (a.service.get_ref(), &a.client).cmp(&(b.service.get_ref(), &b.client))
        });
    }

    /// Checks what needs no registry: the format version, the instance,
    /// names and values, no object twice, and every reference resolving
    /// to an object of the file (the file describes a whole registry).
    /// `text` is the file's text, for line numbers.
    ///
    /// # Errors
    /// [`CatalogError::Invalid`] naming the line and the object.
    pub fn check(&self, text: &str) -> Result<(), CatalogError> {
        let bad = |span: Range<usize>, msg: String| {
            Err(CatalogError::Invalid(format!(
                "line {}: {msg}",
                line_of(text, &span)
            )))
        };
        if self.format != FORMAT_VERSION {
            return Err(CatalogError::Invalid(format!(
                "format {} is not supported: this build reads format {FORMAT_VERSION}",
                self.format
            )));
        }
        let instance: InstanceId = self
            .instance
            .parse()
            .map_err(|e| CatalogError::Invalid(format!("instance {:?}: {e}", self.instance)))?;
        let mut members = BTreeSet::new();
        for m in &self.members {
            let id = m.id.get_ref();
            if id.instance() != &instance {
                return bad(
                    m.id.span(),
                    format!("member {id} is not in instance {instance}"),
                );
            }
            if let Err(e) = check_name("member name", &m.name) {
                return bad(m.id.span(), format!("member {id}: {e}"));
            }
            if !members.insert(id) {
                return bad(m.id.span(), format!("member {id} is listed twice"));
            }
        }
        let mut subsystems = BTreeSet::new();
        for s in &self.subsystems {
            let id = s.id.get_ref();
            if !members.contains(id.member()) {
                return bad(
                    s.id.span(),
                    format!(
                        "subsystem {id}: its member {} is not in the file",
                        id.member()
                    ),
                );
            }
            if !subsystems.insert(id) {
                return bad(s.id.span(), format!("subsystem {id} is listed twice"));
            }
        }
        let mut groups = BTreeSet::new();
        for g in &self.groups {
            let code = g.code.get_ref();
            if let Err(e) = ndxp_core::id::check_segment("group code", code) {
                return bad(g.code.span(), format!("group {code:?}: {e}"));
            }
            if !groups.insert(code.as_str()) {
                return bad(g.code.span(), format!("group {code} is listed twice"));
            }
            let mut seen = BTreeSet::new();
            for s in &g.members {
                if !subsystems.contains(s) {
                    return bad(
                        g.code.span(),
                        format!("group {code}: member subsystem {s} is not in the file"),
                    );
                }
                if !seen.insert(s) {
                    return bad(g.code.span(), format!("group {code} lists {s} twice"));
                }
            }
        }
        let mut services = BTreeSet::new();
        for s in &self.services {
            let id = s.id.get_ref();
            if !subsystems.contains(id.subsystem()) {
                return bad(
                    s.id.span(),
                    format!(
                        "service {id}: its provider subsystem {} is not in the file",
                        id.subsystem()
                    ),
                );
            }
            if let Some(doc) = &s.openapi {
                let ok =
                    serde_json::from_str::<serde_json::Value>(doc).is_ok_and(|v| v.is_object());
                if !ok {
                    return bad(
                        s.id.span(),
                        format!("service {id}: openapi is not a JSON object"),
                    );
                }
            }
            if let (Some(d), Some(x)) = (s.deprecated_at, s.sunset_at) {
                if x < d {
                    return bad(
                        s.id.span(),
                        format!("service {id}: sunset_at is before deprecated_at"),
                    );
                }
            }
            if !services.insert(id) {
                return bad(s.id.span(), format!("service {id} is listed twice"));
            }
        }
        let mut rights = BTreeSet::new();
        for a in &self.access {
            let service = a.service.get_ref();
            let Some(grantee) = a.grantee() else {
                return bad(
                    a.service.span(),
                    format!("access to {service}: give exactly one of subsystem or group"),
                );
            };
            if !services.contains(service) {
                return bad(
                    a.service.span(),
                    format!("access to {service}: the service is not in the file"),
                );
            }
            let known = match &grantee {
                Grantee::Subsystem(s) => subsystems.contains(s),
                Grantee::Group(g) => groups.contains(g.as_str()),
            };
            if !known {
                return bad(
                    a.service.span(),
                    format!("access to {service}: {grantee} is not in the file"),
                );
            }
            if !rights.insert((service, grantee.clone())) {
                return bad(
                    a.service.span(),
                    format!("access to {service} for {grantee} is listed twice"),
                );
            }
        }
        let mut routed = BTreeSet::new();
        for g in &self.gateway_services {
            let id = g.service.get_ref();
            if !services.contains(id) {
                return bad(
                    g.service.span(),
                    format!("gateway service {id}: the service is not in the file"),
                );
            }
            if let Err(e) = g.settings().check() {
                return bad(g.service.span(), format!("gateway service {id}: {e}"));
            }
            if !routed.insert(id) {
                return bad(
                    g.service.span(),
                    format!("gateway service {id} is listed twice"),
                );
            }
        }
        let mut subscribed = BTreeSet::new();
        for s in &self.subscriptions {
            let service = s.service.get_ref();
            let what = format!("subscription of {} to {service}", s.client);
            if !services.contains(service) {
                return bad(
                    s.service.span(),
                    format!("{what}: the service is not in the file"),
                );
            }
            if !subsystems.contains(&s.client) {
                return bad(
                    s.service.span(),
                    format!("{what}: the client is not in the file"),
                );
            }
            for (name, v) in [
                ("rate_per_sec", s.rate_per_sec),
                ("burst", s.burst),
                ("quota_per_day", s.quota_per_day),
            ] {
                if v.is_some_and(|v| i64::try_from(v).is_err()) {
                    return bad(s.service.span(), format!("{what}: {name} is too large"));
                }
            }
            if !subscribed.insert((service, &s.client)) {
                return bad(s.service.span(), format!("{what} is listed twice"));
            }
        }
        Ok(())
    }
}

/// The 1-based line of a span's start in `text` (1 for a span without a
/// place).
fn line_of(text: &str, span: &Range<usize>) -> usize {
    let end = span.start.min(text.len());
    text.as_bytes()[..end]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn lines_are_counted_from_one() {
        assert_eq!(line_of("a\nb\nc", &(0..1)), 1);
        assert_eq!(line_of("a\nb\nc", &(2..3)), 2);
        assert_eq!(line_of("a", &(99..100)), 1);
    }
}
