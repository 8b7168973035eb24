#![allow(clippy::unwrap_used)]
//! Archives of a live log: several chains, batch time-stamp tokens that the
//! stock `openssl ts -verify` accepts, CA and TSA certificates, time-range
//! export, archive-then-purge, and every tampering detected (bad signature
//! and bad timestamp included).

mod support;

use std::cell::RefCell;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::Utc;
use ndxp_audit::archive::{self, ArchiveError, Contents, ExportRequest, Range, VerifyOptions};
use ndxp_audit::log::{ChainHash, LogRecord, MessageLog, SqlMessageLog};
use ndxp_audit::timestamp::{self, HttpTsa, TimestampOptions};
use ndxp_test_support::db::{backends, TestDatabase};
use ndxp_test_support::{pki, tool::run_tool};
use proptest::prelude::*;
use support::tamper::{apply, join, lines, tamper};
use support::{exchange, fixture, new_log, open_log, sqlite_url, start_tsa, tsa_trust, TestTsa};

fn extra_certs() -> Vec<Vec<u8>> {
    let f = fixture();
    let mut out = vec![f.pki.tsa_cert().to_der().unwrap(), f.root.to_der().unwrap()];
    out.extend(f.pki.chain().iter().map(|c| c.to_der().unwrap()));
    out
}

fn anchors() -> VerifyOptions {
    VerifyOptions {
        anchors: Some(vec![fixture().root.clone()]),
    }
}

async fn stamp(log: &SqlMessageLog, tsa: &TestTsa) {
    let transport = HttpTsa::new(&tsa.url, Duration::from_secs(5)).unwrap();
    timestamp::stamp_pending(log.pool(), &transport, &TimestampOptions::new(tsa_trust()))
        .await
        .unwrap();
}

