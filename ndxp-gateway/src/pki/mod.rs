//! The platform's trust services over HTTP: OCSP (RFC 6960) at `/ocsp` and
//! RFC 3161 timestamps at `/tsa`, answered from a PKI directory made by
//! `ndxp-gateway pki init` (see `docs/pki.md`).
//!
//! Every answer is signed, so the service speaks plain HTTP like any public
//! OCSP responder or TSA. Revocation status is read from the PKI directory on
//! each request, so a `pki revoke` run by another process is answered at
//! once.
//!
//! **Cheap to ask, bounded to sign** (`docs/pki.md`, limits in
//! `docs/operator-guide.md`). OCSP answers about issued certificates are
//! produced ahead of time ([`PkiService::keep_answers_fresh`]) and served
//! from a cache until half their validity has passed; a request with a
//! nonce (RFC 8954), about an unknown serial or about several certificates
//! is signed live. Live signing (OCSP and every timestamp) runs within
//! [`PkiLimits`]: past the global bound or a client address's share the
//! answer is `503` with `Retry-After` at once.
//!
//! **Metrics** ([`metrics`]) are served at `/metrics` on a separate,
//! loopback-only admin listener ([`serve_admin`], `pki serve
//! --admin-listen`), never on the public port, with `/healthz` and
//! `/readyz`: `/readyz` answers `503` with the reason while the service
//! drains after SIGTERM ([`PkiService::drain`]) and while a certificate it
//! signs with cannot be used ([`PkiService::not_ready`], [`names`]).

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Json;
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use ndxp_core::check::Check;
use ndxp_sign::ca::Pki;
use ndxp_sign::ocsp::{CertIdKey, OcspResponder};
use ndxp_sign::openssl::x509::X509Ref;
use ndxp_sign::tsa::TimestampAuthority;

pub mod commands;
mod limit;
pub mod metrics;
mod ocsp_cache;

use limit::{SigningLimit, SigningPermit};
use metrics::{Kind, PkiMetrics};
use ocsp_cache::{AnswerCache, Cached};

/// Largest OCSP or timestamp request accepted, in bytes. Real requests are a
/// few hundred bytes.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// How long a signing operation may take before the request is answered with
/// 503.
const WORK_TIMEOUT: Duration = Duration::from_secs(10);

/// `Retry-After` of a `503` when no signing place is free, seconds.
const BUSY_RETRY_SECS: u64 = 1;

/// The bounds of [`PkiService`] (`pki serve --signing-concurrency`,
/// `--signing-per-address`, `--ocsp-validity-secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PkiLimits {
    /// Signing operations (OCSP answers not served from the cache, and
    /// timestamps) running at once.
    pub signing_concurrency: usize,
    /// Of those, how many one client address (an IPv6 /64) may hold.
    pub signing_per_address: usize,
    /// Validity of OCSP answers (`nextUpdate - thisUpdate`); cached answers
    /// are renewed after half of it.
    pub ocsp_validity: Duration,
}

impl Default for PkiLimits {
    fn default() -> Self {
        Self {
            signing_concurrency: 8,
            signing_per_address: 2,
            ocsp_validity: Duration::from_secs(3600),
        }
    }
}

/// The OCSP responder and the timestamp authority of one PKI directory.
pub struct PkiService {
    pki: Pki,
    ocsp: OcspResponder,
    tsa: TimestampAuthority,
    answers: AnswerCache,
    limit: SigningLimit,
    limits: PkiLimits,
    metrics: PkiMetrics,
    draining: AtomicBool,
}

/// The check names `/readyz` reports (its `checks[].name`).
pub mod names {
    /// The process is stopping.
    pub const DRAINING: &str = "draining";
    /// The issuing CA certificate, which signs OCSP answers, cannot be used.
    pub const OCSP_SIGNER: &str = "OCSP signer";
    /// The TSA certificate cannot be used.
    pub const TSA_CERTIFICATE: &str = "TSA certificate";
    /// A CA certificate above them (root, intermediates) cannot be used.
    pub const CA_CERTIFICATES: &str = "CA certificates";
}

