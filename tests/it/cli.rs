//! The command line: start-up on a bare machine, keys, users, tokens, rotation.

use serde_json::json;

use crate::common::*;

#[tokio::test]
async fn fresh_start_generates_a_private_key_and_warns() {
    let server = Server::start().await;
    let key_file = server.data_dir().join("encryption.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    assert_eq!(key.trim().len(), 64);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let log = server.log();
    assert!(log.contains("Production must set ENCRYPTION_KEY"), "{log}");
    assert!(!log.contains(key.trim()), "the key itself was logged");

    // A restart reuses the key and does not make another admin.
    let admin = server.admin_token.clone();
    let (_, token) = server.create_user("kim@example.com").await;
    server.api().set_api_key(&token, Provider::Openai, OPENAI_KEY).await.unwrap();
    let (dir, env) = server.stop();
    let server = Server::spawn(dir, env, false).await;
    assert!(server.admin_token.is_empty());
    server.ok(&admin, "{ me { email } }", json!({})).await;
    let mine = server.ok(&token, "{ myCredentials { hint } }", json!({})).await;
    assert!(mine["myCredentials"][0]["hint"].as_str().unwrap().ends_with("1a2b"));
}

#[test]
fn keygen_and_bad_keys() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli_in(dir.path(), &[], &["keygen"]);
    let key = String::from_utf8(out.stdout).unwrap();
    assert!(key.trim().len() == 64 && key.trim().bytes().all(|b| b.is_ascii_hexdigit()));

    for bad in ["tooshort", "zz".repeat(32).as_str(), "correct horse battery staple correct horse battery staple!!"] {
        let out = cli_in(dir.path(), &[("ENCRYPTION_KEY", bad)], &["migrate"]);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("ENCRYPTION_KEY") && err.contains("64 hex"), "{err}");
        assert!(!err.contains(bad), "the bad key was echoed");
    }
    // 32 bytes as hex, 64 bytes as hex, 64 bytes as base64 are all accepted.
    use base64::Engine;
    for good in [key.trim().to_owned(), "ab".repeat(64), base64::engine::general_purpose::STANDARD.encode([9u8; 64])] {
        let dir = tempfile::tempdir().unwrap();
        let out = cli_in(dir.path(), &[("ENCRYPTION_KEY", &good)], &["migrate"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(!dir.path().join("encryption.key").exists(), "no key file when ENCRYPTION_KEY is set");
    }
}

#[test]
fn configuration_errors_name_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli_in(dir.path(), &[("SESAME_LISTEN", "not-an-address")], &["migrate"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("listen"), "{err}");

    let out = cli_in(dir.path(), &[("SESAME_GRAPHQL__MAX_DEPTH", "deep")], &["migrate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("graphql.max_depth"));

    // A TOML file is read, and environment wins over it.
    let file = dir.path().join("sesame.toml");
    std::fs::write(&file, "[graphql]\nmax_batch = 3\nintrospection = false\n").unwrap();
    let out = cli_in(dir.path(), &[("SESAME_CONFIG", file.to_str().unwrap())], &["migrate"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&file, "[graphql]\nmax_batchh = 3\n").unwrap();
    let out = cli_in(dir.path(), &[], &["--config", file.to_str().unwrap(), "migrate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("max_batchh"));
}

#[tokio::test]
async fn users_and_tokens_from_the_command_line() {
    let server = Server::start().await;
    let out = server.cli(&["user", "create", "--email", "Ops@Example.com", "--admin", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["email"], "ops@example.com");
    assert_eq!(created["role"], "ADMIN");
    let me = server.ok(created["token"].as_str().unwrap(), "{ me { id role } }", json!({})).await;
    assert_eq!(me["me"]["id"], created["id"]);
    assert_eq!(me["me"]["role"], "ADMIN");

    let out = server.cli(&["user", "create", "--email", "ops@example.com"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));

    let out = server.cli(&["token", "revoke", "0190c1d2-0000-7000-8000-000000000000"]);
    assert!(!out.status.success());
}

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
