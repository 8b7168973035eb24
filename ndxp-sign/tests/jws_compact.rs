//! JWS: RFC 7515 A.3 vector, round trips, tampering, chains and limits.

#![allow(clippy::unwrap_used)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, TimeZone, Utc};
use ndxp_sign::jws::{self, JwsAlgorithm, JwsError, VerifyOptions};
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

// RFC 7515 Appendix A.3 (ES256).
const A3_JWS: &str = "eyJhbGciOiJFUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.DtEhU3ljbEg8L38VWAfUAqOyKAM6-Xx-F4GawxaepmXFCgfTjDxw5djxLa8ISlSApmWQxfKTUJqPP3-Kg6NU1Q";
const A3_X: &str = "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU";
const A3_Y: &str = "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0";

fn a3_key() -> PKey<openssl::pkey::Public> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let x = BigNum::from_slice(&URL_SAFE_NO_PAD.decode(A3_X).unwrap()).unwrap();
    let y = BigNum::from_slice(&URL_SAFE_NO_PAD.decode(A3_Y).unwrap()).unwrap();
    let ec = EcKey::from_public_key_affine_coordinates(&group, &x, &y).unwrap();
    PKey::from_ec_key(ec).unwrap()
}

#[test]
fn rfc7515_a3_es256_vector_verifies() {
    let v = jws::verify_with_key(A3_JWS, &a3_key(), &VerifyOptions::default()).unwrap();
    assert_eq!(v.header.alg, JwsAlgorithm::Es256);
    assert_eq!(
        v.payload,
        b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}"
    );
    // Same vector with the last byte of s changed must fail: proves the
    // raw r||s path is used rather than accepted blindly.
    let (head, sig) = A3_JWS.rsplit_once('.').unwrap();
    let mut raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    raw[63] ^= 0x01;
    let bad = format!("{head}.{}", URL_SAFE_NO_PAD.encode(raw));
    assert!(matches!(
        jws::verify_with_key(&bad, &a3_key(), &VerifyOptions::default()),
        Err(JwsError::InvalidSignature)
    ));
    // A DER-encoded signature is not accepted for ES256.
    let raw = URL_SAFE_NO_PAD.decode(sig).unwrap();
    let der = openssl::ecdsa::EcdsaSig::from_private_components(
        BigNum::from_slice(&raw[..32]).unwrap(),
        BigNum::from_slice(&raw[32..]).unwrap(),
    )
    .unwrap()
    .to_der()
    .unwrap();
    let der_jws = format!("{head}.{}", URL_SAFE_NO_PAD.encode(der));
    assert!(jws::verify_with_key(&der_jws, &a3_key(), &VerifyOptions::default()).is_err());
}

// ---- a small test PKI -------------------------------------------------------

fn ec_key() -> PKey<Private> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn rsa_key() -> PKey<Private> {
    PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
}

fn ts(y: i32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, 6, 1, 0, 0, 0).unwrap()
}

fn cert(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    ca: bool,
    key_usage: KeyUsage,
    years: (i32, i32),
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    let serial = BigNum::from_u32(rand_serial())
        .unwrap()
        .to_asn1_integer()
        .unwrap();
    b.set_serial_number(&serial).unwrap();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(issuer.map_or(&name, |(c, _)| c.subject_name()))
        .unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(ts(years.0).timestamp()).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(ts(years.1).timestamp()).unwrap())
        .unwrap();
    let mut bc = BasicConstraints::new();
    if ca {
        bc.critical().ca();
    }
    b.append_extension(bc.build().unwrap()).unwrap();
    let mut ku = key_usage;
    b.append_extension(ku.critical().build().unwrap()).unwrap();
    let signer = issuer.map_or(key, |(_, k)| k);
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

fn rand_serial() -> u32 {
    let mut buf = [0u8; 4];
    openssl::rand::rand_bytes(&mut buf).unwrap();
    u32::from_be_bytes(buf) >> 1
}

fn ca_usage() -> KeyUsage {
    let mut k = KeyUsage::new();
    k.key_cert_sign().crl_sign();
    k
}

