//! What the command-line tests' configuration files share.

/// The `[globalconf]` table of an operator's configuration directory as
/// the command-line tests lay it out: the management signing key and
/// certificate in `mgmt-keys/`, the CA chain in `pki/`.
pub const GLOBALCONF_TABLE: &str = r#"[globalconf]
signing_key = "mgmt-keys/sign.key"
signing_cert = "mgmt-keys/sign.pem"
signing_chain = "pki/chain.pem""#;
