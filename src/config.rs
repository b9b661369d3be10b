//! Configuration: defaults, then an optional TOML file, then environment
//! (`SESAME_<SECTION>__<KEY>`, plus the conventional `DATABASE_URL`,
//! `ENCRYPTION_KEY`, `ENCRYPTION_KEYS_OLD` and the system-wide agent keys).
//!
//! This module only composes and loads: each section's type lives in the
//! module it configures (`graphql::GraphqlConfig`, `scheduler::SchedulerConfig`,
//! `edge::HttpConfig`, …) and is imported downward from here; nothing below
//! `app` imports this module (ARCHITECTURE.md, Layers), `app` hands each
//! part its settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::Provider;
use crate::graphql::GraphqlConfig;
use crate::providers::{OauthConfig, ProvidersConfig};
use crate::scheduler::SchedulerConfig;
// Re-exported: the commands and the tests build a `Config` with these.
pub use crate::secret::SecretValue;
pub use crate::system_keys::SystemKeys;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where the SQLite file and the generated key live.
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `sqlite://…` or `postgres://…`; unset means `<data_dir>/sesame.db`.
    #[serde(skip_serializing)]
    pub database_url: Option<SecretValue>,
    #[serde(skip_serializing)]
    pub encryption_key: Option<SecretValue>,
    /// Comma-separated keys that decrypt only (for rotation).
    #[serde(skip_serializing)]
    pub encryption_keys_old: Option<SecretValue>,
    pub graphql: GraphqlConfig,
    pub tasks: TasksConfig,
    /// `[oauth]`: sign-in with the providers (`SESAME_OAUTH__*`, see `crate::providers::settings`).
    pub oauth: OauthConfig,
    pub scheduler: SchedulerConfig,
    /// `[auth]`: JWT sign-in (`SESAME_AUTH__JWT__*`, see `crate::identity`).
    #[serde(default)]
    pub auth: crate::identity::AuthConfig,
    /// `[log]`: `format = "text" | "json"` (`SESAME_LOG__FORMAT`).
    #[serde(default)]
    pub log: crate::telemetry::LogConfig,
    /// `[metrics]`: `listen` (`SESAME_METRICS__LISTEN`); unset = no metrics.
    #[serde(default)]
    pub metrics: crate::ops::MetricsConfig,
    /// `[shutdown]`: `grace` (`SESAME_SHUTDOWN__GRACE`).
    #[serde(default)]
    pub shutdown: crate::shutdown::ShutdownConfig,
    /// `[checks]`: checking credentials with their provider (`SESAME_CHECKS__*`).
    #[serde(default)]
    pub checks: crate::checks::ChecksConfig,
    /// `[providers]`: where each provider's API is (`SESAME_PROVIDERS__<PROVIDER>__API_URL`, …).
    #[serde(default)]
    pub providers: ProvidersConfig,
    /// `[http]`: connection limits (`SESAME_HTTP__HEADER_TIMEOUT`, `__IDLE_TIMEOUT`, `__MAX_CONNECTIONS`).
    #[serde(default)]
    pub http: crate::edge::HttpConfig,
    /// `[writes]`: a person's writes per minute (`SESAME_WRITES__PER_MINUTE`, `__BURST`).
    #[serde(default)]
    pub writes: crate::limits::WritesConfig,
    /// `[webhooks]`: signed webhooks (`SESAME_WEBHOOKS__ALLOW_PRIVATE`, `__RETRY_MIN`, …).
    #[serde(default)]
    pub webhooks: crate::webhooks::WebhooksConfig,
    /// `[proxy]`: the egress proxy for `delivery: PROXY` (`SESAME_PROXY__LISTEN`, …).
    #[serde(default)]
    pub proxy: crate::proxy::ProxyConfig,
    /// Where people reach the vault (`SESAME_PUBLIC_URL`, e.g. `https://vault.example.com`):
    /// webhooks link to the Credentials app under it. Unset: no link.
    #[serde(default)]
    pub public_url: Option<String>,
    /// System-wide agent keys, used when a user has none.
    #[serde(skip_serializing, default)]
    pub system_keys: SystemKeys,
}

