//! The egress proxy (issue 23): a real server with `SESAME_PROXY__LISTEN`,
//! fake provider APIs mapped with `SESAME_PROXY__UPSTREAMS`, and clients
//! that go through the proxy (reqwest with the proxy's CA, or raw sockets
//! for hostile input).
//!
//! Tests with a live grant issue credentials with `delivery: PROXY` through
//! the API; the store side alone is tested in `proxy_delivery.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::{handler, Body, EndpointExt, Request, Response, Route, Server as PoemServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Server, ANTHROPIC_KEY};

/// A provider API stand-in: records what reaches it, answers 200 JSON, an
/// SSE stream gated by the test on `/stream`, or on `/denied` a 401 that
/// quotes the credential it was sent.
#[derive(Clone, Default)]
struct Upstream {
    seen: Arc<Mutex<Vec<(String, String)>>>,
    gate: Arc<tokio::sync::Notify>,
}

#[handler]
async fn record(req: &Request, poem::web::Data(up): poem::web::Data<&Upstream>) -> Response {
    let header = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let credential = sesame_test_support::credential_in(header);
    let path = req.uri().path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_default();
    up.seen.lock().unwrap().push((path.clone(), credential.clone()));
    if path.starts_with("/denied") {
        // As some providers do: the key quoted in the error.
        let message = format!("invalid x-api-key: {credential} (or ask support, quoting {credential})");
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .content_type("application/json")
            .body(json!({ "type": "error", "error": { "message": message } }).to_string());
    }
    if path.starts_with("/stream") {
        let gate = up.gate.clone();
        let events = async_stream::stream! {
            yield Ok::<_, std::io::Error>(bytes::Bytes::from_static(
                b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":11,\"output_tokens\":1}}}\n\n",
            ));
            gate.notified().await;
            yield Ok(bytes::Bytes::from_static(
                b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":7}}\n\n",
            ));
        };
        return Response::builder().content_type("text/event-stream").body(Body::from_bytes_stream(events));
    }
    Response::builder()
        .status(StatusCode::OK)
        .content_type("application/json")
        .body(json!({ "ok": true, "usage": { "input_tokens": 3, "output_tokens": 2 } }).to_string())
}

impl Upstream {
    async fn start() -> (Upstream, String) {
        let up = Upstream::default();
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
        let app = Route::new().at("/*path", record).data(up.clone());
        tokio::spawn(PoemServer::new_with_acceptor(acceptor).run(app));
        (up, format!("http://{addr}"))
    }

    fn seen(&self) -> Vec<(String, String)> {
        self.seen.lock().unwrap().clone()
    }
}

async fn start(extra: &[(&str, &str)]) -> (Server, Upstream, String) {
    let (up, url) = Upstream::start().await;
    let upstreams = format!("api.anthropic.com={url},api.openai.com={url}");
    let mut env = vec![("SESAME_PROXY__LISTEN", "127.0.0.1:0"), ("SESAME_PROXY__UPSTREAMS", upstreams.as_str())];
    env.extend_from_slice(extra);
    let server = Server::start_with(&env).await;
    let proxy = server.proxy_url().expect("the server prints the proxy's address");
    (server, up, proxy)
}

/// A client that goes through the proxy and trusts its CA.
fn client(server: &Server, proxy: &str) -> reqwest::Client {
    let pem = std::fs::read(server.data_dir().join("proxy-ca.pem")).expect("the CA certificate in the data directory");
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::https(proxy).unwrap())
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

fn addr(proxy: &str) -> String {
    proxy.trim_start_matches("http://").to_owned()
}

/// Sends `head` on a fresh connection; the status line's code and the rest.
async fn raw(proxy: &str, head: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr(proxy)).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, text)
}

