//! The two ends of the edge tests (feature `edge`): a backend that records
//! the path and headers of every request it receives, over HTTP or HTTPS,
//! and a client that sends a request exactly as written (no URL
//! normalisation, any header), as an attacker would.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use ndxp_sign::tls::{https_acceptor, ClientCertificates};

/// One request as the backend received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request target: path and query, as sent.
    pub path_and_query: String,
    /// Every header, as sent.
    pub headers: HeaderMap,
}

/// A backend on 127.0.0.1 that answers every request `200` with a JSON
/// document `{"path": ...}` and a response header `x-backend-only: 1`,
/// after recording it.
#[derive(Debug, Clone)]
pub struct RecordingBackend {
    /// Where it listens.
    pub addr: SocketAddr,
    /// `http` or `https`.
    pub scheme: &'static str,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RecordingBackend {
    /// Starts a plain HTTP backend.
    pub async fn start() -> RecordingBackend {
        Self::serve(None).await
    }

    /// Starts an HTTPS backend with the certificate chain and key in these
    /// PEM files; with `client_ca` (a PEM file of CAs), a client
    /// certificate issued under it is required.
    pub async fn start_tls(cert: &Path, key: &Path, client_ca: Option<&Path>) -> RecordingBackend {
        let clients = match client_ca {
            Some(ca) => ClientCertificates::Required(ca),
            None => ClientCertificates::NotRequested,
        };
        let acceptor = https_acceptor(cert, key, clients).expect("the backend's TLS files");
        Self::serve(Some(acceptor)).await
    }

    async fn serve(tls: Option<ndxp_sign::openssl::ssl::SslAcceptor>) -> RecordingBackend {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a port on 127.0.0.1 for the backend");
        let addr = listener.local_addr().expect("the backend's address");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let record = seen.clone();
        let tls = tls.map(Arc::new);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let record = record.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let record = record.clone();
                        async move { Ok::<_, Infallible>(answer(&record, req).await) }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        Some(acceptor) => {
                            let Ok(ssl) = ndxp_sign::openssl::ssl::Ssl::new(acceptor.context())
                            else {
                                return;
                            };
                            let Ok(mut stream) = tokio_openssl::SslStream::new(ssl, tcp) else {
                                return;
                            };
                            if std::pin::Pin::new(&mut stream).accept().await.is_err() {
                                return;
                            }
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        None => {
                            let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                        }
                    }
                });
            }
        });
        RecordingBackend { addr, scheme, seen }
    }

    /// Starts an HTTPS backend whose certificate, for `127.0.0.1` and
    /// `localhost`, `pki` issues to `member`'s node `backend` now; the
    /// certificate and key files are written into `dir`.
    pub async fn start_tls_issued(
        pki: &ndxp_sign::ca::Pki,
        member: &ndxp_core::MemberId,
        dir: &Path,
    ) -> RecordingBackend {
        let key = crate::pki::ec_key();
        let node: ndxp_core::NodeName = "backend".parse().expect("a node name");
        let req = ndxp_sign::csr::build_auth_csr(
            member,
            &node,
            &["localhost".to_owned()],
            &["127.0.0.1".parse().expect("an address")],
            &key,
        )
        .expect("a CSR for the backend");
        let cert = pki
            .issue(&req, ndxp_sign::cert::Profile::Auth, 30)
            .expect("the backend's certificate");
        let mut chain = vec![cert];
        chain.extend(pki.chain().iter().cloned());
        let (cert_file, key_file) = (dir.join("backend.pem"), dir.join("backend.key"));
        std::fs::write(
            &cert_file,
            ndxp_sign::cert::write_pem_chain(&chain).expect("PEM"),
        )
        .expect("write the backend's certificate");
        std::fs::write(&key_file, key.private_key_to_pem_pkcs8().expect("PEM"))
            .expect("write the backend's key");
        Self::start_tls(&cert_file, &key_file, None).await
    }

    /// `{scheme}://127.0.0.1:{port}{base}`.
    pub fn url(&self, base: &str) -> String {
        format!("{}://{}{base}", self.scheme, self.addr)
    }

    /// Every request received so far, reachability probes included.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("the backend's record").clone()
    }

    /// The exchanges received so far: the requests that carry `NDXP-Id`
    /// (a node's reachability probes do not).
    pub fn exchanges(&self) -> Vec<Seen> {
        let mut all = self.seen();
        all.retain(|s| s.headers.contains_key("ndxp-id"));
        all
    }
}

