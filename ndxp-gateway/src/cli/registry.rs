//! The operator commands on the registry: `members`, `subsystems`,
//! `nodes`, `requests`, `tokens` and `conf anchor`. They call
//! [`ndxp_gateway::management::registry`], the service the management API
//! shares.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use ndxp_core::{MemberId, NodeName, SubsystemId};
use ndxp_gateway::management::registry::{self as admin, AdminError};
use ndxp_registry::model::{CredentialKind, RegistrationState};

use super::{load_config, print_list, with_admin, ConfigArg, JsonArg};

#[derive(Subcommand)]
pub(crate) enum MembersCommand {
    /// Add a member organisation.
    Add {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Member identifier, e.g. VN/GOV/000.00.00.H29.
        #[arg(long)]
        id: MemberId,
        /// The organisation's name.
        #[arg(long)]
        name: String,
    },
    /// List members.
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Remove a member with its subsystems, nodes, services and tokens.
    Remove {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Member identifier.
        #[arg(long)]
        id: MemberId,
    },
}

#[derive(Subcommand)]
pub(crate) enum SubsystemsCommand {
    /// Add a subsystem to an existing member.
    Add {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Subsystem identifier, e.g. VN/GOV/000.00.00.H29/CSDLDC.
        #[arg(long)]
        id: SubsystemId,
    },
    /// List subsystems.
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Only the subsystems of this member.
        #[arg(long)]
        member: Option<MemberId>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Remove a subsystem with its services and access rights.
    Remove {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Subsystem identifier.
        #[arg(long)]
        id: SubsystemId,
    },
}

#[derive(Subcommand)]
pub(crate) enum NodesCommand {
    /// List admitted nodes.
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Only the nodes of this member.
        #[arg(long)]
        member: Option<MemberId>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Remove a node: it leaves the next global configuration and peers refuse it.
    Remove {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The node's member.
        #[arg(long)]
        member: MemberId,
        /// The node's name.
        #[arg(long)]
        name: NodeName,
    },
    /// Remove one authentication (TLS) certificate of a node that holds
    /// several, at the end of a rotation: it leaves the next global
    /// configuration and peers stop accepting it.
    RemoveCert {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The node's member.
        #[arg(long)]
        member: MemberId,
        /// The node's name.
        #[arg(long)]
        name: NodeName,
        /// The certificate's SHA-256 fingerprint (64 hex digits, as
        /// `nodes list` shows it).
        #[arg(long)]
        sha256: String,
    },
}

/// Which registration requests to list.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StateFilter {
    Pending,
    Approved,
    Rejected,
    All,
}

#[derive(Subcommand)]
pub(crate) enum RequestsCommand {
    /// List node registration requests (pending ones by default).
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Which requests to show.
        #[arg(long, value_enum, default_value = "pending")]
        state: StateFilter,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Approve a pending request: the node enters the next global configuration.
    Approve {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The request id (from `requests list`).
        #[arg(long)]
        id: uuid::Uuid,
    },
    /// Reject a pending request.
    Reject {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The request id (from `requests list`).
        #[arg(long)]
        id: uuid::Uuid,
        /// Why, for the member.
        #[arg(long)]
        reason: String,
    },
}

#[derive(Subcommand)]
pub(crate) enum TokensCommand {
    /// Create a token and print it once on standard output.
    Create {
        #[command(flatten)]
        cfg: ConfigArg,
        /// An operator token (full rights) for this person or tool.
        #[arg(long, value_name = "NAME", conflicts_with_all = ["member", "name"], required_unless_present = "member")]
        operator: Option<String>,
        /// A member token (acts for this member only); needs --name.
        #[arg(long, requires = "name")]
        member: Option<MemberId>,
        /// Label of a member token.
        #[arg(long, requires = "member")]
        name: Option<String>,
    },
    /// List tokens (never the tokens themselves).
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Revoke a token; it stops working at once.
    Revoke {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The token's id (from `tokens list`).
        #[arg(long)]
        id: uuid::Uuid,
    },
}

