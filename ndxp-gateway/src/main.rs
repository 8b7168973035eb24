//! `ndxp-gateway`: the central services of NDXP. See `docs/pki.md` and
//! `docs/management.md`. This file holds the command tree; each command's
//! arguments and output live in `cli/`, its work in the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ndxp_gateway::config::ConfigError;
use ndxp_gateway::gateway::service::ServiceError;
use ndxp_gateway::management::registry::AdminError;

mod cli;

use cli::config::ConfigCommand;
use cli::gateway::GatewayCommand;
use cli::generate::GenerateCommand;
use cli::monitoring::ReportFormat;
use cli::pki::PkiCommand;
use cli::registry::{
    ConfCommand, MembersCommand, NodesCommand, RequestsCommand, SubsystemsCommand, TokensCommand,
};
use cli::{ConfigArg, JsonArg, UsageError};

/// Exit status for a bad command line or configuration (EX_USAGE).
const EXIT_USAGE: i32 = 64;

#[derive(Parser)]
#[command(name = "ndxp-gateway", version, about = "NDXP central services")]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the management role: the management API, the global
    /// configuration download and the admin port (docs/management.md);
    /// with a [gateway] table, the central gateway too (docs/gateway.md).
    Serve(ConfigArg),
    /// The central gateway: services, subscriptions and consumer
    /// credentials (docs/gateway.md).
    #[command(subcommand)]
    Gateway(Box<GatewayCommand>),
    /// The platform's certification authority, OCSP responder and TSA.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Member organisations of the registry.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Subsystems (information systems) of members.
    #[command(subcommand)]
    Subsystems(SubsystemsCommand),
    /// Admitted nodes of members.
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Node registration requests waiting for (or given) a decision.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Bearer tokens of the management API (stored only as hashes).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The global configuration: the anchor file nodes install.
    #[command(subcommand)]
    Conf(ConfCommand),
    /// The registry as a file: export, diff and apply (configuration as
    /// code, docs/config-as-code.md).
    #[command(subcommand)]
    Registry(cli::catalog::RegistryCommand),
    /// Connection state of every node and service (docs/monitoring.md).
    Status {
        #[command(flatten)]
        cfg: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Check every dependency of the management role and the central
    /// gateway: the database, the configuration-signing key, the global
    /// configuration, the OCSP responders, the TSAs and the backends of
    /// published services; each ok, or what failed with a hint. Exit
    /// status 0 when all pass, 1 when one fails, 64 for a bad
    /// configuration (docs/operator-guide.md).
    Diagnose {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Print the report as JSON (the shape `ndxp-node diagnose --json`
        /// prints).
        #[arg(long)]
        json: bool,
        /// The longest any one check may take, in seconds (`--timeout` is
        /// the old spelling, still accepted).
        #[arg(long, alias = "timeout", value_name = "SECS", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..=300))]
        timeout_secs: u64,
    },
    /// Back up the registry and the gateway's message log while the
    /// gateway runs: SQLite databases are snapshotted (VACUUM INTO) into a
    /// new directory with the configuration file and a manifest;
    /// PostgreSQL databases are listed with the pg_dump command to run
    /// (docs/operator-guide.md).
    Backup {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The backup directory to create (it must not exist or be empty).
        #[arg(short = 'o', long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The configuration: check it before a (re)start.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Reconciliation report of a UTC day or hour (docs/monitoring.md).
    Reconcile {
        #[command(flatten)]
        cfg: ConfigArg,
        /// A UTC day (2026-11-28) or hour (2026-11-28T10).
        #[arg(long)]
        period: String,
        /// Output: text (default), json or csv.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Print JSON (the same as --format json).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Wait up to this many seconds for pending drill-down answers
        /// (`--wait` is the old spelling, still accepted).
        #[arg(long, alias = "wait", value_name = "SECS", default_value_t = 0)]
        wait_secs: u64,
    },
    /// Shell completions and man pages from this command line (for the
    /// Debian packages, docs/packages.md).
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    // `serve` starts its own, once it knows its `[telemetry]`.
    if !matches!(cli.command, Command::Serve(_)) {
        ndxp_edge::telemetry::init_logging(cli.log_json, None);
    }
    if let Err(e) = run(cli.command, cli.log_json) {
        eprintln!("ndxp-gateway: error: {}", ndxp_core::ErrorChain(&*e));
        std::process::exit(exit_code(&e));
    }
}

/// 64 for a bad configuration or a bad identifier/argument, 1 otherwise.
fn exit_code(e: &anyhow::Error) -> i32 {
    let usage = e.chain().any(|c| {
        c.downcast_ref::<ConfigError>().is_some()
            || c.downcast_ref::<AdminError>()
                .is_some_and(AdminError::is_usage)
            || c.downcast_ref::<ServiceError>()
                .is_some_and(ServiceError::is_usage)
            || c.downcast_ref::<UsageError>().is_some()
    }) || cli::catalog::is_usage(e);
    if usage {
        EXIT_USAGE
    } else {
        1
    }
}

fn run(command: Command, log_json: bool) -> Result<()> {
    match command {
        Command::Serve(cfg) => cli::serve(cfg, log_json),
        Command::Gateway(c) => cli::gateway::run(*c),
        Command::Pki(c) => cli::pki::run(c),
        Command::Members(c) => cli::registry::members(c),
        Command::Subsystems(c) => cli::registry::subsystems(c),
        Command::Nodes(c) => cli::registry::nodes(c),
        Command::Requests(c) => cli::registry::requests(c),
        Command::Tokens(c) => cli::registry::tokens(c),
        Command::Conf(c) => cli::registry::conf(c),
        Command::Registry(c) => cli::catalog::run(c),
        Command::Status { cfg, out } => cli::monitoring::status(&cfg, out.json),
        Command::Backup { cfg, out } => cli::backup(&cfg, &out),
        Command::Diagnose {
            cfg,
            json,
            timeout_secs,
        } => {
            let code = cli::diagnose(&cfg, json, timeout_secs)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
        Command::Reconcile {
            cfg,
            period,
            format,
            json,
            wait_secs,
        } => {
            let format = if json { ReportFormat::Json } else { format };
            cli::monitoring::reconcile(&cfg, &period, format, wait_secs)
        }
        Command::Generate(c) => cli::generate::run::<Cli>(c),
        Command::Config(c) => {
            let code = cli::config::run(c)?;
            if code != 0 {
                std::process::exit(code);
            }
            Ok(())
        }
    }
}
