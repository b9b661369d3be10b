//! Aider and Crush, through the API: API keys only, one provider's key per
//! task, in the variable the agent reads; subscriptions refused with the
//! reason, and nothing stored.

use serde_json::{json, Value};

use crate::common::*;

const SET_KEY: &str = "mutation($p: Provider!, $k: String!) { setApiKey(provider: $p, key: $k) { id } }";
const SAVE: &str = "mutation($i: SubscriptionCredentialInput!) { saveSubscriptionCredential(input: $i) { id } }";
const ISSUE: &str = "mutation($u: ID!, $a: Agent!, $p: Provider, $t: String!) { issueTaskCredentials(userId: $u, agent: $a, provider: $p, taskId: $t) { source provider env { name value } files { path } } }";

fn env_of(issued: &Value) -> Vec<(String, String)> {
    issued["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap().to_owned()))
        .collect()
}

#[tokio::test]
async fn aider_and_crush_are_handed_the_tasks_provider_key_only() {
    let server = Server::start().await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("keys@example.com").await;
    for (provider, key) in [("ANTHROPIC", ANTHROPIC_KEY), ("OPENAI", OPENAI_KEY), ("GOOGLE", GEMINI_KEY)] {
        server.ok(&token, SET_KEY, json!({ "p": provider, "k": key })).await;
    }
    for agent in ["AIDER", "CRUSH"] {
        for (n, (provider, var, key)) in [
            ("ANTHROPIC", "ANTHROPIC_API_KEY", ANTHROPIC_KEY),
            ("OPENAI", "OPENAI_API_KEY", OPENAI_KEY),
            ("GOOGLE", "GEMINI_API_KEY", GEMINI_KEY),
        ]
        .into_iter()
        .enumerate()
        {
            let task = format!("{agent}-{n}");
            let issued = server.ok(&runner, ISSUE, json!({ "u": user, "a": agent, "p": provider, "t": task })).await;
            let issued = &issued["issueTaskCredentials"];
            assert_eq!(issued["source"], "USER_API_KEY", "{agent}/{provider}: {issued}");
            assert_eq!(issued["provider"], provider);
            assert_eq!(env_of(issued), [(var.to_owned(), key.to_owned())], "{agent}/{provider}");
            assert!(issued["files"].as_array().unwrap().is_empty(), "{agent}/{provider}: {issued}");
        }
        // Three providers: the task names one.
        let (code, message) =
            server.err(&runner, ISSUE, json!({ "u": user, "a": agent, "t": format!("{agent}-x") })).await;
        assert_eq!(code, "BAD_USER_INPUT", "{message}");
        assert!(message.contains("needs a provider") && message.contains("GOOGLE"), "{message}");
        // GitHub is none of its providers.
        let (code, _) = server
            .err(&runner, ISSUE, json!({ "u": user, "a": agent, "p": "GITHUB", "t": format!("{agent}-y") }))
            .await;
        assert_eq!(code, "BAD_USER_INPUT");
    }
}

#[tokio::test]
async fn aider_and_crush_refuse_subscriptions_with_the_reason() {
    let server = Server::start().await;
    let (_, token) = server.create_user("subs@example.com").await;
    for (agent, name) in [("AIDER", "Aider"), ("CRUSH", "Crush")] {
        for provider in ["ANTHROPIC", "OPENAI"] {
            let input = json!({ "agent": agent, "provider": provider, "token": CLAUDE_OAT });
            let (code, message) = server.err(&token, SAVE, json!({ "i": input })).await;
            assert_eq!(code, "BAD_USER_INPUT", "{message}");
            assert!(message.starts_with(&format!("{name} is API key only")), "{message}");
            assert!(!message.contains(&CLAUDE_OAT[14..]), "the token leaked: {message}");
        }
    }
    let mine = server.ok(&token, "{ myCredentials { id } }", json!({})).await;
    assert!(mine["myCredentials"].as_array().unwrap().is_empty(), "{mine}");
}
