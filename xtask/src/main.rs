//! `cargo xtask`: the project's chores in one place.
//!
//! - `cargo xtask ci` — everything CI checks: format, lints, docs, tests.
//! - `cargo xtask bench NAME` — run a named benchmark, print a table and
//!   write `target/ndxp-bench/NAME.json` (docs/design.md §13).
//! - `cargo xtask demo [--dir D] [--once] [--port-base N] [--release]` —
//!   build and run the platform locally (docs/design.md §12).
//! - `cargo xtask package [--install-tools]` — the Debian packages of
//!   ndxp-gateway and ndxp-node in `target/debian/` (docs/packages.md).
//!
//! `cargo xtask help` and `--help` on every command print its usage; a
//! wrong command or option prints the usage to stderr and exits 2.

mod bench;
mod ci;
mod demo;
mod loadgen;
mod package;
mod package_contents;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// NDXP chores: the CI checks, the benchmarks and the local demo.
#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    arg_required_else_help = true
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand, Debug)]
enum Task {
    /// Everything CI checks: fmt check, clippy -D warnings, rustdoc -D
    /// warnings, the test suite
    Ci,
    /// Run a named benchmark, print a table and write
    /// target/ndxp-bench/NAME.json (docs/benchmarks.md)
    Bench {
        /// The benchmark
        #[arg(value_parser = ["direct", "node", "gateway", "httpsig", "reconcile", "log"])]
        name: String,
        /// The benchmark's own options (e.g. --connections N --seconds S for
        /// direct, node and gateway; a record count for reconcile and log)
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "ARGS"
        )]
        args: Vec<String>,
    },
    /// Build and start a local platform (PKI, management, gateway, two
    /// nodes, a sample backend) and run every flow once
    Demo(demo::DemoArgs),
    /// Build the Debian packages of ndxp-gateway and ndxp-node into
    /// target/debian/ with cargo-deb: stripped release binaries, systemd
    /// units, example configuration, completions, man pages
    /// (docs/packages.md)
    Package(package::PackageArgs),
}

fn main() {
    // clap prints help (exit 0) or the usage with the error (stderr, exit 2).
    let cli = Cli::parse();
    if let Err(e) = run(cli.task) {
        eprintln!("xtask: error: {}", ndxp_core::ErrorChain(&*e));
        std::process::exit(1);
    }
}

fn run(task: Task) -> Result<()> {
    match task {
        Task::Ci => ci::run(),
        Task::Bench { name, args } => {
            let mut all = vec![name];
            all.extend(args);
            bench::run(&all)
        }
        Task::Demo(args) => demo::run(args),
        Task::Package(args) => package::run(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn existing_invocations_still_parse() {
        let parse = |line: &[&str]| Cli::try_parse_from(line).map(|c| c.task);
        assert!(matches!(parse(&["xtask", "ci"]), Ok(Task::Ci)));
        match parse(&[
            "xtask",
            "bench",
            "node",
            "--connections",
            "8",
            "--seconds",
            "5",
        ]) {
            Ok(Task::Bench { name, args }) => {
                assert_eq!(name, "node");
                assert_eq!(args, ["--connections", "8", "--seconds", "5"]);
            }
            other => panic!("bench node: {other:?}"),
        }
        match parse(&["xtask", "bench", "reconcile", "1000"]) {
            Ok(Task::Bench { name, args }) => assert_eq!(
                (name.as_str(), args),
                ("reconcile", vec!["1000".to_string()])
            ),
            other => panic!("bench reconcile: {other:?}"),
        }
        assert!(matches!(
            parse(&["xtask", "demo", "--once", "--dir", "/tmp/d"]),
            Ok(Task::Demo(_))
        ));
        assert!(matches!(
            parse(&["xtask", "package", "--install-tools"]),
            Ok(Task::Package(package::PackageArgs {
                install_tools: true
            }))
        ));
        assert!(parse(&["xtask", "bench", "nosuch"]).is_err());
        assert!(parse(&["xtask", "ci", "--nosuch"]).is_err());
    }
}
