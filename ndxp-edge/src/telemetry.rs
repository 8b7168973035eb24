//! OpenTelemetry trace export (`docs/monitoring.md`, "Tracing"): the
//! `[telemetry]` table that `node.toml` and `gateway.toml` share
//! ([`TelemetrySettings`]), the exporter it starts ([`Telemetry`]) and the
//! process's log subscriber with the exporter's layer ([`init_logging`]).
//!
//! Export is off unless `otlp_endpoint` is set. When on, every hop's span
//! (`ndxp.hop`, [`crate::trace::hop_span`]) is sent to an OpenTelemetry
//! collector over OTLP/HTTP (protobuf, `POST <endpoint>/v1/traces`) by a
//! batch span processor on a thread of its own. The exported span carries
//! the trace id and span id that NDXP propagates in `traceparent`
//! ([`crate::trace::Hop`]), so the caller's span is its parent. A collector
//! that is down or slow never fails nor slows an exchange: spans wait in a
//! bounded queue, are dropped when it is full, and a failed export is
//! logged as a warning at most once a minute.
//!
//! ```
//! use ndxp_edge::telemetry::TelemetrySettings;
//!
//! let on: TelemetrySettings =
//!     toml::from_str("otlp_endpoint = \"http://127.0.0.1:4318\"\nsample_ratio = 0.25").unwrap();
//! assert!(on.check().is_ok());
//! assert_eq!(on.traces_url().unwrap(), "http://127.0.0.1:4318/v1/traces");
//! assert!(TelemetrySettings::default().otlp_endpoint.is_none()); // off by default
//! let bad: TelemetrySettings = toml::from_str("sample_ratio = 1.5").unwrap();
//! assert!(bad.check().unwrap_err().to_string().contains("telemetry.sample_ratio"));
//! ```

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http_body_util::{BodyExt, Full, Limited};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{BatchSpanProcessor, Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use serde::{Deserialize, Serialize};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::Registry;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::Layer as _;

use crate::settings::SettingsError;

/// The path OTLP/HTTP collectors take traces on.
pub const TRACES_PATH: &str = "/v1/traces";

/// Longest wait for the last spans to be sent when the process stops.
pub const FLUSH_WAIT: Duration = Duration::from_secs(5);

/// Least time between two warnings about failed exports.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Largest collector answer read, in bytes.
const MAX_ANSWER: usize = 64 * 1024;

/// The `[telemetry]` table: where to export the hops' spans, under which
/// service name, and how many traces to keep.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector's OTLP/HTTP base URL (`http://127.0.0.1:4318`); the
    /// spans go to its `/v1/traces`. Absent: export is off (the default).
    pub otlp_endpoint: Option<String>,
    /// The `service.name` resource attribute; absent: the binary's name
    /// (`ndxp-node`, `ndxp-gateway`).
    pub service_name: Option<String>,
    /// Share of new traces exported, 0.0 to 1.0 (default 1.0). A trace
    /// that arrives with a `traceparent` follows the caller's sampled flag
    /// instead (parent-based sampling).
    pub sample_ratio: f64,
    /// Headers sent with every export, e.g. an `authorization` header the
    /// collector asks for.
    pub headers: BTreeMap<String, String>,
    /// Milliseconds one export may take before it is abandoned (default
    /// 10000, at most 60000).
    pub timeout_ms: u64,
}

/// Shows the headers' names only: a value may be a credential.
impl std::fmt::Debug for TelemetrySettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TelemetrySettings")
            .field("otlp_endpoint", &self.otlp_endpoint)
            .field("service_name", &self.service_name)
            .field("sample_ratio", &self.sample_ratio)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("timeout_ms", &self.timeout_ms)
            .finish()
    }
}

// `sample_ratio` is never NaN once checked; the configurations that embed
// this table compare with `Eq`.
impl Eq for TelemetrySettings {}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: None,
            sample_ratio: 1.0,
            headers: BTreeMap::new(),
            timeout_ms: 10_000,
        }
    }
}

fn invalid(key: &'static str, detail: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key,
        detail: detail.into(),
    }
}

