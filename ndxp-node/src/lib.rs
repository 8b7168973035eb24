//! # ndxp-node
//!
//! The DXL node of NDXP's distributed model, as a library; the `ndxp-node`
//! binary is a thin command line over it. Today it prepares a member's node
//! for admission ([`keys`]): the node's authentication key and the member's
//! signing key, each with a CSR for the platform CA.
//!
//! ```no_run
//! use ndxp_node::keys::{init_keys, KeysOptions};
//! let files = init_keys(&KeysOptions::new(
//!     "node-keys".into(),
//!     "VN/GOV/000.00.00.G22".parse()?,
//!     "node1".parse()?,
//! ))?;
//! println!("send {} and {} to the CA", files.auth_csr.display(), files.sign_csr.display());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

pub mod keys;
