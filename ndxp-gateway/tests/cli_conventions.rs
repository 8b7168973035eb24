//! The flags of every `ndxp-gateway` command keep the conventions of
//! docs/cli.md (the same rules `ndxp-node` is held to), every command is
//! listed there, and renamed flags still accept their old spelling.
#![allow(clippy::unwrap_used)]

use ndxp_test_support::cli;
use ndxp_test_support::tool::run_binary;

const BIN: &str = env!("CARGO_BIN_EXE_ndxp-gateway");

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap()
}

#[test]
fn every_flag_keeps_the_conventions_and_every_command_is_documented() {
    let tree = cli::tree(BIN);
    let commands = tree.as_array().unwrap();
    // The walk saw the whole tree, hidden commands included.
    for path in [
        &["pki", "serve"][..],
        &["gateway", "credentials", "rotate"],
        &["generate", "tree"],
    ] {
        assert!(
            commands
                .iter()
                .any(|c| c["path"] == serde_json::json!(path)),
            "{path:?} missing from the tree"
        );
    }
    assert_eq!(cli::violations("ndxp-gateway", &tree), Vec::<String>::new());
    assert_eq!(
        cli::undocumented("ndxp-gateway", &tree, &doc()),
        Vec::<String>::new(),
        "add these commands to docs/cli.md"
    );
}

#[test]
fn old_spellings_still_parse_and_json_conflicts_with_another_format() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    // Parsed: the command gets as far as reading the configuration.
    for wait in ["--wait", "--wait-secs"] {
        let (code, _, stderr) = run_binary(
            BIN,
            &[
                "reconcile",
                "--config",
                missing,
                "--period",
                "2026-11-28",
                wait,
                "0",
            ],
        );
        assert_eq!(code, 64, "{wait}: {stderr}");
        assert!(!stderr.contains("unexpected argument"), "{wait}: {stderr}");
        assert!(stderr.contains("missing.toml"), "{wait}: {stderr}");
    }
    let (code, _, stderr) = run_binary(
        BIN,
        &[
            "reconcile",
            "--config",
            missing,
            "--period",
            "2026-11-28",
            "--json",
            "--format",
            "csv",
        ],
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("cannot be used with"), "{stderr}");
    for timeout in ["--timeout", "--timeout-secs"] {
        let (code, _, stderr) = run_binary(BIN, &["diagnose", "--config", missing, timeout, "3"]);
        assert_eq!(code, 64, "{timeout}: {stderr}");
        assert!(
            !stderr.contains("unexpected argument"),
            "{timeout}: {stderr}"
        );
    }
    // -o is --out everywhere a command writes a file.
    let (code, _, stderr) = run_binary(
        BIN,
        &["conf", "anchor", "--config", missing, "-o", "a.json"],
    );
    assert_eq!(code, 64, "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
    // A misspelling is still refused, with the usage.
    let (code, _, stderr) = run_binary(BIN, &["status", "--config-file", missing]);
    assert_eq!(code, 64, "{stderr}");
    assert!(
        stderr.contains("unexpected argument '--config-file'"),
        "{stderr}"
    );
}
