#![allow(clippy::unwrap_used)]
//! The PKCS#11 key store against SoftHSM2: keys generated on a token sign
//! what the rest of the crate and stock `openssl` accept, never leave the
//! token, and every misconfiguration gets its own error.
//!
//! Each test process gets a private SoftHSM2 token directory (a
//! `SOFTHSM2_CONF` in a temporary directory), so the system's tokens are
//! never touched and processes run in parallel. Every test has its own
//! token, all made before the module is first loaded (SoftHSM2 reads its
//! token directory when it is initialised). Without SoftHSM2 the tests
//! skip with a message, except under CI (`CI=true`), where they fail.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use ndxp_sign::cert::{Identity, Profile};
use ndxp_sign::csr;
use ndxp_sign::httpsig::{
    self, Algorithm, Component, MessageSigner, MessageView, SignatureParams, StoreSigningKey,
    VerifyPolicy,
};
use ndxp_sign::key::{KeyAlgorithm, KeyError, KeyStore, RsaPadding};
use ndxp_sign::pkcs11::cryptoki::object::{AttributeInfo, AttributeType};
use ndxp_sign::pkcs11::{
    KeySelector, PinSource, Pkcs11Config, Pkcs11Error, Pkcs11KeyStore, TokenSelector,
};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Public};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Verifier};

const PIN: &str = "4711-user-pin";
const SO_PIN: &str = "so-pin-0815";

/// One token per test, made before the module is loaded.
const TOKENS: &[&str] = &[
    "ec-sign",
    "rsa-sign",
    "httpsig",
    "csr",
    "extract",
    "wrong-pin",
    "no-key",
    "pin-file",
    "pin-env",
    "pool",
    "reopen",
    "exists",
    "debug",
    "removed",
];

struct Hsm {
    module: PathBuf,
    dir: PathBuf,
}

fn module_path() -> Option<PathBuf> {
    // An explicit module (another SoftHSM2 build) replaces the search.
    if let Some(p) = std::env::var_os("NDXP_TEST_PKCS11_MODULE") {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn setup() -> Option<Hsm> {
    let module = module_path();
    let util = Command::new("softhsm2-util").arg("--version").output();
    let (Some(module), Ok(out)) = (module, util) else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "SoftHSM2 is not installed (softhsm2-util and libsofthsm2.so); CI must install it (.ci/run)"
        );
        eprintln!("skipping: SoftHSM2 is not installed (apt-get install softhsm2)");
        return None;
    };
    assert!(out.status.success(), "softhsm2-util --version failed");
    let dir = process_dir();
    let tokens = dir.join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        ),
    )
    .unwrap();
    // Before any thread loads the module; SoftHSM2 reads it at
    // C_Initialize.
    std::env::set_var("SOFTHSM2_CONF", &conf);
    for label in TOKENS {
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", label])
            .args(["--so-pin", SO_PIN, "--pin", PIN])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "softhsm2-util --init-token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Some(Hsm { module, dir })
}

/// This process's token directory, `<target tmp>/softhsm/<pid>`. It lives
/// as long as the process (statics are never dropped), so each setup first
/// removes the directories of test processes that have ended.
fn process_dir() -> PathBuf {
    let base = Path::new(env!("CARGO_TARGET_TMPDIR")).join("softhsm");
    std::fs::create_dir_all(&base).unwrap();
    for entry in std::fs::read_dir(&base).unwrap().flatten() {
        let name = entry.file_name();
        let alive = name
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    let dir = base.join(std::process::id().to_string());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    dir
}

fn hsm() -> Option<&'static Hsm> {
    static HSM: OnceLock<Option<Hsm>> = OnceLock::new();
    HSM.get_or_init(setup).as_ref()
}

