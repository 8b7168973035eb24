//! `ndxp-gateway diagnose` and `GET /api/v1/diagnose` of the management
//! API: asks every party the management role and the central gateway
//! depend on whether it answers as it must, and says for each check ok, or
//! what failed and what to do ([`ndxp_core::check::CheckReport`], the
//! report `ndxp-node diagnose` gives too).
//!
//! It needs only the configuration file, so it works as well while
//! `serve` is stopped. It writes nothing: the registry is read (a
//! registry whose schema is not current is reported, not migrated) and
//! the global configuration it builds is verified, not stored.
//!
//! | check | passes when |
//! |---|---|
//! | `database` | `[storage] url` opens and its schema version is the one this release writes |
//! | `configuration signing key` | `[globalconf] signing_key` loads, matches `signing_cert`, and that certificate is valid for more than `[monitoring] cert_warning_days` |
//! | `global configuration` | a document built from the registry now is signed and verifies against the anchor nodes hold, and the latest published version verifies and has not expired |
//! | `OCSP responder URL` | for every `ocsp_urls` entry of `[[globalconf.cas]]`: a verified `good` answer about the signing certificate |
//! | `timestamp round trip with NAME` | for every `[[globalconf.tsas]]`: a timestamp of a random imprint, verified against the CAs and the TSA's certificate |
//! | `backend SERVICE` | with a `[gateway]` table, for every published service: a `GET` of its `backend_url` answers below 500 within the time-out |
//!
//! What the configuration does not name is reported ok with `skipped: not
//! configured`. The checks after the database run at once, each bounded by
//! [`DiagnoseOptions::timeout`].

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndxp_core::check::{Check, CheckReport};
use ndxp_core::ErrorChain;
use ndxp_edge::probe::{self, bounded};
use ndxp_registry::globalconf::{self, ConfError};
use ndxp_registry::store::gateway::{GatewayServiceState, GatewayStore as _};
use ndxp_registry::store::{RegistryStore, SqlStore, StoreOptions, SCHEMA_VERSION};
use ndxp_sign::openssl::x509::{X509VerifyResult, X509};
use ndxp_sign::tsa::TsaTrust;

use crate::config::GatewayConfig;
use crate::gateway::routing::ClientFactory;
use crate::management::publisher::Publisher;

/// How `diagnose` runs.
#[derive(Debug, Clone)]
pub struct DiagnoseOptions {
    /// The longest any one check may take.
    pub timeout: Duration,
}

impl Default for DiagnoseOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
        }
    }
}

/// The check names (`checks[].name`; the per-responder, per-TSA and
/// per-service ones add the URL, name or service).
pub mod names {
    /// The registry database.
    pub const DATABASE: &str = "database";
    /// The key that signs the global configuration.
    pub const SIGNING_KEY: &str = "configuration signing key";
    /// Building, signing and verifying the global configuration.
    pub const GLOBAL_CONFIGURATION: &str = "global configuration";
    /// Prefix of the OCSP checks (`OCSP responder URL`).
    pub const OCSP: &str = "OCSP responder";
    /// Prefix of the TSA checks (`timestamp round trip with NAME`).
    pub const TIMESTAMP: &str = "timestamp round trip";
    /// Prefix of the backend checks (`backend SERVICE`).
    pub const BACKEND: &str = "backend";
}

/// The configuration `GET /api/v1/diagnose` checks: `serve` adds its own
/// to the management router as an extension.
#[derive(Debug, Clone)]
pub struct DiagnoseConfig(pub Arc<GatewayConfig>);

/// What is skipped for want of configuration says so.
const SKIPPED: &str = "skipped: not configured";

