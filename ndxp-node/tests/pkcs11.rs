//! The member signing key on a PKCS#11 token (SoftHSM2), end to end:
//! `ndxp-node keys init --pkcs11` puts the key on the token and prints the
//! `[node.sign_pkcs11]` lines, the CA certifies the CSR made on the token,
//! and two nodes whose signing keys never leave their tokens exchange
//! messages that the peer, the message log and the log archive verifier
//! accept. A wrong PIN, a missing key, a missing module and a certificate
//! for another key stop `serve` before it listens and fail `config check`
//! (exit 64); a token removed while the node runs makes `/readyz` say so.
//!
//! Each test process gets its own SoftHSM2 token directory (a
//! `SOFTHSM2_CONF` under the target's tmp directory), with every token of
//! the process made before the module is first loaded. Without SoftHSM2
//! the tests skip with a message, except under CI (`CI=true`), where they
//! fail.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use chrono::Utc;
use ndxp_sign::cert::{write_pem_chain, Profile};
use ndxp_sign::csr;
use ndxp_sign::profile;
use support::net::{get, Network, NodeSetup, Options, CITIZEN, CLIENT};
use support::{args, node, text};

const PIN: &str = "2468-user-pin";
const SO_PIN: &str = "so-pin-1357";

/// One token per use, made before the module is loaded.
const TOKENS: &[&str] = &["xchg-consumer", "xchg-provider", "errors"];

struct Hsm {
    module: PathBuf,
    dir: PathBuf,
}

fn module_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NDXP_TEST_PKCS11_MODULE") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn hsm() -> Option<&'static Hsm> {
    static HSM: OnceLock<Option<Hsm>> = OnceLock::new();
    HSM.get_or_init(setup).as_ref()
}

fn setup() -> Option<Hsm> {
    let module = module_path();
    let util = Command::new("softhsm2-util").arg("--version").output();
    let (Some(module), Ok(out)) = (module, util) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "SoftHSM2 is not installed (softhsm2-util and libsofthsm2.so); CI must install it (.ci/run)"
        );
        eprintln!("skipping: SoftHSM2 is not installed (apt-get install softhsm2)");
        return None;
    };
    assert!(out.status.success(), "softhsm2-util --version failed");
    let dir = process_dir();
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    // Before the module is loaded in this process; the binaries the tests
    // run inherit it.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    for label in TOKENS {
        let out = Command::new("softhsm2-util")
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", PIN])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let pin = dir.join("token.pin");
    std::fs::write(&pin, format!("{PIN}\n")).unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    Some(Hsm { module, dir })
}

/// `<target tmp>/softhsm-node/<pid>`, after removing the directories of
/// test processes that have ended.
fn process_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("softhsm-node");
    std::fs::create_dir_all(&base).unwrap();
    for entry in std::fs::read_dir(&base).unwrap().flatten() {
        let alive = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    dir
}

impl Hsm {
    fn pin_file(&self) -> PathBuf {
        self.dir.join("token.pin")
    }
}

