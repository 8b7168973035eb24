//! Shared fixtures for the global configuration tests: a real PKI, a
//! management signing certificate, a realistic document.

#![allow(clippy::unwrap_used, dead_code)]

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use ndxp_core::MemberId;
use ndxp_registry::globalconf::{
    self, ConfAccessRight, ConfAnchor, ConfCa, ConfContent, ConfDocument, ConfGrantee, ConfGroup,
    ConfMember, ConfNode, ConfService, ConfTsa, JWS_TYP,
};
use ndxp_sign::ca::Pki;
use ndxp_sign::cert::fingerprint_sha256;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::openssl::ecdsa::EcdsaSig;
use ndxp_sign::openssl::hash::{hash, MessageDigest};
use ndxp_sign::openssl::pkey::{PKey, PKeyRef, Private};
use ndxp_sign::openssl::x509::X509;
use ndxp_test_support::pki::init_named_pki;
pub use ndxp_test_support::pki::{pem, sign_chain};
use tempfile::TempDir;

pub const MGMT: &str = "VN/GOV/MGMT";
pub const PROVIDER: &str = "VN/GOV/000.00.00.H29";
pub const CLIENT: &str = "VN/COM/0101234567";

pub fn id<T: std::str::FromStr>(s: &str) -> T
where
    T::Err: std::fmt::Debug,
{
    s.parse().unwrap()
}

/// A CA (root + intermediate) and a signing key and certificate of the
/// management member.
pub struct Fixture {
    pub tmp: TempDir,
    pub pki: Pki,
    pub key: PKey<Private>,
    /// Signer certificate, then the intermediate.
    pub chain: Vec<X509>,
    pub now: DateTime<Utc>,
}

impl Fixture {
    pub fn new() -> Self {
        Self::with_key(KeyAlgorithm::EcP256)
    }

    pub fn with_key(alg: KeyAlgorithm) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let pki = new_pki(&tmp, "pki", "NDXP Test Root");
        let key = alg.generate().unwrap();
        let chain = sign_chain(&pki, &id(MGMT), &key);
        Self {
            tmp,
            pki,
            key,
            chain,
            now: Utc::now(),
        }
    }

    pub fn anchor(&self, url: &str) -> ConfAnchor {
        ConfAnchor::new(
            id("VN"),
            url,
            &[self.pki.root_cert().clone()],
            Some(id(MGMT)),
            self.now,
        )
        .unwrap()
    }

    pub fn content(&self) -> ConfContent {
        sample_content(&self.pki)
    }

    /// A document of `version` generated at `generated_at`, valid one day.
    pub fn doc_at(&self, version: u64, generated_at: DateTime<Utc>) -> ConfDocument {
        ConfDocument::new(
            self.content(),
            id("VN"),
            version,
            generated_at,
            TimeDelta::days(1),
        )
        .unwrap()
    }

    pub fn doc(&self, version: u64) -> ConfDocument {
        self.doc_at(version, self.now)
    }

    pub fn sign(&self, doc: &ConfDocument) -> String {
        globalconf::sign(doc, &self.key, &self.chain).unwrap()
    }

    pub fn signed(&self, version: u64) -> String {
        self.sign(&self.doc(version))
    }
}

pub fn new_pki(tmp: &TempDir, dir: &str, name: &str) -> Pki {
    init_named_pki(&tmp.path().join(dir), name, "http://127.0.0.1:1/ocsp")
}

/// Three members, a node, the CA and TSA, two services, a group and
/// access rights (one direct, one through the group).
pub fn sample_content(pki: &Pki) -> ConfContent {
    let provider: MemberId = id(PROVIDER);
    let client: MemberId = id(CLIENT);
    ConfContent {
        members: vec![
            ConfMember {
                id: id(MGMT),
                name: "Management".into(),
                subsystems: vec![],
            },
            ConfMember {
                id: provider.clone(),
                name: "Bộ Công an".into(),
                subsystems: vec!["CSDLDC".into()],
            },
            ConfMember {
                id: client.clone(),
                name: "Công ty ABC".into(),
                subsystems: vec!["APP".into(), "APP2".into(), "OTHER".into()],
            },
        ],
        nodes: vec![
            ConfNode {
                member: provider.clone(),
                name: id("node1"),
                address: "https://node1.provider.example:8443".into(),
                auth_cert_sha256: vec![fingerprint_sha256(pki.root_cert())],
            },
            ConfNode {
                member: provider.clone(),
                name: id("node2"),
                address: "https://[2001:db8::1]:8443".into(),
                auth_cert_sha256: vec![],
            },
            ConfNode {
                member: client.clone(),
                name: id("node1"),
                address: "https://node1.client.example:8443".into(),
                auth_cert_sha256: vec!["ab".repeat(32), "cd".repeat(32)],
            },
        ],
        cas: vec![ConfCa {
            name: "NDXP Test Root".into(),
            cert_pem: pem(pki.root_cert()),
            ocsp_urls: vec![pki.ocsp_url().into()],
        }],
        tsas: vec![ConfTsa {
            name: "NDXP TSA".into(),
            url: "http://127.0.0.1:1/tsa".into(),
            cert_pem: pem(pki.tsa_cert()),
        }],
        services: vec![
            ConfService {
                id: id("VN/GOV/000.00.00.H29/CSDLDC/citizen/v1"),
                description: "Citizen look-up".into(),
                openapi_url: Some("https://docs.example/citizen-v1.json".into()),
                deprecated_at: None,
                sunset_at: None,
            },
            ConfService {
                id: id("VN/GOV/000.00.00.H29/CSDLDC/household/v2"),
                description: "Household".into(),
                openapi_url: None,
                deprecated_at: Some(Utc::now()),
                sunset_at: Some(Utc::now() + TimeDelta::days(90)),
            },
        ],
        groups: vec![ConfGroup {
            code: "banks".into(),
            members: vec![id("VN/COM/0101234567/APP2")],
        }],
        access_rights: vec![
            ConfAccessRight {
                service: id("VN/GOV/000.00.00.H29/CSDLDC/citizen/v1"),
                grantee: ConfGrantee::Subsystem(id("VN/COM/0101234567/APP")),
            },
            ConfAccessRight {
                service: id("VN/GOV/000.00.00.H29/CSDLDC/household/v2"),
                grantee: ConfGrantee::Group("banks".into()),
            },
        ],
    }
}

/// A compact ES256 JWS over `header` and `payload` made by hand, so tests
/// can pair any header (x5c, typ) with any key.
pub fn es256_raw(header: &serde_json::Value, payload: &[u8], key: &PKeyRef<Private>) -> String {
    let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let digest = hash(MessageDigest::sha256(), out.as_bytes()).unwrap();
    let sig = EcdsaSig::sign(&digest, &key.ec_key().unwrap()).unwrap();
    let mut raw = sig.r().to_vec_padded(32).unwrap();
    raw.extend(sig.s().to_vec_padded(32).unwrap());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(raw));
    out
}

/// The header of a configuration JWS with `chain` in `x5c`.
pub fn header_with(chain: &[X509]) -> serde_json::Value {
    serde_json::json!({
        "alg": "ES256",
        "typ": JWS_TYP,
        "x5c": chain.iter().map(|c| STANDARD.encode(c.to_der().unwrap())).collect::<Vec<_>>(),
    })
}
