//! The management API with the stock `curl` command line: a
//! token-authenticated call and a registration POST, as an operator's
//! script would make them.
#![allow(clippy::unwrap_used)]

mod management_support;

use management_support::{curl, Backend, Env};
use serde_json::Value;

#[tokio::test]
async fn curl_adds_a_member_and_posts_a_registration() {
    let env = Env::start(Backend::Sqlite).await;
    let base = env.url("");
    let auth = format!("Authorization: Bearer {}", env.operator);
    let member = r#"{"id":"VN/GOV/000.00.00.H29","name":"Bo Cong an"}"#;
    let json = "Content-Type: application/json";
    let members = format!("{base}/api/v1/members");
    let (s, body) = curl(&[
        "-X", "POST", "-H", &auth, "-H", json, "--data", member, &members,
    ])
    .await;
    assert_eq!(s, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["id"], "VN/GOV/000.00.00.H29");

    let keys = env.member_keys("VN/GOV/000.00.00.H29");
    let jws = env.registration(&keys, "node-h29", "https://127.0.0.1:8202");
    let file = env.dir.path().join("registration.jws");
    std::fs::write(&file, &jws).unwrap();
    let (jose, data) = (
        "Content-Type: application/jose",
        format!("@{}", file.display()),
    );
    let registrations = format!("{base}/api/v1/registrations");
    let (s, body) = curl(&[
        "-X",
        "POST",
        "-H",
        jose,
        "--data-binary",
        &data,
        &registrations,
    ])
    .await;
    assert_eq!(s, 201, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["state"], "pending");
    assert_eq!(v["node"], "node-h29");

    // Without the token, curl gets the problem document.
    let (s, body) = curl(&[&members]).await;
    assert_eq!(s, 401);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["code"], "ndxp.unauthorized");
    env.stop().await;
}
