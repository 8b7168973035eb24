//! One serve loop for every listener of `ndxp-node` and `ndxp-gateway`
//! (`docs/design.md`, "The edge").
//!
//! [`Edge::serve`] accepts TCP connections on a listener, runs an accept
//! step ([`Accept`]: [`Plain`], [`Https`], or the node's peer-port mutual
//! TLS), and serves HTTP/1.1 and HTTP/2 on each connection with hyper-util's
//! auto builder, applying the [`EdgeSettings`] of the process:
//!
//! | limit | how |
//! |---|---|
//! | header time-out | hyper's HTTP/1 `header_read_timeout`; before the first request of a connection (also while the HTTP/2 preface or the first HEADERS arrive) this loop's own timer |
//! | idle time-out | this loop: a connection with no request in flight for that long is shut down gracefully (HTTP/1 closes, HTTP/2 sends GOAWAY) |
//! | body time-out | [`RequestBody`]: a deadline for the whole body, counted from the headers |
//! | TLS handshake time-out | the accept step must finish in time |
//! | connections, in all and per remote IP address | counted here; a connection beyond either limit is closed at once, logged and counted ([`EdgeStats`]) |
//! | header size and count | HTTP/1: hyper's `max_buf_size` and `max_headers`; HTTP/2: `max_header_list_size`, and the count checked here (hyper has no HTTP/2 count limit) |
//! | HTTP/2 streams | `max_concurrent_streams` |
//! | shutdown | stop accepting, shut every connection down gracefully, wait up to the drain time-out, then cut what is left |
//!
//! **hyper 1's `header_read_timeout` on an idle keep-alive connection.**
//! hyper (1.12, `proto/h1/conn.rs`) starts the header timer whenever it
//! begins to read a request head, and after each response it wakes the
//! connection to start reading the next one at once. So on an HTTP/1
//! connection kept alive with nothing sent, the header time-out runs from
//! the end of the previous response: an idle HTTP/1 connection is closed
//! after `min(header_timeout_secs, idle_timeout_secs)`. It does not start
//! before hyper knows the connection is HTTP/1 (the auto builder first reads
//! up to 24 bytes to tell HTTP/2's preface from HTTP/1, without a timer), and
//! it does nothing for HTTP/2; both gaps are covered by this loop's timer,
//! which shuts a connection down when its first request has not arrived
//! within the header time-out or when no request has been in flight for the
//! idle time-out.
//!
//! Services see a [`Request<RequestBody>`](RequestBody). A hyper service (e.g.
//! `hyper::service::service_fn`) plugs in directly; an axum `Router` or any
//! other tower service through [`tower`], which also puts per-connection
//! values (the remote address, the client certificate) into every request's
//! extensions.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, Response, StatusCode};
use http_body_util::{Either, Full};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use ndxp_sign::openssl::ssl::SslAcceptor;
use ndxp_sign::openssl::x509::X509;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_openssl::SslStream;

use crate::limit::{AddressLimit, AddressPermit, Refusal};
use crate::settings::EdgeSettings;

/// The error type services and bodies are boxed into.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an accept step refused a connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AcceptError {
    /// The TLS handshake failed.
    #[error("the TLS handshake failed")]
    Tls(#[source] ndxp_sign::tls::TlsError),
    /// A check after the handshake refused the peer.
    #[error("the connection was refused: {reason}")]
    Refused {
        /// Why, as a sentence for the log.
        reason: String,
        /// The cause, when there is one.
        #[source]
        source: Option<BoxError>,
    },
}

/// The step between `accept(2)` and HTTP: nothing ([`Plain`]), a TLS
/// handshake ([`Https`]), or a handshake with checks (the node's peer
/// port). It yields the stream HTTP runs on and what the per-connection
/// service should know about the connection ([`Connected::info`]).
pub trait Accept: Send + Sync + 'static {
    /// The stream HTTP is served on.
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// What the service learns about the connection (e.g. the client
    /// certificate).
    type Info: Send + 'static;

    /// Runs the step on a fresh connection from `remote`. [`Edge::serve`]
    /// closes the connection when this has not finished within `timeout`
    /// (`[edge] tls_handshake_timeout_secs`); pass `timeout` on to handshake
    /// functions that take one.
    fn accept(
        &self,
        tcp: TcpStream,
        remote: SocketAddr,
        timeout: Duration,
    ) -> impl Future<Output = Result<(Self::Io, Self::Info), AcceptError>> + Send;
}

