//! `ndxp-gateway backup` on a running management role whose registry is
//! being written to, then a restore into a fresh directory: the restored
//! registry starts, accepts the operator token made before the backup,
//! lists the members, and is a consistent snapshot (registry version and
//! members moved together).
#![allow(clippy::unwrap_used)]

mod management_support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use management_support::Server;
use ndxp_audit::backup::{self, EntryKind};
use ndxp_gateway::config::GatewayConfig;
use ndxp_registry::model::Actor;
use ndxp_registry::store::{RegistryStore, SqlStore, StoreOptions};
use ndxp_test_support::pki::{init_pki, member_signer};
use serde_json::Value;

#[path = "common/operator_config.rs"]
mod operator_config;

const MGMT: &str = "VN/GOV/MGMT";

/// The files an operator keeps separately (not in the backup).
const KEPT: &[&str] = &[
    "mgmt-keys/sign.key",
    "mgmt-keys/sign.pem",
    "pki/ca.pem",
    "pki/chain.pem",
];

fn config_text() -> String {
    format!(
        r#"instance = "VN"

[storage]
url = "sqlite://data/registry.db"

[management]
listen = "127.0.0.1:0"

[admin]
listen = "127.0.0.1:0"

{globalconf}

[[globalconf.cas]]
name = "NDXP Root CA"
cert = "pki/ca.pem"
"#,
        globalconf = operator_config::GLOBALCONF_TABLE
    )
}

fn gw(args: &[&str], config: &Path) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env("USER", "tester")
        .env_remove("NDXP_LOG")
        .output()
        .unwrap()
}