/// Runs every check (see the module documentation).
pub async fn run(config: &GatewayConfig, options: &DiagnoseOptions) -> CheckReport {
    let timeout = options.timeout;
    let now = Utc::now();
    let mut checks = Vec::new();
    let (db_check, store) = database(config, timeout).await;
    checks.push(db_check);
    let (key_check, signing_chain) = signing_key(config, now);
    checks.push(key_check);
    checks.push(match &store {
        Some(store) => global_configuration(config, store.clone(), now).await,
        None => Check::failed(
            names::GLOBAL_CONFIGURATION,
            "not checked: the registry cannot be read (see the database check), so no new version can be published",
        )
        .with_hint("fix the database first"),
    });

    let cas = ca_certs(config);
    let mut tasks: Vec<tokio::task::JoinHandle<Check>> = Vec::new();
    let urls: Vec<String> = config
        .globalconf
        .cas
        .iter()
        .flat_map(|c| c.ocsp_urls.iter().cloned())
        .collect();
    if urls.is_empty() {
        checks.push(Check::ok(
            names::OCSP,
            format!("{SKIPPED} (no ocsp_urls in [[globalconf.cas]])"),
        ));
    }
    for url in urls {
        let name = format!("{} {url}", names::OCSP);
        let known = known_certificate(signing_chain.as_deref(), &cas);
        let anchors = cas.clone();
        tasks.push(tokio::spawn(bounded(name.clone(), timeout, async move {
            let hint = "nodes refuse peers and certificates without a good OCSP answer: check that the responder (`ndxp-gateway pki serve`) runs and is reachable at this URL";
            match known {
                Ok((leaf, issuer)) => {
                    probe::ocsp(&name, &url, &leaf, &issuer, &anchors, timeout, hint).await
                }
                Err(why) => Check::failed(name, format!("{url}: not asked: {why}"))
                    .with_hint("fix [globalconf] signing_cert: its certificate is the one asked about"),
            }
        })));
    }
    if config.globalconf.tsas.is_empty() {
        checks.push(Check::ok(
            names::TIMESTAMP,
            format!("{SKIPPED} (no [[globalconf.tsas]])"),
        ));
    }
    for tsa in &config.globalconf.tsas {
        let name = format!("{} with {}", names::TIMESTAMP, tsa.name);
        let url = tsa.url.clone();
        let hint = "nodes stop exchanging messages once their timestamps lag: check that the TSA (`ndxp-gateway pki serve`) runs and is reachable at this URL, and [[globalconf.tsas]] url";
        let trust =
            read_certs(&tsa.cert).map(|certs| TsaTrust::new(cas.clone()).with_untrusted(certs));
        tasks.push(tokio::spawn(bounded(name.clone(), timeout, async move {
            match trust {
                Ok(trust) => probe::timestamp(&name, &url, &trust, timeout, hint).await,
                Err(e) => Check::failed(name, format!("{url}: {e}"))
                    .with_hint("fix [[globalconf.tsas]] cert: the TSA's certificate (PEM)"),
            }
        })));
    }
    match (&config.gateway, &store) {
        (None, _) => checks.push(Check::ok(
            names::BACKEND,
            format!("{SKIPPED} (no [gateway] table: the central gateway does not run)"),
        )),
        (Some(_), None) => checks.push(
            Check::failed(
                names::BACKEND,
                "not checked: the published services cannot be read (see the database check)",
            )
            .with_hint("fix the database first"),
        ),
        (Some(_), Some(store)) => backends(store, timeout, &mut checks, &mut tasks).await,
    }
    for task in tasks {
        match task.await {
            Ok(c) => checks.push(c),
            Err(e) => checks.push(Check::failed("internal", format!("a check failed: {e}"))),
        }
    }
    if let Some(store) = store {
        store.close().await;
    }
    CheckReport::new(checks)
}

