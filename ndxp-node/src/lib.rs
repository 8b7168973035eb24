//! ndxp-node library.
#![forbid(unsafe_code)]
