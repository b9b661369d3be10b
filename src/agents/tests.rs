use chrono::Duration;
use serde_json::json;

use super::*;
use crate::agents::claude_code::{CREDENTIALS_PATH as CLAUDE_CREDENTIALS_PATH, STATE_PATH as CLAUDE_STATE_PATH};
use crate::agents::codex::AUTH_PATH as CODEX_AUTH_PATH;
use crate::agents::handover::MAX_RETURNED_BYTES;
use crate::agents::opencode::AUTH_PATH as OPENCODE_AUTH_PATH;
use crate::agents::samples::*;
use crate::credential_input::Secret;
use crate::domain::AuthMethod;
use crate::providers::samples::*;
use crate::providers::{anthropic, ApiKey};

const CLAUDE_OAUTH_ENV: &str = anthropic::SUBSCRIPTION_ENV;

/// Every registered agent, from the registry alone: its catalog entry, an
/// API key and a subscription save for each method it lists, what a task
/// is handed for each, and every login file it may hand back, parsed back.
/// An agent missing one of these pieces fails here.
#[test]
fn every_registered_agent_saves_issues_and_takes_back() {
    let mut seen = Vec::new();
    for agent in registered() {
        let id = agent.agent;
        assert!(!seen.contains(&id), "{id} registered twice");
        seen.push(id);
        assert_eq!(spec(id).name, agent.name);

        let entry = catalog::entry(id);
        assert_eq!(entry.agent, id);
        assert!(!entry.methods.is_empty(), "{id}: no methods in the catalog");
        assert!(!agent.providers.is_empty(), "{id}: no providers");
        assert_eq!(agent.handling.subscription_refusal().is_none(), entry.takes_subscriptions(), "{id}");

        for m in entry.methods {
            assert!(agent.providers.contains(&m.provider), "{id}: method for a foreign provider");
            let provider = m.provider;
            if m.method == AuthMethod::ApiKey {
                let key = match provider {
                    Provider::Anthropic => anthropic_key(),
                    Provider::Openai => openai_key(),
                    Provider::Google => google_key(),
                    Provider::Github => github_pat(),
                };
                let key = ApiKey::parse(provider, &key).expect("sample key parses");
                let m = materialize(id, provider, IssuedSecret::ApiKey(key.secret().expose()), None, now());
                assert!(!m.env.is_empty() || !m.files.is_empty(), "{id}: nothing issued for an API key");
                assert_redacted(&m);
                continue;
            }

            let sample = agent
                .handling
                .sample_subscription(provider)
                .unwrap_or_else(|| panic!("{id}: no sample subscription for {provider}"));
            let parsed = sample.parse(id, provider).unwrap_or_else(|e| panic!("{id}: sample refused: {e}"));
            assert_eq!(parsed.provider, provider);

            let issued =
                materialize(id, provider, IssuedSecret::Subscription(&parsed.secret), parsed.expires_at, now());
            assert!(!issued.env.is_empty() || !issued.files.is_empty(), "{id}: nothing issued");
            for f in &issued.files {
                assert_eq!(f.mode, 0o600);
                assert!(!f.path.starts_with('/') && !f.path.contains(".."));
            }
            assert_redacted(&issued);

            let paths = returnable_paths(id, provider);
            for path in paths {
                let file = issued.file(path).unwrap_or_else(|| panic!("{id}: {path} is returnable but not issued"));
                let back = parse_returned(id, provider, path, file.content.expose())
                    .unwrap_or_else(|e| panic!("{id}: own {path} does not parse back: {e}"));
                assert_same_tokens(&back.secret, &parsed.secret);
            }
            if paths.is_empty() {
                assert!(parse_returned(id, provider, "x.json", "{}").is_err());
            }
            for path in agent.handling.handed_out_only() {
                assert!(is_handed_out_only(path) && !paths.contains(path));
            }
        }
    }
    let mut all = Agent::ALL.to_vec();
    all.sort();
    seen.sort();
    assert_eq!(seen, all, "every Agent value is registered");
}

// ---- Subscriptions: provider choice -----------------------------------------

