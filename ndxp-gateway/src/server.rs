//! `ndxp-gateway serve`: the management role and, with a `[gateway]` table,
//! the central gateway role, as one process. [`run`] opens the registry,
//! binds the management, gateway and admin listeners, publishes the global
//! configuration in the background and serves until `shutdown` completes,
//! then stops gracefully (in-flight requests finish, the gateway's message
//! log commits what it queued).
//!
//! Admin port:
//! - `GET /healthz`: 200 while the process serves.
//! - `GET /readyz`: 200 when the registry answers and a current global
//!   configuration can be served; otherwise 503 with
//!   `{"ready":false,"reason":"..."}`. From SIGTERM until the other
//!   listeners have drained it answers 503 with a reason starting
//!   `draining`; the admin port closes last.
//! - `GET /metrics`: Prometheus text (see [`crate::management::metrics`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use ndxp_core::check::Check;
use ndxp_core::ErrorChain;
use ndxp_registry::store::gateway::GatewayStore;
use ndxp_registry::store::{RegistryStore, SqlStore, StoreError, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::GatewayConfig;
use crate::gateway::{Gateway, GatewayError};
use crate::management;
use crate::management::metrics::Metrics;
use crate::management::publisher::{PublishError, Publisher};

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
    /// The gateway role could not start.
    #[error("cannot start the gateway role")]
    Gateway(#[source] GatewayError),
    /// A listener's serving task ended abnormally (it panicked).
    #[error("the {which} server failed")]
    Serve {
        /// `management`, `gateway` or `admin`.
        which: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Opens the registry at `[storage] url`, binds `[management] listen`
/// (when `[management] enabled`), `[admin] listen` and, when the
/// configuration has a `[gateway]` table, `[gateway] listen`, and serves
/// every role until `shutdown` completes.
///
/// # Errors
/// See [`ServerError`].
pub async fn run(
    config: GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let store = Arc::new(
        SqlStore::open(&config.storage.url, &StoreOptions::default())
            .await
            .map_err(ServerError::Store)?,
    );
    let bind = |addr: SocketAddr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })
    };
    let management = if config.management.enabled {
        Some(bind(config.management.listen).await?)
    } else {
        None
    };
    let admin = bind(config.admin.listen).await?;
    let gateway = match &config.gateway {
        Some(g) => Some(bind(g.listen).await?),
        None => None,
    };
    let listeners = Listeners {
        management,
        admin,
        gateway,
    };
    run_roles(config, store, listeners, shutdown).await
}

/// The listeners of [`run_roles`].
#[derive(Debug)]
pub struct Listeners {
    /// The management API; `None` runs without the management role.
    pub management: Option<TcpListener>,
    /// The admin port.
    pub admin: TcpListener,
    /// The gateway role; `None` runs without it.
    pub gateway: Option<TcpListener>,
}

#[derive(Clone)]
struct AdminState {
    store: Arc<dyn RegistryStore>,
    publisher: Option<Arc<Publisher>>,
    metrics: Arc<Metrics>,
    /// Set on shutdown: `/readyz` answers 503 while in-flight requests
    /// finish.
    draining: Arc<AtomicBool>,
}

/// [`run`] with a store and listeners the caller made (tests bind
/// `127.0.0.1:0` and read the addresses back first): the management role
/// and the admin port only.
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
    serve(
        config,
        store,
        None,
        Listeners {
            management: Some(management_listener),
            admin: admin_listener,
            gateway: None,
        },
        shutdown,
    )
    .await
}

/// [`run`] with a store and listeners the caller made: each role whose
/// listener is given (the gateway role also needs a `[gateway]` table).
///
/// # Errors
/// See [`ServerError`].
pub async fn run_roles(
    config: GatewayConfig,
    store: Arc<SqlStore>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let gateway_store: Arc<dyn GatewayStore> = store.clone();
    serve(config, store, Some(gateway_store), listeners, shutdown).await
}