fn signing_usage() -> KeyUsage {
    let mut k = KeyUsage::new();
    k.digital_signature().non_repudiation();
    k
}

struct Pki {
    root: X509,
    inter: X509,
    leaf_key: PKey<Private>,
    leaf: X509,
}

fn pki(leaf_key: PKey<Private>) -> Pki {
    let root_key = ec_key();
    let root = cert("Root", &root_key, None, true, ca_usage(), (2020, 2040));
    let inter_key = ec_key();
    let inter = cert(
        "Intermediate",
        &inter_key,
        Some((&root, &root_key)),
        true,
        ca_usage(),
        (2020, 2035),
    );
    let leaf = cert(
        "Management signer",
        &leaf_key,
        Some((&inter, &inter_key)),
        false,
        signing_usage(),
        (2024, 2027),
    );
    Pki {
        root,
        inter,
        leaf_key,
        leaf,
    }
}

const CONF: &[u8] = b"{\"instance\":\"VN\",\"version\":7}";

#[test]
fn es256_and_ps256_round_trip_with_chain() {
    for (alg, key) in [
        (JwsAlgorithm::Es256, ec_key()),
        (JwsAlgorithm::Ps256, rsa_key()),
        (JwsAlgorithm::Ps512, rsa_key()),
        (JwsAlgorithm::Rs256, rsa_key()),
    ] {
        let p = pki(key);
        let chain = [p.leaf.clone(), p.inter.clone()];
        let token = jws::sign(CONF, &p.leaf_key, alg, &chain, Some("JOSE")).unwrap();
        let v = jws::verify_with_anchors(
            &token,
            std::slice::from_ref(&p.root),
            ts(2025),
            &VerifyOptions::default(),
        )
        .unwrap();
        assert_eq!(v.payload, CONF, "{alg}");
        assert_eq!(v.header.alg, alg);
        assert_eq!(v.header.x5c.len(), 2);
        assert_eq!(v.chain.len(), 3, "leaf, intermediate, root");
        assert_eq!(
            v.chain[2].to_der().unwrap(),
            p.root.to_der().unwrap(),
            "chain ends at the anchor"
        );
        if alg == JwsAlgorithm::Es256 {
            let sig = token.rsplit('.').next().unwrap();
            assert_eq!(URL_SAFE_NO_PAD.decode(sig).unwrap().len(), 64);
        }
    }
}

fn tamper_part(token: &str, idx: usize, f: impl Fn(&mut Vec<u8>)) -> String {
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut raw = URL_SAFE_NO_PAD.decode(&parts[idx]).unwrap();
    f(&mut raw);
    parts[idx] = URL_SAFE_NO_PAD.encode(raw);
    parts.join(".")
}

#[test]
fn tampering_is_rejected() {
    let p = pki(ec_key());
    let chain = [p.leaf.clone(), p.inter.clone()];
    let token = jws::sign(CONF, &p.leaf_key, JwsAlgorithm::Es256, &chain, None).unwrap();
    let anchors = std::slice::from_ref(&p.root);
    let check = |t: &str| jws::verify_with_anchors(t, anchors, ts(2025), &VerifyOptions::default());
    assert!(check(&token).is_ok());

    let payload = tamper_part(&token, 1, |b| b[10] ^= 1);
    assert!(matches!(check(&payload), Err(JwsError::InvalidSignature)));

    // Header with an extra member, still valid JSON and the same chain.
    let header = tamper_part(&token, 0, |b| {
        let mut v: serde_json::Value = serde_json::from_slice(b).unwrap();
        v["kid"] = serde_json::Value::String("x".into());
        *b = v.to_string().into_bytes();
    });
    assert!(matches!(check(&header), Err(JwsError::InvalidSignature)));

    let sig = tamper_part(&token, 2, |b| b[0] ^= 0x80);
    assert!(matches!(check(&sig), Err(JwsError::InvalidSignature)));

    // Wrong time: leaf not yet valid / expired.
    for at in [ts(2023), ts(2028)] {
        let err = jws::verify_with_anchors(&token, anchors, at, &VerifyOptions::default());
        assert!(matches!(err, Err(JwsError::UntrustedChain(_))), "{err:?}");
    }
}

