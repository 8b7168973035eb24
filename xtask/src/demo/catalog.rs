//! Configuration as code in the demo (docs/config-as-code.md): the demo's
//! registry exported, applied to a fresh registry database, and exported
//! again; the two files must be identical, and applying again must change
//! nothing.

use std::path::Path;

use anyhow::{ensure, Context};

use super::tools::{exec_out, p, write_private};
use super::Report;

/// Runs the step on the demo in `dir` (its `gateway.toml`).
pub(crate) fn flow(report: &mut Report, bin: &Path, dir: &Path) {
    report.step(
        "configuration as code: export, apply to a fresh registry, export again",
        || {
            let cfg = dir.join("gateway.toml");
            let copy_cfg = dir.join("gateway-copy.toml");
            let text = std::fs::read_to_string(&cfg).context("reading gateway.toml")?;
            let copy = text.replace("sqlite://registry.db", "sqlite://registry-copy.db");
            ensure!(copy != text, "gateway.toml names no sqlite://registry.db");
            write_private(&copy_cfg, copy)?;
            let exported = dir.join("registry.toml");
            let again = dir.join("registry-copy.toml");
            // `ndxp-gateway registry CMD --config CFG FLAG FILE`
            let registry = |cmd: &str, cfg: &Path, flag: &str, file: &Path| {
                let args = ["registry", cmd, "--config", p(cfg), flag, p(file)];
                exec_out(bin, "ndxp-gateway", &args)
            };
            registry("export", &cfg, "-o", &exported)?;
            let plan = registry("apply", &copy_cfg, "-f", &exported)?;
            registry("export", &copy_cfg, "-o", &again)?;
            let (a, b) = (std::fs::read(&exported)?, std::fs::read(&again)?);
            ensure!(
                a == b,
                "the export of the copy differs from the original: diff {} {}",
                exported.display(),
                again.display()
            );
            let second = registry("apply", &copy_cfg, "-f", &exported)?;
            ensure!(
                second.trim_end().ends_with("no changes"),
                "applying the export again changed the registry:\n{second}"
            );
            let summary = plan.lines().last().unwrap_or_default().to_string();
            Ok(format!(
                "{} ({} bytes) reproduced in registry-copy.db: {summary}",
                exported.display(),
                a.len()
            ))
        },
    );
}
