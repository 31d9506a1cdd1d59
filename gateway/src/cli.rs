//! The `sapa` command line. Every subcommand takes `--config` and `--data-dir`, so a command
//! finds the same database and index as the server.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use channels::ChannelKind;

use crate::api_key;
use crate::checks;
use crate::config::{Config, valid_slug};
use crate::startup::{self, Application, Runtime};
use crate::store::Store;
use crate::telemetry;

/// Sapa: an omnichannel conversational AI gateway.
#[derive(Debug, Parser)]
#[command(name = "sapa", version, about)]
pub struct Cli {
    /// Configuration file (default: ./sapa.toml when it exists).
    #[arg(long, global = true, env = "SAPA_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,
    /// Directory for the embedded database, knowledge index and generated secret key.
    #[arg(
        long,
        global = true,
        env = "SAPA_DATA_DIR",
        value_name = "DIR",
        default_value = "./data"
    )]
    data_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (HTTP API, workers, dispatcher).
    Serve {
        /// Listen address, overriding server.bind.
        #[arg(long, value_name = "ADDR")]
        bind: Option<SocketAddr>,
    },
    /// Apply database migrations and exit.
    Migrate,
    /// Validate the configuration and reach every configured dependency.
    Check,
    /// Knowledge base commands.
    Kb {
        #[command(subcommand)]
        command: KbCommand,
    },
    /// Tenant commands: create and list tenants, manage their API keys.
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Channel account commands.
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
    },
    /// One-time codes: send one to a customer, check one (what `/v1/otp` does).
    Otp {
        #[command(subcommand)]
        command: OtpCommand,
    },
    /// Staff accounts (owners and agents) of the console.
    Staff {
        #[command(subcommand)]
        command: StaffCommand,
    },
    /// Flow documents: check them, print their JSON Schema.
    Flows {
        #[command(subcommand)]
        command: FlowsCommand,
    },
}

