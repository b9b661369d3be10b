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