impl TelemetrySettings {
    /// Checks every key: an `http` or `https` URL with a host, a ratio
    /// between 0 and 1, a non-empty service name, header names and values
    /// that HTTP allows, a time-out between 1 and 60000 ms.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first key at fault.
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.otlp_endpoint.is_some() {
            self.traces_url()?;
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err(invalid(
                "telemetry.sample_ratio",
                format!("{} is not between 0.0 and 1.0", self.sample_ratio),
            ));
        }
        if self
            .service_name
            .as_deref()
            .is_some_and(|s| s.trim().is_empty())
        {
            return Err(invalid(
                "telemetry.service_name",
                "is empty; remove it to use the binary's name",
            ));
        }
        for (name, value) in &self.headers {
            if HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(invalid(
                    "telemetry.headers",
                    format!("`{name}` is not an HTTP header name"),
                ));
            }
            if HeaderValue::from_str(value).is_err() {
                // The value may be a credential: not shown.
                return Err(invalid(
                    "telemetry.headers",
                    format!("the value of `{name}` is not a valid HTTP header value"),
                ));
            }
        }
        if !(1..=60_000).contains(&self.timeout_ms) {
            return Err(invalid(
                "telemetry.timeout_ms",
                format!("{} is not between 1 and 60000", self.timeout_ms),
            ));
        }
        Ok(())
    }

    /// The URL the spans are posted to: `otlp_endpoint` with
    /// [`TRACES_PATH`] appended (unless it already ends with it); empty
    /// when export is off.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] when `otlp_endpoint` is not an `http` or
    /// `https` URL with a host (and no query).
    pub fn traces_url(&self) -> Result<String, SettingsError> {
        let Some(endpoint) = self.otlp_endpoint.as_deref() else {
            return Ok(String::new());
        };
        let bad = |why: &str| {
            invalid(
                "telemetry.otlp_endpoint",
                format!("`{endpoint}` {why}; write the collector's OTLP/HTTP URL, e.g. http://127.0.0.1:4318"),
            )
        };
        let uri: http::Uri = endpoint.parse().map_err(|_| bad("is not a URL"))?;
        match uri.scheme_str() {
            Some("http" | "https") => {}
            _ => return Err(bad("is not an http:// or https:// URL")),
        }
        if uri.host().is_none_or(str::is_empty) {
            return Err(bad("has no host"));
        }
        if uri.query().is_some() {
            return Err(bad("has a query"));
        }
        let base = endpoint.trim_end_matches('/');
        if base.ends_with(TRACES_PATH) {
            Ok(base.to_owned())
        } else {
            Ok(format!("{base}{TRACES_PATH}"))
        }
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TelemetryError {
    /// A key of `[telemetry]` cannot be used.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The exporter or its runtime could not be built.
    #[error("starting the OTLP exporter: {0}")]
    Start(String),
}

/// The running exporter. Give its [`layer`](Self::layer) to the log
/// subscriber ([`init_logging`] does) and call [`shutdown`](Self::shutdown)
/// when the process stops, to send the last spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
    /// Runs the exporter's HTTP requests, apart from the process's own
    /// runtime (which may be gone when the last spans are flushed).
    runtime: tokio::runtime::Runtime,
}

impl Telemetry {
    /// Starts the exporter that `settings` asks for; `Ok(None)` when export
    /// is off. `default_service` is the `service.name` when the settings
    /// name none.
    ///
    /// # Errors
    /// [`TelemetryError`]: settings that [`TelemetrySettings::check`]
    /// refuses, or an exporter that cannot be built.
    pub fn start(
        settings: &TelemetrySettings,
        default_service: &str,
    ) -> Result<Option<Self>, TelemetryError> {
        settings.check()?;
        if settings.otlp_endpoint.is_none() {
            return Ok(None);
        }
        let url = settings.traces_url()?;
        let timeout = Duration::from_millis(settings.timeout_ms);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ndxp-otlp")
            .enable_all()
            .build()
            .map_err(|e| TelemetryError::Start(e.to_string()))?;
        let client = OtlpClient::new(runtime.handle().clone(), timeout, url.clone());
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(client)
            .with_endpoint(url)
            .with_timeout(timeout)
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_headers(settings.headers.clone().into_iter().collect())
            .build()
            .map_err(|e| TelemetryError::Start(e.to_string()))?;
        let service = settings
            .service_name
            .clone()
            .unwrap_or_else(|| default_service.to_owned());
        let provider = SdkTracerProvider::builder()
            .with_span_processor(BatchSpanProcessor::builder(exporter).build())
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                settings.sample_ratio,
            ))))
            .with_resource(Resource::builder_empty().with_service_name(service).build())
            .build();
        Ok(Some(Self { provider, runtime }))
    }

    /// The tracing layer that turns each hop's span (`ndxp.hop`, and no
    /// other) into an OpenTelemetry span of this exporter.
    pub fn layer(&self) -> Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync> {
        tracing_opentelemetry::layer()
            .with_tracer(self.provider.tracer("ndxp"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            .with_tracked_inactivity(false)
            .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
                meta.is_span() && meta.name() == crate::trace::HOP_SPAN
            }))
            .boxed()
    }

    /// Sends the spans still queued (waiting at most [`FLUSH_WAIT`]) and
    /// stops the exporter. Call it outside the process's async runtime.
    pub fn shutdown(self) {
        if let Err(e) = self.provider.shutdown_with_timeout(FLUSH_WAIT) {
            tracing::warn!("the last spans could not all be exported: {e}");
        }
        self.runtime.shutdown_timeout(Duration::from_millis(200));
    }
}

