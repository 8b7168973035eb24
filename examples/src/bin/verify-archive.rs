//! `verify-archive --archive FILE --ca FILE`: verifies a message-log
//! archive (made by `ndxp-node log archive`, format in `docs/archive.md`)
//! with `ndxp-audit` and `ndxp-sign` alone: every record's hash and link,
//! every logged request and response signature against the CA file, and
//! every RFC 3161 time-stamp token.
//!
//! Exit status: 0 valid, 1 invalid (naming the first bad record), 2 the
//! files could not be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use ndxp_audit::archive::{verify_archive, ArchiveError, ArchiveReport, VerifyOptions};
use ndxp_sign::cert::read_pem_chain;

/// Verify an NDXP message-log archive against CA certificates.
#[derive(Parser)]
#[command(name = "verify-archive")]
struct Args {
    /// The archive file (`ndxp-node log archive --out`).
    #[arg(long)]
    archive: PathBuf,
    /// PEM file of the trusted CA certificate(s), e.g. the platform's ca.pem.
    /// Signatures and time-stamp tokens must chain to one of them.
    #[arg(long)]
    ca: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err((code, msg)) => {
            eprintln!("verify-archive: {msg}");
            ExitCode::from(code)
        }
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, (u8, String)> {
    std::fs::read(path).map_err(|e| (2, format!("cannot read {}: {e}", path.display())))
}

fn run(args: &Args) -> Result<String, (u8, String)> {
    let anchors =
        read_pem_chain(&read(&args.ca)?).map_err(|e| (2, format!("{}: {e}", args.ca.display())))?;
    let bytes = read(&args.archive)?;
    let options = VerifyOptions {
        anchors: Some(anchors),
    };
    match verify_archive(&bytes, &options) {
        Ok(report) => Ok(describe(&report, args)),
        Err(e @ ArchiveError::Io { .. }) => Err((2, e.to_string())),
        Err(e) => Err((1, format!("INVALID: {}", ndxp_core::ErrorChain(&e)))),
    }
}

fn describe(r: &ArchiveReport, args: &Args) -> String {
    let mut out = format!(
        "VALID: {} records in {} chain(s); {} signatures and {} time-stamp tokens verified against {}\n",
        r.records,
        r.chains.len(),
        r.signatures_verified,
        r.timestamps_verified,
        args.ca.display()
    );
    for c in &r.chains {
        let last = (c.first_seq + c.count).saturating_sub(1);
        let stamped = match c.stamped_through {
            Some(s) => {
                let when = r
                    .timestamps
                    .iter()
                    .filter(|t| t.writer == c.writer && t.last_seq == s)
                    .find_map(|t| t.gen_time)
                    .map(|t| format!(" at {}", t.to_rfc3339()))
                    .unwrap_or_default();
                format!("timestamped through {s}{when}")
            }
            None => "not timestamped".to_string(),
        };
        out.push_str(&format!(
            "  {}: records {}..={last}, {stamped}, {} newer not yet timestamped\n",
            c.writer, c.first_seq, c.unstamped
        ));
    }
    out
}