/// Why `cert` cannot be used at `now` (not yet valid, or expired), if so.
fn unusable(cert: &X509Ref, now: DateTime<Utc>) -> Option<String> {
    let subject = ndxp_sign::cert::subject_text(cert.subject_name());
    let bound = |t| ndxp_sign::cert::asn1_to_utc(t).ok();
    match (bound(cert.not_before()), bound(cert.not_after())) {
        (Some(from), Some(until)) if from <= now && now < until => None,
        (Some(from), Some(_)) if now < from => Some(format!(
            "{subject} is not valid before {}",
            from.to_rfc3339()
        )),
        (Some(_), Some(until)) => Some(format!("{subject} expired at {}", until.to_rfc3339())),
        _ => Some(format!("{subject}: its validity cannot be read")),
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiServiceError {
    /// The timestamp authority could not be set up from the PKI directory.
    #[error("cannot set up the timestamp authority")]
    Tsa(#[source] ndxp_sign::tsa::TsaError),
    /// The OCSP responder could not be set up from the PKI directory.
    #[error("cannot set up the OCSP responder")]
    Ocsp(#[source] ndxp_sign::ocsp::OcspError),
}

impl PkiService {
    /// Builds the service over an opened PKI directory, with the default
    /// timestamp policy.
    pub fn new(pki: Pki) -> Result<Self, PkiServiceError> {
        Self::with_tsa_policy(pki, None)
    }

    /// Builds the service, stamping tokens with `policy` (a dotted OID)
    /// instead of the default documentation-only one.
    pub fn with_tsa_policy(pki: Pki, policy: Option<&str>) -> Result<Self, PkiServiceError> {
        Self::with_options(pki, policy, PkiLimits::default())
    }

    /// Builds the service with a timestamp policy (see
    /// [`with_tsa_policy`](Self::with_tsa_policy)) and `limits`.
    pub fn with_options(
        pki: Pki,
        policy: Option<&str>,
        limits: PkiLimits,
    ) -> Result<Self, PkiServiceError> {
        let mut tsa = TimestampAuthority::new(pki.tsa_cert(), pki.tsa_key())
            .map_err(PkiServiceError::Tsa)?
            .with_chain(pki.chain().to_vec());
        if let Some(oid) = policy {
            tsa = tsa.with_policy(oid).map_err(PkiServiceError::Tsa)?;
        }
        // The issuing CA signs OCSP answers for the certificates it issued.
        let validity = chrono::Duration::from_std(limits.ocsp_validity)
            .unwrap_or(ndxp_sign::ocsp::DEFAULT_VALIDITY);
        let ocsp = OcspResponder::new(pki.issuing_cert(), pki.issuing_cert(), pki.issuing_key())
            .map_err(PkiServiceError::Ocsp)?
            .with_validity(validity);
        Ok(Self {
            pki,
            ocsp,
            tsa,
            answers: AnswerCache::default(),
            limit: SigningLimit::new(limits.signing_concurrency, limits.signing_per_address),
            limits,
            metrics: PkiMetrics::new(),
            draining: AtomicBool::new(false),
        })
    }

    /// Answers a DER OCSP request with a DER OCSP response (a
    /// `malformedRequest` answer for bytes that are not a request), signed
    /// now; an answer about one issued certificate without a nonce is kept
    /// for later requests.
    pub fn ocsp(&self, request: &[u8]) -> Vec<u8> {
        let now = Utc::now();
        let started = Instant::now();
        let (reply, status) =
            self.ocsp
                .respond_with_status(request, &|serial| self.pki.status(serial), now);
        if let Some(e) = &reply.error {
            tracing::info!(status = ?reply.status, error = %e, "OCSP request not answered");
            self.metrics.count(Kind::Ocsp, "refused");
        } else {
            self.metrics.signed(Kind::Ocsp, started.elapsed());
            self.metrics.count(Kind::Ocsp, "signed");
        }
        if let (Some(key), Some(status), None) =
            (self.ocsp.cache_key(request), status, &reply.error)
        {
            self.answers
                .put(key, reply.der.clone(), status, now, self.ocsp.validity());
        }
        reply.der
    }

    /// The kept answer for `request`, checked against the PKI directory's
    /// status now.
    fn cached_ocsp(&self, request: &[u8]) -> Cached {
        let Some(key) = self.ocsp.cache_key(request) else {
            return Cached::Miss;
        };
        match key.serial_bn() {
            Ok(serial) => self
                .answers
                .get(&key, &self.pki.status(&serial), Utc::now()),
            Err(_) => Cached::Miss,
        }
    }

    /// Produces an answer ahead of time for every certificate in the PKI
    /// directory's `issued/` that has no fresh one with its current status
    /// (new, revoked, or past half its validity). Returns how many were
    /// produced; a certificate that cannot be read is logged and skipped.
    pub fn prepare_answers(&self) -> usize {
        let dir = self.pki.dir().join(ndxp_sign::ca::ISSUED_DIR);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot list the issued certificates, so no OCSP answers are produced ahead of time; check that the PKI directory is readable");
                return 0;
            }
        };
        let mut produced = 0;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().and_then(|e| e.to_str()) != Some("pem") {
                continue;
            }
            match self.prepare_one(&path) {
                Ok(true) => produced += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "no OCSP answer produced ahead of time for this certificate; it is signed on request instead. Check the file");
                }
            }
        }
        produced
    }

    fn prepare_one(&self, path: &std::path::Path) -> Result<bool, String> {
        let pem = std::fs::read(path).map_err(|e| e.to_string())?;
        let cert = ndxp_sign::openssl::x509::X509::from_pem(&pem).map_err(|e| e.to_string())?;
        let serial = cert.serial_number().to_bn().map_err(|e| e.to_string())?;
        let status = self.pki.status(&serial);
        let now = Utc::now();
        let key = CertIdKey {
            hash_alg: ndxp_sign::openssl::nid::Nid::SHA1.as_raw(),
            serial: serial.to_vec(),
        };
        if status == ndxp_sign::revocation::CertStatus::Unknown
            || self.answers.is_fresh(&key, &status, now)
        {
            return Ok(false);
        }
        let (key, der) = self
            .ocsp
            .produce(&cert, &status, now)
            .map_err(|e| e.to_string())?;
        self.answers
            .put(key, der, status, now, self.ocsp.validity());
        Ok(true)
    }

    /// Produces answers ahead of time now and then every quarter of their
    /// validity (at least every minute), until `stop` completes.
    pub async fn keep_answers_fresh(self: Arc<Self>, stop: impl Future<Output = ()>) {
        let period =
            (self.limits.ocsp_validity / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::pin!(stop);
        loop {
            let service = self.clone();
            match tokio::task::spawn_blocking(move || service.prepare_answers()).await {
                Ok(n) if n > 0 => {
                    tracing::debug!(produced = n, "OCSP answers produced ahead of time")
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "producing OCSP answers failed; they are signed on request instead")
                }
            }
            tokio::select! {
                () = tokio::time::sleep(period) => {}
                () = &mut stop => break,
            }
        }
    }

    /// Number of OCSP answers kept.
    pub fn cached_answers(&self) -> usize {
        self.answers.len()
    }

    /// Answers a DER timestamp query with a DER timestamp response (a
    /// rejection for a query that cannot be granted).
    pub fn timestamp(&self, query: &[u8]) -> Vec<u8> {
        let started = Instant::now();
        let reply = self.tsa.respond(query);
        if let Some(e) = &reply.error {
            tracing::info!(status = ?reply.status, error = %e, "timestamp query refused");
            self.metrics.count(Kind::Tsa, "rejected");
        } else {
            self.metrics.signed(Kind::Tsa, started.elapsed());
            self.metrics.count(Kind::Tsa, "granted");
        }
        reply.der
    }

    /// The service's metrics.
    pub fn metrics(&self) -> &PkiMetrics {
        &self.metrics
    }

    /// Marks the service as stopping: `/readyz` answers `503` from now on
    /// (`pki serve` calls it on SIGTERM, before the drain).
    pub fn drain(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// The failed readiness checks at `now`; empty when the service can
    /// answer. It is not ready while it drains, and while the certificate
    /// of a key it signs with is expired or not yet valid: the issuing CA's
    /// (OCSP answers), the TSA's (timestamp tokens), or a CA certificate
    /// above them (every answer would fail validation).
    pub fn not_ready(&self, now: DateTime<Utc>) -> Vec<Check> {
        let mut failed = Vec::new();
        if self.draining.load(Ordering::Relaxed) {
            failed.push(
                Check::failed(
                    names::DRAINING,
                    "the PKI service is stopping: requests in flight finish, new ones go elsewhere",
                )
                .with_hint("expected after SIGTERM; the process exits when the drain is over"),
            );
        }
        let renew =
            "issue a new certificate for the key (or a new PKI directory) and restart `pki serve`";
        if let Some(why) = unusable(self.pki.issuing_cert(), now) {
            failed.push(
                Check::failed(
                    names::OCSP_SIGNER,
                    format!("OCSP answers cannot be signed: {why}"),
                )
                .with_hint(renew),
            );
        }
        if let Some(why) = unusable(self.pki.tsa_cert(), now) {
            failed.push(
                Check::failed(
                    names::TSA_CERTIFICATE,
                    format!("timestamps cannot be granted: {why}"),
                )
                .with_hint(renew),
            );
        }
        let issuing = self.pki.issuing_cert();
        for ca in std::iter::once(self.pki.root_cert()).chain(self.pki.chain().iter()) {
            // The issuing CA was checked above as the OCSP signer.
            if ca.to_der().ok() == issuing.to_der().ok() {
                continue;
            }
            if let Some(why) = unusable(ca, now) {
                failed.push(
                    Check::failed(names::CA_CERTIFICATES, why).with_hint(
                        "no answer of this PKI validates any longer; a new CA is needed",
                    ),
                );
            }
        }
        failed
    }
}