/// `[tasks]`: kept here because nothing below reads it: `app` hands the
/// lease to the store as a value (`StoreSettings::task_lease`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// How long a task holds the credentials it was issued: it may return
    /// refreshed files until then, and the scheduler does not refresh them
    /// behind its back. Durations like `90s`, `30m`, `2h`.
    #[serde(with = "humantime_serde")]
    pub lease: std::time::Duration,
    /// How a task receives its credentials when the runner does not say:
    /// `FILES` (the real values) or `PROXY` (placeholders; needs `[proxy]`).
    pub default_delivery: crate::domain::Delivery,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig {
            lease: std::time::Duration::from_secs(2 * 3600),
            default_delivery: crate::domain::Delivery::Files,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./data"),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            encryption_key: None,
            encryption_keys_old: None,
            graphql: GraphqlConfig::default(),
            tasks: TasksConfig::default(),
            oauth: OauthConfig::default(),
            scheduler: SchedulerConfig::default(),
            auth: Default::default(),
            log: Default::default(),
            metrics: Default::default(),
            shutdown: Default::default(),
            checks: Default::default(),
            providers: Default::default(),
            http: Default::default(),
            writes: Default::default(),
            webhooks: Default::default(),
            proxy: Default::default(),
            public_url: None,
            system_keys: SystemKeys::default(),
        }
    }
}

/// Configuration could not be loaded; the message names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(String);

impl Config {
    /// Loads configuration from the process environment and `file` (or
    /// `SESAME_CONFIG`) if given.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let file = file.map(Path::to_path_buf).or_else(|| std::env::var_os("SESAME_CONFIG").map(PathBuf::from));
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.is_file() {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            figment = figment.merge(Toml::file(path));
        }
        let system_keys: Vec<&str> = Provider::ALL.iter().map(|&p| crate::providers::spec(p).api_key_env).collect();
        figment = figment
            .merge(Env::raw().only(&["DATABASE_URL", "ENCRYPTION_KEY", "ENCRYPTION_KEYS_OLD"]))
            .merge(Env::raw().only(&system_keys).map(|k| format!("system_keys.{}", k.as_str().to_lowercase()).into()))
            .merge(Env::prefixed("SESAME_").ignore(&["CONFIG", "VAULT_URL", "VAULT_TOKEN"]).split("__"));
        let config: Config = figment.extract().map_err(|e| {
            // figment's message names the key and, for a type mismatch, the
            // value; keep the key and the expectation, drop the value.
            let keys = e.path.join(".");
            let key = if keys.is_empty() { String::from("(root)") } else { keys };
            let what = match &e.kind {
                figment::error::Kind::InvalidType(_, expected) => format!("expected {expected}"),
                figment::error::Kind::InvalidValue(_, expected) => format!("expected {expected}"),
                figment::error::Kind::UnknownField(field, _) => format!("unknown setting `{field}`"),
                other => other.to_string(),
            };
            let source = e.metadata.as_ref().map(|m| format!(" (from {})", m.name)).unwrap_or_default();
            ConfigError(format!("{key}: {what}{source}"))
        })?;
        config.auth.jwt.check().map_err(ConfigError)?;
        if config.graphql.ws_token_recheck < std::time::Duration::from_secs(1) {
            return Err(ConfigError("graphql.ws_token_recheck: expected at least 1s".into()));
        }
        Ok(config)
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(url) if !url.expose().is_empty() => url.expose().to_owned(),
            _ => format!("sqlite://{}?mode=rwc", self.data_dir.join("sesame.db").display()),
        }
    }

    pub fn is_sqlite(&self) -> bool {
        self.database_url().starts_with("sqlite:")
    }
}
