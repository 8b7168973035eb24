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
    /// Print every command with its options as JSON, hidden ones
    /// included (docs/cli.md; the tests check the conventions on it).
    Tree,
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
        GenerateCommand::Tree => {
            cmd.build();
            let mut commands = Vec::new();
            walk(&cmd, false, &mut Vec::new(), &mut commands);
            let text = serde_json::to_string_pretty(&commands).context("writing the tree")?;
            println!("{text}");
        }
    }
    Ok(())
}

/// One command of `generate tree`: its words and its arguments.
#[derive(serde::Serialize)]
struct TreeCommand {
    /// The words after the binary's name, e.g. `["pki", "serve"]`.
    path: Vec<String>,
    hidden: bool,
    /// Whether it has subcommands (a group, not something that runs).
    group: bool,
    args: Vec<TreeArg>,
}

/// One argument of a command in `generate tree`.
#[derive(serde::Serialize)]
struct TreeArg {
    id: String,
    /// The long flag without `--`; none for a positional argument.
    long: Option<String>,
    short: Option<char>,
    /// Hidden spellings still accepted (old names).
    aliases: Vec<String>,
    value_name: Option<String>,
    takes_value: bool,
    global: bool,
    hidden: bool,
}

/// Adds `cmd` (at `path`, hidden when `hidden` or itself hidden) and its
/// subcommands to `out`.
fn walk(cmd: &clap::Command, hidden: bool, path: &mut Vec<String>, out: &mut Vec<TreeCommand>) {
    let hidden = hidden || cmd.is_hide_set();
    let args = cmd
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| TreeArg {
            id: a.get_id().to_string(),
            long: a.get_long().map(str::to_string),
            short: a.get_short(),
            aliases: a
                .get_all_aliases()
                .unwrap_or_default()
                .into_iter()
                .map(str::to_string)
                .collect(),
            value_name: a
                .get_value_names()
                .and_then(|v| v.first())
                .map(|v| v.to_string()),
            takes_value: a.get_action().takes_values(),
            global: a.is_global_set(),
            hidden: a.is_hide_set(),
        })
        .collect();
    out.push(TreeCommand {
        path: path.clone(),
        hidden,
        group: cmd.has_subcommands(),
        args,
    });
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        path.push(sub.get_name().to_string());
        walk(sub, hidden, path, out);
        path.pop();
    }
}
