//! The HTTP surface is safe to expose: methods, content types, headers, limits,
//! authentication, error codes, and no secret in logs or on disk.

use serde_json::{json, Value};

use crate::common::*;

#[tokio::test]
async fn transport_rules() {
    let server = Server::start().await;
    let http = server.http();
    let url = format!("{}/graphql", server.url);
    let token = server.admin_token.clone();

    // Queries over GET work; mutations and subscriptions over GET are 405.
    let res = http.get(&url).query(&[("query", "{ me { email } }")]).bearer_auth(&token).send().await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["data"]["me"]["email"], "admin@localhost");
    for query in
        ["mutation { createUser(email: \"x@example.com\") { token } }", "subscription { credentialEvents { kind } }"]
    {
        let res = http.get(&url).query(&[("query", query)]).bearer_auth(&token).send().await.unwrap();
        assert_eq!(res.status(), 405, "{query}");
    }
    let named = http
        .get(&url)
        .query(&[
            ("query", "query Q { me { id } } mutation M { removeAgentCredentials(agent: CODEX) }"),
            ("operationName", "M"),
        ])
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(named.status(), 405);

    // POST must be JSON: no form or text/plain "simple requests" (CSRF).
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        let res = http
            .post(&url)
            .header("content-type", ct)
            .bearer_auth(&token)
            .body(r#"{"query":"mutation { createUser(email: \"csrf@example.com\") { token } }"}"#)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 415, "{ct}");
    }
    let users = server.ok(&token, "{ users { nodes { email } } }", json!({})).await;
    assert!(!users.to_string().contains("csrf@"));

    // Broken JSON, an oversized body, an oversized batch.
    let res = http
        .post(&url)
        .header("content-type", "application/json")
        .bearer_auth(&token)
        .body("{\"query\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "BAD_USER_INPUT");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("line 1"));
    let huge = json!({ "query": "{ me { id } }", "variables": { "x": "a".repeat(400_000) } });
    let (status, body) = server.post_json(&token, &huge).await;
    assert_eq!(status, 413, "{body}");
    // A refusal before the body is read whole says the connection closes, so
    // a pooling client does not reuse it (the rest is never read).
    let res = http
        .post(&url)
        .header("content-type", "application/json")
        .bearer_auth(&token)
        .body(huge.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert_eq!(res.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    let res = http.post(&url).header("content-type", "text/plain").bearer_auth(&token).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 415);
    assert_eq!(res.headers().get("connection").map(|v| v.to_str().unwrap()), Some("close"));
    let batch: Vec<_> = (0..11).map(|_| json!({ "query": "{ me { id } }" })).collect();
    let (status, body) = server.post_json(&token, &json!(batch)).await;
    assert_eq!(status, 400);
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("batch"));

    // Depth limit.
    let nested = format!(
        "{{ __schema {{ types {{ fields {{ type {} name {} }} }} }} }}",
        "{ ofType ".repeat(20),
        "} ".repeat(20)
    );
    let (code, _) = server.err(&token, &nested, json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");

    // Syntax errors carry a code.
    let (code, _) = server.err(&token, "{ me { ", json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");

    let health = http.get(format!("{}/health", server.url)).send().await.unwrap();
    assert_eq!(health.status(), 200);
}

#[tokio::test]
async fn authentication_and_roles() {
    let server = Server::start().await;
    // No token: data is refused, introspection still answers.
    let (code, _) = server.err("", "{ me { email } }", json!({})).await;
    assert_eq!(code, "UNAUTHENTICATED");
    server.ok("", "{ __schema { queryType { name } } }", json!({})).await;

    for bad in ["sv_short", "ghp_notours", "sv_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let (status, body) = server.post_json(bad, &json!({ "query": "{ me { email } }" })).await;
        assert_eq!(status, 401, "{bad}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        assert!(!body.to_string().contains(bad), "token echoed");
    }

    // A runner is not a person.
    let runner = server.runner_token();
    let (code, _) = server.err(&runner, "{ me { email } }", json!({})).await;
    assert_eq!(code, "FORBIDDEN");
    let (code, _) = server
        .err(
            &runner,
            "mutation($k: String!) { setApiKey(provider: OPENAI, key: $k) { id } }",
            json!({ "k": OPENAI_KEY }),
        )
        .await;
    assert_eq!(code, "FORBIDDEN");

    // People may not act as the runner.
    let (code, _) = server
        .err(&server.admin_token, "mutation { issueTaskCredentials(userId: \"0190c1d2-0000-7000-8000-000000000000\", agent: CODEX, taskId: \"t1\") { source } }", json!({}))
        .await;
    assert_eq!(code, "FORBIDDEN");

    // Revoked tokens stop working at once.
    let out = server.cli(&["token", "create", "--runner", "--name", "temp", "--json"]);
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let temp = created["token"].as_str().unwrap();
    server.ok(temp, "{ agents { agent } }", json!({})).await;
    let out = server.cli(&["token", "revoke", created["id"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, _) = server.post_json(temp, &json!({ "query": "{ agents { agent } }" })).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn introspection_can_be_turned_off() {
    let server = Server::start_with(&[("SESAME_GRAPHQL__INTROSPECTION", "false")]).await;
    let res = server.gql(&server.admin_token, "{ __schema { queryType { name } } }", json!({})).await;
    assert!(res["data"]["__schema"].is_null(), "{res}");
    let res = server.gql(&server.admin_token, "{ __type(name: \"Credential\") { fields { name } } }", json!({})).await;
    assert!(res["data"]["__type"].is_null(), "{res}");
    // Data queries still work.
    server.ok(&server.admin_token, "{ me { email } }", json!({})).await;
}

#[tokio::test]
async fn secrets_never_reach_the_log_or_the_database_in_plaintext() {
    let server = Server::start().await;
    let (_, token) = server.create_user("eve@example.com").await;
    server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    server.api().save_subscription(&token, json!({ "agent": "CLAUDE_CODE", "token": CLAUDE_OAT })).await.unwrap();
    // Failing inputs too.
    server
        .err(
            &token,
            "mutation($k: String!) { setApiKey(provider: OPENAI, key: $k) { id } }",
            json!({ "k": ANTHROPIC_KEY }),
        )
        .await;

    let mut haystack = server.log().into_bytes();
    for entry in std::fs::read_dir(server.data_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with("sesame.db") {
            haystack.extend(std::fs::read(&path).unwrap());
        }
    }
    let haystack = String::from_utf8_lossy(&haystack);
    for secret in [ANTHROPIC_KEY, CLAUDE_OAT, &ANTHROPIC_KEY[13..40], &CLAUDE_OAT[13..40]] {
        assert!(!haystack.contains(secret), "plaintext secret found on disk or in the log");
    }
    // The hint is encrypted too (nothing in the database is readable without the key).
    assert!(!haystack.contains("…9f2c"));
    assert!(!haystack.contains(&server.admin_token), "a bearer token was stored or logged");
}

#[tokio::test]
async fn unknown_ids_and_bad_ids() {
    let server = Server::start().await;
    let token = server.admin_token.clone();
    let (code, msg) = server.err(&token, "{ credential(id: \"nope\") { id } }", json!({})).await;
    assert_eq!(code, "BAD_USER_INPUT");
    assert!(msg.contains("id"), "{msg}");
    let none =
        server.ok(&token, "{ credential(id: \"0190c1d2-0000-7000-8000-000000000000\") { id } }", json!({})).await;
    assert!(none["credential"].is_null());
}

/// A token revoked while its WebSocket is open ends the session: the socket
/// closes with 4403 at the next re-check, and a new one is refused.
#[tokio::test]
async fn revoked_token_closes_its_open_websocket() {
    let server = Server::start_with(&[("SESAME_GRAPHQL__WS_TOKEN_RECHECK", "1s")]).await;
    let out = server.cli(&["token", "create", "--runner", "--name", "ws", "--json"]);
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let token = created["token"].as_str().unwrap();
    let (_, other) = server.create_user("ws-stays@example.com").await;
    let mut revoked_ws = crate::ws::open(&server.url, token).await;
    let mut other_ws = crate::ws::open(&server.url, &other).await;
    let subscribe =
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { credentialEvents { kind } }" } });
    crate::ws::send(&mut other_ws, subscribe).await;

    let out = server.cli(&["token", "revoke", created["id"].as_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let started = std::time::Instant::now();
    assert_eq!(crate::ws::close_code(&mut revoked_ws).await, Some(4403));
    assert!(started.elapsed() < std::time::Duration::from_secs(10), "closed after {:?}", started.elapsed());
    let mut again = crate::ws::connect(&server.url, "graphql-transport-ws").await;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    crate::ws::send(&mut again, init).await;
    assert_eq!(crate::ws::close_code(&mut again).await, Some(4403));

    // Another session, re-checked all along, is untouched.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    server.api().set_api_key(&other, Provider::Openai, OPENAI_KEY).await.unwrap();
    let event = crate::ws::recv(&mut other_ws).await.expect("event");
    assert_eq!(event["payload"]["data"]["credentialEvents"]["kind"], "CREATED", "{event}");
}

/// Every /graphql answer (data, errors, a refused method) is `no-store`
/// and `nosniff`; the playground lets WebSockets reach its own host only.
#[tokio::test]
async fn graphql_answers_are_not_stored_and_websockets_stay_on_the_host() {
    let server = Server::start().await;
    let http = server.http();
    let url = format!("{}/graphql", server.url);
    let answers = [
        http.post(&url).json(&json!({ "query": "{ me { id } }" })).bearer_auth(&server.admin_token).send().await,
        http.post(&url).json(&json!({ "query": "{" })).send().await,
        http.post(&url).body("x").send().await,
        http.get(format!("{url}?query=%7B__typename%7D")).send().await,
        http.put(&url).send().await,
        http.get(format!("{url}/ws")).send().await,
    ];
    for answer in answers {
        let answer = answer.unwrap();
        let headers = answer.headers();
        assert_eq!(headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"), "{answer:?}");
        assert_eq!(headers.get("x-content-type-options").and_then(|v| v.to_str().ok()), Some("nosniff"), "{answer:?}");
    }

    let page = http.get(format!("{}/", server.url)).send().await.unwrap();
    let csp = page.headers().get("content-security-policy").unwrap().to_str().unwrap().to_owned();
    let host = server.url.trim_start_matches("http://");
    assert!(csp.contains(&format!("connect-src 'self' ws://{host} wss://{host};")), "{csp}");
    assert!(!csp.contains(" ws: ") && !csp.contains("wss:;"), "no scheme-wide WebSocket source: {csp}");
}
