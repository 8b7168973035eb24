//! Online backups of a process's state: a consistent snapshot of every
//! SQLite database (`VACUUM INTO`, taken while the process keeps writing),
//! copies of the small state files, and a manifest (`backup.json`) that
//! names where each came from, its size and SHA-256, the PostgreSQL
//! databases to dump with `pg_dump` instead, and the files (keys, anchor,
//! certificates) to keep safe separately. `ndxp-gateway backup` and
//! `ndxp-node backup` are this module with the items of their
//! configuration (`docs/operator-guide.md#back-up-and-restore`).
//!
//! A backup is a plain directory. Restoring is copying its files back to
//! the paths in the manifest while the process is stopped.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ndxp_audit::backup::BackupError> {
//! use ndxp_audit::backup::{self, Item};
//! let items = vec![
//!     Item::database("registry.db", "storage.url", "sqlite:///var/lib/ndxp/registry.db"),
//!     Item::file("gateway.toml", "--config", "/etc/ndxp/gateway.toml"),
//!     Item::keep("globalconf.signing_key", "/etc/ndxp/mgmt-keys/sign.key"),
//! ];
//! let manifest = backup::run(&items, std::path::Path::new("/backup/2026-11-28"), "ndxp-gateway 0.1.0").await?;
//! assert_eq!(manifest.entries.len(), 3);
//! # Ok(()) }
//! ```
//!
//! Each snapshot is consistent on its own; two databases are snapshotted
//! one after the other, so a record written between the two may be in the
//! second and not the first (the message log never depends on the
//! registry, so this is harmless).

use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndxp_db::{connect_sqlite_file, redact, Backend, SqliteAccess, UnsupportedUrl};
use ndxp_sign::openssl::sha::Sha256;
use serde::{Deserialize, Serialize};
use sqlx::Connection as _;

/// The manifest's file name inside a backup directory. It is written
/// last: a directory without it is an incomplete backup.
pub const MANIFEST_FILE: &str = "backup.json";

/// The manifest's format tag.
pub const FORMAT: &str = "ndxp-backup/1";

/// How long a snapshot waits for a lock held by the running process.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// One thing to back up (or to list as kept elsewhere).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The file name in the backup directory (`registry.db`); for
    /// [`Source::Keep`], a label only.
    pub name: String,
    /// The configuration key (or option) that names the source, for the
    /// operator restoring it (`storage.url`).
    pub key: String,
    /// What to back up.
    pub source: Source,
}

/// Where an [`Item`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A database URL: SQLite files are snapshotted, PostgreSQL databases
    /// are listed with the `pg_dump` command to run.
    Database(String),
    /// A file copied as it is (state files that are replaced by rename, so
    /// a copy is never half-written). A missing file is recorded, not an
    /// error: it is created on the process's first use.
    File(PathBuf),
    /// A file or directory not copied: secrets and trust material the
    /// operator keeps in their own safe place; listed so the checklist of
    /// this installation is complete.
    Keep(PathBuf),
}

impl Item {
    /// A database.
    pub fn database(name: &str, key: &str, url: &str) -> Self {
        Self::new(name, key, Source::Database(url.to_string()))
    }

    /// A state file to copy.
    pub fn file(name: &str, key: &str, path: impl Into<PathBuf>) -> Self {
        Self::new(name, key, Source::File(path.into()))
    }

    /// A file to keep separately (not copied).
    pub fn keep(key: &str, path: impl Into<PathBuf>) -> Self {
        Self::new(key, key, Source::Keep(path.into()))
    }

    fn new(name: &str, key: &str, source: Source) -> Self {
        Self {
            name: name.to_string(),
            key: key.to_string(),
            source,
        }
    }
}

/// What a backup entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A SQLite snapshot, in `file`.
    Sqlite,
    /// A copied file, in `file`.
    File,
    /// A state file that did not exist at backup time (nothing to restore).
    Missing,
    /// A PostgreSQL database: not copied, dump it with `command`.
    Postgres,
    /// Not copied: keep it safe separately.
    Keep,
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// The configuration keys that name the source (one source named by
    /// two keys is backed up once).
    pub keys: Vec<String>,
    /// The source: a path, or a database URL without its password.
    pub source: String,
    /// The file in the backup directory, when one was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its size in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Its SHA-256, hex.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// For PostgreSQL: the command that dumps the database.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
}

