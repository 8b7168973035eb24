//! NDXP trust toolkit (skeleton: modules are filled in by the foundation issue).

#![deny(unsafe_code)]

pub mod ca;
pub mod cert;
pub mod chain;
pub mod csr;
pub mod digest;
mod ffi;
pub mod httpsig;
pub mod jws;
pub mod key;
pub mod ocsp;
pub mod revocation;
pub mod tsa;
