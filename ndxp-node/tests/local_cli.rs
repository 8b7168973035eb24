//! `ndxp-node subsystems | services | access`: the local configuration
//! through the binary, with `--json` listings a script can read and the
//! tables left as they were; `subsystems add --id` and the older
//! positional form; renamed flags that still accept their old spelling.
#![allow(clippy::unwrap_used)]

mod support;

use serde_json::{json, Value};
use support::{args, node, text, Fixture, MEMBER};

/// Runs the binary with `--config` and returns exit code, stdout, stderr.
async fn run(config: &std::path::Path, a: &[&str]) -> (i32, String, String) {
    let out = node(args(a, config)).await;
    let (stdout, stderr) = text(&out);
    (out.status.code().unwrap_or(-1), stdout, stderr)
}

async fn ok(config: &std::path::Path, a: &[&str]) -> String {
    let (code, stdout, stderr) = run(config, a).await;
    assert_eq!(code, 0, "{a:?}: {stdout}{stderr}");
    stdout
}

async fn json_of(config: &std::path::Path, a: &[&str]) -> Value {
    let stdout = ok(config, a).await;
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{a:?} is not JSON ({e}): {stdout}"))
}

#[tokio::test]
async fn listings_print_json_arrays_of_objects_and_the_tables_are_unchanged() {
    let f = Fixture::new();
    let config = f.write_config("http://127.0.0.1:9", "");
    let c = config.as_path();
    let qlht = format!("{MEMBER}/QLHT");
    let dvc = format!("{MEMBER}/DVC");
    let service = format!("{qlht}/citizen/v1");

    // Nothing yet: empty arrays, not an error or an empty string.
    for list in ["subsystems", "services", "access"] {
        assert_eq!(
            json_of(c, &[list, "list", "--json"]).await,
            json!([]),
            "{list}"
        );
    }

    // --id, and the older positional form.
    ok(c, &["subsystems", "add", "--id", &qlht]).await;
    ok(c, &["subsystems", "add", &dvc]).await;
    ok(
        c,
        &[
            "subsystems",
            "set",
            "--subsystem",
            &dvc,
            "--connection",
            "https-cert",
        ],
    )
    .await;
    let key = ndxp_sign::key::KeyAlgorithm::EcP256.generate().unwrap();
    let cert = ndxp_sign::cert::self_signed("dvc-portal", &key, &[], &[], 30).unwrap();
    let pem = f.tmp.path().join("dvc.pem");
    std::fs::write(&pem, cert.to_pem().unwrap()).unwrap();
    let sha = ndxp_sign::cert::fingerprint_sha256(&cert);
    ok(
        c,
        &[
            "subsystems",
            "add-cert",
            "--subsystem",
            &dvc,
            "--cert",
            pem.to_str().unwrap(),
        ],
    )
    .await;
    ok(
        c,
        &[
            "services",
            "add",
            "--service",
            &service,
            "--backend",
            "http://127.0.0.1:8400",
            "--timeout-secs",
            "12",
            "--request-header",
            "x-tenant",
        ],
    )
    .await;
    ok(
        c,
        &["access", "grant", "--service", &service, "--client", &dvc],
    )
    .await;
    ok(
        c,
        &[
            "access",
            "grant",
            "--service",
            &service,
            "--client",
            "group:ministries",
        ],
    )
    .await;

    let subsystems = json_of(c, &["subsystems", "list", "--json"]).await;
    let rows = subsystems.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{subsystems}");
    let qlht_row = rows
        .iter()
        .find(|r| r["subsystem"] == qlht.as_str())
        .unwrap();
    assert_eq!(qlht_row["connection"], "http");
    assert_eq!(qlht_row["certificates"], json!([]));
    let dvc_row = rows
        .iter()
        .find(|r| r["subsystem"] == dvc.as_str())
        .unwrap();
    assert_eq!(dvc_row["connection"], "https-cert");
    assert_eq!(dvc_row["certificates"][0]["sha256"], sha.as_str());
    assert!(dvc_row["certificates"][0]["subject"]
        .as_str()
        .unwrap()
        .contains("dvc-portal"));
    let not_after = dvc_row["certificates"][0]["not_after"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(not_after).is_ok(),
        "{not_after}"
    );

    assert_eq!(
        json_of(c, &["services", "list", "--json"]).await,
        json!([{
            "service": service,
            "backend": "http://127.0.0.1:8400",
            "timeout_secs": 12,
            "openapi": false,
            "keep_bodies": null,
            "request_headers": ["x-tenant"],
            "response_headers": [],
        }])
    );
    assert_eq!(
        json_of(c, &["access", "list", "--json"]).await,
        json!([
            {"service": service, "client": dvc},
            {"service": service, "client": "group:ministries"},
        ])
    );

    // The text output is what it was.
    let text = ok(c, &["subsystems", "list"]).await;
    assert!(text.contains(&format!("{dvc}  https-cert")), "{text}");
    assert!(text.contains(&format!("    cert {sha}  ")), "{text}");
    let text = ok(c, &["services", "list"]).await;
    assert!(
        text.contains("SERVICE") && text.contains("TIMEOUT") && text.contains("12s"),
        "{text}"
    );
    let text = ok(c, &["access", "list"]).await;
    assert!(
        text.contains("group:ministries") && text.contains("CLIENT"),
        "{text}"
    );

    // Removing by --id and by the positional form both work.
    let web = format!("{MEMBER}/WEB");
    ok(c, &["subsystems", "add", "--id", &web]).await;
    ok(c, &["subsystems", "remove", "--id", &dvc]).await;
    ok(c, &["subsystems", "remove", &web]).await;
    let left = json_of(c, &["subsystems", "list", "--json"]).await;
    assert_eq!(left.as_array().unwrap().len(), 1, "{left}");
    assert_eq!(left[0]["subsystem"], qlht.as_str());
}

#[tokio::test]
async fn a_subsystem_must_be_named_once_and_bad_input_is_a_usage_error() {
    let f = Fixture::new();
    let config = f.write_config("http://127.0.0.1:9", "");
    let c = config.as_path();
    let qlht = format!("{MEMBER}/QLHT");

    let (code, _, stderr) = run(c, &["subsystems", "add"]).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("--id"), "{stderr}");
    let (code, _, stderr) = run(c, &["subsystems", "add", "--id", &qlht, &qlht]).await;
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    let (code, _, stderr) = run(c, &["subsystems", "add", "--id", "not an id"]).await;
    assert_eq!(code, 64, "{stderr}");
    // --json takes no value.
    let (code, _, stderr) = run(c, &["access", "list", "--json=yes"]).await;
    assert_eq!(code, 64, "{stderr}");
    // Nothing was written by the refused commands.
    assert_eq!(
        json_of(c, &["subsystems", "list", "--json"]).await,
        json!([])
    );
}

#[tokio::test]
async fn diagnose_still_accepts_the_old_timeout_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    for flag in ["--timeout", "--timeout-secs"] {
        let (code, _, stderr) = run(&missing, &["diagnose", flag, "1"]).await;
        // Parsed: it got as far as reading the (missing) configuration.
        assert_eq!(code, 64, "{flag}: {stderr}");
        assert!(!stderr.contains("unexpected argument"), "{flag}: {stderr}");
        assert!(stderr.contains("missing.toml"), "{flag}: {stderr}");
    }
}
