//! The distributed model's exchange in the demo: a sample backend, each
//! node's local configuration with the `ndxp-node` commands, both nodes
//! serving, one signed exchange through the pair, the metadata services
//! and a refusal; then the second client subsystem (`https-cert`) calling
//! the HTTPS client port with its registered certificate, and refused
//! without it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Result};
use chrono::Timelike;

use super::tools::{header_text, sample_answer};
use super::{
    exec, local_url, p, ports, Report, Services, CERT_CLIENT, CLIENT, CONSUMER, PROVIDER,
    SAMPLE_PATH, SERVICE,
};

/// The sample backend's address (README ports table; 8400 by default).
pub(crate) fn backend_url() -> String {
    local_url(ports().backend())
}

/// Client port of the `i`-th node (provider 8201, consumer 8211).
pub(crate) fn client_port(i: usize) -> u16 {
    ports().client(i)
}

/// HTTPS client port of the `i`-th node (8204, 8214).
pub(crate) fn client_tls_port(i: usize) -> u16 {
    ports().client_tls(i)
}

/// Writes a self-signed key and certificate (`name.key` mode 0600,
/// `name.pem`) for 127.0.0.1 and localhost into `dir`.
fn self_signed(dir: &Path, name: &str, common_name: &str) -> Result<()> {
    let key = ndxp_sign::key::KeyAlgorithm::EcP256.generate()?;
    let cert = ndxp_sign::cert::self_signed(
        common_name,
        &key,
        &["localhost"],
        &["127.0.0.1".parse()?],
        365,
    )?;
    ndxp_sign::files::create_private_dir_all(dir)?;
    ndxp_sign::key::write_private_key_file(&dir.join(format!("{name}.key")), &key, None, true)?;
    std::fs::write(dir.join(format!("{name}.pem")), cert.to_pem()?)?;
    Ok(())
}

/// The HTTPS client port's own certificate (`client-tls.pem`/`.key` in
/// the node's directory), self-signed as X-Road's internal TLS
/// certificate is: information systems are given it to trust.
pub(crate) fn client_tls_identity(node_dir: &Path) -> Result<()> {
    self_signed(node_dir, "client-tls", "ndxp-node client port (demo)")
}

/// Peer port of the `i`-th node (8202, 8212).
pub(crate) fn peer_port(i: usize) -> u16 {
    ports().peer(i)
}

/// Admin port of the `i`-th node (8203, 8213).
pub(crate) fn admin_port(i: usize) -> u16 {
    ports().admin(i)
}

fn config(dir: &Path, node: &str) -> std::path::PathBuf {
    dir.join("nodes").join(node).join("node.toml")
}