#[test]
fn untrusted_chain_is_rejected() {
    let p = pki(ec_key());
    let other = pki(ec_key());
    let token = jws::sign(
        CONF,
        &p.leaf_key,
        JwsAlgorithm::Es256,
        &[p.leaf.clone(), p.inter.clone()],
        None,
    )
    .unwrap();
    let err = jws::verify_with_anchors(
        &token,
        std::slice::from_ref(&other.root),
        ts(2025),
        &VerifyOptions::default(),
    );
    assert!(matches!(err, Err(JwsError::UntrustedChain(_))), "{err:?}");
    // Missing intermediate: cannot build the chain.
    let token = jws::sign(
        CONF,
        &p.leaf_key,
        JwsAlgorithm::Es256,
        std::slice::from_ref(&p.leaf),
        None,
    )
    .unwrap();
    let err = jws::verify_with_anchors(
        &token,
        std::slice::from_ref(&p.root),
        ts(2025),
        &VerifyOptions::default(),
    );
    assert!(matches!(err, Err(JwsError::UntrustedChain(_))), "{err:?}");
    // No x5c at all.
    let token = jws::sign(CONF, &p.leaf_key, JwsAlgorithm::Es256, &[], None).unwrap();
    let err = jws::verify_with_anchors(
        &token,
        std::slice::from_ref(&p.root),
        ts(2025),
        &VerifyOptions::default(),
    );
    assert!(matches!(err, Err(JwsError::MissingX5c)), "{err:?}");
}

#[test]
fn signer_cert_must_allow_signing_and_match_key() {
    let root_key = ec_key();
    let root = cert("Root", &root_key, None, true, ca_usage(), (2020, 2040));
    let leaf_key = ec_key();
    let mut enc = KeyUsage::new();
    enc.key_agreement();
    let leaf = cert(
        "No signing",
        &leaf_key,
        Some((&root, &root_key)),
        false,
        enc,
        (2024, 2027),
    );
    let token = jws::sign(
        CONF,
        &leaf_key,
        JwsAlgorithm::Es256,
        std::slice::from_ref(&leaf),
        None,
    )
    .unwrap();
    let err = jws::verify_with_anchors(&token, &[root], ts(2025), &VerifyOptions::default());
    assert!(matches!(err, Err(JwsError::KeyUsage)), "{err:?}");

    let err = jws::sign(CONF, &ec_key(), JwsAlgorithm::Es256, &[leaf], None);
    assert!(
        matches!(err, Err(JwsError::KeyCertificateMismatch)),
        "{err:?}"
    );
}

