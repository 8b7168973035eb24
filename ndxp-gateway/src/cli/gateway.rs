//! `ndxp-gateway gateway ...`: the central gateway's services,
//! subscriptions and credentials. Every command works directly on the
//! registry named by `[storage] url`, as the operator (actor `cli:$USER`);
//! a running gateway picks the change up within `[gateway]
//! registry_poll_ms`. The logic shared with the management API is
//! [`ndxp_gateway::gateway::service`].

use std::path::PathBuf;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use clap::{Args, Subcommand, ValueEnum};
use ipnet::IpNet;
use ndxp_core::table::Table;
use ndxp_core::{ServiceId, SubsystemId};
use ndxp_gateway::config::GatewayConfig;
use ndxp_gateway::gateway::service::{
    self, check_instance, create_credentials, register_certificate, rotate_credentials, time_text,
    IssuedCredentials, ServiceError,
};
use ndxp_registry::model::{Actor, Subscription, SubscriptionState};
use ndxp_registry::store::gateway::{
    BackendTls, GatewayApp, GatewayService, GatewayServiceState, GatewaySettings,
    GatewaySettingsUpdate, GatewayStore, SubscriptionLimits,
};
use ndxp_registry::store::{RegistryStore, SqlStore, StoreOptions, SubscriptionFilter};
use uuid::Uuid;

use super::{cli_actor, load_config, runtime, ConfigArg, JsonArg};

/// What a command prints: `stdout` for results (a secret, a table, JSON),
/// `note` for the human remark that goes to standard error.
struct Output {
    stdout: String,
    note: Option<String>,
}

/// `ndxp-gateway gateway ...`
#[derive(Subcommand)]
pub(crate) enum GatewayCommand {
    /// Services offered through the central gateway.
    #[command(subcommand)]
    Services(ServicesCommand),
    /// Consumers' subscriptions to services.
    #[command(subcommand)]
    Subscriptions(SubscriptionsCommand),
    /// Consumers' OAuth2 client credentials.
    #[command(subcommand)]
    Credentials(CredentialsCommand),
}

impl GatewayCommand {
    /// The configuration file the command names.
    fn config(&self) -> &ConfigArg {
        use CredentialsCommand as C;
        use ServicesCommand as S;
        use SubscriptionsCommand as B;
        match self {
            Self::Services(
                S::Register { cfg, .. }
                | S::List { cfg, .. }
                | S::Publish { cfg, .. }
                | S::Withdraw { cfg, .. }
                | S::Update { cfg, .. }
                | S::Deprecate { cfg, .. },
            )
            | Self::Subscriptions(
                B::Request { cfg, .. }
                | B::List { cfg, .. }
                | B::Approve { cfg, .. }
                | B::Reject { cfg, .. }
                | B::Cancel { cfg, .. }
                | B::Limits { cfg, .. },
            )
            | Self::Credentials(
                C::Create { cfg, .. }
                | C::List { cfg, .. }
                | C::Rotate { cfg, .. }
                | C::Ranges { cfg, .. }
                | C::Revoke { cfg, .. },
            ) => cfg,
        }
    }
}

/// Settings shared by `register` and `update`.
#[derive(Args)]
pub(crate) struct SettingsArgs {
    /// Backend timeout in milliseconds (default 30000 on register).
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// Default rate per subscription, requests per second (0 = unlimited).
    #[arg(long)]
    pub(crate) rate: Option<u64>,
    /// Default burst per subscription.
    #[arg(long)]
    pub(crate) burst: Option<u64>,
    /// Default quota per subscription, requests per UTC day (0 = unlimited).
    #[arg(long)]
    pub(crate) quota: Option<u64>,
    /// DigiSign adapter: sign forwarded requests (true/false).
    #[arg(long)]
    pub(crate) sign_requests: Option<bool>,
    /// DigiSign adapter: require signed responses (true/false).
    #[arg(long)]
    pub(crate) verify_responses: Option<bool>,
    /// CA certificate (PEM) trusted for an https:// backend.
    #[arg(long, value_name = "FILE")]
    pub(crate) backend_ca: Option<String>,
    /// Client certificate (PEM) presented to the backend.
    #[arg(long, value_name = "FILE", requires = "backend_client_key")]
    pub(crate) backend_client_cert: Option<String>,
    /// Its private key (PKCS#8 PEM).
    #[arg(long, value_name = "FILE", requires = "backend_client_cert")]
    pub(crate) backend_client_key: Option<String>,
}

