use chrono::Utc;
use chrono::{Duration, TimeZone};
use serde_json::{json, Value};

use super::*;
use crate::agents::catalog::{entry, find_method};
use crate::agents::samples::*;
use crate::agents::{materialize, parse_returned, parse_subscription, SubscriptionInput};
use crate::credential_input::{MAX_AUTH_JSON_BYTES, WHITESPACE_REFUSAL};
use crate::providers::samples::*;

// ---- Catalog ----------------------------------------------------------------

#[test]
fn codex_methods() {
    let api = find_method(Agent::Codex, Provider::Openai, AuthMethod::ApiKey).unwrap();
    assert_eq!(api.env_var, Some("OPENAI_API_KEY"));
    assert_eq!(api.token_prefixes, &["sk-"]);
    let paste = find_method(Agent::Codex, Provider::Openai, AuthMethod::PasteToken).unwrap();
    assert_eq!(paste.env_var, None);
    assert!(paste.token_prefixes.is_empty());
    for needle in ["codex login --device-auth", "~/.codex/auth.json", "refresh token"] {
        assert!(paste.instructions.contains(needle), "missing {needle}");
    }
    assert!(find_method(Agent::Codex, Provider::Openai, AuthMethod::DeviceCode).is_some());
    assert_eq!(entry(Agent::Codex).methods.len(), 3);
}

// ---- Subscription saves -------------------------------------------------------

