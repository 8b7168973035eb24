//! `cargo xtask demo`: builds the binaries, creates a fresh PKI and data
//! directory, starts the platform's services and runs every flow that exists
//! once, printing what it did (docs/design.md §12). With `--once` it stops after the
//! flows and exits 0 only if all of them passed; otherwise it keeps the
//! services running until Ctrl-C.
//!
//! The flows drive the real binaries as an operator would (`ndxp-gateway pki
//! ...`, `ndxp-node keys init`) and check the answers with the `ndxp-sign`
//! client side, as a member's system would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use chrono::Utc;
use ndxp_sign::cert::{parse_certificate, read_pem_chain};
use ndxp_sign::chain::{verify_chain, Purpose};
use ndxp_sign::httpsig::{self, Component, SignatureParams, SigningKey, VerifyPolicy};
use ndxp_sign::ocsp::{IntermediatePolicy, OcspClientRequest, OcspStatusCache};
use ndxp_sign::openssl::x509::{X509VerifyResult, X509};
use ndxp_sign::revocation::CertStatus;
use ndxp_sign::tsa::{ImprintAlgorithm, TimestampRequest, TsaTrust};
use serde_json::json;

use crate::util::{cargo, root, run_step};

mod central;
mod exchange;

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
/// The first of the demo's ports by default, as in the README's table.
pub(crate) const DEFAULT_PORT_BASE: u16 = 8100;
/// The demo's ports lie in `base ..= base + PORT_SPAN` (the sample backend
/// is the last).
const PORT_SPAN: u16 = 300;
/// How many nodes the demo runs (provider and consumer).
const NODE_COUNT: usize = 2;

/// Every port the demo listens on, as offsets from one base so that
/// `--port-base` moves them together; with the default base 8100 they are
/// the README's: 8100, 8101, 8190, 8201-8204, 8211-8214, 8300, 8400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ports {
    base: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Ports {
            base: DEFAULT_PORT_BASE,
        }
    }
}

impl Ports {
    /// The ports from `base`; fails when the highest would not be a port.
    pub(crate) fn new(base: u16) -> Result<Self> {
        ensure!(
            (1024..=u16::MAX - PORT_SPAN).contains(&base),
            "--port-base must be between 1024 and {} (the demo uses the {} ports from it), not {base}",
            u16::MAX - PORT_SPAN,
            PORT_SPAN + 1
        );
        Ok(Ports { base })
    }
    fn at(self, offset: u16) -> u16 {
        self.base + offset
    }
    /// The management API (8100).
    pub(crate) fn management(self) -> u16 {
        self.at(0)
    }
    /// The management role's admin port (8101).
    pub(crate) fn management_admin(self) -> u16 {
        self.at(1)
    }
    /// The PKI service: OCSP and TSA (8190).
    pub(crate) fn pki(self) -> u16 {
        self.at(90)
    }
    /// The `i`-th node's client port (8201, 8211).
    pub(crate) fn client(self, i: usize) -> u16 {
        self.node(i, 1)
    }
    /// The `i`-th node's peer port (8202, 8212).
    pub(crate) fn peer(self, i: usize) -> u16 {
        self.node(i, 2)
    }
    /// The `i`-th node's admin port (8203, 8213).
    pub(crate) fn admin(self, i: usize) -> u16 {
        self.node(i, 3)
    }
    /// The `i`-th node's HTTPS client port (8204, 8214).
    pub(crate) fn client_tls(self, i: usize) -> u16 {
        self.node(i, 4)
    }
    fn node(self, i: usize, port: u16) -> u16 {
        // i < NODE_COUNT, so the offset stays below PORT_SPAN.
        self.at(100 + 10 * i as u16 + port)
    }
    /// The central gateway role (8300).
    pub(crate) fn gateway(self) -> u16 {
        self.at(200)
    }
    /// The sample backend (8400).
    pub(crate) fn backend(self) -> u16 {
        self.at(PORT_SPAN)
    }
    /// Every port with what listens there, in the order they are started.
    pub(crate) fn all(self) -> Vec<(u16, String)> {
        let mut all = vec![
            (self.pki(), "the PKI service (OCSP, TSA)".to_string()),
            (self.management(), "the management API".into()),
            (self.management_admin(), "the management admin port".into()),
            (self.gateway(), "the central gateway".into()),
            (self.backend(), "the sample backend".into()),
        ];
        for i in 0..NODE_COUNT {
            all.push((self.client(i), format!("node {i}'s client port")));
            all.push((self.peer(i), format!("node {i}'s peer port")));
            all.push((self.admin(i), format!("node {i}'s admin port")));
            all.push((self.client_tls(i), format!("node {i}'s HTTPS client port")));
        }
        all
    }
}