#[derive(Debug, Subcommand)]
enum FlowsCommand {
    /// Check flow documents (YAML): every mistake as `FILE:LINE:COLUMN: message`, exit 1 if any.
    Check {
        /// Flow files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the JSON Schema of a flow document (for editor completion; also shipped as
    /// `flows/flow.schema.json`).
    Schema,
    /// Load a directory's flow documents (`*.yaml`, `*.yml`) into a tenant: every file is
    /// checked first and nothing is stored if one fails. A running server picks them up
    /// within seconds.
    Load {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The directory (or files).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum StaffCommand {
    /// Add a staff member; prints a one-time set-password link (valid 24 h).
    Add {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Login email.
        #[arg(long)]
        email: String,
        /// `owner` (everything, plus the owner pages) or `agent`.
        #[arg(long, value_parser = ["owner", "agent"])]
        role: String,
        /// WhatsApp number (+62…) login codes go to.
        #[arg(long)]
        whatsapp: Option<String>,
        /// Telegram chat login codes go to (when there is no WhatsApp number).
        #[arg(long)]
        telegram_chat_id: Option<i64>,
        /// Read the password from the first line of standard input instead of printing a link.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List a tenant's staff.
    List {
        /// Tenant slug.
        tenant: String,
    },
    /// Disable a member (ends their sessions).
    Disable {
        /// Tenant slug.
        tenant: String,
        /// Their email.
        email: String,
    },
    /// Print a new set-password link for a member (valid 24 h).
    Reset {
        /// Tenant slug.
        tenant: String,
        /// Their email.
        email: String,
    },
}

#[derive(Debug, Subcommand)]
enum OtpCommand {
    /// Send a code; prints the challenge id (never the code). A running server delivers it.
    Send {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Phone number in international format (+62…).
        #[arg(long)]
        to: String,
        /// whatsapp, telegram or auto (WhatsApp, then Telegram when the customer is known there).
        #[arg(long, default_value = "auto")]
        channel: String,
        /// What the code is for.
        #[arg(long, default_value = "login")]
        purpose: String,
        /// Message language (id or en); the tenant's by default.
        #[arg(long)]
        locale: Option<String>,
    },
    /// Check a code against a challenge.
    Verify {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The challenge id `sapa otp send` printed.
        challenge: String,
        /// The code the customer received.
        code: String,
    },
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant (a business) with a web chat channel.
    Create {
        /// Tenant slug: lowercase letters, digits and `-`.
        slug: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Default bot language.
        #[arg(long, default_value = "id", value_parser = ["id", "en"])]
        locale: String,
    },
    /// List tenants.
    List,
    /// Manage a tenant's API keys (for the admin REST API).
    #[command(name = "api-key")]
    ApiKey {
        #[command(subcommand)]
        command: ApiKeyCommand,
    },
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create an API key; it is printed once and only its hash is stored.
    Create {
        /// Tenant slug.
        tenant: String,
        /// What the key may do (repeatable); without it the key has every scope.
        #[arg(long = "scope", value_enum)]
        scopes: Vec<api_key::Scope>,
    },
    /// List a tenant's keys (prefixes only).
    List {
        /// Tenant slug.
        tenant: String,
    },
    /// Revoke a key by its prefix (the 8 characters after `sapa_`).
    Revoke {
        /// Tenant slug.
        tenant: String,
        /// Key prefix.
        prefix: String,
    },
}

#[derive(Debug, Subcommand)]
enum ChannelCommand {
    /// Add (or update) a channel account of a tenant:
    /// `sapa channel add <kind> --tenant T --<setting> VALUE …`. `sapa channel add <kind> --help`
    /// lists the kind's settings. Secrets are stored encrypted; pass them through their
    /// environment variables (`SAPA_<KIND>_<SETTING>`) rather than flags to keep them out of
    /// shell history.
    Add {
        /// Channel kind: `whatsapp`, `telegram`, or a registered plugin's kind.
        kind: String,
        /// `--tenant T` and the kind's settings as `--flag VALUE` or `--flag=VALUE`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, num_args = 0..)]
        args: Vec<String>,
    },
}

#[derive(Debug, Subcommand)]
enum KbCommand {
    /// Ingest files (Markdown, text, HTML, CSV FAQ, PDF) or directories into a tenant's knowledge base.
    Ingest {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// Files or directories.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Show the ranked chunks for a query.
    Search {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The question.
        query: String,
        /// How many chunks.
        #[arg(long, default_value_t = 5)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move tenants' documents from the other knowledge backend into the configured one
    /// (`knowledge.backend`): e.g. from the embedded index into Qdrant. The target ends up
    /// with exactly the source's documents; run it while `sapa serve` is stopped when the
    /// source is the embedded index (its writer lock).
    Reindex {
        /// Tenant slug.
        #[arg(long, conflicts_with = "all", required_unless_present = "all")]
        tenant: Option<String>,
        /// Every tenant in the database.
        #[arg(long)]
        all: bool,
        /// The backend to read from: `embedded` or `qdrant` (default: the one not configured).
        #[arg(long)]
        from: Option<String>,
    },
    /// Measure retrieval quality on a JSONL question file.
    Eval {
        /// Tenant slug.
        #[arg(long)]
        tenant: String,
        /// The JSONL file (see shared/eval/README.md for the format).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Entry point of the `sapa` binary.
pub fn run() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    telemetry::init(&config.telemetry);
    let runtime = Runtime {
        data_dir: cli.data_dir.clone(),
        secret_key: std::env::var("SAPA_SECRET_KEY").ok(),
    };
    let tokio = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = tokio.block_on(async move {
        match cli.command {
            Command::Serve { bind } => serve(config, runtime, bind).await,
            Command::Migrate => migrate(config, runtime).await,
            Command::Check => check(config, runtime).await,
            Command::Kb { command } => kb(command, &config, runtime).await,
            Command::Tenant { command } => tenant(command, config, runtime).await,
            Command::Channel { command } => channel(command, &config, runtime).await,
            Command::Otp { command } => otp(command, &config, runtime).await,
            Command::Staff { command } => staff(command, &config, runtime).await,
            Command::Flows {
                command: FlowsCommand::Load { tenant, paths },
            } => load_flows(&config, runtime, tenant, &paths).await,
            Command::Flows { command } => flows_command(command),
        }
    });
    telemetry::shutdown();
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    mut config: Config,
    runtime: Runtime,
    bind: Option<SocketAddr>,
) -> anyhow::Result<ExitCode> {
    if let Some(bind) = bind {
        config.server.bind = bind;
    }
    tracing::debug!(config = %config.redacted_summary(), "effective configuration");
    let public = if config.server.public_url.is_empty() {
        None
    } else {
        Some(config.server.public_url.trim_end_matches('/').to_owned())
    };
    let demo = config.demo.enabled;
    let startup = crate::memory::StartupPurge::begin();
    let app = Application::build(config, runtime).await?;
    let base = public.unwrap_or_else(|| format!("http://{}", app.address()));
    let token = app.shutdown_token();
    // Register the handlers before announcing readiness, so a signal sent right after the
    // "listening" line is never met by the default (abrupt) disposition.
    let signals = ShutdownSignals::register()?;
    tokio::spawn(async move {
        signals.recv().await;
        tracing::info!("shutdown signal received");
        token.cancel();
    });
    // The demo owner exists before the ready line: a `sapa staff …` run right after it sees them.
    let owner_link = app.demo_owner().await?;
    startup.finish();
    tracing::info!(address = %app.address(), "sapa is ready");
    println!("Sapa is listening on {base}");
    println!("  health:   {base}/health/ready");
    if let Some(operator) = app.operator_address() {
        // Loopback by default (server.admin_bind): metrics and health details stay private.
        println!(
            "  operator: http://{operator} (/metrics, /health/ready with details; keep it private)"
        );
    }
    println!("  web chat: {base}/v1/webchat/sessions (POST), /v1/webchat/messages, /v1/webchat/ws");
    println!("  widget:   <script src=\"{base}/widget.js\" data-tenant=\"TENANT\" async></script>");
    if let Some(token) = owner_link {
        println!(
            "  console:  {base}/console/login — the demo owner {} is new; set their password once (within 24 h):",
            crate::demo::OWNER_EMAIL
        );
        println!("            {base}/console/set-password#token={token}");
    }
    if demo {
        println!("  chat:     {base}/chat/demo");
        println!(
            "  try it:   curl -s -XPOST {base}/v1/webchat/sessions -H 'content-type: application/json' -d '{{\"tenant\":\"demo\"}}'"
        );
    }
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

async fn channel(
    command: ChannelCommand,
    config: &Config,
    runtime: Runtime,
) -> anyhow::Result<ExitCode> {
    let ChannelCommand::Add { kind, args } = command;
    let plugins = crate::accounts::Plugins::default();
    let known = || {
        plugins
            .iter()
            .map(|p| p.kind().as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plugin = kind
        .parse::<ChannelKind>()
        .ok()
        .and_then(|k| plugins.get(k))
        .with_context(|| format!("no channel plugin for `{kind}` (available: {})", known()))?;
    let kind = plugin.kind();
    let specs = plugin.settings();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{}", settings_help(kind, specs));
        return Ok(ExitCode::SUCCESS);
    }
    let (tenant, settings) = account_settings(kind, specs, &args, |name| std::env::var(name).ok())?;
    let settings_mode = settings["mode"].as_str().map(str::to_owned);
    // Refuse bad settings before touching the database.
    if let Err(why) = plugin.account_key(&settings) {
        // The plugin names its settings; on the command line they are flags.
        let why = match specs.iter().find(|s| why.starts_with(s.key)) {
            Some(spec) => format!("--{}{}", spec.flag, &why[spec.key.len()..]),
            None => why,
        };
        anyhow::bail!("{why}");
    }
    let (store, _) = startup::open_store(config, &runtime).await?;
    if let Some(declared) = config.tenants.get(&tenant) {
        let name = if declared.name.is_empty() {
            &tenant
        } else {
            &declared.name
        };
        store.upsert_tenant(&tenant, name, &declared.locale).await?;
    }
    if store.tenant(&tenant).await?.is_none() {
        anyhow::bail!(
            "no tenant `{tenant}` (declare it under [tenants.{tenant}] in sapa.toml and start the server once)"
        );
    }
    let embedded = matches!(
        config.database_target(&runtime.data_dir),
        crate::config::DatabaseTarget::Sqlite(_)
    );
    let secrets =
        crate::crypto::SecretBox::load(runtime.secret_key.as_deref(), &runtime.data_dir, embedded)?;
    let (id, key) =
        crate::accounts::save(&store, &secrets, &plugins, &tenant, kind, settings).await?;
    store.close().await;
    let mode = settings_mode
        .map(|m| format!(", {m} mode"))
        .unwrap_or_default();
    println!(
        "{kind} account {key} added to tenant {tenant} (account {id}{mode}); restart the server to use it"
    );
    Ok(ExitCode::SUCCESS)
}

/// The store and the OTP service over it, as the server builds them.
async fn otp_service(
    config: &Config,
    runtime: &Runtime,
) -> anyhow::Result<(Store, crate::otp::OtpService)> {
    let (store, _) = startup::open_store(config, runtime).await?;
    let embedded = matches!(
        config.database_target(&runtime.data_dir),
        crate::config::DatabaseTarget::Sqlite(_)
    );
    let secrets =
        crate::crypto::SecretBox::load(runtime.secret_key.as_deref(), &runtime.data_dir, embedded)?;
    let plugins = crate::accounts::Plugins::default();
    let http = reqwest::Client::new();
    let accounts =
        std::sync::Arc::new(crate::accounts::load(&store, &secrets, &plugins, &http).await?);
    let service = crate::otp::OtpService::new(
        store.clone(),
        secrets,
        config.otp.clone(),
        accounts,
        std::sync::Arc::new(tokio::sync::Notify::new()),
    );
    Ok((store, service))
}

async fn otp(command: OtpCommand, config: &Config, runtime: Runtime) -> anyhow::Result<ExitCode> {
    let (store, service) = otp_service(config, &runtime).await?;
    let outcome = match command {
        OtpCommand::Send {
            tenant,
            to,
            channel,
            purpose,
            locale,
        } => {
            let request = (|| {
                Ok::<_, crate::otp::OtpError>(crate::otp::IssueRequest {
                    to: crate::otp::Recipient::phone(&to)?,
                    channel: crate::otp::ChannelChoice::parse(&channel).ok_or_else(|| {
                        crate::otp::OtpError::Invalid(
                            "--channel must be whatsapp, telegram or auto".to_owned(),
                        )
                    })?,
                    purpose,
                    locale: match locale.as_deref() {
                        None => None,
                        Some(l) => Some(flows::Locale::parse(l).ok_or_else(|| {
                            crate::otp::OtpError::Invalid("--locale must be id or en".to_owned())
                        })?),
                    },
                    idempotency_key: None,
                })
            })();
            match request {
                Ok(request) => service.issue(&tenant, request).await.map(|issued| {
                    println!("{}", issued.challenge.id);
                    eprintln!(
                        "code queued on {} for tenant {tenant}; it expires at {}. Check it with `sapa otp verify --tenant {tenant} {} CODE`.",
                        issued.challenge.channel,
                        format_ms(issued.challenge.expires_at_ms),
                        issued.challenge.id
                    );
                }),
                Err(err) => Err(err),
            }
        }
        OtpCommand::Verify {
            tenant,
            challenge,
            code,
        } => service.verify(&tenant, &challenge, &code).await.map(|()| {
            println!("verified");
        }),
    };
    store.close().await;
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(crate::otp::OtpError::InvalidCode { attempts_left }) => {
            anyhow::bail!("the code is not correct ({attempts_left} attempts left)")
        }
        Err(err) => Err(err.into()),
    }
}

/// `sapa flows load`: checks every document (against the tenant's webhook hosts too), then
/// stores them all.
async fn load_flows(
    config: &Config,
    runtime: Runtime,
    tenant: String,
    paths: &[PathBuf],
) -> anyhow::Result<ExitCode> {
    let files: Vec<PathBuf> = expand(paths)?
        .into_iter()
        .filter(|f| {
            f.extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("yaml") || e.eq_ignore_ascii_case("yml"))
        })
        .collect();
    if files.is_empty() {
        anyhow::bail!("no .yaml or .yml files in {}", paths[0].display());
    }
    let hosts = config
        .tenants
        .get(&tenant)
        .map(|t| t.webhook_hosts.clone())
        .unwrap_or_default();
    let mut checked = Vec::with_capacity(files.len());
    let mut failed = false;
    for file in &files {
        let source = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        match crate::tenant_flows::check(&source, &tenant, &hosts) {
            Ok(flow) => checked.push((flow, source)),
            Err(errors) => {
                failed = true;
                for error in errors {
                    eprintln!(
                        "{}:{}:{}: {}",
                        file.display(),
                        error.line,
                        error.column,
                        error.message
                    );
                }
            }
        }
    }
    if failed {
        eprintln!("nothing was loaded; fix the errors above and run this again");
        return Ok(ExitCode::FAILURE);
    }
    let (store, _) = startup::open_store(config, &runtime).await?;
    let tenant = known(&store, tenant).await?;
    for (flow, source) in &checked {
        let replaced = store
            .put_flow(&tenant, &flow.name, source, "cli", crate::store::now_ms())
            .await?;
        println!(
            "{} flow `{}` ({} steps) for tenant {tenant}",
            if replaced { "replaced" } else { "loaded" },
            flow.name,
            flow.steps.len()
        );
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

fn flows_command(command: FlowsCommand) -> anyhow::Result<ExitCode> {
    match command {
        FlowsCommand::Load { .. } => unreachable!("`flows load` runs with the store"),
        FlowsCommand::Schema => {
            print!("{}", flows::flow::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        FlowsCommand::Check { files } => {
            let mut failed = false;
            for file in files {
                let source = std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?;
                match flows::flow::parse(&source) {
                    Ok(flow) => println!(
                        "{}: flow `{}` is valid ({} steps)",
                        file.display(),
                        flow.name,
                        flow.steps.len()
                    ),
                    Err(errors) => {
                        failed = true;
                        for error in errors {
                            eprintln!(
                                "{}:{}:{}: {}",
                                file.display(),
                                error.line,
                                error.column,
                                error.message
                            );
                        }
                    }
                }
            }
            Ok(if failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

async fn staff(
    command: StaffCommand,
    config: &Config,
    runtime: Runtime,
) -> anyhow::Result<ExitCode> {
    let (store, otp) = otp_service(config, &runtime).await?;
    let service = crate::staff::StaffService::new(store.clone(), otp, Vec::<String>::new());
    let base = if config.server.public_url.is_empty() {
        format!("http://{}", config.server.bind)
    } else {
        config.server.public_url.trim_end_matches('/').to_owned()
    };
    let link_line = |token: &str| format!("{base}/console/set-password#token={token}");
    let result: anyhow::Result<()> = async {
        match command {
            StaffCommand::Add {
                tenant,
                email,
                role,
                whatsapp,
                telegram_chat_id,
                password_stdin,
            } => {
                let tenant = known(&store, tenant).await?;
                let email = crate::staff::normalize_email(&email)?;
                let whatsapp = whatsapp
                    .map(|w| match crate::otp::Recipient::phone(&w)? {
                        crate::otp::Recipient::Phone(p) => Ok(p),
                        _ => unreachable!("phone() makes phones"),
                    })
                    .transpose()
                    .map_err(|e: crate::otp::OtpError| anyhow::anyhow!("--whatsapp: {e}"))?;
                let password = if password_stdin {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    Some(line.trim_end_matches(['\n', '\r']).to_owned())
                } else {
                    None
                };
                let member = crate::store::StaffMember {
                    id: format!("stf_{}", uuid::Uuid::new_v4().simple()),
                    tenant_id: tenant.clone(),
                    email: email.clone(),
                    role,
                    whatsapp,
                    telegram_chat_id,
                    disabled_at_ms: None,
                    locked_until_ms: None,
                    has_password: password.is_some(),
                };
                let (member, link) = service.add(member, password.as_deref()).await?;
                println!(
                    "{} {} ({}) added to tenant {tenant}",
                    member.id, member.email, member.role
                );
                if let Some(token) = link {
                    println!(
                        "set-password link (valid 24 h, once): {}",
                        link_line(&token)
                    );
                }
            }
            StaffCommand::List { tenant } => {
                let tenant = known(&store, tenant).await?;
                for m in store.staff(&tenant).await? {
                    let state = if m.disabled_at_ms.is_some() {
                        "disabled"
                    } else if m.has_password {
                        "active"
                    } else {
                        "invited"
                    };
                    let factor = match (&m.whatsapp, m.telegram_chat_id) {
                        (Some(_), _) => "whatsapp",
                        (None, Some(_)) => "telegram",
                        (None, None) => "password only",
                    };
                    println!("{}\t{}\t{state}\t{factor}", m.email, m.role);
                }
            }
            StaffCommand::Disable { tenant, email } => {
                let tenant = known(&store, tenant).await?;
                let email = crate::staff::normalize_email(&email)?;
                if !store
                    .set_staff_disabled(&tenant, &email, Some(crate::store::now_ms()))
                    .await?
                {
                    anyhow::bail!("tenant `{tenant}` has no staff member {email}");
                }
                println!("disabled {email} of tenant {tenant}; their sessions ended");
            }
            StaffCommand::Reset { tenant, email } => {
                let tenant = known(&store, tenant).await?;
                let email = crate::staff::normalize_email(&email)?;
                let member = store
                    .staff_login(&tenant, &email)
                    .await?
                    .with_context(|| format!("tenant `{tenant}` has no staff member {email}"))?
                    .member;
                let token = service.link(&member.id).await?;
                println!(
                    "set-password link (valid 24 h, once): {}",
                    link_line(&token)
                );
            }
        }
        Ok(())
    }
    .await;
    store.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// The `--help` of `sapa channel add <kind>`: the kind's settings.
fn settings_help(kind: ChannelKind, specs: &[channels::Setting]) -> String {
    let mut out = format!("sapa channel add {kind} --tenant T [settings]\n\nsettings:");
    for spec in specs {
        let env = if spec.secret {
            format!(" [env {}]", secret_env(kind, spec))
        } else {
            String::new()
        };
        out.push_str(&format!("\n  --{:<24} {}{env}", spec.flag, spec.help));
    }
    out
}

/// Where a secret setting is read from when its flag is absent.
fn secret_env(kind: ChannelKind, spec: &channels::Setting) -> String {
    format!("SAPA_{}_{}", kind.as_str(), spec.key).to_ascii_uppercase()
}

/// Parses `--tenant T --flag VALUE --flag=VALUE …` against the plugin's settings into the
/// tenant and the account's settings object; secrets whose flag is absent come from
/// `env(SAPA_<KIND>_<KEY>)`.
fn account_settings(
    kind: ChannelKind,
    specs: &[channels::Setting],
    args: &[String],
    env: impl Fn(&str) -> Option<String>,
) -> anyhow::Result<(String, serde_json::Value)> {
    let mut tenant = None;
    let mut settings = serde_json::Map::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let Some(flag) = arg.strip_prefix("--") else {
            anyhow::bail!("unexpected `{arg}`: settings are given as `--flag VALUE`");
        };
        let (flag, inline) = match flag.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (flag, None),
        };
        let Some(value) = inline.or_else(|| args.next().cloned()) else {
            anyhow::bail!("--{flag} needs a value");
        };
        if flag == "tenant" {
            tenant = Some(value);
            continue;
        }
        let Some(spec) = specs.iter().find(|s| s.flag == flag) else {
            let flags: Vec<String> = specs.iter().map(|s| format!("--{}", s.flag)).collect();
            anyhow::bail!(
                "`--{flag}` is not a {kind} setting (settings: --tenant, {})",
                flags.join(", ")
            );
        };
        settings.insert(spec.key.to_owned(), setting_value(spec, value)?);
    }
    for spec in specs.iter().filter(|s| s.secret) {
        if !settings.contains_key(spec.key)
            && let Some(value) = env(&secret_env(kind, spec))
        {
            settings.insert(spec.key.to_owned(), setting_value(spec, value)?);
        }
    }
    // An empty secret would accept forged webhooks (an empty signing key): refuse it, as the
    // config file does.
    for spec in specs.iter().filter(|s| s.secret) {
        if settings
            .get(spec.key)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|v| v.trim().is_empty())
        {
            anyhow::bail!(
                "--{} must not be empty (pass it, or set {} to keep it out of shell history)",
                spec.flag,
                secret_env(kind, spec)
            );
        }
    }
    let Some(tenant) = tenant else {
        anyhow::bail!("--tenant is required (the tenant slug the account belongs to)");
    };
    Ok((tenant, serde_json::Value::Object(settings)))
}

fn setting_value(spec: &channels::Setting, value: String) -> anyhow::Result<serde_json::Value> {
    if !spec.integer {
        return Ok(serde_json::Value::String(value));
    }
    value
        .trim()
        .parse::<u64>()
        .map(serde_json::Value::from)
        .map_err(|_| anyhow::anyhow!("--{} must be a whole number, not `{value}`", spec.flag))
}

async fn migrate(config: Config, runtime: Runtime) -> anyhow::Result<ExitCode> {
    let (store, applied) = startup::open_store(&config, &runtime).await?;
    if applied.is_empty() {
        println!("database is up to date");
    } else {
        println!("applied migrations {applied:?}");
    }
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn check(config: Config, runtime: Runtime) -> anyhow::Result<ExitCode> {
    println!("configuration: ok ({})", config.redacted_summary());
    let http = reqwest::Client::new();
    let mut failed = false;
    let store = match startup::open_store(&config, &runtime).await {
        Ok((store, _)) => Some(store),
        Err(err) => {
            println!("database: FAILED: {err:#}");
            failed = true;
            None
        }
    };
    // Qdrant: connecting checks the collection's schema (and creates it when missing, as
    // `sapa serve` would).
    let knowledge = if config.knowledge.uses_qdrant() {
        match startup::open_qdrant(&config).await {
            Ok(knowledge) => Some(knowledge),
            Err(err) => {
                println!("qdrant: FAILED: {err:#}");
                failed = true;
                None
            }
        }
    } else {
        None
    };
    for check in checks::run(&config, store.as_ref(), knowledge.as_deref(), &http).await {
        if check.name == "qdrant" && knowledge.is_none() {
            continue;
        }
        failed |= !check.ok;
        println!(
            "{}: {} ({})",
            check.name,
            if check.ok { "ok" } else { "FAILED" },
            check.detail
        );
    }
    // Embeddings: one real request, which also proves the model name. Not part of
    // `/health/ready`: without embeddings the bot still answers (BM25 alone).
    if let Some(embedder) = startup::embedder(&config) {
        let url = &config.embeddings.base_url;
        match embedder.embed(&["ping".to_owned()]).await {
            Ok(vectors) => println!(
                "embeddings: ok ({url} model {} answered, {} dimensions)",
                embedder.model(),
                vectors.first().map_or(0, Vec::len)
            ),
            Err(err) => {
                failed = true;
                println!(
                    "embeddings: FAILED ({url}: {err}; check embeddings.base_url, embeddings.model and SAPA_EMBEDDINGS__API_KEY)"
                );
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `sapa kb reindex`: copies tenants from the other backend into the configured one.
async fn reindex(
    config: &Config,
    runtime: Runtime,
    tenant: Option<String>,
    all: bool,
    from: Option<String>,
) -> anyhow::Result<ExitCode> {
    let configured = config.knowledge.backend.as_str();
    let from = from.unwrap_or_else(|| {
        if config.knowledge.uses_qdrant() {
            "embedded".to_owned()
        } else {
            "qdrant".to_owned()
        }
    });
    if from == configured {
        anyhow::bail!(
            "--from {from} is the configured knowledge.backend: set knowledge.backend to the backend to move into"
        );
    }
    let source = match from.as_str() {
        "embedded" => startup::open_embedded_knowledge(config, &runtime)?,
        "qdrant" => startup::open_qdrant(config).await?,
        other => anyhow::bail!("--from must be `embedded` or `qdrant` (got {other:?})"),
    };
    let target = startup::open_knowledge(config, &runtime).await?;
    let tenants = match tenant {
        Some(tenant) => vec![tenant],
        None if all => {
            let (store, _) = startup::open_store(config, &runtime).await?;
            store
                .tenants()
                .await
                .context("cannot list tenants")?
                .into_iter()
                .map(|t| t.id)
                .collect()
        }
        None => anyhow::bail!("give --tenant T or --all"),
    };
    for tenant in tenants {
        let (s, t, slug) = (source.clone(), target.clone(), tenant.clone());
        let report = tokio::task::spawn_blocking(move || {
            knowledge::copy_tenant(s.as_ref(), t.as_ref(), &slug)
        })
        .await
        .context("reindex task")?
        .with_context(|| format!("reindexing tenant {tenant} from {from} into {configured}"))?;
        let embedded = target.embed_missing(&tenant).await?;
        println!(
            "{tenant}: {} documents written, {} unchanged, {} deleted, {} chunks in {configured}{}",
            report.written,
            report.unchanged,
            report.deleted,
            report.chunks,
            if embedded > 0 {
                format!(", {embedded} documents embedded")
            } else {
                String::new()
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn kb(command: KbCommand, config: &Config, runtime: Runtime) -> anyhow::Result<ExitCode> {
    if let KbCommand::Reindex { tenant, all, from } = command {
        return reindex(config, runtime, tenant, all, from).await;
    }
    let knowledge = startup::open_knowledge(config, &runtime).await?;
    match command {
        KbCommand::Ingest { tenant, paths } => {
            let files = expand(&paths)?;
            // Drawn on stderr only when it is a terminal; the report below goes to stdout.
            let progress = indicatif::ProgressBar::new(files.len() as u64);
            progress.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {pos}/{len} files, {elapsed} (eta {eta}) {wide_msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            // With `[embeddings]`, chunks are embedded too (and documents ingested earlier
            // without vectors get them); an embedding failure still indexes for BM25.
            let mut report = knowledge::IngestReport::default();
            for path in &files {
                progress.set_message(path.display().to_string());
                let name = path.file_name().map_or_else(
                    || path.to_string_lossy().into_owned(),
                    |n| n.to_string_lossy().into_owned(),
                );
                let outcome = match std::fs::read(path) {
                    Ok(bytes) => knowledge.ingest(&tenant, &name, bytes).await,
                    Err(source) => Err(knowledge::IngestError::Read {
                        path: path.clone(),
                        source,
                    }),
                };
                report.outcomes.push((path.clone(), outcome));
                progress.inc(1);
            }
            progress.finish_and_clear();
            let mut failed = 0;
            for (path, outcome) in &report.outcomes {
                match outcome {
                    Ok(outcome) => println!("{}: {outcome:?}", path.display()),
                    Err(err) => {
                        failed += 1;
                        println!("{}: FAILED: {err}", path.display());
                    }
                }
            }
            println!("{} files, {} failed", report.outcomes.len(), failed);
            Ok(if failed > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        KbCommand::Search {
            tenant,
            query,
            limit,
            json,
        } => {
            let vector = knowledge.embed_query(&query).await;
            let hits = knowledge.retrieve(
                &tenant,
                &knowledge::SearchQuery::hybrid(&query, vector.as_ref()),
                limit,
            )?;
            if json {
                println!("{}", serde_json::to_string_pretty(&hits)?);
            } else {
                for (rank, hit) in hits.iter().enumerate() {
                    println!(
                        "{}. score={:.3} relevance={:.2} [{}] {}",
                        rank + 1,
                        hit.score,
                        hit.relevance,
                        hit.chunk.document_name,
                        hit.chunk.heading_path.join(" > ")
                    );
                    println!("   {}", hit.chunk.text.replace('\n', "\n   "));
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        KbCommand::Reindex { .. } => unreachable!("handled above"),
        KbCommand::Eval { tenant, file, json } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            let report = match knowledge.embedder() {
                None => knowledge::eval::run(knowledge.as_ref(), &tenant, &text)?,
                Some(embedder) => {
                    // Hybrid: embed every question first, then run the (blocking) evaluation.
                    let queries = knowledge::eval::queries(&text)?;
                    let vectors = knowledge::embed::embed_batched(embedder.as_ref(), &queries)
                        .await
                        .context("cannot embed the evaluation questions")?;
                    let model = embedder.model().to_owned();
                    let by_query: std::collections::HashMap<String, Vec<f32>> =
                        queries.into_iter().zip(vectors).collect();
                    eprintln!("hybrid retrieval (embeddings: {model})");
                    knowledge::eval::run_hybrid(
                        knowledge.as_ref(),
                        &tenant,
                        &text,
                        knowledge::DEFAULT_MIN_RELEVANCE,
                        &|q| {
                            by_query.get(q).map(|v| knowledge::QueryVector {
                                model: model.clone(),
                                values: v.clone(),
                            })
                        },
                    )?
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                println!("{report}");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn tenant(
    command: TenantCommand,
    config: Config,
    runtime: Runtime,
) -> anyhow::Result<ExitCode> {
    let (store, _) = startup::open_store(&config, &runtime).await?;
    let code = tenant_command(command, &store).await;
    store.close().await;
    code
}

async fn tenant_command(command: TenantCommand, store: &Store) -> anyhow::Result<ExitCode> {
    match command {
        TenantCommand::Create { slug, name, locale } => {
            if !valid_slug(&slug) {
                anyhow::bail!(
                    "invalid tenant slug `{slug}`: use lowercase letters, digits and `-` (e.g. `toko-budi`)"
                );
            }
            if name.trim().is_empty() {
                anyhow::bail!("--name must not be empty");
            }
            if !store.create_tenant(&slug, name.trim(), &locale).await? {
                anyhow::bail!("tenant `{slug}` already exists");
            }
            store
                .ensure_channel_account(&slug, ChannelKind::Webchat, &slug, "Web chat", None)
                .await?;
            println!("created tenant {slug} ({}, locale {locale})", name.trim());
        }
        TenantCommand::List => {
            for tenant in store.tenants().await? {
                println!("{}\t{}\t{}", tenant.id, tenant.locale, tenant.name);
            }
        }
        TenantCommand::ApiKey { command } => match command {
            ApiKeyCommand::Create { tenant, scopes } => {
                let tenant = known(store, tenant).await?;
                let key = api_key::generate();
                store
                    .create_scoped_api_key(&tenant, &key.prefix, &key.hash, &scopes)
                    .await?;
                println!("{}", key.key);
                eprintln!(
                    "API key {} created for tenant {tenant}. It is shown only now: store it in a secret manager. Revoke it with `sapa tenant api-key revoke {tenant} {}`.",
                    key.prefix, key.prefix
                );
            }
            ApiKeyCommand::List { tenant } => {
                let tenant = known(store, tenant).await?;
                for key in store.api_keys(&tenant).await? {
                    let state = if key.revoked_at_ms.is_some() {
                        "revoked"
                    } else {
                        "active"
                    };
                    let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
                    println!(
                        "{}\t{state}\tcreated {}\tscopes {}",
                        key.prefix,
                        format_ms(key.created_at_ms),
                        scopes.join(",")
                    );
                }
            }
            ApiKeyCommand::Revoke { tenant, prefix } => {
                let tenant = known(store, tenant).await?;
                if !store.revoke_api_key(&tenant, &prefix).await? {
                    anyhow::bail!("tenant `{tenant}` has no active API key with prefix `{prefix}`");
                }
                println!("revoked API key {prefix} of tenant {tenant}");
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// The slug, when such a tenant exists.
async fn known(store: &Store, slug: String) -> anyhow::Result<String> {
    if store.tenant(&slug).await?.is_none() {
        anyhow::bail!("no tenant `{slug}`; create it with `sapa tenant create {slug} --name NAME`");
    }
    Ok(slug)
}

use crate::store::rfc3339 as format_ms;

/// Expands directories into the files below them (sorted), keeping files as given.
fn expand(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read directory {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            files.extend(entries);
        } else {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// SIGINT and SIGTERM handlers, registered up front.
struct ShutdownSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl ShutdownSignals {
    fn register() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate()).context("cannot handle SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("cannot handle SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves on the first SIGINT or SIGTERM.
    async fn recv(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        {
            let _ = &mut self;
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use channels::ChannelPlugin as _;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn channel_add_reads_flags_inline_values_and_secrets_from_the_environment() {
        let plugin = channels::telegram::provider::TelegramPlugin;
        let env = |name: &str| (name == "SAPA_TELEGRAM_BOT_TOKEN").then(|| "1:abc".to_owned());
        let (tenant, settings) = account_settings(
            ChannelKind::Telegram,
            plugin.settings(),
            &args(&["--mode", "polling", "--poll-timeout=3", "--tenant", "shop"]),
            env,
        )
        .unwrap();
        assert_eq!(tenant, "shop");
        assert_eq!(
            settings,
            serde_json::json!({"mode": "polling", "poll_timeout_s": 3, "bot_token": "1:abc"})
        );
        // A flag wins over the environment.
        let (_, settings) = account_settings(
            ChannelKind::Telegram,
            plugin.settings(),
            &args(&["--tenant", "shop", "--bot-token", "2:def"]),
            env,
        )
        .unwrap();
        assert_eq!(settings["bot_token"], "2:def");
    }

    #[test]
    fn channel_add_refuses_empty_secrets_from_flags_and_the_environment() {
        let whatsapp = channels::whatsapp::provider::WhatsappPlugin;
        let err = account_settings(
            ChannelKind::Whatsapp,
            whatsapp.settings(),
            &args(&[
                "--tenant",
                "shop",
                "--phone-number-id",
                "1",
                "--app-secret",
                "",
            ]),
            |_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--app-secret must not be empty")
                && err.contains("SAPA_WHATSAPP_APP_SECRET"),
            "{err}"
        );
        let telegram = channels::telegram::provider::TelegramPlugin;
        let env = |name: &str| (name == "SAPA_TELEGRAM_WEBHOOK_SECRET").then(|| " ".to_owned());
        let err = account_settings(
            ChannelKind::Telegram,
            telegram.settings(),
            &args(&["--tenant", "shop", "--bot-token", "1:abc"]),
            env,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("--webhook-secret must not be empty")
                && err.contains("SAPA_TELEGRAM_WEBHOOK_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn channel_add_names_what_is_wrong() {
        let plugin = channels::telegram::provider::TelegramPlugin;
        let fail = |list: &[&str]| {
            account_settings(
                ChannelKind::Telegram,
                plugin.settings(),
                &args(list),
                |_| None,
            )
            .unwrap_err()
            .to_string()
        };
        assert!(fail(&["--tenant", "shop", "--phone-number-id", "1"]).contains("--bot-token"));
        assert!(fail(&["--tenant"]).contains("--tenant needs a value"));
        assert!(fail(&["--mode", "polling"]).contains("--tenant is required"));
        assert!(fail(&["--tenant", "s", "--poll-timeout", "soon"]).contains("whole number"));
        assert!(fail(&["shop"]).contains("--flag VALUE"));
        assert!(
            settings_help(ChannelKind::Telegram, plugin.settings())
                .contains("SAPA_TELEGRAM_BOT_TOKEN")
        );
    }
}