/// The central gateway's own status, every `[monitoring]
/// status_interval_secs` (see [`crate::monitoring::record_gateway_status`]).
async fn report_gateway_status(
    store: Arc<dyn RegistryStore>,
    gateway: Arc<dyn GatewayStore>,
    config: GatewayConfig,
    stop: watch::Receiver<bool>,
) {
    let http = reqwest::Client::new();
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(
        config.monitoring.status_interval_secs.max(1),
    ));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if let Err(e) = crate::monitoring::record_gateway_status(
                    store.as_ref(), gateway.as_ref(), &config, &http, chrono::Utc::now(),
                ).await {
                    tracing::warn!(error = %ErrorChain(&e), "the gateway's status was not recorded");
                }
            }
            _ = stopped(stop.clone()) => break,
        }
    }
}

async fn serve(
    config: GatewayConfig,
    store: Arc<dyn RegistryStore>,
    gateway_store: Option<Arc<dyn GatewayStore>>,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let (stop_tx, stop_rx) = watch::channel(false);
    // The admin port stops after the others, so that load balancers see
    // the drain on /readyz.
    let (admin_stop_tx, admin_stop_rx) = watch::channel(false);
    let draining = Arc::new(AtomicBool::new(false));
    {
        let draining = draining.clone();
        tokio::spawn(async move {
            shutdown.await;
            draining.store(true, Ordering::Relaxed);
            tracing::info!("shutting down: draining the requests in flight");
            let _ = stop_tx.send(true);
        });
    }

    let gateway_registry = gateway_store
        .clone()
        .map(crate::management::handlers::gateway::GatewayRegistry);
    // The gateway role, first: the management API refreshes it.
    let gateway = match (listeners.gateway, gateway_store) {
        (Some(listener), Some(gstore)) => {
            let gw = Arc::new(
                Gateway::new(&config, gstore)
                    .await
                    .map_err(ServerError::Gateway)?,
            );
            Some((gw, listener))
        }
        _ => None,
    };
    let metrics = Arc::new(Metrics::with_gateway(
        gateway.as_ref().map(|(gw, _)| gw.metrics()),
    ));

    let mut servers = Vec::new();
    let mut background = Vec::new();
    let mut publisher = None;
    if let Some(listener) = listeners.management {
        let p = Arc::new(
            Publisher::new(&config, store.clone(), Some(metrics.clone()))
                .map_err(ServerError::Publisher)?,
        );
        let monitoring = crate::monitoring::MonitoringState::open(&config.monitoring)
            .await
            .map_err(ServerError::Monitoring)?;
        let mut api = management::router(
            store.clone(),
            p.clone(),
            config.instance.clone(),
            config.management.max_body_bytes,
            metrics.clone(),
            monitoring,
        )
        .layer(axum::Extension(crate::diagnose::DiagnoseConfig(Arc::new(
            config.clone(),
        ))));
        if let Some(reg) = &gateway_registry {
            api = api.layer(axum::Extension(reg.clone()));
            if config.gateway.is_some() {
                match config.client_cert_anchors() {
                    Ok(a) => {
                        api = api.layer(axum::Extension(
                            crate::management::handlers::gateway::ClientCaAnchors(Arc::new(a)),
                        ));
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "client CA certificates unreadable; registered client certificates are checked for expiry only");
                    }
                }
            }
        }
        if let Some((gw, _)) = &gateway {
            api = api.layer(axum::middleware::from_fn_with_state(
                gw.clone(),
                refresh_after_change,
            ));
        }
        // Publish in the background so that expiry is renewed without requests.
        let task = {
            let publisher = p.clone();
            let rx = stop_rx.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(PUBLISH_INTERVAL);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = tick.tick() => {
                            if let Err(e) = publisher.ensure_current(chrono::Utc::now()).await {
                                tracing::warn!(error = %ErrorChain(&e), "global configuration not published");
                            }
                        }
                        _ = stopped(rx.clone()) => break,
                    }
                }
            })
        };
        background.push(task);
        tracing::info!(management = ?listener.local_addr().ok(), "management role serving");
        let server = serve_router(
            ("management API", "management"),
            listener,
            api,
            &config,
            &metrics,
            &stop_rx,
        );
        servers.push(("management", tokio::spawn(server)));
        publisher = Some(p);
    }
    let mut gateway_handle = None;
    if let Some((gw, listener)) = gateway {
        background.push(tokio::spawn(
            gw.clone().poll_until(stopped(stop_rx.clone())),
        ));
        if let Some(gstore) = gateway_registry.as_ref().map(|r| r.0.clone()) {
            background.push(tokio::spawn(report_gateway_status(
                store.clone(),
                gstore,
                config.clone(),
                stop_rx.clone(),
            )));
        }
        tracing::info!(gateway = ?listener.local_addr().ok(), https = gw.serves_https(), log_writer = gw.log_writer(), "gateway role serving");
        let edge = ndxp_edge::serve::Edge::new("central gateway", &config.edge);
        metrics.watch_edge("gateway", edge.stats());
        let server = crate::gateway::serve(gw.clone(), listener, edge, stopped(stop_rx.clone()));
        servers.push(("gateway", tokio::spawn(server)));
        gateway_handle = Some(gw);
    }
    let admin = admin_router(AdminState {
        store,
        publisher,
        metrics: metrics.clone(),
        draining,
    });
    tracing::info!(admin = ?listeners.admin.local_addr().ok(), "admin port serving");
    let admin_server = serve_router(
        ("admin port", "admin"),
        listeners.admin,
        admin,
        &config,
        &metrics,
        &admin_stop_rx,
    );
    let admin_handle = tokio::spawn(admin_server);

    let mut result = Ok(());
    for (which, handle) in servers.into_iter().chain(Some(("admin", admin_handle))) {
        if which == "admin" {
            // Every other listener has drained.
            let _ = admin_stop_tx.send(true);
        }
        if let Err(e) = handle.await {
            if result.is_ok() {
                result = Err(ServerError::Serve {
                    which,
                    source: std::io::Error::other(e),
                });
            }
        }
    }
    for task in background {
        task.abort();
    }
    // Every queued message log record is committed before the process ends.
    if let Some(gw) = gateway_handle {
        if let Ok(gw) = Arc::try_unwrap(gw) {
            gw.close().await;
        }
    }
    result
}

