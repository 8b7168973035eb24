//! The `pki` commands and the OCSP/TSA server, checked with tools we did not
//! write: the stock `openssl` command line and `curl`.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use ndxp_node::keys::{init_keys, KeysOptions};
use ndxp_test_support::tool::{run_tool as tool, succeeds};

/// A command line's arguments as one would type them (none of them
/// contains a space).
fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

fn gateway(args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"));
    succeeds(command.args(args), &format!("ndxp-gateway {args:?}"))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Fixture {
    _tmp: tempfile::TempDir,
    pki: PathBuf,
    auth_cert: PathBuf,
    sign_cert: PathBuf,
}

/// `pki init`, then keys for one node made by the node library, issued by
/// `pki issue`.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let pki = tmp.path().join("pki");
    gateway(&["pki", "init", "--dir", s(&pki)]);
    let keys = tmp.path().join("node");
    let mut opts = KeysOptions::new(
        keys.clone(),
        "VN/GOV/000.00.00.G22".parse().unwrap(),
        "node-g22".parse().unwrap(),
    );
    opts.alt_names = vec!["node-g22.example.vn".into(), "127.0.0.1".into()];
    let files = init_keys(&opts).unwrap();
    let auth_cert = keys.join("auth.pem");
    let sign_cert = keys.join("sign.pem");
    // `pki issue` of `csr` to `out` for G22, then `identity`.
    let issue = |csr: &Path, out: &Path, identity: &str| {
        let mut args = vec!["pki", "issue", "--dir", s(&pki), "--csr", s(csr)];
        args.extend(words(identity));
        args.extend(["--out", s(out)]);
        gateway(&args);
    };
    let auth = "--profile auth --member VN/GOV/000.00.00.G22 --node node-g22";
    let names = "--dns node-g22.example.vn --ip 127.0.0.1";
    issue(&files.auth_csr, &auth_cert, &format!("{auth} {names}"));
    let sign = "--profile sign --member VN/GOV/000.00.00.G22";
    issue(&files.sign_csr, &sign_cert, sign);
    Fixture {
        _tmp: tmp,
        pki,
        auth_cert,
        sign_cert,
    }
}

#[test]
fn init_writes_the_documented_files_with_private_keys_0600() {
    let f = fixture();
    for name in ["ca.pem", "chain.pem", "tsa.pem"] {
        assert!(f.pki.join(name).is_file(), "{name} missing");
    }
    let mut keys = 0;
    for e in std::fs::read_dir(&f.pki).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "key") {
            keys += 1;
            let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", p.display());
        }
    }
    assert!(keys >= 2, "expected CA and TSA keys");
    // A second init must not clobber the CA.
    let out = Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
        .args(["pki", "init", "--dir", s(&f.pki)])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

