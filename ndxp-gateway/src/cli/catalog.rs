//! `ndxp-gateway registry export | diff | apply`: configuration as code
//! (docs/config-as-code.md). The work is
//! [`ndxp_gateway::management::catalog`].

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use ndxp_gateway::management::catalog::{self, CatalogError, CatalogFile, Options, Plan};
use ndxp_registry::store::{SqlStore, StoreOptions};

use super::{cli_actor, load_config, runtime, ConfigArg, JsonArg};

#[derive(Subcommand)]
pub(crate) enum RegistryCommand {
    /// Write the registry's catalogue (members, subsystems, groups,
    /// services, access rights, gateway services, subscriptions) as a TOML
    /// file; the same registry always gives the same bytes.
    Export {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Write to FILE (created 0600) instead of standard output.
        #[arg(short = 'o', long = "out", value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Show what `apply` would add, change and remove. Exit status: 0 no
    /// changes, 1 changes, 64 a bad file, 2 any other failure.
    Diff(FileArgs),
    /// Make the registry what the file describes, in one transaction (all
    /// or nothing, every change audited as the operator). Objects absent
    /// from the file are kept unless --prune.
    Apply {
        #[command(flatten)]
        args: FileArgs,
        /// Only show the changes; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// What `diff` and `apply` read.
#[derive(Args)]
pub(crate) struct FileArgs {
    #[command(flatten)]
    cfg: ConfigArg,
    /// The registry file (`-` for standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: PathBuf,
    /// Also remove what the registry has and the file has not (members
    /// with their nodes, subsystems, services, groups, access rights;
    /// subscriptions are cancelled, gateway services withdrawn).
    #[arg(long)]
    prune: bool,
    #[command(flatten)]
    out: JsonArg,
}

/// Runs a `registry` command.
pub(crate) fn run(command: RegistryCommand) -> Result<()> {
    match command {
        RegistryCommand::Export { cfg, out } => export(&cfg, out.as_deref()),
        RegistryCommand::Diff(a) => match diff(&a.cfg, &a.file, a.prune, a.out.json) {
            Ok(false) => Ok(()),
            Ok(true) => {
                let _ = std::io::stdout().flush();
                std::process::exit(1)
            }
            // A bad file exits 64 like every usage error (in main).
            Err(e) if is_usage(&e) => Err(e),
            Err(e) => {
                eprintln!("ndxp-gateway: error: {}", ndxp_core::ErrorChain(&*e));
                std::process::exit(2)
            }
        },
        RegistryCommand::Apply { args: a, dry_run } => {
            let options = Options {
                prune: a.prune,
                dry_run,
            };
            apply(&a.cfg, &a.file, options, a.out.json)
        }
    }
}

/// Whether `e` is the file's fault (exit status 64).
pub(crate) fn is_usage(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<CatalogError>()
            .is_some_and(CatalogError::is_usage)
    })
}

/// Opens the configured registry and runs `f` on it.
fn with_store<T>(
    cfg: &ConfigArg,
    f: impl AsyncFnOnce(&SqlStore, &ndxp_gateway::config::GatewayConfig) -> Result<T>,
) -> Result<T> {
    let config = load_config(cfg)?;
    runtime()?.block_on(async {
        let store = SqlStore::open(&config.storage.url, &StoreOptions::default()).await?;
        let out = f(&store, &config).await;
        store.close().await;
        out
    })
}

fn export(cfg: &ConfigArg, out: Option<&Path>) -> Result<()> {
    let text = with_store(cfg, async |store, config| {
        Ok(catalog::export(store, &config.instance).await?.render()?)
    })?;
    match out {
        None => print!("{text}"),
        Some(path) => ndxp_sign::files::write_private(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?,
    }
    Ok(())
}

/// The file named by `-f`, parsed and checked.
fn read_file(path: &Path) -> Result<CatalogFile> {
    let mut text = String::new();
    let limit = catalog::MAX_FILE_BYTES as u64 + 1;
    let read = if path == Path::new("-") {
        std::io::stdin().take(limit).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_string(&mut text))
    };
    read.with_context(|| format!("cannot read {}", path.display()))?;
    CatalogFile::parse(&text)
        .with_context(|| format!("{} is not a usable registry file", path.display()))
}

fn diff(cfg: &ConfigArg, path: &Path, prune: bool, json: bool) -> Result<bool> {
    let file = read_file(path)?;
    let plan = with_store(cfg, async |store, config| {
        Ok(catalog::diff(store, &config.instance, &file, prune).await?)
    })?;
    print_plan(&plan, json, None)?;
    Ok(!plan.is_empty())
}

fn apply(cfg: &ConfigArg, path: &Path, options: Options, json: bool) -> Result<()> {
    let file = read_file(path)?;
    let outcome = with_store(cfg, async |store, config| {
        Ok(catalog::apply(store, &config.instance, &file, options, &cli_actor()).await?)
    })?;
    let note = if outcome.plan.is_empty() {
        "no changes: the registry already matches the file".to_string()
    } else if outcome.applied {
        format!(
            "applied {} change(s) in one transaction; registry version {}",
            outcome.plan.changes.len(),
            outcome.version
        )
    } else {
        "dry run: nothing was written".to_string()
    };
    print_plan(
        &outcome.plan,
        json,
        Some((outcome.applied, outcome.version)),
    )?;
    eprintln!("{note}");
    Ok(())
}

fn print_plan(plan: &Plan, json: bool, applied: Option<(bool, i64)>) -> Result<()> {
    if json {
        let mut v = serde_json::to_value(plan)?;
        if let (Some((applied, version)), Some(o)) = (applied, v.as_object_mut()) {
            o.insert("applied".into(), applied.into());
            o.insert("registry_version".into(), version.into());
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", plan.text());
    }
    Ok(())
}
