//! What a running node writes (its message log with SQLite's `-wal` and
//! `-shm` files, the admin token, the last-good global configuration and
//! its directory, `local.json`) is readable by its owner only, and a
//! message log database that others can read stops the node with a
//! message naming the file and the `chmod` to run.
#![allow(clippy::unwrap_used)]

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ndxp_test_support::files::mode;

use support::net::{get, Network, Options, CITIZEN, CLIENT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_creates_its_files_for_its_owner_only_and_refuses_an_open_log() {
    let net = Network::start(Options::default()).await;
    // One exchange: both message logs are written.
    let answer = get(&net.url(CITIZEN, "/persons/001099012345"), Some(CLIENT)).await;
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    for node in [&net.provider, &net.consumer] {
        let dir = &node.dir;
        let log = node.log_path.display().to_string();
        for file in [
            log.clone(),
            format!("{log}-wal"),
            format!("{log}-shm"),
            dir.join("admin.token").display().to_string(),
            dir.join("local.json").display().to_string(),
            dir.join("state/conf/globalconf.jws").display().to_string(),
        ] {
            assert_eq!(mode(Path::new(&file)), 0o600, "{file}");
        }
        for created in [dir.join("state"), dir.join("state/conf")] {
            assert_eq!(mode(&created), 0o700, "{}", created.display());
        }
    }

    // A log database that others can read is refused at start.
    let consumer = &net.consumer;
    std::fs::set_permissions(&consumer.log_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = match ndxp_node::serve::Node::start(consumer.config()).await {
        Ok(_) => panic!("a node started on a message log that others can read"),
        Err(e) => e,
    };
    let text = format!("{err:#}");
    let chain: Vec<String> =
        std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect();
    let all = format!("{text} {}", chain.join(": "));
    assert!(
        all.contains(&format!("chmod 600 {}", consumer.log_path.display())),
        "{all}"
    );
}
