//! `ndxp-gateway`: the central services of NDXP. See `docs/pki.md`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
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
    /// The platform's certification authority, OCSP responder and TSA.
    #[command(subcommand)]
    Pki(PkiCommand),
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
    /// Issue a certificate from a CSR.
    Issue {
        #[command(flatten)]
        dir: PkiDir,
        /// The CSR (PEM or DER).
        #[arg(long)]
        csr: PathBuf,
        /// `auth` (node TLS certificate) or `sign` (member signing certificate).
        #[arg(long)]
        profile: Profile,
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
        eprintln!("ndxp-gateway: error: {e:#}");
        std::process::exit(1);
    }
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("NDXP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
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

fn open(dir: &PkiDir) -> Result<Pki> {
    let pass = passphrase(dir)?;
    Pki::open(&dir.dir, pass.as_deref())
        .with_context(|| format!("opening the PKI directory {}", dir.dir.display()))
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Pki(PkiCommand::Init {
            dir,
            ocsp_url,
            name,
            key_alg,
            no_intermediate,
        }) => {
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
        Command::Pki(PkiCommand::Issue {
            dir,
            csr,
            profile,
            out,
            days,
        }) => {
            let pki = open(&dir)?;
            let csr = ndxp_sign::csr::parse_csr(&read(&csr)?)
                .with_context(|| format!("reading the CSR {}", csr.display()))?;
            let cert = pki
                .issue(&csr, profile, days)
                .context("issuing the certificate")?;
            let pem = cert.to_pem().context("encoding the certificate")?;
            std::fs::write(&out, pem).with_context(|| format!("writing {}", out.display()))?;
            println!(
                "issued {profile} certificate serial {} to {}",
                ndxp_sign::cert::cert_serial_hex(&cert)?,
                out.display()
            );
            Ok(())
        }
        Command::Pki(PkiCommand::Revoke { dir, cert, reason }) => {
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
        Command::Pki(PkiCommand::Serve {
            dir,
            listen,
            tsa_policy,
        }) => {
            let pki = open(&dir)?;
            let service = Arc::new(ndxp_gateway::pki::PkiService::with_tsa_policy(
                pki,
                tsa_policy.as_deref(),
            )?);
            let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                let addr = listener.local_addr()?;
                tracing::info!(%addr, "serving OCSP at /ocsp and timestamps at /tsa");
                ndxp_gateway::pki::serve(listener, service, shutdown_signal()).await?;
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