#[test]
fn provider_must_belong_to_agent() {
    let t = claude_token();
    let msg = refused(
        parse_subscription(
            SubscriptionInput { provider: Some(Provider::Openai), token: Some(&t), ..input(Agent::ClaudeCode) },
            now(),
        ),
        &t,
    );
    assert!(msg.contains("ANTHROPIC"), "{msg}");

    let msg = refused(
        parse_subscription(
            SubscriptionInput { provider: Some(Provider::Github), token: Some(&t), ..input(Agent::Opencode) },
            now(),
        ),
        &t,
    );
    assert!(msg.contains("ANTHROPIC or OPENAI"), "{msg}");

    let msg = refused(parse_subscription(SubscriptionInput { token: Some(&t), ..input(Agent::Opencode) }, now()), &t);
    assert_eq!(msg, "OpenCode needs a provider: ANTHROPIC or OPENAI.");
}

#[test]
fn explicit_provider_matching_default_is_fine() {
    let t = claude_token();
    let parsed = parse_subscription(
        SubscriptionInput { provider: Some(Provider::Anthropic), token: Some(&t), ..input(Agent::ClaudeCode) },
        now(),
    )
    .unwrap();
    assert_eq!(parsed.provider, Provider::Anthropic);
}

#[test]
fn past_expiry_is_refused() {
    let t = claude_token();
    for at in [now() - Duration::seconds(1), now()] {
        let msg = refused(
            parse_subscription(
                SubscriptionInput { token: Some(&t), expires_at: Some(at), ..input(Agent::ClaudeCode) },
                now(),
            ),
            &t,
        );
        assert!(msg.contains("expiresAt is in the past"), "{msg}");
        assert!(msg.contains("create a new one"), "{msg}");
    }
}

#[test]
fn subscription_input_debug_is_redacted() {
    let t = claude_token();
    let debug = format!("{:?}", SubscriptionInput { token: Some(&t), auth_json: Some(&t), ..input(Agent::ClaudeCode) });
    assert!(!debug.contains(MARK), "{debug}");
    assert!(debug.contains("CLAUDE_CODE") || debug.contains("ClaudeCode"), "{debug}");
}

// ---- Issuance and login files, any agent ---------------------------------------

#[test]
fn mismatched_pairs_fall_back_to_the_providers_variable() {
    let m = materialize(Agent::Codex, Provider::Anthropic, IssuedSecret::ApiKey(&api_key()), None, now());
    assert_eq!(env_names(&m), ["ANTHROPIC_API_KEY"]);
    assert!(m.files.is_empty());
    let s = sub(&claude_token());
    let m = materialize(Agent::Copilot, Provider::Anthropic, IssuedSecret::Subscription(&s), None, now());
    assert_eq!(env_names(&m), [CLAUDE_OAUTH_ENV]);
    let m = materialize(Agent::Opencode, Provider::Github, IssuedSecret::ApiKey(&api_key()), None, now());
    assert_eq!(env_names(&m), ["COPILOT_GITHUB_TOKEN"]);
}

#[test]
fn every_combination_is_safe() {
    let access = access_jwt(now() + Duration::days(1), None);
    let key = api_key();
    let subs = [sub(&access), sub(&claude_token()), sub(&format!("opaque-{MARK}"))];
    for &agent in Agent::ALL {
        for &provider in Provider::ALL {
            let secrets = subs.iter().map(IssuedSecret::Subscription).chain([IssuedSecret::ApiKey(&key)]);
            for secret in secrets {
                let m = materialize(agent, provider, secret, None, now());
                assert!(!m.env.is_empty() || !m.files.is_empty(), "{agent} {provider}: nothing issued");
                for f in &m.files {
                    assert_eq!(f.mode, 0o600);
                    assert!(!f.path.starts_with('/') && !f.path.contains(".."));
                    parse(f);
                }
                if provider == Provider::Anthropic && matches!(secret, IssuedSecret::Subscription(_)) {
                    assert!(m.env_var("ANTHROPIC_API_KEY").is_none(), "{agent}: subscription as API key");
                }
                if m.file(CODEX_AUTH_PATH).is_some() {
                    assert_codex_jwt(&codex_id_from(&m));
                }
                assert_redacted(&m);
            }
        }
    }
}

#[test]
fn debug_never_shows_secrets() {
    let key = api_key();
    let s = with_refresh(sub(&claude_token()), &claude_refresh());
    assert_eq!(format!("{:?}", IssuedSecret::ApiKey(&key)), "ApiKey(***)");
    assert!(!format!("{:?}", IssuedSecret::Subscription(&s)).contains(MARK));
    let returned = Returned { secret: s, expires_at: None, refreshed_at: None };
    assert!(!format!("{returned:?}").contains(MARK));
}

