//! A person's write rate (issue 21, item 8): past the burst, saves and
//! removals are refused with LIMIT_EXCEEDED and change nothing; other
//! people are not affected.

use serde_json::{json, Value};

use crate::common::{credential_audit, Server, ANTHROPIC_KEY};

const SET_KEY: &str = "mutation($k: String!) { setApiKey(provider: ANTHROPIC, key: $k, checkOnSave: false) { id } }";

fn code_of(response: &Value) -> Option<&str> {
    response["errors"][0]["extensions"]["code"].as_str()
}

/// A burst of saves: past the burst, LIMIT_EXCEEDED with when to retry, and
/// nothing more is stored (one audit entry per accepted save); another
/// person is not affected.
#[tokio::test]
async fn a_burst_of_saves_is_limited_per_person() {
    let server = Server::start_with(&[("SESAME_WRITES__BURST", "5"), ("SESAME_WRITES__PER_MINUTE", "1")]).await;
    let (_, token) = server.create_user("burst@example.com").await;
    let mut accepted = 0;
    let mut refused = Vec::new();
    for _ in 0..12 {
        let answer = server.gql(&token, SET_KEY, json!({ "k": ANTHROPIC_KEY })).await;
        if answer["errors"].is_null() {
            accepted += 1;
        } else {
            refused.push(answer);
        }
    }
    assert_eq!(accepted, 5, "{refused:?}");
    assert_eq!(refused.len(), 7);
    for answer in &refused {
        assert_eq!(code_of(answer), Some("LIMIT_EXCEEDED"), "{answer}");
        let message = answer["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains("try again in") && message.contains("SESAME_WRITES__PER_MINUTE"), "{message}");
    }
    let removal = server.gql(&token, "mutation { removeApiKey(provider: ANTHROPIC) }", json!({})).await;
    assert_eq!(code_of(&removal), Some("LIMIT_EXCEEDED"), "removals count too: {removal}");
    let saves = credential_audit(&server).await.len();
    assert_eq!(saves, 5, "one audit entry per accepted save, none for refused ones");

    let (_, other) = server.create_user("other@example.com").await;
    server.ok(&other, SET_KEY, json!({ "k": ANTHROPIC_KEY })).await;
}
