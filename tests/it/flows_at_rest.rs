//! Sign-in flows at rest (issue 12, item 5): user codes and states are
//! never stored in plain text, and rows from before are sealed at start-up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::json;

use crate::common::*;
use crate::data_dir::{files_in, start_in_subdir};
use crate::fake_provider::{FakeProvider, Reply};

/// Every file in the data directory, as bytes.
fn raw_bytes(data: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_in(data).into_iter().filter(|p| p.is_file()).map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

fn assert_absent(data: &Path, needles: &[&str]) {
    for (path, bytes) in raw_bytes(data) {
        for needle in needles {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{} holds {needle:?} in plain text",
                path.display()
            );
        }
    }
}

/// Every text value of every `oauth_flows` row.
async fn flow_texts(data: &Path) -> Vec<HashMap<String, String>> {
    use sqlx::{Column, Row};
    let url = format!("sqlite://{}?mode=ro", data.join("sesame.db").display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let rows = sqlx::query("SELECT * FROM oauth_flows").fetch_all(&mut conn).await.unwrap();
    rows.iter()
        .map(|row| {
            row.columns()
                .iter()
                .filter_map(|c| {
                    let value: Option<String> = row.try_get(c.ordinal()).ok().flatten();
                    value.map(|v| (c.name().to_owned(), v))
                })
                .collect()
        })
        .collect()
}

pub(crate) const START_DEVICE: &str =
    "mutation($a: Agent!, $p: Provider!) { startDeviceFlow(agent: $a, provider: $p) { id userCode } }";
const START_AUTH: &str =
    "mutation { startAuthorizationFlow(agent: CLAUDE_CODE, provider: ANTHROPIC) { id authorizeUrl } }";
pub(crate) const FLOW: &str = "query($id: ID!) { deviceFlow(id: $id) { status userCode } }";

/// A fake provider whose device flows stay pending for the whole test.
pub(crate) async fn slow_provider() -> FakeProvider {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    fake.state.lock().unwrap().interval = 120;
    fake
}

fn state_of(authorize_url: &str) -> String {
    let url = url::Url::parse(authorize_url).unwrap();
    url.query_pairs().find(|(k, _)| k == "state").unwrap().1.into_owned()
}

#[tokio::test]
async fn sign_in_user_codes_and_state_are_not_stored_in_plain_text() {
    let fake = slow_provider().await;
    let (server, data) = start_in_subdir(&fake.env()).await;
    let (_, token) = server.create_user("flows@example.com").await;
    let github =
        server.ok(&token, START_DEVICE, json!({ "a": "COPILOT", "p": "GITHUB" })).await["startDeviceFlow"].clone();
    let openai =
        server.ok(&token, START_DEVICE, json!({ "a": "CODEX", "p": "OPENAI" })).await["startDeviceFlow"].clone();
    assert_eq!((github["userCode"].as_str(), openai["userCode"].as_str()), (Some("ABCD-1234"), Some("WXYZ-9876")));
    let auth = server.ok(&token, START_AUTH, json!({})).await["startAuthorizationFlow"].clone();
    let state = state_of(auth["authorizeUrl"].as_str().unwrap());
    assert!(state.len() >= 16, "{state}");

    // The owner still sees the user code (decrypted for the response).
    for (flow, code) in [(&github, "ABCD-1234"), (&openai, "WXYZ-9876")] {
        let seen = server.ok(&token, FLOW, json!({ "id": flow["id"] })).await;
        assert_eq!(seen["deviceFlow"]["userCode"], code);
    }

    let rows = flow_texts(&data).await;
    assert_eq!(rows.len(), 3);
    for row in &rows {
        for (column, value) in row {
            for needle in ["ABCD-1234", "WXYZ-9876", state.as_str()] {
                assert!(!value.contains(needle), "oauth_flows.{column} holds {needle:?}: {value}");
            }
        }
    }
    assert_absent(&data, &["ABCD-1234", "WXYZ-9876", &state]);

    // The stored state still protects completion.
    let complete = "mutation($id: ID!, $c: String!) { completeAuthorizationFlow(id: $id, code: $c) { id } }";
    let (code, _) = server.err(&token, complete, json!({ "id": auth["id"], "c": "good-code#wrong-state" })).await;
    assert_eq!(code, "BAD_USER_INPUT");
    server.ok(&token, complete, json!({ "id": auth["id"], "c": format!("good-code#{state}") })).await;
}

#[tokio::test]
async fn plain_text_flow_rows_from_before_are_sealed_at_start_up() {
    let fake = slow_provider().await;
    let (server, data) = start_in_subdir(&fake.env()).await;
    let admin = server.admin_token.clone();
    let (_, token) = server.create_user("legacy@example.com").await;
    let flow =
        server.ok(&token, START_DEVICE, json!({ "a": "COPILOT", "p": "GITHUB" })).await["startDeviceFlow"].clone();
    let auth = server.ok(&token, START_AUTH, json!({})).await["startAuthorizationFlow"].clone();
    let (dir, env) = server.stop();

    // Rows as the previous version wrote them: the code, the link with the
    // code, and the authorize URL with the state, all in plain text.
    let db = sea_orm::Database::connect(format!("sqlite://{}", data.join("sesame.db").display())).await.unwrap();
    use sea_orm::ConnectionTrait;
    db.execute_unprepared(&format!(
        "UPDATE oauth_flows SET user_code = 'ABCD-1234', sealed_user_code = NULL, \
         verification_uri_complete = 'https://github.com/login/device?user_code=ABCD-1234', \
         sealed_verification_uri_complete = NULL WHERE id = '{}'",
        flow["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    db.execute_unprepared(&format!(
        "UPDATE oauth_flows SET authorize_url = 'https://claude.ai/oauth/authorize?state=LEGACYstate0123456789' WHERE id = '{}'",
        auth["id"].as_str().unwrap()
    ))
    .await
    .unwrap();
    db.close().await.unwrap();

    let mut server = Server::spawn_with_umask(dir, env, "022", false).await;
    server.admin_token = admin;
    let seen = server.ok(&token, FLOW, json!({ "id": flow["id"] })).await;
    assert_eq!(seen["deviceFlow"]["userCode"], "ABCD-1234");
    for row in flow_texts(&data).await {
        for (column, value) in &row {
            for needle in ["ABCD-1234", "LEGACYstate0123456789"] {
                assert!(!value.contains(needle), "oauth_flows.{column} still holds {needle:?}: {value}");
            }
        }
        if row["kind"] == "DEVICE" {
            assert!(row["sealed_user_code"].starts_with("sv1."), "{row:?}");
            assert!(row["sealed_verification_uri_complete"].starts_with("sv1."), "{row:?}");
        }
    }
    assert_absent(&data, &["ABCD-1234", "LEGACYstate0123456789"]);
}