/// Two chains (a process restarted with a new writer id): node-a/1 has 10
/// records stamped after 6 and 10, node-a/2 has 3 records, stamped.
async fn populate(url: &str, tsa: &TestTsa) -> (Vec<LogRecord>, Vec<LogRecord>) {
    let log = open_log(url, "node-a/1").await;
    let mut one = Vec::new();
    for i in 0..6 {
        one.push(log.append(exchange(i)).await.unwrap());
    }
    stamp(&log, tsa).await;
    for i in 6..10 {
        one.push(log.append(exchange(i)).await.unwrap());
    }
    stamp(&log, tsa).await;
    log.close().await;
    let log = open_log(url, "node-a/2").await;
    let mut two = Vec::new();
    for i in 0..3 {
        two.push(log.append(exchange(100 + i)).await.unwrap());
    }
    stamp(&log, tsa).await;
    log.close().await;
    (one, two)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_range_archive_with_tokens_verifies_on_every_backend() {
    let tsa = start_tsa().await;
    for backend in backends() {
        let dir = tempfile::tempdir().unwrap();
        let db = TestDatabase::create(backend, dir.path()).await;
        let start = Utc::now() - chrono::Duration::seconds(1);
        let (one, two) = populate(&db.url, &tsa).await;
        let end = Utc::now() + chrono::Duration::seconds(1);
        let log = open_log(&db.url, "reader").await;
        let calls = RefCell::new(Vec::new());
        let progress = |done: u64, total: u64| calls.borrow_mut().push((done, total));
        let a = archive::export_range(
            &log,
            &ExportRequest {
                range: Range::Time {
                    from: start,
                    to: end,
                },
                certificates: extra_certs(),
            },
            Some(&progress),
        )
        .await
        .unwrap();
        assert_eq!(calls.borrow().last(), Some(&(13, 13)));

        let report = archive::verify_archive(a.bytes(), &anchors()).unwrap();
        assert_eq!(report.records, 13);
        assert_eq!(report.chains.len(), 2);
        assert_eq!(report.chains[0].writer, "node-a/1");
        assert_eq!(report.chains[0].last_hash, one[9].hash);
        assert_eq!(report.chains[1].last_hash, two[2].hash);
        assert_eq!(report.chains[0].stamped_through, Some(10));
        assert_eq!(report.chains[1].unstamped, 0);
        assert_eq!(report.timestamps.len(), 3);
        assert_eq!(report.timestamps_verified, 3);
        assert_eq!(report.signatures_verified, 13);
        let t = &report.timestamps[0];
        assert_eq!((t.first_seq, t.last_seq, t.hash), (1, 6, one[5].hash));

        // Without anchors of one's own, the archive's self-signed CA is used.
        let seen = RefCell::new(0);
        let own = archive::verify_archive_with(
            a.bytes(),
            &VerifyOptions::default(),
            Some(&|d, _| *seen.borrow_mut() = d),
        )
        .unwrap();
        assert!(own.anchors_from_archive);
        assert_eq!((own.signatures_verified, own.timestamps_verified), (13, 3));
        assert_eq!(*seen.borrow(), 13);

        // A narrower window: only the records received in it, extended to
        // the end of the timestamp batch that covers them.
        let from = one[2].exchange.received_at;
        let to = one[3].exchange.received_at + chrono::Duration::nanoseconds(1);
        let part = archive::export_range(
            &log,
            &ExportRequest {
                range: Range::Time { from, to },
                certificates: extra_certs(),
            },
            None,
        )
        .await
        .unwrap();
        let r = archive::verify_archive(part.bytes(), &anchors()).unwrap();
        assert_eq!(r.chains.len(), 1);
        assert_eq!((r.chains[0].first_seq, r.chains[0].count), (3, 4));
        assert_eq!(r.chains[0].prev_hash, one[1].hash);
        assert_eq!(r.timestamps_verified, 1);
        log.close().await;
        db.drop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_in_an_archive_pass_openssl_ts_verify() {
    let tsa = start_tsa().await;
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    populate(&url, &tsa).await;
    let log = open_log(&url, "reader").await;
    let a = archive::export_range(
        &log,
        &ExportRequest {
            range: Range::Seq {
                writer: "node-a/1".into(),
                from: 1,
                to: u64::MAX,
            },
            certificates: extra_certs(),
        },
        None,
    )
    .await
    .unwrap();
    log.close().await;
    let path = dir.path().join("node.ndxplog");
    a.write_to(&path).unwrap();
    let report = archive::verify_archive_file(&path, &anchors()).unwrap();
    assert_eq!(report.timestamps.len(), 2);
    let f = fixture();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, pki::pem(&f.root)).unwrap();
    let untrusted = dir.path().join("tsa.pem");
    let mut pem = pki::pem(f.pki.tsa_cert());
    for c in f.pki.chain() {
        pem.push_str(&pki::pem(c));
    }
    std::fs::write(&untrusted, pem).unwrap();
    for (i, t) in report.timestamps.iter().enumerate() {
        let token = dir.path().join(format!("token{i}.der"));
        std::fs::write(&token, &t.token_der).unwrap();
        let digest = t.hash.to_hex();
        let args = [
            "ts",
            "-verify",
            "-digest",
            &digest,
            "-in",
            token.to_str().unwrap(),
            "-token_in",
            "-CAfile",
            ca.to_str().unwrap(),
            "-untrusted",
            untrusted.to_str().unwrap(),
        ];
        let (ok, out) = run_tool("openssl", &args);
        assert!(ok, "openssl ts -verify failed: {out}");
        assert!(out.contains("Verification: OK"), "{out}");
        // And the stock tool refuses the token for another record's hash.
        let other = ChainHash([7; 32]).to_hex();
        let mut bad_args = args;
        bad_args[3] = &other;
        let (ok, _) = run_tool("openssl", &bad_args);
        assert!(!ok, "openssl accepted a token for the wrong digest");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archive_purge_and_a_later_archive_verifies_from_the_checkpoint() {
    let tsa = start_tsa().await;
    for backend in backends() {
        let (_dir, db, log) = new_log(backend, "node-a/1").await;
        for i in 0..8 {
            log.append(exchange(i)).await.unwrap();
        }
        stamp(&log, &tsa).await;
        let seq = |from, to| ExportRequest {
            range: Range::Seq {
                writer: "node-a/1".into(),
                from,
                to,
            },
            certificates: extra_certs(),
        };
        let first = archive::export_range(&log, &seq(1, 8), None).await.unwrap();
        let r1 = archive::verify_archive(first.bytes(), &anchors()).unwrap();
        assert_eq!(r1.chains[0].stamped_through, Some(8));
        // Purge what was archived but the head; the chain goes on.
        let cp = log.purge_before("node-a/1", 8).await.unwrap();
        assert_eq!(cp.seq, 7);
        for i in 8..12 {
            log.append(exchange(i)).await.unwrap();
        }
        stamp(&log, &tsa).await;
        let second = archive::export_range(&log, &seq(8, u64::MAX), None)
            .await
            .unwrap();
        let r2 = archive::verify_archive(second.bytes(), &anchors()).unwrap();
        assert_eq!((r2.chains[0].first_seq, r2.chains[0].count), (8, 5));
        // The later archive hangs from the checkpoint, which the earlier
        // archive proves.
        assert_eq!(r2.chains[0].prev_hash, cp.hash);
        assert_eq!(log.checkpoint("node-a/1").await.unwrap(), cp);
        assert_eq!(r2.chains[0].stamped_through, Some(12));
        // Asking for purged records yields what is left.
        let rest = archive::export_range(&log, &seq(1, u64::MAX), None)
            .await
            .unwrap();
        assert_eq!(
            archive::verify_archive(rest.bytes(), &anchors())
                .unwrap()
                .chains[0]
                .first_seq,
            8
        );
        log.close().await;
        db.drop_now().await;
    }
}

/// An archive of 2 chains with tokens and certificates, made once.
fn sample() -> &'static Vec<u8> {
    static A: OnceLock<Vec<u8>> = OnceLock::new();
    A.get_or_init(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let tsa = start_tsa().await;
            let dir = tempfile::tempdir().unwrap();
            let url = sqlite_url(dir.path());
            let start = Utc::now() - chrono::Duration::seconds(1);
            populate(&url, &tsa).await;
            let log = open_log(&url, "reader").await;
            let a = archive::export_range(
                &log,
                &ExportRequest {
                    range: Range::Time {
                        from: start,
                        to: Utc::now() + chrono::Duration::seconds(1),
                    },
                    certificates: extra_certs(),
                },
                None,
            )
            .await
            .unwrap();
            log.close().await;
            a.into_bytes()
        })
    })
}

