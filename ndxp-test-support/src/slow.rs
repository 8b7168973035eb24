//! Slow clients for the edge tests: a client that sends a request one byte
//! at a time and reports when the server closed the connection, and a TLS
//! client that accepts any server certificate (for trickling inside TLS).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ndxp_sign::openssl::ssl::{Ssl, SslConnector, SslMethod, SslVerifyMode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_openssl::SslStream;

/// The start of an HTTP/1.1 request whose header section never ends:
/// [`trickle`] sends it, then the letter `a` forever (a header value that
/// keeps growing).
pub const ENDLESS_HEADER: &[u8] = b"GET / HTTP/1.1\r\nHost: ndxp.test\r\nX-Slow: ";

/// The start of a TLS handshake record announcing 512 bytes that never
/// all come: a client stuck in its TLS handshake.
pub const ENDLESS_TLS_RECORD: &[u8] = b"\x16\x03\x01\x02\x00";

/// Sends `prefix` and then `a` forever over `stream`, one byte every
/// `every`, reading whatever the server sends. Returns how long the
/// connection stayed open once the server closed it (end of stream, or an
/// error reading or writing), or `None` when it was still open after
/// `give_up`.
pub async fn trickle<S>(
    mut stream: S,
    prefix: &[u8],
    every: Duration,
    give_up: Duration,
) -> Option<Duration>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let start = Instant::now();
    let mut bytes = prefix.iter().copied().chain(std::iter::repeat(b'a'));
    let mut buf = [0u8; 4096];
    while start.elapsed() < give_up {
        let b = bytes.next().unwrap_or(b'a');
        if stream.write_all(&[b]).await.is_err() || stream.flush().await.is_err() {
            return Some(start.elapsed());
        }
        let until = Instant::now() + every;
        while let Some(left) = until.checked_duration_since(Instant::now()) {
            match tokio::time::timeout(left, stream.read(&mut buf)).await {
                Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
                Ok(Ok(_)) => {}
                Err(_) => break,
            }
        }
    }
    None
}

/// Connects to `addr` and trickles `prefix` as [`trickle`] does, one byte a
/// second, giving up after 60 s.
pub async fn trickle_tcp(addr: SocketAddr, prefix: &[u8]) -> Option<Duration> {
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    trickle(tcp, prefix, Duration::from_secs(1), Duration::from_secs(60)).await
}

/// Connects to `addr` over TLS ([`tls_connect`], no client certificate)
/// and trickles `prefix` inside the connection as [`trickle_tcp`] does.
pub async fn trickle_tls(addr: SocketAddr, prefix: &[u8]) -> Option<Duration> {
    let stream = tls_connect(addr, None).await;
    trickle(
        stream,
        prefix,
        Duration::from_secs(1),
        Duration::from_secs(60),
    )
    .await
}

/// A TLS connection to `addr` that accepts any server certificate,
/// presenting the client certificate and key (PEM) when given.
pub async fn tls_connect(addr: SocketAddr, identity: Option<(&str, &str)>) -> SslStream<TcpStream> {
    let mut b = SslConnector::builder(SslMethod::tls_client()).expect("an OpenSSL client context");
    b.set_verify(SslVerifyMode::NONE);
    b.set_alpn_protos(b"\x08http/1.1").expect("ALPN http/1.1");
    if let Some((cert, key)) = identity {
        let cert =
            ndxp_sign::openssl::x509::X509::from_pem(cert.as_bytes()).expect("a PEM certificate");
        let key = ndxp_sign::openssl::pkey::PKey::private_key_from_pem(key.as_bytes())
            .expect("a PEM key");
        b.set_certificate(&cert).expect("the client certificate");
        b.set_private_key(&key).expect("the client key");
    }
    let ssl = Ssl::new(b.build().context()).expect("a TLS session");
    let tcp = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {addr}: {e}"));
    let mut stream = SslStream::new(ssl, tcp).expect("a TLS stream");
    std::pin::Pin::new(&mut stream)
        .connect()
        .await
        .unwrap_or_else(|e| panic!("the TLS handshake with {addr} failed: {e}"));
    stream
}

/// Asserts that `what` closed a trickling client (`open`, as [`trickle`]
/// returns it) at about `timeout`: not before `timeout` less half a second,
/// and at most 5 s after it.
///
/// # Panics
/// When the connection was kept open, closed too early or too late.
pub fn assert_cut(what: &str, open: Option<Duration>, timeout: Duration) {
    let open = open.unwrap_or_else(|| panic!("the {what} kept a trickling client open"));
    let earliest = timeout.saturating_sub(Duration::from_millis(500));
    assert!(
        open >= earliest && open < timeout + Duration::from_secs(5),
        "the {what} closed a trickling client after {open:?}; the time-out is {timeout:?}"
    );
}
