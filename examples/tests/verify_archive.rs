//! `verify-archive` on a real message-log archive built with ndxp-audit's
//! API (signed records, an RFC 3161 batch timestamp), and on tampered
//! copies of it, which it refuses naming the bad record.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use chrono::Utc;
use ndxp_audit::archive;
use ndxp_audit::log::{LogOptions, MessageLog, SqlMessageLog};
use ndxp_audit::timestamp::{self, TimestampOptions};
use ndxp_sign::profile;
use ndxp_test_support::audit::{signed_exchange as exchange, LocalTsa};
use ndxp_test_support::pki::{init_named_pki, init_pki, member_signer, pem};

const WRITER: &str = "node-g22/1";

/// A log of 6 signed records, the first 4 timestamped, archived to
/// `archive.ndxplog`; the CA as `ca.pem` and another CA as `other.pem`.
async fn fixture(dir: &Path) -> PathBuf {
    let pki = init_pki(&dir.join("pki"), "http://127.0.0.1:1/ocsp");
    let s = member_signer(&pki, &"VN/GOV/000.00.00.G22".parse().unwrap());
    let signer = profile::Signer::new(s.key, s.chain[0].clone(), s.chain[1..].to_vec()).unwrap();
    let url = format!("sqlite://{}", dir.join("log.db").display());
    let log = SqlMessageLog::open(&url, WRITER, &LogOptions::default())
        .await
        .unwrap();
    for i in 0..4 {
        log.append(exchange(&signer, i)).await.unwrap();
    }
    let tsa = LocalTsa::new(&pki);
    let trust = LocalTsa::trust(&pki);
    timestamp::stamp_pending(log.pool(), &tsa, &TimestampOptions::new(trust))
        .await
        .unwrap();
    for i in 4..6 {
        log.append(exchange(&signer, i)).await.unwrap();
    }
    let certs = vec![
        pki.root_cert().to_der().unwrap(),
        pki.tsa_cert().to_der().unwrap(),
    ];
    let a = archive::export_range(
        &log,
        &archive::ExportRequest {
            range: archive::Range::Time {
                from: Utc::now() - chrono::Duration::hours(1),
                to: Utc::now() + chrono::Duration::hours(1),
            },
            certificates: certs,
        },
        None,
    )
    .await
    .unwrap();
    log.close().await;
    let path = dir.join("archive.ndxplog");
    a.write_to(&path).unwrap();
    std::fs::write(dir.join("ca.pem"), pem(pki.root_cert())).unwrap();
    let other = init_named_pki(&dir.join("other"), "Other Root", "http://127.0.0.1:1/ocsp");
    std::fs::write(dir.join("other.pem"), pem(other.root_cert())).unwrap();
    path
}

fn verify(archive: &Path, ca: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_verify-archive"))
        .arg("--archive")
        .arg(archive)
        .arg("--ca")
        .arg(ca)
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The archive's lines with `edit` applied, written to `name`.
fn tampered(archive: &Path, name: &str, edit: impl FnOnce(&mut Vec<String>)) -> PathBuf {
    let text = std::fs::read_to_string(archive).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    edit(&mut lines);
    let path = archive.with_file_name(name);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[tokio::test]
async fn a_real_archive_verifies_and_tampering_names_the_record() {
    let dir = tempfile::tempdir().unwrap();
    let archive = fixture(dir.path()).await;
    let ca = dir.path().join("ca.pem");

    let (code, stdout, stderr) = verify(&archive, &ca);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.starts_with(
            "VALID: 6 records in 1 chain(s); 6 signatures and 1 time-stamp tokens verified against"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("node-g22/1: records 1..=6, timestamped through 4 at 20"),
        "{stdout}"
    );
    assert!(stdout.contains("2 newer not yet timestamped"), "{stdout}");

    // Records are lines 2.. (line 1 is the header). A changed status.
    let changed = tampered(&archive, "changed.ndxplog", |l| {
        l[3] = l[3].replace("\"status\":200", "\"status\":500");
    });
    let (code, stdout, stderr) = verify(&changed, &ca);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stderr.contains("INVALID: record 3 of writer \"node-g22/1\" was changed"),
        "{stderr}"
    );
    // A deleted record.
    let deleted = tampered(&archive, "deleted.ndxplog", |l| {
        l.remove(2);
    });
    let (code, _, stderr) = verify(&deleted, &ca);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("records of writer \"node-g22/1\" were deleted after record 1"),
        "{stderr}"
    );
    // Two records swapped.
    let swapped = tampered(&archive, "swapped.ndxplog", |l| l.swap(2, 3));
    let (code, _, stderr) = verify(&swapped, &ca);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("writer \"node-g22/1\""), "{stderr}");

    // Signed under another CA: the first record's signature is refused.
    let (code, _, stderr) = verify(&archive, &dir.path().join("other.pem"));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("record 1 of writer \"node-g22/1\": bad signature"),
        "{stderr}"
    );

    // Files that cannot be read: 2, and the file named.
    let (code, _, stderr) = verify(&dir.path().join("missing.ndxplog"), &ca);
    assert_eq!(code, 2);
    assert!(stderr.contains("missing.ndxplog"), "{stderr}");
    let (code, _, stderr) = verify(&archive, &archive);
    assert_eq!(code, 2, "{stderr}");
}