fn records_of(bytes: &[u8]) -> Vec<LogRecord> {
    let l = lines(bytes);
    l[1..l.len() - 3]
        .iter()
        .map(|x| serde_json::from_slice(x).unwrap())
        .collect()
}

/// The archive with the timestamps line's tokens rewritten by `f`.
fn with_tokens(f: impl FnOnce(&mut Vec<String>)) -> Vec<u8> {
    let mut l = lines(sample());
    let n = l.len();
    let text = String::from_utf8(l[n - 3].clone()).unwrap();
    let mut parts: Vec<String> = text.split("\"token\":\"").map(str::to_string).collect();
    // parts[i] for i >= 1 starts with token i-1, up to its closing quote.
    let mut tokens: Vec<String> = parts[1..]
        .iter()
        .map(|p| p.split('"').next().unwrap().to_string())
        .collect();
    f(&mut tokens);
    for (i, t) in tokens.iter().enumerate() {
        let p = &mut parts[i + 1];
        let rest = p[p.find('"').unwrap()..].to_string();
        *p = format!("{t}{rest}");
        // The entry's token_sha256 (in the part before) follows the token,
        // as a forger would make it.
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD.decode(t).unwrap();
        let sha = ChainHash(ndxp_sign::openssl::sha::sha256(&der)).to_hex();
        let before = &mut parts[i];
        let at = before.rfind("\"token_sha256\":\"").unwrap() + "\"token_sha256\":\"".len();
        before.replace_range(at..at + 64, &sha);
    }
    let out = parts.join("\"token\":\"");
    l[n - 3] = out.into_bytes();
    join(&l)
}

