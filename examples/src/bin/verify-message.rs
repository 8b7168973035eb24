//! `verify-message --head FILE [--body FILE] [--request FILE] --ca FILE
//! [--at created|now|RFC3339]`: verifies a signed NDXP message saved as
//! files, with `ndxp-sign` alone (see `ndxp_examples::message_file` for the
//! file format).
//!
//! Exit status: 0 valid, 1 invalid, 2 the files could not be read.

use std::path::PathBuf;
use std::process::ExitCode;

use chrono::{DateTime, Utc};
use clap::Parser;
use ndxp_examples::message_file::{parse_head, verify, CheckTime, VerifyError};
use ndxp_sign::cert::read_pem_chain;

/// Verify a signed NDXP message (head file + body file) against CA certificates.
#[derive(Parser)]
#[command(name = "verify-message")]
struct Args {
    /// The message head (HTTP/1.1 text form).
    #[arg(long)]
    head: PathBuf,
    /// The body, byte for byte (absent: an empty body).
    #[arg(long)]
    body: Option<PathBuf>,
    /// For a response: the head of the request it answers.
    #[arg(long)]
    request: Option<PathBuf>,
    /// PEM file of the trusted CA certificate(s), e.g. the platform's ca.pem.
    #[arg(long)]
    ca: PathBuf,
    /// When to check: `created` (the signature's own time, default), `now`,
    /// or an RFC 3339 time.
    #[arg(long, default_value = "created", value_parser = parse_when)]
    at: CheckTime,
}

fn parse_when(s: &str) -> Result<CheckTime, String> {
    match s {
        "created" => Ok(CheckTime::Created),
        "now" => Ok(CheckTime::At(Utc::now())),
        t => DateTime::parse_from_rfc3339(t)
            .map(|t| CheckTime::At(t.with_timezone(&Utc)))
            .map_err(|e| format!("expected created, now or an RFC 3339 time: {e}")),
    }
}

fn read(path: &PathBuf) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err((code, msg)) => {
            eprintln!("verify-message: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &Args) -> Result<String, (u8, String)> {
    let io = |m: String| (2, m);
    let head = parse_head(&read(&args.head).map_err(io)?)
        .map_err(|e| io(format!("{}: {e}", args.head.display())))?;
    let body = match &args.body {
        Some(p) => read(p).map_err(io)?,
        None => Vec::new(),
    };
    let request = match &args.request {
        Some(p) => Some(
            parse_head(&read(p).map_err(io)?).map_err(|e| io(format!("{}: {e}", p.display())))?,
        ),
        None => None,
    };
    let anchors = read_pem_chain(&read(&args.ca).map_err(io)?)
        .map_err(|e| io(format!("{}: {e}", args.ca.display())))?;
    match verify(&head, &body, request.as_ref(), anchors, args.at) {
        Ok(vm) => {
            let mut out = format!(
                "VALID: signed by {} with {} at {} (created {})\n  certificate sha-256 {}\n  NDXP-Id {}",
                vm.signer,
                vm.algorithm.as_str(),
                chrono::DateTime::from_timestamp(vm.created, 0)
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_default(),
                vm.created,
                vm.fingerprint,
                vm.ndxp_id,
            );
            if let Some(c) = &vm.client {
                out.push_str(&format!("\n  NDXP-Client {c}"));
            }
            out.push_str(&format!(
                "\n  body: {} bytes, matches Content-Digest {}",
                body.len(),
                vm.content_digest
            ));
            out.push_str("\n  revocation: not checked (offline)");
            Ok(out)
        }
        Err(e @ VerifyError::Invalid(_)) => Err((1, format!("INVALID: {e}"))),
        Err(e @ VerifyError::NoSignature(_)) => Err((1, format!("INVALID: {e}"))),
        Err(e) => Err((2, e.to_string())),
    }
}
