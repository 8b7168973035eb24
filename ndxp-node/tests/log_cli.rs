//! `ndxp-node log archive` and `ndxp-node log verify` as an operator runs
//! them: a log with signed records and batch timestamps, the archive,
//! verification with and without `--ca`, tampering, bad arguments and a
//! corrupt database.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::sync::Arc;

use chrono::{Duration, Utc};
use ndxp_audit::log::{LogOptions, MessageLog, SqlMessageLog};
use ndxp_audit::timestamp::{self, TimestampOptions};
use ndxp_sign::profile;
use ndxp_test_support::audit::{signed_exchange as exchange, LocalTsa};
use ndxp_test_support::pki;
use ndxp_test_support::tool::assert_says;
use support::Fixture;

fn node(args: &[&str]) -> (i32, String, String) {
    ndxp_test_support::tool::run_binary(env!("CARGO_BIN_EXE_ndxp-node"), args)
}

/// `ndxp-node log archive` with `config` of the period `[from, to]` to
/// `out`, then `extra`.
fn log_archive(
    config: &Path,
    [from, to]: [&str; 2],
    out: &Path,
    extra: &[&str],
) -> (i32, String, String) {
    let mut args = vec!["log", "archive", "--config", config.to_str().unwrap()];
    args.extend(["--from", from, "--to", to, "--out", out.to_str().unwrap()]);
    args.extend_from_slice(extra);
    node(&args)
}

/// `ndxp-node log verify archive`, with `--ca ca` when given.
fn log_verify(archive: &Path, ca: Option<&Path>) -> (i32, String, String) {
    let mut args = vec!["log", "verify", archive.to_str().unwrap()];
    if let Some(ca) = ca {
        args.extend(["--ca", ca.to_str().unwrap()]);
    }
    node(&args)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_then_verify_and_tampering() {
    let f = Fixture::new();
    let config = f.write_config("http://127.0.0.1:1", "");
    let cfg = ndxp_node::config::load(&config).unwrap();
    // The default log is next to the configuration file.
    assert_eq!(
        cfg.log.url,
        format!("sqlite://{}", f.node_dir().join("log.db").display())
    );
    let s = pki::member_signer(&f.pki, &support::MEMBER.parse().unwrap());
    let signer = profile::Signer::new(s.key, s.chain[0].clone(), s.chain[1..].to_vec()).unwrap();

    let t0 = Utc::now() - Duration::seconds(1);
    let log = SqlMessageLog::open(&cfg.log.url, "node-g22/1", &LogOptions::default())
        .await
        .unwrap();
    for i in 0..5 {
        log.append(exchange(&signer, i)).await.unwrap();
    }
    let tsa = LocalTsa::new(&f.pki);
    let trust = LocalTsa::trust(&f.pki);
    timestamp::stamp_pending(log.pool(), &tsa, &TimestampOptions::new(trust))
        .await
        .unwrap();
    for i in 5..7 {
        log.append(exchange(&signer, i)).await.unwrap();
    }
    log.close().await;
    let t1 = Utc::now() + Duration::seconds(1);

    let dir = f.node_dir();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, pki::pem(f.pki.root_cert())).unwrap();
    let tsa_pem = dir.join("tsa.pem");
    std::fs::write(&tsa_pem, pki::pem(f.pki.tsa_cert())).unwrap();
    let out = dir.join("day.ndxplog");
    let (from, to) = (t0.to_rfc3339(), t1.to_rfc3339());
    let certs = [
        "--cert",
        ca.to_str().unwrap(),
        "--cert",
        tsa_pem.to_str().unwrap(),
    ];
    let (code, stdout, stderr) = log_archive(&config, [&from, &to], &out, &certs);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_says(
        &stdout,
        &[
            "7 records in 1 chains, 1 timestamp tokens",
            "the newest 2 records are not timestamped yet",
        ],
    );

    let (code, stdout, stderr) = log_verify(&out, Some(&ca));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("valid"), "{stdout}");
    assert_says(
        &stdout,
        &[
            "7 signatures and 1 timestamp tokens verified",
            "node-g22/1: records 1..=7, timestamped through 5, 2 unstamped",
        ],
    );
    // Without --ca: the archive's own CA, said so.
    let (code, stdout, _) = log_verify(&out, None);
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("archive's own CA"), "{stdout}");

    // A changed record: exit 1, the record and the reason named.
    let text = std::fs::read_to_string(&out).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    let changed = lines[3].replace("\"status\":200", "\"status\":500");
    lines[3] = &changed;
    let bad = dir.join("bad.ndxplog");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let (code, stdout, _) = log_verify(&bad, Some(&ca));
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("INVALID"), "{stdout}");
    assert_says(&stdout, &["record 3 of writer \"node-g22/1\" was changed"]);
    // A deleted record.
    let mut lines: Vec<&str> = text.lines().collect();
    lines.remove(2);
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let (code, stdout, _) = log_verify(&bad, None);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("were deleted after record 1"), "{stdout}");
    // Another CA: bad signature.
    let other = pki::init_named_pki(&dir.join("other"), "Other", "http://127.0.0.1:1/");
    let other_pem = dir.join("other.pem");
    std::fs::write(&other_pem, pki::pem(other.root_cert())).unwrap();
    let (code, stdout, _) = log_verify(&out, Some(&other_pem));
    assert_eq!(code, 1, "{stdout}");
    assert_says(
        &stdout,
        &["record 1 of writer \"node-g22/1\": bad signature"],
    );

    // Bad arguments: 64.
    let missing = dir.join("missing.ndxplog");
    assert_eq!(log_verify(&missing, None).0, 64);
    assert_eq!(log_verify(&out, Some(&missing)).0, 64);
    assert_eq!(node(&["log", "verify"]).0, 64);
    let (code, _, stderr) = log_archive(&config, ["yesterday", &to], &out, &[]);
    assert_eq!(code, 64, "{stderr}");
}

