//! File modes, for the tests that check what the binaries create.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The permission bits (`mode & 0o777`) of `path`; panics, naming the
/// file, when it cannot be examined (a file the test expects is missing).
pub fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}
