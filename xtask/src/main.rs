//! `cargo xtask`: the project's chores in one place.
//!
//! - `cargo xtask ci` — everything CI checks: format, lints, docs, tests.
//! - `cargo xtask bench NAME` — run a named benchmark, print a table and
//!   write `target/ndxp-bench/NAME.json` (docs/design.md §13).
//! - `cargo xtask demo [--dir D] [--once]` — build and run the platform
//!   locally (docs/design.md §12).

mod bench;
mod ci;
mod demo;
mod loadgen;
mod util;

use anyhow::{bail, Result};

const USAGE: &str = "usage: cargo xtask <ci | bench NAME | demo [--dir D] [--once]>
  ci           fmt check, clippy -D warnings, rustdoc -D warnings, the test suite
  bench NAME   run benchmark NAME (direct, node, gateway, httpsig, reconcile, log) and write target/ndxp-bench/NAME.json
  demo         start a local platform in target/ndxp-demo (or --dir D); --once runs
               the flows and exits 0 only if all passed";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {}", ndxp_core::ErrorChain(&*e));
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::run(&args[1..]),
        Some("bench") => bench::run(&args[1..]),
        Some("demo") => demo::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task {other:?}\n{USAGE}"),
    }
}