#[test]
fn returnable_paths_per_agent() {
    assert_eq!(returnable_paths(Agent::ClaudeCode, Provider::Anthropic), [CLAUDE_CREDENTIALS_PATH]);
    assert_eq!(returnable_paths(Agent::Codex, Provider::Openai), [CODEX_AUTH_PATH]);
    assert_eq!(returnable_paths(Agent::Opencode, Provider::Openai), [OPENCODE_AUTH_PATH]);
    assert_eq!(returnable_paths(Agent::Opencode, Provider::Anthropic), [OPENCODE_AUTH_PATH]);
    assert!(returnable_paths(Agent::Copilot, Provider::Github).is_empty());
    assert!(returnable_paths(Agent::Gemini, Provider::Google).is_empty());
    assert!(returnable_paths(Agent::Codex, Provider::Anthropic).is_empty());
}

#[test]
fn merged_keeps_what_the_file_lacks() {
    let mut stored = with_refresh(sub("old-access-token-value"), &openai_refresh());
    stored.id_token = Some(Secret::new(id_jwt()));
    stored.account_id = Some(ACCOUNT.into());
    stored.scopes = vec!["openid".into()];
    let returned = Returned { secret: sub(&claude_token()), expires_at: None, refreshed_at: None };
    let merged = returned.merged_with(&stored);
    assert_eq!(merged.access_token.expose(), claude_token());
    assert_eq!(merged.refresh_token, stored.refresh_token);
    assert_eq!(merged.id_token, stored.id_token);
    assert_eq!(merged.account_id, stored.account_id);
    assert_eq!(merged.scopes, stored.scopes);
}

#[test]
fn refusals_name_the_file_and_leak_nothing() {
    let access = access_jwt(now() + Duration::days(1), None);
    let (c, o) = (Agent::Codex, Provider::Openai);

    let msg = refused_file(parse_returned(c, o, CLAUDE_CREDENTIALS_PATH, "{}"));
    assert!(msg.contains(CODEX_AUTH_PATH) && msg.contains(CLAUDE_CREDENTIALS_PATH), "{msg}");
    let msg = refused_file(parse_returned(Agent::ClaudeCode, Provider::Anthropic, CLAUDE_STATE_PATH, "{}"));
    assert!(msg.contains("only .claude/.credentials.json"), "{msg}");
    let msg = refused_file(parse_returned(Agent::Copilot, Provider::Github, CODEX_AUTH_PATH, "{}"));
    assert!(msg.contains("no login file"), "{msg}");

    let broken = format!(r#"{{"tokens":{{"access_token":"{access}""#);
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &broken));
    assert!(msg.contains("not valid JSON") && msg.contains("line 1 column"), "{msg}");

    // A wrong type must not quote the value, as serde_json's message would.
    let wrong_type = json!({ "tokens": { "access_token": access, "account_id": 7 }, "x": MARK }).to_string();
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &wrong_type));
    assert!(msg.contains("expected shape") && msg.contains(CODEX_AUTH_PATH), "{msg}");
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &json!(MARK).to_string()));
    assert!(msg.contains("expected shape"), "{msg}");

    let huge = format!(r#"{{"pad":"{}{MARK}"}}"#, "x".repeat(MAX_RETURNED_BYTES));
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &huge));
    assert!(msg.contains("64 KiB"), "{msg}");

    let no_access = json!({ "tokens": { "id_token": id_jwt(), "refresh_token": openai_refresh() } }).to_string();
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &no_access));
    assert!(msg.contains("tokens.access_token") && msg.contains(CODEX_AUTH_PATH), "{msg}");
    let blank_access = json!({ "tokens": { "access_token": "  ", "refresh_token": openai_refresh() } }).to_string();
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &blank_access));
    assert!(msg.contains("tokens.access_token"), "{msg}");

    let bad_id = json!({ "tokens": { "access_token": access, "id_token": format!("x{MARK}") } }).to_string();
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &bad_id));
    assert!(msg.contains("not a JWT"), "{msg}");

    let spaced = json!({ "tokens": { "access_token": format!("ab {MARK} cd") } }).to_string();
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &spaced));
    assert!(msg.contains("spaces"), "{msg}");

    let api = json!({ "auth_mode": "apikey", "OPENAI_API_KEY": api_key() }).to_string();
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &api));
    assert!(msg.contains("API key"), "{msg}");
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, r#"{"OPENAI_API_KEY":null}"#));
    assert!(msg.contains("no tokens"), "{msg}");

    let bad_date = json!({ "tokens": { "access_token": access }, "last_refresh": "yesterday" }).to_string();
    let msg = refused_file(parse_returned(c, o, CODEX_AUTH_PATH, &bad_date));
    assert!(msg.contains("last_refresh"), "{msg}");

    let msg = refused_file(parse_returned(Agent::ClaudeCode, Provider::Anthropic, CLAUDE_CREDENTIALS_PATH, "{}"));
    assert!(msg.contains("claudeAiOauth") && msg.contains(CLAUDE_CREDENTIALS_PATH), "{msg}");
    let no_claude_access = json!({ "claudeAiOauth": { "refreshToken": claude_refresh() } }).to_string();
    let msg = refused_file(parse_returned(
        Agent::ClaudeCode,
        Provider::Anthropic,
        CLAUDE_CREDENTIALS_PATH,
        &no_claude_access,
    ));
    assert!(msg.contains("claudeAiOauth.accessToken"), "{msg}");

    let (oc, path) = (Agent::Opencode, OPENCODE_AUTH_PATH);
    let msg = refused_file(parse_returned(oc, o, path, &json!({ "anthropic": { "type": "oauth" } }).to_string()));
    assert!(msg.contains("no \"openai\" entry"), "{msg}");
    let msg = refused_file(parse_returned(oc, o, path, &json!({ "openai": { "type": "oauth" } }).to_string()));
    assert!(msg.contains("openai.access"), "{msg}");
    let msg = refused_file(parse_returned(oc, o, path, &json!({ "openai": { "type": MARK } }).to_string()));
    assert!(msg.contains("oauth"), "{msg}");
    let msg = refused_file(parse_returned(oc, o, path, &format!("{{}} {MARK}")));
    assert!(msg.contains("not valid JSON"), "{msg}");
}

