//! `cargo xtask bench node [--connections N] [--seconds S] [--warmup S]
//! [--threads N]`: the whole distributed-model path under load. It starts
//! the demo platform from release binaries (PKI, management, the sample
//! backend, the provider's and the consumer's node; status reports off so
//! that nothing but the exchange uses the CPU), then, in one run and with
//! the same load generator and concurrency:
//!
//! * `node`: `GET {consumer client port}/r1/{service}/persons/...` with
//!   `NDXP-Client`: consumer node → mutual TLS → provider node → backend,
//!   with signing, verification and durable logging on both nodes;
//! * `direct`: the same record straight from the backend.
//!
//! Every process shares the machine's cores. Figures go to
//! `target/ndxp-bench/node.json` (docs/design.md §13 keys), with the CPU each
//! process used per request, which says where the time goes.

use anyhow::{Context, Result};

use super::load_common::{self, PlatformRun};

/// The calling subsystem of the demo.
const CLIENT: &str = "VN/GOV/000.00.00.G22/QLHT";

pub(crate) fn run(args: &[String]) -> Result<()> {
    let Some((opts, running)) = load_common::start_platform("node", args)? else {
        return Ok(());
    };
    let d = &running.demo;
    let service = d["services"][0]
        .as_str()
        .context("demo.json names no service")?
        .to_string();
    let sample = d["sample_path"].as_str().unwrap_or("/").to_string();
    let backend = d["backends"][&service]
        .as_str()
        .context("demo.json names no backend")?
        .to_string();
    let consumer = d["nodes"]
        .as_array()
        .and_then(|n| {
            n.iter().find(|n| {
                n["member"] == CLIENT.rsplit_once('/').map(|(m, _)| m).unwrap_or_default()
            })
        })
        .and_then(|n| n["client_url"].as_str())
        .context("demo.json names no consumer node")?
        .to_string();
    let platform = opts.get(
        format!("{consumer}/r1/{service}{sample}"),
        vec![("NDXP-Client".into(), CLIENT.into())],
    );
    load_common::measure_platform(
        running,
        &opts,
        PlatformRun {
            name: "node",
            processes: &["node-g22", "node-h29"],
            direct_url: format!("{backend}{sample}"),
            platform,
            what: "consumer node -> provider node (mutual TLS 1.3, RFC 9421 signatures both ways, replay and revocation checks, durable message log on both nodes) -> backend, versus the backend directly; ~1 KiB JSON GET",
            path: format!("/r1/{service}{sample}"),
        },
    )
}
