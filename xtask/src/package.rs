//! `cargo xtask package`: the Debian packages of `ndxp-gateway` and
//! `ndxp-node` (docs/packages.md).
//!
//! 1. one release build of both binaries (`cargo build --release --locked`);
//! 2. shell completions and man pages from each binary's own command line
//!    (its hidden `generate` command) into `target/release/ndxp-gen/`;
//! 3. `cargo deb --no-build --strip` per package, as
//!    `[package.metadata.deb]` of its Cargo.toml describes it, into
//!    `target/debian/`;
//! 4. the file list of each package (`dpkg-deb -c`) checked against
//!    [`crate::package_contents`], and the sizes printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::package_contents::{self, Listing};
use crate::util::{cargo, root, run_step};

/// The binary packages, each named after its crate and binary.
pub(crate) const PACKAGES: [&str; 2] = ["ndxp-gateway", "ndxp-node"];

/// `cargo xtask package` options.
#[derive(clap::Args, Debug)]
pub(crate) struct PackageArgs {
    /// Install cargo-deb with `cargo install cargo-deb --locked` when it is
    /// missing (needs crates.io); without it a missing cargo-deb stops the
    /// command with what to run
    #[arg(long)]
    pub(crate) install_tools: bool,
}

pub(crate) fn run(args: PackageArgs) -> Result<()> {
    let started = Instant::now();
    ensure_cargo_deb(args.install_tools)?;
    let target = target_dir();
    let build = Instant::now();
    let mut cmd = cargo();
    cmd.args(["build", "--release", "--locked"]);
    // `ndxp_build_info{commit}` of the packaged binaries (docs/monitoring.md):
    // the commit packaged, unless the caller names one.
    if std::env::var_os("NDXP_COMMIT").is_none() {
        if let Some(commit) = head_commit() {
            eprintln!("==> NDXP_COMMIT={commit}");
            cmd.env("NDXP_COMMIT", commit);
        }
    }
    for p in PACKAGES {
        cmd.args(["-p", p]);
    }
    run_step("release build", &mut cmd)?;
    let build_secs = build.elapsed().as_secs_f64();
    let release = target.join("release");
    let out_dir = target.join("debian");
    let mut report = Vec::new();
    for package in PACKAGES {
        let binary = release.join(package);
        generate_docs(&binary, &release.join("ndxp-gen").join(package))?;
        let deb = cargo_deb(package, &out_dir)?;
        let listing = dpkg_listing(&deb)?;
        package_contents::check(package, &listing)
            .with_context(|| format!("checking the contents of {}", deb.display()))?;
        report.push(Built {
            deb_bytes: std::fs::metadata(&deb)?.len(),
            unstripped_bytes: std::fs::metadata(&binary)?.len(),
            packaged_bytes: listing
                .entry(&format!("./usr/bin/{package}"))
                .map_or(0, |e| e.size),
            deb,
        });
    }
    eprintln!(
        "==> packages built in {:.0} s (release build {:.0} s):",
        started.elapsed().as_secs_f64(),
        build_secs
    );
    for b in &report {
        eprintln!(
            "    {}  {}  (binary {} stripped, {} before)",
            b.deb.display(),
            mib(b.deb_bytes),
            mib(b.packaged_bytes),
            mib(b.unstripped_bytes)
        );
    }
    Ok(())
}

struct Built {
    deb: PathBuf,
    deb_bytes: u64,
    unstripped_bytes: u64,
    packaged_bytes: u64,
}

fn mib(bytes: u64) -> String {
    let m = bytes as f64 / (1024.0 * 1024.0);
    format!("{m:.1} MiB")
}

/// `CARGO_TARGET_DIR` or the workspace's `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                root().join(d)
            }
        }
        None => root().join("target"),
    }
}