#[tokio::test]
async fn connect_only_to_providers_hosts_and_well_formed() {
    let (server, up, proxy) = start(&[]).await;
    let (code, text) = raw(&proxy, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n").await;
    assert_eq!(code, 403, "{text}");
    assert!(text.contains("not one the vault's credentials are for"), "{text}");
    let (code, text) = raw(&proxy, "CONNECT api.anthropic.com:22 HTTP/1.1\r\nHost: api.anthropic.com:22\r\n\r\n").await;
    assert_eq!(code, 403, "{text}");
    for malformed in [
        "CONNECT api.anthropic.com HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n",
        "CONNECT /x HTTP/1.1\r\nHost: a\r\n\r\n",
        "CONNECT a_b!:443 HTTP/1.1\r\nHost: a\r\n\r\n",
        "\u{1}\u{2}garbage\r\n\r\n",
    ] {
        let (code, text) = raw(&proxy, malformed).await;
        assert_eq!(code, 400, "{malformed:?}: {text}");
    }
    // Plain http through the proxy would carry a credential in clear: refused.
    let (code, text) =
        raw(&proxy, "GET http://api.anthropic.com/v1/messages HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n").await;
    assert_eq!(code, 405, "{text}");
    assert!(up.seen().is_empty());
    assert!(server.log().contains("egress proxy listening"));
}

#[tokio::test]
async fn requests_without_a_valid_placeholder_never_reach_the_provider() {
    let (server, up, proxy) = start(&[]).await;
    let http = client(&server, &proxy);
    let url = "https://api.anthropic.com/v1/messages?beta=true";
    let res = http.post(url).header("x-api-key", ANTHROPIC_KEY).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("no task placeholder in this request"));
    // Forged: the shape of a placeholder, no grant behind it.
    let forged = "sk-ant-api03-svp_kAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let res = http.post(url).header("x-api-key", forged).body("{}").send().await.unwrap();
    assert_eq!(res.status(), 403);
    // Damaged: the marker, not a whole placeholder.
    let res = http.get(url).header("authorization", "Bearer svp_kshort").send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("damaged"));
    let res = http.get(format!("{url}&key={forged}")).send().await.unwrap();
    assert_eq!(res.status(), 403);
    // A token endpoint: sign-in is not answered, and neither is a refresh without a placeholder.
    let token = "https://platform.claude.com/v1/oauth/token";
    let res = http.post(token).json(&json!({ "grant_type": "authorization_code", "code": "x" })).send().await.unwrap();
    assert_eq!(res.status(), 403);
    assert!(res.text().await.unwrap().contains("not supported"));
    let res =
        http.post(token).json(&json!({ "grant_type": "refresh_token", "refresh_token": "rt" })).send().await.unwrap();
    assert_eq!(res.status(), 403);
    let res = http
        .post("https://auth.openai.com/oauth/token")
        .body(vec![b'a'; 100 * 1024])
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    assert!(up.seen().is_empty(), "nothing reached the provider: {:?}", up.seen());
    let log = server.log();
    assert!(log.contains("proxy refused a request"), "one line per refused request");
    assert!(!log.contains(forged) && !log.contains(ANTHROPIC_KEY), "no header value in the log");
}

/// A TLS tunnel to `host` through the proxy, trusting its CA.
async fn tunnel(server: &Server, proxy: &str, host: &str) -> tokio_rustls::client::TlsStream<TcpStream> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};
    let mut s = TcpStream::connect(addr(proxy)).await.unwrap();
    s.write_all(format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(s.read(&mut b).await.unwrap(), 1, "the proxy answers the CONNECT");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&head));
    let pem = std::fs::read(server.data_dir().join("proxy-ca.pem")).unwrap();
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(&pem).unwrap()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, s).await.expect("the host's leaf chains to the CA")
}

#[tokio::test]
async fn a_flood_of_bad_placeholders_closes_the_connection() {
    let (server, up, proxy) = start(&[]).await;
    let mut tls = tunnel(&server, &proxy, "api.anthropic.com").await;
    let one = "GET /v1/models HTTP/1.1\r\nHost: api.anthropic.com\r\nx-api-key: sk-ant-api03-svp_kAAAAAAAAAAAAAAAAAAAAAAAAAA\r\n\r\n";
    // Pipelined: far more than the proxy answers on one connection.
    let _ = tls.write_all(one.repeat(40).as_bytes()).await;
    let mut answers = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answers)).await;
    assert!(read.is_ok(), "the proxy closed the connection");
    let answers = String::from_utf8_lossy(&answers);
    assert_eq!(answers.matches("HTTP/1.1 403").count(), 16, "{answers}");
    assert!(up.seen().is_empty());
}

#[tokio::test]
async fn a_request_head_that_trickles_in_is_cut_off() {
    let (_server, _up, proxy) = start(&[("SESAME_PROXY__HEADER_TIMEOUT", "2s")]).await;
    let mut s = TcpStream::connect(addr(&proxy)).await.unwrap();
    let head = b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let mut closed = false;
    for byte in head {
        if s.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(300), s.read(&mut buf)).await {
            Ok(Ok(_)) | Ok(Err(_)) => {
                closed = true;
                break;
            }
            Err(_) => {}
        }
    }
    assert!(closed, "the proxy closed a connection whose head never completed");
}