/// Opens the registry read-only in spirit: a missing SQLite file is
/// reported (not created), the schema version is read (not migrated).
async fn database(config: &GatewayConfig, timeout: Duration) -> (Check, Option<Arc<SqlStore>>) {
    let name = names::DATABASE;
    let url = &config.storage.url;
    let shown = ndxp_db::redact(url);
    let fail = |detail: String, hint: &str| (Check::failed(name, detail).with_hint(hint), None);
    let parsed = match ndxp_db::parse(url) {
        Ok(p) => p,
        Err(e) => return fail(format!("{shown}: {e}"), "fix [storage] url"),
    };
    if let Some(file) = parsed.sqlite_file() {
        if !Path::new(file).is_file() {
            return fail(
                format!("{shown}: there is no database file {file}"),
                "fix [storage] url, or restore the registry from a backup (`ndxp-gateway serve` would create an empty one)",
            );
        }
    }
    let options = ndxp_db::PoolOptions {
        max_connections: 1,
        acquire_timeout: timeout,
        sqlite_setup: &[],
        wal: false,
    };
    let hint_connect = "check that the database server runs and is reachable, and the host, port, user, password and database name of [storage] url";
    let db = match tokio::time::timeout(timeout, ndxp_db::open(url, &options)).await {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => return fail(ErrorChain(&e).to_string(), hint_connect),
        Err(_) => {
            return fail(
                format!("{shown}: no answer within {} s", timeout.as_secs()),
                hint_connect,
            )
        }
    };
    // The registry records its migrations in ndxp_db::SQLX_MIGRATIONS_TABLE.
    let query = "SELECT MAX(version) FROM _sqlx_migrations WHERE success";
    let version = tokio::time::timeout(
        timeout,
        sqlx::query_scalar::<_, Option<i64>>(query).fetch_one(db.pool()),
    )
    .await;
    db.pool().close().await;
    let version = match version {
        Ok(Ok(v)) => v.unwrap_or(0),
        Ok(Err(e)) => {
            return fail(
                format!("{shown}: the schema version cannot be read: {e}"),
                "this is not an NDXP registry, or it was never set up: fix [storage] url",
            )
        }
        Err(_) => {
            return fail(
                format!("{shown}: no answer within {} s", timeout.as_secs()),
                hint_connect,
            )
        }
    };
    if version < SCHEMA_VERSION {
        return fail(
            format!("{shown}: schema version {version}, this release needs {SCHEMA_VERSION}"),
            "`ndxp-gateway serve` applies the missing migrations when it starts (take a backup first: `ndxp-gateway backup`)",
        );
    }
    if version > SCHEMA_VERSION {
        return fail(
            format!(
                "{shown}: schema version {version} is newer than this release's {SCHEMA_VERSION}"
            ),
            "a newer ndxp-gateway wrote this registry: run that release here too",
        );
    }
    let store_options = StoreOptions {
        max_connections: 2,
        acquire_timeout: timeout,
    };
    // The schema is current, so opening the store migrates nothing.
    match SqlStore::open(url, &store_options).await {
        Ok(store) => (
            Check::ok(name, format!("{shown}: schema version {version} (current)")),
            Some(Arc::new(store)),
        ),
        Err(e) => fail(ErrorChain(&e).to_string(), hint_connect),
    }
}

/// The certificates of the file at `path`, at least one.
fn read_certs(path: &Path) -> Result<Vec<X509>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs =
        ndxp_sign::cert::read_pem_chain(&pem).map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Every `[[globalconf.cas]]` certificate that can be read.
fn ca_certs(config: &GatewayConfig) -> Vec<X509> {
    config
        .globalconf
        .cas
        .iter()
        .filter_map(|c| read_certs(&c.cert).ok())
        .flatten()
        .collect()
}