/// What an operator does to move a node's signing key to `token`: the old
/// file key and its certificate go, `keys init --pkcs11` makes the key on
/// the token and `sign.csr` (keeping `auth.key`), the CA certifies it, and
/// the printed `[node.sign_pkcs11]` lines go into node.toml. Returns the
/// printed table.
async fn move_signing_key_to_token(net: &Network, n: &NodeSetup, hsm: &Hsm, token: &str) -> String {
    for f in ["sign.key", "sign.csr", "sign.pem"] {
        std::fs::remove_file(n.keys_dir.join(f)).unwrap();
    }
    let auth_key_before = std::fs::read(n.keys_dir.join("auth.key")).unwrap();
    let out = node(
        [
            "keys",
            "init",
            "--dir",
            n.keys_dir.to_str().unwrap(),
            "--member",
            &n.member.to_string(),
            "--node",
            &n.name.to_string(),
            "--pkcs11",
            "--module",
            hsm.module.to_str().unwrap(),
            "--token-label",
            token,
            "--pin-file",
            hsm.pin_file().to_str().unwrap(),
            "--key-label",
            "member-sign",
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "keys init --pkcs11: {stdout}{stderr}");
    assert!(stdout.contains("generated on PKCS#11 token"), "{stdout}");
    assert!(stdout.contains("kept the existing"), "{stdout}");
    // The authentication key stays the file it was; no signing key file.
    assert_eq!(
        std::fs::read(n.keys_dir.join("auth.key")).unwrap(),
        auth_key_before
    );
    assert!(!n.keys_dir.join("sign.key").exists());
    // The PIN itself is printed nowhere.
    assert!(!stdout.contains(PIN) && !stderr.contains(PIN));

    let pem = std::fs::read(n.keys_dir.join("sign.csr")).unwrap();
    let cert = net
        .pki
        .issue(&csr::parse_csr(&pem).unwrap(), Profile::Sign, 30)
        .unwrap();
    std::fs::write(
        n.keys_dir.join("sign.pem"),
        write_pem_chain(std::slice::from_ref(&cert)).unwrap(),
    )
    .unwrap();

    let table = stdout
        .split_once("add to node.toml (after the [node] table):")
        .unwrap()
        .1
        .split("next:")
        .next()
        .unwrap()
        .trim()
        .to_string();
    assert!(table.starts_with("[node.sign_pkcs11]"), "{table}");
    let mut config = std::fs::read_to_string(&n.config_path).unwrap();
    config.push('\n');
    config.push_str(&table);
    config.push('\n');
    std::fs::write(&n.config_path, config).unwrap();
    // As installed: not readable by others (config check insists).
    std::fs::set_permissions(&n.config_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    table
}

/// No file in `dir` holds a private key.
fn assert_no_private_key_files(dir: &Path, except: &[&str]) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if except.contains(&name.as_str()) {
            continue;
        }
        let data = std::fs::read(entry.path()).unwrap();
        let text = String::from_utf8_lossy(&data);
        assert!(
            !text.contains("PRIVATE KEY"),
            "{name} in {} holds a private key",
            dir.display()
        );
    }
}

/// `config check --json`: the exit code and the checks.
async fn config_check(config: &Path) -> (i32, serde_json::Value) {
    let out = node(args(&["config", "check", "--json"], config)).await;
    let (stdout, stderr) = text(&out);
    let json = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("config check --json ({e}): {stdout}{stderr}"));
    (out.status.code().unwrap_or(-1), json)
}

