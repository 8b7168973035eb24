//! The node side: fetch, verify, keep last-good on disk, hold the current
//! document in memory. Also the HTTP side of OCSP for the node and the
//! central gateway ([`ocsp_fetcher`]).

use std::fs::{self, File, OpenOptions};
use std::future::Future;
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use ndxp_core::{ErrorChain, InstanceId};
use ndxp_sign::jws::JwsError;
use serde::Serialize;

use super::anchor::ConfAnchor;
use super::document::ConfDocument;
use super::error::ConfError;
use super::signing::{verify, verify_allow_expired, MAX_DOCUMENT_LEN, MEDIA_TYPE};

/// How long one OCSP request may take.
pub const OCSP_FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// An [`OcspFetch`](ndxp_sign::ocsp_hub::OcspFetch) over `http` for an
/// [`OcspHub`](ndxp_sign::ocsp_hub::OcspHub): POST
/// `application/ocsp-request`, [`OCSP_FETCH_TIMEOUT`], 2xx only, answers
/// announced larger than [`MAX_RESPONSE_BYTES`](ndxp_sign::ocsp_hub::MAX_RESPONSE_BYTES)
/// refused before reading.
pub fn ocsp_fetcher(http: reqwest::Client) -> ndxp_sign::ocsp_hub::OcspFetch {
    use ndxp_sign::ocsp_hub::{FetchFuture, MAX_RESPONSE_BYTES};
    Arc::new(move |url: String, der: Vec<u8>| -> FetchFuture {
        let http = http.clone();
        Box::pin(async move {
            let resp = http
                .post(&url)
                .header(reqwest::header::CONTENT_TYPE, "application/ocsp-request")
                .body(der)
                .timeout(OCSP_FETCH_TIMEOUT)
                .send()
                .await
                .map_err(|e| format!("cannot be reached ({e})"))?;
            if !resp.status().is_success() {
                return Err(format!("answered HTTP {}", resp.status()));
            }
            if resp
                .content_length()
                .is_some_and(|n| n > MAX_RESPONSE_BYTES as u64)
            {
                return Err(format!("sent an answer over {MAX_RESPONSE_BYTES} bytes"));
            }
            let body = resp.bytes().await.map_err(|e| e.to_string())?;
            Ok(body.to_vec())
        })
    })
}

/// The name of the last-good file inside the client's directory.
pub const LAST_GOOD_FILE: &str = "globalconf.jws";

/// Default time limit of one fetch (connect to end of body).
pub const DEFAULT_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// What a successful [`ConfClient::refresh`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// A newer version is now held (and written to disk).
    Updated {
        /// The version held before, if any.
        from: Option<u64>,
        /// The version now held.
        to: u64,
    },
    /// The same version, re-signed later (typically with a later
    /// `expires_at`), replaced the held one.
    Renewed {
        /// The version.
        version: u64,
    },
    /// The server offers the document already held.
    Unchanged {
        /// The version.
        version: u64,
    },
}

/// What a node reports about its global configuration (`ndxp-node conf
/// status`, `/readyz`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfStatus {
    /// The anchor's instance.
    pub instance: InstanceId,
    /// Where the document is fetched from.
    pub conf_url: String,
    /// The version held, if any.
    pub version: Option<u64>,
    /// When the held document was generated.
    pub generated_at: Option<DateTime<Utc>>,
    /// When the held document expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When the held document was last confirmed by a successful fetch (or,
    /// right after start, when the last-good file was written).
    pub fetched_at: Option<DateTime<Utc>>,
    /// Seconds from `fetched_at` to now: how stale this node's view may be.
    pub age_secs: Option<i64>,
    /// Seconds from now to `expires_at` (negative once expired).
    pub expires_in_secs: Option<i64>,
    /// A document is held and has expired.
    pub expired: bool,
    /// A document is held and has not expired: the node may serve.
    pub valid: bool,
    /// The last refresh's error, cleared by a successful refresh.
    pub last_error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    doc: Option<Arc<ConfDocument>>,
    fetched_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

/// Fetches the global configuration, verifies it against the anchor,
/// keeps the last good copy in `dir/globalconf.jws`, and holds the current
/// document for cheap concurrent reads.
#[derive(Debug)]
pub struct ConfClient {
    anchor: ConfAnchor,
    dir: PathBuf,
    http: reqwest::Client,
    fetch_timeout: Duration,
    state: RwLock<State>,
    refresh_lock: tokio::sync::Mutex<()>,
}