/// Plain HTTP over TCP.
#[derive(Debug, Clone, Copy, Default)]
pub struct Plain;

impl Accept for Plain {
    type Io = TcpStream;
    type Info = ();

    fn accept(
        &self,
        tcp: TcpStream,
        _remote: SocketAddr,
        _timeout: Duration,
    ) -> impl Future<Output = Result<(TcpStream, ()), AcceptError>> + Send {
        std::future::ready(Ok((tcp, ())))
    }
}

/// HTTPS with an acceptor of [`ndxp_sign::tls::https_acceptor`] (client
/// certificates as it was built to ask). The connection's information is
/// the chain the client presented, its own certificate first, not verified
/// (empty when it sent none; see [`ndxp_sign::tls::presented_chain`]).
#[derive(Clone)]
pub struct Https {
    acceptor: Arc<SslAcceptor>,
}

impl std::fmt::Debug for Https {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Https").finish_non_exhaustive()
    }
}

impl Https {
    /// Serves HTTPS with `acceptor`.
    pub fn new(acceptor: SslAcceptor) -> Self {
        Self {
            acceptor: Arc::new(acceptor),
        }
    }
}

impl Accept for Https {
    type Io = SslStream<TcpStream>;
    type Info = Vec<X509>;

    fn accept(
        &self,
        tcp: TcpStream,
        _remote: SocketAddr,
        timeout: Duration,
    ) -> impl Future<Output = Result<(Self::Io, Vec<X509>), AcceptError>> + Send {
        let acceptor = self.acceptor.clone();
        async move {
            let stream = ndxp_sign::tls::accept_https(&acceptor, tcp, timeout)
                .await
                .map_err(AcceptError::Tls)?;
            let chain = ndxp_sign::tls::presented_chain(stream.ssl());
            Ok((stream, chain))
        }
    }
}

/// A connection as the per-connection service factory sees it.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Connected<I> {
    /// The remote address.
    pub remote: SocketAddr,
    /// What the accept step learnt ([`Accept::Info`]).
    pub info: I,
}

/// The body of a request as services see it: hyper's body with a deadline
/// for the whole of it (`[edge] body_timeout_secs`, counted from the
/// headers). Past the deadline, reading fails with [`BodyTimeout`].
///
/// Hand-written: tower-http's `TimeoutBody` restarts its timer at every
/// frame, so a body trickling one byte at a time would never time out.
#[derive(Debug)]
pub struct RequestBody {
    inner: Incoming,
    deadline: Instant,
    timeout: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
}

