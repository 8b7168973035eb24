//! `ndxp-node conf fetch` and `conf status`: against a stand-in management
//! server serving signed global configurations, through the library and the
//! binary.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::Arc;

use chrono::{TimeDelta, Utc};
use ndxp_node::conf::{fetch, status, ConfCommandError};
use ndxp_registry::globalconf::{ConfError, RefreshOutcome};
use ndxp_test_support::tool::assert_says;
use support::{args, node, start, text, Fixture, Server, ADDRESS};

async fn env() -> (Fixture, Arc<Server>, String) {
    let f = Fixture::new();
    let server = Arc::new(Server::default());
    let url = start(server.clone()).await;
    (f, server, url)
}

fn serve(server: &Server, jws: String) {
    *server.conf.lock().unwrap() = Some(jws);
}

#[tokio::test]
async fn fetch_stores_the_document_and_status_finds_this_node() {
    let (f, server, url) = env().await;
    let cfg = f.config(&url);
    serve(&server, f.signed(1));

    let report = fetch(&cfg, Utc::now()).await.unwrap();
    assert_eq!(
        report.outcome,
        RefreshOutcome::Updated { from: None, to: 1 }
    );
    assert_eq!(report.path, f.last_good());
    assert!(f.last_good().is_file());
    assert!(report.previous_unusable.is_none());

    let st = status(&cfg, Utc::now()).unwrap();
    assert_eq!(st.conf.version, Some(1));
    assert!(st.conf.valid && !st.conf.expired);
    let me = st.this_node.unwrap();
    assert!(me.listed && me.address_matches && me.local_cert_listed);
    assert_eq!(me.address.as_deref(), Some(ADDRESS));
    assert_eq!(me.local_auth_cert_sha256, Some(f.auth_fingerprint()));

    // Same version again: unchanged. A newer one: updated from 1.
    let report = fetch(&cfg, Utc::now()).await.unwrap();
    assert_eq!(report.outcome, RefreshOutcome::Unchanged { version: 1 });
    serve(&server, f.signed(2));
    let report = fetch(&cfg, Utc::now()).await.unwrap();
    assert_eq!(
        report.outcome,
        RefreshOutcome::Updated {
            from: Some(1),
            to: 2
        }
    );
}

