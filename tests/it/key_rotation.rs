//! Key rotation: `rotate-key` re-encrypts every secret (credentials and
//! sign-in flows) so the old key can go.

use serde_json::json;

use crate::common::*;
use crate::data_dir::start_in_subdir;
use crate::flows_at_rest::{slow_provider, FLOW, START_DEVICE};

#[tokio::test]
async fn key_rotation_re_encrypts_and_frees_the_old_key() {
    let old = "11".repeat(32);
    let new = "22".repeat(32);
    let server = Server::start_with(&[("ENCRYPTION_KEY", &old)]).await;
    let (_, token) = server.create_user("rot@example.com").await;
    server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    // A pending sign-in flow holds an encrypted PKCE verifier and state too.
    let flow = server
        .ok(&token, "mutation { startAuthorizationFlow(agent: CLAUDE_CODE, provider: ANTHROPIC) { id } }", json!({}))
        .await;
    let flow_id = flow["startAuthorizationFlow"]["id"].as_str().unwrap().to_owned();
    let (dir, _) = server.stop();

    // With only the new key, the old ciphertexts cannot be read: a loud
    // INTERNAL error for the client, the missing key's fingerprint in the log.
    let server = Server::spawn(dir, vec![("ENCRYPTION_KEY".into(), new.clone())], false).await;
    let (code, _) = server.err(&token, "{ myCredentials { hint } }", json!({})).await;
    assert_eq!(code, "INTERNAL");
    assert!(server.log().contains("not in the keyring"), "{}", server.log());
    let (dir, _) = server.stop();

    // Rotate with the old key as decrypt-only.
    let out = cli_in(dir.path(), &[("ENCRYPTION_KEY", &new), ("ENCRYPTION_KEYS_OLD", &old)], &["rotate-key"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("re-encrypted 2 secrets"));

    // Now the old key can go.
    let server = Server::spawn(dir, vec![("ENCRYPTION_KEY".into(), new)], false).await;
    let mine = server.ok(&token, "{ myCredentials { hint } }", json!({})).await;
    assert!(mine["myCredentials"][0]["hint"].as_str().unwrap().ends_with("9f2c"));
    // The flow's secret opens too: a wrong state is recognised as such.
    let complete = "mutation($id: ID!) { completeAuthorizationFlow(id: $id, code: \"abc#wrong\") { id } }";
    let (code, message) = server.err(&token, complete, json!({ "id": flow_id })).await;
    assert_eq!(code, "BAD_USER_INPUT", "{message}");
    assert!(message.contains("state"), "{message}");
}

#[tokio::test]
async fn rotate_key_re_encrypts_sealed_user_codes() {
    let fake = slow_provider().await;
    let (old, new) = ("11".repeat(32), "22".repeat(32));
    let mut extra = fake.env();
    extra.push(("ENCRYPTION_KEY".into(), old.clone()));
    let (server, data) = start_in_subdir(&extra).await;
    let admin = server.admin_token.clone();
    let (_, token) = server.create_user("rotate@example.com").await;
    let flow =
        server.ok(&token, START_DEVICE, json!({ "a": "COPILOT", "p": "GITHUB" })).await["startDeviceFlow"].clone();
    let (dir, mut env) = server.stop();

    env.retain(|(k, _)| k != "ENCRYPTION_KEY");
    let mut rotate = env.clone();
    rotate.push(("ENCRYPTION_KEY".into(), new.clone()));
    rotate.push(("ENCRYPTION_KEYS_OLD".into(), old));
    let out = command_with_umask("022", &data, &rotate).arg("rotate-key").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Only the new key from here on: the code must still decrypt.
    env.push(("ENCRYPTION_KEY".into(), new));
    let mut server = Server::spawn_with_umask(dir, env, "022", false).await;
    server.admin_token = admin;
    let seen = server.ok(&token, FLOW, json!({ "id": flow["id"] })).await;
    assert_eq!(seen["deviceFlow"]["userCode"], "ABCD-1234", "{seen}");
}
