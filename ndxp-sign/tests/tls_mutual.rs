#![allow(clippy::unwrap_used)]
//! Mutual TLS 1.3 between nodes: who is accepted, who is refused, and
//! interop with `openssl s_client`.

use std::pin::Pin;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use chrono::{Duration as ChronoDuration, Utc};
use ndxp_core::id::{MemberId, NodeName};
use ndxp_sign::ca::{InitOptions, Pki};
use ndxp_sign::cert::{self, Profile};
use ndxp_sign::chain::ChainError;
use ndxp_sign::csr;
use ndxp_sign::key::{self, KeyAlgorithm};
use ndxp_sign::ocsp::{IntermediatePolicy, OcspCheck, OcspStatusCache};
use ndxp_sign::revocation::{CertStatus, RevocationReason};
use ndxp_sign::tls::{self, PeerIdentity, PeerPolicy, TlsError, TlsIdentity};
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
use openssl::x509::X509;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const TIMEOUT: Duration = Duration::from_secs(10);

struct Node {
    key: PKey<Private>,
    cert: X509,
}

struct Fixture {
    tmp: tempfile::TempDir,
    pki: Pki,
    rogue: Pki,
    node1: Node,
    node2: Node,
    revoked: Node,
    rogue_node: Node,
    sign: Node,
    cache: Arc<OcspStatusCache>,
}

fn member(s: &str) -> MemberId {
    s.parse().unwrap()
}

fn issue(pki: &Pki, m: &str, node: &str, profile: Profile) -> Node {
    let key = KeyAlgorithm::EcP256.generate().unwrap();
    let req = match profile {
        Profile::Auth => {
            let n: NodeName = node.parse().unwrap();
            csr::build_auth_csr(&member(m), &n, &[], &[], &key).unwrap()
        }
        Profile::Sign => csr::build_sign_csr(&member(m), &key).unwrap(),
    };
    let cert = pki.issue(&req, profile, 1).unwrap();
    Node { key, cert }
}

fn good() -> OcspCheck {
    let now = Utc::now();
    OcspCheck {
        status: CertStatus::Good,
        this_update: now,
        next_update: Some(now + ChronoDuration::hours(1)),
        produced_at: now,
    }
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        ocsp_url: "http://127.0.0.1:9/ocsp".to_string(),
        ..InitOptions::default()
    };
    let pki = Pki::init(&tmp.path().join("pki"), &opts).unwrap();
    // Same CA names, different keys: an impostor CA.
    let rogue = Pki::init(&tmp.path().join("rogue"), &opts).unwrap();
    let node1 = issue(&pki, "VN/GOV/000.00.00.H29", "node1", Profile::Auth);
    let node2 = issue(&pki, "VN/COM/0101234567", "node2", Profile::Auth);
    let revoked = issue(&pki, "VN/COM/0101234567", "node3", Profile::Auth);
    let rogue_node = issue(&rogue, "VN/COM/0101234567", "node2", Profile::Auth);
    let sign = issue(&pki, "VN/COM/0101234567", "node2", Profile::Sign);
    let at = Utc::now() - ChronoDuration::minutes(1);
    pki.revoke(&revoked.cert, RevocationReason::KeyCompromise, at)
        .unwrap();

    let cache = Arc::new(OcspStatusCache::new(IntermediatePolicy::TrustIntermediates));
    for n in [&node1, &node2, &rogue_node, &sign] {
        cache.insert(&n.cert, good());
    }
    cache.insert(
        &revoked.cert,
        OcspCheck {
            status: CertStatus::Revoked {
                at,
                reason: RevocationReason::KeyCompromise,
            },
            ..good()
        },
    );
    Fixture {
        tmp,
        pki,
        rogue,
        node1,
        node2,
        revoked,
        rogue_node,
        sign,
        cache,
    }
}

impl Fixture {
    fn anchors(&self) -> Vec<X509> {
        vec![self.pki.root_cert().clone()]
    }

    fn identity(&self, n: &Node) -> TlsIdentity {
        TlsIdentity::new(n.key.clone(), n.cert.clone(), self.pki.chain().to_vec()).unwrap()
    }

    /// The server side: registered are node1, node2 and the revoked node3
    /// (registration does not save a revoked certificate).
    fn server_policy(&self) -> PeerPolicy {
        let allowed: Vec<String> = [&self.node1, &self.node2, &self.revoked, &self.sign]
            .iter()
            .map(|n| cert::fingerprint_sha256(&n.cert))
            .collect();
        PeerPolicy::registered(self.anchors(), move |_m, _n, fp| {
            allowed.iter().any(|a| a == fp)
        })
        .with_revocation(self.cache.clone())
    }

