//! `ndxp-gateway status` and `ndxp-gateway reconcile`: the monitoring
//! centre's views ([`ndxp_gateway::monitoring`]) on the command line.

use anyhow::Result;
use clap::ValueEnum;

use super::{load_config, print_list, runtime, ConfigArg};

/// Output of `reconcile`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum ReportFormat {
    Text,
    Json,
    Csv,
}

/// `ndxp-gateway status`.
pub(crate) fn status(cfg: &ConfigArg, json: bool) -> Result<()> {
    let config = load_config(cfg)?;
    let rows = runtime()?.block_on(ndxp_gateway::monitoring::status_command(
        &config,
        chrono::Utc::now(),
    ))?;
    print_list(&rows, json, ndxp_gateway::monitoring::states_table)?;
    Ok(())
}

/// `ndxp-gateway reconcile`.
pub(crate) fn reconcile(
    cfg: &ConfigArg,
    period: &str,
    format: ReportFormat,
    wait: u64,
) -> Result<()> {
    let config = load_config(cfg)?;
    let report = runtime()?.block_on(ndxp_gateway::monitoring::reconcile_command(
        &config,
        period,
        std::time::Duration::from_secs(wait),
        std::time::Duration::from_secs(1),
    ))?;
    match format {
        ReportFormat::Text => print!("{}", ndxp_gateway::monitoring::report_text(&report)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Csv => print!("{}", report.to_csv()),
    }
    let pending = report.pending();
    if !pending.is_empty() {
        eprintln!(
                "ndxp-gateway: {} drill-down requests still pending (the nodes answer on their next poll): {}",
                pending.len(),
                pending
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
    }
    Ok(())
}