#[test]
fn a_corrupt_or_missing_log_database_is_named() {
    let f = Fixture::new();
    let config = f.write_config("http://127.0.0.1:1", "");
    let garbage = f.node_dir().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    // Private, as a log must be, so that the content is what fails.
    std::fs::set_permissions(
        &garbage,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("\n[log]\nurl = \"sqlite://garbage.db\"\n");
    std::fs::write(&config, &text).unwrap();
    let out = f.node_dir().join("x.ndxplog");
    let args = |c: &str| {
        vec![
            "log".to_string(),
            "archive".into(),
            "--config".into(),
            c.to_string(),
            "--from".into(),
            "2026-01-01T00:00:00Z".into(),
            "--to".into(),
            "2026-01-02T00:00:00Z".into(),
            "--out".into(),
            out.to_str().unwrap().to_string(),
        ]
    };
    let a = args(config.to_str().unwrap());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, _, stderr) = node(&a);
    assert_eq!(code, 1, "{stderr}");
    assert_says(&stderr, &["cannot open the message log database"]);
    assert!(stderr.contains("garbage.db"), "{stderr}");
    assert!(!out.exists());
    // A log file that does not exist is not created.
    std::fs::write(&config, text.replace("garbage.db", "none.db")).unwrap();
    let (code, _, stderr) = node(&a);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("there is no message log at"), "{stderr}");
    assert!(!f.node_dir().join("none.db").exists());
    // A bad [log] key is a configuration error (64).
    std::fs::write(&config, text.replace("url = ", "ulr = ")).unwrap();
    assert_eq!(node(&a).0, 64);
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// `ndxp-node backup` while records are being appended, then a restore
/// into a fresh directory: the log continues its chain from the snapshot,
/// its archive verifies, and the local configuration is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_writes_restores_a_log_that_verifies() {
    let f = Fixture::new();
    let config = f.write_config("http://127.0.0.1:1", "");
    let c = config.to_str().unwrap();
    let service = "VN/GOV/000.00.00.G22/QLHT/lookup/v1";
    for args in [
        vec![
            "subsystems",
            "add",
            "--config",
            c,
            "VN/GOV/000.00.00.G22/QLHT",
        ],
        vec![
            "services",
            "add",
            "--config",
            c,
            "--service",
            service,
            "--backend",
            "http://127.0.0.1:8400",
        ],
    ] {
        let (code, stdout, stderr) = node(&args);
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
    }
    let cfg = ndxp_node::config::load(&config).unwrap();
    let s = pki::member_signer(&f.pki, &support::MEMBER.parse().unwrap());
    let signer =
        Arc::new(profile::Signer::new(s.key, s.chain[0].clone(), s.chain[1..].to_vec()).unwrap());
    let t0 = Utc::now() - Duration::seconds(1);
    let log = Arc::new(
        SqlMessageLog::open(&cfg.log.url, "node-g22/1", &LogOptions::default())
            .await
            .unwrap(),
    );
    for i in 0..5 {
        log.append(exchange(&signer, i)).await.unwrap();
    }
    let writing = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (log, signer, writing) = (log.clone(), signer.clone(), writing.clone());
        tokio::spawn(async move {
            let mut n = 100;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                log.append(exchange(&signer, n)).await.unwrap();
                n += 1;
            }
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let out_dir = f.node_dir().join("backup");
    let (code, stdout, stderr) = {
        let (c, o) = (c.to_string(), out_dir.to_str().unwrap().to_string());
        tokio::task::spawn_blocking(move || node(&["backup", "--config", &c, "--out", &o]))
            .await
            .unwrap()
    };
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let live_head = *log.head_watch().borrow();
    Arc::try_unwrap(log).unwrap().close().await;
    assert_eq!(code, 0, "{stdout}{stderr}");
    for line in [
        "saved    log.db",
        "saved    local.json",
        "saved    node.toml",
        "[report.state_file]: not created yet",
        "keys [node.keys_dir]: not copied, keep it safe separately",
        "anchor.json [conf.anchor]: not copied",
    ] {
        assert!(stdout.contains(line), "{line:?} not in\n{stdout}");
    }
    ndxp_audit::backup::check(&out_dir).unwrap();

    // Restore into a fresh directory: the backup, plus the keys and the
    // anchor from where the operator keeps them.
    let fresh = f.node_dir().parent().unwrap().join("restored");
    copy_dir(&out_dir, &fresh);
    std::fs::remove_file(fresh.join("backup.json")).unwrap();
    std::fs::copy(f.node_dir().join("anchor.json"), fresh.join("anchor.json")).unwrap();
    copy_dir(&f.keys_dir, &fresh.join("keys"));
    let fresh_config = fresh.join("node.toml");
    let fc = fresh_config.to_str().unwrap();
    let (code, stdout, _) = node(&["services", "list", "--config", fc]);
    assert_eq!(code, 0);
    assert!(stdout.contains(service), "{stdout}");

    // The restored log opens as `serve` opens it and continues the chain.
    let restored_cfg = ndxp_node::config::load(&fresh_config).unwrap();
    assert!(restored_cfg.log.url.contains("restored"));
    let restored = SqlMessageLog::open(&restored_cfg.log.url, "node-g22/1", &LogOptions::default())
        .await
        .unwrap();
    let head = *restored.head_watch().borrow();
    assert!(
        head.seq >= 5 && head.seq <= live_head.seq,
        "{head:?} vs {live_head:?}"
    );
    restored.append(exchange(&signer, 999)).await.unwrap();
    restored.close().await;
    // The snapshot is a prefix of the live chain: same hash at its head.
    let live = SqlMessageLog::open(&cfg.log.url, "node-g22/2", &LogOptions::default())
        .await
        .unwrap();
    let part = ndxp_audit::archive::export(&live, "node-g22/1", 1, head.seq)
        .await
        .unwrap();
    let report = ndxp_audit::archive::inspect(part.bytes()).unwrap();
    assert_eq!(report.chains[0].last_hash, head.hash);
    live.close().await;

    let ca = fresh.join("ca.pem");
    std::fs::write(&ca, pki::pem(f.pki.root_cert())).unwrap();
    let archive = fresh.join("all.ndxplog");
    let (from, to) = (
        t0.to_rfc3339(),
        (Utc::now() + Duration::seconds(1)).to_rfc3339(),
    );
    let (code, stdout, stderr) = node(&[
        "log",
        "archive",
        "--config",
        fc,
        "--from",
        &from,
        "--to",
        &to,
        "--out",
        archive.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, _) = log_verify(&archive, Some(&ca));
    assert_eq!(code, 0, "{stdout}");
    let n = head.seq + 1;
    assert!(
        stdout.contains(&format!("node-g22/1: records 1..={n}")),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("{n} signatures")), "{stdout}");
}
