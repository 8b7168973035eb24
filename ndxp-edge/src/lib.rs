//! The network edge that every listener of `ndxp-node` and `ndxp-gateway`
//! shares (`docs/design.md`, "The edge").
#![forbid(unsafe_code)]

pub mod problem;
