//! `ndxp-node subsystems | services | access`: the local configuration.

use std::path::PathBuf;

use anyhow::{Context, Result};
use ndxp_core::table::Table;
use ndxp_core::{ServiceId, SubsystemId};
use ndxp_node::local::{
    grantee_text, parse_grantee, ConnectionType, IsCertificate, LocalFile, ServiceEntry,
};

use super::ConfigArg;

#[derive(clap::Subcommand)]
pub enum SubsystemsCommand {
    /// Add a subsystem of this node's member.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        id: SubsystemArg,
    },
    /// Remove a subsystem (it must provide no service here).
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        id: SubsystemArg,
    },
    /// List the subsystems with their connection types and certificates.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Set how a subsystem's information systems connect to the client
    /// port: http (loopback only), https, or https-cert (HTTPS with a
    /// certificate registered by add-cert).
    Set {
        #[command(flatten)]
        config: ConfigArg,
        /// The subsystem.
        #[arg(long)]
        subsystem: SubsystemId,
        /// http, https or https-cert.
        #[arg(long)]
        connection: ConnectionType,
    },
    /// Register an information system's certificate for a subsystem
    /// (pinned by its SHA-256 fingerprint; self-signed is fine).
    AddCert {
        #[command(flatten)]
        config: ConfigArg,
        /// The subsystem.
        #[arg(long)]
        subsystem: SubsystemId,
        /// The certificate, PEM (the first one in the file is taken).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Remove a registered certificate of a subsystem.
    RemoveCert {
        #[command(flatten)]
        config: ConfigArg,
        /// The subsystem.
        #[arg(long)]
        subsystem: SubsystemId,
        /// The certificate's SHA-256 fingerprint (as `list` shows it).
        #[arg(long)]
        sha256: String,
    },
}

#[derive(clap::Subcommand)]
pub enum ServicesCommand {
    /// Provide a service, or change its backend, time-out or document.
    Add {
        #[command(flatten)]
        config: ConfigArg,
        /// The service with its version, e.g. VN/GOV/000.00.00.H29/CSDLDC/citizen/v1.
        #[arg(long)]
        service: ServiceId,
        /// The backend's base URL, e.g. http://127.0.0.1:8400.
        #[arg(long)]
        backend: String,
        /// Seconds to wait for the backend.
        #[arg(
            long,
            value_name = "SECS",
            default_value_t = ndxp_node::local::DEFAULT_SERVICE_TIMEOUT_SECS
        )]
        timeout_secs: u64,
        /// The service's OpenAPI document (JSON file).
        #[arg(long, value_name = "FILE")]
        openapi: Option<PathBuf>,
        /// Keep request and response bodies of this service in the message log.
        #[arg(long)]
        keep_bodies: Option<bool>,
        /// A request header the backend needs besides the edge's allowlist
        /// (repeat for several), e.g. x-tenant.
        #[arg(long = "request-header")]
        request_headers: Vec<String>,
        /// A response header of the backend that reaches the client besides
        /// the edge's allowlist (repeat for several).
        #[arg(long = "response-header")]
        response_headers: Vec<String>,
    },
    /// Stop providing a service (its access rights go too).
    Remove {
        #[command(flatten)]
        config: ConfigArg,
        /// The service.
        #[arg(long)]
        service: ServiceId,
    },
    /// List the services.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
}

#[derive(clap::Subcommand)]
pub enum AccessCommand {
    /// Allow a client subsystem (or group:CODE) to call a service.
    Grant(Right),
    /// Withdraw a right.
    Revoke(Right),
    /// List the rights.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
}

/// The subsystem `subsystems add` and `subsystems remove` act on: `--id
/// ID`, as `ndxp-gateway subsystems add` spells it; the older positional
/// form (`subsystems add ID`) is still accepted, hidden from the help.
#[derive(clap::Args)]
pub struct SubsystemArg {
    /// The subsystem, e.g. VN/GOV/000.00.00.G22/QLHT.
    #[arg(
        long = "id",
        value_name = "ID",
        required_unless_present = "positional_id",
        conflicts_with = "positional_id"
    )]
    id: Option<SubsystemId>,
    /// The subsystem (old positional form of --id).
    #[arg(value_name = "ID", hide = true)]
    positional_id: Option<SubsystemId>,
}

