//! `cargo xtask bench NAME`: named benchmarks with machine-readable output.
//!
//! Each benchmark prints a table and writes the same figures to
//! `target/ndxp-bench/NAME.json` so that runs can be compared over time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::util::{cargo, root, run_step};

pub(crate) fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("httpsig") => httpsig(),
        Some(other) => bail!("unknown benchmark {other:?}; known: httpsig"),
        None => bail!("usage: cargo xtask bench NAME (known: httpsig)"),
    }
}

/// RFC 9421 sign and verify of a request with a 1 KiB body, beside the raw
/// `openssl speed` rates of the same algorithms, measured in one run.
fn httpsig() -> Result<()> {
    let criterion_dir = root().join("target/criterion");
    let _ = std::fs::remove_dir_all(criterion_dir.join("httpsig"));
    run_step(
        "criterion bench",
        cargo().args(["bench", "-p", "ndxp-sign", "--bench", "httpsig"]),
    )?;
    let ours = criterion_means(&criterion_dir)?;

    eprintln!("==> openssl speed -seconds 3 ecdsap256 rsa2048");
    let out = Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdsap256", "rsa2048"])
        .output()
        .context("running `openssl speed` (is the openssl command line installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl speed failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let speed = String::from_utf8_lossy(&out.stdout).to_string();
    let raw_ec = openssl_rates(&speed, "ecdsa (nistp256)")?;
    let raw_rsa = openssl_rates(&speed, "rsa 2048 bits")?;

    let mut rows = Vec::new();
    for (alg, raw) in [("ecdsa-p256-sha256", raw_ec), ("rsa-v1_5-sha256", raw_rsa)] {
        for (op, raw_rate) in [("sign", raw.0), ("verify", raw.1)] {
            let id = format!("httpsig/{op}/{alg}");
            let ns = *ours
                .get(&id)
                .with_context(|| format!("criterion produced no result for {id}"))?;
            let rate = 1e9 / ns;
            rows.push(json!({
                "algorithm": alg, "operation": op,
                "ndxp_per_s": rate.round(), "openssl_per_s": raw_rate.round(),
                "ratio": (rate / raw_rate * 1000.0).round() / 1000.0,
            }));
        }
    }
    println!(
        "{:<20} {:<7} {:>14} {:>16} {:>7}",
        "algorithm", "op", "ndxp ops/s", "openssl ops/s", "ratio"
    );
    for r in &rows {
        println!(
            "{:<20} {:<7} {:>14.0} {:>16.0} {:>6.1}%",
            r["algorithm"].as_str().unwrap_or(""),
            r["operation"].as_str().unwrap_or(""),
            r["ndxp_per_s"].as_f64().unwrap_or(0.0),
            r["openssl_per_s"].as_f64().unwrap_or(0.0),
            r["ratio"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    let doc = json!({
        "name": "httpsig",
        "body_bytes": 1024,
        "what": "RFC 9421 sign/verify of a request with a 1 KiB body, Content-Digest included, vs `openssl speed` raw rates",
        "results": rows,
        "all_criterion_ns": ours,
    });
    write_result("httpsig", &doc)
}

/// Writes `target/ndxp-bench/NAME.json`.
fn write_result(name: &str, doc: &Value) -> Result<()> {
    let dir = root().join("target/ndxp-bench");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(doc)?)?;
    println!("wrote {}", path.display());
    Ok(())
}

/// Mean time in nanoseconds of every criterion benchmark found under `dir`,
/// keyed by its full id.
fn criterion_means(dir: &Path) -> Result<BTreeMap<String, f64>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "new") {
                    let bench: Value =
                        serde_json::from_slice(&std::fs::read(p.join("benchmark.json"))?)?;
                    let est: Value =
                        serde_json::from_slice(&std::fs::read(p.join("estimates.json"))?)?;
                    if let (Some(id), Some(ns)) = (
                        bench["full_id"].as_str(),
                        est["mean"]["point_estimate"].as_f64(),
                    ) {
                        out.insert(id.to_string(), ns);
                    }
                } else {
                    stack.push(p);
                }
            }
        }
    }
    Ok(out)
}

/// The (sign/s, verify/s) columns of the `openssl speed` line naming `what`.
fn openssl_rates(speed: &str, what: &str) -> Result<(f64, f64)> {
    let line = speed
        .lines()
        .find(|l| l.contains(what))
        .with_context(|| format!("no {what:?} line in openssl speed output"))?;
    let nums: Vec<f64> = line
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    match nums.as_slice() {
        [.., s, v] => Ok((*s, *v)),
        _ => bail!("cannot read rates from {line:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::openssl_rates;

    #[test]
    fn reads_openssl_speed_lines() {
        let out = "                  sign    verify    sign/s verify/s\n\
                   rsa 2048 bits 0.000560s 0.000016s   1785.0  61204.0\n\
                   256 bits ecdsa (nistp256)   0.0000s   0.0001s  41219.5  13480.0\n";
        assert_eq!(
            openssl_rates(out, "rsa 2048 bits").unwrap(),
            (1785.0, 61204.0)
        );
        assert_eq!(
            openssl_rates(out, "ecdsa (nistp256)").unwrap(),
            (41219.5, 13480.0)
        );
        assert!(openssl_rates(out, "ed25519").is_err());
    }
}
