#![allow(clippy::unwrap_used)]
//! A writer killed with SIGKILL mid-stream loses no acknowledged record and
//! leaves a chain that verifies; a second live process with the same writer
//! id cannot fork the chain.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use ndxp_audit::log::{ChainHash, Exchange, LogError, MessageLog, Role};
use support::{fake_exchange, open_log, sqlite_log, sqlite_url};

/// Set for the child process this test starts.
const CHILD_VAR: &str = "NDXP_AUDIT_CRASH_CHILD_DB";

fn exchange(n: u32) -> Exchange {
    fake_exchange(n, Role::Gateway)
}

/// The child: appends from 4 tasks forever, printing `ACK <seq>` after each
/// acknowledged append. Does nothing when not started by the parent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_child() {
    let Ok(url) = std::env::var(CHILD_VAR) else {
        return;
    };
    let log = Arc::new(open_log(&url, "crashy").await);
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..4u32 {
        let log = log.clone();
        tasks.spawn(async move {
            for i in 0.. {
                let r = log.append(exchange(t * 1_000_000 + i)).await.unwrap();
                let mut out = std::io::stdout().lock();
                writeln!(out, "ACK {}", r.seq).unwrap();
                out.flush().unwrap();
            }
        });
    }
    while tasks.join_next().await.is_some() {}
}

#[tokio::test]
async fn sigkill_loses_no_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_VAR, &url)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut acked = Vec::new();
    while acked.len() < 300 {
        let Some(line) = lines.next() else {
            panic!("the child stopped after {} acknowledgements", acked.len());
        };
        if let Some(seq) = line.unwrap().strip_prefix("ACK ") {
            acked.push(seq.parse::<u64>().unwrap());
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for line in lines {
        if let Some(seq) = line.unwrap().strip_prefix("ACK ") {
            acked.push(seq.parse::<u64>().unwrap());
        }
    }
    let log = open_log(&url, "crashy").await;
    let head = log.head("crashy").await.unwrap();
    let max = *acked.iter().max().unwrap();
    assert!(head.seq >= max, "head {} < acknowledged {max}", head.seq);
    let records = log.read("crashy", 1, head.seq).await.unwrap();
    assert_eq!(records.len() as u64, head.seq);
    let mut prev = ChainHash::GENESIS;
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
        assert_eq!(r.prev_hash, prev);
        prev = r.hash;
    }
    // And the chain goes on after the crash.
    assert_eq!(log.append(exchange(0)).await.unwrap().seq, head.seq + 1);
    log.close().await;
}

#[tokio::test]
async fn two_live_processes_with_one_writer_id_cannot_fork_the_chain() {
    let (_dir, url, a) = sqlite_log("same").await;
    let b = open_log(&url, "same").await;
    a.append(exchange(1)).await.unwrap();
    let err = b.append(exchange(2)).await.unwrap_err();
    assert!(matches!(err, LogError::Commit(_)), "{err:?}");
    let stored = a.read("same", 1, 10).await.unwrap();
    assert_eq!(stored.len(), 1);
    // The loser continued from the stored head: the chain stays linear.
    let next = b.append(exchange(3)).await.unwrap();
    assert_eq!((next.seq, next.prev_hash), (2, stored[0].hash));
    let stored = a.read("same", 1, 10).await.unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!(stored[1].prev_hash, stored[0].hash);
    a.close().await;
    b.close().await;
}
