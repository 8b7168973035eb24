//! `ndxp-node serve` and `ndxp-node backup`: the running node and a backup
//! of its state.

use std::path::Path;

use anyhow::{Context, Result};

use super::{runtime, ConfigArg};

/// Loads the configuration, starts tracing on stderr (`NDXP_LOG` filters
/// it) and the OTLP export of `[telemetry]`, then runs the node until
/// Ctrl-C or SIGTERM, and sends the last spans.
pub fn serve(config: &ConfigArg, log_json: bool) -> Result<i32> {
    use ndxp_edge::telemetry::{init_logging, with_logging, Telemetry};
    let cfg = with_logging(log_json, || config.load())?;
    let telemetry = Telemetry::start(&cfg.telemetry, "ndxp-node")
        .context("starting the OTLP trace export ([telemetry])")?;
    init_logging(log_json, telemetry.as_ref());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = rt.block_on(async move {
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
    });
    drop(rt);
    if let Some(t) = telemetry {
        t.shutdown();
    }
    served
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
