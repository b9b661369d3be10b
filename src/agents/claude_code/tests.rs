use chrono::Duration;
use serde_json::json;

use super::*;
use crate::agents::catalog::{entry, find_method};
use crate::agents::samples::*;
use crate::agents::{materialize, parse_subscription, SubscriptionInput};
use crate::credential_input::WHITESPACE_REFUSAL;
use crate::providers::samples::*;

// ---- Catalog ----------------------------------------------------------------

#[test]
fn claude_code_methods() {
    let e = entry(Agent::ClaudeCode);
    let api = find_method(Agent::ClaudeCode, Provider::Anthropic, AuthMethod::ApiKey).unwrap();
    assert_eq!(api.env_var, Some("ANTHROPIC_API_KEY"));
    assert_eq!(api.token_prefixes, &["sk-ant-api03-"]);
    assert!(api.instructions.contains("API Keys"));

    let paste = find_method(Agent::ClaudeCode, Provider::Anthropic, AuthMethod::PasteToken).unwrap();
    assert_eq!(paste.env_var, Some("CLAUDE_CODE_OAUTH_TOKEN"));
    assert_eq!(paste.token_prefixes, &["sk-ant-oat01-"]);
    for needle in ["claude setup-token", "sk-ant-oat01-", "Save Credentials", "Claude Max"] {
        assert!(paste.instructions.contains(needle), "missing {needle}");
    }

    let code = find_method(Agent::ClaudeCode, Provider::Anthropic, AuthMethod::AuthorizationCode).unwrap();
    assert_eq!(code.env_var, Some("CLAUDE_CODE_OAUTH_TOKEN"));
    assert!(code.token_prefixes.is_empty());
    assert_eq!(e.methods.len(), 3);
    assert!(find_method(Agent::ClaudeCode, Provider::Anthropic, AuthMethod::DeviceCode).is_none());
}

// ---- Subscription saves -------------------------------------------------------

#[test]
fn claude_setup_token_accepted_with_one_year_expiry() {
    let t = claude_token();
    let parsed =
        parse_subscription(SubscriptionInput { token: Some(&format!(" {t}\n")), ..input(Agent::ClaudeCode) }, now())
            .unwrap();
    assert_eq!(parsed.provider, Provider::Anthropic);
    assert_eq!(parsed.secret.access_token.expose(), t);
    assert!(parsed.secret.refresh_token.is_none());
    assert_eq!(parsed.secret.scopes, vec!["user:inference".to_owned()]);
    assert_eq!(parsed.expires_at, Some(now() + Duration::days(365)));
}

#[test]
fn claude_explicit_expiry_and_refresh_token() {
    let t = claude_token();
    let r = claude_refresh();
    let at = now() + Duration::hours(8);
    let parsed = parse_subscription(
        SubscriptionInput {
            access_token: Some(&t),
            refresh_token: Some(&r),
            expires_at: Some(at),
            ..input(Agent::ClaudeCode)
        },
        now(),
    )
    .unwrap();
    assert_eq!(parsed.expires_at, Some(at));
    assert_eq!(parsed.secret.refresh_token.as_ref().unwrap().expose(), r);

    // A refresh token without an expiry: the access token's life is
    // unknown, so assume an hour and let the refresher renew it.
    let parsed = parse_subscription(
        SubscriptionInput { token: Some(&t), refresh_token: Some(&r), ..input(Agent::ClaudeCode) },
        now(),
    )
    .unwrap();
    assert_eq!(parsed.expires_at, Some(now() + Duration::hours(1)));
}

