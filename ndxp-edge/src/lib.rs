//! The network edge that every listener of `ndxp-node` and `ndxp-gateway`
//! shares (`docs/design.md`, "The edge").
//!
//! - [`serve`]: one serve loop for every listener — plain HTTP or TLS,
//!   HTTP/1.1 and HTTP/2, header, idle, body and TLS handshake time-outs,
//!   limits on connections (in all and per remote address) and on header
//!   size and count, graceful drain on shutdown.
//! - [`metrics`]: the serve loops' connection counts as Prometheus metrics.
//! - [`config`]: what both binaries do alike with their configuration
//!   file: its default path, `NDXP_...` environment overrides, secrets in
//!   files, and the report of `config check`.
//! - [`settings`]: the `[edge]` table of `node.toml` and `gateway.toml`
//!   that sets those limits ([`EdgeSettings`]).
//! - [`probe`]: the checks of `diagnose` in both binaries: a timestamp
//!   round trip, an OCSP request, an HTTP `GET` or a TCP connection to a
//!   backend, each giving an `ndxp_core::check::Check`.
//! - [`trace`]: W3C Trace Context on every hop: the caller's `traceparent`
//!   read, the hop's span opened, the `traceparent` sent on.
//! - [`telemetry`]: the `[telemetry]` table, OTLP export of the hops'
//!   spans, and the process's log subscriber.
//!
//! ```no_run
//! use std::convert::Infallible;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use ndxp_edge::serve::{Edge, Plain};
//! use ndxp_edge::EdgeSettings;
//!
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let edge = Edge::new("example port", &EdgeSettings::default());
//! edge.serve(
//!     listener,
//!     Plain,
//!     |conn| {
//!         let remote = conn.remote;
//!         hyper::service::service_fn(move |_req| async move {
//!             Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(format!(
//!                 "hello {remote}\n"
//!             )))))
//!         })
//!     },
//!     async {
//!         let _ = tokio::signal::ctrl_c().await;
//!     },
//! )
//! .await;
//! # Ok(()) }
//! ```
//!
//! # Other crates' types in this API
//!
//! The edge is built on hyper and tokio and says so in its signatures:
//! `http` request and response types and `Uri`, `bytes::Bytes`, hyper's
//! request body (`hyper::body::Incoming`) and `http_body` bodies in the
//! service a listener runs, tokio's `TcpListener` and streams, OpenSSL's
//! `SslAcceptor` (through `ndxp_sign::openssl`) and `prometheus_client`'s
//! `Registry` for the metrics. Their major versions are part of this crate's API; the settings
//! (`EdgeSettings`) and problem answers (`ProblemResponse`) are plain NDXP
//! types.
#![forbid(unsafe_code)]

pub mod config;
pub mod forward;
pub mod limit;
pub mod metrics;
pub mod probe;
pub mod problem;
pub mod serve;
pub mod settings;
pub mod telemetry;
pub mod trace;

pub use settings::EdgeSettings;
