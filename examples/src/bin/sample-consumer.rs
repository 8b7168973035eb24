//! `sample-consumer`: calls an NDXP service through a node or the central
//! gateway and prints the answer (see `ndxp_examples::consumer`).
//!
//! Exit status: 0 for a 2xx answer, 1 for any other answer, 2 for bad
//! arguments, 3 when the call could not be made.

use std::process::ExitCode;

use clap::Parser;
use ndxp_examples::consumer::{call, ConsumerArgs, ConsumerError};

fn main() -> ExitCode {
    let args = ConsumerArgs::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sample-consumer: cannot start: {e}");
            return ExitCode::from(3);
        }
    };
    match rt.block_on(call(&args)) {
        Ok(outcome) => {
            print!("{}", outcome.render());
            if outcome.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e @ ConsumerError::BadArgument(_)) => {
            eprintln!("sample-consumer: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("sample-consumer: error: {e}");
            ExitCode::from(3)
        }
    }
}