impl SubsystemArg {
    /// The subsystem, however it was given.
    fn get(self) -> Result<SubsystemId> {
        self.id
            .or(self.positional_id)
            .context("name the subsystem with --id")
    }
}

/// `--json` of the listing commands.
#[derive(clap::Args)]
pub struct JsonArg {
    /// Print JSON (an array of objects, docs/cli.md) instead of a table.
    #[arg(long)]
    json: bool,
}

/// A subsystem as `subsystems list --json` prints it.
#[derive(serde::Serialize)]
struct SubsystemRow {
    subsystem: String,
    connection: &'static str,
    certificates: Vec<CertRow>,
}

/// A registered information-system certificate in `subsystems list --json`.
#[derive(serde::Serialize)]
struct CertRow {
    sha256: String,
    subject: String,
    not_after: String,
}

/// A provided service as `services list --json` prints it.
#[derive(serde::Serialize)]
struct ServiceRow {
    service: String,
    backend: String,
    timeout_secs: u64,
    openapi: bool,
    keep_bodies: Option<bool>,
    request_headers: Vec<String>,
    response_headers: Vec<String>,
}

/// An access right as `access list --json` prints it.
#[derive(serde::Serialize)]
struct AccessRow {
    service: String,
    client: String,
}

/// Prints `rows` as a pretty JSON array.
fn print_json<T: serde::Serialize>(rows: &[T]) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(rows)?);
    Ok(())
}

/// The right `access grant` and `access revoke` name.
#[derive(clap::Args)]
pub struct Right {
    #[command(flatten)]
    config: ConfigArg,
    /// The service.
    #[arg(long)]
    service: ServiceId,
    /// A subsystem id, or group:CODE for a global group.
    #[arg(long)]
    client: String,
}

/// The local configuration file `config` names, edited for its member.
fn local_file(config: &ConfigArg) -> Result<LocalFile> {
    let cfg = config.load()?;
    Ok(LocalFile::new(cfg.local.file, cfg.node.member))
}

/// Runs a `subsystems` command.
pub fn subsystems(c: SubsystemsCommand) -> Result<i32> {
    match c {
        SubsystemsCommand::Add { config, id } => {
            let id = id.get()?;
            local_file(&config)?.edit(|c, m| c.add_subsystem(m, id.clone()))?;
            println!("subsystem {id} is on this node");
        }
        SubsystemsCommand::Remove { config, id } => {
            let id = id.get()?;
            local_file(&config)?.edit(|c, _| c.remove_subsystem(&id))?;
            println!("subsystem {id} removed");
        }
        SubsystemsCommand::List { config, out } => {
            let local = local_file(&config)?.read()?;
            if out.json {
                let rows: Vec<SubsystemRow> = local
                    .subsystems
                    .iter()
                    .map(|s| {
                        let (kind, certs) = local.connection(s);
                        SubsystemRow {
                            subsystem: s.to_string(),
                            connection: kind.name(),
                            certificates: certs
                                .iter()
                                .map(|c| CertRow {
                                    sha256: c.sha256.clone(),
                                    subject: c.subject.clone(),
                                    not_after: c.not_after.to_rfc3339(),
                                })
                                .collect(),
                        }
                    })
                    .collect();
                print_json(&rows)?;
                return Ok(0);
            }
            for s in &local.subsystems {
                let (kind, certs) = local.connection(s);
                println!("{s}  {kind}");
                for c in certs {
                    println!(
                        "    cert {}  {}  expires {}",
                        c.sha256,
                        c.subject,
                        c.not_after.to_rfc3339()
                    );
                }
            }
        }
        SubsystemsCommand::Set {
            config,
            subsystem,
            connection,
        } => {
            local_file(&config)?.edit(|c, _| c.set_connection(&subsystem, connection))?;
            println!("subsystem {subsystem} now has connection type {connection}");
            if connection == ConnectionType::HttpsCert {
                println!("next: `ndxp-node subsystems add-cert --config FILE --subsystem {subsystem} --cert IS.pem`");
            }
        }
        SubsystemsCommand::AddCert {
            config,
            subsystem,
            cert,
        } => {
            let pem = std::fs::read_to_string(&cert)
                .with_context(|| format!("reading {}", cert.display()))?;
            let is_cert = IsCertificate::from_pem(&pem)?;
            let sha = is_cert.sha256.clone();
            let local =
                local_file(&config)?.edit(|c, _| c.add_is_cert(&subsystem, is_cert).map(drop))?;
            let (kind, _) = local.connection(&subsystem);
            println!("certificate {sha} is registered for {subsystem} (connection type {kind})");
            if kind != ConnectionType::HttpsCert {
                println!("it is asked for only under https-cert: `ndxp-node subsystems set --config FILE --subsystem {subsystem} --connection https-cert`");
            }
        }
        SubsystemsCommand::RemoveCert {
            config,
            subsystem,
            sha256,
        } => {
            local_file(&config)?.edit(|c, _| c.remove_is_cert(&subsystem, &sha256))?;
            println!("certificate {sha256} of {subsystem} removed");
        }
    }
    Ok(0)
}