fn ok(args: &[&str], config: &Path) -> String {
    let out = gw(args, config);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The management role in this process on `config`'s registry.
async fn start(config: &GatewayConfig) -> (String, Arc<SqlStore>, Server) {
    let store = Arc::new(
        SqlStore::open(&config.storage.url, &StoreOptions::default())
            .await
            .unwrap(),
    );
    let server = Server::spawn(config, store.clone()).await;
    (format!("http://{}", server.mgmt), store, server)
}

async fn stop(server: Server, store: Arc<SqlStore>) {
    let _ = server.stop.send(());
    server.task.await.unwrap().unwrap();
    store.close().await;
}

async fn members(url: &str, token: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    for _ in 0..500 {
        if let Ok(r) = http
            .get(format!("{url}/api/v1/members"))
            .bearer_auth(token)
            .send()
            .await
        {
            assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
            let v: Value = r.json().await.unwrap();
            let list = v.as_array().or_else(|| v["items"].as_array()).unwrap();
            return list
                .iter()
                .map(|m| m["id"].as_str().unwrap().to_string())
                .collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the management API did not answer");
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn online_backup_restores_into_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let pki = init_pki(&live.join("pki"), "http://127.0.0.1:1/ocsp");
    std::fs::create_dir_all(live.join("mgmt-keys")).unwrap();
    std::fs::create_dir_all(live.join("data")).unwrap();
    let mgmt = member_signer(&pki, &MGMT.parse().unwrap());
    std::fs::write(
        live.join("mgmt-keys/sign.pem"),
        mgmt.cert().to_pem().unwrap(),
    )
    .unwrap();
    ndxp_sign::key::write_private_key_file(
        &live.join("mgmt-keys/sign.key"),
        &mgmt.key,
        None,
        false,
    )
    .unwrap();
    let config_path = live.join("gateway.toml");
    std::fs::write(&config_path, config_text()).unwrap();

    // Data made with the operator commands before the backup.
    ok(
        &[
            "members",
            "add",
            "--id",
            "VN/GOV/000.00.00.H29",
            "--name",
            "Bộ Công an",
        ],
        &config_path,
    );
    ok(
        &[
            "members",
            "add",
            "--id",
            "VN/GOV/000.00.00.G22",
            "--name",
            "Bộ Tư pháp",
        ],
        &config_path,
    );
    let token = ok(&["tokens", "create", "--operator", "admin"], &config_path)
        .trim()
        .to_string();

    // The role runs; a writer keeps adding members while the backup runs.
    let config = GatewayConfig::load(&config_path).unwrap();
    let (url, store, server) = start(&config).await;
    assert_eq!(members(&url, &token).await.len(), 2);
    let v0 = store.registry_version().await.unwrap();
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let (store, writing) = (store.clone(), writing.clone());
        tokio::spawn(async move {
            let mut n = 0u32;
            while writing.load(Ordering::Relaxed) {
                let id = format!("VN/COM/01{n:08}").parse().unwrap();
                store
                    .add_member(&id, "Công ty", &Actor::cli("writer"))
                    .await
                    .unwrap();
                n += 1;
            }
            n
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let out_dir = dir.path().join("backup-1");
    let out = {
        let (c, o) = (config_path.clone(), out_dir.clone());
        tokio::task::spawn_blocking(move || gw(&["backup", "--out", o.to_str().unwrap()], &c))
            .await
            .unwrap()
    };
    writing.store(false, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(written > 0, "the writer wrote nothing during the backup");
    let live_members = members(&url, &token).await;
    stop(server, store).await;

    // What the command said and wrote.
    assert!(stdout.contains("saved    registry.db"), "{stdout}");
    assert!(stdout.contains("saved    gateway.toml"), "{stdout}");
    assert!(
        stdout.contains(
            "mgmt-keys/sign.key [globalconf.signing_key]: not copied, keep it safe separately"
        ),
        "{stdout}"
    );
    let manifest = backup::check(&out_dir).unwrap();
    assert_eq!(manifest.format, "ndxp-backup/1");
    let db = manifest
        .entries
        .iter()
        .find(|e| e.file.as_deref() == Some("registry.db"))
        .unwrap();
    assert_eq!(db.kind, EntryKind::Sqlite);
    assert_eq!(db.keys, vec!["storage.url".to_string()]);
    assert!(!out_dir.join("mgmt-keys").exists() && !out_dir.join("sign.key").exists());
    for f in ["registry.db", "gateway.toml", "backup.json"] {
        let mode = std::fs::metadata(out_dir.join(f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    assert_eq!(
        std::fs::metadata(&out_dir).unwrap().permissions().mode() & 0o777,
        0o700
    );

    // Restore into a fresh directory: the backup's files, plus the files
    // kept separately.
    let fresh = dir.path().join("restored");
    copy(&out_dir.join("gateway.toml"), &fresh.join("gateway.toml"));
    copy(
        &out_dir.join("registry.db"),
        &fresh.join("data/registry.db"),
    );
    for f in KEPT {
        copy(&live.join(f), &fresh.join(f));
    }
    let restored = GatewayConfig::load(&fresh.join("gateway.toml")).unwrap();
    let (url, store, server) = start(&restored).await;
    let got = members(&url, &token).await;
    assert!(got.contains(&"VN/GOV/000.00.00.H29".to_string()), "{got:?}");
    assert!(got.contains(&"VN/GOV/000.00.00.G22".to_string()), "{got:?}");
    // A snapshot of one moment: every member it holds was live, and the
    // registry version moved by exactly the members added after v0.
    assert!(got.iter().all(|m| live_members.contains(m)));
    let added = got.len() - 2;
    let v = store.registry_version().await.unwrap();
    assert_eq!(
        v - v0,
        i64::try_from(added).unwrap(),
        "version {v0} -> {v}, {added} added"
    );
    // The restored registry takes writes.
    ok(
        &[
            "members",
            "add",
            "--id",
            "VN/GOV/000.00.00.X01",
            "--name",
            "Sở",
        ],
        &fresh.join("gateway.toml"),
    );
    assert_eq!(members(&url, &token).await.len(), got.len() + 1);
    stop(server, store).await;

    // A second backup into the same directory is refused, not merged.
    let again = gw(
        &["backup", "--out", out_dir.to_str().unwrap()],
        &config_path,
    );
    assert_eq!(again.status.code(), Some(1));
    let err = String::from_utf8_lossy(&again.stderr);
    assert!(err.contains("exists and is not empty"), "{err}");
}

#[test]
fn postgres_storage_is_listed_with_its_pg_dump_command() {
    let dir = tempfile::tempdir().unwrap();
    let pki = init_pki(&dir.path().join("pki"), "http://127.0.0.1:1/ocsp");
    std::fs::create_dir_all(dir.path().join("mgmt-keys")).unwrap();
    let mgmt = member_signer(&pki, &MGMT.parse().unwrap());
    std::fs::write(
        dir.path().join("mgmt-keys/sign.pem"),
        mgmt.cert().to_pem().unwrap(),
    )
    .unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        config_text().replace(
            "sqlite://data/registry.db",
            "postgres://ndxp:secret@db.example:5432/ndxp",
        ),
    )
    .unwrap();
    let out_dir: PathBuf = dir.path().join("b");
    let stdout = ok(&["backup", "--out", out_dir.to_str().unwrap()], &config);
    assert!(
        stdout.contains("pg_dump --format=custom --file=registry.pgdump 'postgres://ndxp:***@db.example:5432/ndxp'"),
        "{stdout}"
    );
    assert!(!stdout.contains("secret"));
    let manifest = backup::check(&out_dir).unwrap();
    assert!(manifest
        .entries
        .iter()
        .any(|e| e.kind == EntryKind::Postgres && e.file.is_none()));
    assert!(!std::fs::read_to_string(out_dir.join("backup.json"))
        .unwrap()
        .contains("secret"));
}
