//! Files that only their owner may read: every database, configuration
//! file, state file and file holding a secret that NDXP creates is created
//! with mode `0600` (directories `0700`) from its first byte, and a file
//! that others can read is refused (or warned about) when a process starts.
//!
//! - [`write_private`] replaces a file whole (a temporary file in the same
//!   directory, created `0600`, `fsync`ed, then renamed);
//! - [`create_private`] opens a file for writing, created `0600`, and
//!   narrows an existing one to `0600`;
//! - [`ensure_private_file`] creates an empty `0600` file if none exists,
//!   never truncating one that does, for a file another library then
//!   writes with the process umask (database files have their own,
//!   `ndxp_db::prepare_sqlite_file`);
//! - [`create_private_dir_all`] creates missing directories `0700`;
//! - [`check_mode`] says whether a file's mode is narrow enough, with an
//!   error naming the file and the `chmod` that fixes it.
//!
//! Private key files have their own reader with the same rule
//! ([`crate::key::read_private_key_file`]).

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of the files NDXP creates.
pub const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of the directories NDXP creates.
pub const PRIVATE_DIR_MODE: u32 = 0o700;

/// Who besides the owner may read a file that is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readers {
    /// The owner only (`mode & 0o077 == 0`): files holding secrets or
    /// personal data.
    Owner,
    /// The owner and the file's group (`mode & 0o007 == 0`): configuration
    /// files that an administrator owns and the service's group reads.
    OwnerAndGroup,
}

/// A file's mode lets more people read it than allowed, or the mode could
/// not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileModeError {
    /// The file is open to more than [`Readers`] allows.
    #[error("{} has mode {mode:04o}, which lets {who} read it; run `chmod {fix} {}`", path.display(), path.display())]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
        /// Who may read it and should not: `group or others`, `others`.
        who: &'static str,
        /// The `chmod` argument that fixes it: `600`, `o-rwx`.
        fix: &'static str,
    },
    /// The file could not be created.
    #[error("cannot create {}", path.display())]
    Create {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file's mode could not be read.
    #[error("cannot read the mode of {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Checks that only `readers` may read `path` (see [`Readers`]).
///
/// # Errors
/// [`FileModeError::TooOpen`] naming the file and the fix, or
/// [`FileModeError::Io`] when the file cannot be examined.
pub fn check_mode(path: &Path, readers: Readers) -> Result<(), FileModeError> {
    let meta = fs::metadata(path).map_err(|source| FileModeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    let (mask, who, fix) = match readers {
        Readers::Owner => (0o077, "group or others", "600"),
        Readers::OwnerAndGroup => (0o007, "others", "o-rwx"),
    };
    if mode & mask != 0 {
        return Err(FileModeError::TooOpen {
            path: path.to_path_buf(),
            mode,
            who,
            fix,
        });
    }
    Ok(())
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory created with `mode`, written and `fsync`ed, then renamed (or,
/// without `overwrite`, hard-linked so that an existing file is never
/// replaced: the error is then [`io::ErrorKind::AlreadyExists`]). The
/// directory is `fsync`ed afterwards.
///
/// # Errors
/// Any file-system error.
pub fn write_file_atomic(path: &Path, bytes: &[u8], mode: u32, overwrite: bool) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "the path has no file name"))?;
    let mut rnd = [0u8; 8];
    openssl::rand::rand_bytes(&mut rnd).map_err(io::Error::other)?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        hex::encode(rnd)
    ));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        if overwrite {
            fs::rename(&tmp, path)
        } else {
            fs::hard_link(&tmp, path)
        }
    };
    let result = write();
    // After a rename the temporary name is gone; after a link (or a
    // failure) it must be removed. Nothing useful can be done if that fails.
    let _ = fs::remove_file(&tmp);
    result?;
    File::open(dir)?.sync_all()
}

/// Replaces `path` whole with `bytes`, mode `0600` from the first byte
/// ([`write_file_atomic`] with overwrite).
///
/// # Errors
/// Any file-system error.
pub fn write_private(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_file_atomic(path, bytes, PRIVATE_FILE_MODE, true)
}

/// Opens `path` for writing, truncated: created `0600`, and an existing
/// file is narrowed to `0600` before anything is written.
///
/// # Errors
/// Any file-system error.
pub fn create_private(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)?;
    narrow(&f)?;
    Ok(f)
}

fn narrow(f: &File) -> io::Result<()> {
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
    }
    Ok(())
}

/// Creates `path` empty with mode `0600` if it does not exist (its
/// directory must); an existing file is left as it is.
///
/// # Errors
/// Any file-system error other than the file existing.
pub fn ensure_private_file(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates `path` and its missing parents with mode `0700`; existing
/// directories are left as they are.
///
/// # Errors
/// Any file-system error.
pub fn create_private_dir_all(path: &Path) -> io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o777)
            .unwrap_or(0)
    }

    #[test]
    fn everything_is_created_for_the_owner_only() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("a/b");
        create_private_dir_all(&dir)?;
        assert_eq!(mode(&tmp.path().join("a")), 0o700);
        assert_eq!(mode(&dir), 0o700);
        let f = dir.join("f");
        write_private(&f, b"x")?;
        assert_eq!((mode(&f), fs::read(&f)?), (0o600, b"x".to_vec()));
        let g = dir.join("g");
        fs::write(&g, b"old")?;
        fs::set_permissions(&g, fs::Permissions::from_mode(0o644))?;
        create_private(&g)?.write_all(b"new")?;
        assert_eq!((mode(&g), fs::read(&g)?), (0o600, b"new".to_vec()));
        let db = dir.join("db");
        ensure_private_file(&db)?;
        assert_eq!(mode(&db), 0o600);
        fs::write(&db, b"data")?;
        ensure_private_file(&db)?;
        assert_eq!(fs::read(&db)?, b"data", "never truncated");
        Ok(())
    }

    #[test]
    fn open_files_are_named_with_their_fix() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let f = tmp.path().join("gateway.toml");
        fs::write(&f, b"")?;
        for (m, readers, ok, fix) in [
            (0o600, Readers::Owner, true, ""),
            (0o640, Readers::Owner, false, "chmod 600"),
            (0o640, Readers::OwnerAndGroup, true, ""),
            (0o644, Readers::OwnerAndGroup, false, "chmod o-rwx"),
        ] {
            fs::set_permissions(&f, fs::Permissions::from_mode(m))?;
            match check_mode(&f, readers) {
                Ok(()) => assert!(ok, "{m:o} {readers:?}"),
                Err(e) => {
                    assert!(!ok, "{m:o} {readers:?}");
                    let text = e.to_string();
                    assert!(text.contains(&format!("{fix} {}", f.display())), "{text}");
                }
            }
        }
        assert!(matches!(
            check_mode(&tmp.path().join("missing"), Readers::Owner),
            Err(FileModeError::Io { .. })
        ));
        Ok(())
    }
}