#[test]
fn a_swapped_token_is_a_bad_timestamp() {
    let bad = with_tokens(|t| t.swap(0, 1));
    let err = archive::verify_archive(&bad, &anchors()).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::Timestamp { seq: 6, writer, .. } if writer == "node-a/1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad timestamp"), "{err}");
}

#[test]
fn a_token_of_an_untrusted_tsa_is_a_bad_timestamp() {
    use base64::Engine as _;
    use ndxp_sign::tsa::{self, ImprintAlgorithm, TimestampAuthority, TimestampRequest, TsaTrust};
    let dir = tempfile::tempdir().unwrap();
    let other = pki::init_named_pki(&dir.path().join("o"), "Other Root", "http://127.0.0.1:1/");
    let authority = TimestampAuthority::new(other.tsa_cert(), other.tsa_key())
        .unwrap()
        .with_chain(other.chain().to_vec());
    let hash = records_of(sample())[5].hash;
    let req = TimestampRequest::new(ImprintAlgorithm::Sha256, &hash.0, true, true).unwrap();
    let reply = authority.respond(req.der());
    let trust =
        TsaTrust::new(vec![other.root_cert().clone()]).with_untrusted(other.chain().to_vec());
    let token = tsa::verify_response(&reply.der, &req, &trust).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&token.der);
    let bad = with_tokens(|t| t[0] = b64);
    let err = archive::verify_archive(&bad, &anchors()).unwrap_err();
    assert!(
        matches!(err, ArchiveError::Timestamp { seq: 6, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("did not verify"), "{err}");
}

#[test]
fn a_forged_signature_is_reported_even_with_a_recomputed_chain() {
    let mut records = records_of(sample());
    records.truncate(10); // node-a/1 only
                          // Replace record 3's signature and recompute every hash and link after
                          // it: the chain is consistent, the signature is not.
    records[2].exchange.request.signature = "ndxp=:AAAA:".into();
    let mut prev = records[1].hash;
    for r in records.iter_mut().skip(2) {
        r.prev_hash = prev;
        r.hash = r.compute_hash().unwrap();
        prev = r.hash;
    }
    let forged = archive::encode_contents(&Contents {
        chains: vec![records],
        timestamps: vec![],
        certificates: extra_certs(),
    })
    .unwrap();
    let err = archive::verify_archive(forged.bytes(), &anchors()).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::Signature {
                seq: 3,
                message: "request",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad signature"), "{err}");
}

#[test]
fn a_record_of_one_chain_moved_into_another_is_detected() {
    let mut l = lines(sample());
    // Lines 1..=10 are node-a/1, 11..=13 node-a/2: move one of node-a/1
    // after node-a/2's.
    let moved = l.remove(5);
    l.insert(12, moved);
    let err = archive::verify_archive(&join(&l), &anchors()).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::Reordered { .. } | ArchiveError::Deleted { .. }
        ),
        "{err:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn every_tampering_of_a_stamped_archive_is_detected(t in tamper()) {
        if let Some(bad) = apply(&t, sample()) {
            prop_assert_ne!(&bad, sample());
            prop_assert!(archive::verify_archive(&bad, &anchors()).is_err(), "undetected: {:?}", t);
            prop_assert!(archive::verify_archive(&bad, &VerifyOptions::default()).is_err(), "undetected without anchors: {:?}", t);
        }
    }
}

#[test]
fn the_sample_verifies() {
    let r = archive::verify_archive(sample(), &anchors()).unwrap();
    assert_eq!((r.records, r.timestamps_verified), (13, 3));
    // with_tokens without a change is the identity.
    assert_eq!(&with_tokens(|_| {}), sample());
}
