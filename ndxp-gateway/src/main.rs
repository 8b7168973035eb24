//! `ndxp-gateway`: the central services of NDXP. See `docs/pki.md` and
//! `docs/management.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use ndxp_core::{MemberId, NodeName, SubsystemId};
use ndxp_gateway::config::{ConfigError, GatewayConfig};
use ndxp_gateway::gateway::cli::{CliError, GatewayCommand};
use ndxp_gateway::management::registry::{self as admin, Admin, AdminError};
use ndxp_registry::model::{Actor, CredentialKind, RegistrationState};
use ndxp_sign::ca::{InitOptions, Pki};
use ndxp_sign::cert::Profile;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::revocation::RevocationReason;

/// Exit status for a bad command line or configuration (EX_USAGE).
const EXIT_USAGE: i32 = 64;

#[derive(Parser)]
#[command(name = "ndxp-gateway", version, about = "NDXP central services")]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the management role: the management API, the global
    /// configuration download and the admin port (docs/management.md);
    /// with a [gateway] table, the central gateway too (docs/gateway.md).
    Serve(ConfigArg),
    /// The central gateway: services, subscriptions and consumer
    /// credentials (docs/gateway.md).
    #[command(subcommand)]
    Gateway(Box<GatewayCommand>),
    /// The platform's certification authority, OCSP responder and TSA.
    #[command(subcommand)]
    Pki(PkiCommand),
    /// Member organisations of the registry.
    #[command(subcommand)]
    Members(MembersCommand),
    /// Subsystems (information systems) of members.
    #[command(subcommand)]
    Subsystems(SubsystemsCommand),
    /// Admitted nodes of members.
    #[command(subcommand)]
    Nodes(NodesCommand),
    /// Node registration requests waiting for (or given) a decision.
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Bearer tokens of the management API (stored only as hashes).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// The global configuration: the anchor file nodes install.
    #[command(subcommand)]
    Conf(ConfCommand),
    /// Connection state of every node and service (docs/monitoring.md).
    Status {
        #[command(flatten)]
        cfg: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Back up the registry and the gateway's message log while the
    /// gateway runs: SQLite databases are snapshotted (VACUUM INTO) into a
    /// new directory with the configuration file and a manifest;
    /// PostgreSQL databases are listed with the pg_dump command to run
    /// (docs/operator-guide.md).
    Backup {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The backup directory to create (it must not exist or be empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Reconciliation report of a UTC day or hour (docs/monitoring.md).
    Reconcile {
        #[command(flatten)]
        cfg: ConfigArg,
        /// A UTC day (2026-11-28) or hour (2026-11-28T10).
        #[arg(long)]
        period: String,
        /// Output: text (default), json or csv.
        #[arg(long, value_enum, default_value = "text")]
        format: ReportFormat,
        /// Wait up to this many seconds for pending drill-down answers.
        #[arg(long, default_value_t = 0)]
        wait: u64,
    },
}

/// Output of `reconcile`.
#[derive(Clone, Copy, ValueEnum)]
enum ReportFormat {
    Text,
    Json,
    Csv,
}

#[derive(Args)]
struct ConfigArg {
    /// The gateway configuration file (see docs/config.md).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
}

#[derive(Args)]
struct JsonArg {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum MembersCommand {
    /// Add a member organisation.
    Add {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Member identifier, e.g. VN/GOV/000.00.00.H29.
        #[arg(long)]
        id: MemberId,
        /// The organisation's name.
        #[arg(long)]
        name: String,
    },
    /// List members.
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Remove a member with its subsystems, nodes, services and tokens.
    Remove {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Member identifier.
        #[arg(long)]
        id: MemberId,
    },
}

#[derive(Subcommand)]
enum SubsystemsCommand {
    /// Add a subsystem to an existing member.
    Add {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Subsystem identifier, e.g. VN/GOV/000.00.00.H29/CSDLDC.
        #[arg(long)]
        id: SubsystemId,
    },
    /// List subsystems.
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Only the subsystems of this member.
        #[arg(long)]
        member: Option<MemberId>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Remove a subsystem with its services and access rights.
    Remove {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Subsystem identifier.
        #[arg(long)]
        id: SubsystemId,
    },
}

#[derive(Subcommand)]
enum NodesCommand {
    /// List admitted nodes.
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Only the nodes of this member.
        #[arg(long)]
        member: Option<MemberId>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Remove a node: it leaves the next global configuration and peers refuse it.
    Remove {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The node's member.
        #[arg(long)]
        member: MemberId,
        /// The node's name.
        #[arg(long)]
        name: NodeName,
    },
    /// Remove one authentication (TLS) certificate of a node that holds
    /// several, at the end of a rotation: it leaves the next global
    /// configuration and peers stop accepting it.
    RemoveCert {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The node's member.
        #[arg(long)]
        member: MemberId,
        /// The node's name.
        #[arg(long)]
        name: NodeName,
        /// The certificate's SHA-256 fingerprint (64 hex digits, as
        /// `nodes list` shows it).
        #[arg(long)]
        sha256: String,
    },
}

/// Which registration requests to list.
#[derive(Clone, Copy, ValueEnum)]
enum StateFilter {
    Pending,
    Approved,
    Rejected,
    All,
}

#[derive(Subcommand)]
enum RequestsCommand {
    /// List node registration requests (pending ones by default).
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Which requests to show.
        #[arg(long, value_enum, default_value = "pending")]
        state: StateFilter,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Approve a pending request: the node enters the next global configuration.
    Approve {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The request id (from `requests list`).
        #[arg(long)]
        id: uuid::Uuid,
    },
    /// Reject a pending request.
    Reject {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The request id (from `requests list`).
        #[arg(long)]
        id: uuid::Uuid,
        /// Why, for the member.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
enum TokensCommand {
    /// Create a token and print it once on standard output.
    Create {
        #[command(flatten)]
        cfg: ConfigArg,
        /// An operator token (full rights) for this person or tool.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["member", "name"], required_unless_present = "member")]
        operator: Option<String>,
        /// A member token (acts for this member only); needs --name.
        #[arg(long, requires = "name")]
        member: Option<MemberId>,
        /// Label of a member token.
        #[arg(long, requires = "member")]
        name: Option<String>,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Revoke a token; it stops working at once.
    Revoke {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The token's id (from `tokens list`).
        #[arg(long)]
        id: uuid::Uuid,
    },
}

#[derive(Subcommand)]
enum ConfCommand {
    /// Write the configuration anchor file that every node installs.
    Anchor {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Where to write the anchor (JSON).
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct PkiDir {
    /// The PKI directory.
    #[arg(long)]
    dir: PathBuf,
    /// A file whose first line is the passphrase of the CA keys.
    #[arg(long)]
    passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum PkiCommand {
    /// Create a root CA, an issuing intermediate and a TSA certificate.
    Init {
        #[command(flatten)]
        dir: PkiDir,
        /// OCSP URL written into every issued certificate.
        #[arg(long, default_value = "http://127.0.0.1:8190/ocsp")]
        ocsp_url: String,
        /// Common name of the root CA.
        #[arg(long, default_value = "NDXP Root CA")]
        name: String,
        /// Key algorithm of the CA and TSA keys: ec-p256, rsa-2048 or rsa-3072.
        #[arg(long, default_value = "ec-p256")]
        key_alg: KeyAlgorithm,
        /// Issue directly from the root (no intermediate CA).
        #[arg(long)]
        no_intermediate: bool,
    },
    /// Issue a certificate from a CSR, for the identity and names given
    /// here (a CSR asking for anything else is refused).
    Issue {
        #[command(flatten)]
        dir: PkiDir,
        /// The CSR (PEM or DER).
        #[arg(long)]
        csr: PathBuf,
        /// `auth` (node TLS certificate) or `sign` (member signing certificate).
        #[arg(long)]
        profile: Profile,
        /// The member the certificate is for, as checked out of band (e.g.
        /// VN/GOV/000.00.00.H29); the CSR must name it.
        #[arg(long)]
        member: ndxp_core::MemberId,
        /// The member's node the certificate is for (`auth` only); the CSR
        /// must name it.
        #[arg(long)]
        node: Option<ndxp_core::NodeName>,
        /// A DNS name the node certificate may carry (`auth` only;
        /// repeatable). The CSR may ask only for names given here.
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        /// An IP address the node certificate may carry (`auth` only;
        /// repeatable). The CSR may ask only for addresses given here.
        #[arg(long = "ip", value_name = "ADDR")]
        ip: Vec<std::net::IpAddr>,
        /// Where to write the certificate (PEM).
        #[arg(long)]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 730)]
        days: u32,
    },
    /// Revoke an issued certificate.
    Revoke {
        #[command(flatten)]
        dir: PkiDir,
        /// The certificate to revoke (PEM or DER).
        #[arg(long)]
        cert: PathBuf,
        /// RFC 5280 reason name, e.g. keyCompromise or superseded.
        #[arg(long)]
        reason: RevocationReason,
    },
    /// Serve OCSP at /ocsp and RFC 3161 timestamps at /tsa.
    Serve {
        #[command(flatten)]
        dir: PkiDir,
        /// Address to listen on, IPv4 or IPv6 (e.g. 127.0.0.1:8190 or [::1]:8190).
        #[arg(long, default_value = "127.0.0.1:8190")]
        listen: SocketAddr,
        /// Policy OID stamped into timestamp tokens (default: the
        /// documentation-only 1.3.6.1.4.1.32473.3161.1).
        #[arg(long)]
        tsa_policy: Option<String>,
        /// Signing operations (timestamps, OCSP answers not served from the
        /// cache) running at once; past it the answer is 503 with
        /// Retry-After.
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
        signing_concurrency: u16,
        /// Of those, how many one client address may hold.
        #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..))]
        signing_per_address: u16,
        /// Validity of OCSP answers in seconds (nextUpdate - thisUpdate);
        /// cached answers are renewed after half of it.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u32).range(60..=604_800))]
        ocsp_validity_secs: u32,
    },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            std::process::exit(code);
        }
    };
    init_tracing(cli.log_json);
    if let Err(e) = run(cli.command) {
        eprintln!("ndxp-gateway: error: {}", ndxp_core::ErrorChain(&*e));
        std::process::exit(exit_code(&e));
    }
}

/// An argument error (exit status 64) with `msg` as the message.
fn usage(msg: &str) -> anyhow::Error {
    CliError::Invalid(msg.to_string()).into()
}

/// 64 for a bad configuration or a bad identifier/argument, 1 otherwise.
fn exit_code(e: &anyhow::Error) -> i32 {
    let usage = e.chain().any(|c| {
        c.downcast_ref::<ConfigError>().is_some()
            || c.downcast_ref::<AdminError>()
                .is_some_and(AdminError::is_usage)
            || c.downcast_ref::<CliError>().is_some_and(CliError::is_usage)
    });
    if usage {
        EXIT_USAGE
    } else {
        1
    }
}

/// The person at the keyboard, for the audit trail.
fn cli_actor() -> Actor {
    let user = std::env::var("USER")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "operator".to_string());
    Actor::cli(&user)
}

fn load_config(cfg: &ConfigArg) -> Result<GatewayConfig> {
    load_config_file(&cfg.config)
}

/// Loads a configuration file, warning when others can read it (it holds
/// no secret itself: keys, passphrases and tokens live in files that are
/// refused when open, but a PostgreSQL URL may carry a password).
fn load_config_file(path: &Path) -> Result<GatewayConfig> {
    let config = GatewayConfig::load(path)?;
    if let Err(e) = ndxp_sign::files::check_mode(path, ndxp_sign::files::Readers::OwnerAndGroup) {
        tracing::warn!("the configuration file is readable by every user of this host: {e}");
    }
    Ok(config)
}

/// Loads the configuration, opens its registry and runs `f` on it.
fn with_admin<T>(
    cfg: &ConfigArg,
    f: impl AsyncFnOnce(&Admin) -> Result<T, AdminError>,
) -> Result<T> {
    let config = load_config(cfg)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let admin = Admin::open(&config, cli_actor()).await?;
        Ok(f(&admin).await?)
    })
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn print_list<T: serde::Serialize>(
    items: &[T],
    json: bool,
    table: fn(&[T]) -> String,
) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(items)?);
    } else {
        print!("{}", table(items));
    }
    Ok(())
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Pki(p) => return run_pki(p),
        Command::Serve(cfg) => return serve(cfg),
        Command::Gateway(c) => {
            let config = load_config_file(c.config())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let out = rt.block_on(ndxp_gateway::gateway::cli::run(&config, &cli_actor(), *c))?;
            print!("{}", out.stdout);
            if let Some(note) = out.note {
                eprintln!("{note}");
            }
        }
        Command::Members(c) => match c {
            MembersCommand::Add { cfg, id, name } => {
                let m = with_admin(&cfg, async |a| a.add_member(&id, &name).await)?;
                println!("added member {} ({})", m.id, m.name);
            }
            MembersCommand::List { cfg, out } => {
                let v = with_admin(&cfg, async |a| a.list_members().await)?;
                print_list(&v, out.json, admin::members_table)?;
            }
            MembersCommand::Remove { cfg, id } => {
                with_admin(&cfg, async |a| a.remove_member(&id).await)?;
                println!("removed member {id} with its subsystems, nodes and services; its tokens are revoked");
            }
        },
        Command::Subsystems(c) => match c {
            SubsystemsCommand::Add { cfg, id } => {
                let s = with_admin(&cfg, async |a| a.add_subsystem(&id).await)?;
                println!("added subsystem {}", s.id);
            }
            SubsystemsCommand::List { cfg, member, out } => {
                let v = with_admin(&cfg, async |a| a.list_subsystems(member.as_ref()).await)?;
                print_list(&v, out.json, admin::subsystems_table)?;
            }
            SubsystemsCommand::Remove { cfg, id } => {
                with_admin(&cfg, async |a| a.remove_subsystem(&id).await)?;
                println!("removed subsystem {id}");
            }
        },
        Command::Nodes(c) => match c {
            NodesCommand::List { cfg, member, out } => {
                let v = with_admin(&cfg, async |a| a.list_nodes(member.as_ref()).await)?;
                print_list(&v, out.json, admin::nodes_table)?;
            }
            NodesCommand::Remove { cfg, member, name } => {
                with_admin(&cfg, async |a| a.remove_node(&member, &name).await)?;
                println!("removed node {name} of {member}; it is left out of the next global configuration");
            }
            NodesCommand::RemoveCert {
                cfg,
                member,
                name,
                sha256,
            } => {
                let n = with_admin(&cfg, async |a| {
                    a.remove_node_certificate(&member, &name, &sha256).await
                })?;
                println!(
                    "removed certificate {} from node {name} of {member}; the next global configuration lists only {}",
                    sha256.trim().to_ascii_lowercase(),
                    n.fingerprints().join(", ")
                );
            }
        },
        Command::Requests(c) => match c {
            RequestsCommand::List { cfg, state, out } => {
                let state = match state {
                    StateFilter::Pending => Some(RegistrationState::Pending),
                    StateFilter::Approved => Some(RegistrationState::Approved),
                    StateFilter::Rejected => Some(RegistrationState::Rejected),
                    StateFilter::All => None,
                };
                let v = with_admin(&cfg, async |a| a.list_requests(state).await)?;
                print_list(&v, out.json, admin::requests_table)?;
            }
            RequestsCommand::Approve { cfg, id } => {
                let n = with_admin(&cfg, async |a| a.approve_request(id).await)?;
                if n.auth_certs.len() > 1 {
                    println!(
                        "approved request {id}: node {} of {} holds {} authentication certificates ({}); the next global configuration lists them all",
                        n.name,
                        n.member,
                        n.auth_certs.len(),
                        n.fingerprints().join(", ")
                    );
                } else {
                    println!(
                        "approved request {id}: node {} of {} at {} enters the next global configuration",
                        n.name, n.member, n.address
                    );
                }
            }
            RequestsCommand::Reject { cfg, id, reason } => {
                let r = with_admin(&cfg, async |a| a.reject_request(id, &reason).await)?;
                println!("rejected request {id} (node {} of {})", r.node, r.member);
            }
        },
        Command::Tokens(c) => match c {
            TokensCommand::Create {
                cfg,
                operator,
                member,
                name,
            } => {
                let (kind, label) = match (operator, member, name) {
                    (Some(op), _, _) => (CredentialKind::Operator, op),
                    (None, Some(m), Some(n)) => (CredentialKind::Member(m), n),
                    _ => {
                        return Err(AdminError::Invalid(
                            "give --operator NAME, or --member M --name NAME".into(),
                        )
                        .into())
                    }
                };
                let t = with_admin(&cfg, async |a| a.create_token(&kind, &label).await)?;
                println!("{}", t.token);
                eprintln!(
                    "created {} token {} ({}); it is shown only this once, keep it now",
                    admin::kind_text(&t.credential.kind),
                    t.credential.id,
                    t.credential.name
                );
            }
            TokensCommand::List { cfg, out } => {
                let v = with_admin(&cfg, async |a| a.list_tokens().await)?;
                print_list(&v, out.json, admin::tokens_table)?;
            }
            TokensCommand::Revoke { cfg, id } => {
                with_admin(&cfg, async |a| a.revoke_token(id).await)?;
                println!("revoked token {id}");
            }
        },
        Command::Status { cfg, out } => {
            let config = load_config(&cfg)?;
            let rows = runtime()?.block_on(ndxp_gateway::monitoring::status_command(
                &config,
                chrono::Utc::now(),
            ))?;
            print_list(&rows, out.json, ndxp_gateway::monitoring::states_table)?;
        }
        Command::Reconcile {
            cfg,
            period,
            format,
            wait,
        } => {
            let config = load_config(&cfg)?;
            let report = runtime()?.block_on(ndxp_gateway::monitoring::reconcile_command(
                &config,
                &period,
                std::time::Duration::from_secs(wait),
                std::time::Duration::from_secs(1),
            ))?;
            match format {
                ReportFormat::Text => print!("{}", ndxp_gateway::monitoring::report_text(&report)),
                ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
                ReportFormat::Csv => print!("{}", report.to_csv()),
            }
            let pending = report.pending();
            if !pending.is_empty() {
                eprintln!(
                    "ndxp-gateway: {} drill-down requests still pending (the nodes answer on their next poll): {}",
                    pending.len(),
                    pending
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Command::Backup { cfg, out } => {
            let config = load_config(&cfg)?;
            let items = config.backup_items(&cfg.config);
            let tool = concat!("ndxp-gateway ", env!("CARGO_PKG_VERSION"));
            let manifest = runtime()?.block_on(ndxp_audit::backup::run(&items, &out, tool))?;
            print!("{}", manifest.summary(&out));
        }
        Command::Conf(ConfCommand::Anchor { cfg, out }) => {
            let config = load_config(&cfg)?;
            let anchor = admin::build_anchor(&config, chrono::Utc::now())?;
            admin::write_anchor(&anchor, &out)?;
            println!(
                "wrote {}: instance {}, conf_url {}, signer member {}",
                out.display(),
                anchor.instance,
                anchor.conf_url,
                anchor
                    .signer_member
                    .as_ref()
                    .map_or_else(|| "-".to_string(), ToString::to_string)
            );
        }
    }
    Ok(())
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NDXP_LOG")
        // PostgreSQL's notices ("relation ... already exists, skipping")
        // are not worth a line each time a command opens the database.
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colour only for a person at a terminal: a log file or a pipe
        // (systemd, the demo's logs/) must stay plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn passphrase(dir: &PkiDir) -> Result<Option<Vec<u8>>> {
    dir.passphrase_file
        .as_deref()
        .map(|p| ndxp_sign::key::read_passphrase_file(p).map_err(Into::into))
        .transpose()
}

/// What `pki issue` prints: the serial, the subject, the names, the
/// profile and the validity of the certificate it signed.
fn issued_text(
    cert: &ndxp_sign::openssl::x509::X509,
    profile: Profile,
    out: &std::path::Path,
) -> Result<String> {
    use ndxp_sign::cert;
    let mut names = Vec::new();
    for n in cert.subject_alt_names().iter().flatten() {
        if let Some(u) = n.uri() {
            names.push(format!("URI:{u}"));
        } else if let Some(d) = n.dnsname() {
            names.push(format!("DNS:{d}"));
        } else if let Some(ip) = n.ipaddress() {
            let ip = match ip.len() {
                4 => <[u8; 4]>::try_from(ip).map(std::net::IpAddr::from).ok(),
                16 => <[u8; 16]>::try_from(ip).map(std::net::IpAddr::from).ok(),
                _ => None,
            };
            names.push(ip.map_or_else(|| "IP:?".into(), |ip| format!("IP:{ip}")));
        }
    }
    let time =
        |t| cert::asn1_to_utc(t).map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    Ok(format!(
        "issued {profile} certificate serial {} to {}\n  subject:  {}\n  names:    {}\n  \
         profile:  {}\n  valid:    {} to {}\n",
        cert::cert_serial_hex(cert)?,
        out.display(),
        cert::subject_text(cert.subject_name()),
        names.join(", "),
        match profile {
            Profile::Auth => "auth (TLS server and client authentication of a node)",
            Profile::Sign => "sign (message signing of a member)",
        },
        time(cert.not_before())?,
        time(cert.not_after())?,
    ))
}

fn open(dir: &PkiDir) -> Result<Pki> {
    let pass = passphrase(dir)?;
    Pki::open(&dir.dir, pass.as_deref())
        .with_context(|| format!("opening the PKI directory {}", dir.dir.display()))
}

/// `ndxp-gateway serve`: runs until Ctrl-C or SIGTERM.
fn serve(cfg: ConfigArg) -> Result<()> {
    let config = load_config(&cfg)?;
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async move {
        tracing::info!(
            management = %config.management.listen,
            admin = %config.admin.listen,
            storage = %ndxp_core::dburl::redact(&config.storage.url),
            "starting the management role"
        );
        ndxp_gateway::management::server::run(config, shutdown_signal()).await?;
        tracing::info!("stopped");
        anyhow::Ok(())
    })
}

fn run_pki(command: PkiCommand) -> Result<()> {
    match command {
        PkiCommand::Init {
            dir,
            ocsp_url,
            name,
            key_alg,
            no_intermediate,
        } => {
            let pass = passphrase(&dir)?;
            let opts = InitOptions {
                name,
                key_algorithm: key_alg,
                intermediate: !no_intermediate,
                ocsp_url,
                passphrase: pass,
                ..InitOptions::default()
            };
            let pki = Pki::init(&dir.dir, &opts)
                .with_context(|| format!("creating the PKI in {}", dir.dir.display()))?;
            println!("created PKI in {}", dir.dir.display());
            for f in ["ca.pem", "chain.pem", "tsa.pem"] {
                println!("  {}", dir.dir.join(f).display());
            }
            println!("  OCSP URL in issued certificates: {}", pki.ocsp_url());
            Ok(())
        }
        PkiCommand::Issue {
            dir,
            csr,
            profile,
            member,
            node,
            dns,
            ip,
            out,
            days,
        } => {
            let identity = match (profile, node) {
                (Profile::Auth, Some(node)) => ndxp_sign::cert::Identity::Node(member, node),
                (Profile::Sign, None) => ndxp_sign::cert::Identity::Member(member),
                (Profile::Auth, None) => {
                    return Err(usage(
                        "--profile auth needs --node: the node the TLS certificate is for",
                    ))
                }
                (Profile::Sign, Some(_)) => {
                    return Err(usage(
                        "--profile sign is a member's certificate: drop --node",
                    ))
                }
            };
            let expected = ndxp_sign::csr::RequestedCertificate {
                identity,
                dns_names: dns,
                ip_addresses: ip,
            };
            let pki = open(&dir)?;
            let csr = ndxp_sign::csr::parse_csr(&read(&csr)?)
                .with_context(|| format!("reading the CSR {}", csr.display()))?;
            let cert = pki
                .issue_expected(&csr, &expected, days)
                .context("issuing the certificate")?;
            let pem = cert.to_pem().context("encoding the certificate")?;
            std::fs::write(&out, pem).with_context(|| format!("writing {}", out.display()))?;
            print!("{}", issued_text(&cert, profile, &out)?);
            Ok(())
        }
        PkiCommand::Revoke { dir, cert, reason } => {
            let pki = open(&dir)?;
            let cert = ndxp_sign::cert::parse_certificate(&read(&cert)?)
                .with_context(|| format!("reading the certificate {}", cert.display()))?;
            pki.revoke(&cert, reason, chrono::Utc::now())
                .context("revoking the certificate")?;
            println!(
                "revoked serial {} ({reason})",
                ndxp_sign::cert::cert_serial_hex(&cert)?
            );
            Ok(())
        }
        PkiCommand::Serve {
            dir,
            listen,
            tsa_policy,
            signing_concurrency,
            signing_per_address,
            ocsp_validity_secs,
        } => {
            let pki = open(&dir)?;
            let limits = ndxp_gateway::pki::PkiLimits {
                signing_concurrency: usize::from(signing_concurrency),
                signing_per_address: usize::from(signing_per_address),
                ocsp_validity: std::time::Duration::from_secs(u64::from(ocsp_validity_secs)),
            };
            let service = Arc::new(ndxp_gateway::pki::PkiService::with_options(
                pki,
                tsa_policy.as_deref(),
                limits,
            )?);
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let addr = listener.local_addr()?;
                tracing::info!(%addr, "serving OCSP at /ocsp and timestamps at /tsa");
                let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                let fresh = tokio::spawn(service.clone().keep_answers_fresh(async move {
                    let _ = stop_rx.await;
                }));
                ndxp_gateway::pki::serve(listener, service, shutdown_signal()).await?;
                let _ = stop_tx.send(());
                let _ = fresh.await;
                tracing::info!("stopped");
                anyhow::Ok(())
            })
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
