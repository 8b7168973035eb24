//! The operator commands, run as the real `ndxp-gateway` binary against a
//! configuration file in a temporary directory: SQLite always, PostgreSQL
//! too when `NDXP_TEST_POSTGRES_URL` is set (in a fresh schema that is
//! dropped afterwards).
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use ndxp_core::{MemberId, NodeName};
use ndxp_gateway::management::registry::token_sha256;
use ndxp_registry::globalconf::ConfAnchor;
use ndxp_registry::model::{Actor, NewRegistration, RegistrationRequest};
use ndxp_registry::registration::{sign_registration, RegistrationPayload};
use ndxp_registry::store::RegistryStore;
use ndxp_sign::ca::Pki;
use ndxp_test_support::db::{postgres_url, Backend, TestDatabase};
use ndxp_test_support::pki::{init_pki, member_signer, node_auth_cert, pem};
use serde_json::Value;
use tempfile::TempDir;

#[path = "common/operator_config.rs"]
mod operator_config;

const H29: &str = "VN/GOV/000.00.00.H29";
const MGMT: &str = "VN/GOV/MGMT";
const PUBLIC_URL: &str = "http://127.0.0.1:18100";

/// A configuration directory: PKI, management signing key and certificate,
/// `gateway.toml`.
struct Env {
    dir: TempDir,
    config: PathBuf,
    url: String,
    pki: Pki,
    db: TestDatabase,
}

impl Env {
    async fn sqlite() -> Env {
        Env::create(Backend::Sqlite).await
    }

    async fn postgres() -> Option<Env> {
        postgres_url()?;
        Some(Env::create(Backend::Postgres).await)
    }

    async fn create(backend: Backend) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let pki = init_pki(&dir.path().join("pki"), "http://127.0.0.1:8190/ocsp");
        let keys = dir.path().join("mgmt-keys");
        std::fs::create_dir(&keys).unwrap();
        let mgmt = member_signer(&pki, &MGMT.parse().unwrap());
        std::fs::write(keys.join("sign.pem"), mgmt.cert().to_pem().unwrap()).unwrap();
        ndxp_sign::key::write_private_key_file(&keys.join("sign.key"), &mgmt.key, None, false)
            .unwrap();
        let db = TestDatabase::create(backend, dir.path()).await;
        let url = db.url.clone();
        let config = dir.path().join("gateway.toml");
        std::fs::write(&config, config_text(&url)).unwrap();
        Env {
            dir,
            config,
            url,
            pki,
            db,
        }
    }

    /// Runs `ndxp-gateway ARGS --config gateway.toml` as user `tester`.
    fn gw(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"));
        cmd.args(args)
            .arg("--config")
            .arg(&self.config)
            .env("USER", "tester")
            .env_remove("NDXP_LOG");
        cmd.output().unwrap()
    }

    /// Like [`Env::gw`], and asserts success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.gw(args);
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    async fn store(&self) -> Arc<dyn RegistryStore> {
        ndxp_registry::store::open(&self.url).await.unwrap()
    }

    /// A registration request of `member`'s node `node`, signed with a
    /// fresh signing key of the member and carrying a fresh authentication
    /// certificate, submitted through the store as the API would.
    async fn submit(&self, member: &str, node: &str) -> RegistrationRequest {
        let member: MemberId = member.parse().unwrap();
        let node: NodeName = node.parse().unwrap();
        let signer = member_signer(&self.pki, &member);
        let auth_cert = node_auth_cert(&self.pki, &member, &node);
        let auth_pem = pem(&auth_cert);
        let address = format!("https://{node}.example.vn:8443");
        let payload = RegistrationPayload::new(
            member.clone(),
            node.clone(),
            address.clone(),
            auth_pem.clone(),
            chrono::Utc::now(),
        );
        let jws = sign_registration(&payload, &signer.key, &signer.chain).unwrap();
        let new = NewRegistration {
            member: member.clone(),
            node,
            address,
            auth_cert_pem: auth_pem,
            auth_cert_sha256: ndxp_sign::cert::fingerprint_sha256(&auth_cert),
            signed_request: jws,
        };
        self.store()
            .await
            .submit_registration(&new, &Actor::member(&member))
            .await
            .unwrap()
    }

    async fn cleanup(self) {
        self.db.drop_now().await;
    }
}

