//! Configuration: defaults, then an optional TOML file, then environment
//! (`SESAME_<SECTION>__<KEY>`, plus the conventional `DATABASE_URL`,
//! `ENCRYPTION_KEY`, `ENCRYPTION_KEYS_OLD` and the system-wide agent keys).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::domain::Provider;
use crate::providers::{OauthConfig, ProvidersConfig};

/// A configured secret: prints as `***` in Debug and never serialises its value.
#[derive(Clone, Default, Deserialize, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}

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
    /// System-wide agent keys, used when a user has none.
    #[serde(skip_serializing, default)]
    pub system_keys: SystemKeys,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GraphqlConfig {
    pub introspection: bool,
    pub max_depth: usize,
    pub max_complexity: usize,
    pub max_batch: usize,
    pub max_body_bytes: usize,
    /// How long a WebSocket may take to send `connection_init`.
    #[serde(with = "humantime_serde")]
    pub ws_init_timeout: std::time::Duration,
    /// How often an open WebSocket's token is checked again: a revoked
    /// token (or a removed user) ends the session with 4403 within this.
    #[serde(with = "humantime_serde")]
    pub ws_token_recheck: std::time::Duration,
    /// Document limits, checked before a document is parsed or validated
    /// (`crate::graphql::gate`): work that grows with a document is bounded
    /// before it is done. Anonymous callers (introspection only) get the
    /// `*_anonymous` limits.
    pub max_tokens: usize,
    pub max_tokens_anonymous: usize,
    /// Fields after fragment expansion (`__typename` and introspection count).
    pub max_selections: usize,
    pub max_selections_anonymous: usize,
    pub max_aliases: usize,
    pub max_aliases_anonymous: usize,
    /// Fragment spreads written in one document.
    pub max_fragment_spreads: usize,
    /// The last guard: a request still running after this is answered
    /// with an error and its work dropped.
    #[serde(with = "humantime_serde")]
    pub request_timeout: std::time::Duration,
    /// Live subscriptions on one WebSocket.
    pub max_subscriptions_per_socket: usize,
    /// Live subscriptions of one principal over all its sockets.
    pub max_subscriptions_per_principal: usize,
    /// Open WebSockets of one principal.
    pub max_sockets_per_principal: usize,
}

impl Default for GraphqlConfig {
    fn default() -> Self {
        GraphqlConfig {
            introspection: true,
            max_depth: 16,
            max_complexity: 1000,
            max_batch: 10,
            max_body_bytes: 256 * 1024,
            ws_init_timeout: std::time::Duration::from_secs(5),
            ws_token_recheck: std::time::Duration::from_secs(30),
            max_tokens: 10_000,
            max_tokens_anonymous: 2_000,
            max_selections: 2_000,
            max_selections_anonymous: 1_000,
            max_aliases: 100,
            max_aliases_anonymous: 20,
            max_fragment_spreads: 100,
            request_timeout: std::time::Duration::from_secs(30),
            max_subscriptions_per_socket: 100,
            max_subscriptions_per_principal: 200,
            max_sockets_per_principal: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TasksConfig {
    /// How long a task holds the credentials it was issued: it may return
    /// refreshed files until then, and the scheduler does not refresh them
    /// behind its back. Durations like `90s`, `30m`, `2h`.
    #[serde(with = "humantime_serde")]
    pub lease: std::time::Duration,
}

impl Default for TasksConfig {
    fn default() -> Self {
        TasksConfig { lease: std::time::Duration::from_secs(2 * 3600) }
    }
}

/// Background jobs: 6-field cron expressions in UTC (seconds first); an
/// empty string disables a job.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SchedulerConfig {
    pub expiry_scan: String,
    pub refresh: String,
    pub housekeeping: String,
    /// Re-checks credentials with their provider (see `[checks]`).
    pub checks: String,
    /// Credentials expiring within this become EXPIRING.
    #[serde(with = "humantime_serde")]
    pub expiring_within: std::time::Duration,
    /// Refreshable credentials are refreshed this long before expiry.
    #[serde(with = "humantime_serde")]
    pub refresh_before: std::time::Duration,
    /// Finished sign-in flows are deleted after this.
    #[serde(with = "humantime_serde")]
    pub flow_retention: std::time::Duration,
    /// Delivered credential events are deleted after this.
    #[serde(with = "humantime_serde")]
    pub event_retention: std::time::Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        SchedulerConfig {
            expiry_scan: "0 */5 * * * *".into(),
            refresh: "30 * * * * *".into(),
            housekeeping: "0 17 3 * * *".into(),
            checks: "0 */10 * * * *".into(),
            expiring_within: std::time::Duration::from_secs(7 * DAY),
            refresh_before: std::time::Duration::from_secs(600),
            flow_retention: std::time::Duration::from_secs(7 * DAY),
            event_retention: std::time::Duration::from_secs(30 * DAY),
        }
    }
}

/// The administrator's default keys, from the environment variables the
/// agents themselves read (each provider's `api_key_env`), keyed by
/// provider. As settings they are named after the variable in lower case
/// (`system_keys.anthropic_api_key`).
#[derive(Debug, Clone, Default)]
pub struct SystemKeys(BTreeMap<Provider, SecretValue>);

impl SystemKeys {
    pub fn get(&self, provider: Provider) -> Option<&SecretValue> {
        self.0.get(&provider).filter(|v| !v.expose().trim().is_empty())
    }