#[test]
fn realistic_codex_auth_json_is_accepted() {
    let exp = now() + Duration::days(10);
    let access = codex_access(exp);
    let id = codex_id_token();
    let refresh = refresh_rt();
    let parsed = codex(&format!("\n{}\n", auth_json(&access, &id, &refresh))).unwrap();
    assert_eq!(parsed.provider, Provider::Openai);
    assert_eq!(parsed.secret.access_token.expose(), access);
    assert_eq!(parsed.secret.refresh_token.as_ref().unwrap().expose(), refresh);
    assert_eq!(parsed.secret.id_token.as_ref().unwrap().expose(), id);
    assert_eq!(parsed.secret.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(
        parsed.secret.last_refresh,
        Some(Utc.with_ymd_and_hms(2025, 5, 30, 8, 15, 42).unwrap() + Duration::microseconds(123456))
    );
    assert_eq!(parsed.expires_at, Some(exp));

    let debug = format!("{:?}", parsed);
    assert!(!debug.contains(MARK), "{debug}");
    assert!(!debug.contains(ACCOUNT), "{debug}");
}

#[test]
fn codex_explicit_expiry_wins_over_jwt() {
    let access = codex_access(now() + Duration::days(10));
    let json = auth_json(&access, &codex_id_token(), &refresh_rt());
    let at = now() + Duration::days(1);
    let parsed = parse_subscription(
        SubscriptionInput { auth_json: Some(&json), expires_at: Some(at), ..input(Agent::Codex) },
        now(),
    )
    .unwrap();
    assert_eq!(parsed.expires_at, Some(at));
}

#[test]
fn codex_minimal_auth_json() {
    // Only the access token; not a JWT, so no expiry can be known.
    let opaque = format!("opaque-{MARK}-0123456789");
    let json = format!(r#"{{"tokens":{{"access_token":"{opaque}"}}}}"#);
    let parsed = codex(&json).unwrap();
    assert_eq!(parsed.secret.access_token.expose(), opaque);
    assert!(parsed.secret.refresh_token.is_none());
    assert!(parsed.secret.id_token.is_none());
    assert!(parsed.secret.account_id.is_none());
    assert!(parsed.secret.last_refresh.is_none());
    assert_eq!(parsed.expires_at, None);
}

#[test]
fn codex_auth_json_refusals() {
    let access = codex_access(now() + Duration::days(10));
    let id = codex_id_token();
    let refresh = refresh_rt();

    // Broken JSON: the position, nothing of the content.
    let good = auth_json(&access, &id, &refresh);
    let broken = &good[..good.len() / 2];
    let msg = refused(codex(broken), broken);
    assert!(msg.starts_with("authJson is not valid JSON: "), "{msg}");
    assert!(msg.contains("line"), "{msg}");
    let msg = refused(codex("{\"tokens\": x}"), "");
    assert!(msg.contains("expected value at line 1 column 12"), "{msg}");

    // Wrong shape: serde would quote the string; we must not.
    let wrong_shape = format!(r#"{{"tokens":"{MARK}"}}"#);
    let msg = refused(codex(&wrong_shape), &wrong_shape);
    assert!(msg.contains("does not look like ~/.codex/auth.json"), "{msg}");

    // No access token.
    let msg = refused(codex(r#"{"tokens":{"refresh_token":"x"}}"#), "");
    assert!(msg.contains("tokens.access_token"), "{msg}");
    let msg = refused(codex(r#"{"tokens":{"access_token":"  "}}"#), "");
    assert!(msg.contains("tokens.access_token"), "{msg}");
    let msg = refused(codex(r#"{"auth_mode":"chatgpt"}"#), "");
    assert!(msg.contains("no tokens"), "{msg}");

    // id_token that is not a JWT.
    let bad_id = format!("not-a-jwt-{MARK}");
    let json = auth_json(&access, &bad_id, &refresh);
    let msg = refused(codex(&json), &json);
    assert_eq!(msg, "tokens.id_token is not a JWT; Codex refuses such a file — copy auth.json again.");
    // Middle part decodes, but not to a JSON object.
    let array_jwt = format!("{}.{}.{}", b64(b"{}"), b64(b"[1,2]"), b64(MARK.as_bytes()));
    let json = auth_json(&access, &array_jwt, &refresh);
    let msg = refused(codex(&json), &json);
    assert!(msg.contains("tokens.id_token is not a JWT"), "{msg}");

    // Clipped access JWT.
    let (clipped, _signature) = access.rsplit_once('.').unwrap();
    let json = auth_json(clipped, &id, &refresh);
    let msg = refused(codex(&json), &json);
    assert!(msg.contains("incomplete"), "{msg}");

    // Bad last_refresh.
    let json = format!(r#"{{"tokens":{{"access_token":"{access}"}},"last_refresh":"yesterday"}}"#);
    let msg = refused(codex(&json), &json);
    assert!(msg.contains("last_refresh"), "{msg}");

    // Whitespace inside a token in the file.
    let json = format!(r#"{{"tokens":{{"access_token":"{} {}"}}}}"#, &access[..30], &access[30..]);
    let msg = refused(codex(&json), &json);
    assert!(msg.contains(WHITESPACE_REFUSAL), "{msg}");

    // Oversized.
    let huge = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_AUTH_JSON_BYTES));
    let msg = refused(codex(&huge), "");
    assert!(msg.contains(&MAX_AUTH_JSON_BYTES.to_string()), "{msg}");
}

#[test]
fn codex_api_key_auth_json_is_redirected_to_api_keys() {
    let key = openai_key();
    for json in [
        format!(r#"{{"auth_mode":"apikey","OPENAI_API_KEY":"{key}"}}"#),
        format!(r#"{{"OPENAI_API_KEY":"{key}"}}"#),
        format!(r#"{{"OPENAI_API_KEY":"{key}","tokens":null}}"#),
    ] {
        let msg = refused(codex(&json), &json);
        assert!(msg.contains("holds an OpenAI API key"), "{msg}");
        assert!(msg.contains("Settings → API Keys"), "{msg}");
    }
}

#[test]
fn codex_access_token_alone_or_with_refresh() {
    let exp = now() + Duration::hours(1);
    let access = codex_access(exp);
    let refresh = refresh_rt();
    let parsed = parse_subscription(
        SubscriptionInput { access_token: Some(&access), refresh_token: Some(&refresh), ..input(Agent::Codex) },
        now(),
    )
    .unwrap();
    assert_eq!(parsed.secret.access_token.expose(), access);
    assert_eq!(parsed.secret.refresh_token.as_ref().unwrap().expose(), refresh);
    assert_eq!(parsed.secret.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(parsed.expires_at, Some(exp));

    // `token` is accepted as another name for accessToken.
    let parsed = parse_subscription(SubscriptionInput { token: Some(&access), ..input(Agent::Codex) }, now()).unwrap();
    assert!(parsed.secret.refresh_token.is_none());
}

#[test]
fn codex_expired_access_token_needs_a_refresh_token() {
    let access = codex_access(now() - Duration::hours(1));
    let msg = refused(
        parse_subscription(SubscriptionInput { access_token: Some(&access), ..input(Agent::Codex) }, now()),
        &access,
    );
    assert!(msg.contains("already expired"), "{msg}");

    let refresh = refresh_rt();
    let parsed = parse_subscription(
        SubscriptionInput { access_token: Some(&access), refresh_token: Some(&refresh), ..input(Agent::Codex) },
        now(),
    )
    .unwrap();
    assert_eq!(parsed.expires_at, Some(now() - Duration::hours(1)));
}

#[test]
fn codex_refusals() {
    let access = codex_access(now() + Duration::hours(1));
    let refresh = refresh_rt();
    let json = auth_json(&access, &codex_id_token(), &refresh);
    let codex_input =
        |token: Option<&str>, access_token: Option<&str>, refresh_token: Option<&str>, auth_json: Option<&str>| {
            parse_subscription(
                SubscriptionInput { token, access_token, refresh_token, auth_json, ..input(Agent::Codex) },
                now(),
            )
        };

    let msg = refused(codex_input(None, None, None, None), "");
    assert!(msg.contains("authJson") && msg.contains("accessToken"), "{msg}");
    let msg = refused(codex_input(None, None, Some(&refresh), None), &refresh);
    assert!(msg.contains("authJson") && msg.contains("accessToken"), "{msg}");

    let msg = refused(codex_input(None, Some(&access), None, Some(&json)), &access);
    assert!(msg.contains("not both"), "{msg}");
    let msg = refused(codex_input(None, None, Some(&refresh), Some(&json)), &refresh);
    assert!(msg.contains("leave refreshToken empty"), "{msg}");

    let key = openai_key();
    let msg = refused(codex_input(None, Some(&key), None, None), &key);
    assert!(msg.contains("API key") && msg.contains("Settings → API Keys"), "{msg}");

    let msg = refused(codex_input(Some(&json), None, None, None), &json);
    assert!(msg.contains("JSON") && msg.contains("authJson"), "{msg}");

    let msg = refused(codex_input(None, Some(&access), Some("rt_short"), None), "rt_short");
    assert!(msg.contains("refreshToken") && msg.contains("too short"), "{msg}");

    let msg = refused(codex_input(None, Some("eyJhbGciOi"), None, None), "eyJhbGciOi");
    assert!(msg.contains("too short"), "{msg}");
}

// ---- Materialisation ----------------------------------------------------------

#[test]
fn codex_subscription_full_file() {
    let access = access_jwt(now() + Duration::days(10), Some(ACCOUNT));
    let mut s = with_refresh(sub(&access), &openai_refresh());
    s.id_token = Some(Secret::new(id_jwt()));
    s.account_id = Some("acct-stored".into());
    s.last_refresh = Some(now() - Duration::days(2));
    let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::Subscription(&s), None, now());

    assert!(m.env.is_empty());
    assert_eq!(file_paths(&m), [AUTH_PATH]);
    assert_eq!(m.files[0].mode, 0o600);
    assert_eq!(
        parse(&m.files[0]),
        json!({
            "auth_mode": "chatgpt",
            "OPENAI_API_KEY": null,
            "tokens": {
                "id_token": id_jwt(),
                "access_token": access,
                "refresh_token": openai_refresh(),
                "account_id": "acct-stored",
            },
            "last_refresh": "2025-05-30T12:00:00Z",
        })
    );
    assert_redacted(&m);
}

#[test]
fn codex_uses_access_jwt_as_id_token_and_its_account() {
    let access = access_jwt(now() + Duration::days(10), Some(ACCOUNT));
    let s = sub(&access);
    let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::Subscription(&s), None, now());
    let auth = parse(&m.files[0]);
    assert_eq!(auth["tokens"]["id_token"], json!(access));
    assert_eq!(auth["tokens"]["account_id"], json!(ACCOUNT));
    assert_eq!(auth["tokens"]["refresh_token"], json!(""));
    assert_eq!(auth["last_refresh"], json!("2025-06-01T12:00:00Z"));
    assert_codex_jwt(&codex_id_from(&m));
}

#[test]
fn codex_synthesises_an_id_token_for_opaque_access_tokens() {
    let opaque = format!("opaque-{MARK}-access-token");
    let expires = now() + Duration::hours(1);

    let s = sub(&opaque);
    let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::Subscription(&s), Some(expires), now());
    assert_eq!(parse(&m.files[0])["tokens"]["account_id"], Value::Null);
    let claims = assert_codex_jwt(&codex_id_from(&m));
    assert_eq!(
        Value::Object(claims),
        json!({ OPENAI_AUTH_CLAIM: { "chatgpt_account_id": "" }, "exp": expires.timestamp() })
    );

    // A stored account id goes into both places; a stored id_token that
    // Codex would refuse is replaced too.
    let mut s = sub(&opaque);
    s.account_id = Some(ACCOUNT.into());
    s.id_token = Some(Secret::new("not-a-jwt".into()));
    let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::Subscription(&s), None, now());
    assert_eq!(parse(&m.files[0])["tokens"]["account_id"], json!(ACCOUNT));
    let claims = assert_codex_jwt(&codex_id_from(&m));
    assert_eq!(Value::Object(claims), json!({ OPENAI_AUTH_CLAIM: { "chatgpt_account_id": ACCOUNT } }));
    assert!(!codex_id_from(&m).contains(MARK));
}

#[test]
fn codex_api_key_is_both_variables_it_reads() {
    let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::ApiKey(&api_key()), None, now());
    // The interactive CLI reads OPENAI_API_KEY, `codex exec` only CODEX_API_KEY.
    assert_eq!(env_names(&m), ["OPENAI_API_KEY", "CODEX_API_KEY"]);
    assert_eq!(m.env_var("OPENAI_API_KEY").unwrap().expose(), api_key());
    assert_eq!(m.env_var("CODEX_API_KEY").unwrap().expose(), api_key());
    assert!(m.files.is_empty());
}

// ---- The login file handed back ---------------------------------------------

#[test]
fn codex_round_trips() {
    let exp = now() + Duration::days(10);
    let access = access_jwt(exp, Some(ACCOUNT));

    // Real id_token kept, account and last_refresh carried.
    let mut s = with_refresh(sub(&access), &openai_refresh());
    s.id_token = Some(Secret::new(id_jwt()));
    s.last_refresh = Some(now() - Duration::days(1));
    let back = round_trip(Agent::Codex, Provider::Openai, &s, None);
    assert_same_tokens(&back.secret, &s);
    assert_eq!(back.secret.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(back.refreshed_at, s.last_refresh);
    assert_eq!(back.secret.last_refresh, s.last_refresh);
    assert_eq!(back.expires_at, Some(exp));

    // The access token standing in as id_token is not stored as one.
    let s = sub(&access);
    let back = round_trip(Agent::Codex, Provider::Openai, &s, None);
    assert_same_tokens(&back.secret, &s);
    assert_eq!(back.refreshed_at, Some(now()));

    // Nor is the unsigned stand-in.
    let s = with_refresh(sub(&format!("opaque-{MARK}-token")), &openai_refresh());
    let back = round_trip(Agent::Codex, Provider::Openai, &s, Some(exp));
    assert_same_tokens(&back.secret, &s);
    assert_eq!(back.expires_at, None);
}

#[test]
fn codex_refreshed_file_is_read_whole() {
    let new_access = access_jwt(now() + Duration::days(10), Some(ACCOUNT));
    let content = json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": id_jwt(),
            "access_token": new_access,
            "refresh_token": openai_refresh(),
            "account_id": ACCOUNT,
        },
        "last_refresh": "2025-06-01T13:14:15.123456Z",
        "some_future_field": { "x": 1 },
    })
    .to_string();
    let back = parse_returned(Agent::Codex, Provider::Openai, AUTH_PATH, &content).unwrap();
    assert_eq!(back.secret.access_token.expose(), new_access);
    assert_eq!(back.secret.id_token.as_ref().unwrap().expose(), id_jwt());
    assert_eq!(back.secret.refresh_token.as_ref().unwrap().expose(), openai_refresh());
    assert_eq!(back.refreshed_at.unwrap().to_rfc3339(), "2025-06-01T13:14:15.123456+00:00");
}

/// Issue 21 item 2: a returned file's account comes from its tokens (as on
/// save), whatever `account_id` says; a stated one that disagrees refuses it.
#[test]
fn returned_account_comes_from_the_tokens() {
    let access = codex_access(now() + Duration::hours(1));
    let file = |stated: Option<&str>| {
        let mut v: Value = serde_json::from_str(&auth_json(&access, &codex_id_token(), &refresh_rt())).unwrap();
        v["tokens"]["account_id"] = json!(stated);
        v.to_string()
    };
    let left_out = parse_returned(Agent::Codex, Provider::Openai, AUTH_PATH, &file(None)).unwrap();
    assert_eq!(left_out.secret.account_id.as_deref(), Some(ACCOUNT));
    let err = parse_returned(Agent::Codex, Provider::Openai, AUTH_PATH, &file(Some("acct-other"))).unwrap_err();
    assert!(err.to_string().contains("different account"), "{err}");
    assert!(!err.to_string().contains("acct-other"), "{err}");

    // Tokens that carry no account leave it unknown (the store refuses that).
    let bare =
        json!({ "tokens": { "access_token": jwt(json!({ "exp": now().timestamp() + 60 })), "account_id": ACCOUNT } });
    let back = parse_returned(Agent::Codex, Provider::Openai, AUTH_PATH, &bare.to_string()).unwrap();
    assert_eq!(back.secret.account_id, None);
}

/// Found by the `credentials` fuzz target: an auth.json whose account_id
/// names another account than its tokens was saved, and every file a task
/// then returned for it was refused as another account's. The tokens' word
/// wins on save as on return: a file that disagrees is refused.
#[test]
fn saved_account_comes_from_the_tokens() {
    let access = codex_access(now() + Duration::days(10));
    let mut v: Value = serde_json::from_str(&auth_json(&access, &codex_id_token(), &refresh_rt())).unwrap();
    v["tokens"]["account_id"] = json!("someone-else");
    let text = v.to_string();
    let msg = refused(codex(&text), &text);
    assert!(msg.contains("different account"), "{msg}");
    // The same file with the tokens' account saves, and reads back once handed over.
    v["tokens"]["account_id"] = json!(ACCOUNT);
    let parsed = codex(&v.to_string()).unwrap();
    let m = materialize(Agent::Codex, Provider::Openai, IssuedSecret::Subscription(&parsed.secret), None, now());
    let back = parse_returned(Agent::Codex, Provider::Openai, AUTH_PATH, m.files[0].content.expose()).unwrap();
    assert_eq!(back.secret.account_id.as_deref(), Some(ACCOUNT));
}
