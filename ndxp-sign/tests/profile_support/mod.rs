//! Shared fixtures of the `profile_*` tests: a CA, member signers, and a
//! request/response pair shaped like node-to-node traffic.

#![allow(clippy::unwrap_used, dead_code)]

use chrono::{DateTime, Utc};
use ndxp_core::{MemberId, TransactionId};
use ndxp_sign::ca::{InitOptions, Pki};
use ndxp_sign::cert::Profile;
use ndxp_sign::csr;
use ndxp_sign::digest::content_digest;
use ndxp_sign::httpsig::Algorithm;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::profile::{self, ProfilePolicy, Signer};
use openssl::x509::X509;

pub const CONSUMER: &str = "VN/GOV/000.00.00.G22";
pub const CLIENT: &str = "VN/GOV/000.00.00.G22/QLHT";
pub const PROVIDER: &str = "VN/GOV/000.00.00.H29";
pub const URI: &str =
    "https://provider.example:8443/r1/VN/GOV/000.00.00.H29/CSDLDC/citizen/v1/lookup?full=1";
pub const REQUEST_BODY: &[u8] = br#"{"citizen":"001234567890"}"#;
pub const RESPONSE_BODY: &[u8] = br#"{"name":"Nguyen Van A"}"#;

pub struct Ca {
    pub _tmp: tempfile::TempDir,
    pub pki: Pki,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let opts = InitOptions {
            name: name.to_string(),
            ocsp_url: "http://127.0.0.1:9/ocsp".to_string(),
            ..InitOptions::default()
        };
        let pki = Pki::init(&tmp.path().join("pki"), &opts).unwrap();
        Self { _tmp: tmp, pki }
    }

    pub fn signer(&self, member: &str, alg: KeyAlgorithm) -> Signer {
        let key = alg.generate().unwrap();
        let member: MemberId = member.parse().unwrap();
        let req = csr::build_sign_csr(&member, &key).unwrap();
        let cert = self.pki.issue(&req, Profile::Sign, 30).unwrap();
        Signer::new(key, cert, self.pki.chain().to_vec()).unwrap()
    }

    pub fn signer_with(&self, member: &str, alg: Algorithm, key_alg: KeyAlgorithm) -> Signer {
        let key = key_alg.generate().unwrap();
        let member: MemberId = member.parse().unwrap();
        let req = csr::build_sign_csr(&member, &key).unwrap();
        let cert = self.pki.issue(&req, Profile::Sign, 30).unwrap();
        Signer::with_algorithm(key, alg, cert, self.pki.chain().to_vec()).unwrap()
    }

    pub fn anchors(&self) -> Vec<X509> {
        vec![self.pki.root_cert().clone()]
    }

    pub fn policy(&self) -> ProfilePolicy {
        ProfilePolicy::new(self.anchors())
    }
}

pub fn now() -> DateTime<Utc> {
    Utc::now()
}

/// An unsigned request head as a consumer node builds it.
pub fn request_head(id: TransactionId) -> http::request::Parts {
    http::Request::post(URI)
        .header("content-type", "application/json")
        .header(profile::NDXP_CLIENT, CLIENT)
        .header(profile::NDXP_ID, id.to_string())
        .body(())
        .unwrap()
        .into_parts()
        .0
}

pub fn signed_request(
    signer: &Signer,
    id: TransactionId,
    at: DateTime<Utc>,
) -> http::request::Parts {
    let mut parts = request_head(id);
    profile::sign_request(&mut parts, &content_digest(REQUEST_BODY), signer, at).unwrap();
    parts
}

/// The request as the provider's server sees it: origin-form URI and Host.
pub fn as_received(sent: &http::request::Parts) -> http::request::Parts {
    let mut b = http::Request::builder()
        .method(sent.method.clone())
        .uri(sent.uri.path_and_query().unwrap().as_str())
        .header("host", sent.uri.authority().unwrap().as_str());
    for (k, v) in &sent.headers {
        b = b.header(k, v);
    }
    b.body(()).unwrap().into_parts().0
}

pub fn signed_response(
    signer: &Signer,
    request: &http::request::Parts,
    at: DateTime<Utc>,
) -> http::response::Parts {
    let mut parts = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(())
        .unwrap()
        .into_parts()
        .0;
    profile::sign_response(
        &mut parts,
        request,
        &content_digest(RESPONSE_BODY),
        signer,
        at,
    )
    .unwrap();
    parts
}