#[derive(Subcommand)]
pub(crate) enum ConfCommand {
    /// Write the configuration anchor file that every node installs.
    Anchor {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Where to write the anchor (JSON).
        #[arg(short = 'o', long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// `ndxp-gateway members ...`.
pub(crate) fn members(c: MembersCommand) -> Result<()> {
    match c {
        MembersCommand::Add { cfg, id, name } => {
            let m = with_admin(&cfg, async |a| a.add_member(&id, &name).await)?;
            println!("added member {} ({})", m.id, m.name);
        }
        MembersCommand::List { cfg, out } => {
            let v = with_admin(&cfg, async |a| a.list_members().await)?;
            print_list(&v, out.json, admin::members_table)?;
        }
        MembersCommand::Remove { cfg, id } => {
            with_admin(&cfg, async |a| a.remove_member(&id).await)?;
            println!("removed member {id} with its subsystems, nodes and services; its tokens are revoked");
        }
    }
    Ok(())
}

/// `ndxp-gateway subsystems ...`.
pub(crate) fn subsystems(c: SubsystemsCommand) -> Result<()> {
    match c {
        SubsystemsCommand::Add { cfg, id } => {
            let s = with_admin(&cfg, async |a| a.add_subsystem(&id).await)?;
            println!("added subsystem {}", s.id);
        }
        SubsystemsCommand::List { cfg, member, out } => {
            let v = with_admin(&cfg, async |a| a.list_subsystems(member.as_ref()).await)?;
            print_list(&v, out.json, admin::subsystems_table)?;
        }
        SubsystemsCommand::Remove { cfg, id } => {
            with_admin(&cfg, async |a| a.remove_subsystem(&id).await)?;
            println!("removed subsystem {id}");
        }
    }
    Ok(())
}

/// `ndxp-gateway nodes ...`.
pub(crate) fn nodes(c: NodesCommand) -> Result<()> {
    match c {
        NodesCommand::List { cfg, member, out } => {
            let v = with_admin(&cfg, async |a| a.list_nodes(member.as_ref()).await)?;
            print_list(&v, out.json, admin::nodes_table)?;
        }
        NodesCommand::Remove { cfg, member, name } => {
            with_admin(&cfg, async |a| a.remove_node(&member, &name).await)?;
            println!(
                "removed node {name} of {member}; it is left out of the next global configuration"
            );
        }
        NodesCommand::RemoveCert {
            cfg,
            member,
            name,
            sha256,
        } => {
            let n = with_admin(&cfg, async |a| {
                a.remove_node_certificate(&member, &name, &sha256).await
            })?;
            println!(
                "removed certificate {} from node {name} of {member}; the next global configuration lists only {}",
                sha256.trim().to_ascii_lowercase(),
                n.fingerprints().join(", ")
            );
        }
    }
    Ok(())
}

/// `ndxp-gateway requests ...`.
pub(crate) fn requests(c: RequestsCommand) -> Result<()> {
    match c {
        RequestsCommand::List { cfg, state, out } => {
            let state = match state {
                StateFilter::Pending => Some(RegistrationState::Pending),
                StateFilter::Approved => Some(RegistrationState::Approved),
                StateFilter::Rejected => Some(RegistrationState::Rejected),
                StateFilter::All => None,
            };
            let v = with_admin(&cfg, async |a| a.list_requests(state).await)?;
            print_list(&v, out.json, admin::requests_table)?;
        }
        RequestsCommand::Approve { cfg, id } => {
            let n = with_admin(&cfg, async |a| a.approve_request(id).await)?;
            if n.auth_certs.len() > 1 {
                println!(
                    "approved request {id}: node {} of {} holds {} authentication certificates ({}); the next global configuration lists them all",
                    n.name,
                    n.member,
                    n.auth_certs.len(),
                    n.fingerprints().join(", ")
                );
            } else {
                println!(
                    "approved request {id}: node {} of {} at {} enters the next global configuration",
                    n.name, n.member, n.address
                );
            }
        }
        RequestsCommand::Reject { cfg, id, reason } => {
            let r = with_admin(&cfg, async |a| {
                a.reject_request(id, &reason).await.map_err(|e| match e {
                    AdminError::NoReason => AdminError::Invalid(format!("{e} (--reason TEXT)")),
                    e => e,
                })
            })?;
            println!("rejected request {id} (node {} of {})", r.node, r.member);
        }
    }
    Ok(())
}

/// `ndxp-gateway tokens ...`.
pub(crate) fn tokens(c: TokensCommand) -> Result<()> {
    match c {
        TokensCommand::Create {
            cfg,
            operator,
            member,
            name,
        } => {
            let (kind, label) = match (operator, member, name) {
                (Some(op), _, _) => (CredentialKind::Operator, op),
                (None, Some(m), Some(n)) => (CredentialKind::Member(m), n),
                _ => {
                    return Err(AdminError::Invalid(
                        "give --operator NAME, or --member M --name NAME".into(),
                    )
                    .into())
                }
            };
            let t = with_admin(&cfg, async |a| a.create_token(&kind, &label).await)?;
            println!("{}", t.token);
            eprintln!(
                "created {} token {} ({}); it is shown only this once, keep it now",
                admin::kind_text(&t.credential.kind),
                t.credential.id,
                t.credential.name
            );
        }
        TokensCommand::List { cfg, out } => {
            let v = with_admin(&cfg, async |a| a.list_tokens().await)?;
            print_list(&v, out.json, admin::tokens_table)?;
        }
        TokensCommand::Revoke { cfg, id } => {
            with_admin(&cfg, async |a| a.revoke_token(id).await)?;
            println!("revoked token {id}");
        }
    }
    Ok(())
}

/// `ndxp-gateway conf anchor`.
pub(crate) fn conf(c: ConfCommand) -> Result<()> {
    let ConfCommand::Anchor { cfg, out } = c;
    let config = load_config(&cfg)?;
    let anchor = admin::build_anchor(&config, chrono::Utc::now())?;
    admin::write_anchor(&anchor, &out)?;
    println!(
        "wrote {}: instance {}, conf_url {}, signer member {}",
        out.display(),
        anchor.instance,
        anchor.conf_url,
        anchor
            .signer_member
            .as_ref()
            .map_or_else(|| "-".to_string(), ToString::to_string)
    );
    Ok(())
}
