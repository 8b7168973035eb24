//! `ndxp-gateway serve`: the management role as one process. [`run`] opens
//! the registry, binds the management and admin listeners, publishes the
//! global configuration in the background and serves until `shutdown`
//! completes, then stops gracefully (in-flight requests finish).
//!
//! Admin port:
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when the registry answers and a current global
//!   configuration can be served; otherwise 503 with
//!   `{"ready":false,"reason":"..."}`.
//! - `GET /metrics`: Prometheus text (see [`crate::metrics`]).

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ndxp_registry::store::{RegistryStore, StoreError};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::GatewayConfig;
use crate::management;
use crate::metrics::Metrics;
use crate::publisher::{PublishError, Publisher};

/// How often the background task checks whether a new global
/// configuration must be published.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(10);

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The registry database could not be opened.
    #[error("cannot open the registry")]
    Store(#[source] StoreError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The global configuration signer could not be set up.
    #[error("cannot set up global configuration publishing")]
    Publisher(#[source] PublishError),
    /// The gateway's message log for reconciliation could not be opened.
    #[error("cannot set up monitoring")]
    Monitoring(#[source] crate::monitoring::MonitorError),
    /// Serving failed.
    #[error("the {which} server failed")]
    Serve {
        /// `management` or `admin`.
        which: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Opens the registry at `[storage] url`, binds `[management] listen` and
/// `[admin] listen`, and serves until `shutdown` completes.
///
/// # Errors
/// See [`ServerError`].
pub async fn run(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let store = ndxp_registry::store::open(&config.storage.url)
        .await
        .map_err(ServerError::Store)?;
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })
    };
    let mgmt = bind(config.management.listen).await?;
    let admin = bind(config.admin.listen).await?;
    run_with_listeners(config, store, mgmt, admin, shutdown).await
}

#[derive(Clone)]
struct AdminState {
    store: Arc<dyn RegistryStore>,
    publisher: Arc<Publisher>,
    metrics: Arc<Metrics>,
}

/// [`run`] with a store and listeners the caller made (tests bind
/// `127.0.0.1:0` and read the addresses back first).
///
/// # Errors
/// See [`ServerError`].
pub async fn run_with_listeners(
    config: GatewayConfig,
    store: Arc<dyn RegistryStore>,
    management_listener: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let metrics = Arc::new(Metrics::new());
    let publisher = Arc::new(
        Publisher::new(&config, store.clone(), Some(metrics.clone()))
            .map_err(ServerError::Publisher)?,
    );
    let monitoring = crate::monitoring::MonitoringState::open(&config.monitoring)
        .await
        .map_err(ServerError::Monitoring)?;
    let api = management::router(
        store.clone(),
        publisher.clone(),
        config.instance.clone(),
        config.management.max_body_bytes,
        metrics.clone(),
        monitoring,
    );
    let admin = admin_router(AdminState {
        store,
        publisher: publisher.clone(),
        metrics,
    });

    let (stop_tx, stop_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    // Publish in the background so that expiry is renewed without requests.
    let background = {
        let publisher = publisher.clone();
        let rx = stop_rx.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if let Err(e) = publisher.ensure_current(chrono::Utc::now()).await {
                            tracing::warn!(error = %error_chain(&e), "global configuration not published");
                        }
                    }
                    _ = stopped(rx.clone()) => break,
                }
            }
        })
    };

    tracing::info!(
        management = ?management_listener.local_addr().ok(),
        admin = ?admin_listener.local_addr().ok(),
        "management role serving"
    );
    let mgmt_server = axum::serve(management_listener, api.into_make_service())
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let admin_server = axum::serve(admin_listener, admin.into_make_service())
        .with_graceful_shutdown(stopped(stop_rx.clone()));
    let (m, a) = tokio::join!(mgmt_server.into_future(), admin_server.into_future());
    background.abort();
    m.map_err(|source| ServerError::Serve {
        which: "management",
        source,
    })?;
    a.map_err(|source| ServerError::Serve {
        which: "admin",
        source,
    })?;
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn admin_router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({"alive": true}))
}

async fn readyz(State(st): State<AdminState>) -> Response {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(serde_json::json!({"ready": false, "reason": reason})),
        )
            .into_response()
    };
    if let Err(e) = st.store.registry_version().await {
        tracing::warn!(error = %error_chain(&e), "readiness: registry not reachable");
        return not_ready("the registry database does not answer".into());
    }
    match st.publisher.ensure_current(chrono::Utc::now()).await {
        Ok(conf) => Json(serde_json::json!({
            "ready": true,
            "globalconf_version": conf.version,
            "globalconf_expires_at": conf.expires_at,
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %error_chain(&e), "readiness: no global configuration");
            not_ready(format!("no current global configuration: {e}"))
        }
    }
}

async fn metrics_text(State(st): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        st.metrics.encode(),
    )
        .into_response()
}
