//! Faults injected for real (issue 21, items 9, 13 and 14): a full disk
//! under SQLite (a small tmpfs, mounted as root), PostgreSQL backends
//! terminated under a stream of requests, and `rotate-key` beside a server
//! that writes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, Database};
use serde_json::{json, Value};

use crate::common::*;
use crate::postgres::TempDb;

const ISSUE: &str = "mutation($u: ID!, $t: String!) { issueTaskCredentials(userId: $u, agent: CLAUDE_CODE, provider: ANTHROPIC, taskId: $t) { source env { name value } } }";
const SET_KEY: &str = "mutation($k: String!) { setApiKey(provider: ANTHROPIC, key: $k) { id hint } }";
const CREATE_USER: &str = "mutation($e: String!) { createUser(email: $e) { user { id } } }";

/// A distinct, well-formed Anthropic key whose hint ends in `n` (4 digits).
fn key(n: usize) -> String {
    format!("sk-ant-api03-TESTkey{}{n:04}", "A".repeat(40))
}

/// The code of a GraphQL answer: "OK", or its first error's code.
fn code_of(res: &Value) -> String {
    match res["errors"][0]["extensions"]["code"].as_str() {
        Some(code) => code.to_owned(),
        None if res["errors"].is_null() && !res["data"].is_null() => "OK".to_owned(),
        None => format!("no code: {res}"),
    }
}

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` (after printing SKIPPED) where mounting is not permitted.
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .is_ok_and(|out| out.status.success());
        if !mounted {
            eprintln!("SKIPPED: cannot mount a tmpfs here (the disk-full test needs root, as in CI)");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Fills the filesystem of `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // The last partial pages too.
    while file.write_all(&[0u8; 512]).is_ok() {}
    let _ = file.sync_all();
    path
}

async fn ready(server: &Server) -> (u16, Value) {
    let res = server.http().get(format!("{}/ready", server.url)).send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// These tests flood writes on purpose; the per-person write rate (tests/it/write_rate.rs) would refuse them.
const NO_WRITE_RATE: (&str, &str) = ("SESAME_WRITES__PER_MINUTE", "0");

#[tokio::test]
async fn a_full_disk_refuses_writes_with_unavailable_until_space_is_freed_and_loses_no_acknowledged_write() {
    let Some(disk) = Tmpfs::mount("2m") else { return };
    let data = disk.path().to_str().unwrap().to_owned();
    let server = Server::start_with(&[("SESAME_DATA_DIR", &data), NO_WRITE_RATE]).await;
    let runner = server.runner_token();
    let (user, token) = server.create_user("full@example.com").await;
    server.ok(&token, SET_KEY, json!({ "k": key(0) })).await;

    let filler = fill(disk.path());
    // Every write is OK or UNAVAILABLE, and an OK one must survive.
    let mut acknowledged_users = Vec::new();
    let mut last_key = 0;
    let mut refused = 0;
    for n in 1..=30 {
        let email = format!("w{n}@example.com");
        let res = server.gql(&server.admin_token, CREATE_USER, json!({ "e": email })).await;
        match code_of(&res).as_str() {
            "OK" => acknowledged_users.push(email),
            "UNAVAILABLE" => {
                refused += 1;
                let message = res["errors"][0]["message"].as_str().unwrap();
                assert!(message.contains("disk is full") && message.contains("try again"), "{message}");
            }
            other => panic!("a write on a full disk answered {other}: {res}"),
        }
        let res = server.gql(&token, SET_KEY, json!({ "k": key(n) })).await;
        match code_of(&res).as_str() {
            "OK" => last_key = n,
            "UNAVAILABLE" => refused += 1,
            other => panic!("a write on a full disk answered {other}: {res}"),
        }
    }
    assert!(refused > 0, "the disk was not full: every write succeeded");

    // Issuance: no plaintext without a durable audit entry.
    let mut issued_tasks = Vec::new();
    for n in 0..5 {
        let task = format!("full-task-{n}");
        let res = server.gql(&runner, ISSUE, json!({ "u": user, "t": task })).await;
        match code_of(&res).as_str() {
            "OK" => issued_tasks.push(task),
            "UNAVAILABLE" => assert!(!res.to_string().contains("TESTkey"), "plaintext without a commit: {res}"),
            other => panic!("issuance on a full disk answered {other}: {res}"),
        }
    }
    // Reads still work.
    server.ok(&token, "{ myCredentials { hint } }", json!({})).await;

    let (status, body) = ready(&server).await;
    assert_eq!(status, 503, "/ready on a full disk: {body}");
    assert!(body["status"].as_str().unwrap().contains("disk is full"), "{body}");

    // Space freed: writes commit again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ready(&server).await.0 != 200 {
        assert!(Instant::now() < deadline, "/ready stayed 503 after space was freed: {:?}", ready(&server).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in 100..105 {
        let email = format!("w{n}@example.com");
        server.ok(&server.admin_token, CREATE_USER, json!({ "e": email })).await;
        acknowledged_users.push(email);
        server.ok(&token, SET_KEY, json!({ "k": key(n) })).await;
        last_key = n;
    }
    let task = "after-full".to_owned();
    let issued = server.ok(&runner, ISSUE, json!({ "u": user, "t": task })).await;
    assert!(issued.to_string().contains(&key(last_key)), "{issued}");
    issued_tasks.push(task);

    // After a restart, every acknowledged write is there.
    let (dir, env) = server.stop();
    let server = Server::spawn(dir, env, false).await;
    let mine = server.ok(&token, "{ myCredentials { hint } }", json!({})).await;
    assert!(mine["myCredentials"][0]["hint"].as_str().unwrap().ends_with(&format!("{last_key:04}")), "{mine}");
    let db = Database::connect(format!("sqlite://{}/sesame.db?mode=ro", data)).await.unwrap();
    for email in &acknowledged_users {
        let found = db
            .query_one(sea_orm::Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM users WHERE email = ?",
                [email.as_str().into()],
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.try_get::<i64>("", "n").unwrap(), 1, "acknowledged user {email} was lost");
    }
    for task in &issued_tasks {
        let found = db
            .query_one(sea_orm::Statement::from_sql_and_values(
                db.get_database_backend(),
                "SELECT COUNT(*) AS n FROM audit_log WHERE task_id = ? AND action = 'TASK_CREDENTIALS_ISSUED'",
                [task.as_str().into()],
            ))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(found.try_get::<i64>("", "n").unwrap(), 1, "task {task} got plaintext but its audit entry was lost");
    }
    db.close().await.unwrap();
    drop(server);
}

#[tokio::test]
async fn lost_postgres_connections_answer_unavailable_and_the_pool_recovers() {
    let Some(pg) = TempDb::available().await else { return };
    let server = Server::start_with(&[("DATABASE_URL", &pg.url), NO_WRITE_RATE]).await;
    let (_, token) = server.create_user("cut@example.com").await;
    server.ok(&token, SET_KEY, json!({ "k": key(0) })).await;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..4 {
        let (url, token, stop) = (server.url.clone(), token.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut codes = Vec::new();
            let mut n = c * 10_000;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = if n % 2 == 0 {
                    json!({ "query": "{ myCredentials { hint } }" })
                } else {
                    json!({ "query": SET_KEY, "variables": { "k": key(n % 10_000) } })
                };
                let (_, res) = sesame_test_support::post_graphql(&http, &url, &token, &body).await.unwrap();
                codes.push((code_of(&res), res));
            }
            codes
        }));
    }
    let admin = Database::connect(
        std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into()),
    )
    .await
    .unwrap();
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
        pg.name
    );
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        admin.execute_unprepared(&terminate).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for client in clients {
        for (code, res) in client.await.unwrap() {
            assert!(code == "OK" || code == "UNAVAILABLE", "a lost connection answered {code}: {res}");
            if code == "UNAVAILABLE" {
                assert!(res.to_string().contains("try again"), "{res}");
            }
            *counts.entry(code).or_default() += 1;
        }
    }
    eprintln!("answers while backends were terminated: {counts:?}");

    // The pool recovers by itself.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let res = server.gql(&token, SET_KEY, json!({ "k": key(9999) })).await;
        if code_of(&res) == "OK" {
            break;
        }
        assert!(Instant::now() < deadline, "requests still fail after the backends came back: {res}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.ok(&token, "{ myCredentials { hint } }", json!({})).await;
    assert!(!server.log().contains("internal error"), "{}", server.log());
}

