//! `cargo xtask ci`: the whole check, in the order a reviewer would run it.

use anyhow::Result;

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
    run_step(
        "docs",
        cargo()
            .args(["doc", "--workspace", "--no-deps", "--locked"])
            .env("RUSTDOCFLAGS", "-D warnings"),
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

fn has_nextest() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
