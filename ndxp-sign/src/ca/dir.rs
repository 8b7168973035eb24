//! The CA directory on disk: creating it ([`Pki::init`]) and opening it
//! ([`Pki::open`]).

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use chrono::Utc;
use openssl::pkey::{PKeyRef, Private};
use openssl::x509::{X509Ref, X509};

use crate::cert::{self, serial_hex};
use crate::key::{self, KeyError};

use super::build::{build_cert, cn_name, derived_names, random_serial, Issuer, Kind};
use super::{
    check_url, io_err, issued_path, ossl, CaError, InitOptions, Pki, Settings, CHAIN_FILE,
    INTERMEDIATE_KEY_FILE, ISSUED_DIR, REVOKED_DIR, ROOT_CERT_FILE, ROOT_KEY_FILE, SETTINGS_FILE,
    SETTINGS_FORMAT, TSA_CERT_FILE, TSA_KEY_FILE,
};

pub(super) fn read_file(path: &Path) -> Result<Vec<u8>, CaError> {
    fs::read(path).map_err(io_err("could not read", path))
}

pub(super) fn read_one_cert(path: &Path) -> Result<X509, CaError> {
    let pem = read_file(path)?;
    let mut certs = cert::read_pem_chain(&pem).map_err(|e| CaError::Corrupt {
        path: path.to_path_buf(),
        detail: "not a PEM certificate".to_string(),
        source: Some(Box::new(e)),
    })?;
    if certs.len() != 1 {
        return Err(CaError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("expected exactly one certificate, found {}", certs.len()),
            source: None,
        });
    }
    Ok(certs.remove(0))
}

pub(super) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    key::write_file_atomic(path, bytes, mode, false).map_err(io_err("could not write", path))
}

pub(super) fn check_pair(
    cert: &X509Ref,
    key: &PKeyRef<Private>,
    path: &Path,
) -> Result<(), CaError> {
    let pubkey = cert
        .public_key()
        .map_err(ossl("reading a certificate's public key"))?;
    if !pubkey.public_eq(key) {
        return Err(CaError::Corrupt {
            path: path.to_path_buf(),
            detail: "the key does not belong to its certificate".to_string(),
            source: None,
        });
    }
    Ok(())
}

impl Pki {
    /// Creates a new PKI in `dir` (which must not exist, or be empty): keys,
    /// root, optional intermediate, TSA certificate and `pki.json`.
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<Pki, CaError> {
        check_url(&opts.ocsp_url)?;
        if opts.name.trim().is_empty() {
            return Err(CaError::BadOptions("the CA name is empty".to_string()));
        }
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(CaError::AlreadyExists {
                        dir: dir.to_path_buf(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                return Err(CaError::AlreadyExists {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err("could not inspect", dir)(e)),
        }
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let leaf_name = dir.file_name().ok_or_else(|| {
            CaError::BadOptions(format!("{} has no directory name", dir.display()))
        })?;
        fs::create_dir_all(&parent).map_err(io_err("could not create", &parent))?;
        let mut rnd = [0u8; 8];
        openssl::rand::rand_bytes(&mut rnd).map_err(ossl("making a temporary name"))?;
        let staging = parent.join(format!(
            ".{}.init-{}",
            leaf_name.to_string_lossy(),
            hex::encode(rnd)
        ));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&staging)
            .map_err(io_err("could not create", &staging))?;

        let result = Self::populate(&staging, opts).and_then(|pki| {
            fs::rename(&staging, dir).map_err(|e| {
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
                ) {
                    CaError::AlreadyExists {
                        dir: dir.to_path_buf(),
                    }
                } else {
                    io_err("could not move the new PKI into place at", dir)(e)
                }
            })?;
            Ok(pki)
        });
        match result {
            Ok(mut pki) => {
                pki.dir = dir.to_path_buf();
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                    .map_err(io_err("could not set permissions on", dir))?;
                fs::File::open(&parent)
                    .and_then(|f| f.sync_all())
                    .map_err(io_err("could not sync", &parent))?;
                Ok(pki)
            }
            Err(e) => {
                // Best effort: the staging directory holds nothing of value.
                let _ = fs::remove_dir_all(&staging);
                Err(e)
            }
        }
    }

    fn populate(dir: &Path, opts: &InitOptions) -> Result<Pki, CaError> {
        let pass = opts.passphrase.as_deref();
        let (issuing_name, tsa_name) = derived_names(&opts.name);
        for d in [ISSUED_DIR, REVOKED_DIR] {
            let p = dir.join(d);
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&p)
                .map_err(io_err("could not create", &p))?;
        }

        let root_key = opts.key_algorithm.generate()?;
        let root_serial = random_serial()?;
        let root_subject = cn_name(&opts.name)?;
        let root = build_cert(
            &root_subject,
            &root_key,
            None,
            Some(&root_key),
            opts.root_validity_days,
            Kind::Root {
                pathlen: u32::from(opts.intermediate),
            },
            &opts.ocsp_url,
            &root_serial,
        )?;
        key::write_private_key_file(&dir.join(ROOT_KEY_FILE), &root_key, pass, false)?;
        let pem = root.to_pem().map_err(ossl("encoding a certificate"))?;
        write_new(&dir.join(ROOT_CERT_FILE), &pem, 0o644)?;

        let (chain, issuing_key) = if opts.intermediate {
            let ikey = opts.key_algorithm.generate()?;
            let isubject = cn_name(&issuing_name)?;
            let iserial = random_serial()?;
            let icert = build_cert(
                &isubject,
                &ikey,
                Some(&Issuer {
                    cert: &root,
                    key: &root_key,
                }),
                None,
                opts.intermediate_validity_days,
                Kind::Intermediate,
                &opts.ocsp_url,
                &iserial,
            )?;
            key::write_private_key_file(&dir.join(INTERMEDIATE_KEY_FILE), &ikey, pass, false)?;
            (vec![icert], ikey)
        } else {
            (Vec::new(), root_key)
        };
        write_new(
            &dir.join(CHAIN_FILE),
            &cert::write_pem_chain(&chain)?,
            0o644,
        )?;

        let issuing_cert = chain.first().unwrap_or(&root);
        let tsa_key = opts.key_algorithm.generate()?;
        let tsa_serial = random_serial()?;
        let tsa_subject = cn_name(&tsa_name)?;
        let tsa = build_cert(
            &tsa_subject,
            &tsa_key,
            Some(&Issuer {
                cert: issuing_cert,
                key: &issuing_key,
            }),
            None,
            opts.tsa_validity_days,
            Kind::Tsa,
            &opts.ocsp_url,
            &tsa_serial,
        )?;
        key::write_private_key_file(&dir.join(TSA_KEY_FILE), &tsa_key, pass, false)?;
        let tsa_pem = tsa.to_pem().map_err(ossl("encoding a certificate"))?;
        write_new(&dir.join(TSA_CERT_FILE), &tsa_pem, 0o644)?;
        write_new(&issued_path(dir, &serial_hex(&tsa_serial)), &tsa_pem, 0o644)?;

        let settings = Settings {
            format: SETTINGS_FORMAT,
            name: opts.name.clone(),
            key_algorithm: opts.key_algorithm.to_string(),
            intermediate: opts.intermediate,
            ocsp_url: opts.ocsp_url.clone(),
            encrypted_keys: pass.is_some(),
            created: Utc::now(),
        };
        let json = serde_json::to_vec_pretty(&settings).map_err(|e| CaError::Corrupt {
            path: dir.join(SETTINGS_FILE),
            detail: "could not encode settings".to_string(),
            source: Some(Box::new(e)),
        })?;
        // Written last: its presence marks a complete PKI.
        write_new(&dir.join(SETTINGS_FILE), &json, 0o644)?;

        Ok(Pki {
            dir: dir.to_path_buf(),
            settings,
            root,
            chain,
            issuing_key,
            tsa,
            tsa_key,
        })
    }

