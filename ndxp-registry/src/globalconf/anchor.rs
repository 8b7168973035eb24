//! The configuration anchor: what a node trusts the global configuration
//! by. The operator installs it on every node.

use std::io::Read;
use std::path::Path;

use chrono::{DateTime, Utc};
use ndxp_core::{InstanceId, MemberId};
use ndxp_sign::cert::{read_pem_chain, write_pem_chain};
use ndxp_sign::openssl::x509::X509;
use serde::{Deserialize, Serialize};

use super::document::check_url;
use super::error::ConfError;

/// The `format` value of every anchor file.
pub const ANCHOR_FORMAT: &str = "ndxp-anchor/1";

/// Largest anchor file read, in bytes.
pub const MAX_ANCHOR_LEN: usize = 1024 * 1024;

/// A configuration anchor file (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfAnchor {
    /// Always [`ANCHOR_FORMAT`].
    pub format: String,
    /// The instance whose configuration this anchor verifies.
    pub instance: InstanceId,
    /// Where the signed global configuration is served (`http(s)://`).
    pub conf_url: String,
    /// One or more CA certificates (PEM) that the signer's `x5c` chain must
    /// reach.
    pub trust_anchors_pem: String,
    /// When set, the signer certificate must be a signing certificate of
    /// this member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer_member: Option<MemberId>,
    /// When the anchor was written.
    pub generated_at: DateTime<Utc>,
}

impl ConfAnchor {
    /// Builds an anchor and checks it.
    ///
    /// # Errors
    /// [`ConfError::Anchor`] for a bad URL, no trust anchor, or a signer
    /// member of another instance; [`ConfError::Certificate`] if a
    /// certificate cannot be encoded.
    pub fn new(
        instance: InstanceId,
        conf_url: impl Into<String>,
        trust_anchors: &[X509],
        signer_member: Option<MemberId>,
        generated_at: DateTime<Utc>,
    ) -> Result<Self, ConfError> {
        let pem = write_pem_chain(trust_anchors).map_err(ConfError::Certificate)?;
        let anchor = ConfAnchor {
            format: ANCHOR_FORMAT.to_owned(),
            instance,
            conf_url: conf_url.into(),
            trust_anchors_pem: String::from_utf8_lossy(&pem).into_owned(),
            signer_member,
            generated_at,
        };
        anchor.validate()?;
        Ok(anchor)
    }

    /// Checks the format string, the URL, that the trust anchors parse and
    /// are not empty, and that the signer member is in the instance.
    ///
    /// # Errors
    /// [`ConfError::Anchor`].
    pub fn validate(&self) -> Result<(), ConfError> {
        if self.format != ANCHOR_FORMAT {
            return Err(ConfError::anchor(format!(
                "format is {:?}; this node reads {ANCHOR_FORMAT:?}",
                self.format
            )));
        }
        check_url(&self.conf_url, &["http", "https"])
            .map_err(|e| ConfError::anchor(format!("conf_url: {e}")))?;
        self.trust_anchors()?;
        if let Some(m) = &self.signer_member {
            if m.instance() != &self.instance {
                return Err(ConfError::anchor(format!(
                    "signer_member {m} is not in instance {}",
                    self.instance
                )));
            }
        }
        Ok(())
    }

    /// The trust anchor certificates.
    ///
    /// # Errors
    /// [`ConfError::Anchor`] when the PEM does not parse or holds none.
    pub fn trust_anchors(&self) -> Result<Vec<X509>, ConfError> {
        let certs = read_pem_chain(self.trust_anchors_pem.as_bytes())
            .map_err(|e| ConfError::anchor(format!("trust_anchors_pem: {e}")))?;
        if certs.is_empty() {
            return Err(ConfError::anchor(
                "trust_anchors_pem holds no certificate; put the management CA's certificate there",
            ));
        }
        Ok(certs)
    }

    /// The anchor as pretty-printed JSON.
    ///
    /// # Errors
    /// [`ConfError::AnchorJson`] (not expected for these types).
    pub fn to_json(&self) -> Result<String, ConfError> {
        let mut s = serde_json::to_string_pretty(self).map_err(ConfError::AnchorJson)?;
        s.push('\n');
        Ok(s)
    }

    /// Parses and checks an anchor.
    ///
    /// # Errors
    /// [`ConfError::TooLarge`], [`ConfError::AnchorJson`],
    /// [`ConfError::Anchor`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, ConfError> {
        if bytes.len() > MAX_ANCHOR_LEN {
            return Err(ConfError::TooLarge {
                limit: MAX_ANCHOR_LEN,
            });
        }
        let anchor: ConfAnchor = serde_json::from_slice(bytes).map_err(ConfError::AnchorJson)?;
        anchor.validate()?;
        Ok(anchor)
    }

    /// Reads and checks an anchor file.
    ///
    /// # Errors
    /// [`ConfError::Io`], then those of [`ConfAnchor::from_json`].
    pub fn load(path: &Path) -> Result<Self, ConfError> {
        let io = |source| ConfError::Io {
            op: "could not read the configuration anchor file",
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut bytes = Vec::new();
        file.take(MAX_ANCHOR_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        Self::from_json(&bytes)
    }
}