async fn answer(record: &Mutex<Vec<Seen>>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = req.into_parts();
    let _ = body.collect().await;
    let path = parts
        .uri
        .path_and_query()
        .map(ToString::to_string)
        .unwrap_or_default();
    record.lock().expect("the backend's record").push(Seen {
        path_and_query: path.clone(),
        headers: parts.headers,
    });
    let doc = format!("{{\"path\":{path:?}}}");
    let mut r = Response::new(Full::new(Bytes::from(doc)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert("x-backend-only", http::HeaderValue::from_static("1"));
    r
}

/// An answer to [`raw_request`].
#[derive(Debug)]
pub struct RawAnswer {
    /// The status code.
    pub status: u16,
    /// Every header.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

impl RawAnswer {
    /// The body as JSON (`null` when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// The problem `code`, when the answer is an `application/problem+json`
    /// document.
    pub fn problem_code(&self) -> Option<String> {
        let ct = self
            .headers
            .get(http::header::CONTENT_TYPE)?
            .to_str()
            .ok()?;
        if !ct.starts_with("application/problem+json") {
            return None;
        }
        self.json()["code"].as_str().map(str::to_owned)
    }
}

/// The value of header `name` in `headers` as text, when it is there
/// and visible ASCII.
pub fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// Sends `GET path` with `headers` to `addr` over a fresh HTTP/1.1
/// connection, the target exactly as written (hyper's client does not
/// normalise it, unlike a URL library).
pub async fn raw_request(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> RawAnswer {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the server under test");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .expect("an HTTP/1.1 connection");
    tokio::spawn(conn);
    let mut req = Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()))
        .unwrap_or_else(|e| panic!("{path:?} is not a request target hyper can send: {e}"));
    for (name, value) in headers {
        req.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("a header name"),
            http::HeaderValue::from_str(value).expect("a header value"),
        );
    }
    let resp = sender
        .send_request(req)
        .await
        .expect("an answer from the server under test");
    let (parts, body) = resp.into_parts();
    RawAnswer {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: body
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default(),
    }
}

/// What a caller sends to test the header policy: forwarding headers of
/// its own, a header it names in `Connection`, the `X-Tenant` a service
/// may let through, and an allowlisted `Accept`.
pub const CALLER_HEADERS: &[(&str, &str)] = &[
    ("x-forwarded-for", "10.9.9.9"),
    ("forwarded", "for=10.9.9.9;host=evil.example"),
    ("x-forwarded-host", "evil.example"),
    ("x-forwarded-proto", "https"),
    ("x-real-ip", "10.9.9.9"),
    ("connection", "x-secret"),
    ("x-secret", "1"),
    ("x-tenant", "t1"),
    ("accept", "application/json"),
];

/// Asserts what the header policy promises for two exchanges that carried
/// [`CALLER_HEADERS`]: `with_extra` of a service that lets `X-Tenant`
/// through, `without_extra` of one that does not. Neither carries the
/// caller's forwarding headers, the header named in `Connection` or
/// `Authorization`; each carries `Accept` and exactly one `Forwarded`,
/// `forwarded`; `X-Tenant` reaches only the first.
pub fn assert_header_policy(with_extra: &Seen, without_extra: &Seen, forwarded: &str) {
    for s in [with_extra, without_extra] {
        for name in [
            "x-forwarded-for",
            "x-forwarded-host",
            "x-forwarded-proto",
            "x-real-ip",
            "x-secret",
            "authorization",
        ] {
            assert!(
                !s.headers.contains_key(name),
                "{name} reached the backend: {s:?}"
            );
        }
        let fwd: Vec<_> = s.headers.get_all("forwarded").iter().collect();
        assert_eq!(fwd, [forwarded], "only the edge's own Forwarded: {s:?}");
        assert_eq!(s.headers["accept"], "application/json");
    }
    assert_eq!(
        with_extra.headers["x-tenant"], "t1",
        "configured: {with_extra:?}"
    );
    assert!(
        !without_extra.headers.contains_key("x-tenant"),
        "not configured: {without_extra:?}"
    );
}

/// Sends every path of [`BAD_PATHS`] after `prefix` to `addr` with
/// `headers`, and asserts that each is refused with `400
/// ndxp.bad_request` whose detail names the path rule, and that `backend`
/// received none of them.
pub async fn assert_bad_paths_refused(
    addr: SocketAddr,
    prefix: &str,
    headers: &[(&str, &str)],
    backend: &RecordingBackend,
) {
    let before = backend.exchanges().len();
    for bad in BAD_PATHS {
        let a = raw_request(addr, &format!("{prefix}{bad}"), headers).await;
        assert_eq!(a.status, 400, "{bad}: {:?}", a.body);
        assert_eq!(
            a.problem_code().as_deref(),
            Some("ndxp.bad_request"),
            "{bad}"
        );
        let detail = a.json()["detail"].as_str().unwrap_or_default().to_owned();
        assert!(detail.contains("path rule"), "{bad}: {detail}");
    }
    let after = backend.exchanges();
    assert_eq!(
        after.len(),
        before,
        "the backend saw a refused path: {after:?}"
    );
}

/// The paths every edge must refuse with `400 ndxp.bad_request` before a
/// backend sees them (appended after a service's base path).
pub const BAD_PATHS: &[&str] = &[
    "/a%2f..%2f..%2fadmin",
    "/a%5c..%5cb",
    "/..;/admin",
    "/%252e%252e/admin",
    "/%c0%ae%c0%ae/x",
    "/../admin",
    "/%2e%2e/admin",
    "/a%00",
    "/a\\b",
];
