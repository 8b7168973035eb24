//! `cargo xtask ci`: the whole check, in the order a reviewer would run it.

use anyhow::{bail, Context, Result};

use crate::util::{cargo, run_step};

pub(crate) fn run() -> Result<()> {
    let started = std::time::Instant::now();
    run_step("format", cargo().args(["fmt", "--all", "--check"]))?;
    run_step(
        "lint",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    alert_rules()?;
    run_step(
        "docs",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
    )?;
    // Integrators take ndxp-sign alone to sign and verify messages, and
    // ndxp-audit (with ndxp-sign) to verify archives: without their default
    // features each builds with its example and pulls in no async runtime
    // (and ndxp-sign no PKCS#11 binding: `pkcs11` is opt-in),
    // ndxp-audit no database driver and no HTTP client either; ndxp-audit's
    // tests that need no database pass that way.
    for (package, refused) in [
        ("ndxp-sign", &["tokio", "cryptoki"][..]),
        (
            "ndxp-audit",
            &["sqlx", "rusqlite", "reqwest", "hyper", "tokio"][..],
        ),
    ] {
        run_step(
            &format!("{package} without default features"),
            cargo().args([
                "check",
                "-p",
                package,
                "--no-default-features",
                "--examples",
                "--locked",
            ]),
        )?;
        refuse_dependencies(package, refused)?;
    }
    run_step(
        "ndxp-audit tests without default features",
        cargo().args([
            "test",
            "-p",
            "ndxp-audit",
            "--no-default-features",
            "--locked",
        ]),
    )?;
    if has_nextest() {
        run_step(
            "tests",
            cargo().args([
                "nextest",
                "run",
                "--workspace",
                "--locked",
                "--no-fail-fast",
            ]),
        )?;
        run_step(
            "doc tests",
            cargo().args(["test", "--workspace", "--locked", "--doc"]),
        )?;
    } else {
        run_step("tests", cargo().args(["test", "--workspace", "--locked"]))?;
    }
    eprintln!("==> ci passed in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// `promtool check rules` and `promtool test rules` on the alert rules in
/// `deploy/prometheus` (promtool is in Debian's `prometheus` package, which
/// `.ci/run` installs). Required when `CI=true`; elsewhere skipped with a
/// message when promtool is missing.
fn alert_rules() -> Result<()> {
    let found = std::process::Command::new("promtool")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            bail!("promtool is required in CI to check deploy/prometheus/ndxp-rules.yml: install Debian's prometheus package (.ci/run does)");
        }
        eprintln!("==> alert rules: skipped, promtool not found (apt-get install prometheus to run this check)");
        return Ok(());
    }
    let dir = crate::util::root().join("deploy/prometheus");
    let promtool = |args: &[&str]| {
        let mut c = std::process::Command::new("promtool");
        c.current_dir(&dir).args(args);
        c
    };
    run_step(
        "alert rules",
        &mut promtool(&["check", "rules", "ndxp-rules.yml"]),
    )?;
    run_step(
        "alert rule tests",
        &mut promtool(&["test", "rules", "ndxp-rules.test.yml"]),
    )
}

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Fails if `package`, built without its default features, depends (as a
/// normal dependency, directly or not) on any of `refused`.
fn refuse_dependencies(package: &str, refused: &[&str]) -> Result<()> {
    let name = format!("{package} dependencies without default features");
    let mut cmd = cargo();
    cmd.args([
        "tree",
        "-p",
        package,
        "--no-default-features",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
        "--locked",
    ]);
    eprintln!("==> {name}: {cmd:?}");
    let out = cmd.output().with_context(|| format!("starting {name}"))?;
    if !out.status.success() {
        bail!("{name} failed ({})", out.status);
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    let found: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|crate_name| refused.contains(crate_name))
        .collect();
    if !found.is_empty() {
        bail!("{package} without default features depends on {found:?}; put them behind a feature");
    }
    Ok(())
}