    fn client_policy(&self) -> PeerPolicy {
        PeerPolicy::pinned_per_connection(self.anchors()).with_revocation(self.cache.clone())
    }
}

type ServerResult = Result<(tokio_openssl::SslStream<TcpStream>, PeerIdentity), TlsError>;

/// Listens on 127.0.0.1:0, accepts one connection with `identity` and
/// `policy`, and on success writes `hello` to the client.
async fn serve_one(
    identity: &TlsIdentity,
    policy: PeerPolicy,
) -> (u16, tokio::task::JoinHandle<Result<PeerIdentity, TlsError>>) {
    serve_one_with_timeout(identity, policy, TIMEOUT).await
}

async fn serve_one_with_timeout(
    identity: &TlsIdentity,
    policy: PeerPolicy,
    timeout: Duration,
) -> (u16, tokio::task::JoinHandle<Result<PeerIdentity, TlsError>>) {
    let acceptor = tls::server_acceptor(identity, policy.clone()).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let res: ServerResult = tls::accept(&acceptor, tcp, &policy, timeout).await;
        let (mut stream, peer) = res?;
        stream.write_all(b"hello").await.unwrap();
        stream.shutdown().await.ok();
        Ok(peer)
    });
    (port, task)
}

async fn tcp(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port)).await.unwrap()
}

/// A client built with plain OpenSSL (no policy), for peers the module
/// would never build: no certificate, a signing certificate, TLS 1.2.
fn raw_client(cert: Option<(&Node, &[X509])>, max: SslVersion) -> SslConnector {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    b.set_verify(SslVerifyMode::NONE);
    b.set_max_proto_version(Some(max)).unwrap();
    if let Some((n, chain)) = cert {
        b.set_private_key(&n.key).unwrap();
        b.set_certificate(&n.cert).unwrap();
        for c in chain {
            b.add_extra_chain_cert(c.clone()).unwrap();
        }
    }
    b.build()
}

/// Runs a raw client handshake and tries to read; returns what was read
/// (a refused client must never read application data).
async fn raw_connect(connector: &SslConnector, port: u16) -> Vec<u8> {
    let ssl = connector.configure().unwrap().into_ssl("node").unwrap();
    let mut s = tokio_openssl::SslStream::new(ssl, tcp(port).await).unwrap();
    if Pin::new(&mut s).connect().await.is_err() {
        return Vec::new();
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf).await;
    buf
}

async fn node_client(
    f: &Fixture,
    client: &Node,
    port: u16,
    pinned: &[&str],
) -> Result<PeerIdentity, TlsError> {
    let connector = tls::client_connector(&f.identity(client), f.client_policy()).unwrap();
    let (mut stream, peer) = tls::connect(&connector, tcp(port).await, pinned, TIMEOUT).await?;
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.ok();
    assert_eq!(buf, b"hello", "an accepted client reads the server's data");
    assert_eq!(stream.ssl().selected_alpn_protocol(), Some(&b"h2"[..]));
    Ok(peer)
}

#[tokio::test]
async fn mutual_handshake_reports_each_peer_both_ways() {
    let f = fixture();
    for (server, client) in [(&f.node1, &f.node2), (&f.node2, &f.node1)] {
        let (port, task) = serve_one(&f.identity(server), f.server_policy()).await;
        let seen_by_client =
            node_client(&f, client, port, &[&cert::fingerprint_sha256(&server.cert)])
                .await
                .unwrap();
        let seen_by_server = task.await.unwrap().unwrap();

        let (sm, sn) = cert::node_of(&server.cert).unwrap();
        let (cm, cn) = cert::node_of(&client.cert).unwrap();
        assert_eq!(
            seen_by_client,
            PeerIdentity {
                member: sm,
                node: sn,
                fingerprint: cert::fingerprint_sha256(&server.cert)
            }
        );
        assert_eq!(
            seen_by_server,
            PeerIdentity {
                member: cm,
                node: cn,
                fingerprint: cert::fingerprint_sha256(&client.cert)
            }
        );
    }
}

