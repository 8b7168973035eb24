//! `ndxp-node diagnose` and `GET /api/v1/diagnose` of the admin port: asks
//! every party the node depends on whether it answers as it must, and
//! says for each check ok, or what failed and what to do
//! ([`ndxp_core::check::CheckReport`]).
//!
//! It needs only the configuration file: it reads the keys, fetches the
//! global configuration itself and talks to the peers, the TSA, the OCSP
//! responders and the backends directly, so it works as well when the node
//! is stopped (the usual moment to ask why it does not start serving).
//! It writes nothing: the fetched global configuration is verified, not
//! stored.
//!
//! | check | passes when |
//! |---|---|
//! | `keys` | the signing and authentication keys and certificates load and belong to this node |
//! | `global configuration` | the anchor's `conf_url` answers with a document that verifies against `anchor.json` and has not expired (when it fails, the last-good copy on disk is used for the checks below) |
//! | `this node in the global configuration` | the node is listed, at `[node] address`, with the fingerprint of `auth.pem` |
//! | `OCSP signing certificate`, `OCSP authentication certificate` | a responder gives a good, verified answer for it |
//! | `timestamp round trip` | the first TSA of the global configuration stamps a query and its answer verifies (ok with no TSA) |
//! | `TLS handshake with M/N (address)` | mutual TLS 1.3 with every other node of a member that has a service in the catalogue, its certificate the one registered and with a good OCSP answer |
//! | `backend S` | a TCP connection to the backend of every service this node provides |
//!
//! The checks after the global configuration run at once, each bounded by
//! [`DiagnoseOptions::timeout`], so a dead peer cannot hang the command:
//! the whole run takes at most twice the time-out.
//!
//! The timestamp round trip, the backend connection and the time-out bound
//! are the shared probes of [`ndxp_edge::probe`], which
//! `ndxp-gateway diagnose` uses too.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use ndxp_core::check::{Check, CheckReport};
use ndxp_core::ErrorChain;
use ndxp_edge::probe::{self, bounded};
use ndxp_registry::globalconf::{ConfClient, ConfDocument, ConfError};
use ndxp_sign::ocsp_hub::OcspHub;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::profile::Signer;
use ndxp_sign::tls::{self, PeerPolicy, TlsIdentity};
use ndxp_sign::tsa::TsaTrust;

use crate::config::NodeConfig;
use crate::local::LocalFile;
use crate::serve::pool::{authority_key, PeerConnector};

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

/// The check names (`checks[].name`; the per-peer and per-backend ones
/// add the node or service).
pub mod names {
    /// The key material.
    pub const KEYS: &str = "keys";
    /// The PKCS#11 token of the member signing key (`[node.sign_pkcs11]`).
    pub const SIGN_TOKEN: &str = "signing key (PKCS#11)";
    /// Fetching and verifying the global configuration.
    pub const GLOBAL_CONFIGURATION: &str = "global configuration";
    /// This node's entry in it.
    pub const THIS_NODE: &str = "this node in the global configuration";
    /// A timestamp from the TSA.
    pub const TIMESTAMP: &str = "timestamp round trip";
    /// Prefix of the OCSP checks of the node's own certificates.
    pub const OCSP: &str = "OCSP";
    /// Prefix of the handshake checks (`TLS handshake with M/N`).
    pub const HANDSHAKE: &str = "TLS handshake with";
    /// Prefix of the backend checks (`backend S`).
    pub const BACKEND: &str = "backend";
}

