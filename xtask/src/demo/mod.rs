//! `cargo xtask demo`: builds the binaries, creates a fresh PKI and data
//! directory, starts the platform's services and runs every flow that exists
//! once, printing what it did (docs/design.md §12). With `--once` it stops after the
//! flows and exits 0 only if all of them passed; otherwise it keeps the
//! services running until Ctrl-C.
//!
//! The flows drive the real binaries as an operator would (`ndxp-gateway pki
//! ...`, `ndxp-node keys init`) and check the answers with the `ndxp-sign`
//! client side, as a member's system would.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use chrono::Utc;
use ndxp_sign::cert::{parse_certificate, read_pem_chain};
use ndxp_sign::chain::{verify_chain, Purpose};
use ndxp_sign::httpsig::{self, Component, SignatureParams, SigningKey, VerifyPolicy};
use ndxp_sign::revocation::CertStatus;
use ndxp_sign::tsa::{ImprintAlgorithm, TimestampRequest, TsaTrust};
use serde_json::json;

use crate::util::{cargo, root, run_step};

mod catalog;
mod central;
mod exchange;
mod management;
mod ports;
mod tools;

use management::management_flow;
pub(crate) use ports::DEFAULT_PORT_BASE;
pub(crate) use ports::{check_ports_free, local_url, management_url, ports, Ports};
use tools::{check_cert, create_private, keys_and_certs, post_der, write_private};
pub(crate) use tools::{exec, exec_out, p, wait_ready};

/// The demo's fixed identities (docs/design.md §12).
const PROVIDER: (&str, &str) = ("VN/GOV/000.00.00.H29", "node-h29");
const CONSUMER: (&str, &str) = ("VN/GOV/000.00.00.G22", "node-g22");
const CLIENT: &str = "VN/GOV/000.00.00.G22/QLHT";
/// The consumer's second client subsystem, connection type `https-cert`:
/// its information system calls the HTTPS client port with a registered
/// certificate.
const CERT_CLIENT: &str = "VN/GOV/000.00.00.G22/DVC";
const SERVICE: &str = "VN/GOV/000.00.00.H29/CSDLDC/citizen/v1";
const SAMPLE_PATH: &str = "/persons/001099012345";
/// The platform operator's own member, whose key signs the global
/// configuration.
const OPERATOR_MEMBER: &str = "VN/GOV/000.00.00.A01";

/// How the platform is started.
pub(crate) struct Options {
    /// The demo directory (wiped first).
    pub(crate) dir: PathBuf,
    /// Stop after the flows.
    pub(crate) once: bool,
    /// The demo's ports.
    pub(crate) ports: Ports,
    /// Build and run release binaries (when `bin` is `None`).
    pub(crate) release: bool,
    /// Where the binaries are (`target/debug` for the demo, `target/release`
    /// for the load benchmarks); `None` builds and uses `target/debug`.
    pub(crate) bin: Option<PathBuf>,
    /// For load benchmarks: no status reports or reconciliation rounds
    /// competing for the CPU, and no monitoring steps.
    pub(crate) quiet_nodes: bool,
}

/// `cargo xtask demo`'s options.
#[derive(clap::Args, Debug)]
pub(crate) struct DemoArgs {
    /// The demo directory: PKI, databases, configuration and logs/ (wiped
    /// first) [default: target/ndxp-demo]
    #[arg(long, value_name = "D")]
    dir: Option<PathBuf>,
    /// Run every flow once, stop the services and exit 0 only if all passed
    #[arg(long)]
    once: bool,
    /// Move all of the demo's ports together: they are N to N+300 (the
    /// defaults 8100, 8101, 8190, 8201-8204, 8211-8214, 8300, 8400 are N=8100)
    #[arg(long, value_name = "N", default_value_t = DEFAULT_PORT_BASE)]
    port_base: u16,
    /// Build and run release binaries (target/release) instead of debug ones
    #[arg(long)]
    release: bool,
}

impl DemoArgs {
    fn options(self) -> Result<Options> {
        Ok(Options {
            dir: self.dir.unwrap_or_else(|| root().join("target/ndxp-demo")),
            once: self.once,
            ports: Ports::new(self.port_base)?,
            release: self.release,
            bin: None,
            quiet_nodes: false,
        })
    }
}

