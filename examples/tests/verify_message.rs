//! `verify-message` on messages signed by `ndxp_sign::profile` and saved in
//! the head-file format.

#![allow(clippy::unwrap_used)]

use chrono::Utc;
use ndxp_core::{MemberId, TransactionId};
use ndxp_examples::message_file::{request_head_text, response_head_text};
use ndxp_sign::{digest, profile};
use ndxp_test_support::pki::{init_named_pki, init_pki, member_signer, pem};
use ndxp_test_support::tool::{assert_says, run_binary};

const BODY: &[u8] = br#"{"id":"001099012345"}"#;

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }
    fn write(&self, name: &str, data: &[u8]) -> String {
        std::fs::write(self.dir.path().join(name), data).unwrap();
        self.path(name)
    }
}

/// A PKI, a signed request (and its signed response) saved as files.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pki = init_pki(&dir.path().join("pki"), "http://127.0.0.1:1/ocsp");
    let consumer = "VN/GOV/000.00.00.G22".parse::<MemberId>().unwrap();
    let provider = "VN/GOV/000.00.00.H29".parse::<MemberId>().unwrap();
    let signer = |m: &MemberId| {
        let s = member_signer(&pki, m);
        profile::Signer::new(s.key, s.chain[0].clone(), s.chain[1..].to_vec()).unwrap()
    };
    let (c, p) = (signer(&consumer), signer(&provider));

    let (mut req, ()) = http::Request::post(
        "https://node-h29.example:8443/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/persons",
    )
    .header(profile::NDXP_CLIENT, "VN/GOV/000.00.00.G22/QLHT")
    .header(profile::NDXP_ID, TransactionId::new().to_string())
    .header("content-type", "application/json")
    .body(())
    .unwrap()
    .into_parts();
    let now = Utc::now();
    profile::sign_request(&mut req, &digest::content_digest(BODY), &c, now).unwrap();

    let answer = br#"{"full_name":"Nguyen Van An"}"#;
    let mut ok = http::Response::new(()); // 200
    let json = http::HeaderValue::from_static("application/json");
    ok.headers_mut().insert(http::header::CONTENT_TYPE, json);
    let (mut resp, ()) = ok.into_parts();
    profile::sign_response(&mut resp, &req, &digest::content_digest(answer), &p, now).unwrap();

    let f = Fixture { dir };
    f.write("ca.pem", pem(pki.root_cert()).as_bytes());
    f.write("request.head", request_head_text(&req).as_bytes());
    f.write("request.body", BODY);
    f.write("response.head", response_head_text(&resp).as_bytes());
    f.write("response.body", answer);
    let other = init_named_pki(
        &f.dir.path().join("other"),
        "Other Root",
        "http://127.0.0.1:1/ocsp",
    );
    f.write("other-ca.pem", pem(other.root_cert()).as_bytes());
    f
}

fn verify(args: &[&str]) -> (i32, String, String) {
    run_binary(env!("CARGO_BIN_EXE_verify-message"), args)
}

impl Fixture {
    /// `verify-message --head --body --ca` with these files of the
    /// fixture, then `extra`.
    fn verify(&self, head: &str, body: &str, ca: &str, extra: &[&str]) -> (i32, String, String) {
        let (head, body, ca) = (self.path(head), self.path(body), self.path(ca));
        let mut args = vec!["--head", &head, "--body", &body, "--ca", &ca];
        args.extend_from_slice(extra);
        verify(&args)
    }
}

#[test]
fn a_signed_request_verifies() {
    let f = fixture();
    let (code, out, err) = f.verify("request.head", "request.body", "ca.pem", &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("VALID: signed by VN/GOV/000.00.00.G22 with ecdsa-p256-sha256"),
        "{out}"
    );
    assert_says(&out, &["NDXP-Client VN/GOV/000.00.00.G22/QLHT"]);
    assert!(
        out.contains(&format!(
            "body: {} bytes, matches Content-Digest",
            BODY.len()
        )),
        "{out}"
    );

    // Checked now, it is still fresh.
    let (code, _, err) = f.verify("request.head", "request.body", "ca.pem", &["--at", "now"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_signed_response_verifies_with_its_request() {
    let f = fixture();
    let (code, out, err) = f.verify(
        "response.head",
        "response.body",
        "ca.pem",
        &["--request", &f.path("request.head")],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("VALID: signed by VN/GOV/000.00.00.H29"),
        "{out}"
    );

    let (code, _, err) = f.verify("response.head", "response.body", "ca.pem", &[]);
    assert_eq!(code, 2);
    assert_says(&err, &["give the head of its request with --request"]);
}

#[test]
fn tampering_is_detected() {
    let f = fixture();
    let head = std::fs::read_to_string(f.path("request.head")).unwrap();

    // A changed body.
    f.write("tampered.body", br#"{"id":"001099012346"}"#);
    let (code, _, err) = f.verify("request.head", "tampered.body", "ca.pem", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.starts_with("verify-message: INVALID:"), "{err}");

    // A changed signed header.
    let client = head.replace("G22/QLHT", "G22/OTHER");
    f.write("client.head", client.as_bytes());
    let (code, _, err) = f.verify("client.head", "request.body", "ca.pem", &[]);
    assert_eq!(code, 1, "{err}");

    // A changed target.
    f.write("uri.head", head.replace("/persons", "/people").as_bytes());
    let (code, _, err) = f.verify("uri.head", "request.body", "ca.pem", &[]);
    assert_eq!(code, 1, "{err}");

    // No signature at all.
    let stripped: String = head
        .lines()
        .filter(|l| !l.starts_with("signature"))
        .map(|l| format!("{l}\n"))
        .collect();
    f.write("unsigned.head", stripped.as_bytes());
    let (code, _, err) = f.verify("unsigned.head", "request.body", "ca.pem", &[]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("no readable ndxp signature"), "{err}");

    // The response against another request.
    let people = head.replace("/persons", "/people");
    let other = f.write("other-request.head", people.as_bytes());
    let (code, _, err) = f.verify(
        "response.head",
        "response.body",
        "ca.pem",
        &["--request", &other],
    );
    assert_eq!(code, 1, "{err}");
}

#[test]
fn an_untrusted_signer_or_a_stale_message_is_refused() {
    let f = fixture();
    let (code, _, err) = f.verify("request.head", "request.body", "other-ca.pem", &[]);
    assert_eq!(code, 1, "{err}");
    // Checked at a time far after `created`: outside the acceptance window.
    let later = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let (code, _, err) = f.verify("request.head", "request.body", "ca.pem", &["--at", &later]);
    assert_eq!(code, 1, "{err}");
}

#[test]
fn unreadable_inputs_are_usage_errors() {
    let f = fixture();
    let garbage = f.write("garbage.head", b"not a head\n");
    let (code, _, err) = verify(&["--head", &garbage, "--ca", &f.path("ca.pem")]);
    assert_eq!(code, 2);
    assert!(err.contains("line 1 must be"), "{err}");
    let (code, _, err) = verify(&["--head", &f.path("missing"), "--ca", &f.path("ca.pem")]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read"), "{err}");
    let notpem = f.write("notpem", b"hello");
    let (code, _, _) = verify(&["--head", &f.path("request.head"), "--ca", &notpem]);
    assert_eq!(code, 2);
    let (code, _, _) = verify(&[
        "--head",
        &f.path("request.head"),
        "--ca",
        &f.path("ca.pem"),
        "--at",
        "yesterday",
    ]);
    assert_eq!(code, 2);
}
