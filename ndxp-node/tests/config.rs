//! The node configuration file: every key, defaults, relative paths,
//! refusals that name the key, and the example in docs/node.md.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use ndxp_core::ErrorChain;
use ndxp_node::config::{load, ConfigError, NodeConfig};
use proptest::prelude::*;

const FULL: &str = r#"
[node]
member = "VN/GOV/000.00.00.G22"
name = "node-g22"
address = "https://node.g22.example.vn:8443"
keys_dir = "keys"
passphrase_file = "/etc/ndxp/keys.pass"

[management]
url = "https://management.ndxp.example.vn/"
tls_ca_file = "ca.pem"
timeout_secs = 10

[conf]
anchor = "anchor.json"
dir = "/var/lib/ndxp/node/conf"
refresh_secs = 300
fetch_timeout_secs = 20
"#;

const MINIMAL: &str = r#"
[node]
member = "VN/GOV/000.00.00.G22"
name = "node-g22"
address = "https://node.g22.example.vn:8443"
keys_dir = "keys"

[management]
url = "http://127.0.0.1:8080"

[conf]
anchor = "anchor.json"
dir = "conf"
"#;

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::from_toml(text, Path::new("/etc/ndxp"))
}

#[test]
fn every_key_is_read_and_relative_paths_follow_the_config_file() {
    let c = parse(FULL).unwrap();
    assert_eq!(c.node.member.to_string(), "VN/GOV/000.00.00.G22");
    assert_eq!(c.node.name.as_str(), "node-g22");
    assert_eq!(c.node.address, "https://node.g22.example.vn:8443");
    assert_eq!(c.node.keys_dir, Path::new("/etc/ndxp/keys"));
    assert_eq!(
        c.node.passphrase_file.as_deref(),
        Some(Path::new("/etc/ndxp/keys.pass"))
    );
    assert_eq!(c.management.url, "https://management.ndxp.example.vn/");
    assert_eq!(
        c.management.tls_ca_file.as_deref(),
        Some(Path::new("/etc/ndxp/ca.pem"))
    );
    assert_eq!(c.management.timeout_secs, 10);
    assert_eq!(c.conf.anchor, Path::new("/etc/ndxp/anchor.json"));
    assert_eq!(c.conf.dir, Path::new("/var/lib/ndxp/node/conf"));
    assert_eq!(c.conf.refresh_secs, 300);
    assert_eq!(c.conf.fetch_timeout_secs, 20);
    // A trailing slash on the management URL does not double up.
    assert_eq!(
        c.registrations_url(),
        "https://management.ndxp.example.vn/api/v1/registrations"
    );
    assert_eq!(c.sign_key_path(), Path::new("/etc/ndxp/keys/sign.key"));
}

#[test]
fn defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.conf.refresh_secs, 60);
    assert_eq!(c.conf.fetch_timeout_secs, 30);
    assert_eq!(c.management.timeout_secs, 30);
    assert_eq!(c.node.passphrase_file, None);
    assert_eq!(c.management.tls_ca_file, None);
    assert_eq!(c.conf.dir, Path::new("/etc/ndxp/conf"));
    assert_eq!(c.exchange.peer_connections, 1);
}

#[test]
fn peer_connections_is_read_and_bounded() {
    let c = parse(&format!("{MINIMAL}\n[exchange]\npeer_connections = 4\n")).unwrap();
    assert_eq!(c.exchange.peer_connections, 4);
    for bad in ["0", "65"] {
        let (key, msg) = invalid_key(&format!(
            "{MINIMAL}\n[exchange]\npeer_connections = {bad}\n"
        ));
        assert_eq!(key, "exchange.peer_connections", "{msg}");
        assert!(msg.contains("between 1 and 64"), "{msg}");
    }
}

fn parse_err(text: &str) -> (String, Option<(usize, usize)>) {
    match parse(text).unwrap_err() {
        e @ ConfigError::Parse { location, .. } => (ErrorChain(&e).to_string(), location),
        e => panic!("{e:?}"),
    }
}

#[test]
fn an_unknown_key_is_refused_with_its_name_and_line() {
    let text = MINIMAL.replace(
        "keys_dir = \"keys\"",
        "keys_dir = \"keys\"\nkey_dri = \"x\"",
    );
    let (msg, loc) = parse_err(&text);
    assert!(msg.contains("key_dri"), "{msg}");
    assert_eq!(loc.map(|l| l.0), Some(7), "{msg}");
    assert!(msg.contains("line 7"), "{msg}");
    assert!(msg.contains("invalid configuration in `node`"), "{msg}");

    // A table this version does not know yet.
    let (msg, _) = parse_err(&format!("{MINIMAL}\n[cluster]\nlisten = \"[::]:8443\"\n"));
    assert!(msg.contains("cluster"), "{msg}");
}

#[test]
fn missing_and_malformed_values_are_named() {
    let (msg, _) = parse_err(&MINIMAL.replace("anchor = \"anchor.json\"\n", ""));
    assert!(msg.contains("anchor"), "{msg}");

    let (msg, _) = parse_err(&MINIMAL.replace("VN/GOV/000.00.00.G22", "VN/GOV//G22"));
    assert!(msg.contains("member"), "{msg}");

    let (msg, _) = parse_err(&MINIMAL.replace("[conf]", "[conf]\nrefresh_secs = \"60\""));
    assert!(msg.contains("refresh_secs"), "{msg}");

    let (msg, _) = parse_err("[node\n");
    assert!(msg.contains("line 1"), "{msg}");
}

fn invalid_key(text: &str) -> (&'static str, String) {
    match parse(text).unwrap_err() {
        e @ ConfigError::Invalid { key, .. } => (key, e.to_string()),
        e => panic!("{e:?}"),
    }
}

