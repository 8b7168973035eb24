//! What `ndxp-gateway` and `ndxp-node` do alike with their TOML
//! configuration file (`docs/config.md`, "Where the configuration comes
//! from"):
//!
//! - [`config_path`]: `--config`, else `NDXP_CONFIG`, else the binary's
//!   default (`/etc/ndxp/gateway.toml`, `/etc/ndxp/node.toml`);
//! - [`mod@env`]: `NDXP_<SECTION>__<KEY>` overrides on top of the file;
//! - secrets in files: a key `x` listed as secret may be given as
//!   `x_file = "/path"` instead, read from that file (mode 0600 or
//!   narrower, one trailing newline removed), never both;
//! - [`load`]: the three applied in that order, then the typed structure
//!   deserialized with unknown keys refused by name;
//! - [`check`]: the report of `config check`.
//!
//! ```
//! use ndxp_edge::config::{self, env::Overrides};
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Conf { db: Db }
//! #[derive(serde::Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Db { url: String, pool: u32 }
//!
//! let vars = [("NDXP_DB__POOL".into(), "8".into())];
//! let overrides = Overrides::from_vars(vars)?;
//! let text = "[db]\nurl = \"sqlite://x.db\"\npool = 2\n";
//! let loaded: config::Loaded<Conf> =
//!     config::load(text, "/etc/ndxp".as_ref(), &overrides, &["db.url"])?;
//! assert_eq!(loaded.value.db.pool, 8);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod check;
pub mod env;

use std::ffi::OsString;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use toml::Value;

use env::{EnvError, KeyPath, Overrides, Segment, Typed};

/// The variable that names the configuration file when `--config` is not
/// given.
pub const CONFIG_VAR: &str = "NDXP_CONFIG";

/// Largest secret file read, in bytes.
pub const MAX_SECRET_LEN: u64 = 64 * 1024;

/// The configuration file to read: `flag` (`--config`), else a non-empty
/// `NDXP_CONFIG` of this process, else `default`.
pub fn config_path(flag: Option<&Path>, default: &str) -> PathBuf {
    choose_path(flag, std::env::var_os(CONFIG_VAR), default)
}

/// [`config_path`] with the variable's value given.
pub fn choose_path(flag: Option<&Path>, var: Option<OsString>, default: &str) -> PathBuf {
    match (flag, var) {
        (Some(p), _) => p.to_path_buf(),
        (None, Some(v)) if !v.is_empty() => PathBuf::from(v),
        _ => PathBuf::from(default),
    }
}

/// Why a configuration could not be assembled. No variant shows a value
/// taken from the environment or from a secret file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is not TOML, or a key of the file is unknown, missing or of
    /// the wrong type.
    #[error("{}", parse_message(key.as_deref(), message))]
    Parse {
        /// The key at fault (`table.key`), when known.
        key: Option<String>,
        /// Line and column (1-based), when the error is in the file's text.
        location: Option<(usize, usize)>,
        /// What is wrong (the TOML error's message, without location).
        message: String,
        /// The TOML error.
        #[source]
        source: Box<toml::de::Error>,
    },
    /// An environment override cannot be applied, or names a key the
    /// configuration does not have.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// A secret file (`x_file`) cannot be used.
    #[error("{key}_file: {reason}")]
    Secret {
        /// The secret key (`storage.url`).
        key: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

fn parse_message(key: Option<&str>, message: &str) -> String {
    match key {
        Some(k) => format!("invalid configuration in `{k}`: {message}"),
        None => format!("invalid configuration: {message}"),
    }
}

/// A configuration assembled by [`load`].
#[derive(Debug)]
pub struct Loaded<T> {
    /// The typed configuration.
    pub value: T,
    /// The secret files read: the secret key (`storage.url`) and the file
    /// (relative paths resolved against the configuration's directory).
    pub secret_files: Vec<(String, PathBuf)>,
    /// The environment variables applied.
    pub applied: Vec<String>,
}

/// Parses `text`, applies `overrides`, reads the `secrets` given as files
/// (dotted keys such as `storage.url`; a relative file is taken from
/// `base`) and deserializes the result. Without overrides or secret files
/// the text is deserialized as it is, so that errors carry their line.
///
/// # Errors
/// [`LoadError`], naming the key or the variable.
pub fn load<T: DeserializeOwned>(
    text: &str,
    base: &Path,
    overrides: &Overrides,
    secrets: &[&str],
) -> Result<Loaded<T>, LoadError> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| from_text(text, e))?;
    let mut applied = Vec::new();
    for o in overrides.iter() {
        let typed = env::apply(&mut table, o)?;
        applied.push((o, typed));
    }
    let secret_files = read_secrets(&mut table, base, secrets)?;
    if applied.is_empty() && secret_files.is_empty() {
        let value = toml::from_str(text).map_err(|e| from_text(text, e))?;
        return Ok(Loaded {
            value,
            secret_files,
            applied: Vec::new(),
        });
    }
    // A key the file does not set was typed by guess; when the structure
    // wants text (or a list) there, take the value that way and try again.
    let mut retries = 2 * applied.len();
    loop {
        let de = Value::Table(table.clone());
        let e = match serde_path_to_error::deserialize::<_, T>(de) {
            Ok(value) => {
                return Ok(Loaded {
                    value,
                    secret_files,
                    applied: applied.iter().map(|(o, _)| o.var.clone()).collect(),
                })
            }
            Err(e) => e,
        };
        let key = e.path().to_string();
        let inner = e.into_inner();
        let message = inner.message().trim_end().to_owned();
        let culprit = applied.iter().find(|(o, _)| related(&o.path, &key));
        if let Some((o, typed)) = culprit {
            if *typed == Typed::Guessed && retries > 0 && message.starts_with("invalid type") {
                retries -= 1;
                let v = if message.contains("expected a sequence") {
                    env::list(&o.raw, None).ok()
                } else {
                    Some(Value::String(o.raw.clone()))
                };
                if let Some(v) = v {
                    if replace(&mut table, &o.path, v) {
                        continue;
                    }
                }
            }
            return Err(LoadError::Env(EnvError {
                var: o.var.clone(),
                reason: format!("{key}: {}", without_values(&message)),
            }));
        }
        return Err(LoadError::Parse {
            key: (key != ".").then_some(key),
            location: None,
            message: without_values(&message),
            source: Box::new(inner),
        });
    }
}

