//! Who may call on the client port, end to end with two in-process nodes
//! on loopback: the connection types of subsystems (`http` from loopback,
//! `https` with or without a client certificate, `https-cert` with a
//! certificate registered for that very subsystem), certificates added
//! and removed through the command line and the admin API while the node
//! runs, and the `Host` check on both the plain and the HTTPS client port.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use support::net::{grant, Answer, Network, Options, CITIZEN, CLIENT};

/// `https` on the consumer's node.
const WEB: &str = "VN/GOV/000.00.00.G22/WEB";
/// `https-cert` with certificate A (and later C).
const DVC: &str = "VN/GOV/000.00.00.G22/DVC";
/// `https-cert` with certificate B.
const TTHC: &str = "VN/GOV/000.00.00.G22/TTHC";

const PERSON: &str = "/persons/001099012345";

/// A self-signed information-system certificate and its key (PEM).
struct IsIdentity {
    cert: String,
    key: String,
    sha256: String,
}

fn is_identity(name: &str) -> IsIdentity {
    let key = ndxp_sign::key::KeyAlgorithm::EcP256.generate().unwrap();
    let cert = ndxp_sign::cert::self_signed(name, &key, &[], &[], 30).unwrap();
    IsIdentity {
        cert: String::from_utf8(cert.to_pem().unwrap()).unwrap(),
        key: String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
        sha256: ndxp_sign::cert::fingerprint_sha256(&cert),
    }
}

/// An HTTPS client trusting the consumer's client-port certificate,
/// presenting `identity` when given.
fn https(net: &Network, identity: Option<&IsIdentity>) -> reqwest::Client {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .add_root_certificate(
            reqwest::Certificate::from_pem(&net.consumer.client_tls_cert()).unwrap(),
        );
    if let Some(i) = identity {
        b = b.identity(
            reqwest::Identity::from_pkcs8_pem(i.cert.as_bytes(), i.key.as_bytes()).unwrap(),
        );
    }
    b.build().unwrap()
}

/// `GET {base}/r1/CITIZEN/persons/..` as `client` with `http`.
async fn call(http: &reqwest::Client, base: &str, client: &str) -> Answer {
    let r = http
        .get(format!("{base}/r1/{CITIZEN}{PERSON}"))
        .header("NDXP-Client", client)
        .send()
        .await
        .unwrap();
    Answer::of(r).await
}

#[track_caller]
fn assert_ok(a: &Answer, what: &str) {
    assert_eq!(a.status, 200, "{what}: {}", a.text());
    assert_eq!(a.json()["id"], "001099012345", "{what}");
}

#[track_caller]
fn assert_unauthorized(a: &Answer, mentions: &str, what: &str) {
    let p = a.problem(401, "ndxp.unauthorized");
    let detail = p["detail"].as_str().unwrap();
    assert!(
        detail.contains(mentions),
        "{what}: {detail:?} does not mention {mentions:?}"
    );
}