#[tokio::test]
async fn pinned_fingerprint_accepts_openssl_colon_form() {
    let f = fixture();
    let (port, task) = serve_one(&f.identity(&f.node1), f.server_policy()).await;
    let fp = cert::fingerprint_sha256(&f.node1.cert).to_uppercase();
    let colon: Vec<String> = fp
        .as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    let peer = node_client(&f, &f.node2, port, &[&colon.join(":")])
        .await
        .unwrap();
    assert_eq!(peer.node.to_string(), "node1");
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn any_of_several_pinned_fingerprints_is_accepted_while_rotating() {
    let f = fixture();
    let (port, task) = serve_one(&f.identity(&f.node1), f.server_policy()).await;
    let old = cert::fingerprint_sha256(&f.revoked.cert);
    let new = cert::fingerprint_sha256(&f.node1.cert);
    let peer = node_client(&f, &f.node2, port, &[&old, &new])
        .await
        .unwrap();
    assert_eq!(peer.fingerprint, new);
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn client_without_certificate_is_refused() {
    let f = fixture();
    let (port, task) = serve_one(&f.identity(&f.node1), f.server_policy()).await;
    let read = raw_connect(&raw_client(None, SslVersion::TLS1_3), port).await;
    assert!(read.is_empty());
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, TlsError::NoPeerCertificate), "{err:?}");
}

async fn refused_node_client(f: &Fixture, client: &TlsIdentity, policy: PeerPolicy) -> TlsError {
    let (port, task) = serve_one(&f.identity(&f.node1), policy).await;
    let connector = tls::client_connector(client, f.client_policy()).unwrap();
    let pinned = cert::fingerprint_sha256(&f.node1.cert);
    // In TLS 1.3 the client may finish its side before the server judges its
    // it must never read application data.
    // certificate; either way it must never read application data, and it
    // learns of the refusal from a TLS alert (the server rejects inside the
    // handshake rather than closing an established connection).
    let client_error = match tls::connect(&connector, tcp(port).await, &[&pinned], TIMEOUT).await {
        Ok((mut s, _)) => {
            let mut buf = Vec::new();
            let res = s.read_to_end(&mut buf).await;
            assert!(buf.is_empty(), "a refused client read {buf:?}");
            res.unwrap_err().to_string()
        }
        Err(e) => format!("{e} {:?}", std::error::Error::source(&e)),
    };
    assert!(client_error.contains("alert"), "{client_error}");
    task.await.unwrap().unwrap_err()
}