/// `pki issue` signs only the identity and the names the operator gives:
/// a CSR of another member or node, or asking for a name not given with
/// `--dns`/`--ip`, is refused and nothing is written; what it signs it
/// prints (subject, names, profile, validity), and the certificate carries
/// exactly the names given.
#[test]
fn pki_issue_signs_only_the_identity_and_names_given_on_the_command_line() {
    let f = fixture();
    let keys = f.auth_cert.parent().unwrap();
    let out = keys.join("other.pem");
    let issue = |line: &str| {
        let extra = words(line);
        let csr = if extra.contains(&"auth") {
            "auth.csr"
        } else {
            "sign.csr"
        };
        let mut args = vec!["pki", "issue", "--dir", s(&f.pki), "--out", s(&out)];
        let csr = keys.join(csr);
        args.extend(["--csr", s(&csr)]);
        args.extend(&extra);
        Command::new(env!("CARGO_BIN_EXE_ndxp-gateway"))
            .args(&args)
            .output()
            .unwrap()
    };
    let refused = |o: &Output, needle: &str| {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !o.status.success(),
            "issued: {}",
            String::from_utf8_lossy(&o.stdout)
        );
        assert!(err.contains(needle), "{err:?} does not say {needle:?}");
        assert!(!out.exists(), "a refused issue wrote {}", out.display());
    };
    let auth = "--profile auth --member VN/GOV/000.00.00.G22";
    let names = "--dns node-g22.example.vn --ip 127.0.0.1";
    // G22's signing CSR presented as H29's: the CSR names another member.
    refused(
        &issue("--profile sign --member VN/GOV/000.00.00.H29"),
        "is for urn:ndxp:member:VN/GOV/000.00.00.G22, not for urn:ndxp:member:VN/GOV/000.00.00.H29",
    );
    // Another node of the right member.
    refused(
        &issue(&format!("{auth} --node node-x {names}")),
        "not for urn:ndxp:node:VN/GOV/000.00.00.G22/node-x",
    );
    // The CSR asks for a DNS name and an address: both must be explicit.
    refused(
        &issue(&format!("{auth} --node node-g22 --ip 127.0.0.1")),
        "DNS name \"node-g22.example.vn\", which was not allowed explicitly",
    );
    refused(
        &issue(&format!("{auth} --node node-g22 --dns node-g22.example.vn")),
        "IP address 127.0.0.1, which was not allowed explicitly",
    );
    // A node certificate needs its node; a signing certificate has none
    // and no names (argument errors, exit 64).
    let o = issue(auth);
    assert_eq!(o.status.code(), Some(64));
    refused(&o, "needs --node");
    let o = issue("--profile sign --member VN/GOV/000.00.00.G22 --node node-g22");
    assert_eq!(o.status.code(), Some(64));
    refused(
        &issue("--profile sign --member VN/GOV/000.00.00.G22 --dns a.example.vn"),
        "carries no DNS names",
    );

    // Given explicitly, with one more name the CSR did not ask for: the
    // certificate carries exactly the names given, and the printout says
    // what was signed.
    let o = issue(&format!(
        "{auth} --node node-g22 {names} --ip 10.0.0.7 --days 30"
    ));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    for needle in [
        "issued auth certificate serial ",
        "subject:  C=VN, O=GOV, serialNumber=VN/GOV/000.00.00.G22, CN=node-g22",
        "names:    URI:urn:ndxp:node:VN/GOV/000.00.00.G22/node-g22, DNS:node-g22.example.vn, \
         IP:127.0.0.1, IP:10.0.0.7",
        "profile:  auth",
        "valid:    ",
    ] {
        assert!(text.contains(needle), "{text:?} lacks {needle:?}");
    }
    let cert = ndxp_sign::cert::parse_certificate(&std::fs::read(&out).unwrap()).unwrap();
    let days = (ndxp_sign::cert::asn1_to_utc(cert.not_after()).unwrap()
        - ndxp_sign::cert::asn1_to_utc(cert.not_before()).unwrap())
    .num_days();
    assert_eq!(days, 30, "{text}");
    let dns: Vec<String> = cert
        .subject_alt_names()
        .unwrap()
        .iter()
        .filter_map(|n| n.dnsname().map(str::to_string))
        .collect();
    assert_eq!(dns, ["node-g22.example.vn"]);
}

#[test]
fn issued_certificates_pass_openssl_verify() {
    let f = fixture();
    let ca = f.pki.join("ca.pem");
    let chain = f.pki.join("chain.pem");
    for (cert, purposes) in [
        (&f.auth_cert, &["sslclient", "sslserver"][..]),
        (&f.sign_cert, &[][..]),
    ] {
        let (ok, text) = tool(
            "openssl",
            &[
                "verify",
                "-CAfile",
                s(&ca),
                "-untrusted",
                s(&chain),
                s(cert),
            ],
        );
        assert!(ok && text.contains(": OK"), "{text}");
        for p in purposes {
            let (ok, text) = tool(
                "openssl",
                &[
                    "verify",
                    "-purpose",
                    p,
                    "-CAfile",
                    s(&ca),
                    "-untrusted",
                    s(&chain),
                    s(cert),
                ],
            );
            assert!(ok && text.contains(": OK"), "purpose {p}: {text}");
        }
    }
    // The signing certificate is not a TLS certificate.
    let (ok, _) = tool(
        "openssl",
        &[
            "verify",
            "-purpose",
            "sslserver",
            "-CAfile",
            s(&ca),
            "-untrusted",
            s(&chain),
            s(&f.sign_cert),
        ],
    );
    assert!(
        !ok,
        "a signing certificate must not pass as a TLS server certificate"
    );
}