/// Runs every check (see the module documentation).
pub async fn run(config: &NodeConfig, options: &DiagnoseOptions) -> CheckReport {
    let mut checks = Vec::new();
    let keys = match crate::serve::load_signer(config) {
        Ok((signer, identity, token)) => {
            checks.push(Check::ok(
                names::KEYS,
                format!(
                    "signing certificate of {}, authentication certificate of node {}",
                    signer.member(),
                    identity.node()
                ),
            ));
            if let Some(token) = token {
                checks.push(sign_token_check(&token).await);
            }
            Some((signer, identity))
        }
        Err(e) => {
            let token_failed = matches!(&e, crate::serve::StartError::Keys { what, .. } if what == "node.sign_pkcs11");
            let (name, hint) = if token_failed {
                (
                    names::SIGN_TOKEN,
                    "check [node.sign_pkcs11]: the module path, the token label or slot, the PIN file and the key label (docs/pki.md)",
                )
            } else {
                (
                    names::KEYS,
                    "check [node] keys_dir and passphrase_file: `ndxp-node keys` makes and installs them",
                )
            };
            checks.push(Check::failed(name, ErrorChain(&e).to_string()).with_hint(hint));
            None
        }
    };
    let http = match crate::http::platform_client(config) {
        Ok(h) => h,
        Err(e) => {
            checks.push(
                Check::failed(names::GLOBAL_CONFIGURATION, ErrorChain(&e).to_string())
                    .with_hint("fix [management] tls_ca_file"),
            );
            return CheckReport::new(checks);
        }
    };
    let (conf_check, doc) = global_configuration(config, options).await;
    checks.push(conf_check);
    let Some(doc) = doc else {
        return CheckReport::new(checks);
    };
    checks.push(this_node(config, &doc));

    let mut tasks: Vec<tokio::task::JoinHandle<Check>> = Vec::new();
    let timeout = options.timeout;
    let anchors = doc.trusted_ca_certs().unwrap_or_default();
    let ocsp = Arc::new(OcspHub::new(ndxp_registry::globalconf::ocsp_fetcher(
        http.clone(),
    )));
    ocsp.set_trust(
        anchors.clone(),
        doc.cas
            .iter()
            .flat_map(|c| c.ocsp_urls.iter().cloned())
            .collect(),
    );
    if let Some((signer, identity)) = &keys {
        for (what, chain) in own_chains(signer, identity) {
            let name = format!("{} {what}", names::OCSP);
            let ocsp = ocsp.clone();
            tasks.push(tokio::spawn(bounded(name.clone(), timeout, async move {
                match ocsp.ensure(&chain, Utc::now()).await {
                    Ok(()) => Check::ok(name, "the responder answers: good"),
                    Err(e) => Check::failed(name, e.to_string()).with_hint(
                        "peers refuse this node without a good answer: check that the OCSP responder of the global configuration (`ndxp-gateway pki serve`) runs and is reachable from here",
                    ),
                }
            })));
        }
    }
    tasks.push(tokio::spawn(bounded(
        names::TIMESTAMP.to_owned(),
        timeout,
        timestamp(doc.clone(), timeout),
    )));
    if let Some((_, identity)) = &keys {
        let peers = providers(config, &doc);
        if !peers.is_empty() {
            match peer_connector(identity, anchors, ocsp.clone(), &doc, timeout) {
                Ok(connector) => {
                    for (label, address) in peers {
                        let name = format!("{} {label}", names::HANDSHAKE);
                        let connector = connector.clone();
                        tasks.push(tokio::spawn(bounded(
                            name.clone(),
                            timeout,
                            handshake(name, connector, address),
                        )));
                    }
                }
                Err(e) => checks.push(Check::failed(names::HANDSHAKE.trim_end_matches(" with"), e)),
            }
        }
    }
    match LocalFile::new(config.local.file.clone(), config.node.member.clone()).read() {
        Ok(local) => {
            for entry in local.services {
                let name = format!("{} {}", names::BACKEND, entry.service);
                tasks.push(tokio::spawn(bounded(
                    name.clone(),
                    timeout,
                    backend(name, entry.backend),
                )));
            }
        }
        Err(e) => checks.push(
            Check::failed("local configuration", ErrorChain(&e).to_string())
                .with_hint("fix or restore [local] file (`ndxp-node services list` reads it)"),
        ),
    }
    for task in tasks {
        match task.await {
            Ok(c) => checks.push(c),
            Err(e) => checks.push(Check::failed("internal", format!("a check failed: {e}"))),
        }
    }
    CheckReport::new(checks)
}