/// The request body did not arrive in full within `[edge]
/// body_timeout_secs`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body did not arrive in full within {} s", .0.as_secs())]
pub struct BodyTimeout(pub Duration);

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.as_mut().poll(cx).is_ready() {
                    Poll::Ready(Some(Err(Box::new(BodyTimeout(this.timeout)))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A tower service (an axum `Router`, say) as a per-connection hyper
/// service: every request gets a copy of `extensions` (e.g. axum's
/// `ConnectInfo` with [`Connected::remote`], a client certificate) and is
/// passed on.
pub fn tower<T>(inner: T, extensions: http::Extensions) -> TowerService<T> {
    TowerService { inner, extensions }
}

/// See [`tower`].
#[derive(Debug, Clone)]
pub struct TowerService<T> {
    inner: T,
    extensions: http::Extensions,
}

impl<T, B> hyper::service::Service<Request<RequestBody>> for TowerService<T>
where
    T: tower_service::Service<Request<RequestBody>, Response = Response<B>>
        + Clone
        + Send
        + 'static,
    T::Future: Send + 'static,
    T::Error: Send + 'static,
{
    type Response = Response<B>;
    type Error = T::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response<B>, T::Error>> + Send>>;

    fn call(&self, mut req: Request<RequestBody>) -> Self::Future {
        req.extensions_mut().extend(self.extensions.clone());
        let mut svc = self.inner.clone();
        Box::pin(async move {
            std::future::poll_fn(|cx| svc.poll_ready(cx)).await?;
            svc.call(req).await
        })
    }
}

/// A per-connection service as [`Edge::serve`] takes it: a hyper service
/// of [`RequestBody`] requests. Implemented for every service that fits
/// (e.g. `hyper::service::service_fn` closures, [`TowerService`]).
pub trait ConnectionService<B>:
    hyper::service::Service<
        Request<RequestBody>,
        Response = Response<B>,
        Error: Into<BoxError>,
        Future: Send + 'static,
    > + Send
    + 'static
{
}

impl<T, B> ConnectionService<B> for T where
    T: hyper::service::Service<
            Request<RequestBody>,
            Response = Response<B>,
            Error: Into<BoxError>,
            Future: Send + 'static,
        > + Send
        + 'static
{
}

/// A response body [`Edge::serve`] can send. Implemented for every body
/// of [`Bytes`] that fits (axum's, `http_body_util::Full`, ...).
pub trait ResponseBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

impl<T> ResponseBody for T where T: Body<Data = Bytes, Error: Into<BoxError>> + Send + 'static {}

/// Connection counts of one listener, for logs and metrics.
#[derive(Debug, Clone)]
pub struct EdgeStats(Arc<Shared>);

impl EdgeStats {
    /// Connections open now.
    pub fn open_connections(&self) -> usize {
        self.0.limit.held()
    }

    /// Connections closed at once because `[edge] max_connections` or
    /// `max_connections_per_ip` was reached, since the start.
    pub fn refused_connections(&self) -> u64 {
        self.0.refused.load(Ordering::Relaxed)
    }

    /// Connections whose accept step (TLS handshake, peer checks) failed
    /// or timed out, since the start.
    pub fn failed_handshakes(&self) -> u64 {
        self.0.failed_accepts.load(Ordering::Relaxed)
    }
}

/// The listener's counters.
#[derive(Debug)]
struct Shared {
    name: &'static str,
    /// Open connections, in all and per remote address.
    limit: AddressLimit,
    refused: AtomicU64,
    failed_accepts: AtomicU64,
    /// Seconds since `started` of the last refusal logged (refusals are
    /// logged at most every 10 s so that a flood does not flood the log).
    last_refusal_log: AtomicU64,
    started: Instant,
}

impl Shared {
    fn admit(&self, ip: IpAddr) -> Result<Slot, Refusal> {
        self.limit.try_acquire(ip.to_canonical())
    }

    fn refused(&self, remote: SocketAddr, why: Refusal) {
        let total = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let now = self.started.elapsed().as_secs() + 10;
        let last = self.last_refusal_log.load(Ordering::Relaxed);
        if now < last + 10
            || self
                .last_refusal_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        match why {
            Refusal::Total => tracing::warn!(
                listener = self.name,
                %remote,
                refused_so_far = total,
                limit = self.limit.max_total(),
                "A connection was closed at once because the listener already has [edge] max_connections connections open. If these are legitimate clients, raise max_connections (and the process's open-file limit); otherwise look for a client that opens connections without closing them."
            ),
            Refusal::PerAddress => tracing::warn!(
                listener = self.name,
                %remote,
                refused_so_far = total,
                limit = self.limit.max_per_address(),
                "A connection was closed at once because this remote address already has [edge] max_connections_per_ip connections open. If it is a proxy or NAT gateway serving many clients, raise max_connections_per_ip; otherwise check that client."
            ),
        }
    }
}

/// One admitted connection; gives its place back when dropped.
type Slot = AddressPermit;

/// What one connection is doing, for the idle and first-request timers.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    started: AtomicU64,
    last_done: Mutex<Instant>,
}

/// Marks a request in flight until dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        *self
            .0
            .last_done
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Activity {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            opened: now,
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            last_done: Mutex::new(now),
        }
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.started.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    /// When the connection is due to be shut down if nothing happens: the
    /// first request must arrive within the header time-out (or the idle
    /// time-out, if shorter); later, the idle time-out after the last
    /// request finished. `None` while a request is in flight.
    fn due(&self, timing: &Timing) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        if self.started.load(Ordering::Relaxed) == 0 {
            return Some(self.opened + timing.header.min(timing.idle));
        }
        Some(
            *self
                .last_done
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                + timing.idle,
        )
    }
}

#[derive(Debug, Clone, Copy)]
struct Timing {
    header: Duration,
    idle: Duration,
    body: Duration,
    handshake: Duration,
    drain: Duration,
}