#[tokio::test]
async fn rotate_key_beside_a_writing_server_waits_its_turn() {
    let (old, new) = ("11".repeat(32), "22".repeat(32));
    // The server reads both keys, so rows the CLI re-encrypts stay readable.
    let server = Server::start_with(&[("ENCRYPTION_KEY", &new), ("ENCRYPTION_KEYS_OLD", &old), NO_WRITE_RATE]).await;
    let mut tokens = Vec::new();
    for n in 0..8 {
        let (_, token) = server.create_user(&format!("rot{n}@example.com")).await;
        server.ok(&token, SET_KEY, json!({ "k": key(n) })).await;
        tokens.push(token);
    }

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for (c, token) in tokens.into_iter().enumerate() {
        let (url, stop) = (server.url.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut n = c * 1000;
            let mut codes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                let body = json!({ "query": SET_KEY, "variables": { "k": key(n) } });
                let (_, res) = sesame_test_support::post_graphql(&http, &url, &token, &body).await.unwrap();
                codes.push((code_of(&res), res));
            }
            codes
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let data = server.data_dir();
    for _ in 0..5 {
        let (data, old, new) = (data.clone(), old.clone(), new.clone());
        let out = tokio::task::spawn_blocking(move || {
            cli_in(&data, &[("ENCRYPTION_KEY", &new), ("ENCRYPTION_KEYS_OLD", &old)], &["rotate-key"])
        })
        .await
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("database is locked"), "a raw SQLite error: {stderr}");
        if !out.status.success() {
            assert!(stderr.contains("run rotate-key again") && stderr.contains("stop the server"), "{stderr}");
        } else {
            assert!(String::from_utf8_lossy(&out.stdout).contains("re-encrypted"), "{out:?}");
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        for (code, res) in writer.await.unwrap() {
            assert!(code == "OK" || code == "UNAVAILABLE", "a write beside rotate-key answered {code}: {res}");
        }
    }
}
