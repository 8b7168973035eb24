//! Signing and verifying the global configuration; the document rules;
//! the anchor file.

#![allow(clippy::unwrap_used)]

mod globalconf_support;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::TimeDelta;
use globalconf_support::*;
use ndxp_core::{MemberId, NodeName, ServiceId, SubsystemId};
use ndxp_registry::globalconf::{
    self, ConfAccessRight, ConfAnchor, ConfCa, ConfDocument, ConfError, ConfGrantee, ConfNode,
    JWS_TYP, MAX_DOCUMENT_LEN,
};
use ndxp_sign::cert::{fingerprint_sha256, Profile};
use ndxp_sign::csr;
use ndxp_sign::jws::{self, JwsAlgorithm};
use ndxp_sign::key::KeyAlgorithm;

const URL: &str = "https://conf.example/globalconf";

/// Verifies `jws` against the fixture's anchor (for [`URL`]) at the
/// fixture's time.
fn verify(f: &Fixture, jws: &str) -> Result<ConfDocument, ConfError> {
    globalconf::verify(jws, &f.anchor(URL), f.now)
}

#[test]
fn signed_document_verifies_and_answers_lookups() {
    let f = Fixture::new();
    let doc = f.doc(7);
    let jws = f.sign(&doc);
    let (header, _) = jws::decode_unverified(&jws, &Default::default()).unwrap();
    assert_eq!(header.alg, JwsAlgorithm::Es256);
    assert_eq!(header.typ.as_deref(), Some(JWS_TYP));
    assert_eq!(header.x5c.len(), 2, "signer and intermediate in x5c");

    let got = verify(&f, &jws).unwrap();
    assert_eq!(got, doc);
    assert_eq!(got.version, 7);

    let provider: MemberId = id(PROVIDER);
    let node1: NodeName = id("node1");
    assert_eq!(
        got.node(&provider, &node1).unwrap().address,
        "https://node1.provider.example:8443"
    );
    assert!(got.node(&provider, &id("node3")).is_none());
    assert_eq!(got.nodes_of(&provider).count(), 2);
    assert_eq!(
        got.node_by_auth_cert(&fingerprint_sha256(f.pki.root_cert()))
            .map(|n| (&n.member, &n.name)),
        Some((&provider, &node1))
    );
    let citizen: ServiceId = id("VN/GOV/000.00.00.H29/CSDLDC/citizen/v1");
    let household: ServiceId = id("VN/GOV/000.00.00.H29/CSDLDC/household/v2");
    assert_eq!(
        got.service(&citizen).unwrap().description,
        "Citizen look-up"
    );
    assert!(got.is_known_subsystem(&id("VN/COM/0101234567/APP")));
    assert!(!got.is_known_subsystem(&id("VN/COM/0101234567/NOPE")));
    assert!(!got.is_known_subsystem(&id("VN/COM/999/APP")));

    let app: SubsystemId = id("VN/COM/0101234567/APP");
    let app2: SubsystemId = id("VN/COM/0101234567/APP2");
    let other: SubsystemId = id("VN/COM/0101234567/OTHER");
    assert!(got.allows(&app, &citizen), "direct right");
    assert!(!got.allows(&app, &household), "APP is not in the group");
    assert!(got.allows(&app2, &household), "right through the group");
    assert!(!got.allows(&app2, &citizen));
    assert!(!got.allows(&other, &citizen));
    assert!(!got.allows(&app, &id("VN/GOV/000.00.00.H29/CSDLDC/citizen/v2")));

    let cas = got.trusted_ca_certs().unwrap();
    assert_eq!(cas.len(), 1);
    assert_eq!(
        cas[0].to_der().unwrap(),
        f.pki.root_cert().to_der().unwrap()
    );
    assert_eq!(got.trusted_tsa_certs().unwrap().len(), 1);
}

#[test]
fn rsa_signer_uses_ps256() {
    let f = Fixture::with_key(KeyAlgorithm::Rsa2048);
    let jws = f.signed(1);
    let (header, _) = jws::decode_unverified(&jws, &Default::default()).unwrap();
    assert_eq!(header.alg, JwsAlgorithm::Ps256);
    assert_eq!(verify(&f, &jws).unwrap().version, 1);
}

