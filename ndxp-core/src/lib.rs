//! # ndxp-core
//!
//! The vocabulary every NDXP component shares, with no I/O: the identifiers
//! of members, subsystems and services ([`id`]), transaction ids
//! ([`txid`]), and the problem+json errors with their stable codes
//! ([`problem`]).
//!
//! ```
//! use ndxp_core::id::ServiceId;
//!
//! let s: ServiceId = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1".parse()?;
//! assert_eq!(s.member().to_string(), "VN/GOV/000.00.00.H29");
//! assert_eq!(s.version().as_str(), "v1");
//! assert!("VN/GOV/000.00.00.H29/CSDLDC/citizen/1".parse::<ServiceId>().is_err());
//! # Ok::<(), ndxp_core::id::IdError>(())
//! ```
//!
//! It prints an error with its causes ([`chain::ErrorChain`]), holds the
//! one ok/failure/hint report of the diagnostic commands ([`check`]), and classifies
//! database URLs ([`dburl`]) for the storage backends. With the feature
//! `table` (off by default; the binaries and `cargo xtask` turn it on) it
//! renders the one text-table style of every command line (`table`).
//! [`trace`] parses and writes W3C Trace Context headers (`traceparent`,
//! `tracestate`).
//!
//! **Architecture invariant:** this crate performs no I/O and has no async
//! code; everything here is a pure value type.

#![forbid(unsafe_code)]

pub mod chain;
pub mod check;
pub mod dburl;
pub mod id;
pub mod path;
pub mod problem;
#[cfg(feature = "table")]
pub mod table;
pub mod trace;
pub mod txid;

pub use chain::ErrorChain;
pub use id::{IdError, InstanceId, MemberId, NodeName, ServiceId, SubsystemId, Version};
pub use problem::{ErrorCode, Problem};
pub use txid::TransactionId;
