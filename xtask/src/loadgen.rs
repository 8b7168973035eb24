//! A lean closed-loop HTTP/1.1 load generator for the load benchmarks
//! (`cargo xtask bench direct | node | gateway`).
//!
//! One task per connection, each on a keep-alive HTTP/1.1 connection made
//! with hyper's low-level client (no pool, no per-request routing): send a
//! request, read the whole answer, record the latency, send the next. A
//! transport error (refused, reset, timeout, malformed answer) counts as an
//! error and the task reconnects. Connections are spread over one
//! single-threaded tokio runtime per worker thread (as many threads as
//! CPUs, at most one per connection), so no work stealing or cross-thread
//! wake-ups sit on the hot path.
//!
//! Latency is measured per request, from just before the request is
//! written to the end of the response body, recorded in microseconds in an
//! HDR histogram (3 significant digits) per worker thread and merged at the
//! end. Only requests that complete inside the measured window (after the
//! warm-up) count.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Method, Request, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// What to send, how hard and for how long.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// `http://HOST:PORT/path?query` (plain HTTP only).
    pub url: String,
    /// The request method.
    pub method: Method,
    /// Header fields sent on every request (`Host` is added).
    pub headers: Vec<(String, String)>,
    /// The request body sent on every request.
    pub body: Option<Bytes>,
    /// Concurrent keep-alive connections, one request in flight on each.
    pub connections: usize,
    /// The measured time.
    pub duration: Duration,
    /// Load before the measured time, not counted.
    pub warmup: Duration,
}

/// What a run measured (inside the measured window only).
#[derive(Debug, Clone, PartialEq)]
pub struct LoadResult {
    /// Responses received (any status).
    pub requests: u64,
    /// Transport errors: refused or reset connections, timeouts, malformed
    /// answers. Each one costs a reconnect.
    pub errors: u64,
    /// Responses whose status is not 2xx.
    pub non_2xx: u64,
    /// Responses per second of the measured window.
    pub rps: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th-percentile latency, milliseconds.
    pub p99_ms: f64,
    /// Highest latency, milliseconds.
    pub max_ms: f64,
    /// Responses by status code.
    pub status_counts: BTreeMap<u16, u64>,
}

/// A request taking longer than this is abandoned and counted as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs the load described by `spec` and measures it, with one worker
/// thread per CPU.
///
/// # Errors
/// When `spec` is unusable (not an `http://` URL, no connections, zero
/// duration, a header that is not valid HTTP) or the target cannot be
/// reached at all before the run starts.
pub async fn run(spec: &LoadSpec) -> Result<LoadResult> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    run_with_threads(spec, threads).await
}

/// [`run`] with an explicit number of worker threads (capped at the number
/// of connections).
///
/// # Errors
/// As [`run`].
pub async fn run_with_threads(spec: &LoadSpec, threads: usize) -> Result<LoadResult> {
    ensure!(spec.connections > 0, "connections must be at least 1");
    ensure!(
        !spec.duration.is_zero(),
        "the measured duration must be > 0"
    );
    let target = Target::new(spec).await?;
    // Fail fast, with a clear message, when nothing listens there.
    TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("cannot connect to {} ({})", spec.url, target.addr))?;

    let threads = threads.clamp(1, spec.connections);
    let start = Instant::now() + spec.warmup;
    let end = start + spec.duration;
    let mut handles = Vec::with_capacity(threads);
    for t in 0..threads {
        // Connections t, t + threads, ...: an even spread.
        let conns = (t..spec.connections).step_by(threads).count();
        let target = target.clone();
        let handle = std::thread::Builder::new()
            .name(format!("loadgen-{t}"))
            .spawn(move || -> Result<Stats> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                // One histogram per thread, shared by its connections.
                let stats = Rc::new(RefCell::new(Stats::new()?));
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, async {
                    let tasks: Vec<_> = (0..conns)
                        .map(|_| {
                            tokio::task::spawn_local(connection(
                                target.clone(),
                                stats.clone(),
                                start,
                                end,
                            ))
                        })
                        .collect();
                    for task in tasks {
                        task.await.context("a connection task failed")?;
                    }
                    anyhow::Ok(())
                })?;
                Rc::try_unwrap(stats)
                    .map(RefCell::into_inner)
                    .map_err(|_| anyhow::anyhow!("a connection task outlived the run"))
            })
            .context("starting a load generator thread")?;
        handles.push(handle);
    }
    let stats = tokio::task::spawn_blocking(move || -> Result<Stats> {
        let mut all = Stats::new()?;
        for h in handles {
            let s = h
                .join()
                .map_err(|_| anyhow::anyhow!("a load generator thread panicked"))??;
            all.merge(&s)?;
        }
        Ok(all)
    })
    .await
    .context("waiting for the load generator threads")??;
    Ok(stats.result(spec.duration))
}

