//! The binary's commands: argument types (`clap`) and what each command
//! prints. The work is done by the library's role modules.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use ndxp_gateway::config::GatewayConfig;
use ndxp_gateway::management::registry::{Admin, AdminError};
use ndxp_registry::model::Actor;

pub(crate) mod catalog;
pub(crate) mod config;
pub(crate) mod gateway;
pub(crate) mod generate;
pub(crate) mod monitoring;
pub(crate) mod pki;
pub(crate) mod registry;

// `--config FILE` (no doc comment: clap would take it as help text).
#[derive(Args)]
pub(crate) struct ConfigArg {
    /// The gateway configuration file (see docs/config.md) [default:
    /// $NDXP_CONFIG, else /etc/ndxp/gateway.toml].
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

impl ConfigArg {
    /// The configuration file: `--config`, `NDXP_CONFIG` or the default.
    pub(crate) fn path(&self) -> PathBuf {
        ndxp_edge::config::config_path(self.config.as_deref(), ndxp_gateway::config::DEFAULT_PATH)
    }
}

// `--json`.
#[derive(Args)]
pub(crate) struct JsonArg {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A bad argument (exit status 64) that no library check caught.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct UsageError(String);

/// An argument error (exit status 64) with `msg` as the message.
pub(crate) fn usage(msg: &str) -> anyhow::Error {
    UsageError(msg.to_string()).into()
}

/// The person at the keyboard, for the audit trail.
pub(crate) fn cli_actor() -> Actor {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "operator".to_string());
    Actor::cli(&user)
}

/// Loads the configuration file with the `NDXP_<SECTION>__<KEY>`
/// overrides of this process's environment, warning when others can read it (it
/// holds no secret itself: keys, passphrases and tokens live in files that
/// are refused when open, but a PostgreSQL URL may carry a password).
pub(crate) fn load_config(cfg: &ConfigArg) -> Result<GatewayConfig> {
    let path = &cfg.path();
    let overrides = ndxp_edge::config::env::Overrides::from_env().map_err(|source| {
        ndxp_gateway::config::ConfigError::Source {
            path: path.clone(),
            source: source.into(),
        }
    })?;
    let (config, _) = GatewayConfig::load_with(path, &overrides)?;
    if let Err(e) = ndxp_sign::files::check_mode(path, ndxp_sign::files::Readers::OwnerAndGroup) {
        tracing::warn!("the configuration file is readable by every user of this host: {e}");
    }
    Ok(config)
}

/// Loads the configuration, opens its registry and runs `f` on it.
pub(crate) fn with_admin<T>(
    cfg: &ConfigArg,
    f: impl AsyncFnOnce(&Admin) -> Result<T, AdminError>,
) -> Result<T> {
    let config = load_config(cfg)?;
    runtime()?.block_on(async {
        let admin = Admin::open(&config, cli_actor()).await?;
        Ok(f(&admin).await?)
    })
}

/// A runtime on this thread for one command.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// Prints `items` as pretty JSON, or as `table` renders them.
pub(crate) fn print_list<T: serde::Serialize>(
    items: &[T],
    json: bool,
    table: fn(&[T]) -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
    } else {
        print!("{}", table(items));
    }
    Ok(())
}

/// `ndxp-gateway serve`: runs until Ctrl-C or SIGTERM.
///
/// Loads the configuration, then starts the log subscriber with the OTLP
/// export of `[telemetry]`; the last spans are sent when it stops.
pub(crate) fn serve(cfg: ConfigArg, log_json: bool) -> Result<()> {
    use ndxp_edge::telemetry::{init_logging, with_logging, Telemetry};
    let config = with_logging(log_json, || load_config(&cfg))?;
    let telemetry = Telemetry::start(&config.telemetry, "ndxp-gateway")
        .context("starting the OTLP trace export ([telemetry])")?;
    init_logging(log_json, telemetry.as_ref());
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let served = rt.block_on(async move {
        tracing::info!(
            management = %config.management.listen,
            admin = %config.admin.listen,
            storage = %ndxp_core::dburl::redact(&config.storage.url),
            "starting the management role"
        );
        ndxp_gateway::server::run(config, shutdown_signal()).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    });
    drop(rt);
    if let Some(t) = telemetry {
        t.shutdown();
    }
    served
}

/// `ndxp-gateway backup`.
pub(crate) fn backup(cfg: &ConfigArg, out: &Path) -> Result<()> {
    let config = load_config(cfg)?;
    let items = config.backup_items(&cfg.path());
    let tool = concat!("ndxp-gateway ", env!("CARGO_PKG_VERSION"));
    let manifest = runtime()?.block_on(ndxp_audit::backup::run(&items, out, tool))?;
    print!("{}", manifest.summary(out));
    Ok(())
}

/// The bytes of `path`.
pub(crate) fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// `ndxp-gateway diagnose`: prints the report (text or JSON) and returns
/// its exit status (0 all passed, 1 one failed).
pub(crate) fn diagnose(cfg: &ConfigArg, json: bool, timeout: u64) -> Result<i32> {
    let config = load_config(cfg)?;
    let options = ndxp_gateway::diagnose::DiagnoseOptions {
        timeout: std::time::Duration::from_secs(timeout),
    };
    let report = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(ndxp_gateway::diagnose::run(&config, &options));
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.to_text());
    }
    Ok(report.exit_code())
}