/// The node's own certificates with the CA certificates sent with them:
/// the signing certificate, then the authentication certificate.
pub(crate) fn own_chains(
    signer: &Signer,
    identity: &TlsIdentity,
) -> [(&'static str, Vec<X509>); 2] {
    let chain = |leaf: &X509, rest: &[X509]| {
        std::iter::once(leaf.clone())
            .chain(rest.iter().cloned())
            .collect::<Vec<_>>()
    };
    [
        (
            "signing certificate",
            chain(signer.certificate(), signer.chain()),
        ),
        (
            "authentication certificate",
            chain(identity.certificate(), identity.chain()),
        ),
    ]
}

/// Fetches and verifies the global configuration; falls back to the
/// last-good copy for the checks that need one.
async fn global_configuration(
    config: &NodeConfig,
    options: &DiagnoseOptions,
) -> (Check, Option<Arc<ConfDocument>>) {
    let name = names::GLOBAL_CONFIGURATION;
    let client = match crate::conf::client(config) {
        Ok(c) => c,
        Err(e) => {
            return (
                Check::failed(name, ErrorChain(&e).to_string()).with_hint(
                    "check [conf] anchor: the anchor file the platform operator gave you",
                ),
                None,
            )
        }
    };
    let url = client.anchor().conf_url.clone();
    let now = Utc::now();
    let fetched = tokio::time::timeout(options.timeout, client.fetch_verified(now)).await;
    let error = match fetched {
        Ok(Ok(doc)) => {
            let detail = format!(
                "{url}: version {}, signed, expires at {}",
                doc.version, doc.expires_at
            );
            return (Check::ok(name, detail), Some(Arc::new(doc)));
        }
        Ok(Err(e)) => {
            let hint = conf_hint(&e);
            Check::failed(name, format!("{url}: {}", ErrorChain(&e))).with_hint(hint)
        }
        Err(_) => Check::failed(
            name,
            format!("{url}: no answer within {} s", options.timeout.as_secs()),
        )
        .with_hint(
            "the management server does not answer: check that it runs, the URL and the firewall",
        ),
    };
    let last_good = last_good(&client);
    (error, last_good)
}

fn last_good(client: &ConfClient) -> Option<Arc<ConfDocument>> {
    client.load_last_good(Utc::now()).ok().flatten()
}

fn conf_hint(e: &ConfError) -> &'static str {
    match e {
        ConfError::Fetch(_) => {
            "the management server does not answer: check that it runs, the anchor's conf_url, [management] tls_ca_file and the firewall"
        }
        ConfError::Status(_) => {
            "the management server refuses the request: check the anchor's conf_url with the platform operator"
        }
        ConfError::Expired { .. } => {
            "the management server serves an expired document: the platform operator's publisher is not running or cannot sign"
        }
        _ => {
            "the document does not verify against anchor.json: ask the platform operator for the current anchor, and check this computer's clock"
        }
    }
}

fn this_node(config: &NodeConfig, doc: &ConfDocument) -> Check {
    let name = names::THIS_NODE;
    let t = crate::conf::this_node(config, doc);
    if !t.listed {
        return Check::failed(
            name,
            format!(
                "node {} of {} is not listed (version {})",
                config.node.name, config.node.member, doc.version
            ),
        )
        .with_hint("send the registration (`ndxp-node register`) and have the platform operator approve it");
    }
    if !t.local_cert_listed {
        return Check::failed(
            name,
            "the fingerprint of auth.pem is not among those registered for this node",
        )
        .with_hint("peers refuse a certificate that is not registered: register the new one (`ndxp-node register`)");
    }
    if !t.address_matches {
        return Check::failed(
            name,
            format!(
                "registered at {}, but [node] address is {}",
                t.address.unwrap_or_default(),
                config.node.address
            ),
        )
        .with_hint(
            "peers call the registered address: register the new one or fix [node] address",
        );
    }
    Check::ok(name, format!("listed at {}", config.node.address))
}

/// A timestamp of a fresh random imprint from the first TSA.
async fn timestamp(doc: Arc<ConfDocument>, timeout: Duration) -> Check {
    let name = names::TIMESTAMP;
    let Some(tsa) = doc.tsas.first() else {
        return Check::ok(
            name,
            "the global configuration names no TSA: the message log is not timestamped",
        );
    };
    let hint = "the node refuses exchanges once timestamping lags past [log] timestamp_max_lag_secs: check that the TSA (`ndxp-gateway pki serve`) runs and is reachable from here";
    let fail =
        |detail: String| Check::failed(name, format!("{}: {detail}", tsa.url)).with_hint(hint);
    let (Ok(cas), Ok(tsa_certs)) = (doc.trusted_ca_certs(), doc.trusted_tsa_certs()) else {
        return fail(
            "the CA or TSA certificates of the global configuration cannot be read".into(),
        );
    };
    let trust = TsaTrust::new(cas).with_untrusted(tsa_certs);
    probe::timestamp(name, &tsa.url, &trust, timeout, hint).await
}

