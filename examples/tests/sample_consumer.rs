//! `sample-consumer` against a local HTTP server that answers as docs/design.md §4
//! (a node's client port) and §9 (the gateway with OAuth 2.0 client
//! credentials) say: the binary is run as a user would run it.

#![allow(clippy::unwrap_used)]

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::Command;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use ndxp_core::problem::{ErrorCode, Problem};
use ndxp_core::TransactionId;
use tokio::net::TcpListener;

const CLIENT: &str = "VN/GOV/000.00.00.G22/QLHT";
const SERVICE: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1";
const TXID: &str = "0192f3c4-5b6a-7c8d-9e0f-112233445566";
const HASH: &str = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
const TOKEN: &str = "tok-123";

fn problem(code: ErrorCode, detail: &str) -> Response<Full<Bytes>> {
    let p = Problem::new(code, detail).with_transaction(TXID.parse::<TransactionId>().unwrap());
    let mut r = Response::new(Full::new(Bytes::from(serde_json::to_vec(&p).unwrap())));
    *r.status_mut() = StatusCode::from_u16(p.status).unwrap();
    r.headers_mut()
        .insert("content-type", "application/problem+json".parse().unwrap());
    r.headers_mut().insert("ndxp-id", TXID.parse().unwrap());
    r
}

fn ok(body: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert("ndxp-id", TXID.parse().unwrap());
    r.headers_mut()
        .insert("ndxp-request-hash", HASH.parse().unwrap());
    r
}

/// A node's client port and a gateway with its token endpoint, on one port.
async fn answer(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let header = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let client = header("ndxp-client");
    let auth = header("authorization");
    let ctype = header("content-type");
    let user = header("ndxp-user-id");
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let node_prefix = format!("/r1/{SERVICE}");
    let gw_prefix = format!("/{SERVICE}");
    if path == "/token" {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("qlht-app:s%3Acret+1")
        );
        if ctype.as_deref() != Some("application/x-www-form-urlencoded")
            || &body[..] != b"grant_type=client_credentials"
        {
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"{\"error\":\"invalid_request\"}",
            )));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
        if auth.as_deref() != Some(want.as_str()) {
            let mut r = Response::new(Full::new(Bytes::from_static(
                b"{\"error\":\"invalid_client\",\"error_description\":\"unknown client or wrong secret\"}",
            )));
            *r.status_mut() = StatusCode::UNAUTHORIZED;
            return r;
        }
        let mut r = Response::new(Full::new(Bytes::from(format!(
            "{{\"access_token\":\"{TOKEN}\",\"token_type\":\"Bearer\",\"expires_in\":300}}"
        ))));
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
        return r;
    }
    if let Some(rest) = path.strip_prefix(&gw_prefix) {
        if auth.as_deref() != Some(&format!("Bearer {TOKEN}")) {
            return problem(ErrorCode::Unauthorized, "no valid access token");
        }
        return match rest {
            "/persons/001099012345" => ok("{\"id\":\"001099012345\",\"via\":\"gateway\"}"),
            _ => problem(ErrorCode::ServiceUnknown, "no such path"),
        };
    }
    let Some(rest) = path.strip_prefix(&node_prefix) else {
        return problem(ErrorCode::ServiceUnknown, "no such service");
    };
    match client.as_deref() {
        None => return problem(ErrorCode::BadRequest, "NDXP-Client is required"),
        Some(CLIENT) => {}
        Some(_) => {
            return problem(
                ErrorCode::ClientUnknown,
                "the client subsystem is not registered on this node",
            )
        }
    }
    match rest {
        "/persons/001099012345" if user.as_deref() == Some("citizen-42") => {
            ok("{\"id\":\"001099012345\",\"user\":\"citizen-42\"}")
        }
        "/persons/001099012345" => ok("{\"id\":\"001099012345\",\"full_name\":\"Nguyễn Văn An\"}"),
        "/denied" => problem(ErrorCode::AccessDenied, "QLHT has no right to citizen/v1"),
        "/backend-404" => {
            let mut r = ok("{\"error\":\"person_not_found\"}");
            *r.status_mut() = StatusCode::NOT_FOUND;
            r
        }
        _ => problem(ErrorCode::Internal, "unexpected path"),
    }
}