    /// Opens an existing PKI directory. The passphrase is needed if the keys
    /// were encrypted at `init`.
    pub fn open(dir: &Path, passphrase: Option<&[u8]>) -> Result<Pki, CaError> {
        let settings_path = dir.join(SETTINGS_FILE);
        let json = match fs::read(&settings_path) {
            Ok(j) => j,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(CaError::NotAPki {
                    dir: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(io_err("could not read", &settings_path)(e)),
        };
        let settings: Settings = serde_json::from_slice(&json).map_err(|e| CaError::Corrupt {
            path: settings_path.clone(),
            detail: "not valid PKI settings JSON".to_string(),
            source: Some(Box::new(e)),
        })?;
        if settings.format != SETTINGS_FORMAT {
            return Err(CaError::Corrupt {
                path: settings_path,
                detail: format!(
                    "format {} is not supported (this version reads format {SETTINGS_FORMAT})",
                    settings.format
                ),
                source: None,
            });
        }
        if settings.encrypted_keys && passphrase.is_none() {
            return Err(CaError::Key(KeyError::PassphraseRequired {
                what: format!("the CA keys in {}", dir.display()),
            }));
        }
        let root = read_one_cert(&dir.join(ROOT_CERT_FILE))?;
        let chain_path = dir.join(CHAIN_FILE);
        let chain =
            cert::read_pem_chain(&read_file(&chain_path)?).map_err(|e| CaError::Corrupt {
                path: chain_path.clone(),
                detail: "not a PEM certificate list".to_string(),
                source: Some(Box::new(e)),
            })?;
        if chain.is_empty() == settings.intermediate {
            return Err(CaError::Corrupt {
                path: chain_path,
                detail: format!(
                    "{SETTINGS_FILE} says intermediate = {} but the file holds {} certificate(s)",
                    settings.intermediate,
                    chain.len()
                ),
                source: None,
            });
        }
        let (issuing_cert, key_path) = match chain.first() {
            Some(c) => (c, dir.join(INTERMEDIATE_KEY_FILE)),
            None => (&root, dir.join(ROOT_KEY_FILE)),
        };
        let issuing_key = key::read_private_key_file(&key_path, passphrase)?;
        check_pair(issuing_cert, &issuing_key, &key_path)?;
        let tsa = read_one_cert(&dir.join(TSA_CERT_FILE))?;
        let tsa_key_path = dir.join(TSA_KEY_FILE);
        let tsa_key = key::read_private_key_file(&tsa_key_path, passphrase)?;
        check_pair(&tsa, &tsa_key, &tsa_key_path)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            settings,
            root,
            chain,
            issuing_key,
            tsa,
            tsa_key,
        })
    }
}
