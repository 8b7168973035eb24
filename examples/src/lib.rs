//! Runnable NDXP examples (see `docs/examples.md`):
//!
//! * [`citizen_registry`] — a sample provider backend, served by the
//!   `citizen-registry` binary (default `127.0.0.1:8400`);
//! * [`consumer`] — a sample consumer that calls a service through a node
//!   or the central gateway, the `sample-consumer` binary;
//! * [`message_file`] — verifying a signed message saved as files with
//!   `ndxp-sign` alone, the `verify-message` binary;
//! * the `verify-archive` binary — verifying a message-log archive with
//!   `ndxp-audit` and `ndxp-sign` alone (one call,
//!   `ndxp_audit::archive::verify_archive`).
//!
//! Like every library of the workspace, this one never prints, reads the
//! environment or exits: the binaries in `src/bin/` do.

pub mod citizen_registry;
pub mod consumer;
pub mod message_file;
