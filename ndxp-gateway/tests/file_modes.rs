//! The gateway's databases (registry and message log, with SQLite's
//! `-wal` and `-shm` files) are readable by their owner only; a database
//! that others can read is refused with a message naming the file and the
//! `chmod` to run, and a configuration file that others can read is
//! warned about (it holds no secret of its own).
#![allow(clippy::unwrap_used)]

mod gateway_support;

use std::os::unix::fs::PermissionsExt;

use ndxp_test_support::files::mode;

use gateway_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_databases_are_private_and_an_open_one_is_refused() {
    let env = Env::start().await;
    let (_, consumer) = env.parties().await;
    let (id, secret) = env.credentials(&consumer).await;
    assert!(!env.token(&id, &secret).await.is_empty());
    let dir = env.dir.path();
    for name in [
        "registry.db",
        "registry.db-wal",
        "registry.db-shm",
        "gateway-log.db",
        "gateway-log.db-wal",
        "gateway-log.db-shm",
    ] {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }

    let registry = dir.join("registry.db");
    std::fs::set_permissions(&registry, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&env.config_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = env.cli(&["services", "list"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an open registry database was used");
    assert!(
        stderr.contains(&format!("chmod 600 {}", registry.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("chmod o-rwx {}", env.config_path.display())),
        "no warning about the configuration file: {stderr}"
    );
    // Fixed as the message says, the command works again.
    std::fs::set_permissions(&registry, std::fs::Permissions::from_mode(0o600)).unwrap();
    env.cli_ok(&["services", "list"]);
    env.stop().await;
}