/// The signing key loads and matches its certificate, which is not about
/// to expire; returns the certificate chain when it could be read.
fn signing_key(config: &GatewayConfig, now: DateTime<Utc>) -> (Check, Option<Vec<X509>>) {
    let name = names::SIGNING_KEY;
    let g = &config.globalconf;
    let chain = read_certs(&g.signing_cert);
    let key = g
        .passphrase_file
        .as_deref()
        .map(ndxp_sign::key::read_passphrase_file)
        .transpose()
        .and_then(|pass| ndxp_sign::key::read_private_key_file(&g.signing_key, pass.as_deref()));
    let chain = match chain {
        Ok(c) => c,
        Err(e) => {
            return (
                Check::failed(name, e).with_hint(
                    "fix [globalconf] signing_cert: the PEM signing certificate of the platform operator's member",
                ),
                None,
            )
        }
    };
    let key = match key {
        Ok(k) => k,
        Err(e) => {
            return (
                Check::failed(
                    name,
                    format!("{}: {}", g.signing_key.display(), ErrorChain(&e)),
                )
                .with_hint("fix [globalconf] signing_key and passphrase_file (the key must be readable by its owner only)"),
                Some(chain),
            )
        }
    };
    let leaf = &chain[0];
    let matches = leaf
        .public_key()
        .map(|p| p.public_eq(&key))
        .unwrap_or(false);
    if !matches {
        return (
            Check::failed(
                name,
                format!(
                    "{} does not match the certificate {}",
                    g.signing_key.display(),
                    g.signing_cert.display()
                ),
            )
            .with_hint(
                "point signing_key and signing_cert at a key and the certificate issued for it",
            ),
            Some(chain),
        );
    }
    let member = ndxp_sign::cert::member_of(leaf)
        .map(|m| m.to_string())
        .unwrap_or_else(|_| "an unknown member".into());
    let not_after = match ndxp_sign::cert::asn1_to_utc(leaf.not_after()) {
        Ok(t) => t,
        Err(e) => return (Check::failed(name, e.to_string()), Some(chain)),
    };
    let days = (not_after - now).num_days();
    let warn = i64::from(config.monitoring.cert_warning_days);
    let detail = format!(
        "signs as {member}; {} valid until {not_after} ({days} days)",
        g.signing_cert.display()
    );
    let check = if not_after <= now {
        Check::failed(name, format!("{}: expired at {not_after}", g.signing_cert.display()))
            .with_hint("nodes refuse a global configuration signed with an expired certificate: issue a new signing certificate for this key (`ndxp-gateway pki issue`) and restart serve")
    } else if days < warn {
        Check::failed(name, format!("{detail}, less than [monitoring] cert_warning_days = {warn}"))
            .with_hint("renew it before it expires: issue a new signing certificate (`ndxp-gateway pki issue`) and restart serve")
    } else {
        Check::ok(name, detail)
    };
    (check, Some(chain))
}

/// The signing certificate and its issuer, for an OCSP question.
fn known_certificate(chain: Option<&[X509]>, cas: &[X509]) -> Result<(X509, X509), String> {
    let chain = chain.ok_or("the signing certificate cannot be read")?;
    let leaf = chain
        .first()
        .ok_or("the signing certificate file is empty")?;
    let issuer = chain[1..]
        .iter()
        .chain(cas)
        .find(|c| c.issued(leaf) == X509VerifyResult::OK)
        .ok_or("the signing certificate's issuer is neither in signing_cert nor among [[globalconf.cas]]")?;
    Ok((leaf.clone(), issuer.clone()))
}