/// The hyper service around the caller's: body deadline, header count,
/// requests in flight.
struct EdgeService<S> {
    inner: S,
    activity: Arc<Activity>,
    body_timeout: Duration,
    max_headers: usize,
}

type EdgeResponse<B> = Response<Either<B, Full<Bytes>>>;

impl<S, B> hyper::service::Service<Request<Incoming>> for EdgeService<S>
where
    S: hyper::service::Service<Request<RequestBody>, Response = Response<B>>,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Send + 'static,
{
    type Response = EdgeResponse<B>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<EdgeResponse<B>, BoxError>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        if req.headers().len() > self.max_headers {
            let mut resp = Response::new(Either::Right(Full::new(Bytes::from(format!(
                "the request has more than {} header fields\n",
                self.max_headers
            )))));
            *resp.status_mut() = StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE;
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            return Box::pin(std::future::ready(Ok(resp)));
        }
        let in_flight = self.activity.begin();
        let deadline = Instant::now() + self.body_timeout;
        let timeout = self.body_timeout;
        let req = req.map(|inner| RequestBody {
            inner,
            deadline,
            timeout,
            sleep: None,
        });
        let fut = self.inner.call(req);
        Box::pin(async move {
            let resp = fut.await.map_err(Into::into)?;
            drop(in_flight);
            Ok(resp.map(Either::Left))
        })
    }
}

/// One listener's serve loop with the settings of its process.
///
/// ```no_run
/// use ndxp_edge::serve::{self, Edge, Plain};
/// # async fn run(router: impl tower_service::Service<http::Request<serve::RequestBody>,
/// #     Response = http::Response<http_body_util::Full<bytes::Bytes>>, Error = std::convert::Infallible,
/// #     Future: Send + 'static> + Clone + Send + Sync + 'static) -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8203").await?;
/// let edge = Edge::new("admin port", &ndxp_edge::EdgeSettings::default());
/// edge.serve(listener, Plain, move |_conn| serve::tower(router.clone(), Default::default()),
///     async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Edge {
    settings: EdgeSettings,
    shared: Arc<Shared>,
}

impl Edge {
    /// A serve loop named `name` in logs (e.g. `"client port"`), limited by
    /// `settings` (checked with [`EdgeSettings::check`] when loaded).
    pub fn new(name: &'static str, settings: &EdgeSettings) -> Self {
        Self {
            settings: settings.clone(),
            shared: Arc::new(Shared {
                name,
                limit: AddressLimit::new(settings.max_connections, settings.max_connections_per_ip),
                refused: AtomicU64::new(0),
                failed_accepts: AtomicU64::new(0),
                last_refusal_log: AtomicU64::new(0),
                started: Instant::now(),
            }),
        }
    }

    /// The listener's connection counts (live).
    pub fn stats(&self) -> EdgeStats {
        EdgeStats(self.shared.clone())
    }

