//! # ndxp-gateway
//!
//! The central services of NDXP as a library; the `ndxp-gateway` binary is a
//! thin command line over it.
//!
//! | module | what |
//! |---|---|
//! The crate is laid out by role; each role's module holds its service
//! layer, which the REST API handlers and the binary's commands both call.
//!
//! | module | what |
//! |---|---|
//! | [`config`] | the one TOML configuration file (`docs/config.md`), shared by every role |
//! | [`server`] | `run(config, shutdown)`: `ndxp-gateway serve`, every role of the configuration in one process, with the admin port (`/healthz`, `/readyz`, `/metrics`) |
//! | [`management`] | the management role: the REST API (`/api/v1`, `/openapi.json`), the global configuration [`management::publisher`], [`management::metrics`], and the registry administration service [`management::registry`] (`members`, `subsystems`, `nodes`, `requests`, `tokens`, `conf anchor`) |
//! | [`diagnose`] | `ndxp-gateway diagnose` and `GET /api/v1/diagnose`: every dependency (database, signing key, global configuration, OCSP, TSA, backends) checked, ok or what failed with a hint |
//! | [`monitoring`] | connection states from node status reports, and reconciliation of every provider–consumer pair (`docs/monitoring.md`) |
//! | [`gateway`] | the central gateway role: OAuth2 token endpoint, service calls, client certificates, DigiSign adapter, its message log, and the catalogue, subscription and credential service |
//! | [`pki`] | the trust services: OCSP responder (RFC 6960) and timestamp authority (RFC 3161) over HTTP, and what the `pki` commands decide |
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

pub mod config;
pub mod diagnose;
pub mod gateway;
pub mod management;
pub mod monitoring;
pub mod pki;
pub mod server;
