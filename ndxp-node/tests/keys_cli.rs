//! `ndxp-node keys init`, checked as an operator would: files, modes, and the
//! stock `openssl` command line reading the CSRs.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use ndxp_test_support::tool::run_tool;

fn node(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ndxp-node"))
        .args(args)
        .output()
        .unwrap()
}

/// `keys init` for the demo's consumer member.
fn keys_init(dir: &str) -> std::process::Output {
    keys_init_as(dir, "VN/GOV/000.00.00.G22", "node-g22", &[])
}

/// `keys init --dir dir --member member --node name`, then `extra`.
fn keys_init_as(dir: &str, member: &str, name: &str, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "keys", "init", "--dir", dir, "--member", member, "--node", name,
    ];
    args.extend_from_slice(extra);
    node(&args)
}

#[test]
fn keys_init_writes_keys_0600_and_csrs_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("keys");
    let d = dir.to_str().unwrap();
    let out = keys_init(d);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for k in ["auth.key", "sign.key"] {
        let mode = std::fs::metadata(dir.join(k)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{k}");
        let pem = std::fs::read_to_string(dir.join(k)).unwrap();
        assert!(
            pem.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{k} is not PKCS#8"
        );
    }
    for csr in ["auth.csr", "sign.csr"] {
        let path = dir.join(csr);
        let (ok, text) = run_tool(
            "openssl",
            &[
                "req",
                "-verify",
                "-noout",
                "-subject",
                "-in",
                path.to_str().unwrap(),
            ],
        );
        assert!(ok, "{csr}: {text}");
        assert!(
            text.contains("VN/GOV/000.00.00.G22"),
            "{csr} subject: {text}"
        );
    }

    // Running it again must not replace the keys.
    let before = std::fs::read(dir.join("sign.key")).unwrap();
    let out = keys_init(d);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("exists already"));
    assert_eq!(std::fs::read(dir.join("sign.key")).unwrap(), before);
}

#[test]
fn bad_identifiers_exit_64_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("k");
    let out = keys_init_as(d.to_str().unwrap(), "VN/GOV/../x", "n1", &[]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("member"), "{err}");
    assert!(!d.exists(), "nothing may be written on bad input");
}

#[test]
fn passphrase_protected_keys_are_encrypted() {
    let tmp = tempfile::tempdir().unwrap();
    let pass = tmp.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple\n").unwrap();
    let dir = tmp.path().join("keys");
    let pass_arg = ["--passphrase-file", pass.to_str().unwrap()];
    let out = keys_init_as(
        dir.to_str().unwrap(),
        "VN/GOV/000.00.00.G22",
        "n1",
        &pass_arg,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pem = std::fs::read_to_string(dir.join("auth.key")).unwrap();
    assert!(pem.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    let passin = format!("file:{}", pass.display());
    let key = dir.join("auth.key");
    let mut args = vec!["pkey", "-noout", "-passin", &passin];
    args.extend(["-in", key.to_str().unwrap()]);
    let (ok, _) = run_tool("openssl", &args);
    assert!(ok, "openssl cannot open the key with the passphrase");
}