/// Runs the flow; steps report into `report`.
/// Returns the `cert_client` entry of `demo.json`.
pub(crate) fn flow(
    report: &mut Report,
    bin: &Path,
    dir: &Path,
    services: &mut Services,
    with_monitoring: bool,
) -> Result<serde_json::Value> {
    let provider_cfg = config(dir, PROVIDER.1);
    let consumer_cfg = config(dir, CONSUMER.1);
    let provider_subsystem = SERVICE
        .rsplitn(3, '/')
        .nth(2)
        .unwrap_or_default()
        .to_string();

    let backend_url = backend_url();
    report.step("start the sample backend (citizen registry)", || {
        let mut backend = Command::new(bin.join("citizen-registry"));
        backend.args(["--listen", backend_url.trim_start_matches("http://")]);
        services.start(
            "citizen-registry",
            backend,
            &dir.join("logs/citizen-registry.log"),
            "citizen-registry",
            (&format!("{backend_url}/healthz"), Duration::from_secs(15)),
        )?;
        Ok(format!("{backend_url}{SAMPLE_PATH}"))
    });

    report.step(
        &format!(
            "{}: provide {SERVICE} (ndxp-node subsystems/services/access)",
            PROVIDER.1
        ),
        || {
            let c = p(&provider_cfg);
            exec(
                bin,
                "ndxp-node",
                &[
                    "subsystems",
                    "add",
                    "--config",
                    c,
                    "--id",
                    &provider_subsystem,
                ],
            )?;
            exec(
                bin,
                "ndxp-node",
                &[
                    "services",
                    "add",
                    "--config",
                    c,
                    "--service",
                    SERVICE,
                    "--backend",
                    &backend_url,
                ],
            )?;
            for client in [CLIENT, CERT_CLIENT] {
                exec(
                    bin,
                    "ndxp-node",
                    &[
                        "access",
                        "grant",
                        "--config",
                        c,
                        "--service",
                        SERVICE,
                        "--client",
                        client,
                    ],
                )?;
            }
            Ok(format!(
                "backend {backend_url}, {CLIENT} and {CERT_CLIENT} may call it"
            ))
        },
    );

    report.step(
        &format!("{}: client subsystem {CLIENT}", CONSUMER.1),
        || {
            exec(
                bin,
                "ndxp-node",
                &[
                    "subsystems",
                    "add",
                    "--config",
                    p(&consumer_cfg),
                    "--id",
                    CLIENT,
                ],
            )?;
            Ok("registered on the node, connection type http (loopback)".into())
        },
    );

    let is_dir = dir.join("is");
    let cert_client = serde_json::json!({
        "subsystem": CERT_CLIENT,
        "url": format!("https://127.0.0.1:{}", client_tls_port(1)),
        "cert": is_dir.join("dvc.pem"),
        "key": is_dir.join("dvc.key"),
        "ca": dir.join("nodes").join(CONSUMER.1).join("client-tls.pem"),
    });
    report.step(
        &format!(
            "{}: client subsystem {CERT_CLIENT}, https-cert, its IS certificate registered",
            CONSUMER.1
        ),
        || {
            self_signed(&is_dir, "dvc", "DVC information system (demo)")?;
            let c = p(&consumer_cfg);
            exec(
                bin,
                "ndxp-node",
                &["subsystems", "add", "--config", c, "--id", CERT_CLIENT],
            )?;
            exec(
                bin,
                "ndxp-node",
                &[
                    "subsystems",
                    "set",
                    "--config",
                    c,
                    "--subsystem",
                    CERT_CLIENT,
                    "--connection",
                    "https-cert",
                ],
            )?;
            let out = super::exec_out(
                bin,
                "ndxp-node",
                &[
                    "subsystems",
                    "add-cert",
                    "--config",
                    c,
                    "--subsystem",
                    CERT_CLIENT,
                    "--cert",
                    p(&is_dir.join("dvc.pem")),
                ],
            )?;
            Ok(out.lines().next().unwrap_or_default().to_string())
        },
    );

    for (i, (cfg, node)) in [(&provider_cfg, PROVIDER.1), (&consumer_cfg, CONSUMER.1)]
        .into_iter()
        .enumerate()
    {
        report.step(&format!("start {node} (ndxp-node serve)"), || {
            let mut serve = Command::new(bin.join("ndxp-node"));
            serve.args(["serve", "--config", p(cfg)]);
            let admin = format!("http://127.0.0.1:{}", admin_port(i));
            services.start(
                node,
                serve,
                &dir.join(format!("logs/{node}.log")),
                node,
                (&format!("{admin}/readyz"), Duration::from_secs(20)),
            )?;
            Ok(format!(
                "client http://127.0.0.1:{}, peer https://127.0.0.1:{}, admin {admin}",
                client_port(i),
                peer_port(i)
            ))
        });
    }

    let consumer_url = format!("http://127.0.0.1:{}", client_port(1));
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    report.step(
        "exchange through the node pair (signed, verified, logged)",
        || {
            let url = format!("{consumer_url}/r1/{SERVICE}{SAMPLE_PATH}");
            let resp = http.get(&url).header("NDXP-Client", CLIENT).send()?;
            let (status, headers) = sample_answer(resp, &format!("GET {url}: "))?;
            let id = header_text(&headers, "ndxp-id");
            let hash = header_text(&headers, "ndxp-request-hash");
            ensure!(
                !id.is_empty() && hash.starts_with("sha-256=:"),
                "NDXP-Id / NDXP-Request-Hash missing"
            );
            Ok(format!("HTTP {status}, NDXP-Id {id}"))
        },
    );

    report.step("metadata: allowedMethods of the provider", || {
        let url = format!("{consumer_url}/r1/{provider_subsystem}/allowedMethods");
        let resp = http.get(&url).header("NDXP-Client", CLIENT).send()?;
        let status = resp.status();
        let body = resp.text()?;
        ensure!(status.is_success(), "GET {url}: HTTP {status}: {body}");
        ensure!(body.contains(SERVICE), "{SERVICE} is not listed: {body}");
        Ok(format!("{CLIENT} may call {SERVICE}"))
    });

    report.step(
        &format!("exchange over HTTPS as {CERT_CLIENT} with its certificate"),
        || {
            let (status, _) = sample_answer(call_as_cert_client(&cert_client, true)?, "")?;
            Ok(format!("HTTP {status}"))
        },
    );
    report.step(
        &format!("refusal: {CERT_CLIENT} without its certificate"),
        || {
            let resp = call_as_cert_client(&cert_client, false)?;
            let status = resp.status();
            let body: serde_json::Value = resp.json()?;
            ensure!(
                status.as_u16() == 401 && body["code"] == "ndxp.unauthorized",
                "expected 401 ndxp.unauthorized, got {status} {body}"
            );
            Ok(format!("401 {}: {}", body["code"], body["detail"]))
        },
    );

    let exchanged_at = chrono::Utc::now();
    report.step("refusal: a client not registered on the node", || {
        let url = format!("{consumer_url}/r1/{SERVICE}{SAMPLE_PATH}");
        let other = format!("{}/UNKNOWN", CONSUMER.0);
        let resp = http.get(&url).header("NDXP-Client", &other).send()?;
        let status = resp.status();
        let body: serde_json::Value = resp.json()?;
        ensure!(
            status.as_u16() == 403 && body["code"] == "ndxp.client_unknown",
            "expected 403 ndxp.client_unknown, got {status} {body}"
        );
        Ok(format!("403 {}", body["code"]))
    });
    archives(report, bin, dir, exchanged_at);
    backups(report, bin, dir);
    if with_monitoring {
        monitoring(report, bin, dir, exchanged_at);
    }
    Ok(cert_client)
}

