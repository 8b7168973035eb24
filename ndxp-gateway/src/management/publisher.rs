//! Publishing the global configuration (docs/design.md §7) from the registry.
//!
//! [`Publisher::ensure_current`] returns the latest stored configuration,
//! building, signing and storing a new version first when the registry
//! changed since the latest was built (its `registry_version` differs),
//! when half of its validity has passed, or when there is none. Versions
//! are unique across processes sharing one database: when another process
//! stored the same version first, the latest is read again and the check
//! repeats. `run` calls it every few seconds so that expiry is renewed
//! without requests; `GET /globalconf` calls it before answering.
//!
//! Mapping from the registry: members with the codes of their subsystems;
//! nodes with their address and authentication-certificate fingerprint;
//! services with description, deprecation, sunset and, when an OpenAPI
//! document is stored, `openapi_url =
//! {public_url}/api/v1/services/{instance}/{class}/{code}/{subsystem}/{service}/{version}/openapi`;
//! groups with their members; access rights; trusted CAs (certificate
//! files and OCSP URLs) and TSAs from `[globalconf]`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, Utc};
use ndxp_core::{InstanceId, ServiceId};
use ndxp_registry::globalconf::{
    self, ConfAccessRight, ConfCa, ConfContent, ConfDocument, ConfError, ConfGrantee, ConfGroup,
    ConfMember, ConfNode, ConfService, ConfTsa,
};
use ndxp_registry::model::{Actor, Grantee, RegistrySnapshot, StoredConf};
use ndxp_registry::store::{RegistryStore, StoreError};
use ndxp_sign::openssl::pkey::{PKey, Private};
use ndxp_sign::openssl::x509::X509;

use crate::config::GatewayConfig;
use crate::management::metrics::Metrics;

/// How many times [`Publisher::ensure_current`] retries when other
/// processes keep storing the version it built.
const MAX_ATTEMPTS: usize = 5;

/// Why the global configuration could not be prepared or published.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// A file named in `[globalconf]` could not be read.
    #[error("cannot read {path} (named in [globalconf])")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The signing key or its passphrase could not be read.
    #[error("cannot load the global configuration signing key {path}")]
    Key {
        /// The key or passphrase file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<ndxp_sign::key::KeyError>,
    },
    /// A certificate file does not hold PEM certificates.
    #[error("{path} does not hold a PEM certificate")]
    Certificate {
        /// The file.
        path: PathBuf,
        /// The cause, when the parser gave one.
        #[source]
        source: Option<Box<ndxp_sign::cert::CertError>>,
    },
    /// `validity_secs` is out of range.
    #[error("[globalconf] validity_secs {0} is too large")]
    Validity(u64),
    /// The document could not be built or signed (e.g. the key does not
    /// match the signing certificate).
    #[error("cannot build or sign the global configuration")]
    Conf(#[source] Box<ConfError>),
    /// The registry failed.
    #[error("the registry could not be read or written")]
    Store(#[source] Box<StoreError>),
    /// Other processes stored every version this one built.
    #[error("gave up publishing after {MAX_ATTEMPTS} version conflicts with other processes")]
    Contention,
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        PublishError::Store(Box::new(e))
    }
}

impl From<ConfError> for PublishError {
    fn from(e: ConfError) -> Self {
        PublishError::Conf(Box::new(e))
    }
}