#[tokio::test]
async fn client_from_another_ca_is_refused() {
    let f = fixture();
    let rogue = TlsIdentity::new(
        f.rogue_node.key.clone(),
        f.rogue_node.cert.clone(),
        f.rogue.chain().to_vec(),
    )
    .unwrap();
    let err = refused_node_client(&f, &rogue, f.server_policy()).await;
    assert!(
        matches!(err, TlsError::PeerUntrusted(ChainError::Untrusted { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn revoked_client_is_refused() {
    let f = fixture();
    let err = refused_node_client(&f, &f.identity(&f.revoked), f.server_policy()).await;
    assert!(
        matches!(
            err,
            TlsError::PeerUntrusted(ChainError::Revoked {
                reason: RevocationReason::KeyCompromise,
                ..
            })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn client_without_cached_revocation_answer_is_refused() {
    let f = fixture();
    let empty = Arc::new(OcspStatusCache::new(IntermediatePolicy::TrustIntermediates));
    let policy = PeerPolicy::registered(f.anchors(), |_, _, _| true).with_revocation(empty);
    let err = refused_node_client(&f, &f.identity(&f.node2), policy).await;
    assert!(
        matches!(
            err,
            TlsError::PeerUntrusted(ChainError::RevocationCheckFailed { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn expired_client_is_refused() {
    let f = fixture();
    // The client's certificate is valid for one day; the server's clock is
    // three days ahead.
    let policy = f
        .server_policy()
        .with_clock(|| Utc::now() + ChronoDuration::days(3));
    let err = refused_node_client(&f, &f.identity(&f.node2), policy).await;
    assert!(
        matches!(err, TlsError::PeerUntrusted(ChainError::Expired { .. })),
        "{err:?}"
    );
}

#[tokio::test]
async fn signing_certificate_as_tls_certificate_is_refused() {
    let f = fixture();
    // The module will not even build an identity from it.
    let err = TlsIdentity::new(f.sign.key.clone(), f.sign.cert.clone(), vec![]).unwrap_err();
    assert!(
        matches!(err, TlsError::NotNodeCertificate { .. }),
        "{err:?}"
    );

    let (port, task) = serve_one(&f.identity(&f.node1), f.server_policy()).await;
    let chain = f.pki.chain().to_vec();
    let read = raw_connect(
        &raw_client(Some((&f.sign, &chain)), SslVersion::TLS1_3),
        port,
    )
    .await;
    assert!(read.is_empty());
    let err = task.await.unwrap().unwrap_err();
    assert!(
        matches!(
            err,
            TlsError::PeerUntrusted(ChainError::WrongPurpose { .. })
        ),
        "{err:?}"
    );
}

#[tokio::test]
async fn node_not_in_allow_list_is_refused() {
    let f = fixture();
    let only_node1 = cert::fingerprint_sha256(&f.node1.cert);
    let policy = PeerPolicy::registered(f.anchors(), move |_, _, fp| fp == only_node1)
        .with_revocation(f.cache.clone());
    let err = refused_node_client(&f, &f.identity(&f.node2), policy).await;
    match err {
        TlsError::PeerNotRegistered {
            member,
            node,
            fingerprint,
        } => {
            assert_eq!(member.to_string(), "VN/COM/0101234567");
            assert_eq!(node.to_string(), "node2");
            assert_eq!(fingerprint, cert::fingerprint_sha256(&f.node2.cert));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn server_with_other_fingerprint_than_pinned_is_refused() {
    let f = fixture();
    // node1 answers, but the client dials node2's registered fingerprint.
    let (port, task) = serve_one(&f.identity(&f.node1), f.server_policy()).await;
    let connector = tls::client_connector(&f.identity(&f.node2), f.client_policy()).unwrap();
    let pinned = cert::fingerprint_sha256(&f.node2.cert);
    let err = tls::connect(&connector, tcp(port).await, &[&pinned], TIMEOUT)
        .await
        .unwrap_err();
    match err {
        TlsError::FingerprintMismatch { expected, found } => {
            assert_eq!(expected, vec![pinned]);
            assert_eq!(found, cert::fingerprint_sha256(&f.node1.cert));
        }
        other => panic!("{other:?}"),
    }
    // The server never completes the handshake either.
    assert!(task.await.unwrap().is_err());
}

#[tokio::test]
async fn connect_refuses_server_from_another_ca() {
    let f = fixture();
    let rogue_server = TlsIdentity::new(
        f.rogue_node.key.clone(),
        f.rogue_node.cert.clone(),
        f.rogue.chain().to_vec(),
    )
    .unwrap();
    let (port, task) = serve_one(&rogue_server, f.server_policy()).await;
    let connector = tls::client_connector(&f.identity(&f.node1), f.client_policy()).unwrap();
    // Even pinned to the right fingerprint, the chain must be trusted.
    let pinned = cert::fingerprint_sha256(&f.rogue_node.cert);
    let err = tls::connect(&connector, tcp(port).await, &[&pinned], TIMEOUT)
        .await
        .unwrap_err();
    assert!(
        matches!(err, TlsError::PeerUntrusted(ChainError::Untrusted { .. })),
        "{err:?}"
    );
    assert!(task.await.unwrap().is_err());
}

#[tokio::test]
async fn tls12_only_client_is_refused() {
    let f = fixture();
    let (port, task) = serve_one(&f.identity(&f.node1), f.server_policy()).await;
    let chain = f.pki.chain().to_vec();
    let read = raw_connect(
        &raw_client(Some((&f.node2, &chain)), SslVersion::TLS1_2),
        port,
    )
    .await;
    assert!(read.is_empty());
    let err = task.await.unwrap().unwrap_err();
    assert!(
        matches!(err, TlsError::WrongProtocolVersion { .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn silent_client_times_out() {
    let f = fixture();
    let (port, task) = serve_one_with_timeout(
        &f.identity(&f.node1),
        f.server_policy(),
        Duration::from_millis(200),
    )
    .await;
    let _idle = tcp(port).await;
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, TlsError::Timeout(_)), "{err:?}");
}

#[test]
fn identity_from_files_and_mismatched_key() {
    let f = fixture();
    let dir = f.tmp.path();
    let key_path = dir.join("auth.key");
    key::write_private_key_file(&key_path, &f.node1.key, None, false).unwrap();
    let mut pem = f.node1.cert.to_pem().unwrap();
    for c in f.pki.chain() {
        pem.extend(c.to_pem().unwrap());
    }
    let cert_path = dir.join("auth.pem");
    std::fs::write(&cert_path, &pem).unwrap();
    let id = TlsIdentity::from_pem_files(&key_path, None, &cert_path).unwrap();
    assert_eq!(id.node().to_string(), "node1");
    assert_eq!(id.member().to_string(), "VN/GOV/000.00.00.H29");
    assert_eq!(id.chain().len(), f.pki.chain().len());
    assert_eq!(id.fingerprint(), cert::fingerprint_sha256(&f.node1.cert));

    let err = TlsIdentity::new(f.node2.key.clone(), f.node1.cert.clone(), vec![]).unwrap_err();
    assert!(matches!(err, TlsError::KeyMismatch { .. }), "{err:?}");

    let err = tls::server_acceptor(&id, PeerPolicy::registered(vec![], |_, _, _| true))
        .err()
        .unwrap();
    assert!(matches!(err, TlsError::NoTrustAnchors), "{err:?}");
}

/// Writes node2's key, certificate and chain and the root for `openssl`.
fn write_openssl_files(
    f: &Fixture,
) -> (
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
    std::path::PathBuf,
) {
    let dir = f.tmp.path();
    let key = dir.join("client.key");
    key::write_private_key_file(&key, &f.node2.key, None, true).unwrap();
    let cert = dir.join("client.pem");
    std::fs::write(&cert, f.node2.cert.to_pem().unwrap()).unwrap();
    let chain = dir.join("chain.pem");
    let mut pem = Vec::new();
    for c in f.pki.chain() {
        pem.extend(c.to_pem().unwrap());
    }
    std::fs::write(&chain, pem).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, f.pki.root_cert().to_pem().unwrap()).unwrap();
    (key, cert, chain, ca)
}

async fn s_client(port: u16, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = tokio::process::Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .args(["-tls1_3", "-verify_return_error", "-ign_eof"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn openssl_s_client_interop() {
    let f = fixture();
    let (key, cert, chain, ca) = write_openssl_files(&f);

    let (port, task) = serve_one(&f.identity(&f.node1), f.server_policy()).await;
    let (ok, out) = s_client(
        port,
        &[
            "-cert".as_ref(),
            cert.as_os_str(),
            "-cert_chain".as_ref(),
            chain.as_os_str(),
            "-key".as_ref(),
            key.as_os_str(),
            "-CAfile".as_ref(),
            ca.as_os_str(),
        ],
    )
    .await;
    let peer = task.await.unwrap();
    assert!(ok, "{out}");
    assert!(out.contains("TLSv1.3"), "{out}");
    assert!(out.contains("Verify return code: 0 (ok)"), "{out}");
    assert!(
        out.contains("hello"),
        "s_client should read the server's data: {out}"
    );
    assert_eq!(peer.unwrap().node.to_string(), "node2");

    let (port, task) = serve_one(&f.identity(&f.node1), f.server_policy()).await;
    let (ok, out) = s_client(port, &["-CAfile".as_ref(), ca.as_os_str()]).await;
    assert!(!ok, "s_client without a certificate must fail: {out}");
    let err = task.await.unwrap().unwrap_err();
    assert!(matches!(err, TlsError::NoPeerCertificate), "{err:?}");
    assert!(!out.contains("hello"), "{out}");
    assert!(
        out.contains("alert certificate required"),
        "s_client should report the server's refusal: {out}"
    );
}

/// Driving the acceptor without `tls::accept`: the handshake itself fails
/// for a refused peer, and `verify_peer` reports an accepted one.
#[tokio::test]
async fn acceptor_refuses_inside_handshake_and_verify_peer_reports_identity() {
    let f = fixture();
    let policy = f.server_policy();
    let acceptor = Arc::new(tls::server_acceptor(&f.identity(&f.node1), policy.clone()).unwrap());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = {
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let mut results = Vec::new();
            for _ in 0..2 {
                let (tcp, _) = listener.accept().await.unwrap();
                let ssl = openssl::ssl::Ssl::new(acceptor.context()).unwrap();
                let mut s = tokio_openssl::SslStream::new(ssl, tcp).unwrap();
                let res = Pin::new(&mut s).accept().await;
                results.push(res.map(|()| tls::verify_peer(s.ssl(), &policy)));
            }
            results
        })
    };
    let pinned = cert::fingerprint_sha256(&f.node1.cert);
    for client in [&f.revoked, &f.node2] {
        let connector = tls::client_connector(&f.identity(client), f.client_policy()).unwrap();
        let _ = tls::connect(&connector, tcp(port).await, &[&pinned], TIMEOUT).await;
    }
    let results = server.await.unwrap();
    assert!(
        results[0].is_err(),
        "the revoked client completed the handshake"
    );
    let peer = results[1].as_ref().unwrap().as_ref().unwrap();
    assert_eq!(peer.node.to_string(), "node2");
}
