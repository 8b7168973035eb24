//! NDXP registry (skeleton; filled in by the management issue).
#![forbid(unsafe_code)]

pub mod globalconf;
pub mod model;
pub mod registration;
pub mod store;
