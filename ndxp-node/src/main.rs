//! `ndxp-node`: the DXL node of NDXP's distributed model. See `docs/node.md`
//! and `docs/pki.md`.
//!
//! The binary parses the command line and prints; each command group's
//! arguments and handler live in a module of [`cli`], which calls the
//! `ndxp_node` library.

mod cli;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};
use ndxp_core::ErrorChain;
use ndxp_node::config::ConfigError;

use cli::conf::ConfCommand;
use cli::config::ConfigCommand;
use cli::generate::GenerateCommand;
use cli::keys::KeysCommand;
use cli::local::{AccessCommand, ServicesCommand, SubsystemsCommand};
use cli::log::LogCommand;
use cli::{ConfigArg, EXIT_USAGE};

/// mimalloc: the exchange allocates many short-lived buffers on several
/// threads, where it is markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "ndxp-node", version, about = "NDXP distributed-model node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Key material of this node and its member.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Ask the platform operator to admit this node: send a registration
    /// request signed with the member's signing key.
    Register {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// The global configuration.
    #[command(subcommand)]
    Conf(ConfCommand),
    /// Run the node: client port, peer port (mutual TLS) and admin port.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Log as JSON lines instead of human-readable text.
        #[arg(long)]
        log_json: bool,
    },
    /// Subsystems of this member on this node (local configuration).
    #[command(subcommand)]
    Subsystems(SubsystemsCommand),
    /// Services this node provides (local configuration).
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Access rights to the services this node provides (local configuration).
    #[command(subcommand)]
    Access(AccessCommand),
    /// Back up this node's state while it runs: the message log (SQLite:
    /// a consistent snapshot by VACUUM INTO; PostgreSQL: the pg_dump
    /// command to run), the local configuration, the last-good global
    /// configuration, the report state and the configuration file, into a
    /// new directory with a manifest (docs/operator-guide.md).
    Backup {
        #[command(flatten)]
        config: ConfigArg,
        /// The backup directory to create (it must not exist or be empty).
        #[arg(short = 'o', long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The message log: archives and their verification.
    #[command(subcommand)]
    Log(LogCommand),
    /// Shell completions and man pages from this command line (for the
    /// Debian packages, docs/packages.md).
    #[command(subcommand, hide = true)]
    Generate(GenerateCommand),
    /// The configuration: check it before a (re)start.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Check every dependency of this node (keys, global configuration,
    /// OCSP, TSA, peer nodes, backends) from the configuration file alone,
    /// the node running or not; exit status 0 when all checks pass, 1
    /// otherwise.
    Diagnose(cli::diagnose::DiagnoseArgs),
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
    match run(cli.command) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ndxp-node: error: {}", ErrorChain(&*e));
            let bad_config = e.chain().any(|c| c.is::<ConfigError>());
            std::process::exit(if bad_config { EXIT_USAGE } else { 1 });
        }
    }
}

/// Runs a command; returns the exit status.
fn run(command: Command) -> Result<i32> {
    match command {
        Command::Keys(c) => cli::keys::run(c),
        Command::Register { config } => cli::conf::register(&config.load()?),
        Command::Conf(c) => cli::conf::run(c),
        Command::Serve { config, log_json } => cli::serve::serve(&config, log_json),
        Command::Subsystems(c) => cli::local::subsystems(c),
        Command::Services(c) => cli::local::services(c),
        Command::Access(c) => cli::local::access(c),
        Command::Log(c) => cli::log::run(c),
        Command::Config(c) => cli::config::run(c),
        Command::Diagnose(a) => cli::diagnose::run(&a),
        Command::Backup { config, out } => cli::serve::backup(&config, &out),
        Command::Generate(c) => cli::generate::run::<Cli>(c).map(|()| 0),
    }
}
