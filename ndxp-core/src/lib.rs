//! NDXP core types (skeleton).
#![forbid(unsafe_code)]