#[test]
fn api_keys_serving_one_agent_only() {
    assert!(api_key_serves_only(Provider::Github, Agent::Copilot));
    for agent in [Agent::ClaudeCode, Agent::Opencode, Agent::Aider, Agent::Crush] {
        assert!(!api_key_serves_only(Provider::Anthropic, agent));
    }
    for agent in [Agent::Codex, Agent::Opencode, Agent::Aider, Agent::Crush] {
        assert!(!api_key_serves_only(Provider::Openai, agent));
    }
    // Aider and Crush read GEMINI_API_KEY too: the Google key is not Gemini's alone.
    for agent in [Agent::Gemini, Agent::Aider, Agent::Crush] {
        assert!(!api_key_serves_only(Provider::Google, agent));
    }
    assert!(!api_key_serves_only(Provider::Github, Agent::Gemini));
}

/// An agent that takes API keys only (Gemini, Aider, Crush) refuses a
/// subscription for each of its providers with its own reason, has an API
/// key method for each, and shows a note on its card saying so.
#[test]
fn api_key_only_agents_refuse_subscriptions_for_every_provider() {
    let mut api_key_only = Vec::new();
    for agent in registered() {
        let Some(refusal) = agent.handling.subscription_refusal() else { continue };
        api_key_only.push(agent.agent);
        assert!(agent.note.is_some(), "{}: no note says it takes API keys only", agent.agent);
        assert!(catalog::entry(agent.agent).subscription_plans().is_empty());
        for &provider in agent.providers {
            assert!(
                catalog::find_method(agent.agent, provider, AuthMethod::ApiKey).is_some(),
                "{}: no API key method for {provider}",
                agent.agent
            );
            let t = claude_token();
            let msg = refused(
                parse_subscription(
                    SubscriptionInput { provider: Some(provider), token: Some(&t), ..input(agent.agent) },
                    now(),
                ),
                &t,
            );
            assert_eq!(msg, refusal);
        }
    }
    assert_eq!(api_key_only, [Agent::Gemini, Agent::Aider, Agent::Crush]);
}
