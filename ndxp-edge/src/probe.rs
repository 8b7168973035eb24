//! Probes of the parties a binary depends on, each answering with one
//! [`Check`]: ok with what was found, or failed with what went wrong and
//! the caller's hint. `ndxp-node diagnose` and `ndxp-gateway diagnose`
//! (and their admin APIs) are built from these.
//!
//! | probe | passes when |
//! |---|---|
//! | [`timestamp`] | the TSA stamps a fresh random imprint and its answer verifies |
//! | [`ocsp`] | one OCSP responder gives a verified `good` answer about a certificate |
//! | [`http_get`] | a `GET` of a URL gets an answer below 500 |
//! | [`tcp_connect`] | a TCP connection to the host and port of a URL opens |
//! | [`bounded`] | wraps any probe: a failure naming the time-out when it takes longer |
//!
//! Every failure's detail starts with the address that was asked, so an
//! operator sees which party is broken. A probe never panics on what the
//! other side sends; it reports it.
//!
//! ```no_run
//! use std::time::Duration;
//! use ndxp_edge::forward::{Forwarder, ForwarderOptions};
//! use ndxp_edge::probe;
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let timeout = Duration::from_secs(3);
//! let forwarder = Forwarder::new(&ForwarderOptions::default())?;
//! let check = probe::bounded(
//!     "backend citizen".to_owned(),
//!     timeout,
//!     probe::http_get(
//!         "backend citizen",
//!         &forwarder,
//!         "http://127.0.0.1:9000/",
//!         timeout,
//!         "start the backend or fix its URL",
//!     ),
//! )
//! .await;
//! println!("{}", ndxp_core::check::CheckReport::new(vec![check]).to_text());
//! # Ok(()) }
//! ```

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use chrono::Utc;
use ndxp_core::check::Check;
use ndxp_core::ErrorChain;
use ndxp_sign::ocsp::OcspClientRequest;
use ndxp_sign::openssl::hash::MessageDigest;
use ndxp_sign::openssl::x509::X509;
use ndxp_sign::revocation::CertStatus;
use ndxp_sign::tsa::{ImprintAlgorithm, TimestampRequest, TsaTrust};

use crate::forward::{ForwardError, Forwarder, ForwarderOptions};

/// Largest OCSP or TSA answer read, in bytes.
pub const MAX_ANSWER_BYTES: u64 = 256 * 1024;

/// `fut`, or a failure named `name` after `timeout` (with a hint to check
/// that the other side runs and can be reached).
pub async fn bounded(name: String, timeout: Duration, fut: impl Future<Output = Check>) -> Check {
    match tokio::time::timeout(timeout, fut).await {
        Ok(c) => c,
        Err(_) => Check::failed(name, format!("no answer within {} s", timeout.as_secs()))
            .with_hint("the other side is unreachable or hangs: check that it runs, the address and the firewall"),
    }
}

/// A forwarder for the probes that talk to the platform's own services
/// (OCSP, TSA): system roots, connect time-out `timeout`, no pooling.
fn platform_forwarder(timeout: Duration) -> Result<Forwarder, ForwardError> {
    Forwarder::new(&ForwarderOptions {
        pool_max_idle_per_host: 0,
        connect_timeout: timeout,
        ..ForwarderOptions::default()
    })
}

/// `POST`s `body` as `content_type` to `url`; the answer's body when the
/// status is 2xx, else a description starting with the status.
async fn post(
    url: &str,
    content_type: &'static str,
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Bytes, String> {
    let forwarder = platform_forwarder(timeout).map_err(|e| ErrorChain(&e).to_string())?;
    let uri: http::Uri = url.parse().map_err(|e| format!("not a URL: {e}"))?;
    let req = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, content_type)
        .body(Bytes::from(body))
        .map_err(|e| e.to_string())?;
    let resp = forwarder
        .send(req, timeout, MAX_ANSWER_BYTES)
        .await
        .map_err(|e| describe(&e))?;
    if !resp.status().is_success() {
        return Err(format!("answered HTTP {}", resp.status()));
    }
    Ok(resp.into_body())
}

/// "cannot connect: ..." for a refused or failed connection, else the
/// error's chain.
fn describe(e: &ForwardError) -> String {
    match e {
        ForwardError::Unreachable(source) if source.is_connect() => {
            format!("cannot connect: {}", ErrorChain(source))
        }
        ForwardError::Timeout(t) => format!("no answer within {} ms", t.as_millis()),
        other => ErrorChain(other).to_string(),
    }
}

