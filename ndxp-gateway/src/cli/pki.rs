//! `ndxp-gateway pki ...`: the platform's certification authority
//! (`ndxp_sign::ca`) and its OCSP and timestamp service
//! ([`ndxp_gateway::pki`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ndxp_gateway::pki::commands;
use ndxp_sign::ca::{InitOptions, Pki};
use ndxp_sign::cert::Profile;
use ndxp_sign::key::KeyAlgorithm;
use ndxp_sign::revocation::RevocationReason;

use super::{read, shutdown_signal, usage};

#[derive(Args)]
pub(crate) struct PkiDir {
    /// The PKI directory.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// A file whose first line is the passphrase of the CA keys.
    #[arg(long, value_name = "FILE")]
    passphrase_file: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum PkiCommand {
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
        #[arg(long, value_name = "FILE")]
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
        #[arg(short = 'o', long, value_name = "FILE")]
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
        #[arg(long, value_name = "FILE")]
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
        /// Also serve /healthz, /readyz and /metrics (Prometheus) on this
        /// address; loopback only, as it has no authentication (e.g.
        /// 127.0.0.1:8191).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
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

/// `ndxp-gateway pki ...`.
pub(crate) fn run(command: PkiCommand) -> Result<()> {
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
            let identity = commands::requested_identity(profile, member, node).map_err(usage)?;
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
            print!("{}", commands::issued_text(&cert, profile, &out)?);
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
            admin_listen,
            tsa_policy,
            signing_concurrency,
            signing_per_address,
            ocsp_validity_secs,
        } => {
            if let Some(addr) = admin_listen {
                if !addr.ip().is_loopback() {
                    anyhow::bail!("--admin-listen {addr} is not a loopback address; the admin port has no authentication, so it is only served on loopback (use 127.0.0.1 or [::1], and scrape through a local agent or an authenticating proxy)");
                }
            }
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
                // On SIGTERM: /readyz turns 503 first, then the public port
                // drains; the admin port closes last, so that a load
                // balancer sees the drain.
                let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
                {
                    let service = service.clone();
                    tokio::spawn(async move {
                        shutdown_signal().await;
                        service.drain();
                        tracing::info!("shutting down: draining the requests in flight");
                        let _ = drain_tx.send(true);
                    });
                }
                let (admin_stop_tx, admin_stop_rx) = tokio::sync::oneshot::channel::<()>();
                let admin_task = match admin_listen {
                    Some(addr) => {
                        let admin = tokio::net::TcpListener::bind(addr)
                            .await
                            .with_context(|| format!("listening on {addr} (--admin-listen)"))?;
                        tracing::info!(addr = %admin.local_addr()?, "serving /healthz, /readyz and /metrics");
                        let service = service.clone();
                        Some(tokio::spawn(async move {
                            ndxp_gateway::pki::serve_admin(
                                admin,
                                service,
                                &ndxp_edge::EdgeSettings::default(),
                                async move {
                                    let _ = admin_stop_rx.await;
                                },
                            )
                            .await;
                        }))
                    }
                    None => None,
                };
                let mut drained = drain_rx;
                ndxp_gateway::pki::serve(listener, service, async move {
                    let _ = drained.wait_for(|d| *d).await;
                })
                .await?;
                let _ = stop_tx.send(());
                let _ = fresh.await;
                let _ = admin_stop_tx.send(());
                if let Some(task) = admin_task {
                    let _ = task.await;
                }
                tracing::info!("stopped");
                anyhow::Ok(())
            })
        }
    }
}
