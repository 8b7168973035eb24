//! `ndxp-node`: the DXL node of NDXP's distributed model. See `docs/node.md`
//! and `docs/pki.md`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use ndxp_core::{ErrorChain, MemberId, NodeName, ServiceId, SubsystemId};
use ndxp_node::conf::NodeConfStatus;
use ndxp_node::config::{self, ConfigError, NodeConfig};
use ndxp_node::keys::{init_keys, KeysOptions};
use ndxp_node::local::{
    grantee_text, parse_grantee, ConnectionType, IsCertificate, LocalFile, ServiceEntry,
};
use ndxp_registry::globalconf::RefreshOutcome;
use ndxp_sign::key::KeyAlgorithm;

/// mimalloc: the exchange allocates many short-lived buffers on several
/// threads, where it is markedly cheaper than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status for a bad command line or configuration (EX_USAGE).
const EXIT_USAGE: i32 = 64;

#[derive(Parser)]
#[command(name = "ndxp-node", version, about = "NDXP distributed-model node")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Key material of this node and its member.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Ask the platform operator to admit this node: send a registration
    /// request signed with the member's signing key.
    Register {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// The global configuration.
    #[command(subcommand)]
    Conf(ConfCommand),
    /// Run the node: client port, peer port (mutual TLS) and admin port.
    Serve {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Log as JSON lines instead of human-readable text.
        #[arg(long)]
        log_json: bool,
    },
    /// Subsystems of this member on this node (local configuration).
    #[command(subcommand)]
    Subsystems(SubsystemsCommand),
    /// Services this node provides (local configuration).
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Access rights to the services this node provides (local configuration).
    #[command(subcommand)]
    Access(AccessCommand),
    /// Back up this node's state while it runs: the message log (SQLite:
    /// a consistent snapshot by VACUUM INTO; PostgreSQL: the pg_dump
    /// command to run), the local configuration, the last-good global
    /// configuration, the report state and the configuration file, into a
    /// new directory with a manifest (docs/operator-guide.md).
    Backup {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The backup directory to create (it must not exist or be empty).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// The message log: archives and their verification.
    #[command(subcommand)]
    Log(LogCommand),
}

#[derive(Subcommand)]
enum SubsystemsCommand {
    /// Add a subsystem of this node's member.
    Add {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The subsystem, e.g. VN/GOV/000.00.00.G22/QLHT.
        id: SubsystemId,
    },
    /// Remove a subsystem (it must provide no service here).
    Remove {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The subsystem.
        id: SubsystemId,
    },
    /// List the subsystems with their connection types and certificates.
    List {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Set how a subsystem's information systems connect to the client
    /// port: http (loopback only), https, or https-cert (HTTPS with a
    /// certificate registered by add-cert).
    Set {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
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
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The subsystem.
        #[arg(long)]
        subsystem: SubsystemId,
        /// The certificate, PEM (the first one in the file is taken).
        #[arg(long)]
        cert: PathBuf,
    },
    /// Remove a registered certificate of a subsystem.
    RemoveCert {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The subsystem.
        #[arg(long)]
        subsystem: SubsystemId,
        /// The certificate's SHA-256 fingerprint (as `list` shows it).
        #[arg(long)]
        sha256: String,
    },
}

#[derive(Subcommand)]
enum ServicesCommand {
    /// Provide a service, or change its backend, time-out or document.
    Add {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The service with its version, e.g. VN/GOV/000.00.00.H29/CSDLDC/citizen/v1.
        #[arg(long)]
        service: ServiceId,
        /// The backend's base URL, e.g. http://127.0.0.1:8400.
        #[arg(long)]
        backend: String,
        /// Seconds to wait for the backend.
        #[arg(long, default_value_t = ndxp_node::local::DEFAULT_SERVICE_TIMEOUT_SECS)]
        timeout_secs: u64,
        /// The service's OpenAPI document (JSON file).
        #[arg(long)]
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
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The service.
        #[arg(long)]
        service: ServiceId,
    },
    /// List the services.
    List {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum AccessCommand {
    /// Allow a client subsystem (or group:CODE) to call a service.
    Grant {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The service.
        #[arg(long)]
        service: ServiceId,
        /// A subsystem id, or group:CODE for a global group.
        #[arg(long)]
        client: String,
    },
    /// Withdraw a right.
    Revoke {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The service.
        #[arg(long)]
        service: ServiceId,
        /// A subsystem id, or group:CODE.
        #[arg(long)]
        client: String,
    },
    /// List the rights.
    List {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Subcommand)]
enum LogCommand {
    /// Write the records received in [--from, --to) (every writer of the
    /// log), their time-stamp tokens and the certificates needed to one
    /// self-contained file.
    Archive {
        /// The node's configuration file (its [log] url is read).
        #[arg(long)]
        config: PathBuf,
        /// Start, RFC 3339 (inclusive), e.g. 2026-01-01T00:00:00Z.
        #[arg(long)]
        from: DateTime<Utc>,
        /// End, RFC 3339 (exclusive).
        #[arg(long)]
        to: DateTime<Utc>,
        /// The archive file to write.
        #[arg(long)]
        out: PathBuf,
        /// A PEM file of certificates to carry as well (CA, TSA); repeatable.
        /// The CA and TSA certificates of the last-good global configuration
        /// are always carried.
        #[arg(long = "cert")]
        certs: Vec<PathBuf>,
    },
    /// Verify an archive: every record, link, signature and timestamp.
    /// Exits 0 when valid, 1 when not (naming the first bad record).
    Verify {
        /// The archive file.
        file: PathBuf,
        /// PEM file of the CA certificates to trust; without it the archive's
        /// own CA certificates are used (integrity, not trust).
        #[arg(long)]
        ca: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ConfCommand {
    /// Fetch the global configuration now, verify it, keep it as last-good.
    Fetch {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Show the last-good global configuration (no network). Exits 0 when it
    /// is valid, 1 when there is none or it has expired.
    Status {
        /// The node's configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Generate the authentication and signing keys (mode 0600) and their CSRs.
    Init {
        /// Directory to write auth.key, auth.csr, sign.key and sign.csr into.
        #[arg(long)]
        dir: PathBuf,
        /// The member that owns this node, e.g. VN/GOV/000.00.00.G22.
        #[arg(long)]
        member: MemberId,
        /// The node's name, unique within the member.
        #[arg(long)]
        node: NodeName,
        /// Key algorithm: ec-p256 (default), rsa-2048 or rsa-3072.
        #[arg(long, default_value = "ec-p256")]
        key_alg: KeyAlgorithm,
        /// DNS name or IP address for the authentication certificate (repeatable).
        #[arg(long = "alt-name")]
        alt_names: Vec<String>,
        /// Encrypt the keys with the passphrase on the first line of this file.
        #[arg(long)]
        passphrase_file: Option<PathBuf>,
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
    match run(cli.command) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("ndxp-node: error: {}", ErrorChain(&*e));
            let bad_config = e.chain().any(|c| c.is::<ConfigError>());
            std::process::exit(if bad_config { EXIT_USAGE } else { 1 });
        }
    }
}

/// Runs a command; returns the exit status.
fn run(command: Command) -> Result<i32> {
    match command {
        Command::Keys(k) => keys(k).map(|()| 0),
        Command::Register { config } => register(&load(&config)?),
        Command::Conf(ConfCommand::Fetch { config }) => conf_fetch(&load(&config)?),
        Command::Conf(ConfCommand::Status { config, json }) => conf_status(&load(&config)?, json),
        Command::Serve { config, log_json } => serve(&config, log_json),
        Command::Subsystems(c) => subsystems(c),
        Command::Services(c) => services(c),
        Command::Access(c) => access(c),
        Command::Log(LogCommand::Archive {
            config,
            from,
            to,
            out,
            certs,
        }) => log_archive(&load(&config)?, from, to, &out, &certs),
        Command::Log(LogCommand::Verify { file, ca }) => log_verify(&file, ca.as_deref()),
        Command::Backup { config, out } => {
            let cfg = load(&config)?;
            let items = cfg.backup_items(&config);
            let tool = concat!("ndxp-node ", env!("CARGO_PKG_VERSION"));
            let manifest = runtime()?.block_on(ndxp_audit::backup::run(&items, &out, tool))?;
            print!("{}", manifest.summary(&out));
            Ok(0)
        }
    }
}

fn serve(path: &Path, log_json: bool) -> Result<i32> {
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
    if log_json {
        builder.json().init();
    } else {
        builder.init();
    }
    let cfg = load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let node = ndxp_node::serve::Node::start(cfg).await?;
        tracing::info!(
            client = %node.client_addr(),
            client_tls = ?node.client_tls_addr(),
            peer = %node.peer_addr(),
            admin = %node.admin_addr(),
            "ports open"
        );
        node.run_until(shutdown_signal()).await;
        Ok::<_, anyhow::Error>(0)
    })
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}

fn local_file(path: &Path) -> Result<LocalFile> {
    let cfg = load(path)?;
    Ok(LocalFile::new(cfg.local.file, cfg.node.member))
}

fn subsystems(c: SubsystemsCommand) -> Result<i32> {
    match c {
        SubsystemsCommand::Add { config, id } => {
            local_file(&config)?.edit(|c, m| c.add_subsystem(m, id.clone()))?;
            println!("subsystem {id} is on this node");
        }
        SubsystemsCommand::Remove { config, id } => {
            local_file(&config)?.edit(|c, _| c.remove_subsystem(&id))?;
            println!("subsystem {id} removed");
        }
        SubsystemsCommand::List { config } => {
            let local = local_file(&config)?.read()?;
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

fn services(c: ServicesCommand) -> Result<i32> {
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
        ServicesCommand::List { config } => {
            for s in local_file(&config)?.read()?.services {
                println!(
                    "{}  {}  timeout {}s{}",
                    s.service,
                    s.backend,
                    s.timeout_secs,
                    if s.openapi.is_some() { "  openapi" } else { "" }
                );
            }
        }
    }
    Ok(0)
}

fn access(c: AccessCommand) -> Result<i32> {
    match c {
        AccessCommand::Grant {
            config,
            service,
            client,
        } => {
            let g = parse_grantee(&client).map_err(anyhow::Error::msg)?;
            local_file(&config)?.edit(|c, _| c.grant(service.clone(), g))?;
            println!("{client} may call {service}");
        }
        AccessCommand::Revoke {
            config,
            service,
            client,
        } => {
            let g = parse_grantee(&client).map_err(anyhow::Error::msg)?;
            local_file(&config)?.edit(|c, _| c.revoke(&service, &g))?;
            println!("{client} may no longer call {service}");
        }
        AccessCommand::List { config } => {
            for a in local_file(&config)?.read()?.access {
                println!("{}  {}", a.service, grantee_text(&a.client));
            }
        }
    }
    Ok(0)
}

/// Loads a configuration file, warning when others can read it (it holds
/// no secret itself: keys and the admin token live in files that are
/// refused when open, but a PostgreSQL URL may carry a password).
fn load(path: &Path) -> Result<NodeConfig> {
    let config = config::load(path)?;
    if let Err(e) = ndxp_sign::files::check_mode(path, ndxp_sign::files::Readers::OwnerAndGroup) {
        tracing::warn!("the configuration file is readable by every user of this host: {e}");
    }
    Ok(config)
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn register(cfg: &NodeConfig) -> Result<i32> {
    let receipt = runtime()?.block_on(ndxp_node::admission::register(cfg, Utc::now()))?;
    println!("registration request sent to {}", receipt.url);
    println!("  id:       {}", receipt.id);
    println!("  state:    {}", receipt.state);
    println!("  member:   {}", receipt.member);
    println!("  node:     {}", receipt.node);
    println!("  address:  {}", receipt.address);
    println!("  auth certificate sha-256: {}", receipt.auth_cert_sha256);
    println!(
        "next: the platform operator approves it (`ndxp-gateway requests approve --config FILE --id {}`); then `ndxp-node conf fetch` shows the node once the next global configuration is published",
        receipt.id
    );
    Ok(0)
}

fn conf_fetch(cfg: &NodeConfig) -> Result<i32> {
    let report = runtime()?.block_on(ndxp_node::conf::fetch(cfg, Utc::now()))?;
    if let Some(why) = &report.previous_unusable {
        eprintln!("ndxp-node: warning: the previous last-good file was set aside: {why}");
    }
    match report.outcome {
        RefreshOutcome::Updated { from: Some(f), to } => {
            println!("updated the global configuration from version {f} to {to}");
        }
        RefreshOutcome::Updated { from: None, to } => {
            println!("fetched the global configuration, version {to}");
        }
        RefreshOutcome::Renewed { version } => {
            println!("renewed the global configuration, version {version} (signed again)");
        }
        RefreshOutcome::Unchanged { version } => {
            println!("the global configuration is unchanged, version {version}");
        }
        _ => println!("refreshed the global configuration"),
    }
    print_status(&report.status);
    Ok(0)
}

fn conf_status(cfg: &NodeConfig, json: bool) -> Result<i32> {
    let status = ndxp_node::conf::status(cfg, Utc::now())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else if status.conf.version.is_none() {
        println!(
            "no global configuration on disk yet ({}); fetch one with `ndxp-node conf fetch --config FILE`",
            status.path.display()
        );
    } else {
        println!("global configuration of instance {}", status.conf.instance);
        print_status(&status);
    }
    Ok(if status.conf.valid { 0 } else { 1 })
}

fn print_status(s: &NodeConfStatus) {
    let c = &s.conf;
    println!("  file:          {}", s.path.display());
    println!("  source:        {}", c.conf_url);
    if let Some(v) = c.version {
        println!("  version:       {v}");
    }
    if let Some(t) = c.generated_at {
        println!("  generated at:  {}", rfc3339(t));
    }
    if let (Some(t), Some(secs)) = (c.expires_at, c.expires_in_secs) {
        if secs > 0 {
            println!("  expires at:    {} (in {})", rfc3339(t), span(secs));
        } else {
            println!("  expires at:    {} ({} ago)", rfc3339(t), span(-secs));
        }
    }
    if let Some(age) = c.age_secs {
        println!("  age:           {} since it was fetched", span(age));
    }
    let state = if c.valid {
        "valid"
    } else if c.expired {
        "EXPIRED: this node refuses to serve until a newer one is fetched"
    } else {
        "none"
    };
    println!("  state:         {state}");
    let Some(n) = &s.this_node else { return };
    if !n.listed {
        println!(
            "  this node:     {}/{} is not listed (not admitted yet, or not in this version)",
            n.member, n.name
        );
        return;
    }
    println!("  this node:     {}/{} is listed", n.member, n.name);
    if let Some(a) = &n.address {
        let note = if n.address_matches {
            "matches node.address"
        } else {
            "differs from node.address"
        };
        println!("    address:     {a} ({note})");
    }
    for fp in &n.auth_cert_sha256 {
        let mine = n.local_auth_cert_sha256.as_deref() == Some(fp.as_str());
        println!(
            "    auth cert:   {fp}{}",
            if mine { " (keys_dir/auth.pem)" } else { "" }
        );
    }
    if !n.local_cert_listed {
        match &n.local_auth_cert_sha256 {
            Some(fp) => println!("    warning:     keys_dir/auth.pem ({fp}) is not registered"),
            None => println!("    warning:     keys_dir/auth.pem cannot be read"),
        }
    }
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A number of seconds as `1d 2h 3m 4s`.
fn span(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (v, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if v > 0 || !out.is_empty() {
            out.push_str(&format!("{v}{unit} "));
        }
    }
    out.push_str(&format!("{s}s"));
    out
}

/// A progress bar on stderr (drawn only when stderr is a terminal).
fn progress_bar(what: &'static str) -> indicatif::ProgressBar {
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} [{bar:40}] {pos}/{len} records ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what);
    bar
}

fn log_archive(
    cfg: &NodeConfig,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    out: &Path,
    cert_files: &[PathBuf],
) -> Result<i32> {
    let mut certs = ndxp_node::logcmd::conf_certificates(cfg);
    for f in cert_files {
        match ndxp_node::logcmd::read_certificates(f) {
            Ok(list) => {
                for c in list {
                    certs.push(c.to_der()?);
                }
            }
            Err(e) => {
                eprintln!("ndxp-node: error: {e}");
                return Ok(EXIT_USAGE);
            }
        }
    }
    let bar = progress_bar("archiving");
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let written = runtime()?.block_on(ndxp_node::logcmd::archive(
        &cfg.log.url,
        from,
        to,
        certs,
        out,
        Some(&progress),
    ));
    bar.finish_and_clear();
    let written = written?;
    println!(
        "wrote {}: {} records in {} chains, {} timestamp tokens, {} bytes",
        written.path.display(),
        written.records,
        written.chains,
        written.timestamps,
        written.bytes
    );
    if written.unstamped > 0 {
        println!(
            "  note: the newest {} records are not timestamped yet; archive them again later to include their tokens",
            written.unstamped
        );
    }
    println!(
        "next: `ndxp-node log verify {} --ca ca.pem`",
        written.path.display()
    );
    Ok(0)
}

fn log_verify(file: &Path, ca: Option<&Path>) -> Result<i32> {
    let anchors = match ca.map(ndxp_node::logcmd::read_certificates).transpose() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ndxp-node: error: {e}");
            return Ok(EXIT_USAGE);
        }
    };
    if !file.is_file() {
        eprintln!(
            "ndxp-node: error: {} does not exist or is not a file",
            file.display()
        );
        return Ok(EXIT_USAGE);
    }
    let bar = progress_bar("verifying");
    let progress = |done: u64, total: u64| {
        bar.set_length(total);
        bar.set_position(done);
    };
    let result = ndxp_node::logcmd::verify(file, anchors, Some(&progress));
    bar.finish_and_clear();
    match result {
        Ok(r) => {
            println!("{}: valid", file.display());
            println!(
                "  {} records in {} chains; {} signatures and {} timestamp tokens verified; {} certificates",
                r.records,
                r.chains.len(),
                r.signatures_verified,
                r.timestamps_verified,
                r.certificates
            );
            for c in &r.chains {
                let last = c.first_seq + c.count - 1;
                let stamped = match c.stamped_through {
                    Some(s) => format!("timestamped through {s}"),
                    None => "not timestamped".into(),
                };
                println!(
                    "  {}: records {}..={}, {stamped}, {} unstamped",
                    c.writer, c.first_seq, last, c.unstamped
                );
            }
            if r.anchors_from_archive {
                println!("  trust: checked against the archive's own CA certificates; pass --ca ca.pem to check against yours");
            } else {
                println!(
                    "  trust: checked against {}",
                    ca.map(|p| p.display().to_string()).unwrap_or_default()
                );
            }
            Ok(0)
        }
        Err(e) => {
            println!("{}: INVALID", file.display());
            println!("  {}", ErrorChain(&e));
            Ok(1)
        }
    }
}

fn keys(command: KeysCommand) -> Result<()> {
    match command {
        KeysCommand::Init {
            dir,
            member,
            node,
            key_alg,
            alt_names,
            passphrase_file,
        } => {
            let mut opts = KeysOptions::new(dir, member, node);
            opts.algorithm = key_alg;
            opts.alt_names = alt_names;
            opts.passphrase = passphrase_file
                .as_deref()
                .map(ndxp_sign::key::read_passphrase_file)
                .transpose()?;
            let files = init_keys(&opts).context("generating node keys")?;
            println!("wrote (keys with mode 0600):");
            for p in [
                &files.auth_key,
                &files.auth_csr,
                &files.sign_key,
                &files.sign_csr,
            ] {
                println!("  {}", p.display());
            }
            println!("next: have the CA issue auth.csr (profile auth) and sign.csr (profile sign)");
            Ok(())
        }
    }
}