/// Builds and signs a document from the registry now and verifies it
/// against the anchor; verifies the latest published one too.
async fn global_configuration(
    config: &GatewayConfig,
    store: Arc<SqlStore>,
    now: DateTime<Utc>,
) -> Check {
    let name = names::GLOBAL_CONFIGURATION;
    let anchor = match crate::management::registry::build_anchor(config, now) {
        Ok(a) => a,
        Err(e) => {
            return Check::failed(name, format!("no anchor can be built: {}", ErrorChain(&e)))
                .with_hint("fix [globalconf] cas and signing_cert")
        }
    };
    let publisher = match Publisher::new(config, store.clone(), None) {
        Ok(p) => p,
        Err(e) => {
            return Check::failed(name, ErrorChain(&e).to_string())
                .with_hint("serve cannot publish: fix the [globalconf] file it names")
        }
    };
    let registry_error = |e: &dyn std::error::Error| {
        Check::failed(
            name,
            format!("the registry cannot be read: {}", ErrorChain(e)),
        )
        .with_hint("check the database")
    };
    let (snapshot, latest) = match (store.snapshot().await, store.latest_conf().await) {
        (Ok(s), Ok(l)) => (s, l),
        (Err(e), _) | (_, Err(e)) => return registry_error(&e),
    };
    let next = latest.as_ref().map_or(1, |l| {
        u64::try_from(l.version).unwrap_or(0).saturating_add(1)
    });
    let built = match publisher.sign(&snapshot, next, now) {
        Ok((jws, _)) => jws,
        Err(e) => return Check::failed(name, format!("cannot build or sign: {}", ErrorChain(&e)))
            .with_hint(
            "a registry entry or [globalconf] setting breaks a document rule: the error names it",
        ),
    };
    if let Err(e) = globalconf::verify(&built, &anchor, now) {
        return Check::failed(
            name,
            format!("a document signed now does not verify against the anchor: {}", ErrorChain(&e)),
        )
        .with_hint("the signing certificate must chain to a [[globalconf.cas]] certificate, be valid now, and be a signing certificate");
    }
    let Some(latest) = latest else {
        return Check::ok(
            name,
            "signs a document that verifies against the anchor; no version published yet (serve publishes one when it starts)",
        );
    };
    match globalconf::verify(&latest.document, &anchor, now) {
        Ok(doc) => Check::ok(
            name,
            format!(
                "signs a document that verifies against the anchor; version {} published, expires at {}",
                doc.version, doc.expires_at
            ),
        ),
        Err(ConfError::Expired { expires_at }) => Check::failed(
            name,
            format!("the latest published version {} expired at {expires_at}", latest.version),
        )
        .with_hint("serve renews it every 10 s while it runs: start `ndxp-gateway serve` (nodes stop exchanging once their copy expires)"),
        Err(e) => Check::failed(
            name,
            format!(
                "the latest published version {} does not verify against the anchor: {}",
                latest.version,
                ErrorChain(&e)
            ),
        )
        .with_hint("nodes refuse it: restart serve to publish one signed with the current key, and give nodes a new anchor (`ndxp-gateway conf anchor`) if the CAs changed"),
    }
}

/// One check per published service of the central gateway.
async fn backends(
    store: &Arc<SqlStore>,
    timeout: Duration,
    checks: &mut Vec<Check>,
    tasks: &mut Vec<tokio::task::JoinHandle<Check>>,
) {
    let services = match store.list_gateway_services(None).await {
        Ok(s) => s,
        Err(e) => {
            checks.push(
                Check::failed(
                    names::BACKEND,
                    format!("the published services cannot be read: {}", ErrorChain(&e)),
                )
                .with_hint("check the database"),
            );
            return;
        }
    };
    let published: Vec<_> = services
        .into_iter()
        .filter(|s| s.state == GatewayServiceState::Published)
        .collect();
    if published.is_empty() {
        checks.push(Check::ok(names::BACKEND, "no published service"));
        return;
    }
    let factory = match ClientFactory::new(0, HashMap::new()) {
        Ok(f) => f,
        Err(e) => {
            checks.push(Check::failed(names::BACKEND, ErrorChain(&e).to_string()));
            return;
        }
    };
    let hint = "the gateway answers calls of this service with provider_unreachable or provider_timeout: start the backend, or fix its backend_url (`ndxp-gateway gateway services update`)";
    for s in published {
        let name = format!("{} {}", names::BACKEND, s.service);
        let url = s.settings.backend_url.clone();
        let client = factory.client_for(&s.service, &s.settings.backend_tls);
        tasks.push(tokio::spawn(bounded(name.clone(), timeout, async move {
            match client {
                Ok(fw) => probe::http_get(&name, &fw, &url, timeout, hint).await,
                Err(e) => Check::failed(name, format!("{url}: {}", e.reason)).with_hint(
                    "fix the service's backend TLS files (ca_file, client_cert_file, client_key_file)",
                ),
            }
        })));
    }
}