/// Where and what to send, prepared once.
#[derive(Clone)]
struct Target {
    addr: SocketAddr,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Target {
    async fn new(spec: &LoadSpec) -> Result<Self> {
        let uri: Uri = spec
            .url
            .parse()
            .with_context(|| format!("{:?} is not a URL", spec.url))?;
        if uri.scheme_str() != Some("http") {
            bail!(
                "the load generator speaks plain http:// only, not {:?}",
                spec.url
            );
        }
        let authority = uri
            .authority()
            .with_context(|| format!("{:?} has no host", spec.url))?
            .clone();
        let port = authority.port_u16().unwrap_or(80);
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let addr = tokio::net::lookup_host((host, port))
            .await
            .with_context(|| format!("cannot resolve {host}"))?
            .next()
            .with_context(|| format!("{host} resolves to no address"))?;
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_str(authority.as_str())?);
        for (n, v) in &spec.headers {
            let name = HeaderName::from_bytes(n.as_bytes())
                .with_context(|| format!("{n:?} is not a header name"))?;
            let value =
                HeaderValue::from_str(v).with_context(|| format!("bad value for header {n}"))?;
            headers.append(name, value);
        }
        let path = uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .parse::<Uri>()?;
        Ok(Self {
            addr,
            method: spec.method.clone(),
            uri: path,
            headers,
            body: spec.body.clone().unwrap_or_default(),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::new(Full::new(self.body.clone()));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// Counts of one connection, thread or run.
struct Stats {
    hist: Histogram<u64>,
    requests: u64,
    errors: u64,
    status: BTreeMap<u16, u64>,
}

impl Stats {
    fn new() -> Result<Self> {
        // 1 µs .. 1 hour, 3 significant digits.
        Ok(Self {
            hist: Histogram::new_with_bounds(1, 3_600_000_000, 3)?,
            requests: 0,
            errors: 0,
            status: BTreeMap::new(),
        })
    }

    fn merge(&mut self, other: &Stats) -> Result<()> {
        self.hist.add(&other.hist)?;
        self.requests += other.requests;
        self.errors += other.errors;
        for (s, n) in &other.status {
            *self.status.entry(*s).or_default() += n;
        }
        Ok(())
    }

    fn result(&self, duration: Duration) -> LoadResult {
        let ms = |us: u64| us as f64 / 1000.0;
        let non_2xx = self
            .status
            .iter()
            .filter(|(s, _)| !(200..300).contains(*s))
            .map(|(_, n)| n)
            .sum();
        let (p50, p99, max) = if self.hist.is_empty() {
            (0, 0, 0)
        } else {
            (
                self.hist.value_at_quantile(0.5),
                self.hist.value_at_quantile(0.99),
                self.hist.max(),
            )
        };
        LoadResult {
            requests: self.requests,
            errors: self.errors,
            non_2xx,
            rps: self.requests as f64 / duration.as_secs_f64(),
            p50_ms: ms(p50),
            p99_ms: ms(p99),
            max_ms: ms(max),
            status_counts: self.status.clone(),
        }
    }
}

/// One closed-loop connection until `end`, recording into its thread's
/// `stats`; reconnects after errors.
async fn connection(target: Target, stats: Rc<RefCell<Stats>>, start: Instant, end: Instant) {
    let in_window = |t: Instant| t >= start && t < end;
    'connect: while Instant::now() < end {
        let mut sender = match connect(&target).await {
            Ok(s) => s,
            Err(_) => {
                if in_window(Instant::now()) {
                    stats.borrow_mut().errors += 1;
                }
                // Do not spin against a server that refuses.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        loop {
            let sent = Instant::now();
            let outcome = tokio::time::timeout(REQUEST_TIMEOUT, async {
                sender.ready().await?;
                let resp = sender.send_request(target.request()).await?;
                let status = resp.status().as_u16();
                let close = closes(resp.headers());
                let mut body = resp.into_body();
                while let Some(frame) = body.frame().await {
                    frame?;
                }
                Ok::<(u16, bool), hyper::Error>((status, close))
            })
            .await;
            let done = Instant::now();
            match outcome {
                Ok(Ok((status, close))) => {
                    if in_window(done) {
                        let us = done.duration_since(sent).as_micros().max(1);
                        let mut stats = stats.borrow_mut();
                        stats.requests += 1;
                        *stats.status.entry(status).or_default() += 1;
                        stats
                            .hist
                            .saturating_record(u64::try_from(us).unwrap_or(u64::MAX));
                    }
                    // The server ends the connection after this answer
                    // (e.g. a keep-alive request limit): not an error.
                    if close && done < end {
                        continue 'connect;
                    }
                }
                // Errors and timeouts: count them, even past the window end
                // when the request started inside it (a hang must show).
                _ => {
                    if in_window(done) || in_window(sent) {
                        stats.borrow_mut().errors += 1;
                    }
                    continue 'connect;
                }
            }
            if done >= end {
                break 'connect;
            }
        }
    }
}

/// True when the answer says the server closes the connection after it.
fn closes(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("close"))
}

async fn connect(target: &Target) -> Result<http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(target.addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Ends when the sender is dropped or the peer closes; the request
        // side sees and counts the error.
        let _ = conn.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    use http::{Response, StatusCode};
    use hyper::body::Incoming;
    use hyper::server::conn::http1 as server;
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    use super::*;

    /// Listens on a free loopback port and hands every accepted connection
    /// to `on_connection`, in a task of its own.
    async fn listen<F, Fut>(on_connection: F) -> SocketAddr
    where
        F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(on_connection(stream));
            }
        });
        addr
    }

    /// A local server: `/ok` answers 200 with 1 KiB, `/slow` after 20 ms,
    /// `/half` 500 for every other request, `/echo` the request body.
    async fn server(seen: Arc<AtomicU64>) -> SocketAddr {
        listen(move |stream| {
            let seen = seen.clone();
            async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let n = seen.fetch_add(1, Ordering::Relaxed);
                    async move {
                        let path = req.uri().path().to_string();
                        assert_eq!(req.headers()["x-test"], "yes");
                        let body = req.into_body().collect().await?.to_bytes();
                        let mut resp = Response::new(Full::new(Bytes::from(vec![b'x'; 1024])));
                        match path.as_str() {
                            "/slow" => tokio::time::sleep(Duration::from_millis(20)).await,
                            "/half" if n & 1 == 0 => {
                                *resp.status_mut() = StatusCode::INTERNAL_SERVER_ERROR
                            }
                            "/echo" => *resp.body_mut() = Full::new(body),
                            _ => {}
                        }
                        Ok::<_, hyper::Error>(resp)
                    }
                });
                let _ = server::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            }
        })
        .await
    }

    /// A server that answers one request per connection, with
    /// `Connection: close`.
    async fn one_shot_server() -> SocketAddr {
        listen(|stream| async move {
            let svc = service_fn(|_req: Request<Incoming>| async {
                Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"ok"))))
            });
            let _ = server::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        })
        .await
    }

    /// A server that accepts and then drops every connection at once.
    async fn rude_server() -> SocketAddr {
        listen(|stream| async move { drop(stream) }).await
    }

    fn spec(addr: SocketAddr, path: &str, connections: usize) -> LoadSpec {
        LoadSpec {
            url: format!("http://{addr}{path}"),
            method: Method::GET,
            headers: vec![("X-Test".into(), "yes".into())],
            body: None,
            connections,
            duration: Duration::from_millis(500),
            warmup: Duration::from_millis(100),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn measures_a_local_server() {
        let seen = Arc::new(AtomicU64::new(0));
        let addr = server(seen.clone()).await;
        let r = run_with_threads(&spec(addr, "/ok", 8), 2).await.unwrap();
        assert!(r.requests > 100, "{r:?}");
        assert_eq!(r.errors, 0);
        assert_eq!(r.non_2xx, 0);
        assert_eq!(r.status_counts.get(&200), Some(&r.requests));
        // The server saw the measured requests plus warm-up and the
        // requests in flight at the end.
        assert!(seen.load(Ordering::Relaxed) >= r.requests);
        assert!((r.rps - r.requests as f64 / 0.5).abs() < 1e-6);
        assert!(r.p50_ms > 0.0 && r.p50_ms <= r.p99_ms && r.p99_ms <= r.max_ms);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn latency_and_closed_loop_rate_follow_the_server() {
        let addr = server(Arc::new(AtomicU64::new(0))).await;
        let r = run(&spec(addr, "/slow", 4)).await.unwrap();
        // 4 connections, one request in flight each, 20 ms per answer:
        // about 200 requests per second, each over 20 ms.
        assert!(r.p50_ms >= 20.0 && r.p50_ms < 60.0, "{r:?}");
        assert!(r.rps > 100.0 && r.rps <= 205.0, "{r:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn counts_statuses_and_sends_the_body() {
        let addr = server(Arc::new(AtomicU64::new(0))).await;
        let r = run_with_threads(&spec(addr, "/half", 2), 1).await.unwrap();
        let errors = r.status_counts.get(&500).copied().unwrap_or(0);
        assert!(errors > 0 && r.non_2xx == errors, "{r:?}");
        assert_eq!(r.status_counts.values().sum::<u64>(), r.requests, "{r:?}");

        let mut s = spec(addr, "/echo", 1);
        s.method = Method::POST;
        s.body = Some(Bytes::from_static(b"hello"));
        let r = run_with_threads(&s, 1).await.unwrap();
        assert!(r.requests > 10 && r.errors == 0, "{r:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_server_closing_connections_gracefully_is_not_an_error() {
        let addr = one_shot_server().await;
        let r = run_with_threads(&spec(addr, "/", 2), 1).await.unwrap();
        assert!(r.requests > 20, "{r:?}");
        assert_eq!(r.errors, 0, "{r:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn counts_transport_errors_and_keeps_going() {
        let addr = rude_server().await;
        let r = run_with_threads(&spec(addr, "/ok", 2), 1).await.unwrap();
        assert_eq!(r.requests, 0);
        assert!(r.errors > 10, "{r:?}");
        assert_eq!(r.p99_ms, 0.0);
    }

    #[tokio::test]
    async fn refuses_unusable_specs() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed = listener.local_addr().unwrap();
        drop(listener);
        let e = run(&spec(closed, "/", 1)).await.unwrap_err();
        let text = ndxp_core::ErrorChain(&*e).to_string();
        assert!(text.contains("cannot connect"), "{text}");

        let addr = server(Arc::new(AtomicU64::new(0))).await;
        let mut s = spec(addr, "/", 1);
        s.url = format!("https://{addr}/");
        assert!(run(&s).await.unwrap_err().to_string().contains("http://"));
        let mut s = spec(addr, "/", 0);
        assert!(run(&s).await.is_err());
        s.connections = 1;
        s.headers = vec![("bad name".into(), "v".into())];
        assert!(run(&s).await.is_err());
    }
}