/// The manifest, `backup.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: String,
    /// The program and version that made the backup.
    pub tool: String,
    /// When the backup started.
    pub created_at: DateTime<Utc>,
    /// What was backed up, listed or left out, in the order given.
    pub entries: Vec<Entry>,
}

impl Manifest {
    /// A human-readable account of the backup in `dir`, one line per
    /// entry: what was saved, what to dump with `pg_dump`, and what to
    /// keep safe separately.
    pub fn summary(&self, dir: &Path) -> String {
        let mut out = format!(
            "backup written to {} ({MANIFEST_FILE} lists each file with its SHA-256)\n",
            dir.display()
        );
        for e in &self.entries {
            let keys = e.keys.join(", ");
            let line = match e.kind {
                EntryKind::Sqlite | EntryKind::File => format!(
                    "  saved    {} ({} bytes) from {} [{keys}]",
                    e.file.as_deref().unwrap_or("-"),
                    e.bytes.unwrap_or(0),
                    e.source
                ),
                EntryKind::Missing => {
                    format!(
                        "  absent   {} [{keys}]: not created yet, nothing to save",
                        e.source
                    )
                }
                EntryKind::Postgres => format!(
                    "  DUMP     {} [{keys}] is PostgreSQL and was not copied; run: {}",
                    e.source,
                    e.command.as_deref().unwrap_or("pg_dump")
                ),
                EntryKind::Keep => {
                    format!(
                        "  keep     {} [{keys}]: not copied, keep it safe separately",
                        e.source
                    )
                }
            };
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

/// Why a backup failed. Nothing is left under `backup.json` then.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The output directory exists and holds files.
    #[error("{0} exists and is not empty; back up into a new directory")]
    NotEmpty(PathBuf),
    /// A database URL is not supported.
    #[error("{key}: {source}")]
    Url {
        /// The configuration key.
        key: String,
        /// The URL's problem.
        #[source]
        source: UnsupportedUrl,
    },
    /// An in-memory database cannot be backed up.
    #[error("{0}: an in-memory database holds nothing to back up")]
    InMemory(String),
    /// The SQLite file named by the configuration does not exist.
    #[error("{key}: there is no database at {path}")]
    NoDatabase {
        /// The configuration key.
        key: String,
        /// The missing file.
        path: PathBuf,
    },
    /// SQLite refused the snapshot.
    #[error("cannot snapshot the database {path}")]
    Snapshot {
        /// The source database.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: sqlx::Error,
    },
    /// The snapshot did not pass SQLite's `quick_check`.
    #[error("the snapshot of {path} is damaged: {detail}")]
    Damaged {
        /// The source database.
        path: PathBuf,
        /// What `PRAGMA quick_check` said.
        detail: String,
    },
    /// Two items would be written to the same file.
    #[error("two items would both be written to {0}")]
    DuplicateName(String),
    /// Reading or writing a file failed.
    #[error("cannot {what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Result with [`BackupError`].
pub type Result<T, E = BackupError> = std::result::Result<T, E>;

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BackupError + 'a {
    move |source| BackupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Backs `items` up into the directory `out` (created with mode 0700; it
/// must be new or empty), then writes the manifest there and returns it.
/// Files are written with mode 0600 through a `.partial` name and renamed
/// when complete. Does blocking file I/O: call it from a command line, or
/// from `spawn_blocking`.
///
/// # Errors
/// [`BackupError`]; the directory may then hold some files but no
/// manifest.
pub async fn run(items: &[Item], out: &Path, tool: &str) -> Result<Manifest> {
    let created_at = Utc::now();
    prepare_dir(out)?;
    let mut entries: Vec<Entry> = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for item in items {
        let source = describe(item)?;
        if !matches!(item.source, Source::Keep(_)) {
            // One source named by two keys is backed up once.
            if let Some(e) = entries
                .iter_mut()
                .find(|e| e.kind != EntryKind::Keep && e.source == source)
            {
                e.keys.push(item.key.clone());
                continue;
            }
            if !names.insert(item.name.clone()) {
                return Err(BackupError::DuplicateName(item.name.clone()));
            }
        }
        entries.push(back_up(item, source, out).await?);
    }
    let manifest = Manifest {
        format: FORMAT.to_string(),
        tool: tool.to_string(),
        created_at,
        entries,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Io {
        what: "encode",
        path: out.join(MANIFEST_FILE),
        source: e.into(),
    })?;
    write_new(&out.join(MANIFEST_FILE), |f| {
        std::io::Write::write_all(f, &json)?;
        std::io::Write::write_all(f, b"\n")
    })?;
    sync_dir(out)?;
    Ok(manifest)
}

/// Reads the manifest of a backup directory and checks every file it
/// lists against its size and SHA-256.
///
/// # Errors
/// [`BackupError::Io`] when the manifest or a file cannot be read or is
/// not valid; [`BackupError::Damaged`] when a file's digest differs.
pub fn check(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = fs::read(&path).map_err(io("read", &path))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BackupError::Io {
        what: "parse",
        path: path.clone(),
        source: e.into(),
    })?;
    for e in &manifest.entries {
        let (Some(file), Some(sha)) = (&e.file, &e.sha256) else {
            continue;
        };
        let p = dir.join(file);
        let (bytes, digest) = hash_file(&p)?;
        if Some(bytes) != e.bytes || &digest != sha {
            return Err(BackupError::Damaged {
                path: p,
                detail: "size or SHA-256 differs from the manifest".into(),
            });
        }
    }
    Ok(manifest)
}

/// The entry's `source` text: a path, or a redacted URL.
fn describe(item: &Item) -> Result<String> {
    Ok(match &item.source {
        Source::Database(url) => {
            let parsed = ndxp_db::parse(url).map_err(|source| BackupError::Url {
                key: item.key.clone(),
                source,
            })?;
            match parsed.backend {
                Backend::Sqlite if parsed.in_memory => {
                    return Err(BackupError::InMemory(item.key.clone()))
                }
                Backend::Sqlite => full(&sqlite_path(url)).display().to_string(),
                Backend::Postgres => redact(url),
            }
        }
        Source::File(p) | Source::Keep(p) => full(p).display().to_string(),
    })
}

/// The absolute form of `path`, for a manifest that says where to restore
/// each file whatever directory the command ran in: resolved (no `..`,
/// no symbolic links) when it exists.
fn full(path: &Path) -> PathBuf {
    path.canonicalize()
        .or_else(|_| std::path::absolute(path))
        .unwrap_or_else(|_| path.to_path_buf())
}

/// The file of a `sqlite://PATH?...` or `sqlite:PATH` URL.
fn sqlite_path(url: &str) -> PathBuf {
    let parsed = ndxp_db::parse(url).ok();
    PathBuf::from(parsed.as_ref().and_then(|u| u.sqlite_file()).unwrap_or(url))
}

async fn back_up(item: &Item, source: String, out: &Path) -> Result<Entry> {
    let mut entry = Entry {
        kind: EntryKind::Keep,
        keys: vec![item.key.clone()],
        source,
        file: None,
        bytes: None,
        sha256: None,
        command: None,
    };
    let dest = out.join(&item.name);
    match &item.source {
        Source::Keep(_) => return Ok(entry),
        Source::Database(url) if url.starts_with("postgres") => {
            entry.kind = EntryKind::Postgres;
            entry.command = Some(pg_dump_command(url, &item.name));
            return Ok(entry);
        }
        Source::Database(url) => {
            let src = sqlite_path(url);
            if !src.is_file() {
                return Err(BackupError::NoDatabase {
                    key: item.key.clone(),
                    path: src,
                });
            }
            snapshot_sqlite(&src, &dest).await?;
            entry.kind = EntryKind::Sqlite;
        }
        Source::File(src) => {
            let mut input = match File::open(src) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    entry.kind = EntryKind::Missing;
                    return Ok(entry);
                }
                Err(e) => return Err(io("read", src)(e)),
            };
            write_new(&dest, |f| std::io::copy(&mut input, f).map(drop))?;
            entry.kind = EntryKind::File;
        }
    }
    let (bytes, sha) = hash_file(&dest)?;
    entry.file = Some(item.name.clone());
    entry.bytes = Some(bytes);
    entry.sha256 = Some(sha);
    Ok(entry)
}

/// The command that dumps a PostgreSQL database into `NAME.pgdump`: the
/// URL is shown without its password (`pg_dump` then reads it from
/// `PGPASSWORD` or `~/.pgpass`).
pub fn pg_dump_command(url: &str, name: &str) -> String {
    let base = name.strip_suffix(".db").unwrap_or(name);
    format!(
        "pg_dump --format=custom --file={base}.pgdump '{}'",
        redact(url)
    )
}

/// `VACUUM INTO` a new file beside `dest`, checked with `quick_check`,
/// then renamed to `dest`.
async fn snapshot_sqlite(src: &Path, dest: &Path) -> Result<()> {
    let partial = partial_name(dest);
    // An empty file is an allowed target of VACUUM INTO; creating it first
    // gives the snapshot mode 0600 from its first byte.
    drop(create_private(&partial)?);
    let snap_err = |source| BackupError::Snapshot {
        path: src.to_path_buf(),
        source,
    };
    let access = SqliteAccess::ReadWrite {
        busy_timeout: BUSY_TIMEOUT,
    };
    let mut conn = connect_sqlite_file(src, access).await.map_err(snap_err)?;
    let target = partial.to_string_lossy().into_owned();
    let result = sqlx::query("VACUUM INTO ?")
        .bind(target)
        .execute(&mut conn)
        .await;
    let _ = conn.close().await;
    result.map_err(snap_err)?;

    let mut check = connect_sqlite_file(&partial, SqliteAccess::ReadOnly)
        .await
        .map_err(snap_err)?;
    let verdict: std::result::Result<String, sqlx::Error> =
        sqlx::query_scalar("PRAGMA quick_check")
            .fetch_one(&mut check)
            .await;
    let _ = check.close().await;
    let verdict = verdict.map_err(snap_err)?;
    if verdict != "ok" {
        return Err(BackupError::Damaged {
            path: src.to_path_buf(),
            detail: verdict,
        });
    }
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io("flush", &partial))?;
    fs::rename(&partial, dest).map_err(io("rename", dest))
}

