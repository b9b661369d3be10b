//! OpenCode: API keys or subscriptions from Anthropic and OpenAI, all
//! kept in one file, `auth.json`, with an entry per provider; OAuth logins
//! come back in it refreshed.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::de::{DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use super::catalog::{MethodInfo, Paste};
use super::handover::{epoch_millis, file, json_error, one_env_var, optional_token, required_token};
use super::handover::{secret_json, EnvOut};
use super::{codex, AgentSpec, Handling, Issue, IssuedSecret, Materialized, ProxyFacts, Returned, Save, Saved};
use crate::credential_input::{InputError, InputResult, Secret, SubscriptionSecret};
use crate::domain::{Agent, AuthMethod, Provider};
use crate::providers::{anthropic, jwt, openai};

/// OpenCode's logins (`$XDG_DATA_HOME/opencode/auth.json`), relative to the
/// agent's home.
pub const AUTH_PATH: &str = ".local/share/opencode/auth.json";
/// The variable OpenCode reads its logins from instead of the file.
const AUTH_ENV: &str = "OPENCODE_AUTH_CONTENT";

pub static SPEC: AgentSpec = AgentSpec {
    agent: Agent::Opencode,
    name: "OpenCode",
    providers: &[Provider::Anthropic, Provider::Openai],
    methods: METHODS,
    note: None,
    handling: &Opencode,
};

pub struct Opencode;

/// OpenCode's id for a provider: its entry's key in auth.json.
fn login_id(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::Anthropic => Some("anthropic"),
        Provider::Openai => Some("openai"),
        _ => None,
    }
}

impl Handling for Opencode {
    /// Node; the models list from models.opencode.ai is not fetched.
    fn proxy(&self) -> ProxyFacts {
        ProxyFacts { ca_vars: &["NODE_EXTRA_CA_CERTS"], quiet: &[("OPENCODE_DISABLE_MODELS_FETCH", "1")] }
    }

    /// With Anthropic, Claude's rules; with OpenAI, the ChatGPT login Codex takes.
    fn parse_subscription(&self, save: &Save<'_>) -> InputResult<Saved> {
        match save.provider {
            Provider::Openai => codex::parse_chatgpt_login(save),
            _ => anthropic::parse_pasted(super::spec(save.agent).name, &save.fields, save.expires_at, save.now),
        }
    }

    fn materialize(&self, issue: Issue<'_>) -> Materialized {
        match login_id(issue.provider) {
            Some(id) => logins(id, issue.secret, issue.expires_at),
            None => one_env_var(issue.provider, issue.secret),
        }
    }

    fn returnable_paths(&self, provider: Provider) -> &'static [&'static str] {
        match login_id(provider) {
            Some(_) => &[AUTH_PATH],
            None => &[],
        }
    }

    fn parse_returned(&self, provider: Provider, content: &str) -> InputResult<Returned> {
        let id = login_id(provider).expect("returnable_paths has a path for this provider only with an id");
        parse_logins(id, content)
    }

    #[cfg(test)]
    fn sample_subscription(&self, provider: Provider) -> Option<super::samples::SubscriptionSample> {
        use crate::providers::samples::*;
        let sample = match provider {
            Provider::Anthropic => super::samples::SubscriptionSample::token(claude_token()),
            Provider::Openai => super::samples::SubscriptionSample {
                access_token: Some(codex_access(now() + chrono::Duration::hours(1))),
                refresh_token: Some(refresh_rt()),
                ..Default::default()
            },
            _ => return None,
        };
        Some(sample)
    }
}

const METHODS: &[MethodInfo] = &[
    MethodInfo {
        provider: Provider::Anthropic,
        method: AuthMethod::ApiKey,
        label: "API key",
        paste: None,
        env_var: Some("ANTHROPIC_API_KEY"),
        token_prefixes: &[anthropic::API_KEY_PREFIX],
        instructions: concat!(
            "OpenCode has its own provider management and can use an Anthropic API key ",
            "(starts with sk-ant-api03-).\n",
            "1. Select OpenCode as the agent when creating a task.\n",
            "2. Click Manage Providers next to the model dropdown.\n",
            "3. Click Connect on Anthropic.\n",
            "4. Choose Use API Key and enter the key.\n",
            "An Anthropic key saved in Settings → API Keys serves OpenCode too.",
        ),
    },
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::ApiKey,
        label: "API key",
        paste: None,
        env_var: Some("OPENAI_API_KEY"),
        token_prefixes: &[openai::API_KEY_PREFIX],
        instructions: concat!(
            "OpenCode has its own provider management and can use an OpenAI API key ",
            "(starts with sk-).\n",
            "1. Select OpenCode as the agent when creating a task.\n",
            "2. Click Manage Providers next to the model dropdown.\n",
            "3. Click Connect on OpenAI.\n",
            "4. Choose Use API Key and enter the key.\n",
            "An OpenAI key saved in Settings → API Keys serves OpenCode too.",
        ),
    },
    MethodInfo {
        provider: Provider::Anthropic,
        method: AuthMethod::AuthorizationCode,
        label: "Sign in with Claude",
        paste: None,
        env_var: Some(AUTH_ENV),
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: Claude Max ($200/mo), Claude Pro ($20/mo).\n",
            "1. Select OpenCode as the agent when creating a task.\n",
            "2. Click Manage Providers next to the model dropdown.\n",
            "3. Click Connect on Anthropic and choose Use Subscription.\n",
            "4. Anthropic (code flow): visit the URL, copy the code, paste it back in Sesame.",
        ),
    },
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::DeviceCode,
        label: "Sign in with ChatGPT",
        paste: None,
        env_var: Some(AUTH_ENV),
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: ChatGPT Plus ($20/mo), ChatGPT Pro ($200/mo).\n",
            "1. Select OpenCode as the agent when creating a task.\n",
            "2. Click Manage Providers next to the model dropdown.\n",
            "3. Click Connect on OpenAI and choose Use Subscription.\n",
            "4. OpenAI (device code flow): visit the URL, enter the device code, ",
            "and wait for auto-completion.",
        ),
    },
    MethodInfo {
        provider: Provider::Openai,
        method: AuthMethod::PasteToken,
        label: "auth.json or access token",
        paste: Some(Paste {
            token_label: "Access token",
            auth_file: Some("~/.codex/auth.json"),
            accepts_refresh_token: true,
        }),
        env_var: Some(AUTH_ENV),
        token_prefixes: &[],
        instructions: concat!(
            "Supported subscriptions: ChatGPT Plus ($20/mo), ChatGPT Pro ($200/mo).\n",
            "1. Sign in to ChatGPT from a terminal, e.g. run: codex login --device-auth\n",
            "2. Copy the access token and the refresh token (in ~/.codex/auth.json, ",
            "or paste that whole file).\n",
            "3. In Agent Credentials → OpenCode, choose provider OpenAI and paste them.\n",
            "4. Click Save Credentials.",
        ),
    },
];

