//! The pieces the management and gateway harnesses share: the platform's
//! signing files, the registry with an operator token, and shutting the
//! roles down.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::sync::Arc;

use ndxp_gateway::management::auth::{generate_token, hash_token};
use ndxp_registry::model::{Actor, CredentialKind};
use ndxp_registry::store::{RegistryStore, SqlStore, StoreOptions};
use ndxp_sign::ca::Pki;
use ndxp_test_support::db::TestDatabase;
use ndxp_test_support::pki::member_signer;

/// The task running the roles (`server::run_*`).
pub type RolesTask = tokio::task::JoinHandle<Result<(), ndxp_gateway::server::ServerError>>;

/// The start of the `[globalconf]` table over the files
/// [`write_signing_files`] writes, ending in the root CA's entry (a
/// harness may add its `ocsp_urls`).
pub const GLOBALCONF: &str = r#"[globalconf]
signing_key = "sign.key"
signing_cert = "sign.pem"
validity_secs = 3600
[[globalconf.cas]]
name = "NDXP Root CA"
cert = "ca.pem""#;

/// Writes `sign.key` and `sign.pem` (the signing key and chain of
/// `member`, issued by `pki`) and `ca.pem` (the root) into `dir`, as the
/// `[globalconf]` table names them.
pub fn write_signing_files(dir: &Path, pki: &Pki, member: &str) {
    let signer = member_signer(pki, &member.parse().unwrap());
    ndxp_sign::key::write_private_key_file(&dir.join("sign.key"), &signer.key, None, false)
        .unwrap();
    let chain = ndxp_sign::cert::write_pem_chain(&signer.chain).unwrap();
    std::fs::write(dir.join("sign.pem"), chain).unwrap();
    std::fs::write(dir.join("ca.pem"), pki.root_cert().to_pem().unwrap()).unwrap();
}

/// Opens the registry at `url` (four connections) and creates the
/// operator credential `admin`; returns the store and its token.
pub async fn registry_with_operator(url: &str) -> (Arc<SqlStore>, String) {
    let options = StoreOptions {
        max_connections: 4,
        ..StoreOptions::default()
    };
    let store = Arc::new(SqlStore::open(url, &options).await.unwrap());
    let operator = generate_token().unwrap();
    let (kind, hash) = (CredentialKind::Operator, hash_token(&operator));
    store
        .create_credential(&kind, "admin", &hash, &Actor::cli("test"))
        .await
        .unwrap();
    (store, operator)
}

/// Stops the roles (fires `stop`, waits for `task`, which must end
/// well), closes the registry and drops the test database.
pub async fn shut_down(
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<RolesTask>,
    store: &SqlStore,
    db: Option<TestDatabase>,
) {
    if let Some(tx) = stop {
        let _ = tx.send(());
    }
    if let Some(t) = task {
        t.await.unwrap().unwrap();
    }
    store.close().await;
    if let Some(db) = db {
        db.drop_now().await;
    }
}
