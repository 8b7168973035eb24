//! # ndxp-sign
//!
//! Everything cryptographic in NDXP, usable on its own by other vendors to
//! verify what the platform signs:
//!
//! | module | what |
//! |---|---|
//! | [`key`] | EC P-256 / RSA keys, PKCS#8 PEM (optionally encrypted), key files with mode 0600, a [`key::KeyStore`] trait for HSMs |
//! | [`csr`] | PKCS#10 requests for node (authentication) and member (signing) identities |
//! | [`cert`] | how identities map to certificate fields, fingerprints, PEM helpers |
//! | [`ca`] | the platform CA and its directory: init, issue, revoke, status |
//! | [`chain`] | chain validation at a given time, with a pluggable revocation check |
//! | [`ocsp`] | RFC 6960 responder and client |
//! | [`tsa`] | RFC 3161 timestamp authority and client |
//! | [`digest`] | RFC 9530 `Content-Digest` |
//! | [`httpsig`] | RFC 9421 HTTP Message Signatures (`ecdsa-p256-sha256`, `rsa-pss-sha512`, `rsa-v1_5-sha256`) |
//! | [`profile`] | the NDXP signature profile of RFC 9421 for node-to-node messages: headers, covered components, signer certificates, replay cache |
//! | [`jws`] | RFC 7515 JWS compact serialisation with `x5c`, for signed documents |
//! | [`revocation`] | certificate status and RFC 5280 reason codes |
//! | [`tls`] | mutual TLS 1.3 between nodes: identity, peer policy (anchors, revocation, registration or pinned fingerprint), OpenSSL acceptor/connector, async handshakes |
//!
//! All types are `openssl` types underneath (re-exported as
//! [`openssl`]), so the modules compose: a key from [`key`] signs a CSR in
//! [`csr`], a certificate from [`ca`] verifies an [`httpsig`] signature.
//!
//! # Cargo features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `pkcs11` | off | `pkcs11` module: a [`key::KeyStore`] over a PKCS#11 token (HSM, SoftHSM2) through the `cryptoki` crate: keys generated on or found on the token, signing and CSRs through a pool of logged-in sessions |
//! | `tokio` | on | the async parts, on tokio: TLS handshakes on tokio streams ([`tls::accept`], [`tls::connect`], [`tls::accept_https`], returning `tokio_openssl::SslStream`) and the OCSP hub (`ocsp_hub`) that fetches and caches answers for the node and the gateway |
//!
//! With `default-features = false` the crate has no async runtime and no
//! tokio in its dependency tree, and still does everything else: keys,
//! CSRs, the CA, chain validation, OCSP and RFC 3161 (responder, client
//! requests and verification), RFC 9421 signing and verification, the NDXP
//! profile, JWS, and the synchronous TLS configuration
//! ([`tls::server_acceptor`], [`tls::client_connector`],
//! [`tls::verify_peer`]). `examples/verify_offline.rs` is built that way:
//!
//! ```text
//! cargo build -p ndxp-sign --no-default-features --examples
//! ```
//!
//! # Third-party types in the public API
//!
//! These crates' types appear in public signatures, so their major
//! versions are part of this crate's API:
//!
//! - **`openssl`** (re-exported as [`openssl`], so that dependents use the
//!   same version): keys (`PKey`), certificates and requests (`X509`,
//!   `X509Req`), `SslAcceptor`/`SslConnector`/`SslRef` in [`tls`], and
//!   `ErrorStack` as an error source.
//! - **`http`**: request and response heads (`request::Parts`,
//!   `response::Parts`, `HeaderMap`, `Method`, `Uri`, `StatusCode`) in
//!   [`httpsig`] and [`profile`].
//! - **`chrono`**: `DateTime<Utc>` for validation and signing times.
//! - **`sfv`**: `sfv::Error`, the source of
//!   [`httpsig::SignatureError::MalformedField`].
//! - with `tokio`: `tokio::io::{AsyncRead, AsyncWrite}` and
//!   `tokio_openssl::SslStream` in [`tls::accept`] and [`tls::connect`].
//!
//! ```
//! use ndxp_sign::{digest, key::KeyAlgorithm};
//! use ndxp_sign::httpsig::{self, Component, SignatureParams, SigningKey, VerifyPolicy};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::new(KeyAlgorithm::EcP256.generate()?, "member-key")?;
//! let public = key.verifying_key()?;
//! let (mut parts, ()) = http::Request::post("https://node.example/r1/VN/GOV/1/A/s/v1")
//!     .header("content-digest", digest::content_digest(b"{}"))
//!     .body(())?
//!     .into_parts();
//! let params = SignatureParams::new(vec![Component::method(), Component::target_uri(),
//!                                        Component::field("content-digest")])
//!     .with_created(1_700_000_000)
//!     .with_keyid(key.keyid());
//! httpsig::sign_request(&mut parts, "ndxp", &params, &key)?;
//! let policy = VerifyPolicy::new(vec![Component::field("content-digest")]);
//! let resolver = |id: &str| (id == "member-key").then(|| public.clone());
//! httpsig::verify(&httpsig::MessageView::request(&parts), "ndxp", &policy, 1_700_000_010, &resolver)?;
//! # Ok(()) }
//! ```
//!
//! **Security behaviour.** Parsers of outside input (structured header
//! fields, DER from OCSP and TSA peers, JWS) never panic and return typed
//! errors; private key files are created with mode 0600 and refused when
//! others can read them; signatures are compared and verified by OpenSSL;
//! `unsafe` exists only in the private `ffi` module, which binds the
//! libcrypto functions for RFC 3161 and OCSP response signing that the
//! `openssl` crate lacks.

#![deny(unsafe_code)]

pub use openssl;

pub mod ca;
pub mod cert;
pub mod chain;
pub mod csr;
pub mod digest;
mod ffi;
pub mod files;
pub mod httpsig;
pub mod jws;
pub mod key;
pub mod ocsp;
#[cfg(feature = "tokio")]
pub mod ocsp_hub;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
pub mod profile;
pub mod revocation;
pub mod tls;
pub mod tsa;
