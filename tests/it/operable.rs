//! Operating the service (issue 17): request and provider logs (text and
//! JSON, never a secret), `/metrics` on its own port, `/ready`, and the
//! graceful shutdown (in-flight requests finish, WebSockets get 1001,
//! sign-in flows pass to another replica at once, exit 0).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{handler, post, EndpointExt, Response, Route};
use serde_json::{json, Value};
use tokio::sync::Notify;

use crate::common::*;
use crate::fake_provider::{FakeProvider, Reply};
use crate::postgres::TempDb;
use crate::ws;

/// The server's log as JSON objects (one per line; other lines skipped).
fn json_lines(log: &str) -> Vec<Value> {
    log.lines().filter_map(|l| serde_json::from_str::<Value>(l).ok()).collect()
}

fn with_message<'a>(lines: &'a [Value], message: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["message"] == message).collect()
}

/// Waits until the log has `n` lines containing `needle`.
async fn wait_for_log(server: &Server, needle: &str, n: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = server.log();
        if log.matches(needle).count() >= n || Instant::now() > deadline {
            return log;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The metrics listener's address, from the log line it writes.
fn metrics_addr(log: &str) -> String {
    for line in log.lines().filter(|l| l.contains("metrics listening")) {
        if let Ok(v) = serde_json::from_str::<Value>(line) {
            return v["addr"].as_str().unwrap().to_owned();
        }
        if let Some(rest) = line.split("addr=").nth(1) {
            return rest.split_whitespace().next().unwrap().to_owned();
        }
    }
    panic!("no metrics listener in the log:\n{log}");
}

/// The value of one sample line of `family` whose labels contain all of `labels`.
fn sample(text: &str, family: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{family}{{")) || l.starts_with(&format!("{family} ")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

#[tokio::test]
async fn operable_json_logs_have_request_ws_provider_and_flow_lines_without_secrets() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let mut env: Vec<(String, String)> = fake.env();
    env.push(("SESAME_LOG__FORMAT".into(), "json".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start_with(&env).await;
    let (user_id, token) = server.create_user("logs@example.com").await;

    let saved = server
        .ok(
            &token,
            "mutation SaveKey($k: String!) { setApiKey(provider: OPENAI, key: $k) { id } }",
            json!({ "k": OPENAI_KEY }),
        )
        .await;
    assert!(saved["setApiKey"]["id"].is_string());
    server.ok(&token, "query Mine { myCredentials { id } }", json!({})).await;
    let (status, _) = server
        .post_json("sv_notARealTokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", &json!({ "query": "{ me { id } }" }))
        .await;
    assert_eq!(status, 401);
    server.ok(&token, "mutation { startDeviceFlow(agent: COPILOT, provider: GITHUB) { id } }", json!({})).await;

    // A WebSocket session with one subscription, closed by the client.
    let mut socket = ws::open(&server.url, &token).await;
    ws::send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { credentialEvents { kind } }" } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    futures_util::SinkExt::close(&mut socket).await.unwrap();
    drop(socket);

    let log = wait_for_log(&server, "websocket closed", 1).await;
    let log = wait_for_log(&server, "provider call", 2).await.max(log);
    let lines = json_lines(&log);
    assert!(!lines.is_empty(), "JSON logs parse: {log}");
    // Every line of the log is JSON.
    let non_json: Vec<&str> = log.lines().filter(|l| serde_json::from_str::<Value>(l).is_err()).collect();
    assert!(non_json.is_empty(), "lines that are not JSON: {non_json:?}");

    let requests = with_message(&lines, "graphql request");
    let save = requests.iter().find(|l| l["operation"] == "SaveKey").unwrap_or_else(|| panic!("{requests:?}"));
    assert_eq!(save["operation_type"], "mutation");
    assert_eq!(save["principal_kind"], "user");
    assert_eq!(save["principal_id"], user_id.as_str());
    assert_eq!(save["code"], "OK");
    assert_eq!(save["method"], "POST");
    assert_eq!(save["status"], 200);
    assert!(save["duration_ms"].as_f64().is_some());
    assert_eq!(save["request_id"].as_str().map(str::len), Some(36));
    let mine = requests.iter().find(|l| l["operation"] == "Mine").expect("the query's line");
    assert_eq!(mine["operation_type"], "query");
    let refused = requests.iter().find(|l| l["code"] == "UNAUTHENTICATED").expect("the refused request's line");
    assert_eq!(refused["principal_kind"], "anonymous");
    assert_eq!(refused["status"], 401);

    let opened = with_message(&lines, "websocket opened");
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(opened[0]["principal_id"], user_id.as_str());
    let closed = with_message(&lines, "websocket closed");
    assert_eq!(closed[0]["code"], 1000);
    assert_eq!(closed[0]["subscriptions"], 1);
    assert!(closed[0]["duration_ms"].as_f64().is_some());

    let calls = with_message(&lines, "provider call");
    let start = calls.iter().find(|l| l["path"] == "/github/device/code").expect("the device start call");
    assert_eq!(start["host"], "127.0.0.1");
    assert_eq!(start["status"], 200);
    assert!(calls.iter().any(|l| l["path"] == "/github/token"), "the poll is logged: {calls:?}");
    assert!(!with_message(&lines, "sign-in flow started").is_empty());
    let changed = with_message(&lines, "credential changed");
    assert!(changed.iter().any(|l| l["kind"] == "CREATED" && l["provider"] == "OPENAI"), "{changed:?}");

    // No secret anywhere: tokens, the key, the device and user codes.
    for secret in [token.as_str(), server.admin_token.as_str(), OPENAI_KEY, "TESTkeyBBBB", "dev-code-1", "ABCD-1234"] {
        assert!(!log.contains(secret), "the log contains {secret}");
    }
}

#[tokio::test]
async fn operable_text_logs_filter_with_rust_log() {
    // RUST_LOG=warn hides the INFO request lines; the default shows them.
    let quiet = Server::start_with(&[("RUST_LOG", "warn")]).await;
    quiet.ok(&quiet.admin_token, "query Q { me { id } }", json!({})).await;
    let loud = Server::start().await;
    loud.ok(&loud.admin_token, "query Q { me { id } }", json!({})).await;
    let log = wait_for_log(&loud, "graphql request", 1).await;
    let line = log.lines().find(|l| l.contains("graphql request")).expect("a request line");
    for field in ["operation=\"Q\"", "operation_type=\"query\"", "principal_kind=\"user\"", "code=OK", "request_id="] {
        assert!(line.contains(field), "{field} in {line}");
    }
    assert!(!log.contains(&loud.admin_token));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!quiet.log().contains("graphql request"), "{}", quiet.log());
}

#[tokio::test]
async fn operable_metrics_on_their_own_port_move_with_requests() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let mut env = fake.env();
    env.push(("SESAME_METRICS__LISTEN".into(), "127.0.0.1:0".into()));
    env.push(("SESAME_SCHEDULER__EXPIRY_SCAN".into(), "* * * * * *".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server = Server::start_with(&env).await;
    let addr = metrics_addr(&server.log());
    let metrics_url = format!("http://{addr}/metrics");
    let http = server.http().clone();
    let scrape = || async {
        let res = http.get(&metrics_url).send().await.unwrap();
        assert_eq!(res.status(), 200);
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
        res.text().await.unwrap()
    };
    let before = scrape().await;
    // Families with samples from the start; the others appear with their first sample.
    for family in [
        "# TYPE sesame_websocket_open gauge",
        "# TYPE sesame_websocket_subscriptions gauge",
        "# TYPE sesame_credentials gauge",
        "# TYPE sesame_db_pool_connections gauge",
        "# TYPE sesame_db_pool_max_connections gauge",
        "# TYPE sesame_db_pool_acquire_seconds gauge",
    ] {
        assert!(before.contains(family), "{family} missing:\n{before}");
    }
    assert_eq!(sample(&before, "sesame_credentials", &["status=\"ACTIVE\""]), 0.0);
    assert!(sample(&before, "sesame_db_pool_max_connections", &["pool=\"writer\""]) >= 1.0, "{before}");
    assert!(sample(&before, "sesame_db_pool_max_connections", &["pool=\"reader\""]) >= 1.0, "{before}");
    assert_eq!(sample(&before, "sesame_graphql_requests_total", &["operation=\"Mine\""]), 0.0);

    let (_, token) = server.create_user("metrics@example.com").await;
    server.api().set_api_key(&token, Provider::Openai, OPENAI_KEY).await.unwrap();
    for _ in 0..3 {
        server.ok(&token, "query Mine { myCredentials { id } }", json!({})).await;
    }
    server.ok(&token, "mutation { startDeviceFlow(agent: COPILOT, provider: GITHUB) { id } }", json!({})).await;
    let runner = server.runner_token();
    server
        .ok(
            &runner,
            "mutation($u: ID!) { issueTaskCredentials(userId: $u, agent: CODEX, taskId: \"t-1\") { env { name } } }",
            json!({ "u": server.ok(&token, "{ me { id } }", json!({})).await["me"]["id"] }),
        )
        .await;
    let mut socket = ws::open(&server.url, &token).await;
    ws::send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { credentialEvents { kind } }" } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let after = scrape().await;
    for family in [
        "# TYPE sesame_graphql_requests_total counter",
        "# TYPE sesame_graphql_request_duration_seconds histogram",
        "# TYPE sesame_issuances_total counter",
        "# TYPE sesame_flows_total counter",
        "# TYPE sesame_websocket_open gauge",
        "# TYPE sesame_websocket_subscriptions gauge",
        "# TYPE sesame_credentials gauge",
        "# TYPE sesame_scheduler_runs_total counter",
        "# TYPE sesame_scheduler_run_duration_seconds histogram",
        "# TYPE sesame_db_pool_connections gauge",
        "# TYPE sesame_db_pool_acquire_seconds gauge",
        "# TYPE sesame_provider_requests_total counter",
    ] {
        assert!(after.contains(family), "{family} missing:\n{after}");
    }
    assert_eq!(sample(&after, "sesame_flows_total", &["provider=\"GITHUB\"", "status=\"STARTED\""]), 1.0, "{after}");
    assert!(sample(&after, "sesame_scheduler_runs_total", &["job=\"expiry_scan\"", "outcome=\"ran\""]) >= 1.0);
    assert!(sample(&after, "sesame_provider_requests_total", &["host=\"127.0.0.1\"", "status=\"200\""]) >= 1.0);
    let mine = ["operation=\"Mine\"", "operation_type=\"query\"", "code=\"OK\""];
    assert_eq!(sample(&after, "sesame_graphql_requests_total", &mine), 3.0, "{after}");
    assert!(sample(&after, "sesame_graphql_request_duration_seconds_count", &["operation_type=\"query\""]) >= 3.0);
    assert_eq!(sample(&after, "sesame_credentials", &["status=\"ACTIVE\""]), 1.0, "{after}");
    assert_eq!(
        sample(&after, "sesame_issuances_total", &["source=\"USER_API_KEY\"", "outcome=\"ISSUED\""]),
        1.0,
        "{after}"
    );
    assert_eq!(sample(&after, "sesame_websocket_open", &[]), 1.0, "{after}");
    assert_eq!(sample(&after, "sesame_websocket_subscriptions", &[]), 1.0, "{after}");
    // No label value is a token or a key.
    for secret in [token.as_str(), runner.as_str(), OPENAI_KEY] {
        assert!(!after.contains(secret));
    }
    drop(socket);

    // Not on the public port.
    let public = http.get(format!("{}/metrics", server.url)).send().await.unwrap();
    let body = public.text().await.unwrap();
    assert!(!body.contains("sesame_graphql_requests_total"), "metrics leaked on the public port");
    // Ready on both ports; health stays.
    for base in [server.url.clone(), format!("http://{addr}")] {
        let ready = http.get(format!("{base}/ready")).send().await.unwrap();
        assert_eq!(ready.status(), 200, "{base}/ready");
        assert_eq!(ready.json::<Value>().await.unwrap()["status"], "ready");
        assert_eq!(http.get(format!("{base}/health")).send().await.unwrap().status(), 200);
    }
}

/// A free local port (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn operable_ready_is_503_while_migrations_wait() {
    let db = TempDb::new().await;
    // Hold the migration lock, so the server waits in its migrations.
    let mut holder = {
        use sqlx::Connection;
        sqlx::postgres::PgConnection::connect(&db.url).await.unwrap()
    };
    sqlx::query("SELECT pg_advisory_lock($1)").bind(0x5e5a_0000_i64).execute(&mut holder).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut child = Command::new(BIN)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("SESAME_DATA_DIR", dir.path())
        .env("SESAME_LISTEN", format!("127.0.0.1:{port}"))
        .env("SESAME_METRICS__LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", &db.url)
        .env("ENCRYPTION_KEY", "55".repeat(32))
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next_line = |prefix: &str| loop {
        let line = rx.recv_timeout(Duration::from_secs(30)).expect("a line from the server");
        if let Some(rest) = line.strip_prefix(prefix) {
            return rest.trim().to_owned();
        }
    };
    let metrics = next_line("sesame-vault metrics on ").replace("/metrics", "");
    let http = reqwest::Client::new();
    let main = format!("http://127.0.0.1:{port}");
    // Migrations are blocked: both ports answer, not ready.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for base in [&main, &metrics] {
        let res = http.get(format!("{base}/ready")).send().await.unwrap();
        assert_eq!(res.status(), 503, "{base}/ready");
        assert_eq!(res.json::<Value>().await.unwrap()["status"], "migrating");
    }
    let res = http.post(format!("{main}/graphql")).json(&json!({ "query": "{ __typename }" })).send().await.unwrap();
    assert_eq!(res.status(), 503);

    sqlx::query("SELECT pg_advisory_unlock($1)").bind(0x5e5a_0000_i64).execute(&mut holder).await.unwrap();
    let url = next_line("sesame-vault listening on ");
    assert_eq!(url, main);
    let res = http.get(format!("{main}/ready")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let _ = child.kill();
    let _ = child.wait();
}

/// A GitHub device endpoint that answers after `delay`, announcing each request.
async fn slow_github(delay: Duration) -> (String, Arc<Notify>) {
    #[handler]
    async fn device(poem::web::Data(state): poem::web::Data<&(Duration, Arc<Notify>)>) -> Response {
        state.1.notify_one();
        tokio::time::sleep(state.0).await;
        let body = json!({ "device_code": "dev-code-1", "user_code": "ABCD-1234", "verification_uri": "https://github.com/login/device", "expires_in": 900, "interval": 5 });
        Response::builder().content_type("application/json").body(body.to_string())
    }
    #[handler]
    fn token() -> Response {
        Response::builder()
            .status(poem::http::StatusCode::BAD_REQUEST)
            .content_type("application/json")
            .body(r#"{"error":"authorization_pending"}"#)
    }
    let arrived = Arc::new(Notify::new());
    let app = Route::new().at("/device", post(device)).at("/token", post(token)).data((delay, arrived.clone()));
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
    });
    (format!("http://{addr}"), arrived)
}

#[tokio::test]
async fn operable_sigterm_finishes_in_flight_requests_and_exits_0() {
    let (fake, arrived) = slow_github(Duration::from_secs(2)).await;
    let device = format!("{fake}/device");
    let token_url = format!("{fake}/token");
    let mut server = Server::start_with(&[
        ("SESAME_OAUTH__GITHUB__DEVICE_AUTHORIZATION_URL", &device),
        ("SESAME_OAUTH__GITHUB__TOKEN_URL", &token_url),
    ])
    .await;
    let (_, token) = server.create_user("slow@example.com").await;
    let request = {
        let http = server.http().clone();
        let url = format!("{}/graphql", server.url);
        let token = token.clone();
        tokio::spawn(async move {
            http.post(url)
                .bearer_auth(token)
                .json(
                    &json!({ "query": "mutation { startDeviceFlow(agent: COPILOT, provider: GITHUB) { id status } }" }),
                )
                .send()
                .await
        })
    };
    tokio::time::timeout(Duration::from_secs(10), arrived.notified()).await.expect("the request reached the provider");
    let signalled = Instant::now();
    server.signal("TERM");
    let response = request.await.unwrap().expect("the in-flight request was answered");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["data"]["startDeviceFlow"]["status"], "PENDING", "{body}");
    assert!(signalled.elapsed() >= Duration::from_millis(1500), "the answer came after the provider's delay");
    let status = server.wait_exit(Duration::from_secs(30)).await.expect("the server exits");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(log.contains("shutting down"), "{log}");
    assert!(log.contains("released sign-in flow leases"), "the new flow's lease is released: {log}");
}

#[tokio::test]
async fn operable_sigterm_closes_websockets_with_1001() {
    let mut server = Server::start().await;
    let (_, token) = server.create_user("ws-bye@example.com").await;
    let mut socket = ws::open(&server.url, &token).await;
    ws::send(
        &mut socket,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": "subscription { credentialEvents { kind } }" } }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.signal("TERM");
    assert_eq!(ws::close_code(&mut socket).await, Some(1001));
    drop(socket);
    let status = server.wait_exit(Duration::from_secs(30)).await.expect("the server exits");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    let log = server.log();
    assert!(log.contains("websocket closed") && log.contains("code=1001"), "{log}");
}

#[tokio::test]
async fn operable_sigterm_hands_a_polled_flow_to_the_other_replica_at_once() {
    let fake = FakeProvider::start(&[], Reply::Pending).await;
    let db = TempDb::new().await;
    let mut env = vec![("DATABASE_URL".to_owned(), db.url.clone()), ("ENCRYPTION_KEY".to_owned(), "66".repeat(32))];
    env.extend(fake.env());
    // Default provider timeout (15 s): a lease lasts 40 s.
    let mut a = Server::spawn(tempfile::tempdir().unwrap(), env.clone(), true).await;
    let b = Server::spawn(tempfile::tempdir().unwrap(), env, false).await;
    let (_, token) = a.create_user("handover@example.com").await;
    let flow = a.ok(&token, "mutation { startDeviceFlow(agent: COPILOT, provider: GITHUB) { id } }", json!({})).await;
    let id = flow["startDeviceFlow"]["id"].as_str().unwrap().to_owned();
    // A started it, so A polls it.
    while fake.polls().is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut watcher = ws::open(&b.url, &token).await;
    let watch = "subscription($id: ID!) { deviceFlowStatus(id: $id) { status } }";
    ws::send(
        &mut watcher,
        json!({ "id": "1", "type": "subscribe", "payload": { "query": watch, "variables": { "id": id } } }),
    )
    .await;
    assert_eq!(ws::recv(&mut watcher).await.unwrap()["payload"]["data"]["deviceFlowStatus"]["status"], "PENDING");

    let signalled = Instant::now();
    a.signal("TERM");
    let status = a.wait_exit(Duration::from_secs(30)).await.expect("A exits");
    assert_eq!(status.code(), Some(0), "{}", a.log());
    assert!(a.log().contains("released sign-in flow leases"), "{}", a.log());
    let polls_by_a = fake.polls().len();
    fake.state.lock().unwrap().then = Some(Reply::Authorize);
    let last = ws::last_before_complete(&mut watcher).await["deviceFlowStatus"].clone();
    assert_eq!(last["status"], "AUTHORIZED", "{last}");
    let took = signalled.elapsed();
    // The lease would have lasted 40 s; the sweep (every 5 s) and one poll
    // interval take over well before.
    assert!(took < Duration::from_secs(20), "takeover took {took:?}");
    assert!(fake.polls().len() > polls_by_a, "B polled");
    let mine = b.ok(&token, "{ myCredentials { agent } }", json!({})).await;
    assert_eq!(mine["myCredentials"][0]["agent"], "COPILOT");
}

#[test]
fn operable_bad_log_format_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli_in(dir.path(), &[("SESAME_LOG__FORMAT", "xml")], &["migrate"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("log.format"), "{stderr}");
}