/// A timestamp round trip: a query for a fresh random SHA-256 imprint
/// (with a nonce, asking for the certificate) to the RFC 3161 endpoint
/// `url`, and the answer verified against `trust`.
pub async fn timestamp(
    name: &str,
    url: &str,
    trust: &TsaTrust,
    timeout: Duration,
    hint: &str,
) -> Check {
    let fail = |detail: String| Check::failed(name, format!("{url}: {detail}")).with_hint(hint);
    let mut imprint = [0u8; 32];
    if let Err(e) = ndxp_sign::openssl::rand::rand_bytes(&mut imprint) {
        return fail(e.to_string());
    }
    let request = match TimestampRequest::new(ImprintAlgorithm::Sha256, &imprint, true, true) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let reply = match post(
        url,
        "application/timestamp-query",
        request.der().to_vec(),
        timeout,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    match ndxp_sign::tsa::verify_response(&reply, &request, trust) {
        Ok(_) => Check::ok(name, format!("{url}: a verified timestamp")),
        Err(e) => fail(format!("the answer does not verify: {e}")),
    }
}

/// An OCSP request about `cert` (issued by `issuer`) to the responder at
/// `url`; passes when the answer verifies against `anchors` and says
/// `good`.
pub async fn ocsp(
    name: &str,
    url: &str,
    cert: &X509,
    issuer: &X509,
    anchors: &[X509],
    timeout: Duration,
    hint: &str,
) -> Check {
    let fail = |detail: String| Check::failed(name, format!("{url}: {detail}")).with_hint(hint);
    let request = match OcspClientRequest::with_options(cert, issuer, MessageDigest::sha1(), false)
    {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    let answer = match post(
        url,
        "application/ocsp-request",
        request.der().to_vec(),
        timeout,
    )
    .await
    {
        Ok(a) => a,
        Err(e) => return fail(e),
    };
    let subject = subject(cert);
    match request.verify_response(&answer, anchors, Utc::now()) {
        Ok(check) => match check.status {
            CertStatus::Good => Check::ok(name, format!("{url}: good for {subject}")),
            CertStatus::Revoked { at, .. } => fail(format!("{subject} was revoked at {at}")),
            CertStatus::Unknown => fail(format!("the responder does not know {subject}")),
        },
        Err(e) => fail(format!("the answer does not verify: {e}")),
    }
}

/// The certificate's common name (its subject's last one), or the SHA-256
/// fingerprint when it has none.
fn subject(cert: &X509) -> String {
    cert.subject_name()
        .entries_by_nid(ndxp_sign::openssl::nid::Nid::COMMONNAME)
        .last()
        .map(|e| String::from_utf8_lossy(e.data().as_slice()).into_owned())
        .unwrap_or_else(|| format!("SHA-256 {}", ndxp_sign::cert::fingerprint_sha256(cert)))
}

/// A `GET` of `url` through `forwarder` (which carries the TLS settings
/// towards it): ok for any answer below 500; a 5xx answer, a refused
/// connection or no answer within `timeout` fails, naming `url`.
pub async fn http_get(
    name: &str,
    forwarder: &Forwarder,
    url: &str,
    timeout: Duration,
    hint: &str,
) -> Check {
    let fail = |detail: String| Check::failed(name, format!("{url}: {detail}")).with_hint(hint);
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return fail(format!("not a URL: {e}")),
    };
    let req = match http::Request::get(uri).body(Bytes::new()) {
        Ok(r) => r,
        Err(e) => return fail(e.to_string()),
    };
    // The body is not needed: a small limit keeps a large page from
    // failing the check (a too-large answer still proves it answers).
    match forwarder.send(req, timeout, MAX_ANSWER_BYTES).await {
        Ok(resp) if resp.status().is_server_error() => {
            fail(format!("answered HTTP {}", resp.status()))
        }
        Ok(resp) => Check::ok(
            name,
            format!("{url}: reachable (HTTP {})", resp.status().as_u16()),
        ),
        Err(ForwardError::TooLarge(_)) => Check::ok(name, format!("{url}: reachable")),
        Err(e) => fail(describe(&e)),
    }
}

/// A TCP connection to the host and port of `url` (the scheme's port when
/// it names none).
pub async fn tcp_connect(name: &str, url: &str, hint: &str) -> Check {
    let fail = |detail: String| Check::failed(name, format!("{url}: {detail}")).with_hint(hint);
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(e) => return fail(e.to_string()),
    };
    let Some(host) = uri.host() else {
        return fail("no host".into());
    };
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("https") {
            443
        } else {
            80
        });
    match tokio::net::TcpStream::connect((host.as_str(), port)).await {
        Ok(_) => Check::ok(name, format!("{url}: reachable")),
        Err(e) => fail(format!("cannot connect: {e}")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// A port on 127.0.0.1 where nothing listens.
    fn closed_port() -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    }

    /// A server answering every connection with `status` and closing.
    async fn answering(status: u16) -> String {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let text = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi"
                );
                let _ = s.write_all(text.as_bytes()).await;
            }
        });
        format!("http://{addr}/")
    }

    /// A server that accepts and never answers.
    async fn silent() -> (String, tokio::task::JoinHandle<()>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                held.push(s);
            }
        });
        (format!("http://{addr}/"), task)
    }

    fn forwarder() -> Forwarder {
        Forwarder::new(&ForwarderOptions::default()).unwrap()
    }

    #[tokio::test]
    async fn http_get_passes_below_500_and_names_the_address_otherwise() {
        let t = Duration::from_secs(3);
        let ok = answering(404).await;
        let c = http_get("backend a", &forwarder(), &ok, t, "h").await;
        assert!(c.is_ok(), "{c:?}");
        assert!(c.detail.contains("HTTP 404"), "{c:?}");

        let bad = answering(503).await;
        let c = http_get("backend a", &forwarder(), &bad, t, "start it").await;
        assert!(!c.is_ok());
        assert!(c.detail.starts_with(&bad), "{c:?}");
        assert!(c.detail.contains("503"), "{c:?}");
        assert_eq!(c.hint.as_deref(), Some("start it"));

        let closed = format!("http://127.0.0.1:{}/", closed_port());
        let c = http_get("backend a", &forwarder(), &closed, t, "h").await;
        assert!(!c.is_ok());
        assert!(c.detail.starts_with(&closed), "{c:?}");
        assert!(c.detail.contains("cannot connect"), "{c:?}");

        let (hang, task) = silent().await;
        let started = std::time::Instant::now();
        let c = http_get(
            "backend a",
            &forwarder(),
            &hang,
            Duration::from_millis(300),
            "h",
        )
        .await;
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(!c.is_ok());
        assert!(c.detail.contains("no answer within 300 ms"), "{c:?}");
        task.abort();

        let c = http_get("backend a", &forwarder(), "not a url", t, "h").await;
        assert!(!c.is_ok());
        assert!(c.detail.starts_with("not a url: not a URL"), "{c:?}");
    }

    #[tokio::test]
    async fn tcp_connect_tells_open_from_closed() {
        let open = answering(200).await;
        assert!(tcp_connect("b", &open, "h").await.is_ok());
        let closed = format!("http://127.0.0.1:{}", closed_port());
        let c = tcp_connect("b", &closed, "h").await;
        assert!(c.detail.contains("cannot connect"), "{c:?}");
        assert!(!tcp_connect("b", "http://", "h").await.is_ok());
    }

    #[tokio::test]
    async fn bounded_fails_a_hanging_probe_by_name() {
        let c = bounded(
            "x".into(),
            Duration::from_millis(50),
            std::future::pending(),
        )
        .await;
        assert_eq!((c.name.as_str(), c.is_ok()), ("x", false));
        assert!(c.hint.is_some());
    }

    #[tokio::test]
    async fn tsa_and_ocsp_failures_name_the_responder() {
        let t = Duration::from_secs(3);
        let err = answering(503).await;
        let c = timestamp("timestamp", &err, &TsaTrust::new(vec![]), t, "TSA hint").await;
        assert!(!c.is_ok());
        assert!(
            c.detail.starts_with(&err) && c.detail.contains("503"),
            "{c:?}"
        );
        assert_eq!(c.hint.as_deref(), Some("TSA hint"));
        // A 200 with garbage is not a timestamp.
        let junk = answering(200).await;
        let c = timestamp("timestamp", &junk, &TsaTrust::new(vec![]), t, "h").await;
        assert!(c.detail.contains("does not verify"), "{c:?}");

        let cert = self_signed();
        let closed = format!("http://127.0.0.1:{}/ocsp", closed_port());
        let c = ocsp("OCSP", &closed, &cert, &cert, &[], t, "OCSP hint").await;
        assert!(!c.is_ok());
        assert!(c.detail.starts_with(&closed), "{c:?}");
        assert!(c.detail.contains("cannot connect"), "{c:?}");
        let c = ocsp("OCSP", &junk, &cert, &cert, &[], t, "h").await;
        assert!(c.detail.contains("does not verify"), "{c:?}");
    }

    fn self_signed() -> X509 {
        use ndxp_sign::openssl::{ec, nid::Nid, pkey::PKey, x509};
        let group = ec::EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        let key = PKey::from_ec_key(ec::EcKey::generate(&group).unwrap()).unwrap();
        let mut name = x509::X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", "probe test").unwrap();
        let name = name.build();
        let mut b = x509::X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_issuer_name(&name).unwrap();
        b.set_pubkey(&key).unwrap();
        let now = ndxp_sign::openssl::asn1::Asn1Time::days_from_now(0).unwrap();
        let later = ndxp_sign::openssl::asn1::Asn1Time::days_from_now(1).unwrap();
        b.set_not_before(&now).unwrap();
        b.set_not_after(&later).unwrap();
        b.sign(&key, MessageDigest::sha256()).unwrap();
        b.build()
    }
}