#[tokio::test]
async fn fetch_refuses_a_rollback_and_keeps_the_last_good_file() {
    let (f, server, url) = env().await;
    let cfg = f.config(&url);
    serve(&server, f.signed(3));
    fetch(&cfg, Utc::now()).await.unwrap();
    let kept = std::fs::read(f.last_good()).unwrap();

    serve(&server, f.signed(2));
    let err = fetch(&cfg, Utc::now()).await.unwrap_err();
    let ConfCommandError::Refresh { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(
        matches!(
            **source,
            ConfError::Older {
                held: 3,
                offered: 2
            }
        ),
        "{source:?}"
    );
    assert_eq!(std::fs::read(f.last_good()).unwrap(), kept);
}

#[tokio::test]
async fn fetch_refuses_a_document_signed_by_another_ca() {
    let (f, server, url) = env().await;
    let other = Fixture::new();
    serve(&server, other.signed(1));
    let err = fetch(&f.config(&url), Utc::now()).await.unwrap_err();
    let ConfCommandError::Refresh { source, .. } = &err else {
        panic!("{err:?}")
    };
    assert!(matches!(**source, ConfError::Untrusted(_)), "{source:?}");
    assert!(!f.last_good().exists());
}

#[tokio::test]
async fn status_without_a_file_holds_nothing() {
    let (f, _server, url) = env().await;
    let st = status(&f.config(&url), Utc::now()).unwrap();
    assert_eq!(st.conf.version, None);
    assert!(!st.conf.valid && !st.conf.expired);
    assert!(st.this_node.is_none());
}

/// Writes an expired (but correctly signed) last-good file.
fn write_expired(f: &Fixture) {
    let doc = f.doc(4, Utc::now() - TimeDelta::days(2), true);
    std::fs::create_dir_all(f.last_good().parent().unwrap()).unwrap();
    std::fs::write(f.last_good(), f.sign(&doc)).unwrap();
}

#[tokio::test]
async fn status_reports_an_expired_last_good_file() {
    let (f, _server, url) = env().await;
    write_expired(&f);
    let st = status(&f.config(&url), Utc::now()).unwrap();
    assert_eq!(st.conf.version, Some(4));
    assert!(st.conf.expired && !st.conf.valid);
    assert!(st.conf.expires_in_secs.unwrap() < 0);
}

#[tokio::test]
async fn status_refuses_a_damaged_last_good_file() {
    let (f, _server, url) = env().await;
    std::fs::create_dir_all(f.last_good().parent().unwrap()).unwrap();
    std::fs::write(f.last_good(), "not a jws").unwrap();
    let err = status(&f.config(&url), Utc::now()).unwrap_err();
    assert!(matches!(err, ConfCommandError::LastGood { .. }), "{err:?}");
}

#[tokio::test]
async fn a_node_not_yet_admitted_is_reported_as_not_listed() {
    let (f, server, url) = env().await;
    serve(&server, f.sign(&f.doc(1, Utc::now(), false)));
    let cfg = f.config(&url);
    fetch(&cfg, Utc::now()).await.unwrap();
    let me = status(&cfg, Utc::now()).unwrap().this_node.unwrap();
    assert!(!me.listed && !me.local_cert_listed);
    assert!(me.address.is_none());
}

// ---- the binary ----

#[tokio::test]
async fn binary_conf_fetch_then_status() {
    let (f, server, url) = env().await;
    let path = f.write_config(&url, "");

    // Nothing on disk yet: exit 1 and say how to get one.
    let out = node(args(&["conf", "status"], &path)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stdout.contains("no global configuration on disk yet"),
        "{stdout}"
    );
    assert!(stdout.contains("conf fetch"), "{stdout}");

    // The server has nothing to offer: fetch fails with the reason.
    let out = node(args(&["conf", "fetch"], &path)).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("HTTP 404"), "{stderr}");

    serve(&server, f.signed(7));
    let out = node(args(&["conf", "fetch"], &path)).await;
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.contains("fetched the global configuration, version 7"),
        "{stdout}"
    );
    assert!(stdout.contains(f.last_good().to_str().unwrap()), "{stdout}");

    let out = node(args(&["conf", "status"], &path)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_says(&stdout, &["version:       7", "state:         valid"]);
    assert!(
        stdout.contains("VN/GOV/000.00.00.G22/node-g22 is listed"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{} (keys_dir/auth.pem)", f.auth_fingerprint())),
        "{stdout}"
    );

    let mut a = args(&["conf", "status"], &path);
    a.push("--json".into());
    let out = node(a).await;
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["version"], 7);
    assert_eq!(json["valid"], true);
    assert_eq!(json["instance"], "VN");
    assert_eq!(json["this_node"]["listed"], true);
    assert_eq!(json["this_node"]["local_cert_listed"], true);
}

#[tokio::test]
async fn binary_conf_status_of_an_expired_file_exits_1() {
    let (f, _server, url) = env().await;
    let path = f.write_config(&url, "");
    write_expired(&f);
    let out = node(args(&["conf", "status"], &path)).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_says(&stdout, &["EXPIRED", "ago)"]);
}

#[tokio::test]
async fn binary_bad_config_exits_64() {
    let (f, _server, url) = env().await;
    let path = f.write_config(&url, "");

    // An unknown key: named, with its line.
    let text_ok = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text_ok.replace("keys_dir", "key_dir")).unwrap();
    let out = node(args(&["conf", "status"], &path)).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert_says(&stderr, &["key_dir", "line 5"]);

    // A missing configuration file.
    let missing = f.node_dir().join("nope.toml");
    let out = node(args(&["register"], &missing)).await;
    assert_eq!(out.status.code(), Some(64));

    // A missing anchor file.
    std::fs::write(&path, &text_ok).unwrap();
    std::fs::remove_file(f.node_dir().join("anchor.json")).unwrap();
    let out = node(args(&["conf", "fetch"], &path)).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("conf.anchor"), "{stderr}");
}
