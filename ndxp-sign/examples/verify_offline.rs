//! Sign an HTTP request head with RFC 9421 and verify it again, with
//! `ndxp-sign` built without its default features (no tokio, no async
//! runtime): what an integrator needs to check a message NDXP signed.
//!
//! ```text
//! cargo run -p ndxp-sign --no-default-features --example verify_offline
//! ```

use ndxp_sign::digest;
use ndxp_sign::httpsig::{self, Component, MessageView, SignatureParams, SigningKey, VerifyPolicy};
use ndxp_sign::key::KeyAlgorithm;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = SigningKey::new(KeyAlgorithm::EcP256.generate()?, "member-key")?;
    let public = key.verifying_key()?;

    let body = br#"{"id":"001"}"#;
    let (mut parts, ()) = http::Request::post("https://provider.example/r1/persons")
        .header("content-digest", digest::content_digest(body))
        .body(())?
        .into_parts();
    let now = chrono::Utc::now().timestamp();
    let params = SignatureParams::new(vec![
        Component::method(),
        Component::target_uri(),
        Component::field("content-digest"),
    ])
    .with_created(now)
    .with_keyid(key.keyid())
    .with_alg(key.algorithm());
    httpsig::sign_request(&mut parts, "ndxp", &params, &key)?;

    // The receiver: the signature covers the method, URI and body digest,
    // and the body matches the digest.
    let policy = VerifyPolicy::new(vec![
        Component::method(),
        Component::target_uri(),
        Component::field("content-digest"),
    ]);
    let resolver = |keyid: &str| (keyid == "member-key").then(|| public.clone());
    let verified = httpsig::verify(
        &MessageView::request(&parts),
        "ndxp",
        &policy,
        now,
        &resolver,
    )?;
    let signed_digest = parts
        .headers
        .get("content-digest")
        .ok_or("no content-digest")?
        .to_str()?;
    digest::verify_content_digest(signed_digest, body)?;
    println!(
        "verified: keyid {}, algorithm {}, created {:?}",
        verified.keyid, verified.algorithm, verified.created
    );

    // A changed body no longer matches the signed digest.
    assert!(digest::verify_content_digest(signed_digest, b"{}").is_err());
    Ok(())
}
