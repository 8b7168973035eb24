//! `cargo xtask bench direct [--connections N] [--seconds S] [--warmup S]
//! [--threads N] [--backend-threads N]`: the load generator straight
//! against the sample backend (`citizen-registry`, release build, its own
//! process), `GET /persons/001099012345` at 64 connections for 10 s. It is
//! the reference the node and gateway benchmarks compare with, and shows
//! the load generator's own CPU cost per request.

use anyhow::Result;
use serde_json::json;

use super::load_common::{self, LoadOptions};
use crate::util::root;

/// The sample record every load benchmark fetches (docs/design.md §12 `sample_path`).
pub(crate) const SAMPLE_PATH: &str = "/persons/001099012345";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = LoadOptions::parse(args)?;
    if load_common::reexec_in_release("direct", args, &["ndxp-examples"])? {
        return Ok(());
    }
    let log_dir = root().join("target/ndxp-bench/logs");
    let (backend, base) = load_common::start_citizen_registry(&opts, &log_dir)?;
    let spec = opts.get(format!("{base}{SAMPLE_PATH}"), Vec::new());
    let direct = load_common::measure(&spec, &[backend.cpu_probe()], opts.threads)?;
    eprintln!("==> backend log: {}", backend.log().display());
    drop(backend);
    load_common::print_table(&[("direct", &direct)]);
    let loadgen_us = direct.cpu_us_per_request("loadgen");
    if let Some(us) = loadgen_us {
        println!("load generator self-overhead: {us:.1} µs CPU per request");
    }
    load_common::write_load_json(
        "direct",
        None,
        &direct,
        json!({
            "what": "closed-loop HTTP/1.1 keep-alive GET of a ~1 KiB JSON record straight from the sample backend (citizen-registry), load generator and backend sharing the machine",
            "path": SAMPLE_PATH,
            "seconds": opts.duration.as_secs_f64(),
            "warmup_seconds": opts.warmup.as_secs_f64(),
            "loadgen_threads": opts.threads,
            "backend_threads": opts.backend_threads,
        }),
    )?;
    direct.ensure_clean("direct")
}
