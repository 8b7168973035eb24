//! What the flows share: running our binaries, writing private files,
//! issuing certificates, waiting for a service and checking a certificate
//! over OCSP.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::Utc;
use ndxp_sign::cert::parse_certificate;
use ndxp_sign::chain::{verify_chain, Purpose};
use ndxp_sign::ocsp::{IntermediatePolicy, OcspClientRequest, OcspStatusCache};
use ndxp_sign::openssl::x509::{X509VerifyResult, X509};
use ndxp_sign::revocation::CertStatus;

pub(crate) fn p(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// Runs one of our binaries and fails with its stderr if it fails.
pub(crate) fn exec(bin: &Path, name: &str, args: &[&str]) -> Result<()> {
    exec_out(bin, name, args).map(|_| ())
}

/// Runs one of our binaries and returns its standard output.
pub(crate) fn exec_out(bin: &Path, name: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(bin.join(name))
        .args(args)
        .output()
        .with_context(|| format!("running {name}"))?;
    if !out.status.success() {
        bail!(
            "{name} {} failed: {}",
            args.iter().take(2).copied().collect::<Vec<_>>().join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Writes a demo file readable by its owner only (configuration files and
/// `demo.json` hold tokens and client secrets).
pub(crate) fn write_private(
    path: impl AsRef<Path>,
    bytes: impl AsRef<[u8]>,
) -> std::io::Result<()> {
    ndxp_sign::files::write_private(path.as_ref(), bytes.as_ref())
}

/// Creates a log file of a demo process, readable by its owner only.
pub(crate) fn create_private(path: impl AsRef<Path>) -> std::io::Result<std::fs::File> {
    ndxp_sign::files::create_private(path.as_ref())
}

/// `ndxp-gateway pki issue` of `dir/{profile}.csr` into `dir/{profile}.pem`
/// for `member` (and, for `auth`, its node `node` with the IP address
/// 127.0.0.1, as every demo node listens on loopback).
pub(crate) fn issue(
    bin: &Path,
    pki: &Path,
    profile: &str,
    dir: &Path,
    member: &str,
    node: &str,
) -> Result<()> {
    let csr = dir.join(format!("{profile}.csr"));
    let out = dir.join(format!("{profile}.pem"));
    let mut args = vec![
        "pki",
        "issue",
        "--dir",
        p(pki),
        "--profile",
        profile,
        "--member",
        member,
        "--csr",
        p(&csr),
        "--out",
        p(&out),
    ];
    if profile == "auth" {
        args.extend(["--node", node, "--ip", "127.0.0.1"]);
    }
    exec(bin, "ndxp-gateway", &args)
}

/// `ndxp-node keys init` of `member`'s node `node` into `dir`, then
/// [`issue`] of each of `profiles`; with `auth` among them the keys are
/// made for the address 127.0.0.1 too, on which every demo node listens.
pub(crate) fn keys_and_certs(
    bin: &Path,
    pki: &Path,
    dir: &Path,
    (member, node): (&str, &str),
    profiles: &[&str],
) -> Result<()> {
    let mut args = vec![
        "keys",
        "init",
        "--dir",
        p(dir),
        "--member",
        member,
        "--node",
        node,
    ];
    if profiles.contains(&"auth") {
        args.extend(["--alt-name", "127.0.0.1"]);
    }
    exec(bin, "ndxp-node", &args)?;
    for profile in profiles {
        issue(bin, pki, profile, dir, member, node)?;
    }
    Ok(())
}

/// Checks that `resp` is a 2xx answer carrying the demo's sample record
/// (a failure names `prefix` first); returns its status and headers.
pub(crate) fn sample_answer(
    resp: reqwest::blocking::Response,
    prefix: &str,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap)> {
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.text()?;
    ensure!(status.is_success(), "{prefix}HTTP {status}: {body}");
    ensure!(body.contains("001099012345"), "unexpected body {body}");
    Ok((status, headers))
}

/// The text of header `name`, empty when it is missing or not text.
pub(crate) fn header_text(headers: &reqwest::header::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string()
}

/// POSTs a DER request and returns the DER answer of a 2xx response.
pub(crate) fn post_der(
    http: &reqwest::blocking::Client,
    url: &str,
    content_type: &str,
    der: &[u8],
) -> Result<Vec<u8>> {
    let resp = http
        .post(url)
        .header("content-type", content_type)
        .body(der.to_vec())
        .send()?
        .error_for_status()?;
    Ok(resp.bytes()?.to_vec())
}

pub(crate) fn wait_ready(url: &str, limit: Duration) -> Result<()> {
    let start = Instant::now();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(1))
        .build()?;
    loop {
        if client
            .get(url)
            .send()
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if start.elapsed() > limit {
            bail!("{url} did not answer within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Validates a certificate's chain with its revocation status fetched from
/// the OCSP URL in the certificate, as a node does before trusting a peer.
pub(crate) fn check_cert(
    http: &reqwest::blocking::Client,
    path: &Path,
    anchors: &[X509],
    intermediates: &[X509],
    purpose: Purpose,
) -> Result<CertStatus> {
    let cert = parse_certificate(&std::fs::read(path)?)?;
    let issuer = intermediates
        .iter()
        .chain(anchors)
        .find(|c| c.issued(&cert) == X509VerifyResult::OK)
        .context("no issuer for the certificate")?;
    let url = cert
        .ocsp_responders()?
        .iter()
        .next()
        .map(|u| u.to_string())
        .context("the certificate names no OCSP responder")?;
    let req = OcspClientRequest::new(&cert, issuer)?;
    let resp = post_der(http, &url, "application/ocsp-request", req.der())?;
    let check = req.verify_response(&resp, anchors, Utc::now())?;
    let status = check.status.clone();
    let cache = OcspStatusCache::new(IntermediatePolicy::TrustIntermediates);
    cache.insert(&cert, check);
    if status == CertStatus::Good {
        verify_chain(&cert, intermediates, anchors, Utc::now(), purpose, &cache)?;
    }
    Ok(status)
}