/// Calls until `check` accepts the answer (the node re-reads its local
/// configuration within 0.5 s); fails after 10 s.
async fn eventually(
    what: &str,
    mut next: impl AsyncFnMut() -> Answer,
    check: impl Fn(&Answer) -> bool,
) {
    let mut last = None;
    for _ in 0..100 {
        let a = next().await;
        if check(&a) {
            return;
        }
        last = Some(a);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: still {:?}", last.map(|a| (a.status, a.text())));
}

/// The network with the three extra subsystems on the consumer's node,
/// granted the citizen service on the provider's; connection types and
/// certificates A (DVC) and B (TTHC) set with the command line.
async fn network(a: &IsIdentity, b: &IsIdentity) -> Network {
    let mut net = Network::prepare(Options {
        client_tls: true,
        ..Options::default()
    })
    .await;
    net.provider
        .local()
        .edit(|c, _| {
            for s in [WEB, DVC, TTHC] {
                grant(c, CITIZEN, s)?;
            }
            Ok(())
        })
        .unwrap();
    let config = net.consumer.config_path.clone();
    let cli = |args: &[&str]| support::node(support::args(args, &config));
    for (sub, kind) in [(WEB, "https"), (DVC, "https-cert"), (TTHC, "https-cert")] {
        let out = cli(&["subsystems", "add", "--id", sub]).await;
        assert!(out.status.success(), "{:?}", support::text(&out));
        let out = cli(&[
            "subsystems",
            "set",
            "--subsystem",
            sub,
            "--connection",
            kind,
        ])
        .await;
        assert!(out.status.success(), "{:?}", support::text(&out));
    }
    for (sub, who, name) in [(DVC, a, "a.pem"), (TTHC, b, "b.pem")] {
        let file = net.tmp.path().join(name);
        std::fs::write(&file, &who.cert).unwrap();
        let out = cli(&[
            "subsystems",
            "add-cert",
            "--subsystem",
            sub,
            "--cert",
            file.to_str().unwrap(),
        ])
        .await;
        let (stdout, stderr) = support::text(&out);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains(&who.sha256), "{stdout}");
    }
    let out = cli(&["subsystems", "list"]).await;
    let (list, _) = support::text(&out);
    assert!(list.contains(&format!("{CLIENT}  http")), "{list}");
    assert!(list.contains(&format!("{DVC}  https-cert")), "{list}");
    assert!(list.contains(&a.sha256), "{list}");
    net.start_node(true).await;
    net.start_node(false).await;
    net.wait_ready(true).await;
    net.wait_ready(false).await;
    net
}

#[tokio::test(flavor = "multi_thread")]
async fn each_subsystem_is_called_only_over_the_connection_its_type_demands() {
    let (a, b, c) = (
        is_identity("is-a"),
        is_identity("is-b"),
        is_identity("is-c"),
    );
    let net = network(&a, &b).await;
    let plain = support::net::http();
    let plain_url = net.consumer.client_url();
    let tls_url = net.consumer.client_tls_url();

    // http: plain HTTP from loopback.
    assert_ok(
        &call(&plain, &plain_url, CLIENT).await,
        "http over plain HTTP",
    );

    // https: TLS, with or without a client certificate; never plain.
    assert_ok(
        &call(&https(&net, None), &tls_url, WEB).await,
        "https without a certificate",
    );
    assert_ok(
        &call(&https(&net, Some(&c)), &tls_url, WEB).await,
        "https with a certificate",
    );
    assert_unauthorized(
        &call(&plain, &plain_url, WEB).await,
        "HTTPS client port",
        "https over plain HTTP",
    );

    // https-cert: only with a certificate registered for that subsystem.
    assert_ok(
        &call(&https(&net, Some(&a)), &tls_url, DVC).await,
        "https-cert with its certificate",
    );
    assert_ok(
        &call(&https(&net, Some(&b)), &tls_url, TTHC).await,
        "the other https-cert subsystem",
    );
    assert_unauthorized(
        &call(&https(&net, None), &tls_url, DVC).await,
        "present a client certificate",
        "https-cert without a certificate",
    );
    assert_unauthorized(
        &call(&https(&net, Some(&b)), &tls_url, DVC).await,
        &b.sha256,
        "https-cert with another subsystem's certificate",
    );
    assert_unauthorized(
        &call(&https(&net, Some(&c)), &tls_url, DVC).await,
        "is not registered",
        "https-cert with an unregistered certificate",
    );
    assert_unauthorized(
        &call(&plain, &plain_url, DVC).await,
        "HTTPS client port",
        "https-cert over plain HTTP",
    );

    // The admin API: register C for DVC and remove A, no restart.
    let register = serde_json::json!({"subsystem": DVC, "cert": c.cert});
    let remove = serde_json::json!({"subsystem": DVC, "sha256": a.sha256});
    let registered = "certificate C accepted for DVC after the admin API registered it";
    let removed = "certificate A refused for DVC after the admin API removed it";
    for (method, body, answer, who, then, what) in [
        (reqwest::Method::POST, register, 200, &c, 200, registered),
        (reqwest::Method::DELETE, remove, 204, &a, 401, removed),
    ] {
        assert_eq!(admin(&net, method, "/certs", body).await, answer);
        let next = async || call(&https(&net, Some(who)), &tls_url, DVC).await;
        eventually(what, next, |r| r.status == then).await;
    }
    assert_unauthorized(
        &call(&https(&net, Some(&a)), &tls_url, DVC).await,
        "is not registered",
        "a removed certificate",
    );
    assert_ok(
        &call(&https(&net, Some(&c)), &tls_url, DVC).await,
        "C still accepted",
    );

    // The admin API changes a connection type too: DVC back to https.
    let path = format!("/subsystems/{DVC}");
    let body = serde_json::json!({"connection": "https"});
    assert_eq!(admin(&net, reqwest::Method::PUT, &path, body).await, 200);
    let answer = call(&https(&net, None), &tls_url, DVC).await;
    assert_ok(&answer, "DVC without a certificate once it is https");
    let body = serde_json::json!({"connection": "https-only"});
    assert_eq!(
        admin(&net, reqwest::Method::PUT, &path, body).await,
        400,
        "an unknown connection type is refused"
    );
}

