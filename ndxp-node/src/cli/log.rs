//! `ndxp-node log`: message-log archives and their verification.

use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};
use ndxp_core::ErrorChain;
use ndxp_node::config::NodeConfig;

use super::{runtime, ConfigArg, EXIT_USAGE};

#[derive(clap::Subcommand)]
pub enum LogCommand {
    /// Write the records received in [--from, --to) (every writer of the
    /// log), their time-stamp tokens and the certificates needed to one
    /// self-contained file.
    Archive {
        /// The node's configuration (its [log] url is read).
        #[command(flatten)]
        config: ConfigArg,
        /// Start, RFC 3339 (inclusive), e.g. 2026-01-01T00:00:00Z.
        #[arg(long)]
        from: DateTime<Utc>,
        /// End, RFC 3339 (exclusive).
        #[arg(long)]
        to: DateTime<Utc>,
        /// The archive file to write.
        #[arg(short = 'o', long, value_name = "FILE")]
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

/// Runs a `log` command.
pub fn run(command: LogCommand) -> Result<i32> {
    match command {
        LogCommand::Archive {
            config,
            from,
            to,
            out,
            certs,
        } => archive(&config.load()?, from, to, &out, &certs),
        LogCommand::Verify { file, ca } => verify(&file, ca.as_deref()),
    }
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

/// A progress callback that moves `bar`.
fn follow(bar: &indicatif::ProgressBar) -> impl Fn(u64, u64) + '_ {
    |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    }
}

fn archive(
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
    let progress = follow(&bar);
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

fn verify(file: &Path, ca: Option<&Path>) -> Result<i32> {
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
    let progress = follow(&bar);
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
