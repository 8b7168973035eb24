//! Sign and verify a node-to-node request with a 1 KiB body, as a node does:
//! the Content-Digest is computed as part of signing and checked as part of
//! verifying. Ids: `httpsig/sign/<alg>`, `httpsig/verify/<alg>`.
//!
//! When SoftHSM2 is installed, the same EC P-256 signature is also made
//! with a key generated on a SoftHSM2 token (a private token directory in
//! a temporary directory) through the pooled PKCS#11 key store:
//! `httpsig/sign/ecdsa-p256-sha256-softhsm`, to set beside the file key's
//! `httpsig/sign/ecdsa-p256-sha256`.

#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use http::Request;
use ndxp_sign::digest::{content_digest, verify_content_digest};
use ndxp_sign::httpsig::*;
use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::rsa::Rsa;

const NOW: i64 = 1_750_000_000;

fn components() -> Vec<Component> {
    vec![
        Component::method(),
        Component::target_uri(),
        Component::field("content-digest"),
        Component::field("ndxp-client"),
        Component::field("ndxp-id"),
    ]
}

fn unsigned() -> http::request::Parts {
    Request::post("https://provider.example:8443/r1/VN/GOV/000.00.00.G22/QLHT/citizen/v1/lookup")
        .header("content-type", "application/json")
        .header("ndxp-client", "VN/GOV/000.00.00.G22/QLHT")
        .header("ndxp-id", "0190a1b2-0000-7000-8000-000000000001")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

/// What a node does to sign an outgoing request whose head it already has:
/// digest the body, add `Content-Digest`, sign.
fn sign_into(
    mut req: http::request::Parts,
    key: &(impl MessageSigner + ?Sized),
    body: &[u8],
) -> http::request::Parts {
    req.headers
        .insert("content-digest", content_digest(body).parse().unwrap());
    let params = SignatureParams::new(components())
        .with_created(NOW)
        .with_keyid(key.keyid())
        .with_alg(key.algorithm());
    sign_request(&mut req, "ndxp", &params, key).unwrap();
    req
}

fn bench(c: &mut Criterion) {
    let body = vec![b'x'; 1024];
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
    let ec = PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap();
    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let keys = [
        SigningKey::new(ec, "ec").unwrap(),
        SigningKey::with_algorithm(rsa.clone(), Algorithm::RsaV15Sha256, "rsa15").unwrap(),
        SigningKey::with_algorithm(rsa, Algorithm::RsaPssSha512, "rsapss").unwrap(),
    ];
    let policy = VerifyPolicy::new(components());
    let mut g = c.benchmark_group("httpsig");
    g.warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3))
        .sample_size(40);
    for key in &keys {
        let alg = key.algorithm().as_str();
        // Building the request head is the application's work, not the
        // signature's: it is set up outside the timed part.
        g.bench_function(format!("sign/{alg}"), |b| {
            b.iter_batched(
                unsigned,
                |req| sign_into(req, black_box(key), black_box(&body)),
                BatchSize::SmallInput,
            )
        });
        let signed = sign_into(unsigned(), key, &body);
        let vk = key.verifying_key().unwrap();
        let resolver = move |k: &str| (k == vk.keyid()).then(|| vk.clone());
        g.bench_function(format!("verify/{alg}"), |b| {
            b.iter(|| {
                let v = verify(
                    &MessageView::request(black_box(&signed)),
                    "ndxp",
                    &policy,
                    NOW,
                    &resolver,
                )
                .unwrap();
                let cd = signed
                    .headers
                    .get("content-digest")
                    .unwrap()
                    .to_str()
                    .unwrap();
                verify_content_digest(cd, black_box(&body)).unwrap();
                v
            })
        });
    }
    if let Some((_dir, store, key)) = softhsm_key() {
        g.bench_function("sign/ecdsa-p256-sha256-softhsm", |b| {
            b.iter_batched(
                unsigned,
                |req| sign_into(req, black_box(&key), black_box(&body)),
                BatchSize::SmallInput,
            )
        });
        // The token's own cost: one C_Sign of a SHA-256 digest on a session
        // held throughout, no pool, no request. The difference to the line
        // above is what the store and RFC 9421 add.
        let handle = store.private_key_handle().unwrap();
        let digest = openssl::sha::sha256(b"signature base");
        store
            .run(|session| {
                g.bench_function("sign/softhsm-raw-c-sign", |b| {
                    b.iter(|| {
                        session
                            .sign(
                                &ndxp_sign::pkcs11::cryptoki::mechanism::Mechanism::Ecdsa,
                                handle,
                                black_box(&digest),
                            )
                            .unwrap()
                    })
                });
                Ok(())
            })
            .unwrap();
    }
    g.finish();
}

/// An EC P-256 key generated on a fresh SoftHSM2 token, or `None` (with a
/// note) when SoftHSM2 is not installed. The temporary directory holds the
/// token and must outlive the key.
fn softhsm_key() -> Option<(
    tempfile::TempDir,
    std::sync::Arc<ndxp_sign::pkcs11::Pkcs11KeyStore>,
    StoreSigningKey,
)> {
    use ndxp_sign::pkcs11::{KeySelector, PinSource, Pkcs11Config, Pkcs11KeyStore, TokenSelector};
    use std::os::unix::fs::PermissionsExt;
    let module = [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    ]
    .into_iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file());
    let Some(module) = module else {
        eprintln!("SoftHSM2 not installed: no softhsm variant");
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\n",
            tokens.display()
        ),
    )
    .unwrap();
    std::env::set_var("SOFTHSM2_CONF", &conf);
    let ok = std::process::Command::new("softhsm2-util")
        .args(["--init-token", "--free", "--label", "bench"])
        .args(["--so-pin", "bench-so", "--pin", "bench-pin"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("softhsm2-util --init-token failed: no softhsm variant");
        return None;
    }
    let pin = dir.path().join("pin");
    std::fs::write(&pin, "bench-pin\n").unwrap();
    std::fs::set_permissions(&pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let config = Pkcs11Config::new(
        module,
        TokenSelector::Label("bench".into()),
        PinSource::File(pin),
        KeySelector::Label("member".into()),
    );
    let store = Pkcs11KeyStore::open(&config).unwrap();
    store
        .generate_key(ndxp_sign::key::KeyAlgorithm::EcP256)
        .unwrap();
    let store = std::sync::Arc::new(store);
    let key = StoreSigningKey::new(store.clone(), "member", "softhsm").unwrap();
    Some((dir, store, key))
}

criterion_group!(benches, bench);
criterion_main!(benches);
