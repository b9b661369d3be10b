//! The catalog the app is drawn from: agents (plans, notes, method labels
//! and paste forms) and providers, all served by the API.

use serde_json::{json, Value};

use crate::common::*;

const AGENTS: &str = "{ agents { agent name note subscriptionPlans { provider name } \
    methods { provider method label envVar tokenPrefixes tokenLabel authFile acceptsRefreshToken } } }";

fn agent<'a>(data: &'a Value, agent: &str) -> &'a Value {
    data["agents"].as_array().unwrap().iter().find(|a| a["agent"] == agent).unwrap_or_else(|| panic!("{agent} missing"))
}

fn plans(agent: &Value) -> Vec<(String, String)> {
    agent["subscriptionPlans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["provider"].as_str().unwrap().to_owned(), p["name"].as_str().unwrap().to_owned()))
        .collect()
}

fn method<'a>(agent: &'a Value, provider: &str, method: &str) -> &'a Value {
    agent["methods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["provider"] == provider && m["method"] == method)
        .unwrap_or_else(|| panic!("{} has no {provider}/{method}", agent["agent"]))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
}

#[tokio::test]
async fn agents_carry_plans_notes_and_method_forms() {
    let server = Server::start().await;
    let (_, token) = server.create_user("cat@example.com").await;
    let data = server.ok(&token, AGENTS, json!({})).await;

    let claude = agent(&data, "CLAUDE_CODE");
    assert_eq!(plans(claude), pairs(&[("ANTHROPIC", "Claude Max ($200/mo)"), ("ANTHROPIC", "Claude Pro ($20/mo)")]));
    assert!(claude["note"].is_null());
    let paste = method(claude, "ANTHROPIC", "PASTE_TOKEN");
    assert_eq!(paste["label"], "Paste a setup-token");
    assert_eq!(paste["tokenLabel"], "Setup token");
    assert!(paste["authFile"].is_null());
    assert_eq!(paste["acceptsRefreshToken"], false);
    assert_eq!(method(claude, "ANTHROPIC", "AUTHORIZATION_CODE")["label"], "Sign in with Claude");
    let key = method(claude, "ANTHROPIC", "API_KEY");
    assert_eq!(key["label"], "API key");
    assert!(key["tokenLabel"].is_null() && key["authFile"].is_null());

    let codex = agent(&data, "CODEX");
    assert_eq!(plans(codex), pairs(&[("OPENAI", "ChatGPT Plus ($20/mo)"), ("OPENAI", "ChatGPT Pro ($200/mo)")]));
    let paste = method(codex, "OPENAI", "PASTE_TOKEN");
    assert_eq!(paste["label"], "auth.json or access token");
    assert_eq!(paste["tokenLabel"], "Access token");
    assert_eq!(paste["authFile"], "~/.codex/auth.json");
    assert_eq!(paste["acceptsRefreshToken"], true);
    let device = method(codex, "OPENAI", "DEVICE_CODE");
    assert_eq!(device["label"], "Sign in with ChatGPT");
    assert!(device["tokenLabel"].is_null());
    assert_eq!(device["acceptsRefreshToken"], false);

    let copilot = agent(&data, "COPILOT");
    assert_eq!(
        plans(copilot),
        pairs(&[
            ("GITHUB", "Copilot Individual ($10/mo)"),
            ("GITHUB", "Copilot Business ($19/mo)"),
            ("GITHUB", "Copilot Enterprise")
        ])
    );
    assert_eq!(method(copilot, "GITHUB", "PASTE_TOKEN")["label"], "Paste a fine-grained token");
    assert_eq!(method(copilot, "GITHUB", "PASTE_TOKEN")["tokenLabel"], "Fine-grained token");
    assert_eq!(method(copilot, "GITHUB", "DEVICE_CODE")["label"], "Connect with GitHub");

    let opencode = agent(&data, "OPENCODE");
    assert_eq!(
        plans(opencode),
        pairs(&[
            ("ANTHROPIC", "Claude Max ($200/mo)"),
            ("ANTHROPIC", "Claude Pro ($20/mo)"),
            ("OPENAI", "ChatGPT Plus ($20/mo)"),
            ("OPENAI", "ChatGPT Pro ($200/mo)")
        ])
    );

    let gemini = agent(&data, "GEMINI");
    assert!(plans(gemini).is_empty());
    let note = gemini["note"].as_str().unwrap();
    assert!(note.starts_with("API key only") && note.contains("Google One AI Premium"), "{note}");

    // API keys only, from three providers.
    for name in ["AIDER", "CRUSH"] {
        let a = agent(&data, name);
        assert!(plans(a).is_empty(), "{a}");
        assert!(a["note"].as_str().unwrap().starts_with("API keys only"), "{a}");
        let methods: Vec<(&str, &str, &str)> = a["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["provider"].as_str().unwrap(), m["method"].as_str().unwrap(), m["envVar"].as_str().unwrap()))
            .collect();
        assert_eq!(
            methods,
            [
                ("ANTHROPIC", "API_KEY", "ANTHROPIC_API_KEY"),
                ("OPENAI", "API_KEY", "OPENAI_API_KEY"),
                ("GOOGLE", "API_KEY", "GEMINI_API_KEY")
            ]
        );
    }

    // Every method of every agent has a label; only paste methods have a paste field.
    for a in data["agents"].as_array().unwrap() {
        for m in a["methods"].as_array().unwrap() {
            assert!(!m["label"].as_str().unwrap().is_empty(), "{m}");
            assert_eq!(m["tokenLabel"].is_string(), m["method"] == "PASTE_TOKEN", "{m}");
        }
    }
}

#[tokio::test]
async fn providers_in_display_order_with_their_key_variables() {
    let server = Server::start().await;
    let (_, token) = server.create_user("prov@example.com").await;
    let data = server.ok(&token, "{ providers { provider name apiKeyEnvVar } }", json!({})).await;
    let got: Vec<(String, String, String)> = data["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap().to_owned();
            (s("provider"), s("name"), s("apiKeyEnvVar"))
        })
        .collect();
    let want = [
        ("ANTHROPIC", "Anthropic", "ANTHROPIC_API_KEY"),
        ("OPENAI", "OpenAI", "OPENAI_API_KEY"),
        ("GOOGLE", "Google", "GEMINI_API_KEY"),
        ("GITHUB", "GitHub", "COPILOT_GITHUB_TOKEN"),
    ];
    let want: Vec<(String, String, String)> =
        want.iter().map(|(a, b, c)| ((*a).to_owned(), (*b).to_owned(), (*c).to_owned())).collect();
    assert_eq!(got, want);

    // Signed in only.
    let (code, _) = server.err("", "{ providers { provider } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
}
