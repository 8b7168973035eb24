//! `docs/config.md` stays in step with `GatewayConfig`: its examples parse,
//! every key of the configuration is documented, every documented key
//! exists, and the complete example sets every key.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use ndxp_gateway::config::{
    AdminConfig, CaConfig, ForwardHeadersConfig, GatewayConfig, GatewayRoleConfig,
    GlobalConfConfig, ManagementConfig, MonitoringConfig, StorageConfig, TsaConfig,
};

fn doc() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/config.md");
    std::fs::read_to_string(path).unwrap()
}

/// The ```toml blocks that follow `heading`, in order, up to the next `## `.
fn toml_blocks_under(doc: &str, heading: &str) -> Vec<String> {
    let start = doc
        .find(heading)
        .unwrap_or_else(|| panic!("docs/config.md has no {heading:?}"));
    let rest = &doc[start + heading.len()..];
    let section = rest.find("\n## ").map_or(rest, |end| &rest[..end]);
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```toml" {
            let body: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(body.join("\n"));
        }
    }
    blocks
}

/// A configuration in which every optional key is set and every list has
/// an element. A new field of `GatewayConfig` breaks this literal, which is
/// the reminder to document it.
fn fully_populated() -> GatewayConfig {
    GatewayConfig {
        instance: "VN".parse().unwrap(),
        storage: StorageConfig {
            url: "sqlite:///var/lib/ndxp/registry.db".into(),
        },
        management: ManagementConfig {
            listen: "127.0.0.1:8100".parse().unwrap(),
            public_url: "http://127.0.0.1:8100".into(),
            max_body_bytes: 1024,
            enabled: true,
        },
        gateway: Some(GatewayRoleConfig {
            issuer: Some("urn:ndxp:gateway:VN".into()),
            tls_cert: Some(PathBuf::from("/k/gw.pem")),
            tls_key: Some(PathBuf::from("/k/gw.key")),
            client_ca: Some(PathBuf::from("/pki/ca.pem")),
            forward_headers: vec![ForwardHeadersConfig {
                service: "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1".into(),
                request: vec!["x-tenant".into()],
                response: vec!["x-total-count".into()],
            }],
            ..GatewayRoleConfig::default()
        }),
        admin: AdminConfig {
            listen: "127.0.0.1:8101".parse().unwrap(),
        },
        globalconf: GlobalConfConfig {
            signing_key: PathBuf::from("/k/sign.key"),
            signing_cert: PathBuf::from("/k/sign.pem"),
            signing_chain: Some(PathBuf::from("/k/chain.pem")),
            passphrase_file: Some(PathBuf::from("/k/pass")),
            validity_secs: 3600,
            cas: vec![CaConfig {
                name: "CA".into(),
                cert: PathBuf::from("/pki/ca.pem"),
                ocsp_urls: vec!["http://127.0.0.1:8190/ocsp".into()],
            }],
            tsas: vec![TsaConfig {
                name: "TSA".into(),
                url: "http://127.0.0.1:8190/tsa".into(),
                cert: PathBuf::from("/pki/tsa.pem"),
            }],
        },
        monitoring: MonitoringConfig {
            gateway_log_url: Some("sqlite:///var/lib/ndxp/gateway-log.db".into()),
            ..MonitoringConfig::default()
        },
        edge: ndxp_edge::EdgeSettings::default(),
        telemetry: ndxp_edge::telemetry::TelemetrySettings {
            otlp_endpoint: Some("http://127.0.0.1:4318".into()),
            service_name: Some("ndxp-gateway".into()),
            headers: [("authorization".to_string(), "Bearer x".to_string())].into(),
            ..ndxp_edge::telemetry::TelemetrySettings::default()
        },
    }
}

/// Tables whose keys are the operator's (a map): documented as one key.
const MAPS: &[&str] = &["telemetry.headers"];

/// Key paths of a TOML value: `a.b` for keys, `a.b[]` for arrays of
/// tables, whose keys are `a.b[].c`. Tables are in `tables`, everything
/// else (values and arrays of tables) in `keys`.
fn walk(prefix: &str, v: &toml::Value, keys: &mut BTreeSet<String>, tables: &mut BTreeSet<String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                match v {
                    toml::Value::Table(_) if MAPS.contains(&path.as_str()) => {
                        keys.insert(path);
                    }
                    toml::Value::Table(_) => {
                        tables.insert(path.clone());
                        walk(&path, v, keys, tables);
                    }
                    toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                        keys.insert(path.clone());
                        for item in items {
                            walk(&format!("{path}[]"), item, keys, tables);
                        }
                    }
                    _ => {
                        keys.insert(path);
                    }
                }
            }
        }
        _ => panic!("not a table at {prefix}"),
    }
}

fn paths_of(v: &toml::Value) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut keys, mut tables) = (BTreeSet::new(), BTreeSet::new());
    walk("", v, &mut keys, &mut tables);
    (keys, tables)
}

fn code_paths() -> (BTreeSet<String>, BTreeSet<String>) {
    let text = toml::to_string(&fully_populated()).unwrap();
    paths_of(&toml::from_str(&text).unwrap())
}

#[test]
fn every_key_of_the_configuration_is_documented() {
    let doc = doc();
    let (keys, _) = code_paths();
    assert!(keys.contains("globalconf.cas[].ocsp_urls"), "{keys:?}");
    let missing: Vec<&String> = keys
        .iter()
        .filter(|k| !doc.contains(&format!("| `{k}` |")))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/config.md has no table row for {missing:?}"
    );
}

/// `doc` without the section under `heading` (up to the next `## `).
fn without_section(doc: &str, heading: &str) -> String {
    let Some(start) = doc.find(heading) else {
        return doc.to_owned();
    };
    let rest = &doc[start + heading.len()..];
    let end = rest
        .find("\n## ")
        .map_or(doc.len(), |e| start + heading.len() + e);
    format!("{}{}", &doc[..start], &doc[end..])
}

#[test]
fn every_documented_key_exists() {
    // The PKCS#11 table's keys belong to tables of node.toml
    // (`[node.sign_pkcs11]`), not to gateway.toml.
    let doc = without_section(&doc(), "## PKCS#11 token tables");
    let (keys, _) = code_paths();
    let documented: Vec<&str> = doc
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        .collect();
    assert!(documented.len() >= keys.len());
    let unknown: Vec<&&str> = documented.iter().filter(|k| !keys.contains(**k)).collect();
    assert!(
        unknown.is_empty(),
        "docs/config.md documents keys the code does not have: {unknown:?}"
    );
}

#[test]
fn the_complete_example_parses_and_sets_every_key() {
    let blocks = toml_blocks_under(&doc(), "## Complete example");
    assert_eq!(blocks.len(), 2, "the complete and the smallest example");
    let base = Path::new("/etc/ndxp");
    let full = GatewayConfig::from_toml(&blocks[0], base).unwrap();
    assert_eq!(full.instance.as_str(), "VN");
    assert_eq!(full.storage.url, "sqlite:///etc/ndxp/registry.db");
    assert_eq!(
        full.globalconf.signing_key,
        Path::new("/etc/ndxp/mgmt-keys/sign.key")
    );
    let (example_keys, _) = paths_of(&toml::from_str(&blocks[0]).unwrap());
    let (keys, _) = code_paths();
    let unset: Vec<&String> = keys.difference(&example_keys).collect();
    assert!(
        unset.is_empty(),
        "the complete example does not set {unset:?}"
    );

    let small = GatewayConfig::from_toml(&blocks[1], base).unwrap();
    assert_eq!(small.management, ManagementConfig::default());
    assert_eq!(small.admin, AdminConfig::default());
}

#[test]
fn documented_defaults_are_the_code_defaults() {
    let doc = doc();
    let m = ManagementConfig::default();
    let edge = ndxp_edge::EdgeSettings::default();
    for row in [
        format!(
            "| `storage.url` | string (URL) | `{}` |",
            StorageConfig::default().url
        ),
        format!("| `management.listen` | socket address | `{}` |", m.listen),
        format!(
            "| `management.public_url` | string (URL) | `{}` |",
            m.public_url
        ),
        format!(
            "| `management.max_body_bytes` | integer (bytes) | `{}` |",
            m.max_body_bytes
        ),
        format!(
            "| `admin.listen` | socket address | `{}` |",
            AdminConfig::default().listen
        ),
        format!(
            "| `gateway.listen` | socket address | `{}` |",
            GatewayRoleConfig::default().listen
        ),
        format!(
            "| `gateway.max_body_bytes` | integer (bytes) | `{}` |",
            GatewayRoleConfig::default().max_body_bytes
        ),
        format!(
            "| `gateway.token_lifetime_secs` | integer (seconds) | `{}` |",
            GatewayRoleConfig::default().token_lifetime_secs
        ),
        format!(
            "| `gateway.registry_poll_ms` | integer (milliseconds) | `{}` |",
            GatewayRoleConfig::default().registry_poll_ms
        ),
        format!(
            "| `edge.header_timeout_secs` | integer (seconds) | `{}` |",
            edge.header_timeout_secs
        ),
        format!(
            "| `edge.idle_timeout_secs` | integer (seconds) | `{}` |",
            edge.idle_timeout_secs
        ),
        format!(
            "| `edge.body_timeout_secs` | integer (seconds) | `{}` |",
            edge.body_timeout_secs
        ),
        format!(
            "| `edge.tls_handshake_timeout_secs` | integer (seconds) | `{}` |",
            edge.tls_handshake_timeout_secs
        ),
        format!(
            "| `edge.drain_timeout_secs` | integer (seconds) | `{}` |",
            edge.drain_timeout_secs
        ),
        format!(
            "| `edge.max_connections` | integer | `{}` |",
            edge.max_connections
        ),
        format!(
            "| `edge.max_connections_per_ip` | integer | `{}` |",
            edge.max_connections_per_ip
        ),
        format!(
            "| `edge.max_header_bytes` | integer (bytes) | `{}` |",
            edge.max_header_bytes
        ),
        format!("| `edge.max_headers` | integer | `{}` |", edge.max_headers),
        format!(
            "| `telemetry.sample_ratio` | number | `{:.1}` |",
            ndxp_edge::telemetry::TelemetrySettings::default().sample_ratio
        ),
        format!(
            "| `telemetry.timeout_ms` | integer (milliseconds) | `{}` |",
            ndxp_edge::telemetry::TelemetrySettings::default().timeout_ms
        ),
        format!(
            "| `edge.http2_max_concurrent_streams` | integer | `{}` |",
            edge.http2_max_concurrent_streams
        ),
    ] {
        assert!(
            doc.contains(&row),
            "docs/config.md lacks the row starting {row:?}"
        );
    }
    let smallest = toml_blocks_under(&doc, "## Complete example")[1].clone();
    let c = GatewayConfig::from_toml(&smallest, Path::new("/x")).unwrap();
    assert!(doc.contains(&format!(
        "| `globalconf.validity_secs` | integer (seconds) | `{}` |",
        c.globalconf.validity_secs
    )));
}
