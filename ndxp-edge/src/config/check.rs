//! The report of `ndxp-gateway config check` and `ndxp-node config check`:
//! one line per check, `ok` or `FAIL` with what is wrong and a hint, and
//! the same as JSON. The checks that both binaries make (a file present
//! with a safe mode, a certificate matching its key and chaining to the
//! trust anchors) are methods of [`Report`].
//!
//! ```
//! use ndxp_edge::config::check::Report;
//! let mut r = Report::default();
//! r.pass("configuration", "parsed /etc/ndxp/node.toml");
//! r.fail("conf.anchor", "/etc/ndxp/anchor.json is missing", "install the anchor file");
//! assert!(!r.passed());
//! assert!(r.to_text().contains("FAIL  conf.anchor"));
//! ```

use std::path::{Path, PathBuf};

use ndxp_sign::openssl::pkey::{PKey, Private};
use ndxp_sign::openssl::x509::X509;
use serde::Serialize;

use super::env::Overrides;

/// One check and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked: a configuration key or a short name.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// How to fix a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// The checks made, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Every check.
    pub checks: Vec<Check>,
    /// Whether every check passed.
    pub ok: bool,
}

/// What a file named by the configuration holds, which sets the mode it
/// may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Certificates, anchors: anyone may read it.
    Public,
    /// Private keys, passphrases, tokens and other secrets: the owner
    /// only (0600).
    Secret,
    /// A directory that must exist.
    Dir,
}

impl Report {
    /// The report of `config check` for the configuration file `path`:
    /// the environment's overrides read, the file loaded by `load` (with
    /// them), [`loaded`](Self::loaded) recorded, then `files` run on the
    /// configuration. A failure to load is the one failed check.
    pub fn of_config<T, E>(
        path: &Path,
        load: impl FnOnce(&Path, &Overrides) -> Result<(T, Vec<(String, PathBuf)>), E>,
        files: impl FnOnce(&mut Report, &T),
    ) -> Report
    where
        E: std::error::Error,
    {
        let mut r = Report::default();
        let overrides = match Overrides::from_env() {
            Ok(o) => o,
            Err(e) => {
                r.fail(
                    "environment",
                    e.to_string(),
                    "rename or unset the variable (NDXP_<SECTION>__<KEY>, sections separated by __)",
                );
                return r;
            }
        };
        let (cfg, secrets) = match load(path, &overrides) {
            Ok(c) => c,
            Err(e) => {
                r.fail(
                    "configuration",
                    ndxp_core::ErrorChain(&e).to_string(),
                    "correct the file or the variable named (docs/config.md lists every key)",
                );
                return r;
            }
        };
        let applied: Vec<String> = overrides.iter().map(|o| o.var.clone()).collect();
        r.loaded(path, &applied, &secrets);
        files(&mut r, &cfg);
        r
    }

    /// Records a check that passed.
    pub fn pass(&mut self, name: impl Into<String>, detail: impl Into<String>) {
        self.push(name.into(), true, detail.into(), None);
    }

    /// Records a check that failed.
    pub fn fail(
        &mut self,
        name: impl Into<String>,
        detail: impl Into<String>,
        hint: impl Into<String>,
    ) {
        self.push(name.into(), false, detail.into(), Some(hint.into()));
    }

    fn push(&mut self, name: String, ok: bool, detail: String, hint: Option<String>) {
        self.checks.push(Check {
            name,
            ok,
            detail,
            hint,
        });
        self.ok = self.checks.iter().all(|c| c.ok);
    }

    /// Whether every check passed (and there was at least one).
    pub fn passed(&self) -> bool {
        !self.checks.is_empty() && self.checks.iter().all(|c| c.ok)
    }

    /// The exit status of `config check`: 0 when every check passed, 64
    /// (EX_USAGE, as for a bad configuration) otherwise.
    pub fn exit_code(&self) -> i32 {
        if self.passed() {
            0
        } else {
            64
        }
    }