/// The check `name` of a `config check` or diagnose report.
fn check<'a>(report: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_whose_signing_keys_are_on_tokens_exchange_and_the_log_verifies() {
    let Some(hsm) = hsm() else { return };
    let t0 = Utc::now() - chrono::Duration::seconds(1);
    let mut net = Network::prepare(Options::default()).await;
    let table = move_signing_key_to_token(&net, &net.consumer, hsm, "xchg-consumer").await;
    assert!(table.contains("token_label = \"xchg-consumer\""), "{table}");
    assert!(table.contains("key_label = \"member-sign\""), "{table}");
    move_signing_key_to_token(&net, &net.provider, hsm, "xchg-provider").await;

    // `config check` opens the token, finds the key and matches sign.pem.
    for n in [&net.consumer, &net.provider] {
        let (code, report) = config_check(&n.config_path).await;
        assert_eq!(code, 0, "{report}");
        assert_eq!(check(&report, "node.sign_pkcs11")["ok"], true, "{report}");
        assert_eq!(
            check(&report, "node.keys_dir/sign.pem matches the token's key")["ok"],
            true,
            "{report}"
        );
    }

    // `register` signs its request on the token; the management side
    // verifies it against the platform CA.
    *net.mgmt.trusted.lock().unwrap() = net.anchors();
    let out = node(args(&["register"], &net.consumer.config_path)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "register: {stdout}{stderr}");
    {
        let accepted = net.mgmt.accepted.lock().unwrap();
        let v = accepted
            .first()
            .expect("management accepted the registration");
        assert_eq!(v.payload.member, net.consumer.member);
        assert_eq!(v.payload.node, net.consumer.name);
    }

    net.start_node(true).await;
    net.start_node(false).await;
    net.wait_ready(true).await;
    net.wait_ready(false).await;

    let r = get(&net.url(CITIZEN, "/persons/001099012345"), Some(CLIENT)).await;
    assert_eq!(r.status, 200, "{}", r.text());

    // Both logs hold both signatures, made on the tokens, and they
    // re-verify offline against the platform CA.
    for n in [&net.provider, &net.consumer] {
        let records = n.log_records("pkcs11-test-reader").await;
        let mut signers = Vec::new();
        for rec in &records {
            let e = &rec.exchange;
            for meta in std::iter::once(&e.request).chain(e.response.as_ref()) {
                let (member, _) = profile::verify_logged(
                    &meta.base,
                    &meta.signature_input,
                    &meta.signature,
                    &meta.signer_cert_der,
                    &meta.chain_der,
                    &net.anchors(),
                    &*net.pki,
                )
                .unwrap_or_else(|e| panic!("a logged signature does not verify: {e}"));
                signers.push(member.to_string());
            }
        }
        assert!(
            signers.contains(&net.consumer.member.to_string()),
            "{signers:?}"
        );
        assert!(
            signers.contains(&net.provider.member.to_string()),
            "{signers:?}"
        );
    }

    // The archive verifier accepts the consumer's log.
    let ca = net.consumer.dir.join("ca.pem");
    std::fs::write(&ca, ndxp_test_support::pki::pem(net.pki.root_cert())).unwrap();
    let archive = net.consumer.dir.join("log.ndxplog");
    let t1 = Utc::now() + chrono::Duration::seconds(1);
    let out = node(args(
        &[
            "log",
            "archive",
            "--from",
            &t0.to_rfc3339(),
            "--to",
            &t1.to_rfc3339(),
            "--out",
            archive.to_str().unwrap(),
            "--cert",
            ca.to_str().unwrap(),
        ],
        &net.consumer.config_path,
    ))
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "log archive: {stdout}{stderr}");
    let out = node(
        [
            "log",
            "verify",
            archive.to_str().unwrap(),
            "--ca",
            ca.to_str().unwrap(),
        ]
        .map(String::from)
        .to_vec(),
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "log verify: {stdout}{stderr}");

    // No private key of the signing key anywhere in the key directories.
    for n in [&net.consumer, &net.provider] {
        assert_no_private_key_files(&n.keys_dir, &["auth.key"]);
    }

    // `diagnose` reports the token.
    let out = node(args(&["diagnose", "--json"], &net.consumer.config_path)).await;
    let (stdout, stderr) = text(&out);
    let report: serde_json::Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("diagnose --json ({e}): {stdout}{stderr}"));
    let token = check(&report, "signing key (PKCS#11)");
    assert_eq!(token["status"], "ok", "{report}");
    assert!(
        token["detail"].as_str().unwrap().contains("xchg-consumer"),
        "{report}"
    );

    // The consumer's token is pulled out while the node runs: /readyz says
    // so, and the exchange fails instead of going out unsigned.
    let out = Command::new("softhsm2-util")
        .args(["--delete-token", "--token", "xchg-consumer"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ready = reqwest::get(format!("{}/readyz", net.consumer.admin_url()))
        .await
        .unwrap();
    assert_eq!(ready.status(), 503);
    let body = ready.text().await.unwrap();
    assert!(body.contains("signing key (PKCS#11)"), "{body}");
    assert!(body.contains("removed"), "{body}");
    let r = get(&net.url(CITIZEN, "/persons/001099012345"), Some(CLIENT)).await;
    let p = r.problem(500, "ndxp.internal");
    assert!(p["detail"].as_str().unwrap().contains("removed"), "{p}");
    // The provider, whose token is still there, stays ready.
    net.wait_ready(true).await;
}

/// `serve` with `config`: it must exit (not listen) with a non-zero status;
/// returns stderr.
async fn serve_fails(config: &Path) -> String {
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        node(args(&["serve"], config)),
    )
    .await
    .expect("serve kept running instead of refusing to start");
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "serve started: {stdout}{stderr}");
    stderr
}

