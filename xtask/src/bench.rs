//! `cargo xtask bench NAME`: named benchmarks with machine-readable output.
//!
//! Each benchmark prints a table and writes the same figures to
//! `target/ndxp-bench/NAME.json` so that runs can be compared over time.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use ndxp_core::table::Table;
use serde_json::{json, Value};

use crate::util::{cargo, root, run_step};

mod direct;
mod gateway;
pub(crate) mod load_common;
mod node;

pub(crate) fn run(args: &[String]) -> Result<()> {
    match args.first().map(String::as_str) {
        Some("direct") => direct::run(&args[1..]),
        Some("httpsig") => httpsig(),
        Some("reconcile") => reconcile(&args[1..]),
        Some("log") => log(&args[1..]),
        Some("node") => node::run(&args[1..]),
        Some("gateway") => gateway::run(&args[1..]),
        Some(other) => {
            bail!("unknown benchmark {other:?}; known: direct, node, gateway, httpsig, reconcile, log")
        }
        None => {
            bail!("usage: cargo xtask bench NAME (known: direct, node, gateway, httpsig, reconcile, log)")
        }
    }
}

/// RFC 9421 sign and verify of a request with a 1 KiB body, beside the raw
/// `openssl speed` rates of the same algorithms, measured in one run.
fn httpsig() -> Result<()> {
    // `openssl speed` runs before and after criterion and the two are
    // averaged, so that a drift of the machine's speed during the run (this
    // is often a shared VM) does not bias the ratio one way.
    let before = openssl_speed()?;
    let criterion_dir = root().join("target/criterion");
    let _ = std::fs::remove_dir_all(criterion_dir.join("httpsig"));
    run_step(
        "criterion bench",
        cargo().args(["bench", "-p", "ndxp-sign", "--bench", "httpsig"]),
    )?;
    let ours = criterion_means(&criterion_dir)?;
    let after = openssl_speed()?;
    let mean = |a: (f64, f64), b: (f64, f64)| ((a.0 + b.0) / 2.0, (a.1 + b.1) / 2.0);
    let raw_ec = mean(before.0, after.0);
    let raw_rsa = mean(before.1, after.1);
    eprintln!(
        "==> openssl speed before/after: ecdsa sign {:.0}/{:.0} verify {:.0}/{:.0}; rsa sign {:.0}/{:.0} verify {:.0}/{:.0}",
        before.0 .0, after.0 .0, before.0 .1, after.0 .1, before.1 .0, after.1 .0, before.1 .1, after.1 .1
    );

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
    let mut table = Table::new(["algorithm", "op", "ndxp ops/s", "openssl ops/s", "ratio"]);
    table.align_right(&[2, 3, 4]);
    for r in &rows {
        table.row([
            r["algorithm"].as_str().unwrap_or("").to_string(),
            r["operation"].as_str().unwrap_or("").to_string(),
            format!("{:.0}", r["ndxp_per_s"].as_f64().unwrap_or(0.0)),
            format!("{:.0}", r["openssl_per_s"].as_f64().unwrap_or(0.0)),
            format!("{:.1}%", r["ratio"].as_f64().unwrap_or(0.0) * 100.0),
        ]);
    }
    print!("{table}");
    // With SoftHSM2 installed the bench also signs with a key on a token,
    // through the pooled PKCS#11 key store; set beside the file key.
    let softhsm = match (
        ours.get("httpsig/sign/ecdsa-p256-sha256-softhsm"),
        ours.get("httpsig/sign/ecdsa-p256-sha256"),
    ) {
        (Some(token_ns), Some(file_ns)) => {
            let raw = ours.get("httpsig/sign/softhsm-raw-c-sign").copied();
            println!(
                "ecdsa-p256-sha256 sign with a SoftHSM2 key: {:.0}/s, file key {:.0}/s ({:.1}% of the file key's rate); one raw C_Sign: {}",
                1e9 / token_ns,
                1e9 / file_ns,
                file_ns / token_ns * 100.0,
                raw.map(|ns| format!("{:.0}/s", 1e9 / ns)).unwrap_or_else(|| "not measured".into()),
            );
            json!({
                "sign_per_s": (1e9 / token_ns).round(),
                "file_key_sign_per_s": (1e9 / file_ns).round(),
                "ratio_to_file_key": (file_ns / token_ns * 1000.0).round() / 1000.0,
                "raw_c_sign_per_s": raw.map(|ns| (1e9 / ns).round()),
            })
        }
        _ => {
            println!("SoftHSM2 not installed: no token-key figure");
            Value::Null
        }
    };
    let doc = json!({
        "name": "httpsig",
        "softhsm_ecdsa_p256": softhsm,
        "body_bytes": 1024,
        "what": "RFC 9421 sign/verify of a request with a 1 KiB body, Content-Digest included, vs `openssl speed` raw rates (mean of a run before and after)",
        "openssl_before": {"ecdsa_sign": before.0 .0, "ecdsa_verify": before.0 .1, "rsa_sign": before.1 .0, "rsa_verify": before.1 .1},
        "openssl_after": {"ecdsa_sign": after.0 .0, "ecdsa_verify": after.0 .1, "rsa_sign": after.1 .0, "rsa_verify": after.1 .1},
        "results": rows,
        "all_criterion_ns": ours,
    });
    write_result("httpsig", &doc)
}

