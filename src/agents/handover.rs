//! What a task is handed and hands back, whatever the agent: the issued
//! secret, the environment variables and files a runner sets up, a login
//! file parsed back, and the helpers the agents' files share to write and
//! read those files. Secrets only ever sit in [`Secret`]s; `Debug` output
//! and error messages never contain them.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::credential_input::{InputError, InputResult, Secret, SubscriptionSecret};
use crate::domain::Provider;

/// Every file handed to a task holds a secret: owner read/write only.
pub const FILE_MODE: u32 = 0o600;
/// The largest login file taken back; real ones are a few KiB.
pub const MAX_RETURNED_BYTES: usize = 64 * 1024;

/// A credential being handed to a task.
#[derive(Clone, Copy)]
pub enum IssuedSecret<'a> {
    ApiKey(&'a str),
    Subscription(&'a SubscriptionSecret),
}

impl<'a> IssuedSecret<'a> {
    /// The one token an agent sends: the key, or the subscription's access token.
    pub fn token(self) -> &'a str {
        match self {
            IssuedSecret::ApiKey(key) => key,
            IssuedSecret::Subscription(s) => s.access_token.expose(),
        }
    }
}

impl fmt::Debug for IssuedSecret<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IssuedSecret::ApiKey(_) => f.write_str("ApiKey(***)"),
            // SubscriptionSecret's Debug redacts every token.
            IssuedSecret::Subscription(s) => f.debug_tuple("Subscription").field(s).finish(),
        }
    }
}

/// An environment variable for the task. `Debug` prints the value as `***`.
#[derive(Clone, Debug)]
pub struct EnvOut {
    pub name: String,
    pub value: Secret,
    /// The value is a path relative to the task's home (a file handed over
    /// with it): the runner makes it absolute (`task-env` does).
    pub home_path: bool,
}

/// A file for the task. `Debug` prints the content as `***`.
#[derive(Clone)]
pub struct FileOut {
    /// Relative to the agent's home directory.
    pub path: String,
    pub mode: u32,
    pub content: Secret,
}

impl fmt::Debug for FileOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileOut")
            .field("path", &self.path)
            .field("mode", &format_args!("{:#o}", self.mode))
            .field("content", &self.content)
            .finish()
    }
}

/// Everything a task runner sets up so the agent CLI finds its credential.
#[derive(Clone, Debug, Default)]
pub struct Materialized {
    pub env: Vec<EnvOut>,
    pub files: Vec<FileOut>,
}

impl Materialized {
    /// The value of environment variable `name`, if set.
    pub fn env_var(&self, name: &str) -> Option<&Secret> {
        self.env.iter().find(|e| e.name == name).map(|e| &e.value)
    }

    /// The file at `path` (relative to the agent's home), if written.
    pub fn file(&self, path: &str) -> Option<&FileOut> {
        self.files.iter().find(|f| f.path == path)
    }
}

/// A login file handed back by a task, parsed.
#[derive(Clone, Debug)]
pub struct Returned {
    /// Only what the file carries: OpenCode keeps no id_token, Claude Code no
    /// account id. Use [`Returned::merged_with`] to keep the stored rest.
    pub secret: SubscriptionSecret,
    pub expires_at: Option<DateTime<Utc>>,
    /// When these tokens were minted/refreshed, for "is it newer" checks
    /// (Codex's `last_refresh`; the other files do not record it).
    pub refreshed_at: Option<DateTime<Utc>>,
}

