//! Pasted credentials: every provider's API key parser, and every agent's
//! subscription save (each provider's token parsers, Codex's `auth.json`,
//! tokens given on their own), then what is saved handed over as the
//! agent's login file and read back as a returned file.
//!
//! Input: three bytes (agent, provider, expiry), then NUL-separated fields:
//! token, accessToken, refreshToken, authJson, an API key. A field
//! `jwt:{…}` is a JWT carrying those claims.
//!
//! Never panics; no refusal or `Debug` output shows a secret; parse →
//! serialise (the file handed to a task) → parse gives the same tokens.
#![no_main]

use chrono::{DateTime, Duration, TimeZone, Utc};
use libfuzzer_sys::fuzz_target;
use sesame_vault::fuzzing::{
    hint, materialize, parse_returned, parse_subscription, returnable_paths, Agent, ApiKey, IssuedSecret, Provider,
    SubscriptionInput, SubscriptionSecret,
};
use sesame_vault_fuzz::{assert_no_secret, expand_jwt, field, fields, MARK};

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 12, 0, 0).unwrap()
}

fn same_tokens(a: &SubscriptionSecret, b: &SubscriptionSecret, what: &str) {
    assert!(a.access_token == b.access_token, "{what}: the access token changed");
    assert!(a.refresh_token == b.refresh_token, "{what}: the refresh token changed");
}

/// Hands `secret` to `agent` and reads back every login file it may
/// return: each must parse to the same tokens. Returns what was read.
fn round_trip(agent: Agent, provider: Provider, secret: &SubscriptionSecret, expires_at: Option<DateTime<Utc>>) {
    let handed = materialize(agent, provider, IssuedSecret::Subscription(secret), expires_at, now());
    assert!(!format!("{handed:?}").contains(MARK), "Debug of a materialisation shows a secret");
    for path in returnable_paths(agent, provider) {
        let Some(file) = handed.file(path) else { continue };
        let back = match parse_returned(agent, provider, path, file.content.expose()) {
            Ok(back) => back,
            Err(e) => panic!("{agent:?}/{provider:?}: the file handed over does not read back: {e}"),
        };
        same_tokens(secret, &back.secret, "handed over and read back");
        // And again from what was read: the same file, the same tokens.
        let merged = back.merged_with(secret);
        let again = materialize(agent, provider, IssuedSecret::Subscription(&merged), back.expires_at, now());
        if let Some(file) = again.file(path) {
            let twice = parse_returned(agent, provider, path, file.content.expose()).expect("reads back twice");
            same_tokens(&merged, &twice.secret, "read back twice");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [a, p, e, rest @ ..] = data else { return };
    let agent = Agent::ALL[*a as usize % Agent::ALL.len()];
    let provider = Provider::ALL.get(*p as usize % (Provider::ALL.len() + 1)).copied();
    let expires_at = (*e != 0).then(|| now() + Duration::hours(i64::from(*e) - 64));
    let parts: Vec<String> = fields(rest, 5).iter().map(|f| expand_jwt(f)).collect();
    let secrets: Vec<&str> = parts.iter().map(String::as_str).collect();

    // API keys, for every provider.
    if let Some(key) = field(&parts, 4) {
        for &provider in Provider::ALL {
            match ApiKey::parse(provider, key) {
                Ok(parsed) => {
                    assert!(!format!("{parsed:?}").contains(MARK));
                    let again = ApiKey::parse(provider, parsed.secret().expose()).expect("a parsed key parses again");
                    assert_eq!(again, parsed);
                    let shown = hint(parsed.secret().expose());
                    assert!(shown.chars().count() <= 16 && !shown.contains(MARK), "hint shows too much");
                }
                Err(e) => {
                    assert_no_secret(&e.to_string(), &secrets);
                    assert_no_secret(&format!("{e:?}"), &secrets);
                }
            }
        }
    }

    let input = SubscriptionInput {
        agent,
        provider,
        token: field(&parts, 0),
        access_token: field(&parts, 1),
        refresh_token: field(&parts, 2),
        auth_json: field(&parts, 3),
        expires_at,
    };
    assert!(!format!("{input:?}").contains(MARK));
    match parse_subscription(input, now()) {
        Ok(parsed) => {
            assert!(!format!("{parsed:?}").contains(MARK), "Debug of a saved subscription shows a secret");
            round_trip(agent, parsed.provider, &parsed.secret, parsed.expires_at);
        }
        Err(e) => assert_no_secret(&e.to_string(), &secrets),
    }
});