/// The base of the running demo's ports. A process-wide value rather than a
/// parameter because the flows in `exchange.rs`/`central.rs` reach for
/// their addresses in many places; `start` sets it once, before anything
/// listens.
static PORT_BASE: std::sync::atomic::AtomicU16 =
    std::sync::atomic::AtomicU16::new(DEFAULT_PORT_BASE);

/// The ports of the demo being run.
pub(crate) fn ports() -> Ports {
    Ports {
        base: PORT_BASE.load(std::sync::atomic::Ordering::Relaxed),
    }
}

/// `http://127.0.0.1:PORT`.
pub(crate) fn local_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// The management API's base URL.
pub(crate) fn management_url() -> String {
    local_url(ports().management())
}

/// Fails, naming the port, when something already listens on one of the
/// demo's ports: most often another demo, whose services would otherwise
/// answer this one's requests with the wrong keys.
pub(crate) fn check_ports_free(ports: Ports) -> Result<()> {
    for (port, what) in ports.all() {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "port {port} ({what}) is already in use ({e}). Another demo is probably running: \
                 stop it (Ctrl-C in its terminal), or run this one on other ports with \
                 --port-base N (now {}; the demo uses ports N to N+{PORT_SPAN}).",
                ports.base
            );
        }
    }
    Ok(())
}
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
    PORT_BASE.store(o.ports.base, std::sync::atomic::Ordering::Relaxed);
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
                exec(
                    &bin,
                    "ndxp-node",
                    &[
                        "keys",
                        "init",
                        "--dir",
                        p(&ndir),
                        "--member",
                        member,
                        "--node",
                        node,
                        "--alt-name",
                        "127.0.0.1",
                    ],
                )?;
                for profile in ["auth", "sign"] {
                    issue(&bin, &pki, profile, &ndir, member, node)?;
                }
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
        let log = create_private(dir.join("logs/pki.log"))?;
        let child = Command::new(bin.join("ndxp-gateway"))
            .args([
                "pki",
                "serve",
                "--dir",
                p(&pki),
                "--listen",
                &format!("127.0.0.1:{}", o.ports.pki()),
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting ndxp-gateway pki serve")?;
        services.0.push(("pki serve".into(), child));
        wait_ready(&format!("{base}/healthz"), Duration::from_secs(15))?;
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
            exec(
                &bin,
                "ndxp-node",
                &[
                    "keys",
                    "init",
                    "--dir",
                    p(&old),
                    "--member",
                    CONSUMER.0,
                    "--node",
                    CONSUMER.1,
                ],
            )?;
            issue(&bin, &pki, "sign", &old, CONSUMER.0, CONSUMER.1)?;
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

/// What the management flow hands on to `demo.json`.
struct Management {
    operator_token: String,
}

/// The distributed model's admission, with the command lines an operator
/// and members use (docs/management.md): management keys, the gateway's
/// configuration, `serve`, an operator token, members and subsystems, the
/// anchor, each node's `register`, the operator's `requests approve`, and
/// each node's `conf fetch` / `conf status` seeing itself in the verified
/// global configuration.
#[allow(clippy::too_many_arguments)]
fn management_flow(
    report: &mut Report,
    bin: &Path,
    dir: &Path,
    pki: &Path,
    ocsp_url: &str,
    tsa_url: &str,
    services: &mut Services,
    quiet_nodes: bool,
) -> Result<Management> {
    let cfg = dir.join("gateway.toml");
    let management_url = management_url();
    let management_port = ports().management();
    let management_admin_port = ports().management_admin();
    let gateway_port = ports().gateway();
    let mut token = String::new();
    report.step("management signing key and certificate", || {
        let keys = dir.join("mgmt-keys");
        exec(
            bin,
            "ndxp-node",
            &[
                "keys",
                "init",
                "--dir",
                p(&keys),
                "--member",
                OPERATOR_MEMBER,
                "--node",
                "mgmt",
            ],
        )?;
        issue(bin, pki, "sign", &keys, OPERATOR_MEMBER, "mgmt")?;
        Ok(format!("{OPERATOR_MEMBER} signs the global configuration"))
    });
    report.step("start the management role (ndxp-gateway serve)", || {
        write_private(
            &cfg,
            format!(
                r#"instance = "VN"

[storage]
url = "sqlite://registry.db"

[management]
listen = "127.0.0.1:{management_port}"
public_url = "{management_url}"

[admin]
listen = "127.0.0.1:{management_admin_port}"

[globalconf]
signing_key = "mgmt-keys/sign.key"
signing_cert = "mgmt-keys/sign.pem"
signing_chain = "pki/chain.pem"

[[globalconf.cas]]
name = "NDXP Root CA"
cert = "pki/ca.pem"
ocsp_urls = ["{ocsp_url}"]

[[globalconf.tsas]]
name = "NDXP TSA"
url = "{tsa_url}"
cert = "pki/tsa.pem"

# The central gateway role in the same process (docs/gateway.md).
[gateway]
listen = "127.0.0.1:{gateway_port}"
log_url = "sqlite://gateway-log.db"

# Minute periods so the demo can reconcile its own traffic at once;
# production uses "day" or "hour".
[monitoring]
status_interval_secs = 2
period = "minute"
grace_secs = 2
"#
            ),
        )?;
        let log = create_private(dir.join("logs/management.log"))?;
        let child = Command::new(bin.join("ndxp-gateway"))
            .args(["serve", "--config", p(&cfg)])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting ndxp-gateway serve")?;
        services.0.push(("management".into(), child));
        wait_ready(
            &format!("{}/readyz", local_url(management_admin_port)),
            Duration::from_secs(20),
        )?;
        Ok(format!(
            "API {management_url}/api/v1, global configuration {management_url}/globalconf"
        ))
    });
    report.step("operator token, members and subsystems", || {
        token = exec_out(
            bin,
            "ndxp-gateway",
            &[
                "tokens",
                "create",
                "--config",
                p(&cfg),
                "--operator",
                "demo",
            ],
        )?
        .trim()
        .to_string();
        let cert_client = CERT_CLIENT.rsplit('/').next().unwrap_or_default();
        for (member, name, subsystems) in [
            (PROVIDER.0, "Bộ Công an (demo)", vec!["CSDLDC"]),
            (CONSUMER.0, "Bộ Tư pháp (demo)", vec!["QLHT", cert_client]),
        ] {
            exec(
                bin,
                "ndxp-gateway",
                &[
                    "members",
                    "add",
                    "--config",
                    p(&cfg),
                    "--id",
                    member,
                    "--name",
                    name,
                ],
            )?;
            for subsystem in subsystems {
                let sub = format!("{member}/{subsystem}");
                exec(
                    bin,
                    "ndxp-gateway",
                    &["subsystems", "add", "--config", p(&cfg), "--id", &sub],
                )?;
            }
        }
        let http = reqwest::blocking::Client::new();
        let resp = http
            .post(format!("{management_url}/api/v1/services"))
            .bearer_auth(&token)
            .json(&json!({
                "id": SERVICE,
                "description": "Citizen record lookup (national population database, demo)",
            }))
            .send()?;
        ensure!(
            resp.status().is_success(),
            "adding {SERVICE} to the catalogue: HTTP {}: {}",
            resp.status(),
            resp.text().unwrap_or_default()
        );
        exec(
            bin,
            "ndxp-gateway",
            &[
                "conf",
                "anchor",
                "--config",
                p(&cfg),
                "--out",
                p(&dir.join("anchor.json")),
            ],
        )?;
        Ok(format!(
            "2 members, 3 subsystems, {SERVICE} in the catalogue, anchor.json written"
        ))
    });
    for (i, (member, node)) in [PROVIDER, CONSUMER].into_iter().enumerate() {
        let ndir = dir.join("nodes").join(node);
        report.step(&format!("{node} asks to join (ndxp-node register)"), || {
            std::fs::copy(pki.join("chain.pem"), ndir.join("chain.pem"))?;
            exchange::client_tls_identity(&ndir)?;
            write_private(
                ndir.join("node.toml"),
                format!(
                    r#"[node]
member = "{member}"
name = "{node}"
address = "https://127.0.0.1:{peer}"
keys_dir = "."

[management]
url = "{management_url}"

[conf]
anchor = "../../anchor.json"
dir = "conf"
refresh_secs = 60

[client]
listen = "127.0.0.1:{client}"
tls_listen = "127.0.0.1:{client_tls}"
tls_cert = "client-tls.pem"
tls_key = "client-tls.key"

[peer]
listen = "127.0.0.1:{peer}"

[admin]
listen = "127.0.0.1:{admin}"

[log]
timestamp_interval_secs = 1

[report]
enabled = {report}
interval_secs = 2
period = "minute"
grace_secs = 3
"#,
                    report = !quiet_nodes,
                    client = exchange::client_port(i),
                    client_tls = exchange::client_tls_port(i),
                    peer = exchange::peer_port(i),
                    admin = exchange::admin_port(i),
                ),
            )?;
            let out = exec_out(
                bin,
                "ndxp-node",
                &["register", "--config", p(&ndir.join("node.toml"))],
            )?;
            Ok(out.lines().next().unwrap_or_default().to_string())
        });
    }
    report.step("operator approves the pending requests", || {
        let listed = exec_out(
            bin,
            "ndxp-gateway",
            &[
                "requests",
                "list",
                "--config",
                p(&cfg),
                "--state",
                "pending",
                "--json",
            ],
        )?;
        let requests: serde_json::Value = serde_json::from_str(&listed)?;
        let ids: Vec<String> = requests
            .as_array()
            .context("requests list --json did not print a list")?
            .iter()
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect();
        ensure!(
            ids.len() == 2,
            "expected 2 pending requests, found {}",
            ids.len()
        );
        for id in &ids {
            exec(
                bin,
                "ndxp-gateway",
                &["requests", "approve", "--config", p(&cfg), "--id", id],
            )?;
        }
        Ok(format!("approved {}", ids.join(", ")))
    });
    for (_, node) in [PROVIDER, CONSUMER] {
        let conf = dir.join("nodes").join(node).join("node.toml");
        report.step(
            &format!("{node} fetches the signed global configuration"),
            || {
                exec(bin, "ndxp-node", &["conf", "fetch", "--config", p(&conf)])?;
                let status: serde_json::Value = serde_json::from_str(&exec_out(
                    bin,
                    "ndxp-node",
                    &["conf", "status", "--config", p(&conf), "--json"],
                )?)?;
                ensure!(
                    status["valid"] == true,
                    "the global configuration is not valid: {status}"
                );
                ensure!(
                    status["this_node"]["listed"] == true,
                    "{node} is not in the global configuration: {status}"
                );
                Ok(format!(
                    "version {}, expires {}, {node} listed",
                    status["version"], status["expires_at"]
                ))
            },
        );
    }
    Ok(Management {
        operator_token: token,
    })
}

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
fn write_private(path: impl AsRef<Path>, bytes: impl AsRef<[u8]>) -> std::io::Result<()> {
    ndxp_sign::files::write_private(path.as_ref(), bytes.as_ref())
}

/// Creates a log file of a demo process, readable by its owner only.
fn create_private(path: impl AsRef<Path>) -> std::io::Result<std::fs::File> {
    ndxp_sign::files::create_private(path.as_ref())
}

/// `ndxp-gateway pki issue` of `dir/{profile}.csr` into `dir/{profile}.pem`
/// for `member` (and, for `auth`, its node `node` with the IP address
/// 127.0.0.1, as every demo node listens on loopback).
fn issue(
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

/// POSTs a DER request and returns the DER answer of a 2xx response.
fn post_der(
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
fn check_cert(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_ports_are_the_readmes() {
        let mut ports: Vec<u16> = Ports::default().all().into_iter().map(|(p, _)| p).collect();
        ports.sort_unstable();
        assert_eq!(
            ports,
            [8100, 8101, 8190, 8201, 8202, 8203, 8204, 8211, 8212, 8213, 8214, 8300, 8400]
        );
    }

    #[test]
    fn port_base_moves_every_port_by_the_same_amount() {
        let default = Ports::default().all();
        let moved = Ports::new(9100).unwrap().all();
        assert_eq!(default.len(), moved.len());
        for ((d, what_d), (m, what_m)) in default.iter().zip(&moved) {
            assert_eq!(what_d, what_m);
            assert_eq!(*m, d + 1000, "{what_d}");
        }
        let highest = Ports::new(u16::MAX - PORT_SPAN).unwrap();
        assert_eq!(highest.backend(), u16::MAX);
        assert!(Ports::new(u16::MAX - PORT_SPAN + 1).is_err());
        assert!(Ports::new(80).is_err());
    }

    #[test]
    fn the_port_check_names_a_taken_port() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        // The management API is at the base itself.
        let ports = Ports::new(port).unwrap();
        let err = check_ports_free(ports).unwrap_err().to_string();
        assert!(
            err.contains(&format!("port {port} (the management API)")),
            "{err}"
        );
        assert!(err.contains("--port-base"), "{err}");
        drop(taken);
    }
}
