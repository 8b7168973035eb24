#![allow(clippy::unwrap_used)]
//! Archives: export from the log, verify, and detect every tampering.

mod support;

use std::sync::OnceLock;

use ndxp_audit::archive::{self, ArchiveError, VerifyOptions};
use ndxp_audit::log::{ChainHash, LogRecord, MessageLog};
use ndxp_test_support::db::backends;
use ndxp_test_support::pki;
use proptest::prelude::*;
use support::tamper::{apply, join, lines, tamper};
use support::{exchange, fixture, new_log};

fn chain(n: u32) -> Vec<LogRecord> {
    let mut prev = ChainHash::GENESIS;
    (1..=n)
        .map(|i| {
            let r = LogRecord::new(u64::from(i), "node-a/1".into(), prev, exchange(i)).unwrap();
            prev = r.hash;
            r
        })
        .collect()
}

fn sample() -> &'static Vec<u8> {
    static A: OnceLock<Vec<u8>> = OnceLock::new();
    A.get_or_init(|| archive::encode("node-a/1", &chain(6)).unwrap().into_bytes())
}

fn anchors() -> VerifyOptions {
    VerifyOptions {
        anchors: Some(vec![fixture().root.clone()]),
    }
}

#[tokio::test]
async fn export_round_trip_verifies_on_every_backend() {
    for backend in backends() {
        let (dir, db, log) = new_log(backend, "node-a/1").await;
        let mut records = Vec::new();
        for i in 0..5 {
            records.push(log.append(exchange(i)).await.unwrap());
        }
        let whole = archive::export(&log, "node-a/1", 1, u64::MAX)
            .await
            .unwrap();
        let path = dir.path().join("a.ndxplog");
        whole.write_to(&path).unwrap();
        let report = archive::verify_archive_file(&path, &anchors()).unwrap();
        let c = &report.chains[0];
        assert_eq!(report.chains.len(), 1);
        assert_eq!(c.writer, "node-a/1");
        assert_eq!((c.first_seq, c.count), (1, 5));
        assert_eq!(c.prev_hash, ChainHash::GENESIS);
        assert_eq!(c.last_hash, records[4].hash);
        assert_eq!((c.stamped_through, c.unstamped), (None, 5));
        assert_eq!(report.signatures_verified, 5);
        assert!(!report.anchors_from_archive);
        assert_eq!(report.certificates, 1 + fixture().signer.chain().len());
        // A middle range hangs from its first record's prev_hash.
        let part = archive::export(&log, "node-a/1", 2, 3).await.unwrap();
        let report = archive::verify_archive(part.bytes(), &VerifyOptions::default()).unwrap();
        let c = &report.chains[0];
        assert_eq!((c.first_seq, c.count), (2, 2));
        assert_eq!(c.prev_hash, records[0].hash);
        assert_eq!(c.last_hash, records[2].hash);
        // The records carry no self-signed certificate: no anchor, no
        // signature checked.
        assert_eq!(report.signatures_verified, 0);
        log.close().await;
        db.drop_now().await;
    }
}

#[test]
fn untrusted_signer_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let other = pki::init_named_pki(&dir.path().join("o"), "Other Root", "http://127.0.0.1:1/");
    let opts = VerifyOptions {
        anchors: Some(vec![other.root_cert().clone()]),
    };
    let err = archive::verify_archive(sample(), &opts).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::Signature {
                seq: 1,
                message: "request",
                ..
            }
        ),
        "{err:?}"
    );
}

fn verify(bytes: &[u8]) -> Result<archive::ArchiveReport, ArchiveError> {
    archive::verify_archive(bytes, &VerifyOptions::default())
}

