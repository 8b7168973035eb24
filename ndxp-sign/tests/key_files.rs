#![allow(clippy::unwrap_used)]
//! Private keys: PEM round trips, passphrases, file modes, overwriting, the
//! key store.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use ndxp_sign::key::{self, FileKeyStore, KeyAlgorithm, KeyError, KeyStore, RsaPadding};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::sign::{RsaPssSaltlen, Verifier};

const OPENSSL: &str = "/usr/bin/openssl";

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn round_trip(k: &PKey<Private>) {
    let plain = key::private_key_to_pem(k, None).unwrap();
    assert!(String::from_utf8_lossy(&plain).starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(key::private_key_from_pem(&plain, None)
        .unwrap()
        .public_eq(k));

    let enc = key::private_key_to_pem(k, Some(b"correct horse")).unwrap();
    let text = String::from_utf8_lossy(&enc);
    assert!(text.starts_with("-----BEGIN ENCRYPTED PRIVATE KEY-----"));
    assert!(!text.contains("BEGIN PRIVATE KEY"));
    assert!(key::private_key_from_pem(&enc, Some(b"correct horse"))
        .unwrap()
        .public_eq(k));
    assert!(matches!(
        key::private_key_from_pem(&enc, Some(b"wrong horse")),
        Err(KeyError::WrongPassphrase { .. })
    ));
    assert!(matches!(
        key::private_key_from_pem(&enc, None),
        Err(KeyError::PassphraseRequired { .. })
    ));
}

#[test]
fn ec_key_round_trips_with_and_without_passphrase() {
    let k = KeyAlgorithm::EcP256.generate().unwrap();
    assert_eq!(KeyAlgorithm::of(&k), Some(KeyAlgorithm::EcP256));
    round_trip(&k);
}

#[test]
fn rsa_key_round_trips_with_and_without_passphrase() {
    let k = KeyAlgorithm::Rsa2048.generate().unwrap();
    assert_eq!(k.bits(), 2048);
    assert_eq!(KeyAlgorithm::of(&k), Some(KeyAlgorithm::Rsa2048));
    round_trip(&k);
}

#[test]
fn garbage_is_not_a_key() {
    let err = key::private_key_from_pem(b"hello", None).unwrap_err();
    assert!(matches!(err, KeyError::Malformed { .. }), "{err:?}");
}

#[test]
fn algorithm_names_round_trip() {
    for a in [
        KeyAlgorithm::EcP256,
        KeyAlgorithm::Rsa2048,
        KeyAlgorithm::Rsa3072,
    ] {
        assert_eq!(a.to_string().parse::<KeyAlgorithm>().unwrap(), a);
    }
    assert_eq!(KeyAlgorithm::default(), KeyAlgorithm::EcP256);
    let err = "ed25519".parse::<KeyAlgorithm>().unwrap_err();
    assert!(err.to_string().contains("ec-p256"));
}

#[test]
fn key_file_is_0600_and_encrypted_file_reads_with_stock_openssl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("node.key");
    let k = KeyAlgorithm::EcP256.generate().unwrap();
    key::write_private_key_file(&path, &k, Some(b"pw"), false).unwrap();
    assert_eq!(mode(&path), 0o600);
    // No temporary files left next to it.
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    let back = key::read_private_key_file(&path, Some(b"pw")).unwrap();
    assert!(back.public_eq(&k));

    assert!(
        Path::new(OPENSSL).exists(),
        "{OPENSSL} is needed for interop tests; install the openssl command line"
    );
    let out = Command::new(OPENSSL)
        .args(["pkey", "-noout", "-passin", "pass:pw", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(OPENSSL)
        .args(["asn1parse", "-in"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PBES2"), "{text}");
    assert!(text.contains("aes-256-cbc"), "{text}");
}

#[test]
fn wrong_passphrase_on_a_file_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sign.key");
    let k = KeyAlgorithm::EcP256.generate().unwrap();
    key::write_private_key_file(&path, &k, Some(b"pw"), false).unwrap();
    let err = key::read_private_key_file(&path, Some(b"nope")).unwrap_err();
    assert!(matches!(err, KeyError::WrongPassphrase { .. }));
    assert!(err.to_string().contains("sign.key"), "{err}");
}

#[test]
fn group_readable_key_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("loose.key");
    let k = KeyAlgorithm::EcP256.generate().unwrap();
    key::write_private_key_file(&path, &k, None, false).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    let err = key::read_private_key_file(&path, None).unwrap_err();
    match &err {
        KeyError::InsecurePermissions { path: p, mode } => {
            assert_eq!(p, &path);
            assert_eq!(*mode, 0o644);
        }
        other => panic!("expected InsecurePermissions, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("loose.key") && msg.contains("0644"), "{msg}");

    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(
        key::read_private_key_file(&path, None),
        Err(KeyError::InsecurePermissions { mode: 0o640, .. })
    ));
    fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
    assert!(key::read_private_key_file(&path, None).is_ok());
}

#[test]
fn existing_key_is_not_overwritten_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k.pem");
    let first = KeyAlgorithm::EcP256.generate().unwrap();
    let second = KeyAlgorithm::EcP256.generate().unwrap();
    key::write_private_key_file(&path, &first, None, false).unwrap();
    let err = key::write_private_key_file(&path, &second, None, false).unwrap_err();
    assert!(matches!(err, KeyError::AlreadyExists { .. }), "{err:?}");
    assert!(key::read_private_key_file(&path, None)
        .unwrap()
        .public_eq(&first));
    assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);

    key::write_private_key_file(&path, &second, None, true).unwrap();
    assert!(key::read_private_key_file(&path, None)
        .unwrap()
        .public_eq(&second));
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn missing_key_file_is_an_io_error_with_the_path() {
    let err = key::read_private_key_file(Path::new("/nonexistent/x.key"), None).unwrap_err();
    assert!(matches!(err, KeyError::Io { .. }));
    assert!(err.to_string().contains("/nonexistent/x.key"));
}

#[test]
fn file_key_store_signs_with_named_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sign.key");
    let ec = KeyAlgorithm::EcP256.generate().unwrap();
    key::write_private_key_file(&path, &ec, None, false).unwrap();

    let mut store = FileKeyStore::new();
    store.load("sign", &path, None, None).unwrap();
    let rsa = KeyAlgorithm::Rsa2048.generate().unwrap();
    store.insert("rsa", rsa, None);

    let data = b"GET /r/v1 HTTP/1.1";
    let sig = store
        .sign("sign", MessageDigest::sha256(), RsaPadding::Pss, data)
        .unwrap();
    let pubkey = store.public_key("sign").unwrap();
    let mut v = Verifier::new(MessageDigest::sha256(), &pubkey).unwrap();
    assert!(v.verify_oneshot(&sig, data).unwrap());
    assert!(!v.verify_oneshot(&sig, b"other").unwrap());

    let sig = store
        .sign("rsa", MessageDigest::sha512(), RsaPadding::Pss, data)
        .unwrap();
    let pubkey = store.public_key("rsa").unwrap();
    let mut v = Verifier::new(MessageDigest::sha512(), &pubkey).unwrap();
    v.set_rsa_padding(Padding::PKCS1_PSS).unwrap();
    v.set_rsa_pss_saltlen(RsaPssSaltlen::custom(64)).unwrap();
    assert!(v.verify_oneshot(&sig, data).unwrap());

    assert!(matches!(
        store.sign("nope", MessageDigest::sha256(), RsaPadding::Pss, data),
        Err(KeyError::UnknownKey(_))
    ));
    assert!(matches!(
        store.certificate("sign"),
        Err(KeyError::NoCertificate(_))
    ));
    // Debug output never shows key material.
    let dbg = format!("{store:?}");
    assert!(dbg.contains("sign") && !dbg.contains("PRIVATE"));
}