async fn server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req| async move { Ok::<_, Infallible>(answer(req).await) });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// Runs the binary; (exit code, stdout, stderr).
async fn consumer(args: Vec<String>) -> (i32, String, String) {
    tokio::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_sample-consumer"))
            .args(&args)
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

fn node_args(addr: SocketAddr, client: &str, path: &str) -> Vec<String> {
    [
        "--node",
        &format!("http://{addr}"),
        "--client",
        client,
        "--service",
        SERVICE,
        "--path",
        path,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_mode_prints_the_answer_and_its_transaction() {
    let addr = server().await;
    let (code, out, err) = consumer(node_args(addr, CLIENT, "/persons/001099012345")).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("status: 200 OK\n"), "{out}");
    assert!(out.contains(&format!("NDXP-Id: {TXID}\n")), "{out}");
    assert!(
        out.contains(&format!("NDXP-Request-Hash: {HASH}\n")),
        "{out}"
    );
    assert!(out.contains("\"full_name\":\"Nguyễn Văn An\""), "{out}");

    let mut args = node_args(addr, CLIENT, "/persons/001099012345");
    args.extend(["--user-id".into(), "citizen-42".into()]);
    let (code, out, _) = consumer(args).await;
    assert_eq!(code, 0);
    assert!(out.contains("\"user\":\"citizen-42\""), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_problems_are_printed_clearly_and_fail() {
    let addr = server().await;
    let (code, out, _) = consumer(node_args(
        addr,
        "VN/GOV/000.00.00.G22/OTHER",
        "/persons/001099012345",
    ))
    .await;
    assert_eq!(code, 1, "{out}");
    assert!(out.starts_with("status: 403 Forbidden\n"), "{out}");
    assert!(out.contains("error: ndxp.client_unknown — "), "{out}");
    assert!(
        out.contains("detail: the client subsystem is not registered on this node\n"),
        "{out}"
    );
    assert!(out.contains(&format!("transaction: {TXID}\n")), "{out}");
    assert!(
        out.contains("hint: the --client subsystem must be registered on this node"),
        "{out}"
    );

    let (code, out, _) = consumer(node_args(addr, CLIENT, "/denied")).await;
    assert_eq!(code, 1);
    assert!(
        out.contains("error: ndxp.access_denied — Access denied\n"),
        "{out}"
    );

    // The backend's own error is not a platform problem: its body is shown.
    let (code, out, _) = consumer(node_args(addr, CLIENT, "/backend-404")).await;
    assert_eq!(code, 1);
    assert!(out.starts_with("status: 404 Not Found\n"), "{out}");
    assert!(
        out.contains("the provider's backend answered with an error status"),
        "{out}"
    );
    assert!(out.contains("person_not_found"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_mode_gets_a_token_then_calls_with_it() {
    let addr = server().await;
    let gw = |secret: &str| -> Vec<String> {
        [
            "--gateway",
            &format!("http://{addr}"),
            "--token-url",
            &format!("http://{addr}/token"),
            "--client-id",
            "qlht-app",
            "--client-secret",
            secret,
            "--service",
            SERVICE,
            "--path",
            "/persons/001099012345",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    // The secret holds characters that RFC 6749 §2.3.1 form-encodes.
    let (code, out, err) = consumer(gw("s:cret 1")).await;
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("\"via\":\"gateway\""), "{out}");

    let (code, out, err) = consumer(gw("wrong")).await;
    assert_eq!(code, 3, "{out}");
    assert!(
        err.contains(
            "refused the client credentials (401): invalid_client: unknown client or wrong secret"
        ),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_and_unreachable_nodes() {
    let svc = ["--service", SERVICE];
    for (args, want) in [
        (
            vec!["--node", "http://127.0.0.1:1", "--service", SERVICE],
            "--client",
        ),
        (vec!["--client", CLIENT, "--service", SERVICE], "--node"),
        (
            vec![
                "--node",
                "http://x",
                "--client",
                CLIENT,
                "--gateway",
                "http://y",
                "--service",
                SERVICE,
            ],
            "cannot be used with",
        ),
        (
            vec!["--gateway", "http://y", "--service", SERVICE],
            "--token-url",
        ),
        (
            vec![
                "--node",
                "http://x",
                "--client",
                "VN/GOV",
                "--service",
                SERVICE,
            ],
            "--client",
        ),
        (
            vec![
                "--node",
                "http://x",
                "--client",
                CLIENT,
                "--service",
                "VN/GOV/x/y/z",
            ],
            "--service",
        ),
        (
            vec!["--node", "ftp://x", "--client", CLIENT, svc[0], svc[1]],
            "not an http",
        ),
        (
            vec![
                "--node", "http://x", "--client", CLIENT, svc[0], svc[1], "--path", "persons",
            ],
            "must start with '/'",
        ),
    ] {
        let (code, out, err) = consumer(args.iter().map(|s| s.to_string()).collect()).await;
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (code, _, err) = consumer(node_args(closed, CLIENT, "/persons/001099012345")).await;
    assert_eq!(code, 3);
    assert!(
        err.contains(&format!(
            "calling http://{closed}/r1/{SERVICE}/persons/001099012345"
        )),
        "{err}"
    );
    assert!(
        err.contains("is the address right and the server running?"),
        "{err}"
    );
}
