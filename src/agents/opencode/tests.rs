use chrono::Duration;
use serde_json::json;

use super::*;
use crate::agents::catalog::{entry, find_method};
use crate::agents::samples::*;
use crate::agents::{materialize, parse_returned, parse_subscription, SubscriptionInput};
use crate::providers::samples::*;

// ---- Catalog ----------------------------------------------------------------

#[test]
fn opencode_methods() {
    use AuthMethod::*;
    use Provider::*;
    let listed: Vec<(Provider, AuthMethod)> =
        entry(Agent::Opencode).methods.iter().map(|m| (m.provider, m.method)).collect();
    assert_eq!(
        listed,
        vec![
            (Anthropic, ApiKey),
            (Openai, ApiKey),
            (Anthropic, AuthorizationCode),
            (Openai, DeviceCode),
            (Openai, PasteToken),
        ]
    );
    for m in entry(Agent::Opencode).methods.iter().filter(|m| m.method != ApiKey) {
        assert_eq!(m.env_var, Some("OPENCODE_AUTH_CONTENT"));
    }
    let code = find_method(Agent::Opencode, Anthropic, AuthorizationCode).unwrap();
    assert!(code.instructions.contains("copy the code"));
    let device = find_method(Agent::Opencode, Openai, DeviceCode).unwrap();
    assert!(device.instructions.contains("device code"));
}

// ---- Subscription saves -------------------------------------------------------

#[test]
fn opencode_anthropic_uses_claude_rules() {
    let t = claude_token();
    let parsed = parse_subscription(
        SubscriptionInput { provider: Some(Provider::Anthropic), token: Some(&t), ..input(Agent::Opencode) },
        now(),
    )
    .unwrap();
    assert_eq!(parsed.provider, Provider::Anthropic);
    assert_eq!(parsed.secret.scopes, vec!["user:inference".to_owned()]);

    let k = anthropic_key();
    let msg = refused(
        parse_subscription(
            SubscriptionInput { provider: Some(Provider::Anthropic), token: Some(&k), ..input(Agent::Opencode) },
            now(),
        ),
        &k,
    );
    assert!(msg.contains("Anthropic API key"), "{msg}");
}

#[test]
fn opencode_openai_uses_codex_rules() {
    let access = codex_access(now() + Duration::hours(1));
    let refresh = refresh_rt();
    let parsed = parse_subscription(
        SubscriptionInput {
            provider: Some(Provider::Openai),
            access_token: Some(&access),
            refresh_token: Some(&refresh),
            ..input(Agent::Opencode)
        },
        now(),
    )
    .unwrap();
    assert_eq!(parsed.provider, Provider::Openai);
    let json = auth_json(&access, &codex_id_token(), &refresh);
    let parsed = parse_subscription(
        SubscriptionInput { provider: Some(Provider::Openai), auth_json: Some(&json), ..input(Agent::Opencode) },
        now(),
    )
    .unwrap();
    assert!(parsed.secret.id_token.is_some());
}

// ---- Materialisation ----------------------------------------------------------

#[test]
fn opencode_openai_subscription() {
    let exp = now() + Duration::days(10);
    let access = access_jwt(exp, Some(ACCOUNT));
    let s = with_refresh(sub(&access), &openai_refresh());
    let m = materialize(Agent::Opencode, Provider::Openai, IssuedSecret::Subscription(&s), None, now());

    let expected = json!({ "openai": {
        "type": "oauth",
        "refresh": openai_refresh(),
        "access": access,
        "expires": exp.timestamp_millis(),
        "accountId": ACCOUNT,
    }});
    assert_eq!(file_paths(&m), [AUTH_PATH]);
    assert_eq!(m.files[0].mode, 0o600);
    assert_eq!(parse(&m.files[0]), expected);
    assert!(m.env.is_empty(), "OPENCODE_AUTH_CONTENT would hide refreshed tokens");
    assert_redacted(&m);
}

#[test]
fn opencode_anthropic_subscription_without_expiry_or_refresh() {
    let s = sub(&claude_token());
    let m = materialize(Agent::Opencode, Provider::Anthropic, IssuedSecret::Subscription(&s), None, now());
    assert_eq!(
        parse(&m.files[0]),
        json!({ "anthropic": { "type": "oauth", "refresh": "", "access": claude_token(), "expires": 0 } })
    );
    assert!(m.env_var("ANTHROPIC_API_KEY").is_none());
}

#[test]
fn opencode_api_keys() {
    for (provider, id) in [(Provider::Anthropic, "anthropic"), (Provider::Openai, "openai")] {
        let m = materialize(Agent::Opencode, provider, IssuedSecret::ApiKey(&api_key()), None, now());
        assert_eq!(parse(&m.files[0]), json!({ id: { "type": "api", "key": api_key() } }));
        assert_eq!(m.files[0].path, AUTH_PATH);
        assert_eq!(m.files[0].mode, 0o600);
        assert_eq!(m.env_var(AUTH_ENV), Some(&m.files[0].content));
        assert_eq!(m.env.len(), 1);
        assert_redacted(&m);
    }
}

// ---- The login file handed back ---------------------------------------------

#[test]
fn opencode_round_trips() {
    let exp = now() + Duration::days(10);
    let s = with_refresh(sub(&access_jwt(exp, Some(ACCOUNT))), &openai_refresh());
    let back = round_trip(Agent::Opencode, Provider::Openai, &s, None);
    assert_same_tokens(&back.secret, &s);
    assert_eq!(back.secret.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(back.expires_at, Some(exp));

    let s = sub(&claude_token());
    let back = round_trip(Agent::Opencode, Provider::Anthropic, &s, None);
    assert_same_tokens(&back.secret, &s);
    assert_eq!(back.expires_at, None);
}

#[test]
fn opencode_reads_only_its_providers_entry() {
    let content = json!({
        "github-copilot": { "type": "wellknown", "token": 42, "expires": "not a number" },
        "anthropic": { "type": "api", "key": api_key() },
        "openai": { "type": "oauth", "refresh": openai_refresh(), "access": claude_token(), "expires": 1.7e12 },
    })
    .to_string();
    let back = parse_returned(Agent::Opencode, Provider::Openai, AUTH_PATH, &content).unwrap();
    assert_eq!(back.secret.access_token.expose(), claude_token());
    assert_eq!(back.expires_at, DateTime::from_timestamp_millis(1_700_000_000_000));

    let msg = refused_file(parse_returned(Agent::Opencode, Provider::Anthropic, AUTH_PATH, &content));
    assert!(msg.contains("API key") && msg.contains(AUTH_PATH), "{msg}");
}