/// Kills the child processes when the demo ends, however it ends.
pub(crate) struct Services(pub(crate) Vec<(String, Child)>);

impl Services {
    /// Starts `command` as the service `name`, its standard error into the
    /// new private file `log` (a failure to start says "starting {what}"),
    /// and waits until the URL `ready.0` answers, for at most `ready.1`.
    pub(crate) fn start(
        &mut self,
        name: &str,
        mut command: Command,
        log: &std::path::Path,
        what: &str,
        ready: (&str, Duration),
    ) -> Result<()> {
        let log = create_private(log)?;
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {what}"))?;
        self.0.push((name.to_string(), child));
        wait_ready(ready.0, ready.1)
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for (name, child) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
            eprintln!("    stopped {name}");
        }
    }
}

pub(crate) struct Report {
    passed: usize,
    failed: Vec<String>,
}

impl Report {
    pub(crate) fn step(&mut self, name: &str, f: impl FnOnce() -> Result<String>) {
        match f() {
            Ok(what) => {
                self.passed += 1;
                println!("[ok]   {name}: {what}");
            }
            Err(e) => {
                self.failed.push(name.to_string());
                println!("[FAIL] {name}: {}", ndxp_core::ErrorChain(&*e));
            }
        }
    }
}

pub(crate) fn run(args: DemoArgs) -> Result<()> {
    let o = args.options()?;
    let once = o.once;
    let mut running = start(o)?;
    if once {
        return Ok(());
    }
    println!("==> services running; press Ctrl-C to stop");
    for (_, child) in &mut running.services.0 {
        let _ = child.wait();
    }
    Ok(())
}

/// The platform the demo started; dropping it stops every process.
pub(crate) struct Running {
    /// The processes.
    pub(crate) services: Services,
    /// The contents of `demo.json`.
    pub(crate) demo: serde_json::Value,
}

impl Running {
    /// The process id of the service named `name` (e.g. `node-g22`).
    pub(crate) fn pid(&self, name: &str) -> Option<u32> {
        self.services
            .0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, c)| c.id())
    }
}

