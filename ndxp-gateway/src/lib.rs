//! ndxp-gateway library.
#![forbid(unsafe_code)]