#[test]
fn named_tamperings() {
    let l = lines(sample());
    // Records are lines 1..=6 (seq 1..=6).
    let mut del = l.clone();
    del.remove(3);
    assert!(matches!(
        verify(&join(&del)),
        Err(ArchiveError::Deleted { after_seq: 2, .. })
    ));
    let mut del_last = l.clone();
    del_last.remove(6);
    assert!(matches!(
        verify(&join(&del_last)),
        Err(ArchiveError::Deleted { after_seq: 5, .. })
    ));
    let mut swap = l.clone();
    swap.swap(2, 4);
    assert!(matches!(
        verify(&join(&swap)),
        Err(ArchiveError::Reordered { seq: 4, .. })
    ));
    let mut dup = l.clone();
    dup.insert(3, l[2].clone());
    assert!(matches!(
        verify(&join(&dup)),
        Err(ArchiveError::Inserted { seq: 2, .. })
    ));
    let mut changed = l.clone();
    let text = String::from_utf8(changed[4].clone()).unwrap();
    changed[4] = text
        .replace("\"status\":200", "\"status\":500")
        .into_bytes();
    assert!(matches!(
        verify(&join(&changed)),
        Err(ArchiveError::Changed { seq: 4, .. })
    ));
    // A replaced record with a recomputed hash breaks the next link.
    let records = chain(3);
    let mut forged = records.clone();
    forged[1].exchange.status = 500;
    forged[1].hash = forged[1].compute_hash().unwrap();
    let mut fl = lines(&archive::encode("node-a/1", &records).unwrap().into_bytes());
    fl[2] = forged[1].to_canonical().unwrap();
    assert!(matches!(
        verify(&join(&fl)),
        Err(ArchiveError::BrokenLink { seq: 3, .. })
    ));
    let trunc = &sample()[..sample().len() - 10];
    assert!(matches!(verify(trunc), Err(ArchiveError::Truncated(_))));
    let mut no_end = l.clone();
    no_end.pop();
    assert!(matches!(
        verify(&join(&no_end)),
        Err(ArchiveError::Truncated(_))
    ));
    assert!(matches!(verify(b""), Err(ArchiveError::Truncated(_))));
    assert!(matches!(
        verify(b"garbage\n"),
        Err(ArchiveError::Malformed { .. })
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_tampering_is_detected(t in tamper()) {
        if let Some(bad) = apply(&t, sample()) {
            prop_assert_ne!(&bad, sample());
            let result = verify(&bad);
            prop_assert!(result.is_err(), "undetected: {:?}", t);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = verify(&bytes);
    }
}

#[test]
fn a_missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = archive::verify_archive_file(&dir.path().join("none"), &VerifyOptions::default())
        .unwrap_err();
    assert!(matches!(err, ArchiveError::Io { .. }), "{err:?}");
}

/// `exchange(i)` as the central gateway logs a call of a service without
/// the DigiSign adapter: nothing signed, so the messages' metadata is empty.
fn unsigned(i: u32, role: ndxp_audit::log::Role) -> ndxp_audit::log::Exchange {
    let mut e = exchange(i);
    e.role = role;
    for m in std::iter::once(&mut e.request).chain(e.response.as_mut()) {
        *m = ndxp_audit::log::SignedMeta::default();
    }
    e
}

fn unsigned_chain(role: ndxp_audit::log::Role) -> Result<Vec<u8>, ArchiveError> {
    let mut prev = ChainHash::GENESIS;
    let records: Vec<LogRecord> = (1..=3)
        .map(|i| {
            let r =
                LogRecord::new(u64::from(i), "gateway/1".into(), prev, unsigned(i, role)).unwrap();
            prev = r.hash;
            r
        })
        .collect();
    archive::encode("gateway/1", &records).map(archive::Archive::into_bytes)
}

#[test]
fn unsigned_gateway_records_archive_and_verify_but_not_unsigned_node_records() {
    use ndxp_audit::log::Role;
    let report = verify(&unsigned_chain(Role::Gateway).unwrap()).unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.signatures_verified, 0);
    // A node's records are always signed: emptied metadata stays an error.
    let err = unsigned_chain(Role::Provider).unwrap_err();
    assert!(err.to_string().contains("certificate"), "{err:?}");
}
