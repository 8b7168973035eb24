//! The global configuration (docs/design.md §7): a versioned JSON document that the
//! management role builds from the registry, signs as a JWS (RFC 7515) with
//! its certificate chain in `x5c`, and serves over HTTP; and the client a
//! node uses to fetch it, verify it against an operator-installed
//! [`ConfAnchor`], keep it on disk as last-good, and refuse it once expired.
//!
//! | item | role |
//! |---|---|
//! | [`ConfDocument`], [`ConfContent`] and the `Conf*` entries | the document, its rules ([`ConfDocument::validate`]) and look-ups |
//! | [`sign`], [`verify`] | the signed form (`application/jose`) |
//! | [`ConfAnchor`] | what a node trusts: instance, URL, trust anchors, signer member |
//! | [`ConfClient`] | fetch on an interval, last-good file, current document, status |
//!
//! **Security behaviour.** A document is accepted only when, at the time
//! given: its `x5c` chain reaches one of the anchor's trust anchors, the
//! signature verifies with the chain's leaf, the leaf belongs to the
//! anchor's `signer_member` (when set), the payload obeys every document
//! rule, the instance is the anchor's, it has not expired and it was not
//! generated in the future. The client never replaces a held document with
//! an older version, never holds a document it could not write to disk, and
//! keeps the held document when a refresh fails. Input larger than
//! [`MAX_DOCUMENT_LEN`] is refused before parsing. See `docs/globalconf.md`.
//!
//! ```
//! use chrono::{TimeDelta, Utc};
//! use ndxp_registry::globalconf::{self, ConfAnchor, ConfContent, ConfDocument, ConfMember};
//! use ndxp_sign::{ca::{InitOptions, Pki}, cert::Profile, csr, key::KeyAlgorithm};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let tmp = tempfile::tempdir()?;
//! let pki = Pki::init(&tmp.path().join("pki"), &InitOptions {
//!     ocsp_url: "http://ocsp.example".into(),
//!     ..InitOptions::default()
//! })?;
//! let management: ndxp_core::MemberId = "VN/GOV/MGMT".parse()?;
//! let key = KeyAlgorithm::EcP256.generate()?;
//! let request = csr::build_sign_csr(&management, &key)?;
//! let cert = pki.issue(&request, Profile::Sign, 30)?;
//! let mut chain = vec![cert];
//! chain.extend(pki.chain().iter().cloned());
//!
//! let content = ConfContent {
//!     members: vec![ConfMember { id: management.clone(), name: "Management".into(), subsystems: vec![] }],
//!     ..ConfContent::default()
//! };
//! let now = Utc::now();
//! let doc = ConfDocument::new(content, "VN".parse()?, 1, now, TimeDelta::days(1))?;
//! let jws = globalconf::sign(&doc, &key, &chain)?;
//!
//! let anchor = ConfAnchor::new("VN".parse()?, "https://conf.example/globalconf",
//!                              &[pki.root_cert().clone()], Some(management), now)?;
//! assert_eq!(globalconf::verify(&jws, &anchor, now)?, doc);
//! # Ok(()) }
//! ```

mod anchor;
mod client;
mod document;
mod error;
mod signing;

pub use anchor::{ConfAnchor, ANCHOR_FORMAT, MAX_ANCHOR_LEN};
pub use client::{
    ocsp_fetcher, ConfClient, ConfStatus, RefreshOutcome, DEFAULT_FETCH_TIMEOUT, LAST_GOOD_FILE,
    OCSP_FETCH_TIMEOUT,
};
pub use document::{
    ConfAccessRight, ConfCa, ConfContent, ConfDocument, ConfGrantee, ConfGroup, ConfMember,
    ConfNode, ConfService, ConfTsa, FORMAT,
};
pub use error::ConfError;
pub use signing::{sign, verify, JWS_TYP, MAX_CLOCK_SKEW, MAX_DOCUMENT_LEN, MEDIA_TYPE};
