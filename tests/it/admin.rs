//! Admins manage users and delete credentials, but never read secrets or hints.

use serde_json::json;

use crate::common::*;

async fn user_with_key(server: &Server, email: &str) -> (String, String, String) {
    let (user_id, token) = server.create_user(email).await;
    let id = server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    (user_id, token, id)
}

fn assert_forbidden_hint(res: &serde_json::Value) {
    let errors = res["errors"].as_array().unwrap_or_else(|| panic!("expected errors: {res}"));
    assert!(errors.iter().any(|e| e["extensions"]["code"] == "FORBIDDEN"), "{res}");
    assert!(!res.to_string().contains("9f2c"), "hint leaked: {res}");
}

#[tokio::test]
async fn admin_reading_a_hint_is_forbidden_in_every_query_shape() {
    let server = Server::start().await;
    let (_, _, cred) = user_with_key(&server, "owner@example.com").await;
    let admin = server.admin_token.clone();
    let vars = json!({ "id": cred });
    let shapes = [
        "query($id: ID!) { credential(id: $id) { id hint } }",
        "query($id: ID!) { credential(id: $id) { id peek: hint } }",
        "query($id: ID!) { credential(id: $id) { ...F } } fragment F on Credential { hint }",
        "query($id: ID!) { credential(id: $id) { ... on Credential { hint } } }",
        "query($id: ID!) { credential(id: $id) { ... @include(if: true) { hint } } }",
        "{ credentials { nodes { id hint } } }",
        "{ credentials { nodes { ...F } } } fragment F on Credential { id h: hint }",
    ];
    for query in shapes {
        let res = server.gql(&admin, query, vars.clone()).await;
        assert_forbidden_hint(&res);
    }
    // Metadata is visible.
    let meta = server
        .ok(&admin, "query($id: ID!) { credential(id: $id) { id provider kind owner { email } } }", vars.clone())
        .await;
    assert_eq!(meta["credential"]["owner"]["email"], "owner@example.com");

    // In a batch: every operation that asks for the hint is refused.
    let batch = json!([
        { "query": shapes[0], "variables": vars },
        { "query": shapes[2], "variables": vars },
        { "query": "{ me { email } }" }
    ]);
    let (status, res) = server.post_json(&admin, &batch).await;
    assert_eq!(status, 200);
    let results = res.as_array().unwrap();
    assert_forbidden_hint(&results[0]);
    assert_forbidden_hint(&results[1]);
    assert_eq!(results[2]["data"]["me"]["email"], "admin@localhost");
}

