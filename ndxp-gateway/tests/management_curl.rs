//! The management API with the stock `curl` command line: a
//! token-authenticated call and a registration POST, as an operator's
//! script would make them.
#![allow(clippy::unwrap_used)]

mod management_support;

use std::process::Command;

use management_support::{Backend, Env};
use serde_json::Value;

/// Runs curl; returns (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("the curl command line is installed");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.trim().parse().unwrap(), body.to_string())
}

#[tokio::test]
async fn curl_adds_a_member_and_posts_a_registration() {
    let env = Env::start(Backend::Sqlite).await;
    let base = env.url("");
    let auth = format!("Authorization: Bearer {}", env.operator);
    let (s, body) = tokio::task::spawn_blocking({
        let (base, auth) = (base.clone(), auth.clone());
        move || {
            curl(&[
                "-X",
                "POST",
                "-H",
                &auth,
                "-H",
                "Content-Type: application/json",
                "--data",
                r#"{"id":"VN/GOV/000.00.00.H29","name":"Bo Cong an"}"#,
                &format!("{base}/api/v1/members"),
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(s, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "VN/GOV/000.00.00.H29");

    let keys = env.member_keys("VN/GOV/000.00.00.H29");
    let jws = env.registration(&keys, "node-h29", "https://127.0.0.1:8202");
    let file = env.dir.path().join("registration.jws");
    std::fs::write(&file, &jws).unwrap();
    let (s, body) = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            curl(&[
                "-X",
                "POST",
                "-H",
                "Content-Type: application/jose",
                "--data-binary",
                &format!("@{}", file.display()),
                &format!("{base}/api/v1/registrations"),
            ])
        }
    })
    .await
    .unwrap();
    assert_eq!(s, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "pending");
    assert_eq!(v["node"], "node-h29");

    // Without the token, curl gets the problem document.
    let (s, body) = tokio::task::spawn_blocking(move || curl(&[&format!("{base}/api/v1/members")]))
        .await
        .unwrap();
    assert_eq!(s, 401);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "ndxp.unauthorized");
    env.stop().await;
}
