//! Helpers for the agents' unit tests: sample subscriptions, and readers
//! that check what a materialisation wrote.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::{
    materialize, parse_subscription, returnable_paths, IssuedSecret, Materialized, ParsedSubscription, Returned,
    SubscriptionInput,
};
use crate::credential_input::{InputError, InputResult, Secret, SubscriptionSecret};
use crate::domain::{Agent, Provider};
use crate::providers::samples::*;

/// A subscription save's text fields, owned.
#[derive(Default)]
pub struct SubscriptionSample {
    pub token: Option<String>,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub auth_json: Option<String>,
}

impl SubscriptionSample {
    pub fn token(token: String) -> Self {
        SubscriptionSample { token: Some(token), ..Default::default() }
    }

    pub fn parse(&self, agent: Agent, provider: Provider) -> InputResult<ParsedSubscription> {
        parse_subscription(
            SubscriptionInput {
                agent,
                provider: Some(provider),
                token: self.token.as_deref(),
                access_token: self.access_token.as_deref(),
                refresh_token: self.refresh_token.as_deref(),
                auth_json: self.auth_json.as_deref(),
                expires_at: None,
            },
            now(),
        )
    }
}

/// A save for `agent` with no field given.
pub fn input(agent: Agent) -> SubscriptionInput<'static> {
    SubscriptionInput {
        agent,
        provider: None,
        token: None,
        access_token: None,
        refresh_token: None,
        auth_json: None,
        expires_at: None,
    }
}

/// A Codex save of this auth.json.
pub fn codex(json: &str) -> InputResult<ParsedSubscription> {
    parse_subscription(SubscriptionInput { auth_json: Some(json), ..input(Agent::Codex) }, now())
}

/// A ChatGPT access token, with or without an account id.
pub fn access_jwt(exp: DateTime<Utc>, account: Option<&str>) -> String {
    let mut claims = json!({ "exp": exp.timestamp(), "nonce": MARK });
    if let Some(account) = account {
        claims[OPENAI_AUTH_CLAIM] = json!({ "chatgpt_account_id": account, "chatgpt_plan_type": "pro" });
    }
    jwt(claims)
}

pub fn id_jwt() -> String {
    jwt(json!({ "email": "a@example.com", OPENAI_AUTH_CLAIM: { "chatgpt_account_id": ACCOUNT }, "n": MARK }))
}

pub fn openai_refresh() -> String {
    format!("rt_{MARK}abcdefghijklmnop")
}

pub fn api_key() -> String {
    openai_key()
}

pub fn sub(access: &str) -> SubscriptionSecret {
    SubscriptionSecret::access_only(Secret::new(access.to_owned()))
}

pub fn with_refresh(mut s: SubscriptionSecret, refresh: &str) -> SubscriptionSecret {
    s.refresh_token = Some(Secret::new(refresh.to_owned()));
    s
}

pub fn parse(file: &super::FileOut) -> Value {
    serde_json::from_str(file.content.expose()).expect("materialised file is JSON")
}

pub fn env_names(m: &Materialized) -> Vec<&str> {
    m.env.iter().map(|e| e.name.as_str()).collect()
}

pub fn file_paths(m: &Materialized) -> Vec<&str> {
    m.files.iter().map(|f| f.path.as_str()).collect()
}

/// Asserts the Debug output of `m` shows no secret.
pub fn assert_redacted(m: &Materialized) {
    let debug = format!("{m:?}");
    assert!(!debug.contains(MARK), "Debug leaks a secret: {debug}");
    assert!(debug.contains("0o600") || m.files.is_empty());
}

/// Asserts a refusal of a returned file whose message and Debug leak nothing.
pub fn refused_file(result: Result<Returned, InputError>) -> String {
    let err = result.expect_err("expected a refusal");
    let msg = err.to_string();
    assert!(!msg.contains(MARK), "message leaks a secret: {msg}");
    assert!(!format!("{err:?}").contains(MARK));
    msg
}

pub fn codex_id_from(m: &Materialized) -> String {
    let auth = parse(m.file(super::codex::AUTH_PATH).expect("auth.json"));
    auth["tokens"]["id_token"].as_str().expect("id_token is a string").to_owned()
}

/// Codex's own check: three non-empty parts, the middle an unpadded
/// base64url JSON object.
pub fn assert_codex_jwt(token: &str) -> Map<String, Value> {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "not three parts");
    assert!(parts.iter().all(|p| !p.is_empty()));
    let payload = URL_SAFE_NO_PAD.decode(parts[1]).expect("payload is base64url without padding");
    match serde_json::from_slice(&payload).expect("payload is JSON") {
        Value::Object(map) => map,
        other => panic!("payload is not an object: {other}"),
    }
}

/// Materialises `s`, hands the login file back and parses it.
pub fn round_trip(
    agent: Agent,
    provider: Provider,
    s: &SubscriptionSecret,
    expires: Option<DateTime<Utc>>,
) -> Returned {
    let m = materialize(agent, provider, IssuedSecret::Subscription(s), expires, now());
    let [path] = returnable_paths(agent, provider) else { panic!("one returnable path") };
    let file = m.file(path).expect("the returnable file is materialised");
    super::parse_returned(agent, provider, path, file.content.expose()).expect("own file parses back")
}

pub fn assert_same_tokens(a: &SubscriptionSecret, b: &SubscriptionSecret) {
    assert_eq!(a.access_token, b.access_token);
    assert_eq!(a.refresh_token, b.refresh_token);
    assert_eq!(a.id_token, b.id_token);
}