/// Runs the `name` bench binary of `ndxp-audit` in a fresh release process
/// with its one argument, a record count (`count`, named `what`, or
/// `default`); returns its standard output.
fn audit_bench(name: &str, what: &str, count: Option<&String>, default: u64) -> Result<String> {
    let records = match count {
        Some(n) => n
            .parse::<u64>()
            .with_context(|| format!("{what} must be a number, found {n:?}"))?,
        None => default,
    };
    let mut cmd = cargo();
    cmd.args(["bench", "-p", "ndxp-audit", "--bench", name, "--"])
        .arg(records.to_string());
    eprintln!("==> {name} bench: {cmd:?}");
    let out = cmd
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting cargo bench")?;
    if !out.status.success() {
        bail!("{name} bench failed ({})", out.status);
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Reconciliation of two sides of 1,000,000 transactions (or the number
/// given) with 100 planted differences, drill-down included, measured in a
/// fresh release process (the `reconcile` bench binary of `ndxp-audit`).
fn reconcile(args: &[String]) -> Result<()> {
    let stdout = audit_bench("reconcile", "records per side", args.first(), 1_000_000)?;
    let result = parse_reconcile_output(&stdout)?;
    let mut table = Table::new([
        "records_per_side",
        "planted",
        "found",
        "exact",
        "seconds",
        "peak_rss_mib",
    ]);
    table.align_right(&[1, 2, 3, 4, 5]);
    table.row([
        result["records_per_side"].as_u64().unwrap_or(0).to_string(),
        result["planted"].as_u64().unwrap_or(0).to_string(),
        result["found"].as_u64().unwrap_or(0).to_string(),
        result["exact"].as_bool().unwrap_or(false).to_string(),
        format!("{:.3}", result["seconds"].as_f64().unwrap_or(f64::NAN)),
        format!("{:.1}", result["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)),
    ]);
    print!("{table}");
    println!(
        "phases: summarize x2 {:.3} s, compare {:.3} s, drill-down {:.3} s; {} of {} buckets differ, {} ids fetched",
        result["summarize_seconds"].as_f64().unwrap_or(f64::NAN),
        result["compare_seconds"].as_f64().unwrap_or(f64::NAN),
        result["drill_down_seconds"].as_f64().unwrap_or(f64::NAN),
        result["buckets_differing"].as_u64().unwrap_or(0),
        result["buckets_compared"].as_u64().unwrap_or(0),
        result["ids_fetched"].as_u64().unwrap_or(0),
    );
    write_named(
        "reconcile",
        "summarize both sides + compare + drill-down + report, one hourly period, 50 clients x 20 services; target < 10 s and < 512 MiB peak RSS",
        &result,
    )?;
    if result["exact"].as_bool() != Some(true) {
        bail!("the report did not name exactly the planted differences");
    }
    Ok(())
}

/// Durable message-log appends per second: group commit on SQLite and
/// PostgreSQL (256 appenders) and one commit per record on SQLite, in one
/// fresh release process (the `log` bench binary of `ndxp-audit`).
fn log(args: &[String]) -> Result<()> {
    let stdout = audit_bench("log", "records per run", args.first(), 200_000)?;
    let result = parse_result_line(
        &stdout,
        &[
            "sqlite_rps",
            "sqlite_fsync_each_rps",
            "postgres_rps",
            "record_bytes",
        ],
        "log",
    )?;
    let rate = |k: &str| match result[k].as_f64() {
        Some(v) => format!("{v:.0}"),
        None => "unreachable".into(),
    };
    let mut table = Table::new(["durable appends", "records/s"]);
    table.align_right(&[1]);
    table
        .row([
            "sqlite, group commit, 256 appenders".to_string(),
            rate("sqlite_rps"),
        ])
        .row([
            "sqlite, one fsync per record, 1 appender".to_string(),
            rate("sqlite_fsync_each_rps"),
        ])
        .row([
            format!(
                "sqlite, group commit, {}-byte records",
                result["small_record_bytes"].as_u64().unwrap_or(0)
            ),
            rate("sqlite_small_rps"),
        ])
        .row([
            "postgres, group commit, 256 appenders".to_string(),
            rate("postgres_rps"),
        ]);
    print!("{table}");
    println!(
        "record size {} bytes; {} records per group-commit run",
        result["record_bytes"].as_u64().unwrap_or(0),
        result["records_per_run"].as_u64().unwrap_or(0)
    );
    if let Some(e) = result["postgres_error"].as_str() {
        println!("postgres unreachable: {e}");
    }
    write_named(
        "log",
        "durable message-log appends/s (append returns after COMMIT; SQLite WAL synchronous=FULL): group commit with 256 appenders on SQLite and PostgreSQL, and one commit per record on SQLite; realistic signed records; target sqlite_rps >= 40000 (issue 15)",
        &result,
    )
}

/// Writes a bench binary's `result` as `{name}.json`, with its `name` and
/// `what` added.
fn write_named(name: &str, what: &str, result: &Value) -> Result<()> {
    let mut doc = result.clone();
    if let Some(m) = doc.as_object_mut() {
        m.insert("name".into(), json!(name));
        m.insert("what".into(), json!(what));
    }
    write_result(name, &doc)
}

/// The last line of `stdout` that is a JSON object with every key of `keys`.
fn parse_result_line(stdout: &str, keys: &[&str], name: &str) -> Result<Value> {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .find(|v| keys.iter().all(|k| v.get(k).is_some()))
        .with_context(|| {
            format!("the {name} bench printed no result line; its output was:\n{stdout}")
        })
}

/// The JSON object the reconcile bench binary prints (its last line that
/// parses as a JSON object with the required keys).
fn parse_reconcile_output(stdout: &str) -> Result<Value> {
    const KEYS: [&str; 5] = [
        "records_per_side",
        "planted",
        "found",
        "seconds",
        "peak_rss_mib",
    ];
    parse_result_line(stdout, &KEYS, "reconcile")
}

/// `openssl speed -seconds 3 ecdsap256 rsa2048`: ((ecdsa sign/s, verify/s),
/// (rsa sign/s, verify/s)).
type Rates = ((f64, f64), (f64, f64));

fn openssl_speed() -> Result<Rates> {
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
    Ok((
        openssl_rates(&speed, "ecdsa (nistp256)")?,
        openssl_rates(&speed, "rsa 2048 bits")?,
    ))
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
    use super::{openssl_rates, parse_reconcile_output, parse_result_line};

    #[test]
    fn reads_log_result_line() {
        let out = "noise\n{\"sqlite_rps\":25000.0,\"sqlite_fsync_each_rps\":400.0,\"postgres_rps\":null,\"record_bytes\":2600}\n";
        let v = parse_result_line(
            out,
            &[
                "sqlite_rps",
                "sqlite_fsync_each_rps",
                "postgres_rps",
                "record_bytes",
            ],
            "log",
        )
        .unwrap();
        assert_eq!(v["record_bytes"], 2600);
        assert!(v["postgres_rps"].is_null());
        assert!(parse_result_line("{}", &["sqlite_rps"], "log").is_err());
    }

    #[test]
    fn reads_reconcile_result_line() {
        let out = "noise\n{\"records_per_side\":10,\"planted\":3,\"found\":3,\"seconds\":0.5,\"peak_rss_mib\":9.0}\n";
        let v = parse_reconcile_output(out).unwrap();
        assert_eq!(v["found"], 3);
        assert!(parse_reconcile_output("{\"planted\":3}\n").is_err());
        assert!(parse_reconcile_output("").is_err());
    }

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