fn read(path: &Path) -> Result<Vec<u8>, PublishError> {
    std::fs::read(path).map_err(|source| PublishError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn certs(path: &Path) -> Result<(String, Vec<X509>), PublishError> {
    let pem = read(path)?;
    let list =
        ndxp_sign::cert::read_pem_chain(&pem).map_err(|source| PublishError::Certificate {
            path: path.to_path_buf(),
            source: Some(Box::new(source)),
        })?;
    if list.is_empty() {
        return Err(PublishError::Certificate {
            path: path.to_path_buf(),
            source: None,
        });
    }
    let text = String::from_utf8(pem).map_err(|_| PublishError::Certificate {
        path: path.to_path_buf(),
        source: None,
    })?;
    Ok((text, list))
}

/// Builds, signs, stores and serves the global configuration.
pub struct Publisher {
    store: Arc<dyn RegistryStore>,
    instance: InstanceId,
    public_url: String,
    validity: TimeDelta,
    key: PKey<Private>,
    chain: Vec<X509>,
    cas: Vec<ConfCa>,
    tsas: Vec<ConfTsa>,
    trusted: Vec<X509>,
    metrics: Option<Arc<Metrics>>,
    lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("instance", &self.instance)
            .field("public_url", &self.public_url)
            .field("validity", &self.validity)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Reads the signing key, certificates, CAs and TSAs named in
    /// `[globalconf]` and checks that the key signs a document with that
    /// certificate chain.
    ///
    /// # Errors
    /// A [`PublishError`] naming the file or setting to fix.
    pub fn new(
        config: &GatewayConfig,
        store: Arc<dyn RegistryStore>,
        metrics: Option<Arc<Metrics>>,
    ) -> Result<Self, PublishError> {
        let g = &config.globalconf;
        let passphrase = g
            .passphrase_file
            .as_deref()
            .map(|p| {
                ndxp_sign::key::read_passphrase_file(p).map_err(|source| PublishError::Key {
                    path: p.to_path_buf(),
                    source: Box::new(source),
                })
            })
            .transpose()?;
        let key = ndxp_sign::key::read_private_key_file(&g.signing_key, passphrase.as_deref())
            .map_err(|source| PublishError::Key {
                path: g.signing_key.clone(),
                source: Box::new(source),
            })?;
        let (_, mut chain) = certs(&g.signing_cert)?;
        if let Some(extra) = &g.signing_chain {
            chain.extend(certs(extra)?.1);
        }
        let mut cas = Vec::new();
        let mut trusted = Vec::new();
        for ca in &g.cas {
            let (pem, list) = certs(&ca.cert)?;
            trusted.extend(list);
            cas.push(ConfCa {
                name: ca.name.clone(),
                cert_pem: pem,
                ocsp_urls: ca.ocsp_urls.clone(),
            });
        }
        let mut tsas = Vec::new();
        for tsa in &g.tsas {
            tsas.push(ConfTsa {
                name: tsa.name.clone(),
                url: tsa.url.clone(),
                cert_pem: certs(&tsa.cert)?.0,
            });
        }
        let validity = i64::try_from(g.validity_secs)
            .ok()
            .and_then(TimeDelta::try_seconds)
            .ok_or(PublishError::Validity(g.validity_secs))?;
        let publisher = Self {
            store,
            instance: config.instance.clone(),
            public_url: config
                .management
                .public_url
                .trim_end_matches('/')
                .to_string(),
            validity,
            key,
            chain,
            cas,
            tsas,
            trusted,
            metrics,
            lock: tokio::sync::Mutex::new(()),
        };
        // Fail now, not at the first request, when the key does not match
        // the certificate or a CA or TSA entry breaks a document rule.
        let empty = RegistrySnapshot {
            registry_version: 0,
            members: vec![],
            nodes: vec![],
            services: vec![],
            groups: vec![],
            access_rights: vec![],
        };
        publisher.sign(&empty, 1, Utc::now())?;
        Ok(publisher)
    }

    /// The certificates of the trusted CAs (registration requests must
    /// chain to one of them).
    pub fn trusted_ca_certs(&self) -> &[X509] {
        &self.trusted
    }

    /// The OCSP responder URLs of every `[[globalconf.cas]]` entry.
    pub fn ocsp_urls(&self) -> Vec<String> {
        self.cas
            .iter()
            .flat_map(|c| c.ocsp_urls.iter().cloned())
            .collect()
    }

    /// Where a service's OpenAPI document is served.
    pub fn openapi_url(&self, id: &ServiceId) -> String {
        format!("{}/api/v1/services/{id}/openapi", self.public_url)
    }

    /// The document content for a registry snapshot.
    pub fn content(&self, snap: &RegistrySnapshot) -> ConfContent {
        ConfContent {
            members: snap
                .members
                .iter()
                .map(|e| ConfMember {
                    id: e.member.id.clone(),
                    name: e.member.name.clone(),
                    subsystems: e
                        .subsystems
                        .iter()
                        .map(|s| s.id.code().to_string())
                        .collect(),
                })
                .collect(),
            nodes: snap
                .nodes
                .iter()
                .map(|n| ConfNode {
                    member: n.member.clone(),
                    name: n.name.clone(),
                    address: n.address.clone(),
                    auth_cert_sha256: n.fingerprints(),
                })
                .collect(),
            cas: self.cas.clone(),
            tsas: self.tsas.clone(),
            services: snap
                .services
                .iter()
                .map(|s| ConfService {
                    id: s.id.clone(),
                    description: s.description.clone(),
                    openapi_url: s.openapi.as_ref().map(|_| self.openapi_url(&s.id)),
                    deprecated_at: s.deprecated_at,
                    sunset_at: s.sunset_at,
                })
                .collect(),
            groups: snap
                .groups
                .iter()
                .map(|g| ConfGroup {
                    code: g.code.clone(),
                    members: g.members.clone(),
                })
                .collect(),
            access_rights: snap
                .access_rights
                .iter()
                .map(|r| ConfAccessRight {
                    service: r.service.clone(),
                    grantee: match &r.grantee {
                        Grantee::Subsystem(s) => ConfGrantee::Subsystem(s.clone()),
                        Grantee::Group(g) => ConfGrantee::Group(g.clone()),
                    },
                })
                .collect(),
        }
    }

    /// Builds and signs version `version` of the document for `snap`
    /// (stored by [`Publisher::ensure_current`]; `diagnose` only verifies
    /// it).
    pub(crate) fn sign(
        &self,
        snap: &RegistrySnapshot,
        version: u64,
        now: DateTime<Utc>,
    ) -> Result<(String, ConfDocument), PublishError> {
        let doc = ConfDocument::new(
            self.content(snap),
            self.instance.clone(),
            version,
            now,
            self.validity,
        )?;
        let jws = globalconf::sign(&doc, &self.key, &self.chain)?;
        Ok((jws, doc))
    }

    fn is_current(&self, latest: &StoredConf, registry_version: i64, now: DateTime<Utc>) -> bool {
        latest.registry_version == registry_version
            && latest.expires_at > now
            && now - latest.created_at < self.validity / 2
    }

    /// The latest configuration, after building and storing a new version
    /// if the registry changed or the latest is past half its validity.
    ///
    /// # Errors
    /// [`PublishError::Store`] when the registry fails,
    /// [`PublishError::Conf`] when the document breaks a rule.
    pub async fn ensure_current(&self, now: DateTime<Utc>) -> Result<StoredConf, PublishError> {
        let _guard = self.lock.lock().await;
        for _ in 0..MAX_ATTEMPTS {
            let latest = self.store.latest_conf().await?;
            let registry_version = self.store.registry_version().await?;
            if let Some(l) = &latest {
                if self.is_current(l, registry_version, now) {
                    self.record(l);
                    return Ok(l.clone());
                }
            }
            let snap = self.store.snapshot().await?;
            let version = latest.as_ref().map_or(1, |l| l.version + 1);
            let (document, doc) = self.sign(&snap, u64::try_from(version).unwrap_or(1), now)?;
            let stored = StoredConf {
                version,
                registry_version: snap.registry_version,
                document,
                created_at: now,
                expires_at: doc.expires_at,
            };
            match self
                .store
                .store_conf(&stored, &Actor::system("globalconf"))
                .await
            {
                Ok(()) => {
                    tracing::info!(
                        version,
                        registry_version = snap.registry_version,
                        "published global configuration"
                    );
                    self.record(&stored);
                    return Ok(stored);
                }
                Err(StoreError::AlreadyExists { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(PublishError::Contention)
    }

    fn record(&self, conf: &StoredConf) {
        if let Some(m) = &self.metrics {
            m.set_conf(conf.version, conf.created_at);
        }
    }
}
