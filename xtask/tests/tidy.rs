//! Tidy checks over the workspace's own sources: what reviewers would
//! otherwise have to catch by eye.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The workspace's member crates (`ndxp-*` directories).
fn member_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root())
        .expect("workspace root")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("ndxp-"))
        .map(|e| e.path())
        .collect();
    dirs.sort();
    dirs
}

/// The files of a crate's binary: `src/main.rs`, the modules it declares
/// with `mod name;` (`src/name.rs` and everything under `src/name/`), and
/// `src/bin/`.
fn binary_sources(krate: &Path) -> Vec<PathBuf> {
    let src = krate.join("src");
    let main = src.join("main.rs");
    if !main.exists() {
        return Vec::new();
    }
    let mut files = vec![main.clone()];
    rust_files(&src.join("bin"), &mut files);
    for (_, line) in code_lines(&main) {
        let line = line.trim();
        let line = line.strip_prefix("pub ").unwrap_or(line);
        if let Some(name) = line.strip_prefix("mod ").and_then(|l| l.strip_suffix(';')) {
            let file = src.join(format!("{name}.rs"));
            if file.exists() {
                files.push(file);
            }
            rust_files(&src.join(name), &mut files);
        }
    }
    files
}

/// Library sources: every `ndxp-*/src` file that is not part of a binary.
fn library_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut binaries = Vec::new();
    for dir in member_dirs() {
        rust_files(&dir.join("src"), &mut files);
        binaries.extend(binary_sources(&dir));
    }
    files.retain(|p| !binaries.contains(p));
    files.sort();
    files
}

/// The direct dependencies a crate's manifest names (all dependency tables).
fn manifest_dependencies(krate: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap_or_default();
    let mut deps = Vec::new();
    let mut in_deps = false;
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_deps = line.ends_with("dependencies]");
            continue;
        }
        if in_deps {
            if let Some(name) = line.split(['=', '.', ' ']).next().filter(|n| !n.is_empty()) {
                if !name.starts_with('#') {
                    deps.push(name.to_string());
                }
            }
        }
    }
    deps
}

/// Code lines (comments and doc comments skipped).
fn code_lines(path: &Path) -> Vec<(usize, String)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l.to_string()))
        .collect()
}

#[test]
fn libraries_do_not_print_or_leave_unfinished_code() {
    let banned = [
        "dbg!(",
        "todo!(",
        "unimplemented!(",
        "println!(",
        "eprintln!(",
        "print!(",
    ];
    let mut found = Vec::new();
    let files = library_sources();
    assert!(files.len() > 20, "the scan found too few files: {files:?}");
    for f in &files {
        for (n, line) in code_lines(f) {
            for b in banned {
                if line.contains(b) {
                    found.push(format!("{}:{n}: {}", f.display(), line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "libraries must not print or leave unfinished code:\n{}",
        found.join("\n")
    );
}

#[test]
fn unsafe_code_lives_only_in_the_ffi_module() {
    let mut found = Vec::new();
    for f in library_sources() {
        if f.ends_with("ndxp-sign/src/ffi.rs") {
            continue;
        }
        for (n, line) in code_lines(&f) {
            if line.contains("unsafe ") || line.contains("unsafe{") {
                found.push(format!("{}:{n}: {}", f.display(), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "`unsafe` outside ndxp-sign/src/ffi.rs:\n{}",
        found.join("\n")
    );
}

/// ARCHITECTURE.md: the OpenSSL bindings are a direct dependency of
/// `ndxp-sign` only (the others use its `ndxp_sign::openssl` re-export, so
/// the workspace has one version), and TLS stream crates are used only where
/// connections are made or accepted.
#[test]
fn openssl_is_reached_through_ndxp_sign() {
    let tls_streams = ["tokio-openssl", "native-tls", "hyper-tls"];
    let may_use_tls_streams = ["ndxp-sign", "ndxp-edge", "ndxp-node", "ndxp-test-support"];
    let mut found = Vec::new();
    let dirs = member_dirs();
    assert!(dirs.len() >= 7, "the scan found too few crates: {dirs:?}");
    for dir in dirs {
        let name = dir
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        for dep in manifest_dependencies(&dir) {
            let bindings = dep == "openssl" || dep == "openssl-sys";
            if (bindings && name != "ndxp-sign")
                || (tls_streams.contains(&dep.as_str())
                    && !may_use_tls_streams.contains(&name.as_str()))
            {
                found.push(format!("{name} depends on {dep}"));
            }
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

/// ARCHITECTURE.md: databases are opened through `ndxp-db`, so that every
/// store gets the same file modes, journal, busy and migration retries; no
/// other library builds an sqlx pool or connection itself.
/// `ndxp-test-support` creates and drops the tests' PostgreSQL schemas with
/// a connection of its own.
#[test]
fn databases_are_opened_through_ndxp_db() {
    let openers = [
        "PoolOptions::new",
        "ConnectOptions::new",
        "Connection::connect",
        "install_default_drivers",
    ];
    let may_open = [root().join("ndxp-db"), root().join("ndxp-test-support")];
    let mut found = Vec::new();
    for f in library_sources() {
        if may_open.iter().any(|d| f.starts_with(d)) {
            continue;
        }
        for (n, line) in code_lines(&f) {
            if openers.iter().any(|o| line.contains(o)) {
                found.push(format!("{}:{n}: {}", f.display(), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "a database opened outside ndxp-db:\n{}",
        found.join("\n")
    );
}
/// ARCHITECTURE.md: binaries parse arguments; libraries take plain values.
#[test]
fn only_binaries_parse_arguments() {
    let mut found = Vec::new();
    for f in library_sources() {
        for (n, line) in code_lines(&f) {
            if line.contains("clap::") || line.contains("use clap") {
                found.push(format!("{}:{n}: {}", f.display(), line.trim()));
            }
        }
    }
    assert!(
        found.is_empty(),
        "clap outside a binary:\n{}",
        found.join("\n")
    );
}

/// ARCHITECTURE.md: a file does one job; none outside tests and the FFI
/// module passes 1,000 lines.
#[test]
fn no_source_file_passes_a_thousand_lines() {
    let mut files = Vec::new();
    for dir in member_dirs() {
        rust_files(&dir.join("src"), &mut files);
    }
    rust_files(&root().join("xtask/src"), &mut files);
    rust_files(&root().join("examples/src"), &mut files);
    let mut found = Vec::new();
    for f in files {
        let name = f.file_name().unwrap_or_default();
        if name == "ffi.rs" || name == "tests.rs" {
            continue;
        }
        let lines = std::fs::read_to_string(&f)
            .unwrap_or_default()
            .lines()
            .count();
        if lines > 1000 {
            found.push(format!("{}: {lines} lines", f.display()));
        }
    }
    assert!(
        found.is_empty(),
        "files over 1,000 lines:\n{}",
        found.join("\n")
    );
}