#[test]
fn rs256_is_refused_even_from_the_right_signer() {
    let f = Fixture::with_key(KeyAlgorithm::Rsa2048);
    let payload = f.doc(1).to_json().unwrap();
    let jws = jws::sign(
        &payload,
        &f.key,
        JwsAlgorithm::Rs256,
        &f.chain,
        Some(JWS_TYP),
    )
    .unwrap();
    let err = verify(&f, &jws).unwrap_err();
    assert!(matches!(err, ConfError::Envelope(_)), "{err:?}");
}

#[test]
fn signature_by_another_key_is_refused() {
    let f = Fixture::new();
    let other = KeyAlgorithm::EcP256.generate().unwrap();
    let payload = f.doc(1).to_json().unwrap();
    // The legitimate chain in x5c, but signed by a key that is not its leaf's.
    let forged = es256_raw(&header_with(&f.chain), &payload, &other);
    let err = verify(&f, &forged).unwrap_err();
    assert!(matches!(err, ConfError::Signature(_)), "{err:?}");
    // The same construction with the right key passes: the forgery fails
    // only because of the key.
    let honest = es256_raw(&header_with(&f.chain), &payload, &f.key);
    verify(&f, &honest).unwrap();
}

#[test]
fn chain_to_another_ca_is_refused() {
    let f = Fixture::new();
    let rogue = new_pki(&f.tmp, "rogue", "Rogue Root");
    let key = KeyAlgorithm::EcP256.generate().unwrap();
    let chain = sign_chain(&rogue, &id(MGMT), &key);
    let jws = globalconf::sign(&f.doc(1), &key, &chain).unwrap();
    let err = verify(&f, &jws).unwrap_err();
    assert!(matches!(err, ConfError::Untrusted(_)), "{err:?}");
    // Without the intermediate in x5c the chain cannot be built either.
    let jws = globalconf::sign(&f.doc(1), &f.key, &f.chain[..1]).unwrap();
    let err = verify(&f, &jws).unwrap_err();
    assert!(matches!(err, ConfError::Untrusted(_)), "{err:?}");
}

#[test]
fn signer_of_another_member_is_refused_when_the_anchor_names_one() {
    let f = Fixture::new();
    let key = KeyAlgorithm::EcP256.generate().unwrap();
    let chain = sign_chain(&f.pki, &id(PROVIDER), &key);
    let jws = globalconf::sign(&f.doc(1), &key, &chain).unwrap();
    match verify(&f, &jws) {
        Err(ConfError::WrongSigner { expected, found }) => {
            assert_eq!(expected.to_string(), MGMT);
            assert!(found.contains(PROVIDER), "{found}");
        }
        other => panic!("{other:?}"),
    }
    // An anchor that names no signer member accepts any certificate of the
    // trusted CA.
    let mut open = f.anchor(URL);
    open.signer_member = None;
    globalconf::verify(&jws, &open, f.now).unwrap();

    // An authentication (node) certificate of the management member is not
    // a signing certificate.
    let req = csr::build_auth_csr(&id(MGMT), &id("node1"), &[], &[], &key).unwrap();
    let mut chain = vec![f.pki.issue(&req, Profile::Auth, 30).unwrap()];
    chain.extend(f.pki.chain().iter().cloned());
    let jws = globalconf::sign(&f.doc(1), &key, &chain).unwrap();
    let err = verify(&f, &jws).unwrap_err();
    assert!(matches!(err, ConfError::WrongSigner { .. }), "{err:?}");
}

#[test]
fn tampered_payload_is_refused() {
    let f = Fixture::new();
    let jws = f.signed(1);
    let parts: Vec<&str> = jws.split('.').collect();
    let mut doc = f.doc(1);
    doc.version = 99;
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(doc.to_json().unwrap()),
        parts[2]
    );
    let err = verify(&f, &tampered).unwrap_err();
    assert!(matches!(err, ConfError::Signature(_)), "{err:?}");
}