/// A PIN file with mode 0600 in the test directory.
fn pin_file(hsm: &Hsm, name: &str, pin: &str, mode: u32) -> PathBuf {
    let path = hsm.dir.join(format!("{name}.pin"));
    std::fs::write(&path, format!("{pin}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

fn config(hsm: &Hsm, token: &str, key: &str) -> Pkcs11Config {
    Pkcs11Config::new(
        &hsm.module,
        TokenSelector::Label(token.into()),
        PinSource::File(pin_file(hsm, token, PIN, 0o600)),
        KeySelector::Label(key.into()),
    )
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Verifies `sig` over `data` with the `openssl dgst` command line.
fn openssl_dgst_verify(
    dir: &Path,
    public: &PKey<Public>,
    digest: &str,
    extra: &[&str],
    data: &[u8],
    sig: &[u8],
) -> (bool, String) {
    let d = tempfile::tempdir_in(dir).unwrap();
    let (pubf, dataf, sigf) = (
        d.path().join("pub.pem"),
        d.path().join("data"),
        d.path().join("sig"),
    );
    std::fs::write(&pubf, public.public_key_to_pem().unwrap()).unwrap();
    std::fs::write(&dataf, data).unwrap();
    std::fs::write(&sigf, sig).unwrap();
    let mut args = vec!["dgst", digest, "-verify", pubf.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend([
        "-signature",
        sigf.to_str().unwrap(),
        dataf.to_str().unwrap(),
    ]);
    openssl(&args)
}

fn pkcs11_err(e: KeyError) -> Pkcs11Error {
    match e {
        KeyError::Pkcs11(e) => *e,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

#[test]
fn ec_key_generated_on_the_token_signs_what_openssl_verifies() {
    let Some(hsm) = hsm() else { return };
    let store = Pkcs11KeyStore::open(&config(hsm, "ec-sign", "member-sign")).unwrap();
    let public = store.generate_key(KeyAlgorithm::EcP256).unwrap();
    assert_eq!(KeyAlgorithm::of(&public), Some(KeyAlgorithm::EcP256));
    assert!(store.public_key("member-sign").unwrap().public_eq(&public));

    let data = b"a document signed on the token";
    let sig = store
        .sign(
            "member-sign",
            MessageDigest::sha256(),
            RsaPadding::Pss,
            data,
        )
        .unwrap();
    // DER ECDSA-Sig-Value, like the file store: OpenSSL's verifier takes it.
    let mut v = Verifier::new(MessageDigest::sha256(), &public).unwrap();
    assert!(v.verify_oneshot(&sig, data).unwrap());
    let (ok, out) = openssl_dgst_verify(&hsm.dir, &public, "-sha256", &[], data, &sig);
    assert!(ok && out.contains("Verified OK"), "{out}");
    // A changed message does not verify.
    let (ok, _) = openssl_dgst_verify(&hsm.dir, &public, "-sha256", &[], b"another document", &sig);
    assert!(!ok);

    // SHA-384 and SHA-512 digests too; SHA-1 is refused.
    for md in [MessageDigest::sha384(), MessageDigest::sha512()] {
        let sig = store
            .sign("member-sign", md, RsaPadding::Pss, data)
            .unwrap();
        let mut v = Verifier::new(md, &public).unwrap();
        assert!(v.verify_oneshot(&sig, data).unwrap());
    }
    let err = store
        .sign("member-sign", MessageDigest::sha1(), RsaPadding::Pss, data)
        .unwrap_err();
    assert!(matches!(pkcs11_err(err), Pkcs11Error::UnsupportedDigest(_)));

    // Other names are not this store's key.
    assert!(matches!(
        store.sign("other", MessageDigest::sha256(), RsaPadding::Pss, data),
        Err(KeyError::UnknownKey(_))
    ));
}

#[test]
fn rsa_key_on_the_token_signs_pss_and_pkcs1_v1_5() {
    let Some(hsm) = hsm() else { return };
    let store = Pkcs11KeyStore::open(&config(hsm, "rsa-sign", "ca-root")).unwrap();
    let public = store.generate_key(KeyAlgorithm::Rsa2048).unwrap();
    assert_eq!(public.bits(), 2048);
    let data = b"tbsCertificate, say";

    let pss = store
        .sign("ca-root", MessageDigest::sha512(), RsaPadding::Pss, data)
        .unwrap();
    let mut v = Verifier::new(MessageDigest::sha512(), &public).unwrap();
    v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
    v.set_rsa_pss_saltlen(RsaPssSaltlen::DIGEST_LENGTH).unwrap();
    assert!(v.verify_oneshot(&pss, data).unwrap());
    let (ok, out) = openssl_dgst_verify(
        &hsm.dir,
        &public,
        "-sha512",
        &[
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:digest",
        ],
        data,
        &pss,
    );
    assert!(ok && out.contains("Verified OK"), "{out}");

    let v15 = store
        .sign(
            "ca-root",
            MessageDigest::sha256(),
            RsaPadding::Pkcs1v15,
            data,
        )
        .unwrap();
    let (ok, out) = openssl_dgst_verify(&hsm.dir, &public, "-sha256", &[], data, &v15);
    assert!(ok && out.contains("Verified OK"), "{out}");
}

#[test]
fn rfc9421_signature_made_on_the_token_verifies_with_the_crate_verifier() {
    let Some(hsm) = hsm() else { return };
    let ec_store = Pkcs11KeyStore::open(&config(hsm, "httpsig", "member-ec")).unwrap();
    ec_store.generate_key(KeyAlgorithm::EcP256).unwrap();
    let rsa_store = Arc::new(Pkcs11KeyStore::open(&config(hsm, "httpsig", "member-rsa")).unwrap());
    rsa_store.generate_key(KeyAlgorithm::Rsa2048).unwrap();
    let ec_store: Arc<dyn KeyStore> = Arc::new(ec_store);
    let ec_store_again = ec_store.clone();

    let keys = [
        StoreSigningKey::new(ec_store, "member-ec", "m-ec").unwrap(),
        StoreSigningKey::new(rsa_store.clone(), "member-rsa", "m-pss").unwrap(),
        StoreSigningKey::with_algorithm(rsa_store, "member-rsa", Algorithm::RsaV15Sha256, "m-v15")
            .unwrap(),
    ];
    let expected = [
        Algorithm::EcdsaP256Sha256,
        Algorithm::RsaPssSha512,
        Algorithm::RsaV15Sha256,
    ];
    for (key, alg) in keys.iter().zip(expected) {
        assert_eq!(key.algorithm(), alg);
        let (mut parts, ()) = http::Request::post("https://node.example/r1/VN/GOV/1/A/s/v1")
            .header("content-digest", ndxp_sign::digest::content_digest(b"{}"))
            .body(())
            .unwrap()
            .into_parts();
        let params = SignatureParams::new(vec![
            Component::method(),
            Component::target_uri(),
            Component::field("content-digest"),
        ])
        .with_created(1_700_000_000)
        .with_keyid(key.keyid())
        .with_alg(alg);
        httpsig::sign_request(&mut parts, "ndxp", &params, key).unwrap();

        let public = key.verifying_key().unwrap();
        let policy = VerifyPolicy::new(vec![Component::field("content-digest")]);
        let resolver = |id: &str| (id == key.keyid()).then(|| public.clone());
        let verified = httpsig::verify(
            &MessageView::request(&parts),
            "ndxp",
            &policy,
            1_700_000_010,
            &resolver,
        )
        .unwrap();
        assert_eq!(verified.algorithm, alg);

        // Tampering with a covered component breaks it.
        parts.headers.insert(
            "content-digest",
            ndxp_sign::digest::content_digest(b"{\"x\":1}")
                .parse()
                .unwrap(),
        );
        assert!(httpsig::verify(
            &MessageView::request(&parts),
            "ndxp",
            &policy,
            1_700_000_010,
            &resolver
        )
        .is_err());
    }
    // An EC token key cannot be declared as RSA.
    let err =
        StoreSigningKey::with_algorithm(ec_store_again, "member-ec", Algorithm::RsaPssSha512, "x");
    assert!(matches!(
        err,
        Err(httpsig::SignatureError::UnsuitableKey { .. })
    ));
}

#[test]
fn csr_signed_on_the_token_passes_openssl_req_verify_and_the_ca_check() {
    let Some(hsm) = hsm() else { return };
    let member: ndxp_core::id::MemberId = "VN/GOV/000.00.00.H29".parse().unwrap();
    let node: ndxp_core::id::NodeName = "node1".parse().unwrap();
    for (label, alg) in [
        ("csr-ec", KeyAlgorithm::EcP256),
        ("csr-rsa", KeyAlgorithm::Rsa2048),
    ] {
        let store = Pkcs11KeyStore::open(&config(hsm, "csr", label)).unwrap();
        // Before a key is chosen there is nothing to sign with.
        assert!(matches!(
            store.build_csr(&Identity::Member(member.clone()), &[], &[]),
            Err(Pkcs11Error::NoKeySelected)
        ));
        let public = store.generate_key(alg).unwrap();
        let identity = Identity::Node(member.clone(), node.clone());
        let req = store
            .build_csr(&identity, &["node1.example.vn".to_string()], &[])
            .unwrap();
        assert!(req.public_key().unwrap().public_eq(&public));
        let pem = req.to_pem().unwrap();

        let path = hsm.dir.join(format!("{label}.csr"));
        std::fs::write(&path, &pem).unwrap();
        let (ok, out) = openssl(&["req", "-in", path.to_str().unwrap(), "-noout", "-verify"]);
        assert!(ok, "{out}");
        assert!(
            out.contains("verify OK")
                || out.contains("Certificate request self-signature verify OK"),
            "{out}"
        );

        let parsed = csr::parse_csr(&pem).unwrap();
        let wanted = csr::read_request(&parsed, Profile::Auth).unwrap();
        assert_eq!(wanted.identity, identity);
        assert_eq!(wanted.dns_names, vec!["node1.example.vn".to_string()]);

        // The CA's rules apply as for file keys: a signing identity carries
        // no DNS names.
        assert!(matches!(
            store.build_csr(
                &Identity::Member(member.clone()),
                &["x.example".into()],
                &[]
            ),
            Err(Pkcs11Error::Csr(csr::CsrError::AltName(_)))
        ));
    }
}

#[test]
fn private_key_stays_on_the_token() {
    let Some(hsm) = hsm() else { return };
    let store = Pkcs11KeyStore::open(&config(hsm, "extract", "tls")).unwrap();
    store.generate_key(KeyAlgorithm::EcP256).unwrap();
    let handle = store.private_key_handle().unwrap();
    let info = store
        .run(|s| s.get_attribute_info_map(handle, &[AttributeType::Value]))
        .unwrap();
    assert!(
        matches!(
            info.get(&AttributeType::Value),
            Some(AttributeInfo::Sensitive)
        ),
        "CKA_VALUE is not sensitive: {info:?}"
    );
    // Reading the value gives nothing (C_GetAttributeValue refuses it).
    let values = store
        .run(|s| s.get_attributes(handle, &[AttributeType::Value]))
        .unwrap();
    assert!(values.is_empty(), "the token gave out the private value");
    let flags = store
        .run(|s| {
            s.get_attributes(
                handle,
                &[
                    AttributeType::Sensitive,
                    AttributeType::Extractable,
                    AttributeType::Token,
                    AttributeType::NeverExtractable,
                ],
            )
        })
        .unwrap();
    use ndxp_sign::pkcs11::cryptoki::object::Attribute;
    assert!(flags.contains(&Attribute::Sensitive(true)), "{flags:?}");
    assert!(flags.contains(&Attribute::Extractable(false)), "{flags:?}");
    assert!(flags.contains(&Attribute::Token(true)), "{flags:?}");
    assert!(
        flags.contains(&Attribute::NeverExtractable(true)),
        "{flags:?}"
    );
    // Nor can it be wrapped out: no key would unwrap... the simplest check
    // is that the attribute can't be flipped back to extractable.
    let flip = store.run(|s| s.update_attributes(handle, &[Attribute::Extractable(true)]));
    assert!(flip.is_err(), "CKA_EXTRACTABLE went back to true");
}

#[test]
fn wrong_pin_is_reported_as_such() {
    let Some(hsm) = hsm() else { return };
    let mut cfg = config(hsm, "wrong-pin", "k");
    cfg.pin = PinSource::File(pin_file(hsm, "wrong-pin-bad", "not-the-pin", 0o600));
    let err = Pkcs11KeyStore::open(&cfg).unwrap_err();
    assert!(matches!(err, Pkcs11Error::PinIncorrect { .. }), "{err:?}");
    assert!(err.to_string().contains("incorrect"), "{err}");
    assert!(!err.to_string().contains("not-the-pin"));
    // The right PIN still works afterwards (one failure does not lock).
    Pkcs11KeyStore::open(&config(hsm, "wrong-pin", "k")).unwrap();
}

#[test]
fn missing_key_token_and_module_each_have_their_error() {
    let Some(hsm) = hsm() else { return };
    let store = Pkcs11KeyStore::open(&config(hsm, "no-key", "absent")).unwrap();
    let err = store.find_key().unwrap_err();
    assert!(matches!(err, Pkcs11Error::KeyNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("absent"), "{err}");
    // The KeyStore methods before a key is found.
    assert!(matches!(
        pkcs11_err(store.public_key("absent").unwrap_err()),
        Pkcs11Error::NoKeySelected
    ));

    let mut by_id = config(hsm, "no-key", "x");
    by_id.key = KeySelector::Id(vec![0xde, 0xad]);
    let store = Pkcs11KeyStore::open(&by_id).unwrap();
    assert_eq!(store.key_name(), "id:dead");
    assert!(matches!(
        store.find_key(),
        Err(Pkcs11Error::KeyNotFound { .. })
    ));

    let mut cfg = config(hsm, "no-such-token", "k");
    cfg.pin = PinSource::File(pin_file(hsm, "no-key", PIN, 0o600));
    let err = Pkcs11KeyStore::open(&cfg).unwrap_err();
    assert!(matches!(err, Pkcs11Error::TokenNotFound { .. }), "{err:?}");
    // The message lists what is there, to help fix the label.
    assert!(err.to_string().contains("\"no-key\""), "{err}");

    let mut cfg = config(hsm, "no-key", "k");
    cfg.token = TokenSelector::Slot(987_654_321);
    assert!(matches!(
        Pkcs11KeyStore::open(&cfg),
        Err(Pkcs11Error::TokenNotFound { .. })
    ));

    let mut cfg = config(hsm, "no-key", "k");
    cfg.module = hsm.dir.join("libmissing-pkcs11.so");
    let err = Pkcs11KeyStore::open(&cfg).unwrap_err();
    assert!(matches!(err, Pkcs11Error::ModuleNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("libmissing-pkcs11.so"), "{err}");

    // A file that is not a PKCS#11 module.
    let mut cfg = config(hsm, "no-key", "k");
    let bogus = hsm.dir.join("bogus.so");
    std::fs::write(&bogus, b"not a shared object").unwrap();
    cfg.module = bogus;
    assert!(matches!(
        Pkcs11KeyStore::open(&cfg),
        Err(Pkcs11Error::ModuleLoad { .. })
    ));

    let mut cfg = config(hsm, "no-key", "k");
    cfg.max_sessions = 0;
    assert!(matches!(
        Pkcs11KeyStore::open(&cfg),
        Err(Pkcs11Error::NoSessions)
    ));
}

#[test]
fn pin_file_readable_by_others_is_refused() {
    let Some(hsm) = hsm() else { return };
    for mode in [0o640, 0o604, 0o660] {
        let mut cfg = config(hsm, "pin-file", "k");
        cfg.pin = PinSource::File(pin_file(hsm, &format!("pin-file-{mode:o}"), PIN, mode));
        let err = Pkcs11KeyStore::open(&cfg).unwrap_err();
        assert!(
            matches!(err, Pkcs11Error::PinFileInsecure { mode: m, .. } if m == mode),
            "{err:?}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    let mut cfg = config(hsm, "pin-file", "k");
    cfg.pin = PinSource::File(hsm.dir.join("no-such.pin"));
    assert!(matches!(
        Pkcs11KeyStore::open(&cfg),
        Err(Pkcs11Error::PinFile(_))
    ));
    let mut cfg = config(hsm, "pin-file", "k");
    cfg.pin = PinSource::File(pin_file(hsm, "pin-file-empty", "", 0o600));
    assert!(matches!(
        Pkcs11KeyStore::open(&cfg),
        Err(Pkcs11Error::PinFile(_))
    ));
    // 0400 is fine.
    let mut cfg = config(hsm, "pin-file", "k");
    cfg.pin = PinSource::File(pin_file(hsm, "pin-file-400", PIN, 0o400));
    Pkcs11KeyStore::open(&cfg).unwrap();
}

#[test]
fn pin_from_the_environment() {
    let Some(hsm) = hsm() else { return };
    let mut cfg = config(hsm, "pin-env", "k");
    cfg.pin = PinSource::Env("NDXP_TEST_PKCS11_PIN_UNSET_VARIABLE".into());
    let err = Pkcs11KeyStore::open(&cfg).unwrap_err();
    assert!(
        matches!(err, Pkcs11Error::PinEnvMissing(ref v) if v == "NDXP_TEST_PKCS11_PIN_UNSET_VARIABLE")
    );
    // Each test has its own variable name: tests may share a process.
    std::env::set_var("NDXP_TEST_PKCS11_PIN_ENV", PIN);
    cfg.pin = PinSource::Env("NDXP_TEST_PKCS11_PIN_ENV".into());
    let store = Pkcs11KeyStore::open(&cfg).unwrap();
    store.generate_key(KeyAlgorithm::EcP256).unwrap();
    std::env::set_var("NDXP_TEST_PKCS11_PIN_ENV_WRONG", "123456");
    cfg.pin = PinSource::Env("NDXP_TEST_PKCS11_PIN_ENV_WRONG".into());
    // Another store in the same process: the token is already logged in
    // for this application, so no PIN is sent and the wrong one is not
    // noticed; that is PKCS#11's model (login is per application).
    // Checked here so that a change of the pool's login rule is seen.
    assert!(Pkcs11KeyStore::open(&cfg).is_ok());
}

#[test]
fn many_threads_sign_through_a_small_pool() {
    let Some(hsm) = hsm() else { return };
    let mut cfg = config(hsm, "pool", "busy");
    cfg.max_sessions = 3;
    let store = Arc::new(Pkcs11KeyStore::open(&cfg).unwrap());
    let public = store.generate_key(KeyAlgorithm::EcP256).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..25)
                    .map(|i| {
                        let data = format!("thread {t} message {i}").into_bytes();
                        let sig = store
                            .sign("busy", MessageDigest::sha256(), RsaPadding::Pss, &data)
                            .unwrap();
                        (data, sig)
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut count = 0;
    for t in threads {
        for (data, sig) in t.join().unwrap() {
            let mut v = Verifier::new(MessageDigest::sha256(), &public).unwrap();
            assert!(v.verify_oneshot(&sig, &data).unwrap());
            count += 1;
        }
    }
    assert_eq!(count, 200);
    // 200 signatures, never more than 3 sessions, one login.
    assert!(store.sessions_opened() <= 3, "{}", store.sessions_opened());
    assert_eq!(store.logins(), 1);
}

#[test]
fn a_key_generated_once_is_found_again_and_not_generated_twice() {
    let Some(hsm) = hsm() else { return };
    let first = Pkcs11KeyStore::open(&config(hsm, "reopen", "kept")).unwrap();
    let public = first.generate_key(KeyAlgorithm::EcP256).unwrap();
    drop(first);
    let second = Pkcs11KeyStore::open(&config(hsm, "reopen", "kept")).unwrap();
    assert!(second.find_key().unwrap().public_eq(&public));
    let sig = second
        .sign("kept", MessageDigest::sha256(), RsaPadding::Pss, b"x")
        .unwrap();
    let mut v = Verifier::new(MessageDigest::sha256(), &public).unwrap();
    assert!(v.verify_oneshot(&sig, b"x").unwrap());
    assert!(matches!(
        second.generate_key(KeyAlgorithm::EcP256),
        Err(Pkcs11Error::KeyExists { .. })
    ));
    // The certificate slot: only a certificate for this key is taken.
    assert!(matches!(
        second.certificate("kept"),
        Err(KeyError::NoCertificate(_))
    ));
    let other = KeyAlgorithm::EcP256.generate().unwrap();
    let cert = self_signed(&other);
    assert!(second.set_certificate(cert).is_err());
}

#[test]
fn generating_under_an_existing_label_is_refused() {
    let Some(hsm) = hsm() else { return };
    let store = Pkcs11KeyStore::open(&config(hsm, "exists", "dup")).unwrap();
    store.generate_key(KeyAlgorithm::EcP256).unwrap();
    let again = Pkcs11KeyStore::open(&config(hsm, "exists", "dup")).unwrap();
    let err = again.generate_key(KeyAlgorithm::Rsa2048).unwrap_err();
    assert!(matches!(err, Pkcs11Error::KeyExists { .. }), "{err:?}");
    // Exactly one private key object carries the label.
    use ndxp_sign::pkcs11::cryptoki::object::{Attribute, ObjectClass};
    let found = again
        .run(|s| {
            s.find_objects(&[
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::Label(b"dup".to_vec()),
            ])
        })
        .unwrap();
    assert_eq!(found.len(), 1);
}

#[test]
fn debug_output_never_shows_the_pin() {
    let Some(hsm) = hsm() else { return };
    let cfg = config(hsm, "debug", "k");
    let store = Pkcs11KeyStore::open(&cfg).unwrap();
    for text in [format!("{store:?}"), format!("{cfg:?}")] {
        assert!(!text.contains(PIN), "{text}");
    }
    assert!(format!("{store:?}").contains("debug"));
}

fn self_signed(key: &PKey<openssl::pkey::Private>) -> openssl::x509::X509 {
    let mut b = openssl::x509::X509Builder::new().unwrap();
    let mut name = openssl::x509::X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "other").unwrap();
    let name = name.build();
    b.set_subject_name(&name).unwrap();
    b.set_issuer_name(&name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap())
        .unwrap();
    b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap())
        .unwrap();
    b.sign(key, MessageDigest::sha256()).unwrap();
    b.build()
}

#[test]
fn a_token_deleted_while_in_use_is_reported_as_removed() {
    let Some(hsm) = hsm() else { return };
    let store = Pkcs11KeyStore::open(&config(hsm, "removed", "k")).unwrap();
    store.generate_key(KeyAlgorithm::EcP256).unwrap();
    store
        .sign("k", MessageDigest::sha256(), RsaPadding::Pss, b"x")
        .unwrap();
    // SoftHSM2's way of pulling a token out: delete it from its directory.
    let out = Command::new("softhsm2-util")
        .args(["--delete-token", "--token", "removed"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for _ in 0..2 {
        let err = store
            .sign("k", MessageDigest::sha256(), RsaPadding::Pss, b"x")
            .unwrap_err();
        let err = pkcs11_err(err);
        assert!(matches!(err, Pkcs11Error::TokenRemoved { .. }), "{err:?}");
        assert!(err.to_string().contains("removed"), "{err}");
    }
    // Starting again with the token gone: the token is not found.
    assert!(matches!(
        Pkcs11KeyStore::open(&config(hsm, "removed", "k")),
        Err(Pkcs11Error::TokenNotFound { .. })
    ));
}