/// After a successful change through the management API, the gateway
/// re-reads the registry before the API answers.
async fn refresh_after_change(
    State(gw): State<Arc<Gateway>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let changes = !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    let resp = next.run(req).await;
    if changes && resp.status().is_success() {
        if let Err(e) = gw.refresh().await {
            tracing::warn!(error = %ErrorChain(&e), "gateway could not re-read the registry after a change");
        }
    }
    resp
}

/// Serves `app` on `listener` with the shared serve loop and the `[edge]`
/// limits until the process stops; `name` is the listener's name in the
/// log and its label in the metrics.
fn serve_router(
    name: (&'static str, &'static str),
    listener: TcpListener,
    app: Router,
    config: &GatewayConfig,
    metrics: &Metrics,
    stop: &watch::Receiver<bool>,
) -> impl Future<Output = ()> + Send + 'static {
    let edge = ndxp_edge::serve::Edge::new(name.0, &config.edge);
    metrics.watch_edge(name.1, edge.stats());
    edge.serve(
        listener,
        ndxp_edge::serve::Plain,
        move |_| ndxp_edge::serve::tower(app.clone(), axum::http::Extensions::new()),
        stopped(stop.clone()),
    )
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|v| *v).await;
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
    let not_ready = |check: Check| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(ndxp_core::check::not_ready_body(&[check])),
        )
            .into_response()
    };
    if st.draining.load(Ordering::Relaxed) {
        return not_ready(
            Check::failed(
                "draining",
                "the process is stopping, requests in flight finish",
            )
            .with_hint("expected after SIGTERM; the process exits when the drain is over"),
        );
    }
    if let Err(e) = st.store.registry_version().await {
        tracing::warn!(error = %ErrorChain(&e), "readiness: registry not reachable");
        return not_ready(Check::failed(
            "registry",
            "the registry database does not answer",
        ));
    }
    let Some(publisher) = &st.publisher else {
        return Json(serde_json::json!({"ready": true})).into_response();
    };
    match publisher.ensure_current(chrono::Utc::now()).await {
        Ok(conf) => Json(serde_json::json!({
            "ready": true,
            "globalconf_version": conf.version,
            "globalconf_expires_at": conf.expires_at,
        }))
        .into_response(),
        Err(e) => {
            tracing::warn!(error = %ErrorChain(&e), "readiness: no global configuration");
            not_ready(Check::failed(
                "global configuration",
                format!("no current global configuration: {e}"),
            ))
        }
    }
}

async fn metrics_text(State(st): State<AdminState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(ndxp_edge::metrics::CONTENT_TYPE),
        )],
        st.metrics.encode(),
    )
        .into_response()
}