#[tokio::test]
async fn a_tunnel_that_stalls_or_idles_is_closed() {
    let (server, _up, proxy) = start(&[("SESAME_PROXY__HEADER_TIMEOUT", "1s")]).await;
    // CONNECT answered, then no TLS handshake.
    let mut s = TcpStream::connect(addr(&proxy)).await.unwrap();
    s.write_all(b"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "closed after the handshake deadline");
    assert!(buf.starts_with(b"HTTP/1.1 200"));
    // One request inside, then idle.
    let mut tls = tunnel(&server, &proxy, "api.anthropic.com").await;
    tls.write_all(b"GET /v1/models HTTP/1.1\r\nHost: api.anthropic.com\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "an idle tunnel is closed");
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 403"));
}

#[tokio::test]
async fn connections_over_the_cap_are_closed_at_once() {
    let (_server, _up, proxy) = start(&[("SESAME_PROXY__MAX_CONNECTIONS", "2")]).await;
    let held = [TcpStream::connect(addr(&proxy)).await.unwrap(), TcpStream::connect(addr(&proxy)).await.unwrap()];
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut third = TcpStream::connect(addr(&proxy)).await.unwrap();
    let _ = third.write_all(b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), third.read_to_end(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the third connection is closed unanswered: {buf:?}");
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (code, _) = raw(&proxy, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com\r\n\r\n").await;
    assert_eq!(code, 403, "a slot is free again");
}

// ---- With a live grant (needs the store side of proxy delivery). ----

const ISSUE_PROXY: &str = "mutation($u: ID!, $t: String!) { \
    issueTaskCredentials(userId: $u, agent: CLAUDE_CODE, provider: ANTHROPIC, taskId: $t, delivery: PROXY) { \
    env { name value } files { path content } } }";

/// A person with an Anthropic API key, and a Claude Code task issued to
/// the proxy: its env.
async fn proxy_task(server: &Server, task: &str) -> Vec<(String, String)> {
    let (user, token) = server.create_user(&format!("{task}@example.com")).await;
    server.api().set_api_key(&token, crate::common::Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    let runner = server.runner_token();
    let data = server.ok(&runner, ISSUE_PROXY, json!({ "u": user, "t": task })).await;
    let issued = &data["issueTaskCredentials"];
    let text = issued.to_string();
    assert!(!text.contains(ANTHROPIC_KEY), "no real value in a proxy delivery");
    issued["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap_or("").to_owned()))
        .collect()
}

fn env_var(env: &[(String, String)], name: &str) -> String {
    env.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("{name} in {env:?}"))
}

#[tokio::test]
async fn the_placeholder_is_swapped_and_sse_streams_through_unbuffered() {
    let (server, up, proxy) = start(&[]).await;
    let env = proxy_task(&server, "task-inject").await;
    let placeholder = env_var(&env, "ANTHROPIC_API_KEY");
    assert!(placeholder.contains("svp_"));
    let http = client(&server, &proxy);
    let res = http
        .post("https://api.anthropic.com/v1/messages?beta=true")
        .header("x-api-key", &placeholder)
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["ok"], true);
    assert_eq!(up.seen(), vec![("/v1/messages?beta=true".to_owned(), ANTHROPIC_KEY.to_owned())]);

    // The first event arrives while the provider still holds the second.
    let mut res = http.post("https://api.anthropic.com/stream").header("x-api-key", &placeholder).send().await.unwrap();
    let first = tokio::time::timeout(Duration::from_secs(5), res.chunk()).await.expect("first event, unbuffered");
    assert!(String::from_utf8_lossy(&first.unwrap().unwrap()).contains("message_start"));
    up.gate.notify_one();
    let mut rest = Vec::new();
    while let Some(chunk) = res.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(String::from_utf8_lossy(&rest).contains("message_delta"));

    // Not another provider's host with this task's key.
    let res = http
        .get("https://api.openai.com/v1/models")
        .header("authorization", format!("Bearer {placeholder}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(up.seen().len(), 2);
    let log = server.log();
    assert!(log.contains("task-inject") && log.contains("proxied"));
    assert!(!log.contains(ANTHROPIC_KEY) && !log.contains(&placeholder));
}

#[tokio::test]
async fn requests_in_flight_per_task_are_capped() {
    let (server, up, proxy) = start(&[("SESAME_PROXY__MAX_REQUESTS_PER_TASK", "1")]).await;
    let env = proxy_task(&server, "task-cap").await;
    let placeholder = env_var(&env, "ANTHROPIC_API_KEY");
    let http = client(&server, &proxy);
    let mut stream =
        http.post("https://api.anthropic.com/stream").header("x-api-key", &placeholder).send().await.unwrap();
    let res =
        http.post("https://api.anthropic.com/v1/messages").header("x-api-key", &placeholder).send().await.unwrap();
    assert_eq!(res.status(), 429);
    up.gate.notify_one();
    while stream.chunk().await.unwrap().is_some() {}
    tokio::time::sleep(Duration::from_millis(100)).await;
    let res =
        http.post("https://api.anthropic.com/v1/messages").header("x-api-key", &placeholder).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn a_websocket_upgrade_carries_the_real_credential_then_bytes_both_ways() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::Message;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ws_addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        let (s, _) = listener.accept().await.unwrap();
        // tungstenite's callback type, not ours.
        #[allow(clippy::result_large_err)]
        let cb = |req: &tokio_tungstenite::tungstenite::handshake::server::Request, res| {
            *seen2.lock().unwrap() = req.headers().get("authorization").unwrap().to_str().unwrap().to_owned();
            Ok(res)
        };
        let mut ws = tokio_tungstenite::accept_hdr_async(s, cb).await.unwrap();
        while let Some(Ok(m)) = ws.next().await {
            if m.is_text() {
                ws.send(Message::text(format!("echo {}", m.to_text().unwrap()))).await.unwrap();
                // What the Responses API reports at the end of a turn.
                let done =
                    r#"{"type":"response.completed","response":{"usage":{"input_tokens":321,"output_tokens":54}}}"#;
                ws.send(Message::text(done)).await.unwrap();
            }
        }
    });
    let up = format!("api.anthropic.com=http://{ws_addr}");
    let server = Server::start_with(&[("SESAME_PROXY__LISTEN", "127.0.0.1:0"), ("SESAME_PROXY__UPSTREAMS", &up)]).await;
    let proxy = server.proxy_url().unwrap();
    let env = proxy_task(&server, "task-ws").await;
    let placeholder = env_var(&env, "ANTHROPIC_API_KEY");
    let tls = tunnel(&server, &proxy, "api.anthropic.com").await;
    let mut req = "wss://api.anthropic.com/v1/responses".into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {placeholder}").parse().unwrap());
    let (mut ws, resp) = tokio_tungstenite::client_async(req, tls).await.unwrap();
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hi")).await.unwrap();
    let m = ws.next().await.unwrap().unwrap();
    assert_eq!(m.to_text().unwrap(), "echo hi");
    assert_eq!(*seen.lock().unwrap(), format!("Bearer {ANTHROPIC_KEY}"));
    assert!(ws.next().await.unwrap().unwrap().to_text().unwrap().contains("response.completed"));
    ws.close(None).await.unwrap();
    while ws.next().await.is_some() {}
    drop(ws);
    // The usage in the provider's events is counted for the task.
    let runner = server.runner_token();
    let usage = "query($t: String!) { taskUsage(taskId: $t) { requests inputTokens outputTokens bytesReceived } }";
    let mut counted = Value::Null;
    for _ in 0..50 {
        counted = server.ok(&runner, usage, json!({ "t": "task-ws" })).await["taskUsage"][0].clone();
        if counted["inputTokens"] == 321 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!((counted["inputTokens"].as_u64(), counted["outputTokens"].as_u64()), (Some(321), Some(54)), "{counted}");
    assert!(counted["bytesReceived"].as_u64().unwrap() > 0);
}

/// One kept-alive connection through the proxy (CONNECT, TLS, HTTP/1.1).
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>,
    ended: tokio::task::JoinHandle<()>,
}

impl Conn {
    async fn open(server: &Server, proxy: &str) -> Conn {
        let tls = tunnel(server, proxy, "api.anthropic.com").await;
        let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await.unwrap();
        let ended = tokio::spawn(async move {
            let _ = conn.await;
        });
        Conn { sender, ended }
    }

    /// A request with `key` as its API key: the status and the body.
    async fn send(&mut self, key: &str) -> (u16, String) {
        use http_body_util::BodyExt;
        self.sender.ready().await.unwrap();
        let req = hyper::Request::post("/v1/messages")
            .header("host", "api.anthropic.com")
            .header("x-api-key", key)
            .body(http_body_util::Empty::new())
            .unwrap();
        let res = self.sender.send_request(req).await.unwrap();
        let status = res.status().as_u16();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }
}

#[tokio::test]
async fn connections_per_task_are_capped() {
    let (server, up, proxy) = start(&[("SESAME_PROXY__MAX_CONNECTIONS_PER_TASK", "2")]).await;
    let task = env_var(&proxy_task(&server, "task-conns").await, "ANTHROPIC_API_KEY");
    let other = env_var(&proxy_task(&server, "task-conns-other").await, "ANTHROPIC_API_KEY");
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut conn = Conn::open(&server, &proxy).await;
        assert_eq!(conn.send(&task).await.0, 200);
        held.push(conn);
    }
    // More requests on a connection already counted are not another connection.
    assert_eq!(held[0].send(&task).await.0, 200);
    assert_eq!(held[1].send(&task).await.0, 200);
    assert_eq!(up.seen().len(), 4);

    // One more connection for the task: refused, said why, and closed.
    let mut third = Conn::open(&server, &proxy).await;
    let (status, body) = third.send(&task).await;
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("2 connections open through the proxy already") && body.contains("reuse one"), "{body}");
    tokio::time::timeout(Duration::from_secs(10), &mut third.ended)
        .await
        .expect("the refused connection is closed")
        .unwrap();
    assert_eq!(up.seen().len(), 4, "the refused request never reached the provider");

    // Another task is not affected, and the held ones still work.
    let mut theirs = Conn::open(&server, &proxy).await;
    assert_eq!(theirs.send(&other).await.0, 200);
    assert_eq!(held[1].send(&task).await.0, 200);

    // A connection that closes frees its count: a new one works (the server
    // sees the close soon after; asked again until it has).
    let closed = held.pop().unwrap();
    drop(closed.sender);
    let _ = closed.ended.await;
    let mut status = 0;
    for _ in 0..50 {
        let mut conn = Conn::open(&server, &proxy).await;
        status = conn.send(&task).await.0;
        if status == 200 {
            held.push(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, 200, "a connection's count is freed when it closes");
    assert_eq!(held.len(), 2);
    let log = server.log();
    assert!(!log.contains(&task) && !log.contains(ANTHROPIC_KEY), "no placeholder or key in the log");
}

#[tokio::test]
async fn an_error_answer_that_quotes_the_real_key_gets_the_placeholder_back() {
    let (server, up, proxy) = start(&[]).await;
    let placeholder = env_var(&proxy_task(&server, "task-scrub").await, "ANTHROPIC_API_KEY");
    let http = client(&server, &proxy);
    let res = http.post("https://api.anthropic.com/denied").header("x-api-key", &placeholder).send().await.unwrap();
    assert_eq!(res.status(), 401);
    let length = res.content_length();
    let body = res.text().await.unwrap();
    assert_eq!(length, Some(body.len() as u64), "the length is the scrubbed body's");
    assert_eq!(up.seen(), vec![("/denied".to_owned(), ANTHROPIC_KEY.to_owned())], "the provider got the real key");
    assert!(!body.contains(ANTHROPIC_KEY), "{body}");
    assert_eq!(body.matches(placeholder.as_str()).count(), 2, "{body}");
    let doc: Value = serde_json::from_str(&body).unwrap();
    assert!(doc["error"]["message"].as_str().unwrap().starts_with("invalid x-api-key: "));
    // A success answer is passed on as it comes.
    let res =
        http.post("https://api.anthropic.com/v1/messages").header("x-api-key", &placeholder).send().await.unwrap();
    assert_eq!(res.status(), 200);
}

// ---- The egress proxy as its own process (`sesame-vault proxy`). ----

#[tokio::test]
async fn a_proxy_in_its_own_process_lends_counts_and_ends_with_the_vault() {
    let (up, upstream) = Upstream::start().await;
    let dir = tempfile::tempdir().unwrap();
    let upstreams = format!("api.anthropic.com={upstream}");
    // The proxy first, on the data directory `serve` will use: it migrates
    // the database and generates the CA there.
    let process = Server::start_proxy_process(
        dir.path(),
        &[
            ("SESAME_PROXY__LISTEN", "127.0.0.1:0"),
            ("SESAME_PROXY__UPSTREAMS", upstreams.as_str()),
            ("SESAME_METRICS__LISTEN", "127.0.0.1:0"),
        ],
    );
    let proxy = process.url.clone();
    let server = Server::spawn(dir, vec![("SESAME_PROXY__PUBLIC_URL".into(), proxy.clone())], true).await;
    assert!(server.proxy_url().is_none(), "serve runs no proxy of its own");

    // Issued by `serve`: the task is pointed at the proxy process.
    let (user, token) = server.create_user("apart@example.com").await;
    server.api().set_api_key(&token, crate::common::Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    let runner = server.runner_token();
    let data = server.ok(&runner, ISSUE_PROXY, json!({ "u": user, "t": "task-apart" })).await;
    let env: Vec<(String, String)> = data["issueTaskCredentials"]["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["value"].as_str().unwrap_or("").to_owned()))
        .collect();
    assert!(!data.to_string().contains(ANTHROPIC_KEY));
    assert_eq!(env_var(&env, "HTTPS_PROXY"), proxy);
    let placeholder = env_var(&env, "ANTHROPIC_API_KEY");

    // Lent by the proxy process (the first use recorded, then the grant read
    // again and kept, then lent from what it kept).
    let http = client(&server, &proxy);
    for _ in 0..3 {
        let res =
            http.post("https://api.anthropic.com/v1/messages").header("x-api-key", &placeholder).send().await.unwrap();
        assert_eq!(res.status(), 200);
    }
    assert_eq!(up.seen().iter().filter(|(_, key)| key == ANTHROPIC_KEY).count(), 3);
    // Its own metrics listener says so.
    let log_path = server.data_dir().join(sesame_test_support::PROXY_LOG_FILE);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let metrics = log
        .lines()
        .filter(|l| l.contains("metrics listening"))
        .find_map(|l| l.split("addr=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no metrics listener in the proxy's log:\n{log}"))
        .to_owned();
    let scraped = reqwest::get(format!("http://{metrics}/metrics")).await.unwrap().text().await.unwrap();
    let sample = |name: &str| {
        scraped.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    assert!(sample("sesame_proxy_grants_kept_total").is_some_and(|n| n >= 1.0), "{scraped}");
    assert!(sample("sesame_proxy_grants_read_total").is_some_and(|n| n >= 2.0), "{scraped}");
    assert!(
        scraped.contains("sesame_proxy_requests_total{provider=\"ANTHROPIC\",outcome=\"forwarded\"} 3"),
        "{scraped}"
    );

    // Returned through `serve`: the proxy process refuses within its
    // watcher's poll (it hears of the change through the SQLite file).
    let back = "mutation($t: String!) { returnTaskCredentials(taskId: $t, files: []) { id } }";
    server.ok(&runner, back, json!({ "t": "task-apart" })).await;
    let returned = std::time::Instant::now();
    let mut lent = 3;
    loop {
        let res =
            http.post("https://api.anthropic.com/v1/messages").header("x-api-key", &placeholder).send().await.unwrap();
        if res.status() == 403 {
            assert!(res.text().await.unwrap().contains("returned"));
            break;
        }
        assert_eq!(res.status(), 200);
        lent += 1;
        assert!(returned.elapsed() < Duration::from_secs(2), "the proxy process kept lending a returned task's key");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(up.seen().len(), lent, "a refused request never reaches the provider");
    eprintln!("the proxy process refused {:?} after the return", returned.elapsed());

    // The usage it counted is the vault's (flushed every second).
    let usage = "query($t: String!) { taskUsage(taskId: $t) { requests inputTokens } }";
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let data = server.ok(&runner, usage, json!({ "t": "task-apart" })).await;
        let requests = data["taskUsage"][0]["requests"].as_i64().unwrap_or(0);
        if requests >= lent as i64 {
            assert_eq!(data["taskUsage"][0]["inputTokens"].as_i64(), Some(3 * lent as i64));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "usage never reached the vault: {data}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(server.data_dir().join(sesame_test_support::PROXY_LOG_FILE)).unwrap();
    assert!(log.contains("task-apart") && !log.contains(ANTHROPIC_KEY) && !log.contains(&placeholder));
}
