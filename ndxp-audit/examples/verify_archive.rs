//! Verifies a message-log archive with `ndxp-audit` built without its
//! default features (no database driver, no HTTP client, no async
//! runtime): what an integrator who only checks archives compiles.
//!
//! ```text
//! cargo run -p ndxp-audit --no-default-features --example verify_archive -- ARCHIVE [CA.pem]
//! ```
//!
//! With a CA file, every logged signature and time-stamp token must chain
//! to one of its certificates; without, only the archive's structure is
//! checked ([`ndxp_audit::archive::inspect`]). Exit status: 0 valid, 1
//! invalid, 2 usage or unreadable file.

use std::process::ExitCode;

use ndxp_audit::archive::{inspect, verify_archive, ArchiveReport, VerifyOptions};
use ndxp_sign::cert::read_pem_chain;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (archive, ca) = match args.as_slice() {
        [archive] => (archive, None),
        [archive, ca] => (archive, Some(ca)),
        _ => {
            eprintln!("usage: verify_archive ARCHIVE [CA.pem]");
            return ExitCode::from(2);
        }
    };
    let read = |path: &str| std::fs::read(path).map_err(|e| format!("cannot read {path}: {e}"));
    let checked = read(archive).and_then(|bytes| match ca {
        None => Ok(inspect(&bytes)),
        Some(ca) => {
            let anchors = read_pem_chain(&read(ca)?).map_err(|e| format!("{ca}: {e}"))?;
            let options = VerifyOptions {
                anchors: Some(anchors),
            };
            Ok(verify_archive(&bytes, &options))
        }
    });
    match checked {
        Ok(Ok(report)) => {
            print_report(&report);
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("INVALID: {}", ndxp_core::ErrorChain(&e));
            ExitCode::from(1)
        }
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::from(2)
        }
    }
}

fn print_report(report: &ArchiveReport) {
    println!(
        "valid: {} records, {} signatures and {} tokens verified",
        report.records, report.signatures_verified, report.timestamps_verified
    );
    for chain in &report.chains {
        println!(
            "{}: {} records from {}, stamped through {:?}",
            chain.writer, chain.count, chain.first_seq, chain.stamped_through
        );
    }
}