fn partial_name(dest: &Path) -> PathBuf {
    let mut p = dest.as_os_str().to_owned();
    p.push(".partial");
    PathBuf::from(p)
}

/// Creates the new file `path` with mode 0600 from its first byte.
fn create_private(path: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io("create", path))
}

/// Writes the new file `path` through `PATH.partial`: fills it with
/// `fill`, flushes it and renames it into place.
fn write_new(path: &Path, fill: impl FnOnce(&mut File) -> std::io::Result<()>) -> Result<()> {
    let tmp = partial_name(path);
    let mut f = create_private(&tmp)?;
    fill(&mut f).map_err(io("write", &tmp))?;
    f.sync_all().map_err(io("flush", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("rename", path))
}

fn prepare_dir(out: &Path) -> Result<()> {
    match fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(out.to_path_buf()));
            }
            fs::set_permissions(out, fs::Permissions::from_mode(0o700)).map_err(io("protect", out))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(out)
            .map_err(io("create", out)),
        Err(e) => Err(io("read", out)(e)),
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("flush", dir))
}

/// Size and SHA-256 (hex) of a file, read in chunks.
fn hash_file(path: &Path) -> Result<(u64, String)> {
    let f = File::open(path).map_err(io("read", path))?;
    let mut reader = BufReader::with_capacity(1 << 16, f);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut total = 0u64;
    loop {
        let n = reader.read(&mut buf).map_err(io("read", path))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((total, hex::encode(hasher.finish())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn pg_dump_command_hides_the_password() {
        assert_eq!(
            pg_dump_command("postgres://ndxp:secret@db:5432/ndxp", "registry.db"),
            "pg_dump --format=custom --file=registry.pgdump 'postgres://ndxp:***@db:5432/ndxp'"
        );
    }

    #[test]
    fn sqlite_paths_drop_the_query() {
        assert_eq!(
            sqlite_path("sqlite:///var/lib/ndxp/log.db?mode=rwc"),
            PathBuf::from("/var/lib/ndxp/log.db")
        );
        assert_eq!(sqlite_path("sqlite:log.db"), PathBuf::from("log.db"));
    }
}
