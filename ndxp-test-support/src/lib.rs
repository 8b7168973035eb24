//! Fixtures shared by the NDXP test suites. **For tests only**: this crate is
//! `publish = false` and belongs in `[dev-dependencies]`, never in the
//! dependencies of a shipped crate. Its functions panic with a message that
//! says what to fix instead of returning errors, as a test wants.
//!
//! - [`db`]: a database per test — a SQLite file always, and a fresh
//!   PostgreSQL schema when `NDXP_TEST_POSTGRES_URL` is set.
//! - [`pki`]: a test CA in a directory and certificates issued from fresh
//!   EC P-256 keys (member signing, node authentication).
//! - `audit` (feature `audit`): a signed exchange as a consumer's node
//!   logs it, and the test PKI's TSA behind the message log's transport.
//! - `tsa` (feature `tsa`, also in `audit`): the test PKI's TSA over
//!   HTTP on 127.0.0.1, switchable off.
//! - `edge` (feature `edge`): a backend that records what reaches it and
//!   a client that sends request targets exactly as written.
//! - `slow` (feature `edge`): slow clients (one byte a second, over TCP or TLS) for the
//!   time-out tests of the serve loop.
//! - `otlp` (feature `otlp`): an OTLP/HTTP trace receiver that decodes
//!   the spans NDXP exports.
//! - [`metrics`]: the metric catalogue of `docs/monitoring.md` and the
//!   names a `/metrics` scrape exposes, to compare them.
//! - [`cli`]: the command-line conventions of `docs/cli.md`, checked on
//!   a binary's `generate tree`.
//! - [`tool`]: running a stock command-line tool (`openssl`, `curl`, ...)
//!   that the interoperability tests compare against.
//!
//! ```no_run
//! # async fn example() {
//! use ndxp_test_support::db::{backends, TestDatabase};
//!
//! for backend in backends() {
//!     let dir = tempfile::tempdir().unwrap();
//!     let db = TestDatabase::create(backend, dir.path()).await;
//!     // ... open a store on `db.url` and test it ...
//!     db.drop_now().await;
//! }
//! # }
//! ```
#![forbid(unsafe_code)]

#[cfg(feature = "audit")]
pub mod audit;
pub mod cli;
pub mod db;
#[cfg(feature = "edge")]
pub mod edge;
pub mod files;
pub mod metrics;
#[cfg(feature = "otlp")]
pub mod otlp;
pub mod pki;
#[cfg(feature = "edge")]
pub mod slow;
pub mod tool;
#[cfg(feature = "tsa")]
pub mod tsa;