/// The HTTP routes: `POST /ocsp`, `GET /ocsp/{base64 request}`, `POST /tsa`,
/// `GET /healthz`. Serve it with [`serve`], or give each request its
/// client address as `ConnectInfo<SocketAddr>` (e.g.
/// `into_make_service_with_connect_info::<SocketAddr>()`) so that each
/// client address gets its own signing share.
pub fn router(service: Arc<PkiService>) -> Router {
    Router::new()
        .route("/ocsp", post(ocsp_post))
        .route("/ocsp/{*request}", get(ocsp_get))
        .route("/tsa", post(tsa_post))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
        .with_state(service)
}

/// Serves [`router`] on `listener` until `shutdown` completes, with the
/// default `[edge]` limits (the shared serve loop, [`ndxp_edge::serve`]).
///
/// # Errors
/// None today; the result is kept for callers that propagate it.
pub async fn serve(
    listener: tokio::net::TcpListener,
    service: Arc<PkiService>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(
        listener,
        service,
        &ndxp_edge::EdgeSettings::default(),
        shutdown,
    )
    .await;
    Ok(())
}

/// [`serve`] with the given `[edge]` limits.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    service: Arc<PkiService>,
    edge: &ndxp_edge::EdgeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let edge = ndxp_edge::serve::Edge::new("PKI service", edge);
    service.metrics.watch_edge("pki", edge.stats());
    let app = router(service);
    edge.serve(
        listener,
        ndxp_edge::serve::Plain,
        move |c| {
            let mut ext = axum::http::Extensions::new();
            ext.insert(ConnectInfo(c.remote));
            ndxp_edge::serve::tower(app.clone(), ext)
        },
        shutdown,
    )
    .await;
}