/// Creates the platform and runs every flow; fails if a flow failed.
pub(crate) fn start(o: Options) -> Result<Running> {
    // Before anything is built or created: a second demo on the same ports
    // would talk to the first one's services.
    check_ports_free(o.ports)?;
    ports::set_ports(o.ports);
    let bin = match &o.bin {
        Some(b) => b.clone(),
        None => {
            let profile = if o.release { "release" } else { "debug" };
            println!("==> building the {profile} binaries");
            let mut build = cargo();
            build.args(["build", "--workspace", "--bins", "--locked"]);
            if o.release {
                build.arg("--release");
            }
            run_step("build", &mut build)?;
            root().join("target").join(profile)
        }
    };

    if o.dir.exists() {
        std::fs::remove_dir_all(&o.dir)
            .with_context(|| format!("removing the previous demo in {}", o.dir.display()))?;
    }
    ndxp_sign::files::create_private_dir_all(&o.dir.join("logs"))?;
    let dir = o.dir.canonicalize()?;
    println!("==> demo directory {}", dir.display());

    let pki = dir.join("pki");
    let base = local_url(o.ports.pki());
    let ocsp_url = format!("{base}/ocsp");
    let tsa_url = format!("{base}/tsa");
    let mut services = Services(Vec::new());
    let mut report = Report {
        passed: 0,
        failed: Vec::new(),
    };

    report.step("create the PKI (root, issuing CA, TSA)", || {
        exec(
            &bin,
            "ndxp-gateway",
            &["pki", "init", "--dir", p(&pki), "--ocsp-url", &ocsp_url],
        )?;
        Ok(format!("{}/ca.pem", pki.display()))
    });

    let mut nodes = Vec::new();
    for (member, node) in [PROVIDER, CONSUMER] {
        let ndir = dir.join("nodes").join(node);
        report.step(
            &format!("keys and certificates for {node} ({member})"),
            || {
                keys_and_certs(&bin, &pki, &ndir, (member, node), &["auth", "sign"])?;
                Ok("auth.pem (TLS) and sign.pem (signing) issued".into())
            },
        );
        nodes.push(json!({
            "name": node, "member": member, "dir": ndir,
            "auth_cert": ndir.join("auth.pem"), "auth_key": ndir.join("auth.key"),
            "sign_cert": ndir.join("sign.pem"), "sign_key": ndir.join("sign.key"),
        }));
    }

    report.step("start the OCSP responder and TSA", || {
        let mut serve = Command::new(bin.join("ndxp-gateway"));
        serve.args([
            "pki",
            "serve",
            "--dir",
            p(&pki),
            "--listen",
            &format!("127.0.0.1:{}", o.ports.pki()),
        ]);
        services.start(
            "pki serve",
            serve,
            &dir.join("logs/pki.log"),
            "ndxp-gateway pki serve",
            (&format!("{base}/healthz"), Duration::from_secs(15)),
        )?;
        Ok(format!(
            "OCSP {ocsp_url}, TSA {tsa_url}, log {}/logs/pki.log",
            dir.display()
        ))
    });

    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let anchors =
        read_pem_chain(&std::fs::read(pki.join("ca.pem")).unwrap_or_default()).unwrap_or_default();
    let intermediates = read_pem_chain(&std::fs::read(pki.join("chain.pem")).unwrap_or_default())
        .unwrap_or_default();

    for (member, node) in [PROVIDER, CONSUMER] {
        let ndir = dir.join("nodes").join(node);
        report.step(
            &format!("chain + OCSP check of {node}'s certificates"),
            || {
                let mut out = Vec::new();
                for (file, purpose) in [("auth.pem", Purpose::Auth), ("sign.pem", Purpose::Sign)] {
                    let status =
                        check_cert(&http, &ndir.join(file), &anchors, &intermediates, purpose)?;
                    ensure!(status == CertStatus::Good, "{file} is {status:?}");
                    out.push(format!("{file} good"));
                }
                let _ = member;
                Ok(out.join(", "))
            },
        );
    }

    report.step("RFC 3161 timestamp from the TSA", || {
        let req =
            TimestampRequest::for_data(ImprintAlgorithm::Sha256, b"NDXP demo: message log head")?;
        let resp = post_der(&http, &tsa_url, "application/timestamp-query", req.der())?;
        let trust = TsaTrust::new(anchors.clone()).with_untrusted(intermediates.clone());
        let token = ndxp_sign::tsa::verify_response(&resp, &req, &trust)?;
        std::fs::write(dir.join("demo-timestamp.tsr"), &resp)?;
        Ok(format!(
            "genTime {} serial {}, saved demo-timestamp.tsr",
            token.gen_time, token.serial
        ))
    });

    report.step("RFC 9421 signed request, consumer to provider", || {
        let ndir = dir.join("nodes").join(CONSUMER.1);
        let key = ndxp_sign::key::read_private_key_file(&ndir.join("sign.key"), None)?;
        let cert = parse_certificate(&std::fs::read(ndir.join("sign.pem"))?)?;
        let keyid = ndxp_sign::cert::fingerprint_sha256(&cert);
        let key = SigningKey::new(key, keyid.clone())?;
        let body = b"";
        let (mut parts, ()) =
            http::Request::get(format!("https://127.0.0.1/r1/{SERVICE}{SAMPLE_PATH}"))
                .header("content-digest", ndxp_sign::digest::content_digest(body))
                .header("ndxp-client", CLIENT)
                .body(())?
                .into_parts();
        let now = Utc::now().timestamp();
        let params = SignatureParams::new(vec![
            Component::method(),
            Component::target_uri(),
            Component::field("content-digest"),
            Component::field("ndxp-client"),
        ])
        .with_created(now)
        .with_keyid(key.keyid())
        .with_alg(key.algorithm());
        httpsig::sign_request(&mut parts, "ndxp", &params, &key)?;
        // The provider side: the certificate must chain to the CA and be a
        // signing certificate of the member named in NDXP-Client.
        verify_chain(
            &cert,
            &intermediates,
            &anchors,
            Utc::now(),
            Purpose::Sign,
            &ndxp_sign::chain::NoRevocationCheck,
        )?;
        let signer = ndxp_sign::cert::member_of(&cert)?;
        ensure!(
            CLIENT.starts_with(&format!("{signer}/")),
            "signer {signer} does not own {CLIENT}"
        );
        let public = httpsig::VerifyingKey::new(cert.public_key()?, keyid.clone())?;
        let policy = VerifyPolicy::new(vec![
            Component::method(),
            Component::target_uri(),
            Component::field("content-digest"),
            Component::field("ndxp-client"),
        ]);
        let resolver = |k: &str| (k == keyid).then(|| public.clone());
        let v = httpsig::verify(
            &httpsig::MessageView::request(&parts),
            "ndxp",
            &policy,
            now,
            &resolver,
        )?;
        let input = parts
            .headers
            .get("signature-input")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        Ok(format!(
            "{} signed by {signer}; Signature-Input: {input}",
            v.algorithm
        ))
    });

    report.step(
        "revoke a superseded certificate; OCSP reports it at once",
        || {
            let old = dir.join("nodes/superseded");
            keys_and_certs(&bin, &pki, &old, CONSUMER, &["sign"])?;
            let cert = old.join("sign.pem");
            ensure!(
                check_cert(&http, &cert, &anchors, &intermediates, Purpose::Sign)?
                    == CertStatus::Good
            );
            exec(
                &bin,
                "ndxp-gateway",
                &[
                    "pki",
                    "revoke",
                    "--dir",
                    p(&pki),
                    "--cert",
                    p(&cert),
                    "--reason",
                    "superseded",
                ],
            )?;
            match check_cert(&http, &cert, &anchors, &intermediates, Purpose::Sign)? {
                CertStatus::Revoked { reason, at } => Ok(format!("revoked ({reason}) at {at}")),
                other => bail!("expected revoked, OCSP says {other:?}"),
            }
        },
    );

    let mgmt = management_flow(
        &mut report,
        &bin,
        &dir,
        &pki,
        &ocsp_url,
        &tsa_url,
        &mut services,
        o.quiet_nodes,
    )?;
    for (i, node) in nodes.iter_mut().enumerate() {
        let name = node["name"].as_str().unwrap_or_default().to_string();
        node["config"] = json!(dir.join("nodes").join(&name).join("node.toml"));
        node["client_url"] = json!(format!("http://127.0.0.1:{}", exchange::client_port(i)));
        node["peer_url"] = json!(format!("https://127.0.0.1:{}", exchange::peer_port(i)));
        node["admin_url"] = json!(format!("http://127.0.0.1:{}", exchange::admin_port(i)));
    }
    let cert_client = exchange::flow(&mut report, &bin, &dir, &mut services, !o.quiet_nodes)?;
    let gw = central::flow(&mut report, &mgmt.operator_token, &exchange::backend_url());
    catalog::flow(&mut report, &bin, &dir);

    let demo = json!({
        "dir": dir,
        "operator_token": mgmt.operator_token,
        "management_url": management_url(),
        "management_config": dir.join("gateway.toml"),
        "anchor": dir.join("anchor.json"),
        "ca_cert": pki.join("ca.pem"),
        "chain": pki.join("chain.pem"),
        "tsa_cert": pki.join("tsa.pem"),
        "tsa_url": tsa_url,
        "ocsp_url": ocsp_url,
        "client": CLIENT,
        "services": [SERVICE],
        "backends": { SERVICE: exchange::backend_url() },
        "sample_path": SAMPLE_PATH,
        "nodes": nodes,
        "cert_client": cert_client,
        "gateway_url": central::gateway_url(),
        "gateway_client": {
            "token_url": format!("{}/oauth2/token", central::gateway_url()),
            "client_id": gw.client_id,
            "client_secret": gw.client_secret,
            "service": SERVICE,
        },
    });
    write_private(dir.join("demo.json"), serde_json::to_vec_pretty(&demo)?)?;
    println!("==> wrote {}", dir.join("demo.json").display());
    println!(
        "==> {} steps passed, {} failed{}",
        report.passed,
        report.failed.len(),
        if report.failed.is_empty() {
            String::new()
        } else {
            format!(": {}", report.failed.join("; "))
        }
    );
    if !report.failed.is_empty() {
        bail!("the demo failed");
    }
    Ok(Running { services, demo })
}
