//! The management flow: the management role started from its
//! configuration, the operator's token, members, subsystems and anchor, and
//! each node's admission.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use serde_json::json;

use super::tools::{exec, exec_out, keys_and_certs, p, write_private};
use super::{
    exchange, local_url, management_url, ports, Report, Services, CERT_CLIENT, CONSUMER,
    OPERATOR_MEMBER, PROVIDER, SERVICE,
};

/// What the management flow hands on to `demo.json`.
pub(super) struct Management {
    pub(super) operator_token: String,
}

/// The distributed model's admission, with the command lines an operator
/// and members use (docs/management.md): management keys, the gateway's
/// configuration, `serve`, an operator token, members and subsystems, the
/// anchor, each node's `register`, the operator's `requests approve`, and
/// each node's `conf fetch` / `conf status` seeing itself in the verified
/// global configuration.
#[allow(clippy::too_many_arguments)]
pub(super) fn management_flow(
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
        keys_and_certs(bin, pki, &keys, (OPERATOR_MEMBER, "mgmt"), &["sign"])?;
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
        let mut serve = Command::new(bin.join("ndxp-gateway"));
        serve.args(["serve", "--config", p(&cfg)]);
        services.start(
            "management",
            serve,
            &dir.join("logs/management.log"),
            "ndxp-gateway serve",
            (
                &format!("{}/readyz", local_url(management_admin_port)),
                Duration::from_secs(20),
            ),
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