/// Starts `pki serve`'s server in-process on a free loopback port.
fn serve(pki: &Path) -> (tokio::runtime::Runtime, String) {
    serve_with_policy(pki, None)
}

fn serve_with_policy(pki: &Path, policy: Option<&str>) -> (tokio::runtime::Runtime, String) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = ndxp_sign::ca::Pki::open(pki, None).unwrap();
    let service = Arc::new(ndxp_gateway::pki::PkiService::with_tsa_policy(pki, policy).unwrap());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    rt.spawn(ndxp_gateway::pki::serve(
        listener,
        service,
        std::future::pending(),
    ));
    (rt, format!("http://{addr}"))
}

/// The certificate that issued `cert`: the last certificate of chain.pem,
/// or the root when there is no intermediate.
fn issuer_of(pki: &Path) -> PathBuf {
    let chain = std::fs::read_to_string(pki.join("chain.pem")).unwrap();
    if chain.contains("BEGIN CERTIFICATE") {
        pki.join("chain.pem")
    } else {
        pki.join("ca.pem")
    }
}

/// `openssl ocsp` asking `url` about `cert`; the answer must verify.
fn openssl_ocsp(f: &Fixture, cert: &Path, url: &str) -> String {
    openssl_ocsp_with(f, cert, url, &[])
}

/// [`openssl_ocsp`] with more options.
fn openssl_ocsp_with(f: &Fixture, cert: &Path, url: &str, extra: &[&str]) -> String {
    let (issuer, ca, chain) = (
        issuer_of(&f.pki),
        f.pki.join("ca.pem"),
        f.pki.join("chain.pem"),
    );
    let mut args = vec![
        "ocsp",
        "-issuer",
        s(&issuer),
        "-cert",
        s(cert),
        "-url",
        url,
        "-CAfile",
        s(&ca),
        "-verify_other",
        s(&chain),
    ];
    args.extend_from_slice(extra);
    let (ok, text) = tool("openssl", &args);
    assert!(ok, "openssl ocsp failed: {text}");
    assert!(text.contains("Response verify OK"), "{text}");
    text
}

/// `pki revoke` of the fixture's authentication certificate (keyCompromise).
fn revoke_auth_cert(f: &Fixture) {
    gateway(&[
        "pki",
        "revoke",
        "--dir",
        s(&f.pki),
        "--cert",
        s(&f.auth_cert),
        "--reason",
        "keyCompromise",
    ]);
}

#[test]
fn openssl_ocsp_says_good_then_revoked_after_pki_revoke() {
    let f = fixture();
    let (_rt, base) = serve(&f.pki);
    let url = format!("{base}/ocsp");
    let text = openssl_ocsp(&f, &f.auth_cert, &url);
    assert!(
        text.contains(&format!("{}: good", s(&f.auth_cert))),
        "{text}"
    );

    revoke_auth_cert(&f);
    let text = openssl_ocsp(&f, &f.auth_cert, &url);
    assert!(
        text.contains(&format!("{}: revoked", s(&f.auth_cert))),
        "{text}"
    );
    assert!(text.contains("keyCompromise"), "{text}");
    // The other certificate is unaffected.
    let text = openssl_ocsp(&f, &f.sign_cert, &url);
    assert!(text.contains(": good"), "{text}");
}

