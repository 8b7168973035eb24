//! `ndxp-node config check` end to end through the binary: a node's
//! directory as `keys init` and the test PKI leave it passes; a key others
//! may read, a certificate of another key, a missing anchor, an unknown
//! environment override and an open secret file are each named (exit 64).
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;

use support::Fixture;

fn check(config: &Path, env: &[(&str, &str)], json: bool) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ndxp-node"));
    cmd.args(["config", "check", "--config"]).arg(config);
    if json {
        cmd.arg("--json");
    }
    cmd.env_remove("NDXP_CONFIG");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

fn says(out: &Output, code: i32, needles: &[&str]) {
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(code), "{text}");
    for n in needles {
        assert!(text.contains(n), "{n:?} not in:\n{text}");
    }
}

fn setup() -> (Fixture, std::path::PathBuf) {
    let f = Fixture::new();
    let config = f.write_config("http://127.0.0.1:1", "");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    (f, config)
}

#[test]
fn a_node_directory_passes() {
    let (_f, config) = setup();
    says(
        &check(&config, &[], false),
        0,
        &[
            "ok    node.keys_dir/auth.pem matches its key",
            "ok    node.keys_dir/auth.pem chains to the trust anchors",
            "ok    node.keys_dir/sign.pem chains to the trust anchors",
            "ok    conf.anchor readable",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&check(&config, &[], true).stdout).unwrap();
    assert_eq!(v["ok"], true);
}

#[test]
fn each_fault_is_named() {
    let (f, config) = setup();
    let auth_key = f.keys_dir.join("auth.key");
    std::fs::set_permissions(&auth_key, std::fs::Permissions::from_mode(0o644)).unwrap();
    says(
        &check(&config, &[], false),
        64,
        &["FAIL  node.keys_dir/auth.key", "chmod 600"],
    );
    std::fs::set_permissions(&auth_key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The signing certificate replaced by the authentication one.
    let sign_pem = f.keys_dir.join("sign.pem");
    let saved = std::fs::read(&sign_pem).unwrap();
    std::fs::copy(f.keys_dir.join("auth.pem"), &sign_pem).unwrap();
    says(
        &check(&config, &[], false),
        64,
        &["FAIL  node.keys_dir/sign.pem matches its key"],
    );
    std::fs::write(&sign_pem, saved).unwrap();

    let anchor = f.node_dir().join("anchor.json");
    std::fs::rename(&anchor, f.node_dir().join("away.json")).unwrap();
    says(
        &check(&config, &[], false),
        64,
        &["FAIL  conf.anchor", "hint:"],
    );
    std::fs::rename(f.node_dir().join("away.json"), &anchor).unwrap();

    says(
        &check(&config, &[("NDXP_CONF__REFRESH", "5")], false),
        64,
        &["FAIL  configuration", "NDXP_CONF__REFRESH", "unknown field"],
    );
    says(
        &check(&config, &[("NDXP_CONF__REFRESH_SECS", "5")], false),
        0,
        &["NDXP_CONF__REFRESH_SECS"],
    );
}

#[test]
fn the_log_url_may_come_from_a_secret_file() {
    let (f, config) = setup();
    let secret = f.node_dir().join("log-url");
    std::fs::write(&secret, "sqlite://state/log.db\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let env = [("NDXP_LOG__URL_FILE", "log-url")];
    says(&check(&config, &env, false), 0, &["ok    log.url_file"]);
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
    says(
        &check(&config, &env, false),
        64,
        &["log.url_file", "refused"],
    );
}

#[test]
fn a_bad_telemetry_table_is_named() {
    let (_f, config) = setup();
    // A good one, from the environment (a float typed from text).
    says(
        &check(
            &config,
            &[
                ("NDXP_TELEMETRY__OTLP_ENDPOINT", "http://127.0.0.1:4318"),
                ("NDXP_TELEMETRY__SAMPLE_RATIO", "0.25"),
            ],
            false,
        ),
        0,
        &[
            "NDXP_TELEMETRY__OTLP_ENDPOINT",
            "NDXP_TELEMETRY__SAMPLE_RATIO",
        ],
    );
    for (var, value, key) in [
        (
            "NDXP_TELEMETRY__OTLP_ENDPOINT",
            "127.0.0.1:4318",
            "telemetry.otlp_endpoint",
        ),
        (
            "NDXP_TELEMETRY__OTLP_ENDPOINT",
            "grpc://collector:4317",
            "telemetry.otlp_endpoint",
        ),
        (
            "NDXP_TELEMETRY__SAMPLE_RATIO",
            "1.5",
            "telemetry.sample_ratio",
        ),
        ("NDXP_TELEMETRY__TIMEOUT_MS", "0", "telemetry.timeout_ms"),
    ] {
        says(
            &check(&config, &[(var, value)], false),
            64,
            &["FAIL  configuration", key],
        );
    }
    // In the file: refused by `config check` and by `serve` alike.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(
        "\n[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = -1.0\n",
    );
    std::fs::write(&config, text).unwrap();
    says(
        &check(&config, &[], false),
        64,
        &["FAIL  configuration", "telemetry.sample_ratio"],
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ndxp-node"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("NDXP_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("telemetry.sample_ratio"));
}