#[tokio::test]
async fn admin_lists_and_deletes_without_reading() {
    let server = Server::start().await;
    let admin = server.admin_token.clone();
    let (u1, t1, c1) = user_with_key(&server, "u1@example.com").await;
    let (u2, t2, _) = user_with_key(&server, "u2@example.com").await;
    server.api().save_subscription(&t2, json!({ "agent": "CLAUDE_CODE", "token": CLAUDE_OAT })).await.unwrap();

    // Users, paginated (admin + 2 users).
    let page1 = server.ok(&admin, "{ users(first: 2) { nodes { id email role } nextCursor } }", json!({})).await;
    assert_eq!(page1["users"]["nodes"].as_array().unwrap().len(), 2);
    let cursor = page1["users"]["nextCursor"].as_str().unwrap();
    let page2 = server
        .ok(
            &admin,
            "query($a: String) { users(first: 2, after: $a) { nodes { email } nextCursor } }",
            json!({ "a": cursor }),
        )
        .await;
    assert_eq!(page2["users"]["nodes"].as_array().unwrap().len(), 1);
    assert!(page2["users"]["nextCursor"].is_null());
    let (code, _) = server.err(&admin, "{ users(first: 1000) { nodes { id } } }", json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");
    let (code, _) = server.err(&admin, "{ users(after: \"garbage!!\") { nodes { id } } }", json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");

    // Credential metadata with filters.
    let all = server.ok(&admin, "{ credentials { nodes { id owner { id } status } } }", json!({})).await;
    assert_eq!(all["credentials"]["nodes"].as_array().unwrap().len(), 3);
    let u2s = server
        .ok(&admin, "query($o: ID) { credentials(ownerId: $o, status: ACTIVE) { nodes { id } } }", json!({ "o": u2 }))
        .await;
    assert_eq!(u2s["credentials"]["nodes"].as_array().unwrap().len(), 2);

    // Users cannot do admin things.
    for query in [
        "{ users { nodes { id } } }",
        "{ credentials { nodes { id } } }",
        "mutation { createUser(email: \"x@example.com\") { token } }",
        "{ auditLog { nodes { id } } }",
    ] {
        let (code, _) = server.err(&t1, query, json!({})).await;
        assert_eq!(code, "FORBIDDEN", "{query}");
    }
    let (code, _) = server.err(&t1, "mutation($id: ID!) { deleteCredential(id: $id) }", json!({ "id": c1 })).await;
    assert_eq!(code, "FORBIDDEN");

    // Admin deletes one credential, then all of a user's.
    let deleted = server.ok(&admin, "mutation($id: ID!) { deleteCredential(id: $id) }", json!({ "id": c1 })).await;
    assert_eq!(deleted["deleteCredential"], true);
    assert!(server.api().my_credential_ids(&t1).await.unwrap().is_empty());
    let (code, _) = server.err(&admin, "mutation($id: ID!) { deleteCredential(id: $id) }", json!({ "id": c1 })).await;
    assert_eq!(code, "NOT_FOUND");
    let n = server.ok(&admin, "mutation($u: ID!) { deleteUserCredentials(userId: $u) }", json!({ "u": u2 })).await;
    assert_eq!(n["deleteUserCredentials"], 2);
    let (code, _) = server
        .err(&admin, "mutation { deleteUserCredentials(userId: \"0190c1d2-0000-7000-8000-000000000000\") }", json!({}))
        .await;
    assert_eq!(code, "NOT_FOUND");
    let _ = u1;

    // Duplicate email and a bad email are refused.
    let (code, _) = server.err(&admin, "mutation { createUser(email: \"u1@example.com\") { token } }", json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");
    let (code, msg) = server.err(&admin, "mutation { createUser(email: \"not an email\") { token } }", json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("email"), "{msg}");

    // The audit trail records it all, with no secret material.
    let audit = server
        .ok(
            &admin,
            "{ auditLog(first: 100) { nodes { actorKind action ownerId credentialId provider detail } nextCursor } }",
            json!({}),
        )
        .await;
    let text = audit.to_string();
    for action in ["USER_CREATED", "CREDENTIAL_CREATED", "ADMIN_DELETED_CREDENTIAL"] {
        assert!(text.contains(action), "{action} missing from {text}");
    }
    assert!(
        !text.contains("9f2c") && !text.contains("TESTkey") && !text.contains("TESTsub"),
        "secret in audit: {text}"
    );
    let page = server.ok(&admin, "{ auditLog(first: 2) { nodes { id } nextCursor } }", json!({})).await;
    let cursor = page["auditLog"]["nextCursor"].as_str().unwrap();
    let next = server
        .ok(&admin, "query($a: String) { auditLog(first: 2, after: $a) { nodes { id } } }", json!({ "a": cursor }))
        .await;
    assert_ne!(next["auditLog"]["nodes"][0]["id"], page["auditLog"]["nodes"][0]["id"]);
}

#[tokio::test]
async fn admin_is_also_a_person_with_own_credentials() {
    let server = Server::start().await;
    let admin = server.admin_token.clone();
    let own = server
        .ok(
            &admin,
            "mutation($k: String!) { setApiKey(provider: OPENAI, key: $k) { id hint } }",
            json!({ "k": OPENAI_KEY }),
        )
        .await;
    assert!(own["setApiKey"]["hint"].as_str().unwrap().ends_with("1a2b"));
}
