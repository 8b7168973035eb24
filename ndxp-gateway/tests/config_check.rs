//! `ndxp-gateway config check` end to end through the binary: a good
//! directory passes (exit 0, text and JSON), and each kind of fault is
//! named with a hint and exit 64: a missing file, a key others may read,
//! a certificate of another key, a certificate of another CA, an
//! environment override of an unknown key, an open secret file. Also the
//! configuration path from `NDXP_CONFIG` and the default path.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;

use ndxp_test_support::pki::{init_named_pki, init_pki, member_signer};
use serde_json::Value;

#[path = "common/operator_config.rs"]
mod operator_config;

const MGMT: &str = "VN/GOV/MGMT";

fn config_text() -> String {
    format!(
        "instance = \"VN\"\n\n{}\n\n[[globalconf.cas]]\nname = \"root\"\ncert = \"pki/ca.pem\"\n",
        operator_config::GLOBALCONF_TABLE
    )
}

/// An operator's directory with a good configuration.
fn good_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let pki = init_pki(&dir.path().join("pki"), "http://127.0.0.1:1/ocsp");
    write_signer(dir.path(), &pki);
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, config_text()).unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    (dir, config)
}

fn write_signer(dir: &Path, pki: &ndxp_sign::ca::Pki) {
    let mgmt = member_signer(pki, &MGMT.parse().unwrap());
    std::fs::create_dir_all(dir.join("mgmt-keys")).unwrap();
    std::fs::write(
        dir.join("mgmt-keys/sign.pem"),
        mgmt.cert().to_pem().unwrap(),
    )
    .unwrap();
    ndxp_sign::key::write_private_key_file(&dir.join("mgmt-keys/sign.key"), &mgmt.key, None, true)
        .unwrap();
}