/// The nodes this node may call, as (`member/node (address)`, address):
/// those of every member with a service in the catalogue (the provider
/// decides who may call, so any of them may be called), this node aside.
fn providers(config: &NodeConfig, doc: &ConfDocument) -> Vec<(String, String)> {
    let members: BTreeSet<_> = doc.services.iter().map(|s| s.id.member().clone()).collect();
    doc.nodes
        .iter()
        .filter(|n| members.contains(&n.member))
        .filter(|n| !(n.member == config.node.member && n.name == config.node.name))
        .map(|n| {
            (
                format!("{}/{} ({})", n.member, n.name, n.address),
                n.address.clone(),
            )
        })
        .collect()
}

fn peer_connector(
    identity: &TlsIdentity,
    anchors: Vec<X509>,
    ocsp: Arc<OcspHub>,
    doc: &ConfDocument,
    timeout: Duration,
) -> Result<PeerConnector, String> {
    let policy =
        PeerPolicy::pinned_per_connection(anchors).with_revocation(Arc::new(ocsp.lenient()));
    let connector = tls::client_connector(identity, policy).map_err(|e| e.to_string())?;
    let mut pins: std::collections::HashMap<String, Vec<String>> = Default::default();
    for n in &doc.nodes {
        if let Some(key) = n.address.parse().ok().as_ref().and_then(authority_key) {
            pins.entry(key)
                .or_default()
                .extend(n.auth_cert_sha256.iter().cloned());
        }
    }
    Ok(PeerConnector::new(connector, pins, timeout, ocsp))
}

/// Mutual TLS with the node at `address`, the way the exchange connects.
async fn handshake(name: String, mut connector: PeerConnector, address: String) -> Check {
    let uri: http::Uri = match address.parse() {
        Ok(u) => u,
        Err(e) => {
            return Check::failed(name, format!("the registered address {address:?}: {e}"))
                .with_hint("the platform operator must correct the node's address")
        }
    };
    match tower_service::Service::call(&mut connector, uri).await {
        Ok(_) => Check::ok(
            name,
            "mutual TLS 1.3: the registered certificate, with a good OCSP answer",
        ),
        Err(e) => {
            let hint = if e.is_trust() {
                "the peer's certificate is not the one registered, not trusted or revoked: the platform operator and the peer's operator can compare fingerprints with the global configuration"
            } else {
                "the peer node does not answer: ask its operator whether it runs, and check the firewall towards its peer port"
            };
            Check::failed(name, ErrorChain(&e).to_string()).with_hint(hint)
        }
    }
}

/// A TCP connection to the backend of a provided service.
async fn backend(name: String, url: String) -> Check {
    let hint = "the node answers calls of this service with a backend error: start the backend or fix its URL (`ndxp-node services add --backend`)";
    probe::tcp_connect(&name, &url, hint).await
}

/// The token of the member signing key signs (one signature on it).
async fn sign_token_check(token: &std::sync::Arc<ndxp_sign::pkcs11::Pkcs11KeyStore>) -> Check {
    let label = token.token_label().to_string();
    let key = token.key_name().to_string();
    let t = token.clone();
    match tokio::task::spawn_blocking(move || t.check()).await {
        Ok(Ok(())) => Check::ok(
            names::SIGN_TOKEN,
            format!("key {key} on token {label:?} signs"),
        ),
        Ok(Err(e)) => Check::failed(names::SIGN_TOKEN, ErrorChain(&e).to_string())
            .with_hint("check that the token is present and its PIN valid"),
        Err(e) => Check::failed(
            names::SIGN_TOKEN,
            format!("the token check did not finish: {e}"),
        ),
    }
}
