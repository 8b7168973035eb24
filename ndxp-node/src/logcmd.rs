//! The `ndxp-node log` commands as library calls: archive a time range of
//! the message log into one self-contained file, and verify such a file
//! (`docs/archive.md`, `docs/node.md`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use ndxp_node::logcmd;
//! let from = "2026-01-01T00:00:00Z".parse()?;
//! let to = "2026-01-02T00:00:00Z".parse()?;
//! let written = logcmd::archive("sqlite:///var/lib/ndxp/log.db", from, to, vec![],
//!     std::path::Path::new("day.ndxplog"), None).await?;
//! let report = logcmd::verify(&written.path, None, None)?;
//! assert_eq!(report.records, written.records);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use ndxp_audit::archive::{
    self, ArchiveError, ArchiveReport, ExportRequest, Progress, Range, VerifyOptions,
};
use ndxp_audit::log::{LogError, LogOptions, SqlMessageLog};
use ndxp_sign::openssl::x509::X509;

use crate::config::NodeConfig;

/// The writer id the commands open the log with; they never append.
const READER: &str = "ndxp-node-log-command";

/// Why a log command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LogCommandError {
    /// The SQLite file named by the URL does not exist.
    #[error("there is no message log at {0}; check log.url in the configuration")]
    NoLog(String),
    /// The log database cannot be opened or read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// `from` is after `to`.
    #[error("--from {from} is after --to {to}")]
    Range {
        /// Start.
        from: String,
        /// End.
        to: String,
    },
    /// The archive could not be made or written.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// A certificate file cannot be read or holds no PEM certificate.
    #[error("cannot read certificates from {path}: {detail}")]
    Certificates {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

/// What `log archive` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The archive file.
    pub path: PathBuf,
    /// Records in it.
    pub records: u64,
    /// Chains (writers) in it.
    pub chains: usize,
    /// Time-stamp tokens in it.
    pub timestamps: usize,
    /// Records not covered by a token yet (the newest ones).
    pub unstamped: u64,
    /// File size in bytes.
    pub bytes: usize,
}

/// Reads every PEM certificate of a file.
///
/// # Errors
/// [`LogCommandError::Certificates`].
pub fn read_certificates(path: &Path) -> Result<Vec<X509>, LogCommandError> {
    let err = |detail: String| LogCommandError::Certificates {
        path: path.to_path_buf(),
        detail,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let certs = X509::stack_from_pem(&pem).map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no PEM certificate in the file".into()));
    }
    Ok(certs)
}

/// The CA and TSA certificates of the node's last-good global
/// configuration (DER), to carry in archives; empty when there is none.
pub fn conf_certificates(cfg: &NodeConfig) -> Vec<Vec<u8>> {
    let Ok(anchor) = cfg.load_anchor() else {
        return Vec::new();
    };
    let client = ndxp_registry::globalconf::ConfClient::new(
        anchor,
        cfg.conf.dir.clone(),
        reqwest::Client::new(),
    );
    if client.load_last_good(Utc::now()).is_err() {
        return Vec::new();
    }
    let Some(doc) = client.current() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let pems = doc
        .cas
        .iter()
        .map(|c| &c.cert_pem)
        .chain(doc.tsas.iter().map(|t| &t.cert_pem));
    for pem in pems {
        for cert in X509::stack_from_pem(pem.as_bytes()).unwrap_or_default() {
            if let Ok(der) = cert.to_der() {
                out.push(der);
            }
        }
    }
    out
}

async fn open(log_url: &str) -> Result<SqlMessageLog, LogCommandError> {
    if let Some(rest) = log_url
        .strip_prefix("sqlite://")
        .or_else(|| log_url.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or(rest);
        if !path.starts_with(':') && !Path::new(path).is_file() {
            return Err(LogCommandError::NoLog(path.to_string()));
        }
    }
    Ok(SqlMessageLog::open(log_url, READER, &LogOptions::default()).await?)
}

/// `log archive`: every chain's records received in `from <= t < to`
/// (extended to the end of their timestamp batch), their time-stamp tokens
/// and `certificates` (DER: CA and TSA certificates) plus the records' own,
/// written to `out` (complete or not at all).
///
/// # Errors
/// [`LogCommandError`].
pub async fn archive(
    log_url: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    certificates: Vec<Vec<u8>>,
    out: &Path,
    progress: Progress<'_>,
) -> Result<Written, LogCommandError> {
    if from > to {
        return Err(LogCommandError::Range {
            from: from.to_rfc3339(),
            to: to.to_rfc3339(),
        });
    }
    let log = open(log_url).await?;
    let result = archive::export_range(
        &log,
        &ExportRequest {
            range: Range::Time { from, to },
            certificates,
        },
        progress,
    )
    .await;
    log.close().await;
    let a = result?;
    a.write_to(out)?;
    // What it holds (its structure was checked when it was built).
    let r = archive::inspect(a.bytes())?;
    Ok(Written {
        path: out.to_path_buf(),
        records: r.records,
        chains: r.chains.len(),
        timestamps: r.timestamps.len(),
        unstamped: r.chains.iter().map(|c| c.unstamped).sum(),
        bytes: a.bytes().len(),
    })
}

/// `log verify`: verifies the archive at `path`, against `anchors` (CA
/// certificates) when given, else against the self-signed certificates
/// the archive carries (integrity without established trust).
///
/// # Errors
/// [`ArchiveError`]: the first bad record and why, or why the file cannot
/// be read.
pub fn verify(
    path: &Path,
    anchors: Option<Vec<X509>>,
    progress: Progress<'_>,
) -> Result<ArchiveReport, ArchiveError> {
    archive::verify_archive_file_with(path, &VerifyOptions { anchors }, progress)
}