/// Runs a `services` command.
pub fn services(c: ServicesCommand) -> Result<i32> {
    match c {
        ServicesCommand::Add {
            config,
            service,
            backend,
            timeout_secs,
            openapi,
            keep_bodies,
            request_headers,
            response_headers,
        } => {
            let doc = match openapi {
                Some(p) => {
                    let text =
                        std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
                    Some(
                        serde_json::from_slice::<serde_json::Value>(&text)
                            .with_context(|| format!("{} is not JSON", p.display()))?,
                    )
                }
                None => None,
            };
            let mut entry = ServiceEntry::new(service.clone(), backend.clone());
            entry.timeout_secs = timeout_secs;
            entry.openapi = doc;
            entry.keep_bodies = keep_bodies;
            entry.forward_headers = ndxp_edge::forward::ExtraHeaders {
                request: request_headers,
                response: response_headers,
            };
            local_file(&config)?.edit(|c, m| c.put_service(m, entry))?;
            println!("service {service} is provided by this node, backend {backend}");
            println!("next: `ndxp-node access grant --config FILE --service {service} --client SUBSYSTEM`");
        }
        ServicesCommand::Remove { config, service } => {
            local_file(&config)?.edit(|c, _| c.remove_service(&service))?;
            println!("service {service} removed with its access rights");
        }
        ServicesCommand::List { config, out } => {
            let services = local_file(&config)?.read()?.services;
            if out.json {
                let rows: Vec<ServiceRow> = services
                    .into_iter()
                    .map(|s| ServiceRow {
                        service: s.service.to_string(),
                        backend: s.backend,
                        timeout_secs: s.timeout_secs,
                        openapi: s.openapi.is_some(),
                        keep_bodies: s.keep_bodies,
                        request_headers: s.forward_headers.request,
                        response_headers: s.forward_headers.response,
                    })
                    .collect();
                print_json(&rows)?;
                return Ok(0);
            }
            let mut table = Table::new(["SERVICE", "BACKEND", "TIMEOUT", "OPENAPI"]);
            for s in services {
                table.row([
                    s.service.to_string(),
                    s.backend,
                    format!("{}s", s.timeout_secs),
                    if s.openapi.is_some() { "yes" } else { "no" }.to_string(),
                ]);
            }
            print!("{table}");
        }
    }
    Ok(0)
}

/// Runs an `access` command.
pub fn access(c: AccessCommand) -> Result<i32> {
    match c {
        AccessCommand::Grant(r) => {
            let g = parse_grantee(&r.client).map_err(anyhow::Error::msg)?;
            local_file(&r.config)?.edit(|c, _| c.grant(r.service.clone(), g))?;
            println!("{} may call {}", r.client, r.service);
        }
        AccessCommand::Revoke(r) => {
            let g = parse_grantee(&r.client).map_err(anyhow::Error::msg)?;
            local_file(&r.config)?.edit(|c, _| c.revoke(&r.service, &g))?;
            println!("{} may no longer call {}", r.client, r.service);
        }
        AccessCommand::List { config, out } => {
            let access = local_file(&config)?.read()?.access;
            if out.json {
                let rows: Vec<AccessRow> = access
                    .iter()
                    .map(|a| AccessRow {
                        service: a.service.to_string(),
                        client: grantee_text(&a.client),
                    })
                    .collect();
                print_json(&rows)?;
                return Ok(0);
            }
            let mut table = Table::new(["SERVICE", "CLIENT"]);
            for a in access {
                table.row([a.service.to_string(), grantee_text(&a.client)]);
            }
            print!("{table}");
        }
    }
    Ok(0)
}