#[test]
fn alg_none_crit_and_malformed_input_rejected() {
    let opts = VerifyOptions::default();
    let key = a3_key();
    let enc = |s: &str| URL_SAFE_NO_PAD.encode(s);
    let none = format!("{}.{}.", enc(r#"{"alg":"none"}"#), enc("x"));
    assert!(matches!(
        jws::verify_with_key(&none, &key, &opts),
        Err(JwsError::AlgNone)
    ));
    let hs = format!("{}.{}.AAAA", enc(r#"{"alg":"HS256"}"#), enc("x"));
    assert!(matches!(
        jws::verify_with_key(&hs, &key, &opts),
        Err(JwsError::UnsupportedAlgorithm(_))
    ));
    let crit = format!(
        "{}.{}.AAAA",
        enc(r#"{"alg":"ES256","crit":["exp"],"exp":1}"#),
        enc("x")
    );
    assert!(matches!(
        jws::verify_with_key(&crit, &key, &opts),
        Err(JwsError::UnsupportedCritical(v)) if v == ["exp"]
    ));
    // Padding or standard-alphabet characters are not base64url.
    let padded = A3_JWS.replacen('.', "=.", 1);
    assert!(matches!(
        jws::verify_with_key(&padded, &key, &opts),
        Err(JwsError::Base64("header"))
    ));
    let std_alpha = A3_JWS.replace('-', "+");
    assert!(jws::verify_with_key(&std_alpha, &key, &opts).is_err());
    assert!(matches!(
        jws::verify_with_key("a.b", &key, &opts),
        Err(JwsError::Malformed(_))
    ));
    assert!(matches!(
        jws::verify_with_key(&format!("{A3_JWS}.x"), &key, &opts),
        Err(JwsError::Malformed(_))
    ));
    let small = VerifyOptions {
        max_len: 64,
        ..VerifyOptions::default()
    };
    assert!(matches!(
        jws::verify_with_key(A3_JWS, &key, &small),
        Err(JwsError::TooLarge { .. })
    ));
    let es_only_rsa = VerifyOptions {
        allowed_algorithms: vec![JwsAlgorithm::Ps256],
        ..VerifyOptions::default()
    };
    assert!(matches!(
        jws::verify_with_key(A3_JWS, &key, &es_only_rsa),
        Err(JwsError::AlgorithmNotAllowed(JwsAlgorithm::Es256))
    ));
}

#[test]
fn key_type_must_fit_algorithm() {
    let rsa = rsa_key();
    assert!(matches!(
        jws::sign(CONF, &rsa, JwsAlgorithm::Es256, &[], None),
        Err(JwsError::UnsuitableKey { .. })
    ));
    let small = PKey::from_rsa(Rsa::generate(1024).unwrap()).unwrap();
    assert!(matches!(
        jws::sign(CONF, &small, JwsAlgorithm::Ps256, &[], None),
        Err(JwsError::UnsuitableKey { .. })
    ));
    // An ES256 header verified with an RSA key is rejected before crypto.
    let rsa_pub = PKey::public_key_from_der(&rsa.public_key_to_der().unwrap()).unwrap();
    assert!(matches!(
        jws::verify_with_key(A3_JWS, &rsa_pub, &VerifyOptions::default()),
        Err(JwsError::UnsuitableKey { .. })
    ));
}

#[test]
fn a_jws_signed_through_a_key_store_verifies_for_every_algorithm() {
    use ndxp_sign::key::{FileKeyStore, KeyAlgorithm};
    let ec = KeyAlgorithm::EcP256.generate().unwrap();
    let rsa = KeyAlgorithm::Rsa2048.generate().unwrap();
    let mut store = FileKeyStore::new();
    store.insert("ec", ec.clone(), None);
    store.insert("rsa", rsa.clone(), None);
    let opts = VerifyOptions {
        allowed_algorithms: JwsAlgorithm::ALL.to_vec(),
        ..VerifyOptions::default()
    };
    for (name, key, alg) in [
        ("ec", &ec, JwsAlgorithm::Es256),
        ("rsa", &rsa, JwsAlgorithm::Ps256),
        ("rsa", &rsa, JwsAlgorithm::Ps512),
        ("rsa", &rsa, JwsAlgorithm::Rs256),
    ] {
        let jws = jws::sign_with_store(b"{\"a\":1}", &store, name, alg, &[], Some("t")).unwrap();
        let v = jws::verify_with_key(&jws, key, &opts)
            .unwrap_or_else(|e| panic!("{alg:?} through the store: {e}"));
        assert_eq!(v.header.alg, alg);
        assert_eq!(v.payload, b"{\"a\":1}");
        // Another key does not verify it.
        let other = if name == "ec" { &rsa } else { &ec };
        assert!(jws::verify_with_key(&jws, other, &opts).is_err());
    }
    // A key of the wrong type for the algorithm, and an unknown key name.
    assert!(matches!(
        jws::sign_with_store(b"x", &store, "ec", JwsAlgorithm::Ps256, &[], None),
        Err(JwsError::UnsuitableKey { .. })
    ));
    assert!(matches!(
        jws::sign_with_store(b"x", &store, "nope", JwsAlgorithm::Es256, &[], None),
        Err(JwsError::KeyStore(_))
    ));
}
