//! `ndxp-node register`: the request a stand-in management server receives
//! passes `verify_registration`; refusals, missing certificates and network
//! failures reach the operator in words.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use chrono::Utc;
use ndxp_node::admission::{build_registration, register, AdmissionError};
use ndxp_test_support::tool::assert_says;
use support::{args, node, start, text, Fixture, Server, ADDRESS, MEMBER, NODE};

async fn server_for(f: &Fixture) -> (Arc<Server>, String) {
    let server = Arc::new(Server::default());
    *server.trusted.lock().unwrap() = vec![f.pki.root_cert().clone()];
    let url = start(server.clone()).await;
    (server, url)
}

#[tokio::test]
async fn register_sends_a_request_the_management_side_verifies() {
    let f = Fixture::new();
    let (server, url) = server_for(&f).await;
    let cfg = f.config(&url);

    let receipt = register(&cfg, Utc::now()).await.unwrap();
    assert_eq!(receipt.id, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    assert_eq!(receipt.state, "pending");
    assert_eq!(receipt.url, format!("{url}/api/v1/registrations"));
    assert_eq!(receipt.auth_cert_sha256, f.auth_fingerprint());

    let accepted = server.accepted.lock().unwrap();
    let v = accepted.first().expect("the server accepted the request");
    assert_eq!(v.payload.member.to_string(), MEMBER);
    assert_eq!(v.payload.node.to_string(), NODE);
    assert_eq!(v.payload.address, ADDRESS);
    assert_eq!(v.auth_cert_sha256, f.auth_fingerprint());
    assert_eq!(
        server.content_types.lock().unwrap().as_slice(),
        ["application/jose"]
    );
}

#[tokio::test]
async fn register_with_encrypted_keys_reads_the_passphrase_file() {
    let f = Fixture::with_passphrase(Some("correct horse"));
    let (server, url) = server_for(&f).await;
    let path = f.write_config(&url, "passphrase_file = \"pass.txt\"");
    let cfg = ndxp_node::config::load(&path).unwrap();
    register(&cfg, Utc::now()).await.unwrap();
    assert_eq!(server.accepted.lock().unwrap().len(), 1);

    // Without the passphrase the key cannot be read, and the error says which.
    let path = f.write_config(&url, "");
    let cfg = ndxp_node::config::load(&path).unwrap();
    let err = build_registration(&cfg, Utc::now()).unwrap_err();
    assert!(
        matches!(&err, AdmissionError::Key { path, .. } if path.ends_with("sign.key")),
        "{err:?}"
    );
}

#[tokio::test]
async fn a_problem_answer_reaches_the_operator_with_code_and_detail() {
    let f = Fixture::new();
    let (server, url) = server_for(&f).await;
    *server.refuse.lock().unwrap() = Some((
        409,
        serde_json::json!({
            "type": "urn:ndxp:problem:conflict", "title": "Conflict", "status": 409,
            "code": "ndxp.conflict",
            "detail": "node node-g22 of VN/GOV/000.00.00.G22 already has a pending request",
        }),
    ));
    let cfg = f.config(&url);
    let err = register(&cfg, Utc::now()).await.unwrap_err();
    let AdmissionError::Refused { problem } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(problem.code, "ndxp.conflict");
    assert_eq!(problem.status, 409);

    // The same through the binary: exit 1, code and detail on stderr.
    let out = node(args(&["register"], &f.node_dir().join("node.toml"))).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_says(&stderr, &["ndxp.conflict", "already has a pending request"]);
}

#[tokio::test]
async fn a_request_the_management_side_refuses_is_a_400_problem() {
    // The management side trusts another CA: the signature check fails there.
    let f = Fixture::new();
    let other = Fixture::new();
    let (server, url) = server_for(&f).await;
    *server.trusted.lock().unwrap() = vec![other.pki.root_cert().clone()];
    let err = register(&f.config(&url), Utc::now()).await.unwrap_err();
    match &err {
        AdmissionError::Refused { problem } => {
            assert_eq!(problem.status, 400);
            assert_eq!(problem.code, "ndxp.bad_request");
            assert!(err.to_string().contains("signature"), "{err}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_binary_prints_the_request_id_and_state() {
    let f = Fixture::new();
    let (_server, url) = server_for(&f).await;
    let path = f.write_config(&url, "");
    let out = node(args(&["register"], &path)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("id:       0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"),
        "{stdout}"
    );
    assert!(stdout.contains("state:    pending"), "{stdout}");
    assert!(stdout.contains(&f.auth_fingerprint()), "{stdout}");
}

#[tokio::test]
async fn a_missing_certificate_names_the_file_and_the_command_that_issues_it() {
    let f = Fixture::new();
    std::fs::remove_file(f.keys_dir.join("auth.pem")).unwrap();
    let cfg = f.config("http://127.0.0.1:9");
    let err = build_registration(&cfg, Utc::now()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, AdmissionError::MissingCertificate { .. }),
        "{err:?}"
    );
    assert_says(&msg, &["auth.pem does not exist", "--profile auth"]);
    // The command names the identity `pki issue` needs.
    assert!(
        msg.contains(&format!(
            "--member {} --node {}",
            cfg.node.member, cfg.node.name
        )),
        "{msg}"
    );
}

#[tokio::test]
async fn certificates_of_the_wrong_kind_or_node_are_refused_before_sending() {
    let f = Fixture::new();
    let cfg = f.config("http://127.0.0.1:9");
    // The signing certificate where the authentication certificate belongs.
    let auth = std::fs::read(f.keys_dir.join("auth.pem")).unwrap();
    std::fs::copy(f.keys_dir.join("sign.pem"), f.keys_dir.join("auth.pem")).unwrap();
    let err = build_registration(&cfg, Utc::now()).unwrap_err();
    assert!(
        matches!(&err, AdmissionError::Mismatch { path, .. } if path.ends_with("auth.pem")),
        "{err:?}"
    );
    std::fs::write(f.keys_dir.join("auth.pem"), auth).unwrap();

    // A configuration naming another node than the certificate.
    let mut other = cfg.clone();
    other.node.name = "node-other".parse().unwrap();
    let err = build_registration(&other, Utc::now()).unwrap_err();
    assert!(err.to_string().contains("node node-g22"), "{err}");

    // Another node's certificate (its key is not ours).
    let g = Fixture::new();
    std::fs::copy(g.keys_dir.join("sign.pem"), f.keys_dir.join("sign.pem")).unwrap();
    let err = build_registration(&cfg, Utc::now()).unwrap_err();
    assert!(err.to_string().contains("not for the key"), "{err}");
}

#[tokio::test]
async fn no_server_listening_is_explained() {
    let f = Fixture::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let err = register(&f.config(&url), Utc::now()).await.unwrap_err();
    assert!(matches!(err, AdmissionError::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains("could not connect"), "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let f = Fixture::new();
    // Accepts connections (the kernel queues them) but never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = f.config(&url);
    cfg.management.timeout_secs = 1;
    let started = std::time::Instant::now();
    let err = register(&cfg, Utc::now()).await.unwrap_err();
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    assert!(
        err.to_string().contains("did not answer within 1 s"),
        "{err}"
    );
    drop(listener);
}