impl Returned {
    /// The returned tokens, with what the file does not carry taken from the
    /// stored secret, so storing it loses nothing (e.g. Codex's id_token after
    /// an OpenCode run).
    pub fn merged_with(&self, stored: &SubscriptionSecret) -> SubscriptionSecret {
        let new = &self.secret;
        SubscriptionSecret {
            access_token: new.access_token.clone(),
            refresh_token: new.refresh_token.clone().or_else(|| stored.refresh_token.clone()),
            id_token: new.id_token.clone().or_else(|| stored.id_token.clone()),
            account_id: new.account_id.clone().or_else(|| stored.account_id.clone()),
            last_refresh: new.last_refresh.or(stored.last_refresh),
            scopes: if new.scopes.is_empty() { stored.scopes.clone() } else { new.scopes.clone() },
        }
    }
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

/// A credential handed over as the provider's one variable: API keys, and
/// pairs the caller should have refused.
pub fn one_env_var(provider: Provider, secret: IssuedSecret<'_>) -> Materialized {
    let spec = crate::providers::spec(provider);
    let name = match secret {
        IssuedSecret::ApiKey(_) => spec.api_key_env,
        IssuedSecret::Subscription(_) => spec.token_env,
    };
    Materialized { env: vec![env(name, secret.token())], files: Vec::new() }
}

pub fn env(name: &str, value: &str) -> EnvOut {
    EnvOut { name: name.to_owned(), value: Secret::new(value.to_owned()), home_path: false }
}

/// A variable naming a file handed over with the task, by its path relative
/// to the task's home.
pub fn env_home_path(name: &str, path: &str) -> EnvOut {
    EnvOut { name: name.to_owned(), value: Secret::new(path.to_owned()), home_path: true }
}

pub fn file(path: &str, content: Secret) -> FileOut {
    FileOut { path: path.to_owned(), mode: FILE_MODE, content }
}

/// Serialises `value` into a buffer sized up front for the `tokens` it holds,
/// so no reallocation leaves stray copies of them in freed memory.
pub fn secret_json<T: Serialize>(value: &T, tokens: &[&str]) -> Secret {
    let size = tokens.iter().map(|t| t.len()).sum::<usize>() + 512;
    let mut buf = Vec::with_capacity(size);
    // Structs with string keys always serialise, and serde_json writes UTF-8.
    serde_json::to_writer(&mut buf, value).expect("credential JSON serialises");
    Secret::new(String::from_utf8(buf).expect("serde_json writes UTF-8"))
}

// ---------------------------------------------------------------------------
// Reading back
// ---------------------------------------------------------------------------

pub fn from_json<T: DeserializeOwned>(content: &str, file: &str) -> InputResult<T> {
    serde_json::from_str(content).map_err(|e| json_error(e, file))
}

/// Syntax errors only say where the JSON broke, so their text is safe to
/// show. Shape errors ("invalid type: string \"…\"") may quote the content,
/// so they get our own wording with the position only.
pub fn json_error(e: serde_json::Error, file: &str) -> InputError {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => InputError::new(format!("{file} is not valid JSON: {e}.")),
        Category::Data | Category::Io => InputError::new(format!(
            "{file} does not have the expected shape (unexpected value at line {} column {}).",
            e.line(),
            e.column()
        )),
    }
}

/// A token that must be there.
pub fn required_token(value: Option<&Secret>, field: &str, file: &str) -> InputResult<Secret> {
    optional_token(value, field, file)?
        .ok_or_else(|| InputError::new(format!("{file} has no {field}; the login in it is incomplete.")))
}

/// A token that may be missing or blank (Codex writes "" for none). Tokens
/// go into HTTP headers, so whitespace or non-ASCII means a damaged file.
pub fn optional_token(value: Option<&Secret>, field: &str, file: &str) -> InputResult<Option<Secret>> {
    let Some(token) = value.map(|v| v.expose().trim()).filter(|t| !t.is_empty()) else {
        return Ok(None);
    };
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InputError::new(format!(
            "{file}: {field} contains spaces, line breaks or other characters no token has."
        )));
    }
    Ok(Some(Secret::new(token.to_owned())))
}

/// Epoch milliseconds as the JS-based CLIs write them; 0 or less means unknown.
pub fn epoch_millis(ms: Option<f64>) -> Option<DateTime<Utc>> {
    let ms = ms.filter(|ms| ms.is_finite() && *ms > 0.0)?;
    // Truncating sub-millisecond fractions is intended.
    DateTime::from_timestamp_millis(ms as i64)
}

/// An account id as a file holds it: trimmed, blank meaning none.
pub fn account_id(value: Option<&str>) -> Option<String> {
    value.map(str::trim).filter(|a| !a.is_empty()).map(str::to_owned)
}
