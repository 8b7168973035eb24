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
    /// Address to listen on (IPv4 or IPv6, e.g. `[::1]:8400`).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Worker threads (default: one per CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// One single-threaded runtime per thread, each with its own listening
    /// socket on the address (SO_REUSEPORT; Linux spreads connections over
    /// them). Faster under load; note that any process of the same user
    /// can then also bind the address.
    #[cfg(unix)]
    #[arg(long)]
    reuseport: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    #[cfg(unix)]
    if args.reuseport {
        return per_thread(args.listen, threads);
    }
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

/// `threads` single-threaded runtimes, each serving its own SO_REUSEPORT
/// listener on `addr`; the first thread watches for the stop signal.
#[cfg(unix)]
fn per_thread(addr: SocketAddr, threads: usize) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let bind = move |addr: SocketAddr| -> anyhow::Result<tokio::net::TcpListener> {
        let socket = if addr.is_ipv6() {
            tokio::net::TcpSocket::new_v6()?
        } else {
            tokio::net::TcpSocket::new_v4()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket
            .bind(addr)
            .with_context(|| format!("cannot listen on {addr}"))?;
        Ok(socket.listen(1024)?)
    };
    let mut handles = Vec::new();
    // With port 0, the first thread's port is the one all threads share.
    let mut addr = addr;
    for i in 0..threads {
        let mut stop = stop_rx.clone();
        let stop_tx = (i == 0).then(|| stop_tx.clone());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<SocketAddr>>();
        handles.push(std::thread::spawn(move || -> anyhow::Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = match bind(addr) {
                    Ok(l) => l,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(anyhow::anyhow!("{}", ndxp_core::ErrorChain(&*e))));
                        return Err(e);
                    }
                };
                let _ = ready_tx.send(Ok(listener.local_addr()?));
                if let Some(tx) = stop_tx {
                    tokio::spawn(async move {
                        shutdown_signal().await;
                        let _ = tx.send(true);
                    });
                }
                serve(listener, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await?;
                Ok(())
            })
        }));
        let local = ready_rx
            .recv()
            .context("a server thread ended before listening")??;
        if i == 0 {
            addr = local;
            println!(
                "citizen-registry listening on http://{local} with {threads} threads (GET /persons/001099012345, /openapi.json, /healthz)"
            );
        }
    }
    drop(stop_tx);
    for h in handles {
        h.join()
            .map_err(|_| anyhow::anyhow!("a server thread panicked"))??;
    }
    Ok(())
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
