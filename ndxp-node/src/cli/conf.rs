//! `ndxp-node register` and `ndxp-node conf`: admission, and the global
//! configuration with this node's entry in it.

use anyhow::Result;
use chrono::Utc;
use ndxp_node::conf::NodeConfStatus;
use ndxp_node::config::NodeConfig;
use ndxp_registry::globalconf::RefreshOutcome;

use super::{runtime, ConfigArg};

#[derive(clap::Subcommand)]
pub enum ConfCommand {
    /// Fetch the global configuration now, verify it, keep it as last-good.
    Fetch {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show the last-good global configuration (no network). Exits 0 when it
    /// is valid, 1 when there is none or it has expired.
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `conf` command.
pub fn run(command: ConfCommand) -> Result<i32> {
    match command {
        ConfCommand::Fetch { config } => fetch(&config.load()?),
        ConfCommand::Status { config, json } => status(&config.load()?, json),
    }
}

/// `register`: sends the signed registration request and prints the receipt.
pub fn register(cfg: &NodeConfig) -> Result<i32> {
    let receipt = runtime()?.block_on(ndxp_node::admission::register(cfg, Utc::now()))?;
    println!("registration request sent to {}", receipt.url);
    println!("  id:       {}", receipt.id);
    println!("  state:    {}", receipt.state);
    println!("  member:   {}", receipt.member);
    println!("  node:     {}", receipt.node);
    println!("  address:  {}", receipt.address);
    println!("  auth certificate sha-256: {}", receipt.auth_cert_sha256);
    println!(
        "next: the platform operator approves it (`ndxp-gateway requests approve --config FILE --id {}`); then `ndxp-node conf fetch` shows the node once the next global configuration is published",
        receipt.id
    );
    Ok(0)
}

fn fetch(cfg: &NodeConfig) -> Result<i32> {
    let report = runtime()?.block_on(ndxp_node::conf::fetch(cfg, Utc::now()))?;
    if let Some(why) = &report.previous_unusable {
        eprintln!("ndxp-node: warning: the previous last-good file was set aside: {why}");
    }
    match report.outcome {
        RefreshOutcome::Updated { from: Some(f), to } => {
            println!("updated the global configuration from version {f} to {to}");
        }
        RefreshOutcome::Updated { from: None, to } => {
            println!("fetched the global configuration, version {to}");
        }
        RefreshOutcome::Renewed { version } => {
            println!("renewed the global configuration, version {version} (signed again)");
        }
        RefreshOutcome::Unchanged { version } => {
            println!("the global configuration is unchanged, version {version}");
        }
        _ => println!("refreshed the global configuration"),
    }
    print_status(&report.status);
    Ok(0)
}

fn status(cfg: &NodeConfig, json: bool) -> Result<i32> {
    let status = ndxp_node::conf::status(cfg, Utc::now())?;
    if json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else if status.conf.version.is_none() {
        println!(
            "no global configuration on disk yet ({}); fetch one with `ndxp-node conf fetch --config FILE`",
            status.path.display()
        );
    } else {
        println!("global configuration of instance {}", status.conf.instance);
        print_status(&status);
    }
    Ok(if status.conf.valid { 0 } else { 1 })
}

fn print_status(s: &NodeConfStatus) {
    let c = &s.conf;
    println!("  file:          {}", s.path.display());
    println!("  source:        {}", c.conf_url);
    if let Some(v) = c.version {
        println!("  version:       {v}");
    }
    if let Some(t) = c.generated_at {
        println!("  generated at:  {}", rfc3339(t));
    }
    if let (Some(t), Some(secs)) = (c.expires_at, c.expires_in_secs) {
        if secs > 0 {
            println!("  expires at:    {} (in {})", rfc3339(t), span(secs));
        } else {
            println!("  expires at:    {} ({} ago)", rfc3339(t), span(-secs));
        }
    }
    if let Some(age) = c.age_secs {
        println!("  age:           {} since it was fetched", span(age));
    }
    let state = if c.valid {
        "valid"
    } else if c.expired {
        "EXPIRED: this node refuses to serve until a newer one is fetched"
    } else {
        "none"
    };
    println!("  state:         {state}");
    let Some(n) = &s.this_node else { return };
    if !n.listed {
        println!(
            "  this node:     {}/{} is not listed (not admitted yet, or not in this version)",
            n.member, n.name
        );
        return;
    }
    println!("  this node:     {}/{} is listed", n.member, n.name);
    if let Some(a) = &n.address {
        let note = if n.address_matches {
            "matches node.address"
        } else {
            "differs from node.address"
        };
        println!("    address:     {a} ({note})");
    }
    for fp in &n.auth_cert_sha256 {
        let mine = n.local_auth_cert_sha256.as_deref() == Some(fp.as_str());
        println!(
            "    auth cert:   {fp}{}",
            if mine { " (keys_dir/auth.pem)" } else { "" }
        );
    }
    if !n.local_cert_listed {
        match &n.local_auth_cert_sha256 {
            Some(fp) => println!("    warning:     keys_dir/auth.pem ({fp}) is not registered"),
            None => println!("    warning:     keys_dir/auth.pem cannot be read"),
        }
    }
}

fn rfc3339(t: chrono::DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A number of seconds as `1d 2h 3m 4s`.
fn span(secs: i64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    for (v, unit) in [(d, "d"), (h, "h"), (m, "m")] {
        if v > 0 || !out.is_empty() {
            out.push_str(&format!("{v}{unit} "));
        }
    }
    out.push_str(&format!("{s}s"));
    out
}
