//! A test PKI whose OCSP responder runs, shared by the test harnesses.
#![allow(clippy::unwrap_used, dead_code)]

use std::path::Path;
use std::sync::Arc;

use ndxp_sign::ca::Pki;
use ndxp_test_support::pki::init_pki;

/// Creates a PKI in `dir` and serves its OCSP routes (`pki serve`'s) on a
/// loopback port for the rest of the test; every certificate the CA
/// issues names that responder. Returns the PKI and the responder's URL.
pub async fn pki_with_ocsp(dir: &Path) -> (Pki, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/ocsp", listener.local_addr().unwrap());
    let pki = init_pki(dir, &url);
    let service =
        Arc::new(ndxp_gateway::pki::PkiService::new(Pki::open(dir, None).unwrap()).unwrap());
    tokio::spawn(async move {
        axum::serve(listener, ndxp_gateway::pki::router(service))
            .await
            .unwrap()
    });
    (pki, url)
}
