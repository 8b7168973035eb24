//! `ndxp-node serve` and `ndxp-node backup`: the running node and a backup
//! of its state.

use std::path::Path;

use anyhow::{Context, Result};

use super::{runtime, ConfigArg};

/// Starts tracing on stderr (`NDXP_LOG` filters it), then runs the node
/// until Ctrl-C or SIGTERM.
pub fn serve(config: &ConfigArg, log_json: bool) -> Result<i32> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NDXP_LOG")
        // PostgreSQL's notices ("relation ... already exists, skipping")
        // are not worth a line each time a command opens the database.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for a person at a terminal: a log file or a pipe
        // (systemd, the demo's logs/) must stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let cfg = config.load()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let node = ndxp_node::serve::Node::start(cfg).await?;
        tracing::info!(
            client = %node.client_addr(),
            client_tls = ?node.client_tls_addr(),
            peer = %node.peer_addr(),
            admin = %node.admin_addr(),
            "ports open"
        );
        node.run_until(shutdown_signal()).await;
        Ok::<_, anyhow::Error>(0)
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

/// `backup`: snapshots what [`ndxp_node::config::NodeConfig::backup_items`]
/// names into `out` and prints the manifest's summary.
pub fn backup(config: &ConfigArg, out: &Path) -> Result<i32> {
    let cfg = config.load()?;
    let items = cfg.backup_items(&config.path());
    let tool = concat!("ndxp-node ", env!("CARGO_PKG_VERSION"));
    let manifest = runtime()?.block_on(ndxp_audit::backup::run(&items, out, tool))?;
    print!("{}", manifest.summary(out));
    Ok(0)
}
