//! # ndxp-registry
//!
//! What the platform knows about its participants, and the signed document
//! that tells every node about it:
//!
//! | module | what |
//! |---|---|
//! | [`model`] | members, subsystems, nodes, services, groups, access rights, subscriptions, registration requests, credentials, audit entries |
//! | [`store`] | the [`store::RegistryStore`] trait and its SQL backend for SQLite (embedded default) and PostgreSQL (shared by several processes); versioned migrations; every write audited and versioned in one transaction |
//! | [`registration`] | the signed request a node sends to be admitted, and its checks |
//! | [`globalconf`] | the global configuration: document, JWS signing and verification against an anchor file, and the client nodes use to fetch it and keep a last-good copy |
//!
//! A node that only needs to trust the platform uses [`globalconf`] alone:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ndxp_registry::globalconf::{ConfAnchor, ConfClient};
//! let anchor = ConfAnchor::load(std::path::Path::new("anchor.json"))?;
//! let client = ConfClient::new(anchor, "conf".into(), reqwest::Client::new());
//! client.load_last_good(chrono::Utc::now())?;
//! client.refresh(chrono::Utc::now()).await?;
//! let conf = client.current_valid(chrono::Utc::now())?; // refuses an expired one
//! println!("version {} lists {} nodes", conf.version, conf.nodes.len());
//! # Ok(()) }
//! ```
//!
//! # Other crates' types in this API
//!
//! The store is over `sqlx` (`sqlx::Error` is the source of database
//! errors); the global configuration client and the OCSP fetcher take a
//! `reqwest::Client`, so that the caller chooses its proxy, time-outs and
//! trust roots; certificates and keys are `openssl` types as `ndxp-sign`
//! re-exports them. Their major versions are part of this crate's API.
//!
//! **Architecture invariant:** the registry is changed only through
//! [`store::RegistryStore`] writes, each of which appends exactly one audit
//! entry and raises the registry version in the same transaction; nothing
//! is ever half-written.

#![forbid(unsafe_code)]

pub mod globalconf;
pub mod model;
pub mod registration;
pub mod store;