fn config_text(url: &str) -> String {
    let globalconf = operator_config::GLOBALCONF_TABLE;
    format!(
        r#"instance = "VN"

[storage]
url = "{url}"

[management]
public_url = "{PUBLIC_URL}/"

{globalconf}

[[globalconf.cas]]
name = "NDXP Root CA"
cert = "pki/ca.pem"
ocsp_urls = ["http://127.0.0.1:8190/ocsp"]
"#
    )
}

/// `nodes remove-cert` of H29's node1 for the certificate `sha256`.
fn remove_cert(sha256: &str) -> [&str; 8] {
    [
        "nodes",
        "remove-cert",
        "--member",
        H29,
        "--name",
        "node1",
        "--sha256",
        sha256,
    ]
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ids(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

// ------------------------------------------------------------------ tests

/// members and subsystems: add, list (table and JSON), remove; the audit
/// trail names the OS user.
async fn members_and_subsystems(env: &Env) {
    let out = env.ok(&["members", "add", "--id", H29, "--name", "Bộ Công an"]);
    assert!(out.contains(H29), "{out}");
    env.ok(&[
        "members",
        "add",
        "--id",
        "VN/COM/0101234567",
        "--name",
        "Công ty ABC",
    ]);

    let table = env.ok(&["members", "list"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("ID") && lines[0].contains("NAME"));
    // Sorted by id: COM before GOV.
    assert!(lines[1].starts_with("VN/COM/0101234567") && lines[1].contains("Công ty ABC"));
    assert!(lines[2].starts_with(H29) && lines[2].contains("Bộ Công an"));
    let json = env.json(&["members", "list"]);
    assert_eq!(ids(&json), ["VN/COM/0101234567", H29]);
    assert_eq!(json[1]["name"], "Bộ Công an");

    // Adding twice is refused, and not as a usage error.
    let dup = env.gw(&["members", "add", "--id", H29, "--name", "again"]);
    assert_eq!(code(&dup), 1);
    assert!(stderr(&dup).contains("already exists"), "{}", stderr(&dup));

    let sub = format!("{H29}/CSDLDC");
    env.ok(&["subsystems", "add", "--id", &sub]);
    env.ok(&["subsystems", "add", "--id", "VN/COM/0101234567/APP"]);
    // The member of a subsystem must exist.
    let orphan = env.gw(&["subsystems", "add", "--id", "VN/GOV/NOPE/X"]);
    assert_eq!(code(&orphan), 1);
    assert!(stderr(&orphan).contains("VN/GOV/NOPE"));
    assert_eq!(
        ids(&env.json(&["subsystems", "list", "--member", H29])),
        [sub.as_str()]
    );
    assert_eq!(ids(&env.json(&["subsystems", "list"])).len(), 2);
    assert!(env.ok(&["subsystems", "list"]).contains(&sub));

    env.ok(&["subsystems", "remove", "--id", &sub]);
    assert!(env
        .json(&["subsystems", "list", "--member", H29])
        .as_array()
        .unwrap()
        .is_empty());
    let again = env.gw(&["subsystems", "remove", "--id", &sub]);
    assert_eq!(code(&again), 1);
    assert!(stderr(&again).contains("does not exist"));

    env.ok(&["members", "remove", "--id", "VN/COM/0101234567"]);
    assert_eq!(ids(&env.json(&["members", "list"])), [H29]);
    // Removing a member removes its subsystems.
    assert!(ids(&env.json(&["subsystems", "list"])).is_empty());

    let store = env.store().await;
    let audit = store.list_audit(0, 100).await.unwrap();
    assert!(audit.len() >= 6);
    assert!(audit.iter().all(|e| e.actor == "cli:tester"), "{audit:?}");
    assert!(audit
        .iter()
        .any(|e| e.action.starts_with("member.") && e.target == H29));
}

#[tokio::test]
async fn members_and_subsystems_sqlite() {
    let env = Env::sqlite().await;
    members_and_subsystems(&env).await;
    env.cleanup().await;
}

#[tokio::test]
async fn bad_identifiers_exit_64_and_write_nothing() {
    let env = Env::sqlite().await;
    let db = env.dir.path().join("registry.db");

    // Malformed identifiers are refused before the registry is opened.
    for args in [
        vec!["members", "add", "--id", "VN/GOV", "--name", "x"],
        vec!["members", "add", "--id", "VN/GOV/a b", "--name", "x"],
        vec!["subsystems", "add", "--id", "VN/GOV/X"],
        vec!["nodes", "remove", "--member", H29, "--name", "bad/name"],
        vec!["requests", "approve", "--id", "not-a-uuid"],
        vec!["requests", "list", "--state", "maybe"],
        vec!["tokens", "create", "--member", H29],
        vec![
            "tokens",
            "create",
            "--operator",
            "a",
            "--member",
            H29,
            "--name",
            "b",
        ],
    ] {
        let out = env.gw(&args);
        assert_eq!(code(&out), 64, "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!db.exists(), "{args:?} created the registry");
    }
    let out = env.gw(&["members", "add", "--id", "VN/GOV", "--name", "x"]);
    assert!(stderr(&out).contains("--id"), "{}", stderr(&out));

    // Identifiers of another instance, and bad names, are refused without
    // any write.
    for args in [
        vec!["members", "add", "--id", "LA/GOV/1", "--name", "x"],
        vec!["subsystems", "add", "--id", "LA/GOV/1/APP"],
        vec!["members", "add", "--id", H29, "--name", "   "],
        vec!["members", "add", "--id", H29, "--name", "two\nlines"],
        vec!["tokens", "create", "--member", "LA/GOV/1", "--name", "t"],
        vec!["tokens", "create", "--operator", ""],
    ] {
        let out = env.gw(&args);
        assert_eq!(code(&out), 64, "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    let out = env.gw(&["members", "add", "--id", "LA/GOV/1", "--name", "x"]);
    assert!(stderr(&out).contains("instance VN"), "{}", stderr(&out));

    let store = env.store().await;
    assert_eq!(store.registry_version().await.unwrap(), 0);
    assert!(store.list_audit(0, 10).await.unwrap().is_empty());
    assert!(store.list_members().await.unwrap().is_empty());
    assert!(store.list_credentials().await.unwrap().is_empty());
    env.cleanup().await;
}

#[tokio::test]
async fn bad_configuration_exits_64_naming_the_key() {
    let env = Env::sqlite().await;
    let text = std::fs::read_to_string(&env.config).unwrap();

    std::fs::write(&env.config, format!("colour = \"blue\"\n{text}")).unwrap();
    let out = env.gw(&["members", "list"]);
    assert_eq!(code(&out), 64);
    let err = stderr(&out);
    assert!(
        err.contains("colour") && err.contains("gateway.toml"),
        "{err}"
    );

    std::fs::write(
        &env.config,
        text.replace("[management]", "[management]\nlisten = \"0.0.0.0:8100\""),
    )
    .unwrap();
    let out = env.gw(&["conf", "anchor", "--out", "a.json"]);
    assert_eq!(code(&out), 64);
    assert!(
        stderr(&out).contains("[management] listen"),
        "{}",
        stderr(&out)
    );

    std::fs::remove_file(&env.config).unwrap();
    let out = env.gw(&["tokens", "list"]);
    assert_eq!(code(&out), 64);
    assert!(stderr(&out).contains("gateway.toml"));
    assert!(!env.dir.path().join("registry.db").exists());
    env.cleanup().await;
}

/// tokens: printed once, only the hash stored, revocable.
async fn tokens(env: &Env) -> String {
    let out = env.gw(&["tokens", "create", "--operator", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let token = stdout.trim_end_matches('\n');
    assert_eq!(stdout.lines().count(), 1, "only the token on stdout");
    assert_eq!(token.len(), 48, "ndxp_ + 43 base64url characters");
    assert!(token
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    assert!(stderr(&out).contains("only"), "{}", stderr(&out));

    let store = env.store().await;
    let creds = store.list_credentials().await.unwrap();
    assert_eq!(creds.len(), 1);
    assert_eq!(creds[0].name, "alice");
    assert_eq!(creds[0].token_sha256, token_sha256(token));
    assert_ne!(creds[0].token_sha256, token);
    let found = store
        .find_active_credential(&token_sha256(token))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, creds[0].id);

    // A member token needs an existing member.
    let none = env.gw(&["tokens", "create", "--member", H29, "--name", "app"]);
    assert_eq!(code(&none), 1);
    assert!(none.stdout.is_empty());
    env.ok(&["members", "add", "--id", H29, "--name", "Bộ Công an"]);
    let member_token = env.ok(&["tokens", "create", "--member", H29, "--name", "app"]);
    assert_ne!(member_token.trim(), token);

    // Listing shows neither the tokens nor their hashes.
    let table = env.ok(&["tokens", "list"]);
    assert!(table.contains("alice") && table.contains(&format!("member:{H29}")));
    assert!(!table.contains(token) && !table.contains(&creds[0].token_sha256));
    let id = creds[0].id.to_string();
    env.ok(&["tokens", "revoke", "--id", &id]);
    assert!(store
        .find_active_credential(&token_sha256(token))
        .await
        .unwrap()
        .is_none());
    let json = env.json(&["tokens", "list"]);
    let alice = json
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id.as_str())
        .unwrap();
    assert!(alice["revoked_at"].is_string());
    let again = env.gw(&["tokens", "revoke", "--id", &id]);
    assert_eq!(code(&again), 1);
    token.to_string()
}

#[tokio::test]
async fn tokens_sqlite() {
    let env = Env::sqlite().await;
    let token = tokens(&env).await;
    // The token is nowhere in the database files.
    let store = env.store().await;
    let cred = &store.list_credentials().await.unwrap()[0];
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(env.dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("registry.db")
        {
            bytes.extend(std::fs::read(&p).unwrap());
        }
    }
    let hash = cred.token_sha256.as_bytes();
    assert!(
        bytes.windows(hash.len()).any(|w| w == hash),
        "the hash is stored"
    );
    let token = token.as_bytes();
    assert!(
        !bytes.windows(token.len()).any(|w| w == token),
        "the token is not"
    );
    env.cleanup().await;
}

/// requests list/approve/reject and nodes list/remove.
async fn requests_and_nodes(env: &Env) {
    env.ok(&["members", "add", "--id", H29, "--name", "Bộ Công an"]);
    let r1 = env.submit(H29, "node1").await;
    let r2 = env.submit(H29, "node2").await;

    let table = env.ok(&["requests", "list"]);
    assert_eq!(table.lines().count(), 3, "{table}");
    for r in [&r1, &r2] {
        assert!(table.contains(&r.id.to_string()));
        assert!(
            table.contains(&r.auth_cert_sha256),
            "full fingerprint shown"
        );
    }
    let pending = env.json(&["requests", "list", "--state", "pending"]);
    assert_eq!(ids(&pending), [r1.id.to_string(), r2.id.to_string()]);
    assert_eq!(pending[0]["state"], "pending");

    let out = env.ok(&["requests", "approve", "--id", &r1.id.to_string()]);
    assert!(out.contains("node1"), "{out}");
    let nodes = env.json(&["nodes", "list"]);
    assert_eq!(nodes.as_array().unwrap().len(), 1);
    assert_eq!(nodes[0]["name"], "node1");
    assert_eq!(nodes[0]["member"], H29);
    assert_eq!(nodes[0]["auth_cert_sha256"], r1.auth_cert_sha256.as_str());
    assert_eq!(nodes[0]["address"], "https://node1.example.vn:8443");
    assert!(env
        .ok(&["nodes", "list", "--member", H29])
        .contains(&r1.auth_cert_sha256));

    // A reason is required to reject.
    let out = env.gw(&[
        "requests",
        "reject",
        "--id",
        &r2.id.to_string(),
        "--reason",
        " ",
    ]);
    assert_eq!(code(&out), 64);
    env.ok(&[
        "requests",
        "reject",
        "--id",
        &r2.id.to_string(),
        "--reason",
        "unknown address",
    ]);
    let rejected = env.json(&["requests", "list", "--state", "rejected"]);
    assert_eq!(ids(&rejected), [r2.id.to_string()]);
    assert_eq!(rejected[0]["reason"], "unknown address");
    assert_eq!(rejected[0]["decided_by"], "cli:tester");
    assert_eq!(
        ids(&env.json(&["requests", "list", "--state", "all"])).len(),
        2
    );
    assert_eq!(
        ids(&env.json(&["requests", "list", "--state", "approved"])),
        [r1.id.to_string()]
    );
    assert!(env
        .json(&["requests", "list"])
        .as_array()
        .unwrap()
        .is_empty());

    // Decided requests cannot be decided again; an unknown id is not found.
    let again = env.gw(&["requests", "approve", "--id", &r2.id.to_string()]);
    assert_eq!(code(&again), 1, "{}", stderr(&again));
    let unknown = env.gw(&[
        "requests",
        "approve",
        "--id",
        &uuid::Uuid::now_v7().to_string(),
    ]);
    assert_eq!(code(&unknown), 1);
    assert!(stderr(&unknown).contains("does not exist"));
    // The store has no node2.
    assert_eq!(env.store().await.list_nodes(None).await.unwrap().len(), 1);

    // Certificate rotation: a second request for node1 (same member, same
    // address) adds a certificate; the old one is then removed.
    let r3 = env.submit(H29, "node1").await;
    env.ok(&["requests", "approve", "--id", &r3.id.to_string()]);
    let fps = |nodes: &Value| -> Vec<String> {
        nodes[0]["auth_certs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["auth_cert_sha256"].as_str().unwrap().to_string())
            .collect()
    };
    let both = env.json(&["nodes", "list"]);
    assert_eq!(
        fps(&both),
        [r1.auth_cert_sha256.clone(), r3.auth_cert_sha256.clone()]
    );
    let out = env.ok(&remove_cert(&r1.auth_cert_sha256));
    assert!(out.contains(&r3.auth_cert_sha256), "{out}");
    assert_eq!(
        fps(&env.json(&["nodes", "list"])),
        std::slice::from_ref(&r3.auth_cert_sha256)
    );
    // The last certificate stays; an unknown one is not found.
    for fp in [r3.auth_cert_sha256.as_str(), r1.auth_cert_sha256.as_str()] {
        let out = env.gw(&remove_cert(fp));
        assert_eq!(code(&out), 1, "{}", stderr(&out));
    }
    assert_eq!(
        fps(&env.json(&["nodes", "list"])),
        std::slice::from_ref(&r3.auth_cert_sha256)
    );

    env.ok(&["nodes", "remove", "--member", H29, "--name", "node1"]);
    assert!(env.json(&["nodes", "list"]).as_array().unwrap().is_empty());
    let again = env.gw(&["nodes", "remove", "--member", H29, "--name", "node1"]);
    assert_eq!(code(&again), 1);
}

#[tokio::test]
async fn requests_and_nodes_sqlite() {
    let env = Env::sqlite().await;
    requests_and_nodes(&env).await;
    env.cleanup().await;
}

#[tokio::test]
async fn conf_anchor_names_instance_url_and_signer() {
    let env = Env::sqlite().await;
    let out_path = env.dir.path().join("anchor.json");
    let out = env.ok(&["conf", "anchor", "--out", out_path.to_str().unwrap()]);
    assert!(out.contains(MGMT), "{out}");
    let anchor = ConfAnchor::from_json(&std::fs::read(&out_path).unwrap()).unwrap();
    assert_eq!(anchor.instance.as_str(), "VN");
    assert_eq!(anchor.conf_url, format!("{PUBLIC_URL}/globalconf"));
    assert_eq!(anchor.signer_member, Some(MGMT.parse().unwrap()));
    let anchors = anchor.trust_anchors().unwrap();
    assert_eq!(anchors.len(), 1);
    assert_eq!(
        anchors[0].to_der().unwrap(),
        env.pki.root_cert().to_der().unwrap()
    );
    // Only the anchor file was written: no leftovers, no registry.
    let names: Vec<String> = std::fs::read_dir(env.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("anchor"))
        .collect();
    assert_eq!(names, ["anchor.json"]);

    // Exported again, it is replaced whole.
    env.ok(&["conf", "anchor", "--out", out_path.to_str().unwrap()]);
    ConfAnchor::load(&out_path).unwrap();

    // A signing_cert that is not a member's signing certificate is refused
    // with the file named, and nothing is written.
    let ca = env.dir.path().join("pki/ca.pem");
    std::fs::copy(&ca, env.dir.path().join("mgmt-keys/sign.pem")).unwrap();
    let other = env.dir.path().join("other.json");
    let out = env.gw(&["conf", "anchor", "--out", other.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("sign.pem"), "{}", stderr(&out));
    assert!(!other.exists());
    env.cleanup().await;
}

#[tokio::test]
async fn postgres_flows() {
    let Some(env) = Env::postgres().await else {
        return;
    };
    members_and_subsystems(&env).await;
    env.cleanup().await;
    let Some(env) = Env::postgres().await else {
        return;
    };
    let _ = tokens(&env).await;
    env.cleanup().await;
    let Some(env) = Env::postgres().await else {
        return;
    };
    requests_and_nodes(&env).await;
    env.cleanup().await;
}

#[test]
fn help_lists_the_operator_commands() {
    let out = Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for c in [
        "pki",
        "members",
        "subsystems",
        "nodes",
        "requests",
        "tokens",
        "conf",
    ] {
        assert!(text.contains(c), "{c} missing from --help");
    }
}

/// `registry export | diff | apply` (docs/config-as-code.md): exit
/// statuses, the file's mode, a bad file naming its line, idempotence.
#[tokio::test]
async fn registry_file_export_diff_apply() {
    let env = Env::sqlite().await;
    env.ok(&["members", "add", "--id", H29, "--name", "Bộ Công an"]);
    env.ok(&["subsystems", "add", "--id", &format!("{H29}/CSDLDC")]);
    let file = env.dir.path().join("registry.toml");
    let path = file.to_str().unwrap();
    env.ok(&["registry", "export", "-o", path]);
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&file).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(env.ok(&["registry", "export"]), text, "stdout and -o agree");

    // Nothing to do: diff exits 0, apply says so and writes nothing.
    let out = env.gw(&["registry", "diff", "-f", path]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let store = env.store().await;
    let audit = store.list_audit(0, 1000).await.unwrap().len();
    assert!(env
        .ok(&["registry", "apply", "-f", path])
        .contains("no changes"));
    assert_eq!(store.list_audit(0, 1000).await.unwrap().len(), audit);

    // A new member: diff exits 1 and shows it, --json too.
    let edited = text.replace(
        "[[subsystems]]",
        "[[members]]\nid = \"VN/GOV/000.00.00.G22\"\nname = \"Bộ Tài chính\"\n\n[[subsystems]]",
    );
    std::fs::write(&file, &edited).unwrap();
    let out = env.gw(&["registry", "diff", "-f", path]);
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("+ member VN/GOV/000.00.00.G22"));
    let out = env.gw(&["registry", "diff", "-f", path, "--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["changes"][0]["op"], "add");
    env.ok(&["registry", "apply", "-f", path, "--dry-run"]);
    assert_eq!(store.list_members().await.unwrap().len(), 1, "dry run");
    let v = env.json(&["registry", "apply", "-f", path]);
    assert_eq!(v["applied"], true);
    let members = store.list_members().await.unwrap();
    assert_eq!(members.len(), 2);
    let last = store.list_audit(0, 1000).await.unwrap();
    assert_eq!(last.last().map(|e| e.actor.as_str()), Some("cli:tester"));

    // A bad file: exit 64 naming the line, nothing written.
    std::fs::write(
        &file,
        edited.replace("name = \"Bộ Tài chính\"", "nmae = \"x\""),
    )
    .unwrap();
    for cmd in ["diff", "apply"] {
        let out = env.gw(&["registry", cmd, "-f", path]);
        assert_eq!(code(&out), 64, "{cmd}");
        assert!(stderr(&out).contains("line "), "{}", stderr(&out));
    }
    assert_eq!(store.list_audit(0, 1000).await.unwrap().len(), last.len());
    env.cleanup().await;
}