#[test]
fn claude_refusals() {
    let claude = |token: Option<&str>, refresh: Option<&str>| {
        parse_subscription(SubscriptionInput { token, refresh_token: refresh, ..input(Agent::ClaudeCode) }, now())
    };
    let k = anthropic_key();
    let msg = refused(claude(Some(&k), None), &k);
    assert!(msg.contains("that is an Anthropic API key"), "{msg}");
    assert!(msg.contains("Settings → API Keys"), "{msg}");
    assert!(msg.contains("claude setup-token"), "{msg}");
    assert!(msg.contains("sk-ant-oat01-"), "{msg}");

    let r = claude_refresh();
    let msg = refused(claude(Some(&r), None), &r);
    assert!(msg.contains("refresh token"), "{msg}");

    let g = github_pat();
    let msg = refused(claude(Some(&g), None), &g);
    assert!(msg.contains("sk-ant-oat01-") && msg.contains("GitHub token"), "{msg}");

    let msg = refused(claude(None, None), "");
    assert!(msg.contains("token is missing"), "{msg}");
    let msg = refused(claude(Some("  "), None), "");
    assert!(msg.contains("token is missing"), "{msg}");

    let t = claude_token();
    let msg = refused(claude(Some(&t), Some(&t)), &t);
    assert!(msg.contains("refreshToken") && msg.contains("sk-ant-ort01-"), "{msg}");

    let spaced = format!("{} {}", &t[..25], &t[25..]);
    let msg = refused(claude(Some(&spaced), None), &spaced);
    assert!(msg.contains(WHITESPACE_REFUSAL), "{msg}");

    let both = parse_subscription(
        SubscriptionInput { token: Some(&t), access_token: Some(&t), ..input(Agent::ClaudeCode) },
        now(),
    );
    let msg = refused(both, &t);
    assert!(msg.contains("not both"), "{msg}");

    let with_json = parse_subscription(
        SubscriptionInput { token: Some(&t), auth_json: Some("{}"), ..input(Agent::ClaudeCode) },
        now(),
    );
    let msg = refused(with_json, &t);
    assert!(msg.contains("authJson is only for Codex"), "{msg}");
}

// ---- Materialisation ----------------------------------------------------------

#[test]
fn claude_subscription_with_refresh_token() {
    let mut s = with_refresh(sub(&claude_token()), &claude_refresh());
    s.scopes = vec!["user:inference".into(), "user:profile".into()];
    let expires = now() + Duration::hours(8);
    let m = materialize(Agent::ClaudeCode, Provider::Anthropic, IssuedSecret::Subscription(&s), Some(expires), now());

    assert!(m.env.is_empty(), "a refreshable login must not be pinned by CLAUDE_CODE_OAUTH_TOKEN");
    assert_eq!(file_paths(&m), [CREDENTIALS_PATH, STATE_PATH]);
    assert!(m.files.iter().all(|f| f.mode == 0o600));
    assert_eq!(
        parse(m.file(CREDENTIALS_PATH).unwrap()),
        json!({ "claudeAiOauth": {
            "accessToken": claude_token(),
            "refreshToken": claude_refresh(),
            "expiresAt": expires.timestamp_millis(),
            "scopes": ["user:inference", "user:profile"],
        }})
    );
    assert_eq!(parse(m.file(STATE_PATH).unwrap()), json!({ "hasCompletedOnboarding": true }));
    assert_redacted(&m);
}

#[test]
fn claude_setup_token_defaults() {
    let s = sub(&claude_token());
    let m = materialize(Agent::ClaudeCode, Provider::Anthropic, IssuedSecret::Subscription(&s), None, now());
    assert_eq!(
        parse(m.file(CREDENTIALS_PATH).unwrap()),
        json!({ "claudeAiOauth": {
            "accessToken": claude_token(),
            "expiresAt": (now() + Duration::days(365)).timestamp_millis(),
            "scopes": ["user:inference"],
        }})
    );
    assert!(m.env_var("ANTHROPIC_API_KEY").is_none());
}

#[test]
fn claude_api_key_is_one_env_var() {
    let key = format!("sk-ant-api03-{MARK}abcdefghij");
    let m = materialize(Agent::ClaudeCode, Provider::Anthropic, IssuedSecret::ApiKey(&key), None, now());
    assert_eq!(env_names(&m), ["ANTHROPIC_API_KEY"]);
    assert_eq!(m.env_var("ANTHROPIC_API_KEY").unwrap().expose(), key);
    assert!(m.files.is_empty());
    assert_redacted(&m);
}

// ---- The login file handed back ---------------------------------------------

#[test]
fn claude_round_trip() {
    let s = with_refresh(sub(&claude_token()), &claude_refresh());
    let expires = now() + Duration::hours(6);
    let back = round_trip(Agent::ClaudeCode, Provider::Anthropic, &s, Some(expires));
    assert_same_tokens(&back.secret, &s);
    assert_eq!(back.secret.scopes, ["user:inference"]);
    assert_eq!(back.expires_at, Some(expires));
    assert_eq!(back.refreshed_at, None);

    let s = sub(&claude_token());
    let back = round_trip(Agent::ClaudeCode, Provider::Anthropic, &s, None);
    assert_same_tokens(&back.secret, &s);
    assert_eq!(back.expires_at, Some(now() + Duration::days(365)));
}
