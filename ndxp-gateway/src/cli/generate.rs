//! `generate`: shell completions and man pages from the binary's own
//! command line, for the Debian packages (`cargo xtask package`,
//! docs/packages.md). Hidden from `--help`. `ndxp-node` compiles this same
//! file into its command tree (`#[path]` in its `cli/mod.rs`).

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{CommandFactory, Subcommand};

#[derive(Subcommand)]
pub(crate) enum GenerateCommand {
    /// Print the completion script of SHELL to standard output.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Write a man page for the binary and each subcommand into DIR.
    Man {
        /// The directory to write `*.1` into (created when missing).
        dir: PathBuf,
    },
}

/// Runs `generate` for the command line `C`.
pub(crate) fn run<C: CommandFactory>(what: GenerateCommand) -> Result<()> {
    let mut cmd = C::command();
    match what {
        GenerateCommand::Completions { shell } => {
            let name = cmd.get_name().to_string();
            // Into memory first: clap_complete panics when its writer
            // fails (a closed pipe); this way that is an error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, name, &mut script);
            std::io::Write::write_all(&mut std::io::stdout().lock(), &script)
                .context("writing the completion script")?;
        }
        GenerateCommand::Man { dir } => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
    }
    Ok(())
}