#[test]
fn values_that_parse_but_cannot_work_are_refused() {
    let (key, msg) = invalid_key(&MINIMAL.replace(
        "https://node.g22.example.vn:8443",
        "http://node.g22.example.vn:8443",
    ));
    assert_eq!(key, "node.address");
    assert!(msg.contains("https://"), "{msg}");

    let (key, _) = invalid_key(&MINIMAL.replace("https://node.g22.example.vn:8443", "node.g22"));
    assert_eq!(key, "node.address");

    let (key, _) = invalid_key(&MINIMAL.replace("http://127.0.0.1:8080", "ftp://127.0.0.1"));
    assert_eq!(key, "management.url");

    let (key, _) =
        invalid_key(&MINIMAL.replace("http://127.0.0.1:8080", "https://admin:secret@mgmt.example"));
    assert_eq!(key, "management.url");

    let (key, _) = invalid_key(&MINIMAL.replace("[conf]", "[conf]\nrefresh_secs = 0"));
    assert_eq!(key, "conf.refresh_secs");

    let (key, _) = invalid_key(&MINIMAL.replace("[management]", "[management]\ntimeout_secs = 0"));
    assert_eq!(key, "management.timeout_secs");

    // The HTTPS client port beside the plain one, and the Host names.
    let client = |table: &str| format!("{MINIMAL}\n[client]\n{table}\n");
    let (key, msg) = invalid_key(&client("tls_listen = \"0.0.0.0:8443\""));
    assert_eq!(key, "client.tls_listen");
    assert!(msg.contains("tls_cert"), "{msg}");
    let tls = "tls_cert = \"c.pem\"\ntls_key = \"c.key\"";
    let (key, _) = invalid_key(&client(&format!(
        "listen = \"127.0.0.1:8201\"\ntls_listen = \"127.0.0.1:8201\"\n{tls}"
    )));
    assert_eq!(key, "client.tls_listen");
    let (key, _) = invalid_key(&client(&format!(
        "listen = \"0.0.0.0:8201\"\ntls_listen = \"0.0.0.0:8443\"\n{tls}"
    )));
    assert_eq!(key, "client.listen");
    let (key, msg) = invalid_key(&client("hosts = [\"node.example.vn:8201\"]"));
    assert_eq!(key, "client.hosts");
    assert!(msg.contains("no scheme, port or path"), "{msg}");
    let c = parse(&client(&format!(
        "tls_listen = \"0.0.0.0:8443\"\n{tls}\nhosts = [\"node.example.vn\"]"
    )))
    .unwrap();
    assert_eq!(c.client.tls_listen, Some("0.0.0.0:8443".parse().unwrap()));
    assert_eq!(c.client.hosts, vec!["node.example.vn".to_string()]);
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("node.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn load_resolves_against_the_file_and_checks_what_must_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let path = write(tmp.path(), MINIMAL);

    // keys_dir does not exist yet: named, with the command that creates it.
    let err = load(&path).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "node.keys_dir",
                ..
            }
        ),
        "{msg}"
    );
    assert!(msg.contains("keys init"), "{msg}");

    std::fs::create_dir(tmp.path().join("keys")).unwrap();
    let c = load(&path).unwrap();
    assert_eq!(c.node.keys_dir, tmp.path().join("keys"));
    assert_eq!(c.conf.anchor, tmp.path().join("anchor.json"));

    // A passphrase file that is not there.
    let path = write(
        tmp.path(),
        &MINIMAL.replace(
            "keys_dir = \"keys\"",
            "keys_dir = \"keys\"\npassphrase_file = \"pass\"",
        ),
    );
    let err = load(&path).unwrap_err();
    assert!(
        matches!(
            err,
            ConfigError::Invalid {
                key: "node.passphrase_file",
                ..
            }
        ),
        "{err}"
    );

    // Not a file at all.
    let err = load(&tmp.path().join("missing.toml")).unwrap_err();
    assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    assert!(err.to_string().contains("missing.toml"), "{err}");
}

/// The example configuration in docs/node.md parses, sets every key, and
/// every key is explained in the page's tables.
#[test]
fn the_example_in_docs_node_md_is_a_valid_configuration() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/node.md")).unwrap();
    let marker = "<!-- example: node.toml -->";
    let start = doc.find(marker).expect("docs/node.md marks its example");
    let rest = &doc[start + marker.len()..];
    let rest = &rest[rest.find("```toml\n").expect("a toml block follows") + 8..];
    let block = &rest[..rest.find("```").unwrap()];
    let c = parse(block).unwrap();
    assert!(c.node.passphrase_file.is_some());
    assert!(c.management.tls_ca_file.is_some());

    for key in [
        "member",
        "name",
        "address",
        "keys_dir",
        "passphrase_file",
        "url",
        "tls_ca_file",
        "timeout_secs",
        "anchor",
        "dir",
        "refresh_secs",
        "fetch_timeout_secs",
    ] {
        assert!(
            block.contains(&format!("\n{key} = ")),
            "example lacks {key}"
        );
        assert!(
            doc.contains(&format!("| `{key}` |")),
            "no table row for {key}"
        );
    }
}

proptest! {
    /// Any text is either a configuration or an error; never a panic, and a
    /// reported location lies inside the text.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        if let Err(ConfigError::Parse { location: Some((line, _)), .. }) = parse(&text) {
            prop_assert!(line >= 1 && line <= text.lines().count().max(1) + 1);
        }
    }

    /// Small edits of a valid file never panic.
    #[test]
    fn mutated_valid_file_never_panics(pos in 0usize..400, ch in any::<char>()) {
        let mut text: Vec<char> = FULL.chars().collect();
        let i = pos % text.len();
        text[i] = ch;
        let s: String = text.into_iter().collect();
        let _ = parse(&s);
    }
}