fn check(config: Option<&Path>, env: &[(&str, &str)], json: bool) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"));
    cmd.args(["config", "check"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    if json {
        cmd.arg("--json");
    }
    cmd.env_remove("NDXP_CONFIG").env_remove("NDXP_LOG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn failing(out: &Output, needles: &[&str]) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(64), "{text}");
    for n in needles {
        assert!(text.contains(n), "{n:?} not in:\n{text}");
    }
    text
}

#[test]
fn a_good_directory_passes_in_text_and_json() {
    let (_dir, config) = good_dir();
    let out = check(Some(&config), &[], false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for n in [
        "ok    configuration",
        "ok    globalconf.signing_key",
        "ok    globalconf.signing_cert matches its key",
        "ok    globalconf.signing_cert chains to the trust anchors",
        "checks passed",
    ] {
        assert!(text.contains(n), "{n:?} not in:\n{text}");
    }
    let out = check(Some(&config), &[], true);
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert!(v["checks"].as_array().unwrap().len() >= 5);
}

#[test]
fn a_missing_file_is_named() {
    let (dir, config) = good_dir();
    std::fs::remove_file(dir.path().join("pki/chain.pem")).unwrap();
    let text = failing(
        &check(Some(&config), &[], false),
        &["FAIL  globalconf.signing_chain", "hint:"],
    );
    assert!(text.contains("chain.pem"), "{text}");
    let v: Value = serde_json::from_slice(&check(Some(&config), &[], true).stdout).unwrap();
    assert_eq!(v["ok"], false);
    let failed: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["ok"] == false)
        .collect();
    assert!(failed
        .iter()
        .any(|c| c["name"] == "globalconf.signing_chain" && c["hint"].is_string()));
}

#[test]
fn a_key_others_may_read_is_refused() {
    let (dir, config) = good_dir();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    failing(
        &check(Some(&config), &[], false),
        &["FAIL  configuration", "chmod o-rwx"],
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o640)).unwrap();
    let key = dir.path().join("mgmt-keys/sign.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    failing(
        &check(Some(&config), &[], false),
        &["FAIL  globalconf.signing_key", "chmod 600"],
    );
}

#[test]
fn a_certificate_of_another_key_is_refused() {
    let (dir, config) = good_dir();
    let other = ndxp_test_support::pki::ec_key();
    ndxp_sign::key::write_private_key_file(
        &dir.path().join("mgmt-keys/sign.key"),
        &other,
        None,
        true,
    )
    .unwrap();
    failing(
        &check(Some(&config), &[], false),
        &[
            "FAIL  globalconf.signing_cert matches its key",
            "issued for another key",
        ],
    );
}

#[test]
fn a_certificate_of_another_ca_is_refused() {
    let (dir, config) = good_dir();
    let stranger = init_named_pki(
        &dir.path().join("other-pki"),
        "Other CA",
        "http://127.0.0.1:1/ocsp",
    );
    write_signer(dir.path(), &stranger);
    let text = failing(
        &check(Some(&config), &[], false),
        &[
            "ok    globalconf.signing_cert matches its key",
            "FAIL  globalconf.signing_cert chains to the trust anchors",
        ],
    );
    assert!(
        text.contains("hint: install a certificate issued under the platform's CA"),
        "{text}"
    );
}

#[test]
fn environment_overrides_are_applied_and_unknown_keys_named() {
    let (dir, config) = good_dir();
    // A known key: applied (and `config check` says so).
    let out = check(
        Some(&config),
        &[("NDXP_ADMIN__LISTEN", "127.0.0.1:9101")],
        false,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("overrides applied: NDXP_ADMIN__LISTEN"),
        "{text}"
    );
    // A typo: named, exit 64, in `config check` and in any other command.
    failing(
        &check(
            Some(&config),
            &[("NDXP_ADMIN__LISTN", "127.0.0.1:9101")],
            false,
        ),
        &[
            "FAIL  configuration",
            "NDXP_ADMIN__LISTN",
            "admin.listn",
            "unknown field",
        ],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
        .args(["members", "list", "--config"])
        .arg(&config)
        .env("NDXP_ADMIN__LISTN", "x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("NDXP_ADMIN__LISTN"));
    // A value of the wrong type names the variable, not the value.
    let text = failing(
        &check(
            Some(&config),
            &[("NDXP_MANAGEMENT__MAX_BODY_BYTES", "lots-s3cret")],
            false,
        ),
        &["NDXP_MANAGEMENT__MAX_BODY_BYTES"],
    );
    assert!(!text.contains("s3cret"), "{text}");
    drop(dir);
}

#[test]
fn a_secret_file_is_read_and_an_open_one_refused() {
    let (dir, config) = good_dir();
    let secret = dir.path().join("registry-url");
    let url = format!("sqlite://{}\n", dir.path().join("reg.db").display());
    std::fs::write(&secret, url).unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = [("NDXP_STORAGE__URL_FILE", secret.to_str().unwrap())];
    let out = check(Some(&config), &env, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("ok    storage.url_file"), "{text}");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o640)).unwrap();
    failing(
        &check(Some(&config), &env, false),
        &["storage.url_file", "chmod 600"],
    );
    // Both the value and its file: refused.
    let both = [
        ("NDXP_STORAGE__URL_FILE", secret.to_str().unwrap()),
        ("NDXP_STORAGE__URL", "sqlite://x.db"),
    ];
    failing(
        &check(Some(&config), &both, false),
        &["both storage.url and storage.url_file"],
    );
}

#[test]
fn the_path_comes_from_ndxp_config_or_the_default() {
    let (_dir, config) = good_dir();
    let out = check(None, &[("NDXP_CONFIG", config.to_str().unwrap())], false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = check(None, &[], false);
    if !Path::new("/etc/ndxp/gateway.toml").exists() {
        failing(&out, &["/etc/ndxp/gateway.toml"]);
    }
}

#[test]
fn a_bad_telemetry_table_is_named() {
    let (dir, config) = good_dir();
    let out = check(
        Some(&config),
        &[
            (
                "NDXP_TELEMETRY__OTLP_ENDPOINT",
                "https://otel.example.vn/v1/traces",
            ),
            ("NDXP_TELEMETRY__SERVICE_NAME", "central-gateway"),
        ],
        false,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for (var, value, key) in [
        (
            "NDXP_TELEMETRY__OTLP_ENDPOINT",
            "otel.example.vn",
            "telemetry.otlp_endpoint",
        ),
        (
            "NDXP_TELEMETRY__SAMPLE_RATIO",
            "2",
            "telemetry.sample_ratio",
        ),
        ("NDXP_TELEMETRY__SERVICE_NAME", "", "telemetry.service_name"),
    ] {
        failing(
            &check(Some(&config), &[(var, value)], false),
            &["FAIL  configuration", key],
        );
    }
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[telemetry]\notlp_endpoint = \"ftp://collector\"\n");
    std::fs::write(&config, text).unwrap();
    failing(
        &check(Some(&config), &[], false),
        &[
            "FAIL  configuration",
            "telemetry.otlp_endpoint",
            "http://127.0.0.1:4318",
        ],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("NDXP_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("telemetry.otlp_endpoint"));
    drop(dir);
}