    /// The report for people: `ok    name  detail`, or `FAIL  name  detail`
    /// and an indented hint, then a summary line.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = if c.ok { "ok  " } else { "FAIL" };
            out.push_str(&format!("{mark}  {}  {}\n", c.name, c.detail));
            if let Some(h) = &c.hint {
                out.push_str(&format!("      hint: {h}\n"));
            }
        }
        let failed = self.checks.iter().filter(|c| !c.ok).count();
        if failed == 0 {
            out.push_str(&format!("{} checks passed\n", self.checks.len()));
        } else {
            out.push_str(&format!(
                "{failed} of {} checks failed\n",
                self.checks.len()
            ));
        }
        out
    }

    /// The report as pretty JSON: `{"checks": [{"name", "ok", "detail",
    /// "hint"?}], "ok": bool}`.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    /// Checks that the file (or directory) of `key` exists, is readable,
    /// and for a secret that only its owner may read it. Returns whether
    /// it passed.
    pub fn file(&mut self, key: &str, path: &Path, kind: FileKind) -> bool {
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) => {
                let hint = match kind {
                    FileKind::Dir => format!("create the directory or correct `{key}`"),
                    _ => format!("install the file or correct `{key}`"),
                };
                self.fail(key, format!("{shown}: {e}"), hint);
                return false;
            }
        };
        if kind == FileKind::Dir {
            if !meta.is_dir() {
                self.fail(
                    key,
                    format!("{shown} is not a directory"),
                    format!("correct `{key}`"),
                );
                return false;
            }
            self.pass(key, format!("{shown} is a directory"));
            return true;
        }
        if !meta.is_file() {
            self.fail(
                key,
                format!("{shown} is not a file"),
                format!("correct `{key}`"),
            );
            return false;
        }
        if let Err(e) = std::fs::File::open(path) {
            self.fail(
                key,
                format!("{shown} cannot be read: {e}"),
                "give the service's user read access",
            );
            return false;
        }
        if kind == FileKind::Secret {
            use ndxp_sign::files::{check_mode, Readers};
            if let Err(e) = check_mode(path, Readers::Owner) {
                self.fail(
                    key,
                    format!("{shown} holds a secret and others may read it"),
                    e.to_string(),
                );
                return false;
            }
            self.pass(key, format!("{shown} present, mode 0600 or narrower"));
        } else {
            self.pass(key, format!("{shown} present"));
        }
        true
    }

    /// Reads certificates from `path` for `key` (recording a failure when
    /// it cannot); `None` on failure.
    pub fn certs(&mut self, key: &str, path: &Path) -> Option<Vec<X509>> {
        let shown = path.display();
        let read = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|pem| ndxp_sign::cert::read_pem_chain(&pem).map_err(|e| e.to_string()));
        match read {
            Ok(c) if !c.is_empty() => Some(c),
            Ok(_) => {
                self.fail(
                    key,
                    format!("{shown} holds no certificate"),
                    "put the PEM certificate in the file",
                );
                None
            }
            Err(e) => {
                self.fail(
                    key,
                    format!("{shown}: {e}"),
                    "put a PEM certificate in the file",
                );
                None
            }
        }
    }

    /// Checks a certificate file that anyone may read: present, and
    /// holding at least one PEM certificate, which it returns.
    pub fn cert_file(&mut self, key: &str, path: &Path) -> Option<Vec<X509>> {
        if self.file(key, path, FileKind::Public) {
            self.certs(key, path)
        } else {
            None
        }
    }

    /// Reads the private key of `key` (mode checked by the reader).
    pub fn private_key(
        &mut self,
        key: &str,
        path: &Path,
        passphrase: Option<&[u8]>,
    ) -> Option<PKey<Private>> {
        match ndxp_sign::key::read_private_key_file(path, passphrase) {
            Ok(k) => Some(k),
            Err(e) => {
                self.fail(
                    key,
                    format!("cannot use the private key: {e}"),
                    "check the file, its mode (0600) and the passphrase",
                );
                None
            }
        }
    }

    /// Checks that the first certificate of `certs` (from `cert_key`) is
    /// the certificate of `key`.
    pub fn matches(&mut self, cert_key: &str, certs: &[X509], key: &PKey<Private>) -> bool {
        let name = format!("{cert_key} matches its key");
        let Some(leaf) = certs.first() else {
            return false;
        };
        let same = leaf.public_key().map(|p| p.public_eq(key)).unwrap_or(false);
        if same {
            self.pass(name, "the certificate's public key is the key's");
        } else {
            self.fail(
                name,
                "the certificate was issued for another key",
                "install the certificate issued for this key, or the key it was issued for",
            );
        }
        same
    }

    /// Checks that the first certificate of `certs` chains, through the
    /// others and `intermediates`, to one of `anchors`, valid now.
    pub fn chains(
        &mut self,
        cert_key: &str,
        certs: &[X509],
        intermediates: &[X509],
        anchors: &[X509],
    ) -> bool {
        use ndxp_sign::chain::{verify_chain, NoRevocationCheck, Purpose};
        let name = format!("{cert_key} chains to the trust anchors");
        let Some((leaf, rest)) = certs.split_first() else {
            return false;
        };
        let mut untrusted: Vec<X509> = rest.to_vec();
        untrusted.extend(intermediates.iter().cloned());
        match verify_chain(
            leaf,
            &untrusted,
            anchors,
            chrono::Utc::now(),
            Purpose::Any,
            &NoRevocationCheck,
        ) {
            Ok(_) => {
                self.pass(name, "valid now (revocation not checked here)");
                true
            }
            Err(e) => {
                self.fail(
                    name,
                    e.to_string(),
                    "install a certificate issued under the platform's CA, with its intermediates",
                );
                false
            }
        }
    }

    /// Checks a certificate and its private key: both present (the key
    /// 0600), the certificate issued for the key, and, with `anchors`,
    /// chaining to them through `intermediates`.
    #[allow(clippy::too_many_arguments)]
    pub fn key_pair(
        &mut self,
        (cert_key, cert): (&str, &Path),
        (key_key, key): (&str, &Path),
        passphrase: Option<&[u8]>,
        intermediates: &[X509],
        anchors: Option<&[X509]>,
    ) {
        let cert_ok = self.file(cert_key, cert, FileKind::Public);
        let key_ok = self.file(key_key, key, FileKind::Secret);
        if !(cert_ok && key_ok) {
            return;
        }
        let Some(certs) = self.certs(cert_key, cert) else {
            return;
        };
        let Some(k) = self.private_key(key_key, key, passphrase) else {
            return;
        };
        self.matches(cert_key, &certs, &k);
        if let Some(a) = anchors {
            self.chains(cert_key, &certs, intermediates, a);
        }
    }

    /// Checks a passphrase file (0600, a non-empty first line) and returns
    /// the passphrase.
    pub fn passphrase(&mut self, key: &str, path: &Path) -> Option<Vec<u8>> {
        if !self.file(key, path, FileKind::Secret) {
            return None;
        }
        match ndxp_sign::key::read_passphrase_file(path) {
            Ok(p) => Some(p),
            Err(e) => {
                self.fail(key, e.to_string(), "write the passphrase on the first line");
                None
            }
        }
    }

    /// Records how the configuration was read: the file's own mode (not
    /// readable by others), the environment overrides applied and each
    /// secret file.
    pub fn loaded(&mut self, path: &Path, applied: &[String], secret_files: &[(String, PathBuf)]) {
        use ndxp_sign::files::{check_mode, Readers};
        match check_mode(path, Readers::OwnerAndGroup) {
            Ok(()) => self.pass("configuration", format!("{} parsed", path.display())),
            Err(e) => self.fail(
                "configuration",
                format!(
                    "{} parsed, but every user of this host may read it",
                    path.display()
                ),
                e.to_string(),
            ),
        }
        if !applied.is_empty() {
            self.pass(
                "environment",
                format!("overrides applied: {}", applied.join(", ")),
            );
        }
        for (key, file) in secret_files {
            self.file(&format!("{key}_file"), file, FileKind::Secret);
        }
    }

    /// The anchors read from `files` (each recorded as a check).
    pub fn anchors(&mut self, files: &[(String, PathBuf)]) -> Vec<X509> {
        let mut anchors = Vec::new();
        for (key, path) in files {
            if let Some(c) = self.certs(key, path) {
                self.pass(
                    format!("{key} readable"),
                    format!("{}: {} certificate(s)", path.display(), c.len()),
                );
                anchors.extend(c);
            }
        }
        anchors
    }
}