/// Installs the process's log subscriber: text (or JSON lines) on stderr,
/// filtered by `NDXP_LOG` (default `info`), and, with `telemetry`, the
/// exporter's layer, which `NDXP_LOG` does not filter. Returns `false`
/// (changing nothing) when a subscriber is installed already.
pub fn init_logging(json: bool, telemetry: Option<&Telemetry>) -> bool {
    subscriber(json, telemetry).try_init().is_ok()
}

/// Runs `f` with the log subscriber of [`init_logging`] (without export)
/// as this thread's: for what a process does before it knows its
/// `[telemetry]`, such as loading its configuration.
pub fn with_logging<T>(json: bool, f: impl FnOnce() -> T) -> T {
    tracing::subscriber::with_default(subscriber(json, None), f)
}

type Subscriber = tracing_subscriber::layer::Layered<
    Vec<Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync>>,
    Registry,
>;

fn subscriber(json: bool, telemetry: Option<&Telemetry>) -> Subscriber {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NDXP_LOG")
        // PostgreSQL's notices ("relation ... already exists, skipping")
        // are not worth a line each time a command opens the database.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let fmt = tracing_subscriber::fmt::layer()
        // Colour only for a person at a terminal: a log file or a pipe
        // (systemd, the demo's logs/) must stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let fmt: Box<dyn tracing_subscriber::Layer<Registry> + Send + Sync> = if json {
        fmt.json().with_filter(filter).boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let mut layers = vec![fmt];
    layers.extend(telemetry.map(Telemetry::layer));
    tracing_subscriber::registry().with(layers)
}

/// The exporter's HTTP client: hyper on the exporter's own runtime, each
/// request bounded by the time-out, failures counted and warned about at
/// most once a minute.
#[derive(Debug)]
struct OtlpClient {
    runtime: tokio::runtime::Handle,
    client: hyper_util::client::legacy::Client<
        hyper_tls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
        Full<Bytes>,
    >,
    timeout: Duration,
    url: String,
    failures: Mutex<Failures>,
}

/// Failed exports since the last warning.
#[derive(Debug, Default)]
struct Failures {
    last_warning: Option<Instant>,
    unreported: u64,
}