fn edit_config(path: &Path, from: &str, to: &str) {
    let c = std::fs::read_to_string(path).unwrap();
    assert!(c.contains(from), "{c}");
    std::fs::write(path, c.replace(from, to)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_pin_a_missing_key_or_module_and_a_foreign_certificate_stop_serve_and_fail_config_check(
) {
    let Some(hsm) = hsm() else { return };
    let net = Network::prepare(Options::default()).await;
    let n = &net.consumer;
    move_signing_key_to_token(&net, n, hsm, "errors").await;
    let (code, report) = config_check(&n.config_path).await;
    assert_eq!(code, 0, "{report}");

    // A wrong PIN, from a PIN file of its own.
    let wrong = hsm.dir.join("wrong.pin");
    std::fs::write(&wrong, "0000\n").unwrap();
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o600)).unwrap();
    let right = hsm.pin_file().display().to_string();
    edit_config(&n.config_path, &right, &wrong.display().to_string());
    let stderr = serve_fails(&n.config_path).await;
    assert!(stderr.contains("node.sign_pkcs11"), "{stderr}");
    assert!(
        stderr.contains("PIN for PKCS#11 token errors is incorrect"),
        "{stderr}"
    );
    assert!(!stderr.contains("0000"), "the PIN is printed: {stderr}");
    let (code, report) = config_check(&n.config_path).await;
    assert_eq!(code, 64, "{report}");
    let c = check(&report, "node.sign_pkcs11");
    assert_eq!(c["ok"], false, "{report}");
    assert!(
        c["detail"].as_str().unwrap().contains("incorrect"),
        "{report}"
    );

    // A PIN file others may read is refused before the token is asked.
    std::fs::set_permissions(&wrong, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stderr = serve_fails(&n.config_path).await;
    assert!(stderr.contains("chmod 600"), "{stderr}");
    edit_config(&n.config_path, &wrong.display().to_string(), &right);

    // A key label the token does not hold.
    edit_config(
        &n.config_path,
        "key_label = \"member-sign\"",
        "key_label = \"nope\"",
    );
    let stderr = serve_fails(&n.config_path).await;
    assert!(
        stderr.contains("no key nope on PKCS#11 token errors"),
        "{stderr}"
    );
    let (code, report) = config_check(&n.config_path).await;
    assert_eq!(code, 64, "{report}");
    assert!(
        check(&report, "node.sign_pkcs11")["detail"]
            .as_str()
            .unwrap()
            .contains("no key nope"),
        "{report}"
    );
    edit_config(
        &n.config_path,
        "key_label = \"nope\"",
        "key_label = \"member-sign\"",
    );

    // A token label no slot has.
    edit_config(
        &n.config_path,
        "token_label = \"errors\"",
        "token_label = \"gone\"",
    );
    let stderr = serve_fails(&n.config_path).await;
    assert!(
        stderr.contains("no PKCS#11 token label \"gone\""),
        "{stderr}"
    );
    edit_config(
        &n.config_path,
        "token_label = \"gone\"",
        "token_label = \"errors\"",
    );

    // A module that is not there.
    let module = hsm.module.display().to_string();
    edit_config(&n.config_path, &module, "/nonexistent/libpkcs11.so");
    let stderr = serve_fails(&n.config_path).await;
    assert!(
        stderr.contains("PKCS#11 module /nonexistent/libpkcs11.so not found"),
        "{stderr}"
    );
    let (code, _) = config_check(&n.config_path).await;
    assert_eq!(code, 64);
    edit_config(&n.config_path, "/nonexistent/libpkcs11.so", &module);

    // Half a table: no PIN source.
    edit_config(&n.config_path, &format!("pin_file = \"{right}\""), "");
    let stderr = serve_fails(&n.config_path).await;
    assert!(stderr.contains("pin_file"), "{stderr}");
    let (code, _) = config_check(&n.config_path).await;
    assert_eq!(code, 64);
    edit_config(
        &n.config_path,
        "key_label",
        &format!("pin_file = \"{right}\"\nkey_label"),
    );

    // sign.pem for another key (the provider's file-key certificate).
    let own = std::fs::read(n.keys_dir.join("sign.pem")).unwrap();
    let other_key = ndxp_sign::key::KeyAlgorithm::EcP256.generate().unwrap();
    let req = csr::build_sign_csr(&n.member, &other_key).unwrap();
    let other = net.pki.issue(&req, Profile::Sign, 30).unwrap();
    std::fs::write(
        n.keys_dir.join("sign.pem"),
        write_pem_chain(std::slice::from_ref(&other)).unwrap(),
    )
    .unwrap();
    let stderr = serve_fails(&n.config_path).await;
    assert!(
        stderr.contains("the signing key does not belong to the signing certificate"),
        "{stderr}"
    );
    assert!(
        stderr.contains("member-sign on PKCS#11 token errors"),
        "{stderr}"
    );
    let (code, report) = config_check(&n.config_path).await;
    assert_eq!(code, 64, "{report}");
    assert_eq!(
        check(&report, "node.keys_dir/sign.pem matches the token's key")["ok"],
        false,
        "{report}"
    );
    std::fs::write(n.keys_dir.join("sign.pem"), own).unwrap();

    // A file key left beside a token-held one: config check says to
    // delete it.
    ndxp_sign::key::write_private_key_file(&n.keys_dir.join("sign.key"), &other_key, None, false)
        .unwrap();
    let (code, report) = config_check(&n.config_path).await;
    assert_eq!(code, 64, "{report}");
    assert_eq!(
        check(&report, "node.keys_dir/sign.key")["ok"],
        false,
        "{report}"
    );
    std::fs::remove_file(n.keys_dir.join("sign.key")).unwrap();
    let (code, report) = config_check(&n.config_path).await;
    assert_eq!(code, 0, "{report}");

    // `keys init --pkcs11` refuses a second key under the same label, and
    // the PIN on the command line is no option at all.
    let fresh = hsm.dir.join("fresh-keys");
    let init = |extra: &[&str]| {
        let mut a: Vec<String> = [
            "keys",
            "init",
            "--dir",
            fresh.to_str().unwrap(),
            "--member",
            &n.member.to_string(),
            "--node",
            "node-x",
            "--pkcs11",
            "--module",
            hsm.module.to_str().unwrap(),
            "--token-label",
            "errors",
            "--key-label",
            "member-sign",
        ]
        .map(String::from)
        .to_vec();
        a.extend(extra.iter().map(|s| (*s).to_string()));
        a
    };
    let out = node(init(&["--pin-file", &right])).await;
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(
        stderr.contains("already exists on PKCS#11 token errors"),
        "{stderr}"
    );
    assert!(!fresh.exists(), "a refused keys init wrote files");
    let out = node(init(&["--pin", PIN])).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("unexpected argument '--pin'"), "{stderr}");
    // With --use-existing it finds the key and signs a new CSR with it.
    let out = node(init(&["--pin-file", &right, "--use-existing"])).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("found on PKCS#11 token"), "{stdout}");
    let req = csr::parse_csr(&std::fs::read(fresh.join("sign.csr")).unwrap()).unwrap();
    let on_token =
        ndxp_sign::cert::read_pem_chain(&std::fs::read(n.keys_dir.join("sign.pem")).unwrap())
            .unwrap()
            .remove(0)
            .public_key()
            .unwrap();
    assert!(req.public_key().unwrap().public_eq(&on_token));
    assert_no_private_key_files(&fresh, &["auth.key"]);
}