/// Without a nonce, `openssl ocsp` gets the answer produced ahead of time,
/// accepts it, and sees a revocation at once.
#[test]
fn openssl_accepts_answers_produced_ahead_of_time() {
    let f = fixture();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let pki = ndxp_sign::ca::Pki::open(&f.pki, None).unwrap();
    let service = Arc::new(ndxp_gateway::pki::PkiService::new(pki).unwrap());
    // One per issued certificate: the TSA's (issued by `pki init`) and the node's two.
    assert_eq!(service.prepare_answers(), 3, "one per issued certificate");
    assert_eq!(service.prepare_answers(), 0, "fresh answers are not redone");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let url = format!("http://{}/ocsp", listener.local_addr().unwrap());
    rt.spawn(ndxp_gateway::pki::serve(
        listener,
        service.clone(),
        std::future::pending(),
    ));
    let text = openssl_ocsp_with(&f, &f.auth_cert, &url, &["-no_nonce"]);
    assert!(text.contains(": good"), "{text}");
    assert_eq!(service.cached_answers(), 3, "no new answer was kept");
    revoke_auth_cert(&f);
    let text = openssl_ocsp_with(&f, &f.auth_cert, &url, &["-no_nonce"]);
    assert!(text.contains(": revoked"), "{text}");
    let text = openssl_ocsp_with(&f, &f.sign_cert, &url, &["-no_nonce"]);
    assert!(text.contains(": good"), "{text}");
}

#[test]
fn ocsp_get_form_and_bad_requests() {
    let f = fixture();
    let (_rt, base) = serve(&f.pki);
    let dir = f.pki.parent().unwrap();
    let req = dir.join("req.der");
    let (ok, text) = tool(
        "openssl",
        &[
            "ocsp",
            "-issuer",
            s(&issuer_of(&f.pki)),
            "-cert",
            s(&f.auth_cert),
            "-no_nonce",
            "-reqout",
            s(&req),
        ],
    );
    assert!(ok, "{text}");
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(std::fs::read(&req).unwrap());
    let encoded: String = b64
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_string(),
            '/' => "%2F".to_string(),
            '=' => "%3D".to_string(),
            c => c.to_string(),
        })
        .collect();
    let resp = dir.join("resp.der");
    let (ok, text) = tool(
        "curl",
        &["-sf", "-o", s(&resp), &format!("{base}/ocsp/{encoded}")],
    );
    assert!(ok, "GET /ocsp failed: {text}");
    let (ok, text) = tool(
        "openssl",
        &[
            "ocsp",
            "-respin",
            s(&resp),
            "-issuer",
            s(&issuer_of(&f.pki)),
            "-cert",
            s(&f.auth_cert),
            "-CAfile",
            s(&f.pki.join("ca.pem")),
            "-verify_other",
            s(&f.pki.join("chain.pem")),
        ],
    );
    assert!(ok && text.contains(": good"), "{text}");

    // Garbage gets an OCSP "malformedRequest" answer, not a crash or a 500.
    let (ok, text) = tool(
        "curl",
        &[
            "-s",
            "-o",
            s(&resp),
            "-w",
            "%{http_code}",
            "-H",
            "Content-Type: application/ocsp-request",
            "--data-binary",
            "not DER at all",
            &format!("{base}/ocsp"),
        ],
    );
    assert!(ok && text.starts_with("200"), "{text}");
    let (_, text) = tool(
        "openssl",
        &["ocsp", "-respin", s(&resp), "-resp_text", "-noverify"],
    );
    assert!(text.to_lowercase().contains("malformed"), "{text}");

    // Oversize and wrong media type are refused before any parsing.
    let big = dir.join("big.bin");
    std::fs::write(&big, vec![0u8; ndxp_gateway::pki::MAX_REQUEST_BYTES + 1]).unwrap();
    assert_eq!(
        http_status(
            Some("application/ocsp-request"),
            &format!("@{}", s(&big)),
            &format!("{base}/ocsp")
        ),
        "413"
    );
    assert_eq!(http_status(None, "x", &format!("{base}/tsa")), "415");
}

/// The HTTP status curl sees for a POST of `data` (curl's `--data-binary`
/// syntax) to `url`.
fn http_status(content_type: Option<&str>, data: &str, url: &str) -> String {
    let mut args = vec![
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "--data-binary",
        data,
    ];
    let header = content_type.map(|t| format!("Content-Type: {t}"));
    if let Some(h) = &header {
        args.extend(["-H", h.as_str()]);
    }
    args.push(url);
    tool("curl", &args).1
}

