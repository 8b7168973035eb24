//! Revocation for the node: the shared [`OcspHub`] of `ndxp-sign`, asking
//! the responders over the node's HTTP client
//! ([`ndxp_registry::globalconf::ocsp_fetcher`]).

pub use ndxp_sign::ocsp_hub::{Lenient, OcspHub, RevocationError};
