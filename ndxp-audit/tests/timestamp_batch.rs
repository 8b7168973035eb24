#![allow(clippy::unwrap_used)]
//! Batch RFC 3161 timestamping against a real TSA over HTTP: tokens stored
//! per chain head, lag while the TSA is down, recovery, batch-size trigger.

mod support;

use std::sync::Arc;
use std::time::Duration;

use ndxp_audit::log::MessageLog;
use ndxp_audit::timestamp::{self, HttpTsa, TimestampOptions, Timestamper};
use ndxp_sign::tsa::{self, ImprintAlgorithm};
use ndxp_test_support::db::backends;
use support::{exchange, new_log, sqlite_log, start_tsa, tsa_trust};

fn options(interval: Duration, batch: u64) -> TimestampOptions {
    let mut o = TimestampOptions::new(tsa_trust());
    o.interval = interval;
    o.batch_size = batch;
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tsa_down_lag_grows_then_recovers() {
    let server = start_tsa().await;
    for backend in backends() {
        let (_dir, db, log) = new_log(backend, "node-a/1").await;
        let transport = Arc::new(HttpTsa::new(&server.url, Duration::from_secs(5)).unwrap());
        // A long interval: the test drives the runs.
        let ts = Timestamper::spawn(&log, transport, options(Duration::from_secs(3600), 1_000));
        let max = Duration::from_secs(1);

        let mut records = Vec::new();
        for i in 0..5 {
            records.push(log.append(exchange(i)).await.unwrap());
        }
        let run = ts.run_now().await.unwrap();
        // The timestamper's own first run may have stamped some or all of
        // the records already, while they were appended: the tokens
        // together cover 1..=5 and the last one ends at the head; this run
        // stamped what was left, if anything.
        assert!(run.stamped.len() <= 1, "{:?}", run.stamped);
        // The stored token verifies for the head record's hash.
        let stored = timestamp::tokens(log.pool(), "node-a/1", 1, 100)
            .await
            .unwrap();
        assert_eq!(stored.first().map(|t| t.first_seq), Some(1));
        assert!(stored
            .windows(2)
            .all(|w| w[1].first_seq == w[0].last_seq + 1));
        let t = stored.last().unwrap();
        assert_eq!(t.last_seq, 5);
        assert_eq!(t.hash, records[4].hash);
        if let Some(ours) = run.stamped.first() {
            assert_eq!(ours, t);
        }
        tsa::verify_token(
            &stored[stored.len() - 1].token_der,
            ImprintAlgorithm::Sha256,
            &records[4].hash.0,
            &tsa_trust(),
        )
        .unwrap();
        assert_eq!(ts.lag().unstamped, 0);
        assert_eq!(ts.lag().seconds, 0.0);
        ts.check_lag(max).unwrap();
        // Every stored token is this timestamper's.
        assert_eq!(ts.lag().tokens, stored.len() as u64);
        let tokens_before = stored.len() as u64;

        // The TSA goes down: appends go on, the lag grows past the maximum.
        server.set_up(false);
        for i in 5..8 {
            log.append(exchange(i)).await.unwrap();
        }
        let err = ts.run_now().await.unwrap_err();
        assert!(err.to_string().contains("503"), "{err}");
        assert_eq!(ts.lag().unstamped, 3);
        tokio::time::sleep(Duration::from_millis(1300)).await;
        let lag = ts.lag();
        assert!(lag.seconds > 1.0, "{lag:?}");
        let refused = ts.check_lag(max).unwrap_err();
        assert_eq!(refused.unstamped, 3);
        let text = refused.to_string();
        assert!(
            text.contains("not being timestamped") && text.contains("503"),
            "{text}"
        );
        // Appending still works: the request path never waits for the TSA.
        let during = log.append(exchange(8)).await.unwrap();

        // The TSA comes back: the next run covers everything.
        server.set_up(true);
        let run = ts.run_now().await.unwrap();
        assert_eq!(run.stamped.len(), 1);
        assert_eq!((run.stamped[0].first_seq, run.stamped[0].last_seq), (6, 9));
        assert_eq!(run.stamped[0].hash, during.hash);
        ts.check_lag(max).unwrap();
        assert_eq!(ts.lag().unstamped, 0);
        assert_eq!(ts.lag().tokens, tokens_before + 1);
        assert_eq!(
            timestamp::covering(log.pool(), "node-a/1", 7)
                .await
                .unwrap()
                .unwrap()
                .last_seq,
            9
        );
        ts.shutdown().await;
        log.close().await;
        db.drop_now().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_batch_is_stamped_without_waiting_for_the_interval() {
    let server = start_tsa().await;
    let (_dir, _url, log) = sqlite_log("node-a/1").await;
    let transport = Arc::new(HttpTsa::new(&server.url, Duration::from_secs(5)).unwrap());
    let ts = Timestamper::spawn(&log, transport, options(Duration::from_secs(3600), 10));
    // The first tick runs at once (empty log); let it pass.
    tokio::time::sleep(Duration::from_millis(200)).await;
    for i in 0..10 {
        log.append(exchange(i)).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while ts.lag().tokens == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no token after a full batch"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stored = timestamp::tokens(log.pool(), "node-a/1", 1, 100)
        .await
        .unwrap();
    assert_eq!(stored.last().unwrap().last_seq, 10);
    ts.shutdown().await;
    log.close().await;
}

#[tokio::test]
async fn an_unreachable_tsa_is_named_in_the_error() {
    let (_dir, _url, log) = sqlite_log("w").await;
    log.append(exchange(1)).await.unwrap();
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let tsa_url = format!("http://{}/tsa", listener.local_addr().unwrap());
    drop(listener);
    let transport = HttpTsa::new(&tsa_url, Duration::from_secs(2)).unwrap();
    let err = timestamp::stamp_pending(log.pool(), &transport, &options(Duration::from_secs(1), 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains(&tsa_url), "{err}");
    assert!(timestamp::tokens(log.pool(), "w", 0, 10)
        .await
        .unwrap()
        .is_empty());
    log.close().await;
}