/// Calls the sample path of the service as the `cert_client` entry of
/// `demo.json` does: over HTTPS to its `url`, trusting its `ca`,
/// presenting its `cert` and `key` when `with_cert`.
fn call_as_cert_client(
    cert_client: &serde_json::Value,
    with_cert: bool,
) -> Result<reqwest::blocking::Response> {
    let file = |k: &str| std::fs::read(cert_client[k].as_str().unwrap_or_default());
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .add_root_certificate(reqwest::Certificate::from_pem(&file("ca")?)?);
    if with_cert {
        b = b.identity(reqwest::Identity::from_pkcs8_pem(
            &file("cert")?,
            &file("key")?,
        )?);
    }
    let url = cert_client["url"].as_str().unwrap_or_default();
    Ok(b.build()?
        .get(format!("{url}/r1/{SERVICE}{SAMPLE_PATH}"))
        .header("NDXP-Client", CERT_CLIENT)
        .send()?)
}

/// Each node's message log archived with its time-stamp tokens, and the
/// archive verified (signatures, chain, timestamps) against the CA.
fn archives(
    report: &mut Report,
    bin: &Path,
    dir: &Path,
    exchanged_at: chrono::DateTime<chrono::Utc>,
) {
    // Timestamping runs every second in the demo; let it cover the exchange.
    std::thread::sleep(Duration::from_secs(3));
    let from = (exchanged_at - chrono::Duration::hours(1)).to_rfc3339();
    let to = (chrono::Utc::now() + chrono::Duration::minutes(1)).to_rfc3339();
    let ca = dir.join("pki/ca.pem");
    for node in [PROVIDER.1, CONSUMER.1] {
        report.step(
            &format!("{node}: archive the message log and verify it"),
            || {
                let out = dir.join("archives").join(format!("{node}.ndxplog"));
                ndxp_sign::files::create_private_dir_all(&dir.join("archives"))?;
                super::exec(
                    bin,
                    "ndxp-node",
                    &[
                        "log",
                        "archive",
                        "--config",
                        p(&config(dir, node)),
                        "--from",
                        &from,
                        "--to",
                        &to,
                        "--out",
                        p(&out),
                    ],
                )?;
                let verdict = super::exec_out(
                    bin,
                    "ndxp-node",
                    &["log", "verify", p(&out), "--ca", p(&ca)],
                )?;
                Ok(verdict.lines().take(2).collect::<Vec<_>>().join("; "))
            },
        );
    }
}

