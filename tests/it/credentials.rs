//! A person's own credentials: the API Keys tab and the Agent Credentials dialog.

use serde_json::json;

use crate::common::*;

const SET_KEY: &str = "mutation($p: Provider!, $k: String!) { setApiKey(provider: $p, key: $k) { id provider agent kind status hint hasRefreshToken expiresAt owner { email } } }";
const SAVE_SUB: &str = "mutation($i: SubscriptionCredentialInput!) { saveSubscriptionCredential(input: $i) { id provider agent kind status hint hasRefreshToken expiresAt } }";
const MINE: &str = "{ myCredentials { id provider agent kind hint } }";

#[tokio::test]
async fn api_keys_are_stored_per_provider_and_replaced_in_place() {
    let server = Server::start().await;
    let (_, token) = server.create_user("ada@example.com").await;
    for (provider, key, hint_prefix) in [
        ("ANTHROPIC", ANTHROPIC_KEY, "sk-ant-"),
        ("OPENAI", OPENAI_KEY, "sk-"),
        ("GOOGLE", GEMINI_KEY, "AIza"),
        ("GITHUB", COPILOT_TOKEN, "github_pat_"),
    ] {
        let data = server.ok(&token, SET_KEY, json!({ "p": provider, "k": key })).await;
        let c = &data["setApiKey"];
        assert_eq!(c["provider"], provider);
        assert_eq!(c["kind"], "API_KEY");
        assert_eq!(c["status"], "ACTIVE");
        assert!(c["agent"].is_null());
        assert_eq!(c["owner"]["email"], "ada@example.com");
        let hint = c["hint"].as_str().unwrap();
        assert!(hint.starts_with(hint_prefix), "{hint}");
        assert!(hint.ends_with(&key[key.len() - 4..]), "{hint}");
        assert!(hint.len() < 20 && !key.contains(hint), "hint reveals too much: {hint}");
    }
    let first = server.ok(&token, MINE, json!({})).await;
    assert_eq!(first["myCredentials"].as_array().unwrap().len(), 4);

    // Replacing keeps the id and changes the hint.
    let before = server.ok(&token, SET_KEY, json!({ "p": "ANTHROPIC", "k": ANTHROPIC_KEY })).await;
    let replacement = format!("{}0000", &ANTHROPIC_KEY[..ANTHROPIC_KEY.len() - 4]);
    let after = server.ok(&token, SET_KEY, json!({ "p": "ANTHROPIC", "k": replacement })).await;
    assert_eq!(before["setApiKey"]["id"], after["setApiKey"]["id"]);
    assert!(after["setApiKey"]["hint"].as_str().unwrap().ends_with("0000"));
    assert_eq!(server.ok(&token, MINE, json!({})).await["myCredentials"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn bad_api_keys_get_clear_errors_and_change_nothing() {
    let server = Server::start().await;
    let (_, token) = server.create_user("bob@example.com").await;
    server.ok(&token, SET_KEY, json!({ "p": "ANTHROPIC", "k": ANTHROPIC_KEY })).await;
    let oversized = format!("sk-ant-api03-{}", "A".repeat(10_000));
    let cases = [
        ("ANTHROPIC", "sk-proj-abcdefghijklmnopqrstuvwxyz", "sk-ant-api03-"),
        ("ANTHROPIC", CLAUDE_OAT, "subscription"),
        ("OPENAI", ANTHROPIC_KEY, "Anthropic"),
        ("GITHUB", "ghp_abcdefghijklmnopqrstuvwxyz0123456789", "fine-grained"),
        ("GOOGLE", "AIzaTooShort", "AIza"),
        ("GOOGLE", "", "empty"),
        ("ANTHROPIC", oversized.as_str(), "8192"),
        ("OPENAI", "sk-has space inside the token value", "space"),
    ];
    for (provider, key, expect) in cases {
        let (code, message) = server.err(&token, SET_KEY, json!({ "p": provider, "k": key })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{provider} {message}");
        assert!(
            message.to_lowercase().contains(&expect.to_lowercase()),
            "{provider}: {message:?} should mention {expect}"
        );
        if key.len() > 8 {
            assert!(!message.contains(&key[4..]), "error echoes the key: {message}");
        }
    }
    // Still exactly the one good key, unchanged.
    let mine = server.ok(&token, MINE, json!({})).await;
    assert_eq!(mine["myCredentials"].as_array().unwrap().len(), 1);
    assert!(mine["myCredentials"][0]["hint"].as_str().unwrap().ends_with("9f2c"));
    // Unknown enum values are refused by the schema with a code too.
    let (code, _) = server.err(&token, SET_KEY, json!({ "p": "MISTRAL", "k": ANTHROPIC_KEY })).await;
    assert_eq!(code, "BAD_USER_INPUT");
}

#[tokio::test]
async fn subscription_credentials_for_each_agent() {
    let server = Server::start().await;
    let (_, token) = server.create_user("cy@example.com").await;

    // Claude Code: setup-token, expiry defaults to a year.
    let claude = server.ok(&token, SAVE_SUB, json!({ "i": { "agent": "CLAUDE_CODE", "token": CLAUDE_OAT } })).await;
    let c = &claude["saveSubscriptionCredential"];
    assert_eq!(
        (c["provider"].as_str(), c["agent"].as_str(), c["kind"].as_str()),
        (Some("ANTHROPIC"), Some("CLAUDE_CODE"), Some("SUBSCRIPTION"))
    );
    let expires: chrono::DateTime<chrono::Utc> = c["expiresAt"].as_str().unwrap().parse().unwrap();
    let days = (expires - chrono::Utc::now()).num_days();
    assert!((364..=366).contains(&days), "{days}");

    // An API key pasted into the subscription dialog is explained.
    let (code, msg) =
        server.err(&token, SAVE_SUB, json!({ "i": { "agent": "CLAUDE_CODE", "token": ANTHROPIC_KEY } })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("API key"), "{msg}");

    // Codex: the whole auth.json, expiry from the access token's exp.
    let exp = chrono::Utc::now().timestamp() + 3600 * 24 * 5;
    let auth_json = json!({
        "auth_mode": "chatgpt",
        "OPENAI_API_KEY": null,
        "tokens": {
            "id_token": jwt(json!({"email": "cy@example.com", "https://api.openai.com/auth": {"chatgpt_plan_type": "pro"}})),
            "access_token": jwt(json!({"exp": exp})),
            "refresh_token": "rt_TESTrefreshFFFFFFFFFFFFFFFFFFFF",
            "account_id": "acct-123"
        },
        "last_refresh": "2026-11-20T10:00:00Z"
    })
    .to_string();
    let codex = server.ok(&token, SAVE_SUB, json!({ "i": { "agent": "CODEX", "authJson": auth_json } })).await;
    let c = &codex["saveSubscriptionCredential"];
    assert_eq!(c["provider"], "OPENAI");
    assert_eq!(c["hasRefreshToken"], true);
    let expires: chrono::DateTime<chrono::Utc> = c["expiresAt"].as_str().unwrap().parse().unwrap();
    assert_eq!(expires.timestamp(), exp);

    // Codex: broken JSON is refused with a position, not the content.
    let (code, msg) = server
        .err(
            &token,
            SAVE_SUB,
            json!({ "i": { "agent": "CODEX", "authJson": "{\"tokens\": {\"access_token\": \"secret-value" } }),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("JSON") && !msg.contains("secret-value"), "{msg}");

    // Copilot: fine-grained token; classic refused.
    server.ok(&token, SAVE_SUB, json!({ "i": { "agent": "COPILOT", "token": COPILOT_TOKEN } })).await;
    let (_, msg) = server
        .err(
            &token,
            SAVE_SUB,
            json!({ "i": { "agent": "COPILOT", "token": "ghp_abcdefghijklmnopqrstuvwxyz0123456789" } }),
        )
        .await;
    assert!(msg.contains("fine-grained"), "{msg}");

    // Gemini: API key only, with the product page's explanation.
    let (code, msg) = server.err(&token, SAVE_SUB, json!({ "i": { "agent": "GEMINI", "token": GEMINI_KEY } })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("API key") && msg.contains("headless"), "{msg}");

    // OpenCode needs a provider.
    let (_, msg) = server
        .err(&token, SAVE_SUB, json!({ "i": { "agent": "OPENCODE", "accessToken": jwt(json!({"exp": exp})) } }))
        .await;
    assert!(msg.contains("provider"), "{msg}");
    let oc = server
        .ok(&token, SAVE_SUB, json!({ "i": { "agent": "OPENCODE", "provider": "OPENAI", "accessToken": jwt(json!({"exp": exp})), "refreshToken": "rt_TESTrefreshGGGGGGGGGGGGGGGGGGGGG" } }))
        .await;
    assert_eq!(oc["saveSubscriptionCredential"]["agent"], "OPENCODE");

    // An expiry in the past is refused.
    let (code, _) = server
        .err(
            &token,
            SAVE_SUB,
            json!({ "i": { "agent": "CLAUDE_CODE", "token": CLAUDE_OAT, "expiresAt": "2020-01-01T00:00:00Z" } }),
        )
        .await;
    assert_eq!(code, "BAD_USER_INPUT");

    let mine = server.ok(&token, MINE, json!({})).await;
    assert_eq!(mine["myCredentials"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn removal_is_owner_only_and_isolation_hides_existence() {
    let server = Server::start().await;
    let (_, alice) = server.create_user("alice@example.com").await;
    let (_, mallory) = server.create_user("mallory@example.com").await;
    let key = server.ok(&alice, SET_KEY, json!({ "p": "OPENAI", "k": OPENAI_KEY })).await;
    let id = key["setApiKey"]["id"].as_str().unwrap().to_owned();
    server.ok(&alice, SAVE_SUB, json!({ "i": { "agent": "CLAUDE_CODE", "token": CLAUDE_OAT } })).await;

    // Another user sees nothing and can remove nothing.
    let seen = server.ok(&mallory, "query($id: ID!) { credential(id: $id) { id } }", json!({ "id": id })).await;
    assert!(seen["credential"].is_null());
    let (code, _) = server.err(&mallory, "mutation($id: ID!) { removeCredential(id: $id) }", json!({ "id": id })).await;
    assert_eq!(code, "NOT_FOUND");
    let (code, _) = server.err(&alice, "mutation { removeCredential(id: \"not-a-uuid\") }", json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");

    // The owner removes the agent's subscription; the API key stays.
    let n = server.ok(&alice, "mutation { removeAgentCredentials(agent: CLAUDE_CODE) }", json!({})).await;
    assert_eq!(n["removeAgentCredentials"], 1);
    assert_eq!(server.ok(&alice, MINE, json!({})).await["myCredentials"].as_array().unwrap().len(), 1);
    let removed = server.ok(&alice, "mutation($id: ID!) { removeCredential(id: $id) }", json!({ "id": id })).await;
    assert_eq!(removed["removeCredential"], true);
    assert!(server.ok(&alice, MINE, json!({})).await["myCredentials"].as_array().unwrap().is_empty());
    let (code, _) = server.err(&alice, "mutation($id: ID!) { removeCredential(id: $id) }", json!({ "id": id })).await;
    assert_eq!(code, "NOT_FOUND");
}

#[tokio::test]
async fn catalog_and_system_keys() {
    let server = Server::start_with(&[("ANTHROPIC_API_KEY", ANTHROPIC_KEY), ("GEMINI_API_KEY", GEMINI_KEY)]).await;
    let (_, token) = server.create_user("dee@example.com").await;
    let res = server.gql(&token, "{ systemKeys { provider envVar configured } agents { agent name methods { provider method envVar tokenPrefixes instructions } } }", json!({})).await;
    let text = res.to_string();
    assert!(!text.contains(&ANTHROPIC_KEY[10..]) && !text.contains(&GEMINI_KEY[6..]), "a system key leaked");
    let keys = res["data"]["systemKeys"].as_array().unwrap();
    let configured = |p: &str| keys.iter().find(|k| k["provider"] == p).unwrap()["configured"].as_bool().unwrap();
    assert!(configured("ANTHROPIC") && configured("GOOGLE"));
    assert!(!configured("OPENAI") && !configured("GITHUB"));
    let agents = res["data"]["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 7);
    let claude = agents.iter().find(|a| a["agent"] == "CLAUDE_CODE").unwrap();
    assert!(claude["methods"].to_string().contains("sk-ant-oat01-"));
    assert!(claude["methods"].to_string().contains("claude setup-token"));
    let gemini = agents.iter().find(|a| a["agent"] == "GEMINI").unwrap();
    assert!(gemini["methods"].as_array().unwrap().iter().all(|m| m["method"] == "API_KEY"));
}