    fn http(&self) -> Builder<TokioExecutor> {
        let s = &self.settings;
        let mut b = Builder::new(TokioExecutor::new());
        b.http1()
            .timer(TokioTimer::new())
            .keep_alive(true)
            .header_read_timeout(s.header_timeout())
            .max_buf_size(s.max_header_bytes.max(crate::settings::MIN_HEADER_BYTES))
            .max_headers(s.max_headers);
        b.http2()
            .timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(s.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(s.http2_max_concurrent_streams);
        b
    }

    /// Serves `listener` until `shutdown` completes: each connection is
    /// admitted (or closed at once over a connection limit), goes through
    /// `accept`, and is served by the service `make_service` builds for it.
    /// Then stops accepting, shuts every connection down gracefully and
    /// waits up to `[edge] drain_timeout_secs` for requests in flight.
    pub async fn serve<A, M, S, B>(
        self,
        listener: TcpListener,
        accept: A,
        make_service: M,
        shutdown: impl Future<Output = ()>,
    ) where
        A: Accept,
        M: Fn(Connected<A::Info>) -> S + Send + Sync + 'static,
        S: ConnectionService<B>,
        B: ResponseBody,
    {
        let s = &self.settings;
        let timing = Timing {
            header: s.header_timeout(),
            idle: s.idle_timeout(),
            body: s.body_timeout(),
            handshake: s.tls_handshake_timeout(),
            drain: s.drain_timeout(),
        };
        let max_headers = s.max_headers;
        let http = Arc::new(self.http());
        let accept = Arc::new(accept);
        let make_service = Arc::new(make_service);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                r = listener.accept() => {
                    let (tcp, remote) = match r {
                        Ok(x) => x,
                        Err(e) => {
                            // Out of file descriptors, say: wait a little
                            // rather than spin.
                            tracing::warn!(listener = self.shared.name, error = %e, "Accepting a connection failed; retrying. If this repeats, check the process's open-file limit.");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let slot = match self.shared.admit(remote.ip()) {
                        Ok(slot) => slot,
                        Err(why) => {
                            drop(tcp);
                            self.shared.refused(remote, why);
                            continue;
                        }
                    };
                    let conn = Conn {
                        remote,
                        slot,
                        timing,
                        max_headers,
                        shared: self.shared.clone(),
                        stop: stop_rx.clone(),
                    };
                    tasks.spawn(conn.run(
                        tcp,
                        accept.clone(),
                        make_service.clone(),
                        http.clone(),
                    ));
                }
            }
        }
        drop(listener);
        let _ = stop_tx.send(true);
        let drained = tokio::time::timeout(timing.drain, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                listener = self.shared.name,
                connections = tasks.len(),
                "Requests still in flight after [edge] drain_timeout_secs were cut; raise drain_timeout_secs if they must finish when the process stops."
            );
            tasks.shutdown().await;
        }
    }
}

/// One admitted connection.
struct Conn {
    remote: SocketAddr,
    slot: Slot,
    timing: Timing,
    max_headers: usize,
    shared: Arc<Shared>,
    stop: watch::Receiver<bool>,
}

impl Conn {
    async fn run<A, M, S, B>(
        self,
        tcp: TcpStream,
        accept: Arc<A>,
        make_service: Arc<M>,
        http: Arc<Builder<TokioExecutor>>,
    ) where
        A: Accept,
        M: Fn(Connected<A::Info>) -> S + Send + Sync + 'static,
        S: ConnectionService<B>,
        B: ResponseBody,
    {
        let Conn {
            remote,
            slot: _slot,
            timing,
            max_headers,
            shared,
            mut stop,
        } = self;
        let _ = tcp.set_nodelay(true);
        let accepted = tokio::time::timeout(
            timing.handshake,
            accept.accept(tcp, remote, timing.handshake),
        )
        .await;
        let (io, info) = match accepted {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                shared.failed_accepts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listener = shared.name, %remote, error = %ndxp_core::ErrorChain(&e), "connection refused in its accept step");
                return;
            }
            Err(_) => {
                shared.failed_accepts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listener = shared.name, %remote, "connection closed: its TLS handshake did not finish within [edge] tls_handshake_timeout_secs");
                return;
            }
        };
        let activity = Arc::new(Activity::new());
        let service = EdgeService {
            inner: make_service(Connected { remote, info }),
            activity: activity.clone(),
            body_timeout: timing.body,
            max_headers,
        };
        let conn = http.serve_connection(TokioIo::new(io), service);
        tokio::pin!(conn);
        let mut stopping = false;
        // Set once the connection was asked to close for being idle: a
        // client that ignores it is cut after one more header time-out.
        let mut cut_at: Option<Instant> = None;
        loop {
            let due = activity
                .due(&timing)
                .unwrap_or_else(|| Instant::now() + timing.idle);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(listener = shared.name, %remote, error = %e, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|s| *s), if !stopping => {
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
                () = tokio::time::sleep_until(due), if cut_at.is_none() => {
                    if activity.due(&timing).is_some_and(|d| d <= Instant::now()) {
                        tracing::debug!(listener = shared.name, %remote, "closing a connection with no request in flight ([edge] idle_timeout_secs or header_timeout_secs)");
                        conn.as_mut().graceful_shutdown();
                        cut_at = Some(Instant::now() + timing.header);
                    }
                }
                () = tokio::time::sleep_until(cut_at.unwrap_or_else(Instant::now)), if cut_at.is_some() => {
                    tracing::debug!(listener = shared.name, %remote, "cutting a connection that did not close when asked");
                    return;
                }
            }
        }
    }
}