    /// Start-up (`serve`, before it binds): each key set must pass the
    /// checks a person's key passes in `setApiKey` (a classic `ghp_` token
    /// for Copilot, an Anthropic key without `sk-ant-api03-`, spaces inside,
    /// too short, …); it is kept as that parse cleaned it (trimmed). The
    /// error names the variable and the rule, never the value. An empty
    /// variable counts as unset.
    pub fn check(&mut self) -> Result<(), ConfigError> {
        for (&provider, value) in self.0.iter_mut() {
            if value.expose().trim().is_empty() {
                continue;
            }
            let var = provider.system_env_var();
            match crate::providers::ApiKey::parse(provider, value.expose()) {
                Ok(key) => *value = SecretValue::new(key.secret().expose()),
                Err(refused) => {
                    return Err(ConfigError(format!(
                        "{var} (the system-wide {} key) is not a valid key, so the server did not start: {} \
                         Fix or unset {var} and start again.",
                        provider.display_name(),
                        refused.0
                    )))
                }
            }
        }
        Ok(())
    }

    /// The setting a provider's key is read from.
    fn setting(provider: Provider) -> String {
        provider.system_env_var().to_lowercase()
    }
}

impl<'de> Deserialize<'de> for SystemKeys {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let named = BTreeMap::<String, SecretValue>::deserialize(deserializer)?;
        let mut keys = BTreeMap::new();
        for (name, value) in named {
            let Some(&provider) = Provider::ALL.iter().find(|&&p| SystemKeys::setting(p) == name) else {
                let accepted: Vec<String> = Provider::ALL.iter().map(|&p| SystemKeys::setting(p)).collect();
                return Err(serde::de::Error::custom(format!(
                    "unknown field `{name}`, expected one of {}",
                    accepted.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", ")
                )));
            };
            keys.insert(provider, value);
        }
        Ok(SystemKeys(keys))
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
        let system_keys: Vec<&str> = Provider::ALL.iter().map(|p| p.system_env_var()).collect();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(Provider, &str)]) -> SystemKeys {
        SystemKeys(pairs.iter().map(|(p, v)| (*p, SecretValue::new(*v))).collect())
    }

    #[test]
    fn system_keys_pass_the_checks_a_persons_key_passes() {
        let secret = "MARKmarkMARKmarkMARKmark";
        let refused = [
            (Provider::Github, format!("ghp_{secret}")),
            (Provider::Anthropic, format!("sk-wrong-{secret}")),
            (Provider::Openai, format!("sk-{secret} {secret}")),
            (Provider::Google, format!("AIza{secret}")),
        ];
        for (provider, value) in refused {
            let err = keys(&[(provider, &value)]).check().unwrap_err().to_string();
            assert!(err.contains(provider.system_env_var()), "{err}");
            assert!(!err.contains(secret), "{err}");
        }
        let err = keys(&[(Provider::Github, &format!("ghp_{secret}"))]).check().unwrap_err().to_string();
        assert!(err.contains("Classic GitHub tokens"), "{err}");

        let mut fine = keys(&[(Provider::Anthropic, &format!(" sk-ant-api03-{secret}\n")), (Provider::Google, "  ")]);
        fine.check().unwrap();
        assert_eq!(fine.get(Provider::Anthropic).unwrap().expose(), format!("sk-ant-api03-{secret}"));
        assert!(fine.get(Provider::Google).is_none());
    }

    #[test]
    fn an_unknown_system_key_setting_names_the_accepted_ones() {
        let err = serde_json::from_value::<SystemKeys>(serde_json::json!({ "antropic_api_key": "x" }))
            .unwrap_err()
            .to_string();
        assert!(err.contains("`antropic_api_key`") && err.contains("`anthropic_api_key`"), "{err}");
        assert!(err.contains("`copilot_github_token`"), "{err}");
    }
}
