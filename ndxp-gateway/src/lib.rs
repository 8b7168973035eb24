//! # ndxp-gateway
//!
//! The central services of NDXP as a library; the `ndxp-gateway` binary is a
//! thin command line over it.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the one TOML configuration file (`docs/config.md`) |
//! | [`server`] | `run(config, shutdown)`: the management role with its admin port |
//! | [`management`] | the management REST API (`/api/v1`, `/openapi.json`), bearer-token auth, problem+json errors |
//! | [`publisher`] | builds, signs, stores and serves the global configuration (`/globalconf`) |
//! | [`admin`] | the operator commands (`members`, `subsystems`, `nodes`, `requests`, `tokens`, `conf anchor`) |
//! | [`monitoring`] | connection states from node status reports, and reconciliation of every provider–consumer pair (`docs/monitoring.md`) |
//! | [`metrics`] | Prometheus metrics of the API |
//! | [`gateway`] | the central gateway role: OAuth2 token endpoint, service calls, DigiSign adapter, lifecycle commands |
//! | [`pki`] | the trust services: OCSP responder (RFC 6960) and timestamp authority (RFC 3161) over HTTP |
//!
//! Serving the PKI in-process, as the tests do:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! let pki = ndxp_sign::ca::Pki::open(std::path::Path::new("pki"), None)?;
//! let service = Arc::new(ndxp_gateway::pki::PkiService::new(pki)?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("OCSP at http://{}/ocsp", listener.local_addr()?);
//! ndxp_gateway::pki::serve(listener, service, std::future::pending()).await?;
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod gateway;
pub mod management;
pub mod metrics;
pub mod monitoring;
pub mod pki;
pub mod publisher;
pub mod revocation;
pub mod server;