#[test]
fn openssl_ts_verifies_our_timestamps() {
    let f = fixture();
    let policy = "1.3.6.1.4.1.32473.77.1";
    let (_rt, base) = serve_with_policy(&f.pki, Some(policy));
    let dir = f.pki.parent().unwrap();
    let data = dir.join("data.txt");
    std::fs::write(&data, b"a message log chain head").unwrap();
    let q = dir.join("q.tsq");
    let r = dir.join("r.tsr");
    let (ok, text) = tool(
        "openssl",
        &[
            "ts",
            "-query",
            "-data",
            s(&data),
            "-sha256",
            "-cert",
            "-out",
            s(&q),
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = tool(
        "curl",
        &[
            "-sf",
            "-H",
            "Content-Type: application/timestamp-query",
            "--data-binary",
            &format!("@{}", s(&q)),
            "-o",
            s(&r),
            &format!("{base}/tsa"),
        ],
    );
    assert!(ok, "POST /tsa failed: {text}");
    let untrusted = dir.join("tsa-chain.pem");
    let mut pem = std::fs::read(f.pki.join("tsa.pem")).unwrap();
    pem.extend(std::fs::read(f.pki.join("chain.pem")).unwrap());
    std::fs::write(&untrusted, pem).unwrap();
    let ca = f.pki.join("ca.pem");
    // `openssl ts -verify` of the reply against `what` (the query, or data).
    let ts_verify = |what: [&str; 2]| {
        let mut args = vec!["ts", "-verify", "-in", s(&r)];
        args.extend(what);
        args.extend(["-CAfile", s(&ca), "-untrusted", s(&untrusted)]);
        tool("openssl", &args)
    };
    let (ok, text) = ts_verify(["-queryfile", s(&q)]);
    assert!(ok && text.contains("Verification: OK"), "{text}");
    let (_, text) = tool("openssl", &["ts", "-reply", "-in", s(&r), "-text"]);
    assert!(text.contains(&format!("Policy OID: {policy}")), "{text}");
    // Against other data it must fail.
    std::fs::write(&data, b"another message").unwrap();
    let (ok, text) = ts_verify(["-data", s(&data)]);
    assert!(!ok, "verification against other data passed: {text}");
}

/// Chain validation with revocation status from OCSP, as a node does it:
/// answers fetched over HTTP from `pki serve`, verified, cached, and read by
/// `verify_chain`.
#[test]
fn chain_validation_uses_ocsp_answers_from_pki_serve() {
    use ndxp_sign::chain::{verify_chain, ChainError, Purpose};
    use ndxp_sign::ocsp::{IntermediatePolicy, OcspClientRequest, OcspStatusCache};

    let f = fixture();
    let (rt, base) = serve(&f.pki);
    let read = |p: &Path| ndxp_sign::cert::read_pem_chain(&std::fs::read(p).unwrap()).unwrap();
    let anchors = read(&f.pki.join("ca.pem"));
    let chain = read(&f.pki.join("chain.pem"));
    let cert = read(&f.auth_cert).remove(0);
    let issuer = chain.first().unwrap_or(&anchors[0]).clone();
    let http = reqwest::Client::new();
    let fetch = |cache: &OcspStatusCache| {
        let req = OcspClientRequest::new(&cert, &issuer).unwrap();
        let der = rt.block_on(async {
            http.post(format!("{base}/ocsp"))
                .header("content-type", "application/ocsp-request")
                .body(req.der().to_vec())
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
        });
        let check = req
            .verify_response(&der, &anchors, chrono::Utc::now())
            .unwrap();
        cache.insert(&cert, check);
    };

    let cache = OcspStatusCache::new(IntermediatePolicy::TrustIntermediates);
    let verify_now = || {
        let now = chrono::Utc::now();
        verify_chain(&cert, &chain, &anchors, now, Purpose::Auth, &cache)
    };
    // Nothing cached: the chain cannot be accepted.
    assert!(verify_now().is_err());
    fetch(&cache);
    assert!(!cache.needs_refresh(&cert, chrono::Utc::now()));
    verify_now().unwrap();

    revoke_auth_cert(&f);
    fetch(&cache);
    let err = verify_now().unwrap_err();
    assert!(matches!(err, ChainError::Revoked { .. }), "{err}");
    assert!(err.to_string().contains("keyCompromise"), "{err}");
}