impl OtlpClient {
    fn new(runtime: tokio::runtime::Handle, timeout: Duration, url: String) -> Self {
        let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(timeout));
        let https = hyper_tls::HttpsConnector::new_with_connector(http);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https);
        Self {
            runtime,
            client,
            timeout,
            url,
            failures: Mutex::new(Failures::default()),
        }
    }

    /// Counts a failed export; warns when none was warned about for a
    /// minute.
    fn failed(&self, why: &str) {
        let Ok(mut f) = self.failures.lock() else {
            return;
        };
        f.unreported += 1;
        if f.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            tracing::warn!(
                collector = %self.url,
                failed_exports = f.unreported,
                "OTLP trace export failed ({why}); the spans are dropped, exchanges go on"
            );
            f.last_warning = Some(Instant::now());
            f.unreported = 0;
        }
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, Full::new(body));
        let client = self.client.clone();
        let timeout = self.timeout;
        let sent = self.runtime.spawn(async move {
            tokio::time::timeout(timeout, async move {
                let answer = client.request(request).await?;
                let (parts, body) = answer.into_parts();
                let body = Limited::new(body, MAX_ANSWER)
                    .collect()
                    .await
                    .map_err(|e| -> HttpError { e })?
                    .to_bytes();
                Ok::<_, HttpError>(Response::from_parts(parts, body))
            })
            .await
        });
        let outcome = match sent.await {
            Ok(Ok(Ok(answer))) => Ok(answer),
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err(format!("no answer within {} ms", timeout.as_millis()).into()),
            Err(e) => Err(format!("the export task failed: {e}").into()),
        };
        match &outcome {
            Ok(answer) if !answer.status().is_success() => {
                self.failed(&format!("the collector answered {}", answer.status()));
            }
            Ok(_) => {}
            Err(e) => self.failed(&ndxp_core::ErrorChain(&**e).to_string()),
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn parse(text: &str) -> TelemetrySettings {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn defaults_are_off_full_sampling_ten_seconds() {
        let d = TelemetrySettings::default();
        assert_eq!(parse(""), d);
        assert!(d.otlp_endpoint.is_none());
        assert_eq!(d.sample_ratio, 1.0);
        assert_eq!(d.timeout_ms, 10_000);
        assert!(d.check().is_ok());
        assert!(Telemetry::start(&d, "ndxp-test").unwrap().is_none());
    }

    #[test]
    fn the_traces_path_is_appended_once() {
        for (endpoint, url) in [
            ("http://127.0.0.1:4318", "http://127.0.0.1:4318/v1/traces"),
            ("http://127.0.0.1:4318/", "http://127.0.0.1:4318/v1/traces"),
            (
                "https://otel.example.vn/v1/traces",
                "https://otel.example.vn/v1/traces",
            ),
            (
                "https://otel.example.vn/tenant-a",
                "https://otel.example.vn/tenant-a/v1/traces",
            ),
        ] {
            let s = TelemetrySettings {
                otlp_endpoint: Some(endpoint.into()),
                ..TelemetrySettings::default()
            };
            assert_eq!(s.traces_url().unwrap(), url);
        }
    }

    #[test]
    fn bad_values_are_refused_by_key() {
        let endpoint = |e: &str| TelemetrySettings {
            otlp_endpoint: Some(e.into()),
            ..TelemetrySettings::default()
        };
        for (s, key) in [
            (endpoint("127.0.0.1:4318"), "telemetry.otlp_endpoint"),
            (endpoint("ftp://collector/"), "telemetry.otlp_endpoint"),
            (endpoint("http://"), "telemetry.otlp_endpoint"),
            (endpoint("not a url"), "telemetry.otlp_endpoint"),
            (endpoint("http://c:4318/?x=1"), "telemetry.otlp_endpoint"),
            (endpoint(""), "telemetry.otlp_endpoint"),
            (parse("sample_ratio = -0.1"), "telemetry.sample_ratio"),
            (parse("sample_ratio = 1.01"), "telemetry.sample_ratio"),
            (parse("sample_ratio = nan"), "telemetry.sample_ratio"),
            (parse("service_name = \" \""), "telemetry.service_name"),
            (parse("timeout_ms = 0"), "telemetry.timeout_ms"),
            (parse("timeout_ms = 60001"), "telemetry.timeout_ms"),
            (
                parse("headers = { \"bad name\" = \"x\" }"),
                "telemetry.headers",
            ),
            (
                parse("headers = { a = \"line\\nbreak\" }"),
                "telemetry.headers",
            ),
        ] {
            match s.check() {
                Err(SettingsError::Invalid { key: k, .. }) => assert_eq!(k, key, "{s:?}"),
                other => panic!("{s:?}: {other:?}"),
            }
            assert!(Telemetry::start(&s, "ndxp-test").is_err());
        }
        let secret = parse("headers = { authorization = \"Bearer s3cret\\u0001\" }");
        let shown = secret.check().unwrap_err().to_string();
        assert!(!shown.contains("s3cret"), "{shown}");
        let debug = format!("{secret:?}");
        assert!(
            debug.contains("authorization") && !debug.contains("s3cret"),
            "{debug}"
        );
        assert!(toml::from_str::<TelemetrySettings>("endpoint = \"x\"").is_err());
    }

    #[test]
    fn a_collector_that_is_down_is_warned_about_not_waited_for() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let s = TelemetrySettings {
            otlp_endpoint: Some(format!("http://127.0.0.1:{port}")),
            timeout_ms: 500,
            ..TelemetrySettings::default()
        };
        let t = Telemetry::start(&s, "ndxp-test").unwrap().unwrap();
        let client = OtlpClient::new(
            t.runtime.handle().clone(),
            Duration::from_millis(500),
            s.traces_url().unwrap(),
        );
        let request = Request::post(s.traces_url().unwrap())
            .body(Bytes::from_static(b"x"))
            .unwrap();
        let started = Instant::now();
        let r = futures_executor::block_on(client.send_bytes(request));
        assert!(r.is_err(), "nothing listens on port {port}");
        assert!(started.elapsed() < Duration::from_secs(2));
        let f = client.failures.lock().unwrap();
        assert!(
            f.last_warning.is_some(),
            "the first failure is warned about"
        );
        drop(f);
        let started = Instant::now();
        t.shutdown();
        assert!(started.elapsed() < FLUSH_WAIT + Duration::from_secs(1));
    }
}
