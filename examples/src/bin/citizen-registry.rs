//! `citizen-registry [--listen ADDR] [--threads N]`: the sample provider
//! backend (see `ndxp_examples::citizen_registry`). Stops on Ctrl-C or
//! SIGTERM.

use std::net::SocketAddr;

use anyhow::Context;
use clap::Parser;
use ndxp_examples::citizen_registry::{serve, DEFAULT_LISTEN};

/// A fictional citizen registry: GET /persons/{id}, /openapi.json, /healthz.
#[derive(Parser)]
#[command(name = "citizen-registry")]
struct Args {
    /// Address to listen on (IPv4 or IPv6, e.g. [::1]:8400).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        println!(
            "citizen-registry listening on http://{} (GET /persons/001099012345, /openapi.json, /healthz)",
            listener.local_addr()?
        );
        serve(listener, shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
