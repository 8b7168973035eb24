//! The `[edge]` table of `node.toml` and `gateway.toml`: time limits and
//! connection limits that apply to every listener of the process
//! (`docs/config.md`, "`[edge]`").

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Limits every listener applies; the defaults are safe for a public port.
///
/// ```
/// use ndxp_edge::EdgeSettings;
/// let s = EdgeSettings { header_timeout_secs: 5, ..EdgeSettings::default() };
/// assert_eq!(EdgeSettings::default().header_timeout_secs, 10);
/// assert_eq!(s.idle_timeout_secs, 60);
/// assert!(s.check().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeSettings {
    /// Seconds a client has to send the complete header section of a
    /// request, counted from when the server starts waiting for it (the
    /// connection's start, or the end of the previous response on a
    /// kept-alive HTTP/1 connection). A connection that does not finish in
    /// time is closed.
    pub header_timeout_secs: u64,
    /// Seconds a connection may stay open with no request in flight; then
    /// it is closed (HTTP/1: after the current response; HTTP/2: with a
    /// GOAWAY). On HTTP/1 the header time-out also bounds idle time.
    pub idle_timeout_secs: u64,
    /// Seconds a request body may take to arrive in full, counted from when
    /// its headers arrived; a body still arriving then is cut and the
    /// request fails.
    pub body_timeout_secs: u64,
    /// Seconds a TLS handshake (and the checks that follow it, such as the
    /// peer port's revocation check) may take before the connection is
    /// closed.
    pub tls_handshake_timeout_secs: u64,
    /// Seconds requests in flight may take to finish when the process
    /// stops; connections still busy then are cut.
    pub drain_timeout_secs: u64,
    /// Most connections one listener keeps open at once; a connection
    /// beyond it is closed at once (and logged and counted).
    pub max_connections: usize,
    /// Most connections one listener keeps open from one remote IP address;
    /// a connection beyond it is closed at once (and logged and counted).
    pub max_connections_per_ip: usize,
    /// Largest header section of a request, in bytes (HTTP/1: the read
    /// buffer, answered with 431 when exceeded; HTTP/2: the header list
    /// size). At least 8192.
    pub max_header_bytes: usize,
    /// Most header fields in one request (HTTP/1 and HTTP/2 alike; more is
    /// answered with 431).
    pub max_headers: usize,
    /// Most concurrent requests (streams) on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
}

impl Default for EdgeSettings {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            idle_timeout_secs: 60,
            body_timeout_secs: 60,
            tls_handshake_timeout_secs: 10,
            drain_timeout_secs: 10,
            max_connections: 1024,
            max_connections_per_ip: 256,
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            http2_max_concurrent_streams: 256,
        }
    }
}

/// The smallest `max_header_bytes` (hyper's smallest read buffer).
pub const MIN_HEADER_BYTES: usize = 8192;

/// A setting of [`EdgeSettings`] that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The value is out of range.
    #[error("{key}: {detail}")]
    Invalid {
        /// The key, e.g. `edge.header_timeout_secs`.
        key: &'static str,
        /// What is wrong and what to write instead.
        detail: String,
    },
}

impl EdgeSettings {
    /// Checks the ranges: every time-out and limit at least 1, and
    /// `max_header_bytes` at least [`MIN_HEADER_BYTES`].
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first key out of range.
    pub fn check(&self) -> Result<(), SettingsError> {
        let positive: [(&'static str, u64); 9] = [
            ("edge.header_timeout_secs", self.header_timeout_secs),
            ("edge.idle_timeout_secs", self.idle_timeout_secs),
            ("edge.body_timeout_secs", self.body_timeout_secs),
            (
                "edge.tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
            ),
            ("edge.drain_timeout_secs", self.drain_timeout_secs),
            ("edge.max_connections", self.max_connections as u64),
            (
                "edge.max_connections_per_ip",
                self.max_connections_per_ip as u64,
            ),
            ("edge.max_headers", self.max_headers as u64),
            (
                "edge.http2_max_concurrent_streams",
                u64::from(self.http2_max_concurrent_streams),
            ),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(SettingsError::Invalid {
                key,
                detail: "must be at least 1".into(),
            });
        }
        if self.max_header_bytes < MIN_HEADER_BYTES || u32::try_from(self.max_header_bytes).is_err()
        {
            return Err(SettingsError::Invalid {
                key: "edge.max_header_bytes",
                detail: format!(
                    "must be between {MIN_HEADER_BYTES} and {}, got {}",
                    u32::MAX,
                    self.max_header_bytes
                ),
            });
        }
        Ok(())
    }

    /// [`Self::header_timeout_secs`] as a duration.
    pub fn header_timeout(&self) -> Duration {
        Duration::from_secs(self.header_timeout_secs)
    }

    /// [`Self::idle_timeout_secs`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_secs)
    }

    /// [`Self::body_timeout_secs`] as a duration.
    pub fn body_timeout(&self) -> Duration {
        Duration::from_secs(self.body_timeout_secs)
    }

    /// [`Self::tls_handshake_timeout_secs`] as a duration.
    pub fn tls_handshake_timeout(&self) -> Duration {
        Duration::from_secs(self.tls_handshake_timeout_secs)
    }

    /// [`Self::drain_timeout_secs`] as a duration.
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }
}