/// The message of a deserialization error with any quoted value taken out
/// (`invalid type: string "secret", expected u64` keeps its shape but not
/// the text), because the value may have come from a secret.
fn without_values(message: &str) -> String {
    match (message.find(" \""), message.rfind("\", ")) {
        (Some(start), Some(end)) if start < end && message.starts_with("invalid ") => {
            format!(
                "{} (value not shown){}",
                &message[..start],
                &message[end + 1..]
            )
        }
        _ => message.to_owned(),
    }
}

/// Whether an error at `key` is about the override of `path`: one is
/// within the other.
fn related(path: &KeyPath, key: &str) -> bool {
    let p = path.to_string();
    p == key
        || p.strip_prefix(key)
            .is_some_and(|r| r.starts_with(['.', '[']))
        || key
            .strip_prefix(&p)
            .is_some_and(|r| r.starts_with(['.', '[']))
}

/// Replaces the value at `path` (which exists) by a different one; whether
/// it did.
fn replace(root: &mut toml::Table, path: &KeyPath, value: Value) -> bool {
    let Some((Segment::Key(last), parents)) = path.0.split_last() else {
        return false;
    };
    let mut table = root;
    let mut i = 0;
    while i < parents.len() {
        let Segment::Key(k) = &parents[i] else {
            return false;
        };
        let next = table.get_mut(k.as_str());
        table = match (next, parents.get(i + 1)) {
            (Some(Value::Array(items)), Some(Segment::Index(n))) => {
                i += 1;
                match items.get_mut(*n) {
                    Some(Value::Table(t)) => t,
                    _ => return false,
                }
            }
            (Some(Value::Table(t)), _) => t,
            _ => return false,
        };
        i += 1;
    }
    match table.get_mut(last.as_str()) {
        Some(old) if *old != value => {
            *old = value;
            true
        }
        _ => false,
    }
}

/// The error of deserializing `text`, with its key and line.
fn from_text(text: &str, e: toml::de::Error) -> LoadError {
    LoadError::Parse {
        key: error_key(&e),
        location: e.span().map(|s| line_col(text, s.start)),
        message: e.message().trim_end().to_owned(),
        source: Box::new(e),
    }
}

/// The dotted key a TOML error is about. The `toml` crate keeps it private
/// but names it (``in `a.b` ``) when the error is shown without its input.
fn error_key(e: &toml::de::Error) -> Option<String> {
    let mut bare = e.clone();
    bare.set_input(None);
    bare.to_string().lines().find_map(|l| {
        l.strip_prefix("in `")
            .and_then(|r| r.strip_suffix('`'))
            .map(str::to_owned)
    })
}

/// 1-based line and column of byte offset `at`.
fn line_col(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// Replaces every `x_file` of `secrets` by `x` read from the file.
fn read_secrets(
    root: &mut toml::Table,
    base: &Path,
    secrets: &[&str],
) -> Result<Vec<(String, PathBuf)>, LoadError> {
    let mut read = Vec::new();
    for key in secrets {
        let (parents, last) = match key.rsplit_once('.') {
            Some((p, l)) => (p.split('.').collect::<Vec<_>>(), l),
            None => (Vec::new(), *key),
        };
        let file_key = format!("{last}_file");
        let Some(table) = table_at(root, &parents) else {
            continue;
        };
        if !table.contains_key(&file_key) {
            continue;
        }
        let err = |reason: String| LoadError::Secret {
            key: (*key).to_owned(),
            reason,
        };
        if table.contains_key(last) {
            return Err(err(format!("both {key} and {key}_file are set; keep one")));
        }
        let Some(Value::String(file)) = table.remove(&file_key) else {
            return Err(err("must be a path (a string)".into()));
        };
        let path = base.join(&file);
        let secret = read_secret(&path).map_err(err)?;
        table.insert(last.to_owned(), Value::String(secret));
        read.push(((*key).to_owned(), path));
    }
    Ok(read)
}

/// The table at `keys` under `root`, if there is one.
fn table_at<'a>(root: &'a mut toml::Table, keys: &[&str]) -> Option<&'a mut toml::Table> {
    let mut table = root;
    for k in keys {
        match table.get_mut(*k) {
            Some(Value::Table(t)) => table = t,
            _ => return None,
        }
    }
    Some(table)
}

/// The secret in `path`: the whole file less one trailing newline. A file
/// that group or others may read is refused.
pub fn read_secret(path: &Path) -> Result<String, String> {
    use ndxp_sign::files::{check_mode, FileModeError, Readers};
    match check_mode(path, Readers::Owner) {
        Ok(()) => {}
        Err(FileModeError::Io { source, .. }) => {
            return Err(format!("cannot read {}: {source}", path.display()))
        }
        Err(e) => return Err(format!("refused: {e}")),
    }
    let file =
        std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(MAX_SECRET_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_SECRET_LEN {
        return Err(format!(
            "{} is larger than {MAX_SECRET_LEN} bytes",
            path.display()
        ));
    }
    let mut text =
        String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", path.display()))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    if text.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(text)
}

#[cfg(test)]
mod tests;