#[test]
fn document_of_another_instance_is_refused() {
    let f = Fixture::new();
    let content = ndxp_registry::globalconf::ConfContent::default();
    let doc = ConfDocument::new(content, id("VN-TEST"), 1, f.now, TimeDelta::days(1)).unwrap();
    match verify(&f, &f.sign(&doc)) {
        Err(ConfError::WrongInstance { expected, found }) => {
            assert_eq!(expected.as_str(), "VN");
            assert_eq!(found.as_str(), "VN-TEST");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn expired_and_future_documents_are_refused() {
    let f = Fixture::new();
    let jws = f.signed(1);
    let anchor = f.anchor(URL);
    globalconf::verify(&jws, &anchor, f.now + TimeDelta::hours(23)).unwrap();
    match globalconf::verify(&jws, &anchor, f.now + TimeDelta::days(1)) {
        Err(ConfError::Expired { expires_at }) => {
            assert_eq!(expires_at, f.now + TimeDelta::days(1));
        }
        other => panic!("{other:?}"),
    }
    let future = f.sign(&f.doc_at(1, f.now + TimeDelta::hours(1)));
    let err = globalconf::verify(&future, &anchor, f.now).unwrap_err();
    assert!(matches!(err, ConfError::FromFuture { .. }), "{err:?}");
    // Within the allowed skew it is accepted.
    let slightly = f.sign(&f.doc_at(1, f.now + TimeDelta::minutes(2)));
    globalconf::verify(&slightly, &anchor, f.now).unwrap();
}

#[test]
fn correctly_signed_garbage_is_malformed() {
    let f = Fixture::new();
    let anchor = f.anchor(URL);
    let good = String::from_utf8(f.doc(1).to_json().unwrap()).unwrap();
    let mut unknown: serde_json::Value = serde_json::from_str(&good).unwrap();
    unknown["extra"] = serde_json::json!(true);
    let mut bad_id: serde_json::Value = serde_json::from_str(&good).unwrap();
    bad_id["members"][1]["id"] = serde_json::json!("VN/GOV/000..00");
    let mut dup_node: serde_json::Value = serde_json::from_str(&good).unwrap();
    let n = dup_node["nodes"][0].clone();
    dup_node["nodes"].as_array_mut().unwrap().push(n);
    let cases: Vec<(Vec<u8>, Option<&str>)> = vec![
        (b"not json at all".to_vec(), None),
        (b"".to_vec(), None),
        (b"[1,2,3]".to_vec(), None),
        (vec![0xff, 0xfe, 0x00], None),
        (
            good.replace("ndxp-globalconf/1", "ndxp-globalconf/2")
                .into_bytes(),
            Some("format"),
        ),
        (unknown.to_string().into_bytes(), Some("extra")),
        (bad_id.to_string().into_bytes(), Some("..")),
        (dup_node.to_string().into_bytes(), Some("listed twice")),
    ];
    for (payload, needle) in cases {
        let jws = jws::sign(
            &payload,
            &f.key,
            JwsAlgorithm::Es256,
            &f.chain,
            Some(JWS_TYP),
        )
        .unwrap();
        match globalconf::verify(&jws, &anchor, f.now) {
            Err(ConfError::Malformed(e)) => {
                if let Some(needle) = needle {
                    assert!(e.to_string().contains(needle), "{needle}: {e}");
                }
            }
            other => panic!("{:?}: {other:?}", String::from_utf8_lossy(&payload)),
        }
    }
}

#[test]
fn wrong_type_oversize_and_unsigned_input_are_refused() {
    let f = Fixture::new();
    let anchor = f.anchor(URL);
    let payload = f.doc(1).to_json().unwrap();
    let other_typ =
        jws::sign(&payload, &f.key, JwsAlgorithm::Es256, &f.chain, Some("JWT")).unwrap();
    let err = globalconf::verify(&other_typ, &anchor, f.now).unwrap_err();
    assert!(matches!(err, ConfError::WrongType { .. }), "{err:?}");

    let huge = "a".repeat(MAX_DOCUMENT_LEN + 1);
    let err = globalconf::verify(&huge, &anchor, f.now).unwrap_err();
    assert!(matches!(err, ConfError::TooLarge { .. }), "{err:?}");

    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"none","typ":"{JWS_TYP}"}}"#)),
        URL_SAFE_NO_PAD.encode(&payload)
    );
    let err = globalconf::verify(&none, &anchor, f.now).unwrap_err();
    assert!(matches!(err, ConfError::Envelope(_)), "{err:?}");

    let no_x5c = jws::sign(&payload, &f.key, JwsAlgorithm::Es256, &[], Some(JWS_TYP)).unwrap();
    let err = globalconf::verify(&no_x5c, &anchor, f.now).unwrap_err();
    assert!(matches!(err, ConfError::Untrusted(_)), "{err:?}");

    for junk in ["", ".", "..", "a.b.c", "a.b.c.d"] {
        assert!(globalconf::verify(junk, &anchor, f.now).is_err(), "{junk}");
    }
}