// ---------------------------------------------------------------------------
// Materialisation
// ---------------------------------------------------------------------------

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum EntryOut<'a> {
    Oauth {
        refresh: &'a str,
        access: &'a str,
        /// Epoch milliseconds; 0 (already due) when unknown.
        expires: i64,
        #[serde(rename = "accountId", skip_serializing_if = "Option::is_none")]
        account_id: Option<&'a str>,
    },
    Api {
        key: &'a str,
    },
}

fn logins(id: &str, secret: IssuedSecret<'_>, expires_at: Option<DateTime<Utc>>) -> Materialized {
    let content = match secret {
        IssuedSecret::ApiKey(key) => secret_json(&BTreeMap::from([(id, EntryOut::Api { key })]), &[key]),
        IssuedSecret::Subscription(s) => {
            let access = s.access_token.expose();
            let refresh = s.refresh_token.as_ref().map_or("", Secret::expose);
            // ChatGPT's account id only: the Claude account recorded beside
            // an Anthropic login is the vault's, not OpenCode's.
            let account_id =
                (id == "openai").then(|| s.account_id.clone().or_else(|| openai::account_id(access))).flatten();
            let entry = EntryOut::Oauth {
                refresh,
                access,
                expires: expires_at.or_else(|| jwt::expiry(access)).map_or(0, |at| at.timestamp_millis()),
                account_id: account_id.as_deref(),
            };
            secret_json(&BTreeMap::from([(id, entry)]), &[access, refresh])
        }
    };
    // While OPENCODE_AUTH_CONTENT is set, OpenCode reads only the variable
    // but writes refreshed tokens to the file: it would then reuse a spent
    // single-use refresh token. OAuth logins therefore go in the file
    // alone; an API key (nothing to refresh) goes in both.
    let env = match secret {
        IssuedSecret::ApiKey(_) => vec![EnvOut { name: AUTH_ENV.to_owned(), value: content.clone(), home_path: false }],
        IssuedSecret::Subscription(_) => Vec::new(),
    };
    Materialized { env, files: vec![file(AUTH_PATH, content)] }
}

// ---------------------------------------------------------------------------
// The login file handed back
// ---------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EntryIn {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    access: Option<Secret>,
    #[serde(default)]
    refresh: Option<Secret>,
    #[serde(default)]
    expires: Option<f64>,
    #[serde(default)]
    account_id: Option<String>,
}

fn parse_logins(id: &str, content: &str) -> InputResult<Returned> {
    const FILE: &str = AUTH_PATH;
    let mut de = serde_json::Deserializer::from_str(content);
    let entry = EntryFor(id).deserialize(&mut de).and_then(|entry| de.end().map(|()| entry));
    let Some(entry) = entry.map_err(|e| json_error(e, FILE))? else {
        return Err(InputError::new(format!("{FILE} has no \"{id}\" entry; OpenCode is not logged in to it.")));
    };
    match entry.kind.as_deref() {
        Some("oauth") => {}
        Some("api") => {
            return Err(InputError::new(format!(
                "{FILE}: the \"{id}\" entry holds an API key, not a subscription login."
            )))
        }
        _ => return Err(InputError::new(format!("{FILE}: the \"{id}\" entry is not of type \"oauth\"."))),
    }
    let access_token = required_token(entry.access.as_ref(), &format!("{id}.access"), FILE)?;
    let mut secret = SubscriptionSecret::access_only(access_token);
    secret.refresh_token = optional_token(entry.refresh.as_ref(), &format!("{id}.refresh"), FILE)?;
    // The account comes from the tokens (ChatGPT's JWT; Anthropic's profile,
    // asked by the store), never from the file's word alone.
    secret.account_id = match id {
        "openai" => codex::returned_account(&secret.access_token, None, entry.account_id.as_deref(), FILE)?,
        _ => None,
    };
    Ok(Returned { secret, expires_at: epoch_millis(entry.expires), refreshed_at: None })
}

/// Reads only the entry for one provider id out of OpenCode's auth.json;
/// the other providers' entries are skipped unparsed, as their shapes are
/// not ours to judge and their secrets need not be copied.
struct EntryFor<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for EntryFor<'_> {
    type Value = Option<EntryIn>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EntryFor<'_> {
    type Value = Option<EntryIn>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object keyed by provider id")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == self.0 {
                found = Some(map.next_value()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

#[cfg(test)]
mod tests;
