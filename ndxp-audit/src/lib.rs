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
//! **Architecture invariant:** the message log is never updated in place;
//! the only removal is `purge_before`, which first records a checkpoint of
//! the chain so that what remains still verifies.

#![forbid(unsafe_code)]

pub mod archive;
pub mod backup;
pub mod log;
pub mod monitor;
pub mod query;
pub mod reconcile;
pub mod timestamp;