#[test]
fn document_rules_are_enforced_when_building() {
    let f = Fixture::new();
    let build = |c| ConfDocument::new(c, id("VN"), 1, f.now, TimeDelta::days(1));
    let expect_invalid = |r: Result<ConfDocument, ConfError>, needle: &str| match r {
        Err(ConfError::Invalid { reason }) => {
            assert!(reason.contains(needle), "{needle}: {reason}")
        }
        other => panic!("{needle}: {other:?}"),
    };
    build(f.content()).unwrap();

    let mut c = f.content();
    c.nodes[0].address = "http://node1.provider.example".into();
    expect_invalid(build(c), "https://");

    let mut c = f.content();
    c.nodes[0].auth_cert_sha256 = vec!["AB".repeat(32)];
    expect_invalid(build(c), "lowercase hex");

    let mut c = f.content();
    c.nodes.push(ConfNode {
        member: id("VN/GOV/UNLISTED"),
        name: id("n"),
        address: "https://x.example".into(),
        auth_cert_sha256: vec![],
    });
    expect_invalid(build(c), "not listed");

    let mut c = f.content();
    c.members[1].id = id("EE/GOV/000.00.00.H29");
    expect_invalid(build(c), "not in instance VN");

    let mut c = f.content();
    c.members[2].subsystems.push("APP".into());
    expect_invalid(build(c), "listed twice");

    let mut c = f.content();
    c.cas.push(ConfCa {
        name: "broken".into(),
        cert_pem: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into(),
        ocsp_urls: vec![],
    });
    expect_invalid(build(c), "broken");

    let mut c = f.content();
    c.access_rights.push(ConfAccessRight {
        service: id("VN/GOV/000.00.00.H29/CSDLDC/nothing/v1"),
        grantee: ConfGrantee::Group("banks".into()),
    });
    expect_invalid(build(c), "nothing/v1");

    let mut c = f.content();
    c.access_rights[1].grantee = ConfGrantee::Group("insurers".into());
    expect_invalid(build(c), "insurers");

    let mut c = f.content();
    c.groups[0].members.push(id("VN/COM/0101234567/NOPE"));
    expect_invalid(build(c), "NOPE");

    let mut c = f.content();
    c.services[1].sunset_at = Some(f.now - TimeDelta::days(1));
    expect_invalid(build(c), "sunset_at");

    expect_invalid(
        ConfDocument::new(f.content(), id("VN"), 0, f.now, TimeDelta::days(1)),
        "version",
    );
    expect_invalid(
        ConfDocument::new(f.content(), id("VN"), 1, f.now, TimeDelta::zero()),
        "expires_at",
    );
    // sign() checks too, so a document edited after building cannot be
    // published broken.
    let mut doc = f.doc(1);
    doc.format = "other".into();
    assert!(matches!(
        globalconf::sign(&doc, &f.key, &f.chain),
        Err(ConfError::Invalid { .. })
    ));
}

#[test]
fn anchor_round_trips_and_bad_anchors_are_refused() {
    let f = Fixture::new();
    let anchor = f.anchor(URL);
    let json = anchor.to_json().unwrap();
    assert_eq!(ConfAnchor::from_json(json.as_bytes()).unwrap(), anchor);
    let path = f.tmp.path().join("anchor.json");
    std::fs::write(&path, &json).unwrap();
    assert_eq!(ConfAnchor::load(&path).unwrap(), anchor);
    assert!(matches!(
        ConfAnchor::load(&f.tmp.path().join("missing.json")),
        Err(ConfError::Io { .. })
    ));

    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    let edit = |k: &str, v: serde_json::Value| {
        let mut x = value.clone();
        x[k] = v;
        ConfAnchor::from_json(x.to_string().as_bytes())
    };
    for (k, v) in [("extra", "x"), ("instance", "V N")] {
        let r = edit(k, v.into());
        assert!(matches!(r, Err(ConfError::AnchorJson(_))), "{k} = {v:?}");
    }
    for (k, v) in [
        ("format", "ndxp-anchor/9"),
        ("conf_url", "ftp://x/y"),
        ("trust_anchors_pem", ""),
        ("trust_anchors_pem", "garbage"),
        ("signer_member", "EE/GOV/MGMT"),
    ] {
        let r = edit(k, v.into());
        assert!(matches!(r, Err(ConfError::Anchor { .. })), "{k} = {v:?}");
    }
    let mut no_signer = value.clone();
    no_signer.as_object_mut().unwrap().remove("signer_member");
    assert_eq!(
        ConfAnchor::from_json(no_signer.to_string().as_bytes())
            .unwrap()
            .signer_member,
        None
    );
}
