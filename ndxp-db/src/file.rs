//! SQLite database files that only their owner may read: created empty
//! with mode `0600` before SQLite opens them (SQLite creates files with the
//! process umask and gives its `-wal` and `-shm` files the database
//! file's mode), and refused when group or others can read them (a message
//! log holds personal data; a registry, credential hashes).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A database file is open to group or others, or could not be created or
/// examined.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileModeError {
    /// Group or others may read the file.
    #[error("{} has mode {mode:04o}, which lets group or others read it; run `chmod 600 {}`", path.display(), path.display())]
    TooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits (`mode & 0o7777`).
        mode: u32,
    },
    /// The file could not be created, or its mode could not be read.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What failed: `create`, `read the mode of`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// Makes a SQLite database file ready to open: created empty with mode
/// `0600` when missing and `create` is set (an existing file is never
/// truncated), and refused when it, or its `-wal` or `-shm` file, lets
/// group or others read it. Missing files are not checked.
///
/// # Errors
/// [`FileModeError::TooOpen`] naming the file and the `chmod`,
/// [`FileModeError::Io`] when the file cannot be created or a mode cannot
/// be read.
pub fn prepare_sqlite_file(path: &Path, create: bool) -> Result<(), FileModeError> {
    if create {
        let created = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path);
        match created {
            Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                return Err(FileModeError::Io {
                    action: "create",
                    path: path.to_path_buf(),
                    source: e,
                })
            }
            _ => {}
        }
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        let file = PathBuf::from(file);
        let mode = match fs::metadata(&file) {
            Ok(meta) => meta.permissions().mode() & 0o7777,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(source) => {
                let action = "read the mode of";
                return Err(FileModeError::Io {
                    action,
                    path: file,
                    source,
                });
            }
        };
        if mode & 0o077 != 0 {
            return Err(FileModeError::TooOpen { path: file, mode });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_private_never_truncated_and_open_files_refused() -> io::Result<()> {
        let tmp = tempfile::tempdir()?;
        let db = tmp.path().join("x.db");
        prepare_sqlite_file(&db, false).map_err(io::Error::other)?;
        assert!(!db.exists(), "not created without `create`");
        prepare_sqlite_file(&db, true).map_err(io::Error::other)?;
        assert_eq!(fs::metadata(&db)?.permissions().mode() & 0o777, 0o600);
        fs::write(&db, b"data")?;
        prepare_sqlite_file(&db, true).map_err(io::Error::other)?;
        assert_eq!(fs::read(&db)?, b"data", "never truncated");

        let wal = tmp.path().join("x.db-wal");
        fs::write(&wal, b"")?;
        fs::set_permissions(&wal, fs::Permissions::from_mode(0o640))?;
        let err = prepare_sqlite_file(&db, true).expect_err("a readable -wal file");
        let text = err.to_string();
        assert!(
            text.contains(&format!("chmod 600 {}", wal.display())),
            "{text}"
        );
        assert!(text.contains("mode 0640"), "{text}");

        let missing_dir = tmp.path().join("no/such/dir.db");
        let err = prepare_sqlite_file(&missing_dir, true).expect_err("no directory");
        assert!(matches!(err, FileModeError::Io { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("cannot create {}", missing_dir.display())
        );
        Ok(())
    }
}