impl SettingsArgs {
    fn tls(&self) -> Option<BackendTls> {
        let t = BackendTls {
            ca_file: self.backend_ca.clone(),
            client_cert_file: self.backend_client_cert.clone(),
            client_key_file: self.backend_client_key.clone(),
        };
        (!t.is_empty()).then_some(t)
    }

    fn update(&self, backend: Option<String>) -> GatewaySettingsUpdate {
        GatewaySettingsUpdate {
            backend_url: backend,
            timeout_ms: self.timeout_ms,
            rate_per_sec: self.rate,
            burst: self.burst,
            quota_per_day: self.quota,
            sign_requests: self.sign_requests,
            verify_responses: self.verify_responses,
            backend_tls: self.tls(),
        }
    }
}

/// `gateway services ...`
#[derive(Subcommand)]
pub(crate) enum ServicesCommand {
    /// Register a service version on the gateway (adds it to the catalogue
    /// when it is not there yet). It answers once published.
    Register {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Service id, e.g. VN/GOV/000.00.00.H29/CSDLDC/citizen/v1.
        #[arg(long)]
        id: ServiceId,
        /// Base URL of the provider's backend.
        #[arg(long)]
        backend: String,
        /// What the service does (required when it is new to the catalogue).
        #[arg(long)]
        description: Option<String>,
        /// The service's OpenAPI document (JSON file).
        #[arg(long, value_name = "FILE")]
        openapi: Option<PathBuf>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List gateway services.
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Only the services of this provider subsystem.
        #[arg(long)]
        provider: Option<SubsystemId>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Publish a registered (or withdrawn) service: consumers may call it.
    Publish {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Service id.
        #[arg(long)]
        id: ServiceId,
    },
    /// Withdraw (cancel) a service: every call is refused from now on.
    Withdraw {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Service id.
        #[arg(long)]
        id: ServiceId,
    },
    /// Change a service's backend, limits, signing or TLS files.
    Update {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Service id.
        #[arg(long)]
        id: ServiceId,
        /// New backend base URL.
        #[arg(long)]
        backend: Option<String>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// Deprecate a version: calls get Deprecation and Sunset headers, and
    /// are refused from the sunset on.
    Deprecate {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Service id.
        #[arg(long)]
        id: ServiceId,
        /// When it is deprecated (RFC 3339; default now).
        #[arg(long)]
        at: Option<DateTime<Utc>>,
        /// When it is retired (RFC 3339).
        #[arg(long)]
        sunset: DateTime<Utc>,
    },
}

/// Subscription states for `list --state`.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum StateArg {
    /// Waiting for a decision.
    Requested,
    /// Callable.
    Approved,
    /// Refused.
    Rejected,
    /// Cancelled.
    Cancelled,
}

impl From<StateArg> for SubscriptionState {
    fn from(s: StateArg) -> Self {
        match s {
            StateArg::Requested => Self::Requested,
            StateArg::Approved => Self::Approved,
            StateArg::Rejected => Self::Rejected,
            StateArg::Cancelled => Self::Cancelled,
        }
    }
}

/// `gateway subscriptions ...`
#[derive(Subcommand)]
pub(crate) enum SubscriptionsCommand {
    /// Request a subscription for a client subsystem.
    Request {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The service.
        #[arg(long)]
        service: ServiceId,
        /// The client subsystem.
        #[arg(long)]
        client: SubsystemId,
        /// Free text for the provider.
        #[arg(long)]
        note: Option<String>,
    },
    /// List subscriptions.
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Only this service.
        #[arg(long)]
        service: Option<ServiceId>,
        /// Only this client subsystem.
        #[arg(long)]
        client: Option<SubsystemId>,
        /// Only this state.
        #[arg(long, value_enum)]
        state: Option<StateArg>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Approve a requested subscription.
    Approve {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Subscription id.
        #[arg(long)]
        id: Uuid,
        /// Note for the history.
        #[arg(long)]
        note: Option<String>,
    },
    /// Reject a requested subscription.
    Reject {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Subscription id.
        #[arg(long)]
        id: Uuid,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Cancel a subscription: the next call is refused.
    Cancel {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Subscription id.
        #[arg(long)]
        id: Uuid,
        /// Why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Set a subscription's own rate, burst or quota (over the service's
    /// defaults).
    Limits {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Subscription id.
        #[arg(long)]
        id: Uuid,
        /// Requests per second (0 = unlimited).
        #[arg(long)]
        rate: Option<u64>,
        /// Burst.
        #[arg(long)]
        burst: Option<u64>,
        /// Requests per UTC day (0 = unlimited).
        #[arg(long)]
        quota: Option<u64>,
    },
}

/// `gateway credentials ...`
#[derive(Subcommand)]
pub(crate) enum CredentialsCommand {
    /// Create client credentials for a consumer subsystem; prints the
    /// client id and secret (shown only this once). With --cert, registers
    /// that client certificate instead: calls over HTTPS presenting it act
    /// as the subsystem, and there is no secret.
    Create {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The consumer subsystem.
        #[arg(long)]
        client: SubsystemId,
        /// A client certificate (PEM; its CA certificates may follow) to
        /// register instead of creating a secret.
        #[arg(long, value_name = "FILE")]
        cert: Option<PathBuf>,
        /// An allowed source address range (CIDR); repeat for more; none
        /// allows any address.
        #[arg(long = "allow", value_name = "CIDR")]
        allow: Vec<IpNet>,
    },
    /// List credentials (never their secrets).
    List {
        #[command(flatten)]
        cfg: ConfigArg,
        /// Only this consumer subsystem.
        #[arg(long)]
        client: Option<SubsystemId>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Rotate the secret: prints the new one; tokens issued before stop
    /// working at once.
    Rotate {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The client id.
        #[arg(long)]
        client_id: String,
    },
    /// Replace the allowed source address ranges (none: any address).
    Ranges {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The client id.
        #[arg(long)]
        client_id: String,
        /// An allowed range (CIDR); repeat for more.
        #[arg(long = "allow", value_name = "CIDR")]
        allow: Vec<IpNet>,
    },
    /// Revoke the credentials: tokens stop working at once.
    Revoke {
        #[command(flatten)]
        cfg: ConfigArg,
        /// The client id.
        #[arg(long)]
        client_id: String,
    },
}

/// Runs one `gateway` command against the registry of its configuration
/// and prints what it answers.
pub(crate) fn run(command: GatewayCommand) -> Result<()> {
    let config = load_config(command.config())?;
    let out = runtime()?.block_on(async {
        let store = SqlStore::open(&config.storage.url, &StoreOptions::default()).await?;
        let out = execute(&config, &store, &cli_actor(), command).await;
        store.close().await;
        out
    })?;
    print!("{}", out.stdout);
    if let Some(note) = out.note {
        eprintln!("{note}");
    }
    Ok(())
}

fn line(s: String) -> Output {
    Output {
        stdout: s + "\n",
        note: None,
    }
}

fn listed<T: serde::Serialize>(
    items: &[T],
    json: bool,
    table: fn(&[T]) -> String,
) -> Result<Output> {
    let stdout = if json {
        serde_json::to_string_pretty(&items)? + "\n"
    } else {
        table(items)
    };
    Ok(Output { stdout, note: None })
}

fn credentials_out(c: &IssuedCredentials, what: &str) -> Output {
    Output {
        stdout: format!(
            "client_id={}\nclient_secret={}\n",
            c.app.client_id, c.client_secret
        ),
        note: Some(format!(
            "{what} credentials of {} (generation {}); the secret is shown only this once, keep it now",
            c.app.client, c.app.generation
        )),
    }
}

async fn execute(
    config: &GatewayConfig,
    store: &SqlStore,
    actor: &Actor,
    command: GatewayCommand,
) -> Result<Output> {
    match command {
        GatewayCommand::Services(c) => services(config, store, actor, c).await,
        GatewayCommand::Subscriptions(c) => subscriptions(config, store, actor, c).await,
        GatewayCommand::Credentials(c) => credentials(config, store, actor, c).await,
    }
}

async fn services(
    config: &GatewayConfig,
    store: &SqlStore,
    actor: &Actor,
    c: ServicesCommand,
) -> Result<Output> {
    match c {
        ServicesCommand::Register {
            id,
            backend,
            description,
            openapi,
            settings,
            ..
        } => {
            check_instance(&config.instance, "service", id.member())?;
            let openapi = openapi
                .map(|p| {
                    std::fs::read_to_string(&p)
                        .with_context(|| format!("cannot read {}", p.display()))
                })
                .transpose()?;
            let s = settings.update(None).apply(&GatewaySettings::new(backend));
            let g = store
                .register_gateway_service(
                    &id,
                    description.as_deref(),
                    openapi.as_deref(),
                    &s,
                    actor,
                )
                .await?;
            Ok(line(format!(
                "registered {} on the gateway with backend {}; publish it to open it to subscribers",
                g.service, g.settings.backend_url
            )))
        }
        ServicesCommand::List { provider, out, .. } => {
            let v = store.list_gateway_services(provider.as_ref()).await?;
            listed(&v, out.json, services_table)
        }
        ServicesCommand::Publish { id, .. } => {
            let g = store
                .set_gateway_service_state(&id, GatewayServiceState::Published, actor)
                .await?;
            Ok(line(format!("published {}", g.service)))
        }
        ServicesCommand::Withdraw { id, .. } => {
            let g = store
                .set_gateway_service_state(&id, GatewayServiceState::Withdrawn, actor)
                .await?;
            Ok(line(format!(
                "withdrew {}: calls to it are refused from now on",
                g.service
            )))
        }
        ServicesCommand::Update {
            id,
            backend,
            settings,
            ..
        } => {
            let g = store
                .update_gateway_service(&id, &settings.update(backend), actor)
                .await?;
            Ok(line(format!(
                "updated {}: backend {}, timeout {} ms, rate {}/s, quota {}/day",
                g.service,
                g.settings.backend_url,
                g.settings.timeout_ms,
                g.settings.rate_per_sec,
                g.settings.quota_per_day
            )))
        }
        ServicesCommand::Deprecate { id, at, sunset, .. } => {
            let at = at.unwrap_or_else(Utc::now);
            let s = service::deprecate_service(store, &id, at, sunset, actor).await?;
            Ok(line(format!(
                "{} is deprecated since {} and retired at {}",
                s.id,
                time_text(s.deprecated_at),
                time_text(s.sunset_at)
            )))
        }
    }
}

async fn subscriptions(
    config: &GatewayConfig,
    store: &SqlStore,
    actor: &Actor,
    c: SubscriptionsCommand,
) -> Result<Output> {
    let transition = async |id: Uuid, to: SubscriptionState, note: Option<String>| {
        let s = store
            .transition_subscription(id, to, note.as_deref(), actor)
            .await?;
        Ok::<_, anyhow::Error>(line(format!(
            "subscription {} of {} to {} is {}",
            s.id, s.client, s.service, s.state
        )))
    };
    match c {
        SubscriptionsCommand::Request {
            service,
            client,
            note,
            ..
        } => {
            check_instance(&config.instance, "client", client.member())?;
            let s = store
                .request_subscription(&service, &client, note.as_deref(), actor)
                .await?;
            Ok(line(format!(
                "requested subscription {} of {} to {}",
                s.id, s.client, s.service
            )))
        }
        SubscriptionsCommand::List {
            service,
            client,
            state,
            out,
            ..
        } => {
            let filter = SubscriptionFilter {
                service,
                client,
                provider: None,
                state: state.map(Into::into),
            };
            let v = store.list_subscriptions(&filter).await?;
            listed(&v, out.json, subscriptions_table)
        }
        SubscriptionsCommand::Approve { id, note, .. } => {
            transition(id, SubscriptionState::Approved, note).await
        }
        SubscriptionsCommand::Reject { id, note, .. } => {
            transition(id, SubscriptionState::Rejected, note).await
        }
        SubscriptionsCommand::Cancel { id, note, .. } => {
            transition(id, SubscriptionState::Cancelled, note).await
        }
        SubscriptionsCommand::Limits {
            id,
            rate,
            burst,
            quota,
            ..
        } => {
            let limits = SubscriptionLimits {
                rate_per_sec: rate,
                burst,
                quota_per_day: quota,
            };
            let l = store.set_subscription_limits(id, &limits, actor).await?;
            let show =
                |v: Option<u64>| v.map_or_else(|| "service default".into(), |v| v.to_string());
            Ok(line(format!(
                "subscription {id}: rate {}/s, burst {}, quota {}/day",
                show(l.rate_per_sec),
                show(l.burst),
                show(l.quota_per_day)
            )))
        }
    }
}

async fn credentials(
    config: &GatewayConfig,
    store: &SqlStore,
    actor: &Actor,
    c: CredentialsCommand,
) -> Result<Output> {
    match c {
        CredentialsCommand::Create {
            client,
            allow,
            cert: None,
            ..
        } => {
            check_instance(&config.instance, "client", client.member())?;
            let issued = create_credentials(store, &client, &allow, actor).await?;
            Ok(credentials_out(&issued, "created"))
        }
        CredentialsCommand::Create {
            client,
            allow,
            cert: Some(path),
            ..
        } => {
            check_instance(&config.instance, "client", client.member())?;
            let pem =
                std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let anchors = config
                .client_cert_anchors()
                .map_err(ServiceError::Invalid)?;
            let app =
                register_certificate(store, &client, &pem, &allow, Some(&anchors), actor).await?;
            let c = app.certificate.as_ref();
            Ok(Output {
                stdout: format!(
                    "client_id={}\ncertificate_sha256={}\n",
                    app.client_id,
                    c.map_or("", |c| c.sha256.as_str())
                ),
                note: Some(format!(
                    "registered the certificate of {} (expires {}) as credentials of {}; calls \
                     over HTTPS presenting it need no token",
                    c.map_or("", |c| c.subject.as_str()),
                    time_text(c.map(|c| c.not_after)),
                    app.client
                )),
            })
        }
        CredentialsCommand::List { client, out, .. } => {
            let v = store.list_gateway_apps(client.as_ref()).await?;
            listed(&v, out.json, apps_table)
        }
        CredentialsCommand::Rotate { client_id, .. } => {
            let issued = rotate_credentials(store, &client_id, actor).await?;
            Ok(credentials_out(&issued, "rotated"))
        }
        CredentialsCommand::Ranges {
            client_id, allow, ..
        } => {
            let a = store
                .set_gateway_app_cidrs(&client_id, &allow, actor)
                .await?;
            Ok(line(format!(
                "{}: allowed ranges {}",
                a.client_id,
                if a.allowed_cidrs.is_empty() {
                    "any".to_string()
                } else {
                    a.allowed_cidrs
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )))
        }
        CredentialsCommand::Revoke { client_id, .. } => {
            let a = store.revoke_gateway_app(&client_id, actor).await?;
            Ok(line(format!(
                "revoked {} of {}: its tokens are refused from now on",
                a.client_id, a.client
            )))
        }
    }
}

/// The services as a table.
fn services_table(items: &[GatewayService]) -> String {
    let mut t = Table::new(["SERVICE", "STATE", "BACKEND", "RATE/S", "QUOTA/DAY", "SIGN"]);
    for g in items {
        t.row([
            g.service.to_string(),
            g.state.to_string(),
            g.settings.backend_url.to_string(),
            g.settings.rate_per_sec.to_string(),
            g.settings.quota_per_day.to_string(),
            if g.settings.sign_requests {
                "yes"
            } else {
                "no"
            }
            .to_string(),
        ]);
    }
    t.to_string()
}

/// The subscriptions as a table.
fn subscriptions_table(items: &[Subscription]) -> String {
    let mut t = Table::new(["ID", "SERVICE", "CLIENT", "STATE"]);
    for x in items {
        t.row([
            x.id.to_string(),
            x.service.to_string(),
            x.client.to_string(),
            x.state.to_string(),
        ]);
    }
    t.to_string()
}

/// The credentials as a table.
fn apps_table(items: &[GatewayApp]) -> String {
    let mut t = Table::new([
        "CLIENT_ID",
        "CLIENT",
        "KIND",
        "GENERATION",
        "RANGES",
        "REVOKED",
    ]);
    for a in items {
        let ranges = if a.allowed_cidrs.is_empty() {
            "any".to_string()
        } else {
            a.allowed_cidrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(",")
        };
        let kind = a.certificate.as_ref().map_or_else(
            || "secret".to_string(),
            |c| {
                format!(
                    "certificate {} (expires {})",
                    c.sha256,
                    time_text(Some(c.not_after))
                )
            },
        );
        t.row([
            a.client_id.to_string(),
            a.client.to_string(),
            kind,
            a.generation.to_string(),
            ranges,
            time_text(a.revoked_at),
        ]);
    }
    t.to_string()
}