/// The admin routes: `GET /healthz`, `GET /readyz` (`200 ready`, or `503`
/// with [`ndxp_core::check::not_ready_body`] naming the failed
/// [`PkiService::not_ready`] checks) and `GET /metrics` (OpenMetrics text).
pub fn admin_router(service: Arc<PkiService>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(service)
}

async fn readyz(State(service): State<Arc<PkiService>>) -> Response {
    let failed = service.not_ready(Utc::now());
    if failed.is_empty() {
        return (StatusCode::OK, "ready\n").into_response();
    }
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(ndxp_core::check::not_ready_body(&failed)),
    )
        .into_response()
}

/// Serves [`admin_router`] on `listener` (bind it to loopback: it has no
/// authentication) with the `[edge]` limits until `shutdown` completes.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    service: Arc<PkiService>,
    edge: &ndxp_edge::EdgeSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let edge = ndxp_edge::serve::Edge::new("PKI admin port", edge);
    service.metrics.watch_edge("admin", edge.stats());
    let app = admin_router(service);
    edge.serve(
        listener,
        ndxp_edge::serve::Plain,
        move |_| ndxp_edge::serve::tower(app.clone(), axum::http::Extensions::new()),
        shutdown,
    )
    .await;
}

async fn metrics_text(State(service): State<Arc<PkiService>>) -> Response {
    (
        [(header::CONTENT_TYPE, ndxp_edge::metrics::CONTENT_TYPE)],
        service.metrics.encode(service.cached_answers()),
    )
        .into_response()
}

fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

const OCSP_REQUEST: &str = "application/ocsp-request";
const OCSP_RESPONSE: &str = "application/ocsp-response";
const TS_QUERY: &str = "application/timestamp-query";
const TS_REPLY: &str = "application/timestamp-reply";

