//! # ndxp-audit
//!
//! Non-repudiation and reconciliation for NDXP exchanges:
//!
//! | module | what |
//! |---|---|
//! | [`log`] | the message log: append-only records per writer, hash-chained, group-committed (durable before the caller's `append` returns), on SQLite or PostgreSQL |
//! | [`timestamp`] | batch RFC 3161 timestamping of chain heads in the background, its lag and the check a node makes before accepting an exchange |
//! | [`archive`] | a self-contained archive file of ranges of chains with their time-stamp tokens and certificates, and [`archive::verify_archive`], which names the first changed, deleted, inserted or reordered record, bad signature or bad timestamp (`docs/archive.md`) |
//! | [`backup`] | online backups: `VACUUM INTO` snapshots of SQLite databases, copies of state files and a manifest, shared by `ndxp-gateway backup` and `ndxp-node backup` |
//! | [`query`] | transaction queries (time, client, service, status, problem code; cursor paging) for the node's admin API |
//! | [`monitor`] | the signed uploads nodes send to management: node status, summaries, drill-down polls and answers (`docs/monitoring.md`) |
//! | [`reconcile`] | per-period summaries of a side's transactions, their comparison, and the drill-down to the exact transaction ids that differ, as JSON or CSV (`docs/reconciliation.md`) |
//!
//! Integrators verify an archive with this crate and `ndxp-sign` alone:
//!
//! ```no_run
//! use ndxp_audit::archive::{verify_archive_file, VerifyOptions};
//! let report = verify_archive_file(std::path::Path::new("node.archive"), &VerifyOptions::default())?;
//! println!("{} records in {} chains verified", report.records, report.chains.len());
//! # Ok::<(), ndxp_audit::archive::ArchiveError>(())
//! ```
//!
//! # Features
//!
//! | feature | default | brings |
//! |---|---|---|
//! | `store` | on | the message log on SQLite or PostgreSQL (`log::sql`, with `ndxp-db`, `sqlx`, `rusqlite` and `tokio`), the background [`timestamp::Timestamper`] and its stored tokens, [`archive::export_range`], [`query`], the reconciliation scan of a log database ([`reconcile::summarize_log`], [`reconcile::bucket_ids_from_log`]) and [`backup`] |
//! | `tsa-client` | on | [`timestamp::HttpTsa`], the timestamper's RFC 3161 client over HTTP(S) (`reqwest`) |
//!
//! With `default-features = false` the crate still verifies and inspects
//! archives ([`archive`]), encodes and checks records and chains ([`log`]:
//! the record types, the canonical encoding, [`log::MessageLog`]), and
//! holds the reconciliation model ([`reconcile`]: summaries, comparison,
//! drill-down, reports) and the signed monitoring uploads ([`monitor`]),
//! without a database driver, an HTTP client or an async runtime (it
//! takes `ndxp-sign` without its `tokio` feature):
//!
//! ```toml
//! ndxp-audit = { version = "0.1", default-features = false }
//! ```
//!
//! `cargo run -p ndxp-audit --example verify_archive --no-default-features`
//! is such an integrator's program.
//!
//! # Other crates' types in this API
//!
//! Certificates and keys are `openssl` types as `ndxp-sign` re-exports them
//! (`ndxp_sign::openssl`, e.g. [`archive::VerifyOptions::anchors`]). With
//! `store`, `sqlx`'s `AnyPool` (the database a log, a timestamper, an
//! export or a reconciliation scan works on) and `sqlx::Error` and
//! `sqlx::migrate::MigrateError` (the sources of the `Database` and
//! `Migration` error variants) are part of the API, so a `sqlx` upgrade is
//! a breaking change of this crate. No `reqwest` type is: the HTTP
//! client's error reaches you only as the boxed source of
//! [`timestamp::TimestampError::Client`].
//!
//! **Architecture invariant:** the message log is never updated in place;
//! the only removal is `purge_before`, which first records a checkpoint of
//! the chain so that what remains still verifies.

#![forbid(unsafe_code)]

pub mod archive;
#[cfg(feature = "store")]
pub mod backup;
pub mod log;
pub mod monitor;
#[cfg(feature = "store")]
pub mod query;
pub mod reconcile;
pub mod timestamp;
