//! The `sesame-vault` command: wires configuration to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use sesame_vault::app::App;
use sesame_vault::config::Config;
use sesame_vault::domain::Role;
use sesame_vault::error::api_to_anyhow;
use sesame_vault::people_cli;
use sesame_vault::runner_cli::{task_env, task_return, Client, TaskEnv};

#[derive(Parser)]
#[command(name = "sesame-vault", version, about = "Encrypted credential service for AI coding agents")]
struct Cli {
    /// TOML configuration file (also SESAME_CONFIG).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (migrates the database first).
    Serve,
    /// Run the egress proxy as its own process (SESAME_PROXY__LISTEN), on
    /// the same database as `serve`; `serve` then sets
    /// SESAME_PROXY__PUBLIC_URL to where tasks reach it.
    Proxy,
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage service tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Manage webhook endpoints (signed credential events to the platform).
    #[command(subcommand)]
    Webhook(sesame_vault::webhook_cli::WebhookCommand),
    /// Print a fresh encryption key (64 hex characters).
    Keygen,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the GraphQL schema (SDL).
    Schema,
    /// Copy the SQLite database to FILE (consistent, while the server runs;
    /// mode 0600). The encryption key is not in it: back that up separately.
    Backup { file: PathBuf },
    /// Re-encrypt every stored secret under the current ENCRYPTION_KEY
    /// (old keys go in ENCRYPTION_KEYS_OLD until this has run).
    RotateKey,
    /// For shell-based runners: fetch a task's credentials, write its files
    /// under --home and print `export NAME='value'` lines.
    TaskEnv {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        user: String,
        #[arg(long)]
        agent: String,
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        task: String,
        #[arg(long)]
        home: PathBuf,
        /// `files` (the real credential) or `proxy` (placeholders that only the
        /// vault's egress proxy turns into the credential); default: the vault's.
        #[arg(long, value_parser = ["files", "proxy"])]
        delivery: Option<String>,
    },
    /// After a run: send the agent's (possibly refreshed) login files back.
    TaskReturn {
        #[command(flatten)]
        server: ServerArgs,
        #[arg(long)]
        task: String,
        #[arg(long)]
        home: PathBuf,
    },
}