/// The client's address, when the server recorded it (else every client
/// shares one signing share).
fn client_ip(info: Option<Extension<ConnectInfo<SocketAddr>>>) -> IpAddr {
    info.map_or(
        IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        |Extension(ConnectInfo(a))| a.ip(),
    )
}

/// `503` with `Retry-After`: no signing place is free.
fn busy(what: &str) -> Response {
    tracing::debug!("{what} refused: every signing place is taken");
    let mut resp = (
        StatusCode::SERVICE_UNAVAILABLE,
        format!("too many {what} requests at once; retry after Retry-After seconds\n"),
    )
        .into_response();
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(BUSY_RETRY_SECS));
    resp
}

/// Runs signing work off the async threads, bounded in time, and answers
/// with its DER result; `permit` is held until the work ends.
async fn signed_answer<F>(
    service: &PkiService,
    kind: Kind,
    permit: SigningPermit,
    work: F,
) -> Response
where
    F: FnOnce() -> Vec<u8> + Send + 'static,
{
    let answer_type = match kind {
        Kind::Ocsp => OCSP_RESPONSE,
        Kind::Tsa => TS_REPLY,
    };
    let work = move || {
        let der = work();
        drop(permit);
        der
    };
    match tokio::time::timeout(WORK_TIMEOUT, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(der)) => ([(header::CONTENT_TYPE, answer_type)], der).into_response(),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "signing task failed");
            service.metrics.count(kind, "failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
        Err(_) => {
            tracing::warn!("signing took longer than {WORK_TIMEOUT:?}");
            service.metrics.count(kind, "failed");
            StatusCode::SERVICE_UNAVAILABLE.into_response()
        }
    }
}

fn wrong_type(headers: &HeaderMap, request_type: &'static str) -> Option<Response> {
    (!content_type_is(headers, request_type)).then(|| {
        (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("expected Content-Type: {request_type}\n"),
        )
            .into_response()
    })
}

/// An OCSP answer: from the cache when it holds one, else signed now
/// within the signing limit (a kept answer that is due for renewal is
/// still served when no place is free).
async fn ocsp_answer(service: Arc<PkiService>, ip: IpAddr, der: Vec<u8>) -> Response {
    let ok = |der: Bytes| ([(header::CONTENT_TYPE, OCSP_RESPONSE)], der).into_response();
    let fallback = match service.cached_ocsp(&der) {
        Cached::Fresh(answer) => {
            service.metrics.count(Kind::Ocsp, "cached");
            return ok(answer);
        }
        Cached::Usable(answer) => Some(answer),
        Cached::Miss => None,
    };
    let Some(permit) = service.limit.try_acquire(ip) else {
        return match fallback {
            Some(answer) => {
                service.metrics.count(Kind::Ocsp, "cached");
                ok(answer)
            }
            None => {
                service.metrics.count(Kind::Ocsp, "busy");
                busy("OCSP")
            }
        };
    };
    let work = service.clone();
    signed_answer(&service, Kind::Ocsp, permit, move || work.ocsp(&der)).await
}

async fn ocsp_post(
    State(service): State<Arc<PkiService>>,
    info: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = wrong_type(&headers, OCSP_REQUEST) {
        return refusal;
    }
    ocsp_answer(service, client_ip(info), body.to_vec()).await
}

async fn ocsp_get(
    State(service): State<Arc<PkiService>>,
    info: Option<Extension<ConnectInfo<SocketAddr>>>,
    Path(request): Path<String>,
) -> Response {
    let der = match ndxp_sign::ocsp::decode_get_request(&request) {
        Ok(der) if der.len() <= MAX_REQUEST_BYTES => der,
        Ok(_) => return StatusCode::PAYLOAD_TOO_LARGE.into_response(),
        // A request we cannot decode still gets an OCSP answer
        // (malformedRequest), as RFC 6960 clients expect.
        Err(e) => {
            tracing::debug!(error = %e, "undecodable OCSP GET request");
            Vec::new()
        }
    };
    ocsp_answer(service, client_ip(info), der).await
}

async fn tsa_post(
    State(service): State<Arc<PkiService>>,
    info: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refusal) = wrong_type(&headers, TS_QUERY) {
        return refusal;
    }
    let Some(permit) = service.limit.try_acquire(client_ip(info)) else {
        service.metrics.count(Kind::Tsa, "busy");
        return busy("timestamp");
    };
    let work = service.clone();
    signed_answer(&service, Kind::Tsa, permit, move || work.timestamp(&body)).await
}
