//! `ndxp-node diagnose`: every dependency of the node checked at once,
//! from the configuration file alone ([`ndxp_node::diagnose`]).

use std::time::Duration;

use anyhow::Result;

use super::{runtime, ConfigArg};

/// The arguments of `diagnose`.
#[derive(clap::Args)]
pub struct DiagnoseArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Print the report as JSON (`{"ok": bool, "checks": [{"name",
    /// "status", "detail", "hint"}]}`).
    #[arg(long)]
    json: bool,
    /// The longest one check may take, in seconds (the whole run takes at
    /// most twice as long).
    /// (`--timeout` is the old spelling, still accepted.)
    #[arg(long, alias = "timeout", value_name = "SECS", default_value_t = 10)]
    timeout_secs: u64,
}

/// Runs the checks and prints them; exit status 0 when all passed, 1
/// otherwise (64 for a configuration that cannot be read).
pub fn run(args: &DiagnoseArgs) -> Result<i32> {
    let config = args.config.load()?;
    let options = ndxp_node::diagnose::DiagnoseOptions {
        timeout: Duration::from_secs(args.timeout_secs.max(1)),
    };
    let report = runtime()?.block_on(ndxp_node::diagnose::run(&config, &options));
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(report.exit_code())
}