/// `{method} /api/v1/local{path}` on the consumer's admin port with its
/// token and a JSON body; returns the status.
async fn admin(net: &Network, method: reqwest::Method, path: &str, body: serde_json::Value) -> u16 {
    let r = support::net::http()
        .request(
            method,
            format!("{}/api/v1/local{path}", net.consumer.admin_url()),
        )
        .bearer_auth(net.consumer.admin_token())
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status >= 300 {
        eprintln!("{path}: {status} {}", r.text().await.unwrap());
    }
    status
}

#[tokio::test(flavor = "multi_thread")]
async fn a_foreign_host_is_refused_on_both_client_ports() {
    let (a, b) = (is_identity("is-a"), is_identity("is-b"));
    let net = network(&a, &b).await;
    // As after DNS rebinding: the name resolves to the node's address.
    let client = |tls: bool, h2: bool| {
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(30));
        for name in ["attacker.example", "node.example.vn", "localhost"] {
            builder = builder.resolve(name, "127.0.0.1:0".parse().unwrap());
        }
        if h2 {
            builder = builder.http2_prior_knowledge();
        } else {
            builder = builder.http1_only();
        }
        if tls {
            builder = builder
                .add_root_certificate(
                    reqwest::Certificate::from_pem(&net.consumer.client_tls_cert()).unwrap(),
                )
                .danger_accept_invalid_hostnames(true)
                .identity(
                    reqwest::Identity::from_pkcs8_pem(a.cert.as_bytes(), a.key.as_bytes()).unwrap(),
                );
        }
        builder.build().unwrap()
    };
    let ports = [
        ("http", net.consumer.client_port, CLIENT, false),
        ("https", net.consumer.client_tls_port, DVC, true),
    ];
    for (scheme, port, subsystem, tls) in ports {
        for h2 in [false, true] {
            let http = client(tls, h2);
            let get = async |host: &str| {
                let r = http
                    .get(format!("{scheme}://{host}:{port}/r1/{CITIZEN}{PERSON}"))
                    .header("NDXP-Client", subsystem)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("{scheme} {host} h2={h2}: {e}"));
                Answer::of(r).await
            };
            let answer = get("attacker.example").await;
            let p = answer.problem(421, "ndxp.bad_request");
            assert!(
                p["detail"]
                    .as_str()
                    .unwrap()
                    .contains("is not a name of this node"),
                "{scheme} h2={h2}: {p}"
            );
            // The configured name, localhost and the address are this node.
            for host in ["node.example.vn", "localhost", "127.0.0.1"] {
                assert_ok(&get(host).await, &format!("{scheme} {host} h2={h2}"));
            }
        }
    }
    // A Host header naming another site on a request to the address.
    let r = support::net::http()
        .get(format!(
            "{}/r1/{CITIZEN}{PERSON}",
            net.consumer.client_url()
        ))
        .header("Host", "attacker.example")
        .header("NDXP-Client", CLIENT)
        .send()
        .await
        .unwrap();
    Answer::of(r).await.problem(421, "ndxp.bad_request");
}
