//! NDXP audit (skeleton; filled in by the message-log and reconciliation issues).
#![forbid(unsafe_code)]

pub mod archive;
pub mod log;
pub mod reconcile;