/// Online backups of the running management role and of each node
/// (`docs/operator-guide.md`): a SQLite snapshot of every database and a
/// manifest, into `backups/<time>/`.
fn backups(report: &mut Report, bin: &Path, dir: &Path) {
    let root = dir
        .join("backups")
        .join(chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string());
    let targets = [
        (
            "ndxp-gateway",
            "management",
            dir.join("gateway.toml"),
            "registry.db",
        ),
        ("ndxp-node", PROVIDER.1, config(dir, PROVIDER.1), "log.db"),
        ("ndxp-node", CONSUMER.1, config(dir, CONSUMER.1), "log.db"),
    ];
    for (binary, name, cfg, db) in targets {
        report.step(&format!("{name}: online backup ({binary} backup)"), || {
            let out = root.join(name);
            super::exec(
                bin,
                binary,
                &["backup", "--config", p(&cfg), "--out", p(&out)],
            )?;
            let manifest: serde_json::Value =
                serde_json::from_slice(&std::fs::read(out.join("backup.json"))?)?;
            let entries = manifest["entries"].as_array().cloned().unwrap_or_default();
            let snapshot = entries
                .iter()
                .find(|e| e["kind"] == "sqlite" && e["file"] == db)
                .ok_or_else(|| anyhow::anyhow!("no snapshot of {db} in {}", out.display()))?;
            Ok(format!(
                "{db} snapshot, {} bytes, and {} more entries in {}",
                snapshot["bytes"],
                entries.len() - 1,
                out.display()
            ))
        });
    }
}

/// Connection status and the reconciliation of the demo's own traffic.
fn monitoring(
    report: &mut Report,
    bin: &Path,
    dir: &Path,
    exchanged_at: chrono::DateTime<chrono::Utc>,
) {
    let cfg = dir.join("gateway.toml");
    report.step("connection status (ndxp-gateway status)", || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = super::exec_out(
                bin,
                "ndxp-gateway",
                &["status", "--config", p(&cfg), "--json"],
            )?;
            let v: serde_json::Value = serde_json::from_str(&out)?;
            let rows = v.as_array().cloned().unwrap_or_default();
            let nodes = rows.iter().filter(|r| r["service"].is_null()).count();
            // Both nodes, and the central gateway's own row.
            let ok = nodes >= 2 && rows.iter().all(|r| r["state"] == "ok");
            if ok {
                let text = super::exec_out(bin, "ndxp-gateway", &["status", "--config", p(&cfg)])?;
                println!("{}", text.trim_end());
                return Ok(format!(
                    "{nodes} nodes (the central gateway included) and {} service(s) ok",
                    rows.len() - nodes
                ));
            }
            if std::time::Instant::now() > deadline {
                anyhow::bail!("the nodes are not both ok: {out}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    report.step(
        "reconciliation of the demo's traffic (ndxp-gateway reconcile)",
        || {
            // The exchange's minute must close, then the nodes' grace and one
            // report round pass before both summaries are in.
            let ready =
                exchanged_at + chrono::Duration::seconds(60 - i64::from(exchanged_at.second()) + 8);
            let wait = (ready - chrono::Utc::now()).to_std().unwrap_or_default();
            println!(
                "       waiting {} s for the minute to close and both nodes to report",
                wait.as_secs()
            );
            std::thread::sleep(wait);
            let day = exchanged_at.format("%Y-%m-%d").to_string();
            let deadline = std::time::Instant::now() + Duration::from_secs(40);
            loop {
                let out = super::exec_out(
                    bin,
                    "ndxp-gateway",
                    &[
                        "reconcile",
                        "--config",
                        p(&cfg),
                        "--period",
                        &day,
                        "--format",
                        "json",
                        "--wait-secs",
                        "10",
                    ],
                )?;
                let v: serde_json::Value = serde_json::from_str(&out)?;
                let pairs = v["pairs"].as_array().cloned().unwrap_or_default();
                let settled = !pairs.is_empty()
                    && pairs
                        .iter()
                        .all(|p| p["state"] == "clean" || p["state"] == "differences");
                if settled {
                    let bad: Vec<_> = pairs.iter().filter(|p| p["state"] != "clean").collect();
                    ensure!(
                        bad.is_empty(),
                        "reconciliation found differences the demo did not plant: {bad:?}"
                    );
                    let text = super::exec_out(
                        bin,
                        "ndxp-gateway",
                        &["reconcile", "--config", p(&cfg), "--period", &day],
                    )?;
                    println!("{}", text.trim_end());
                    return Ok(format!(
                        "{} provider-consumer pair(s), all clean",
                        pairs.len()
                    ));
                }
                if std::time::Instant::now() > deadline {
                    anyhow::bail!("reconciliation did not settle: {out}");
                }
                std::thread::sleep(Duration::from_secs(2));
            }
        },
    );
}