/// cargo-deb is there, or installed (`install`), or the error says how.
/// The checked-out commit (12 hex digits, `-dirty` when the tree has
/// changes), or `None` outside a git checkout.
fn head_commit() -> Option<String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .current_dir(root())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
    };
    let head = git(&["rev-parse", "--short=12", "HEAD"])?;
    let head = String::from_utf8(head.stdout).ok()?.trim().to_owned();
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"])
        .is_some_and(|o| !o.stdout.is_empty());
    Some(if dirty { format!("{head}-dirty") } else { head })
}

fn ensure_cargo_deb(install: bool) -> Result<()> {
    let present = cargo()
        .args(["deb", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if present {
        return Ok(());
    }
    if !install {
        bail!(
            "cargo-deb is not installed: run `cargo install cargo-deb --locked` \
             (or `cargo xtask package --install-tools`, which does it), then again"
        );
    }
    run_step(
        "install cargo-deb",
        cargo().args(["install", "cargo-deb", "--locked"]),
    )
}

/// Completions for bash, zsh and fish and the man pages, written by the
/// built `binary` itself into `dir` (emptied first), the pages gzipped as
/// Debian wants them.
fn generate_docs(binary: &Path, dir: &Path) -> Result<()> {
    let name = binary
        .file_name()
        .and_then(|n| n.to_str())
        .context("binary name")?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("emptying {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (shell, file) in [
        ("bash", format!("{name}.bash")),
        ("zsh", format!("_{name}")),
        ("fish", format!("{name}.fish")),
    ] {
        let out = Command::new(binary)
            .args(["generate", "completions", shell])
            .output()
            .with_context(|| format!("running {}", binary.display()))?;
        if !out.status.success() || out.stdout.is_empty() {
            bail!(
                "{name} generate completions {shell} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::fs::write(dir.join(&file), &out.stdout)
            .with_context(|| format!("writing {}", dir.join(&file).display()))?;
    }
    let man = dir.join("man");
    run_step(
        &format!("{name} man pages"),
        Command::new(binary).args(["generate", "man"]).arg(&man),
    )?;
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&man)
        .with_context(|| format!("reading {}", man.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    if pages.is_empty() {
        bail!("{name} generate man wrote no page into {}", man.display());
    }
    // -n: no name or time stamp inside, so a rebuild gives the same bytes.
    run_step(
        &format!("gzip {} man pages of {name}", pages.len()),
        Command::new("gzip").args(["-9nf"]).args(&pages),
    )
}

/// `cargo deb` for `package` from the binaries already built; the path of
/// the `.deb` it wrote.
fn cargo_deb(package: &str, out_dir: &Path) -> Result<PathBuf> {
    let mut cmd = cargo();
    cmd.args([
        "deb",
        "--no-build",
        "--strip",
        "--locked",
        "-p",
        package,
        "-o",
    ])
    .arg(out_dir);
    eprintln!("==> package {package}: {cmd:?}");
    let out = cmd
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("starting cargo deb for {package}"))?;
    if !out.status.success() {
        bail!("cargo deb for {package} failed ({})", out.status);
    }
    // cargo-deb prints the path of the package it wrote, last.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let deb = stdout
        .lines()
        .map(str::trim)
        .rfind(|l| l.ends_with(".deb"))
        .map(PathBuf::from)
        .with_context(|| format!("cargo deb for {package} named no .deb: {stdout}"))?;
    Ok(if deb.is_absolute() {
        deb
    } else {
        root().join(deb)
    })
}

/// `dpkg-deb -c DEB`, parsed.
pub(crate) fn dpkg_listing(deb: &Path) -> Result<Listing> {
    let out = Command::new("dpkg-deb")
        .arg("-c")
        .arg(deb)
        .output()
        .context("running dpkg-deb -c (the dpkg package)")?;
    if !out.status.success() {
        bail!(
            "dpkg-deb -c {} failed ({}): {}",
            deb.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Listing::parse(&String::from_utf8_lossy(&out.stdout))
}
