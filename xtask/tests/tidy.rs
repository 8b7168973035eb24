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

/// Library sources: every `ndxp-*/src` file except binaries' `main.rs`.
fn library_sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(root()).expect("workspace root").flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.starts_with("ndxp-") {
            rust_files(&e.path().join("src"), &mut files);
        }
    }
    files.retain(|p| p.file_name().is_some_and(|n| n != "main.rs"));
    files.sort();
    files
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