impl ConfClient {
    /// A client for `anchor` keeping its files in `dir` (created when the
    /// first document is written). Nothing is read until
    /// [`ConfClient::load_last_good`] or [`ConfClient::refresh`].
    pub fn new(anchor: ConfAnchor, dir: PathBuf, http: reqwest::Client) -> Self {
        Self {
            anchor,
            dir,
            http,
            fetch_timeout: DEFAULT_FETCH_TIMEOUT,
            state: RwLock::new(State::default()),
            refresh_lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Sets the time limit of one fetch (default
    /// [`DEFAULT_FETCH_TIMEOUT`]).
    #[must_use]
    pub fn with_fetch_timeout(mut self, timeout: Duration) -> Self {
        self.fetch_timeout = timeout;
        self
    }

    /// The anchor in use.
    pub fn anchor(&self) -> &ConfAnchor {
        &self.anchor
    }

    /// The path of the last-good file.
    pub fn last_good_path(&self) -> PathBuf {
        self.dir.join(LAST_GOOD_FILE)
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads and verifies the last-good file, if there is one, and holds it
    /// unless a newer version is already held. An expired document loads
    /// (so that status can report it) but [`ConfClient::current_valid`]
    /// refuses it. Returns the document read, `None` when there is no file.
    ///
    /// # Errors
    /// [`ConfError::Io`] when the file cannot be read, or any verification
    /// error except [`ConfError::Expired`].
    pub fn load_last_good(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<Arc<ConfDocument>>, ConfError> {
        let path = self.last_good_path();
        let io = |source| ConfError::Io {
            op: "could not read the last-good global configuration",
            path: path.clone(),
            source,
        };
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let modified = file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .map(DateTime::<Utc>::from);
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_LEN as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
        if bytes.len() > MAX_DOCUMENT_LEN {
            return Err(ConfError::TooLarge {
                limit: MAX_DOCUMENT_LEN,
            });
        }
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| ConfError::Envelope(JwsError::Malformed("the file is not UTF-8")))?;
        let doc = Arc::new(verify_allow_expired(text.trim(), &self.anchor, now)?);
        let mut state = self.write_state();
        if state
            .doc
            .as_ref()
            .is_none_or(|held| held.version < doc.version)
        {
            state.doc = Some(doc.clone());
            state.fetched_at = modified.or(Some(now));
        }
        Ok(Some(doc))
    }

    /// The document held, expired or not.
    pub fn current(&self) -> Option<Arc<ConfDocument>> {
        self.read_state().doc.clone()
    }

    /// The document held, if it has not expired at `now`.
    ///
    /// # Errors
    /// [`ConfError::NotLoaded`] when none is held, [`ConfError::Expired`]
    /// when it has expired (a node answers `ndxp.conf_expired` for both).
    pub fn current_valid(&self, now: DateTime<Utc>) -> Result<Arc<ConfDocument>, ConfError> {
        let doc = self.current().ok_or(ConfError::NotLoaded)?;
        if doc.is_valid_at(now) {
            Ok(doc)
        } else {
            Err(ConfError::Expired {
                expires_at: doc.expires_at,
            })
        }
    }

    /// The state for operators and readiness checks.
    pub fn status(&self, now: DateTime<Utc>) -> ConfStatus {
        let state = self.read_state();
        let doc = state.doc.as_deref();
        let expired = doc.is_some_and(|d| !d.is_valid_at(now));
        ConfStatus {
            instance: self.anchor.instance.clone(),
            conf_url: self.anchor.conf_url.clone(),
            version: doc.map(|d| d.version),
            generated_at: doc.map(|d| d.generated_at),
            expires_at: doc.map(|d| d.expires_at),
            fetched_at: state.fetched_at,
            age_secs: state.fetched_at.map(|t| (now - t).num_seconds()),
            expires_in_secs: doc.map(|d| (d.expires_at - now).num_seconds()),
            expired,
            valid: doc.is_some() && !expired,
            last_error: state.last_error.clone(),
        }
    }

    /// Fetches the document from the anchor's URL, verifies it at `now`,
    /// refuses a version older than the one held, writes a newer one to the
    /// last-good file atomically and then holds it. On error the held
    /// document is kept and the error is recorded for
    /// [`ConfClient::status`]. Concurrent calls run one after the other.
    ///
    /// # Errors
    /// [`ConfError::Fetch`], [`ConfError::Status`], [`ConfError::TooLarge`],
    /// any verification error, [`ConfError::Older`], [`ConfError::Io`] when
    /// the last-good file cannot be written (the new document is then not
    /// held either).
    pub async fn refresh(&self, now: DateTime<Utc>) -> Result<RefreshOutcome, ConfError> {
        let _one_at_a_time = self.refresh_lock.lock().await;
        let result = self.refresh_locked(now).await;
        let mut state = self.write_state();
        match &result {
            Ok(_) => {
                state.last_error = None;
                state.fetched_at = Some(now);
            }
            Err(e) => state.last_error = Some(ErrorChain(e).to_string()),
        }
        result
    }

    async fn refresh_locked(&self, now: DateTime<Utc>) -> Result<RefreshOutcome, ConfError> {
        let jws = self.fetch().await?;
        let doc = verify(&jws, &self.anchor, now)?;
        let held = self.current();
        let outcome = match &held {
            Some(h) if doc.version < h.version => {
                return Err(ConfError::Older {
                    held: h.version,
                    offered: doc.version,
                })
            }
            Some(h) if doc.version == h.version => {
                if doc.generated_at <= h.generated_at {
                    return Ok(RefreshOutcome::Unchanged { version: h.version });
                }
                RefreshOutcome::Renewed {
                    version: doc.version,
                }
            }
            _ => RefreshOutcome::Updated {
                from: held.as_ref().map(|h| h.version),
                to: doc.version,
            },
        };
        let dir = self.dir.clone();
        let path = self.last_good_path();
        let write =
            tokio::task::spawn_blocking(move || write_last_good(&dir, &path, jws.as_bytes()))
                .await
                .map_err(|e| ConfError::Io {
                    op: "the task writing the last-good global configuration failed for",
                    path: self.last_good_path(),
                    source: io::Error::other(e),
                })?;
        write?;
        self.write_state().doc = Some(Arc::new(doc));
        Ok(outcome)
    }

    /// Fetches the document from the anchor's `conf_url` and verifies it at
    /// `now`, without holding or storing it (`ndxp-node diagnose`).
    ///
    /// # Errors
    /// [`ConfError::Fetch`], [`ConfError::Status`], [`ConfError::TooLarge`],
    /// any verification error.
    pub async fn fetch_verified(&self, now: DateTime<Utc>) -> Result<ConfDocument, ConfError> {
        let jws = self.fetch().await?;
        verify(&jws, &self.anchor, now)
    }

    async fn fetch(&self) -> Result<String, ConfError> {
        let mut resp = self
            .http
            .get(&self.anchor.conf_url)
            .header(reqwest::header::ACCEPT, MEDIA_TYPE)
            .timeout(self.fetch_timeout)
            .send()
            .await
            .map_err(ConfError::Fetch)?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(ConfError::Status(resp.status().as_u16()));
        }
        let too_large = ConfError::TooLarge {
            limit: MAX_DOCUMENT_LEN,
        };
        if resp
            .content_length()
            .is_some_and(|l| l > MAX_DOCUMENT_LEN as u64)
        {
            return Err(too_large);
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(ConfError::Fetch)? {
            if body.len() + chunk.len() > MAX_DOCUMENT_LEN {
                return Err(too_large);
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8(body)
            .map_err(|_| ConfError::Envelope(JwsError::Malformed("the response is not UTF-8")))?;
        Ok(text.trim().to_owned())
    }

    /// Refreshes every `interval` (the first time at once) until `shutdown`
    /// completes. Failures are logged and recorded in
    /// [`ConfClient::status`]; the held document is kept, and refused once
    /// expired by [`ConfClient::current_valid`].
    pub async fn run(&self, interval: Duration, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(10)));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut shutdown => return,
                _ = ticker.tick() => {}
            }
            let now = Utc::now();
            let result = tokio::select! {
                () = &mut shutdown => return,
                r = self.refresh(now) => r,
            };
            match result {
                Ok(RefreshOutcome::Updated { from, to }) => {
                    tracing::info!(?from, to, "global configuration updated");
                }
                Ok(RefreshOutcome::Renewed { version }) => {
                    tracing::info!(version, "global configuration renewed");
                }
                Ok(RefreshOutcome::Unchanged { version }) => {
                    tracing::debug!(version, "global configuration unchanged");
                }
                Err(e) => {
                    let held = self.current().map(|d| d.version);
                    tracing::warn!(
                        error = %ErrorChain(&e),
                        held_version = ?held,
                        url = %self.anchor.conf_url,
                        "global configuration refresh failed; keeping the held version"
                    );
                }
            }
            if let Err(ConfError::Expired { expires_at }) = self.current_valid(now) {
                tracing::error!(%expires_at, "the held global configuration has expired; refusing to serve until a new one is fetched");
            }
        }
    }
}

/// Writes `bytes` to `path` so that a reader sees the old file or the new
/// one, never a partial one: a temporary file in the same directory,
/// flushed to disk, renamed over `path`, then the directory flushed.
fn write_last_good(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), ConfError> {
    let io = |op, p: &Path| {
        let p = p.to_path_buf();
        move |source| ConfError::Io {
            op,
            path: p,
            source,
        }
    };
    ndxp_sign::files::create_private_dir_all(dir)
        .map_err(io("could not create the directory", dir))?;
    let tmp = dir.join(format!(
        ".{LAST_GOOD_FILE}.tmp-{}",
        uuid::Uuid::now_v7().simple()
    ));
    let written = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(ndxp_sign::files::PRIVATE_FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })()
    .map_err(io("could not write", &tmp))
    .and_then(|()| fs::rename(&tmp, path).map_err(io("could not replace", path)));
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("could not flush the directory", dir))
}