#[derive(Args)]
struct ServerArgs {
    /// The vault's base URL.
    #[arg(long, env = "SESAME_VAULT_URL")]
    server: String,
    /// A RUNNER token (prefer the environment: arguments show up in `ps`).
    #[arg(long, env = "SESAME_VAULT_TOKEN", hide_env_values = true)]
    token: String,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user and print their token.
    Create {
        #[arg(long)]
        email: String,
        /// Give the user the ADMIN role.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        output: Output,
    },
    /// List every person (id, role, enabled or disabled, email).
    List {
        #[command(flatten)]
        output: Output,
    },
    /// Refuse a person's tokens and JWTs and stop issuing their credentials (nothing is deleted).
    Disable {
        /// Their email or id.
        user: String,
    },
    /// Let a disabled person in again.
    Enable {
        /// Their email or id.
        user: String,
    },
    /// Delete a person: their credentials and sign-ins in progress; their tokens are revoked. Someone who
    /// signs in with the IdP's JWTs stays out afterwards (their next JWT is refused) until `user readmit`.
    Delete {
        /// Their email or id.
        user: String,
    },
    /// Let a person deleted while signing in with the IdP's JWTs back in: their next JWT creates them again.
    Readmit {
        /// Their email when they were deleted, or their subject at the IdP.
        user: String,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token: a RUNNER token (--runner), or a new token for a person (--user), e.g. one who lost theirs.
    Create {
        /// A RUNNER token for the task executor.
        #[arg(long, conflicts_with = "user", required_unless_present = "user")]
        runner: bool,
        /// A token for this person (email or id).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        output: Output,
    },
    /// List live tokens (ids, names, last use, expiry), of one person with --user.
    List {
        /// Their email or id.
        #[arg(long)]
        user: Option<String>,
        #[command(flatten)]
        output: Output,
    },
    /// Revoke a token by id (`token list` shows them).
    Revoke { id: String },
}

#[derive(Args)]
struct Output {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // The log format is a setting; a configuration error is reported by the command.
    let log_format = Config::load(cli.config.as_deref()).map(|c| c.log.format).unwrap_or_default();
    sesame_vault::telemetry::init(log_format);
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = || Config::load(cli.config.as_deref());
    match cli.command {
        Command::Keygen => println!("{}", sesame_vault::crypto::Key::generate()),
        Command::Schema => {
            // The schema does not depend on data: build it over an in-memory store.
            let mut config = config()?;
            config.database_url = Some(sesame_vault::config::SecretValue::new("sqlite::memory:"));
            config.encryption_key = Some(sesame_vault::config::SecretValue::new(sesame_vault::crypto::Key::generate()));
            config.encryption_keys_old = None;
            let app = App::open(config).await?;
            print!("{}", sesame_vault::graphql::sdl(&app.schema));
        }
        Command::TaskEnv { server, user, agent, provider, task, home, delivery } => {
            let client = Client::new(&server.server, &server.token)?;
            let request = TaskEnv {
                user: &user,
                agent: &agent,
                provider: provider.as_deref(),
                task: &task,
                home: &home,
                delivery: delivery.as_deref(),
            };
            print!("{}", task_env(&client, request).await?);
        }
        Command::TaskReturn { server, task, home } => {
            let client = Client::new(&server.server, &server.token)?;
            let n = task_return(&client, &task, &home).await?;
            println!("returned task {task} ({n} credentials)");
        }
        Command::Migrate => {
            App::open(config()?).await?;
            println!("database is up to date");
        }
        Command::Backup { file } => {
            let bytes = sesame_vault::backup::run(&config()?, &file).await?;
            println!("backed up the database to {} ({bytes} bytes)", file.display());
            println!(
                "the encryption key is not in the backup: keep ENCRYPTION_KEY (or data/encryption.key) apart from it"
            );
        }
        Command::Serve => sesame_vault::app::serve(config()?).await?,
        Command::Proxy => sesame_vault::app::proxy(config()?).await?,
        Command::RotateKey => {
            let app = open_existing(config()?).await?;
            let n = app.store.operator_unchecked().rotate_keys().await.map_err(api_to_anyhow)?;
            println!("re-encrypted {n} secrets under key {}", app.store.key_fingerprint());
        }
        Command::Webhook(command) => {
            sesame_vault::webhook_cli::run(&open_existing(config()?).await?, command).await?;
        }
        Command::User(UserCommand::List { output }) => {
            let app = open_existing(config()?).await?;
            people_cli::user_list(&app, output.json).await?;
        }
        Command::User(UserCommand::Disable { user }) => {
            people_cli::user_set_disabled(&open_existing(config()?).await?, &user, true).await?;
        }
        Command::User(UserCommand::Enable { user }) => {
            people_cli::user_set_disabled(&open_existing(config()?).await?, &user, false).await?;
        }
        Command::User(UserCommand::Delete { user }) => {
            people_cli::user_delete(&open_existing(config()?).await?, &user).await?;
        }
        Command::User(UserCommand::Readmit { user }) => {
            people_cli::user_readmit(&open_existing(config()?).await?, &user).await?;
        }
        Command::Token(TokenCommand::List { user, output }) => {
            people_cli::token_list(&open_existing(config()?).await?, user.as_deref(), output.json).await?;
        }
        Command::Token(TokenCommand::Create { user: Some(user), name, output, .. }) => {
            people_cli::token_create_for(&open_existing(config()?).await?, &user, &name, output.json).await?;
        }
        Command::User(UserCommand::Create { email, admin, output }) => {
            let app = open_existing(config()?).await?;
            let role = if admin { Role::Admin } else { Role::User };
            let (user, token) =
                app.store.operator_unchecked().create_user(&email, role).await.map_err(api_to_anyhow)?;
            if output.json {
                let json = serde_json::json!({"id": user.id.as_str(), "email": user.email, "role": role.as_str(), "token": token.as_str()});
                println!("{json}");
            } else {
                println!("created {} {} (id {})", role.as_str(), user.email, user.id.as_str());
                println!("token (shown once): {}", token.as_str());
            }
        }
        Command::Token(TokenCommand::Create { user: None, name, output, .. }) => {
            let app = open_existing(config()?).await?;
            let (id, token) = app.store.operator_unchecked().create_runner_token(&name).await.map_err(api_to_anyhow)?;
            if output.json {
                println!("{}", serde_json::json!({"id": id, "name": name.trim(), "token": token.as_str()}));
            } else {
                println!("created RUNNER token {} (id {id})", name.trim());
                println!("token (shown once): {}", token.as_str());
            }
        }
        Command::Token(TokenCommand::Revoke { id }) => {
            let app = open_existing(config()?).await?;
            if app.store.operator_unchecked().revoke_token(&id).await.map_err(api_to_anyhow)? {
                println!("revoked token {id}");
            } else {
                anyhow::bail!("no live token has id {id}");
            }
        }
    }
    Ok(())
}

/// Opens the store for a command that works on the server's data: refuses
/// (saying where it looked) rather than create a second vault.
async fn open_existing(config: Config) -> anyhow::Result<App> {
    people_cli::require_existing_data(&config)?;
    App::open(config).await
}
