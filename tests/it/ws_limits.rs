//! Issue 12, items 3 and 9: hostile WebSocket traffic. Subscriptions are
//! limited per socket and per principal, sockets per principal, and the
//! protocol's edges (duplicate ids, oversize messages, binary or non-UTF-8
//! frames, malformed messages, a second `connection_init`) end the socket
//! with a close frame, on graphql-transport-ws and on the legacy graphql-ws.

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::Message;

use crate::common::{Provider, Server, ANTHROPIC_KEY};
use crate::ws::{self, Socket};

const EVENTS: &str = "subscription { credentialEvents { kind credentialId } }";

#[derive(Clone, Copy, Debug)]
enum Proto {
    /// graphql-transport-ws (the graphql-ws library's protocol).
    Transport,
    /// The legacy subscriptions-transport-ws protocol, named `graphql-ws`.
    Legacy,
}

const PROTOCOLS: [Proto; 2] = [Proto::Transport, Proto::Legacy];

impl Proto {
    fn name(self) -> &'static str {
        match self {
            Proto::Transport => "graphql-transport-ws",
            Proto::Legacy => "graphql-ws",
        }
    }

    fn subscribe(self) -> &'static str {
        match self {
            Proto::Transport => "subscribe",
            Proto::Legacy => "start",
        }
    }

    fn complete(self) -> &'static str {
        match self {
            Proto::Transport => "complete",
            Proto::Legacy => "stop",
        }
    }
}

fn init_message(token: &str) -> Value {
    json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } })
}

/// Connects and initialises; panics unless acknowledged.
async fn open(server: &Server, proto: Proto, token: &str) -> Socket {
    let mut socket = ws::connect(&server.url, proto.name()).await;
    ws::send(&mut socket, init_message(token)).await;
    let ack = ws::recv(&mut socket).await.unwrap_or_else(|| panic!("{proto:?}: closed instead of acknowledged"));
    assert_eq!(ack["type"], "connection_ack", "{proto:?}: {ack}");
    socket
}

async fn subscribe(socket: &mut Socket, proto: Proto, id: &str, query: &str) {
    ws::send(socket, json!({ "id": id, "type": proto.subscribe(), "payload": { "query": query } })).await;
}

async fn complete(socket: &mut Socket, proto: Proto, id: &str) {
    ws::send(socket, json!({ "id": id, "type": proto.complete() })).await;
}

/// Sends a ping and returns every message that came before its pong. The
/// server takes a socket's messages in order, so whatever was sent before
/// the ping has been accepted or refused by then.
async fn until_pong(socket: &mut Socket) -> Vec<Value> {
    ws::send(socket, json!({ "type": "ping" })).await;
    let mut before = Vec::new();
    loop {
        let msg = ws::recv(socket).await.expect("a pong before the socket closes");
        if msg["type"] == "pong" {
            return before;
        }
        before.push(msg);
    }
}

/// The operations refused in these messages: (id, first error), whether the
/// error came as an `error` message or as a result carrying errors.
fn refusals(messages: &[Value]) -> Vec<(String, Value)> {
    messages
        .iter()
        .filter_map(|msg| {
            let errors = match msg["type"].as_str() {
                Some("error") => msg["payload"].as_array().cloned().unwrap_or_else(|| vec![msg["payload"].clone()]),
                Some("next" | "data") => msg["payload"]["errors"].as_array().cloned()?,
                _ => return None,
            };
            Some((msg["id"].as_str().unwrap_or_default().to_owned(), errors.first().cloned().unwrap_or_default()))
        })
        .collect()
}

fn refused_ids(refused: &[(String, Value)]) -> Vec<&str> {
    refused.iter().map(|(id, _)| id.as_str()).collect()
}

/// Asserts the error is LIMIT_EXCEEDED and its message names the setting and its value.
fn assert_limit(error: &Value, setting: &str, value: usize) {
    assert_eq!(error["extensions"]["code"], "LIMIT_EXCEEDED", "{error}");
    let message = error["message"].as_str().unwrap_or_default();
    assert!(message.contains(setting), "the message names {setting}: {message}");
    assert!(message.contains(&format!("SESAME_GRAPHQL__{}", setting.to_uppercase())), "and its env: {message}");
    assert!(message.contains(&value.to_string()), "and the limit {value}: {message}");
}

/// The close frame the server sent (code, reason); `None` when the
/// connection ended without one.
async fn close_frame(socket: &mut Socket) -> Option<(u16, String)> {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), socket.next())
            .await
            .expect("the server closes within 20 s")
        {
            Some(Ok(Message::Close(Some(frame)))) => return Some((frame.code.into(), frame.reason.to_string())),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Closes from the client side and waits for the server's reply, so the
/// server has finished with the socket.
async fn close_and_wait(mut socket: Socket) {
    socket.close(None).await.expect("close");
    while let Some(Ok(_)) = socket.next().await {}
}

/// Collects `next`/`data` results by id until every id in `want` has one.
async fn results_for(socket: &mut Socket, want: &[&str]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    while !want.iter().all(|id| seen.iter().any(|s| s == id)) {
        let msg = ws::recv(socket).await.expect("results before the socket closes");
        if matches!(msg["type"].as_str(), Some("next" | "data")) {
            assert!(msg["payload"]["errors"].is_null(), "{msg}");
            seen.push(msg["id"].as_str().unwrap_or_default().to_owned());
        }
    }
    seen
}

/// `max_subscriptions_per_socket`: the sixth of five is refused with
/// LIMIT_EXCEEDED on its id, the socket stays usable, and a slot frees when
/// the client completes an operation or the operation ends on its own.
#[tokio::test]
async fn per_socket_subscription_limit() {
    let server = Server::start_with(&[("SESAME_GRAPHQL__MAX_SUBSCRIPTIONS_PER_SOCKET", "5")]).await;
    let (_, token) = server.create_user("per-socket@example.com").await;
    for proto in PROTOCOLS {
        let mut socket = open(&server, proto, &token).await;
        for i in 1..=6 {
            subscribe(&mut socket, proto, &format!("s{i}"), EVENTS).await;
        }
        let refused = refusals(&until_pong(&mut socket).await);
        assert_eq!(refused_ids(&refused), ["s6"], "{proto:?}: {refused:?}");
        assert_limit(&refused[0].1, "max_subscriptions_per_socket", 5);

        // Completing one frees its slot.
        complete(&mut socket, proto, "s1").await;
        subscribe(&mut socket, proto, "s7", EVENTS).await;
        let refused = refusals(&until_pong(&mut socket).await);
        assert!(refused.is_empty(), "{proto:?}: {refused:?}");

        // So does an operation that ends by itself (a query over the socket).
        complete(&mut socket, proto, "s2").await;
        subscribe(&mut socket, proto, "q1", "{ __typename }").await;
        while let Some(msg) = ws::recv(&mut socket).await {
            if msg["type"] == "complete" && msg["id"] == "q1" {
                break;
            }
        }
        subscribe(&mut socket, proto, "s8", EVENTS).await;
        subscribe(&mut socket, proto, "s9", EVENTS).await;
        let refused = refusals(&until_pong(&mut socket).await);
        assert_eq!(refused_ids(&refused), ["s9"], "{proto:?}: {refused:?}");

        // The accepted subscriptions are live; the refused ones are not.
        server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
        let seen = results_for(&mut socket, &["s3", "s4", "s5", "s7", "s8"]).await;
        assert!(!seen.iter().any(|id| ["s1", "s2", "s6", "s9"].contains(&id.as_str())), "{proto:?}: {seen:?}");
        close_and_wait(socket).await;
    }
}

/// `max_subscriptions_per_principal` counts one person's subscriptions over
/// all their sockets (and both protocols); completing one frees a slot for
/// any of their sockets.
#[tokio::test]
async fn per_principal_subscription_limit_spans_sockets() {
    let server = Server::start_with(&[("SESAME_GRAPHQL__MAX_SUBSCRIPTIONS_PER_PRINCIPAL", "3")]).await;
    let (_, token) = server.create_user("per-principal@example.com").await;
    let mut first = open(&server, Proto::Transport, &token).await;
    let mut second = open(&server, Proto::Legacy, &token).await;
    subscribe(&mut first, Proto::Transport, "a1", EVENTS).await;
    subscribe(&mut first, Proto::Transport, "a2", EVENTS).await;
    assert!(refusals(&until_pong(&mut first).await).is_empty());

    subscribe(&mut second, Proto::Legacy, "b1", EVENTS).await;
    subscribe(&mut second, Proto::Legacy, "b2", EVENTS).await;
    let refused = refusals(&until_pong(&mut second).await);
    assert_eq!(refused_ids(&refused), ["b2"], "{refused:?}");
    assert_limit(&refused[0].1, "max_subscriptions_per_principal", 3);

    subscribe(&mut first, Proto::Transport, "a3", EVENTS).await;
    let refused = refusals(&until_pong(&mut first).await);
    assert_eq!(refused_ids(&refused), ["a3"], "{refused:?}");
    assert_limit(&refused[0].1, "max_subscriptions_per_principal", 3);

    complete(&mut first, Proto::Transport, "a1").await;
    assert!(refusals(&until_pong(&mut first).await).is_empty());
    subscribe(&mut second, Proto::Legacy, "b3", EVENTS).await;
    assert!(refusals(&until_pong(&mut second).await).is_empty());
}

/// `max_sockets_per_principal`: a socket beyond it is closed with 1008 right
/// after its `connection_init` (no ack), on both protocols; closing one of
/// the open sockets lets a new one in.
#[tokio::test]
async fn sockets_per_principal_limit() {
    let server = Server::start_with(&[("SESAME_GRAPHQL__MAX_SOCKETS_PER_PRINCIPAL", "2")]).await;
    let (_, token) = server.create_user("sockets@example.com").await;
    let first = open(&server, Proto::Transport, &token).await;
    let _second = open(&server, Proto::Legacy, &token).await;
    for proto in PROTOCOLS {
        let mut third = ws::connect(&server.url, proto.name()).await;
        ws::send(&mut third, init_message(&token)).await;
        let (code, reason) = close_frame(&mut third).await.expect("a close frame");
        assert_eq!(code, 1008, "{proto:?}: {reason}");
        assert!(reason.contains("max_sockets_per_principal") && reason.contains('2'), "{proto:?}: {reason}");
    }
    close_and_wait(first).await;
    let _third = open(&server, Proto::Legacy, &token).await;
}

/// One principal at its limits does not limit another.
#[tokio::test]
async fn other_principals_keep_their_own_limits() {
    let server = Server::start_with(&[
        ("SESAME_GRAPHQL__MAX_SUBSCRIPTIONS_PER_PRINCIPAL", "2"),
        ("SESAME_GRAPHQL__MAX_SOCKETS_PER_PRINCIPAL", "1"),
    ])
    .await;
    let (_, alice) = server.create_user("alice@example.com").await;
    let (_, bob) = server.create_user("bob@example.com").await;
    let mut alice_ws = open(&server, Proto::Transport, &alice).await;
    for id in ["1", "2", "3"] {
        subscribe(&mut alice_ws, Proto::Transport, id, EVENTS).await;
    }
    let refused = refusals(&until_pong(&mut alice_ws).await);
    assert_eq!(refused_ids(&refused), ["3"], "{refused:?}");
    let mut alice_again = ws::connect(&server.url, "graphql-transport-ws").await;
    ws::send(&mut alice_again, init_message(&alice)).await;
    assert_eq!(close_frame(&mut alice_again).await.map(|(code, _)| code), Some(1008));

    for proto in PROTOCOLS {
        let token = if matches!(proto, Proto::Transport) { bob.clone() } else { server.admin_token.clone() };
        let mut socket = open(&server, proto, &token).await;
        subscribe(&mut socket, proto, "1", EVENTS).await;
        subscribe(&mut socket, proto, "2", EVENTS).await;
        assert!(refusals(&until_pong(&mut socket).await).is_empty(), "{proto:?}");
    }
}

/// Closing a socket releases its socket slot and every subscription it held:
/// the same person reconnects and subscribes up to the limit again.
#[tokio::test]
async fn counters_are_released_when_a_socket_closes() {
    let server = Server::start_with(&[
        ("SESAME_GRAPHQL__MAX_SUBSCRIPTIONS_PER_PRINCIPAL", "2"),
        ("SESAME_GRAPHQL__MAX_SOCKETS_PER_PRINCIPAL", "1"),
    ])
    .await;
    let (_, token) = server.create_user("release@example.com").await;
    for round in 0..3 {
        let proto = PROTOCOLS[round % 2];
        let mut socket = open(&server, proto, &token).await;
        for id in ["1", "2", "3"] {
            subscribe(&mut socket, proto, id, EVENTS).await;
        }
        let refused = refusals(&until_pong(&mut socket).await);
        assert_eq!(refused_ids(&refused), ["3"], "round {round}, {proto:?}: {refused:?}");
        close_and_wait(socket).await;
    }
}

/// A subscription selects exactly one root field (the GraphQL spec's rule),
/// so aliases cannot open many streams under one counted subscription.
#[tokio::test]
async fn one_root_field_per_subscription() {
    let server = Server::start().await;
    let (_, token) = server.create_user("aliases@example.com").await;
    let aliased =
        "subscription { a: credentialEvents { kind } b: credentialEvents { kind } c: credentialEvents { kind } }";
    for proto in PROTOCOLS {
        let mut socket = open(&server, proto, &token).await;
        subscribe(&mut socket, proto, "many", aliased).await;
        let mut errors = Vec::new();
        while errors.len() < 2 {
            let msg = ws::recv(&mut socket).await.expect("errors before the socket closes");
            if let Some(list) = msg["payload"]["errors"].as_array() {
                errors.extend(list.iter().cloned());
            }
        }
        for error in &errors {
            assert_eq!(error["extensions"]["code"], "BAD_USER_INPUT", "{proto:?}: {error}");
            assert!(error["message"].as_str().unwrap_or_default().contains("one root field"), "{proto:?}: {error}");
        }
        // One stream stays: an event arrives once.
        server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
        let seen = results_for(&mut socket, &["many"]).await;
        assert_eq!(seen, ["many"], "{proto:?}");
        let later = until_pong(&mut socket).await;
        let more: Vec<&Value> = later.iter().filter(|m| matches!(m["type"].as_str(), Some("next" | "data"))).collect();
        assert!(more.is_empty(), "{proto:?}: {more:?}");
        close_and_wait(socket).await;
    }
}

/// A second subscribe with the id of a live operation closes the socket with
/// 4409 "Subscriber for <id> already exists".
#[tokio::test]
async fn duplicate_id_closes_4409() {
    let server = Server::start().await;
    let (_, token) = server.create_user("dup@example.com").await;
    for proto in PROTOCOLS {
        let mut socket = open(&server, proto, &token).await;
        subscribe(&mut socket, proto, "same", EVENTS).await;
        subscribe(&mut socket, proto, "same", EVENTS).await;
        let frame = close_frame(&mut socket).await;
        assert_eq!(frame, Some((4409, "Subscriber for same already exists".to_owned())), "{proto:?}");

        // An id is free again once its operation is complete.
        let mut socket = open(&server, proto, &token).await;
        subscribe(&mut socket, proto, "again", EVENTS).await;
        complete(&mut socket, proto, "again").await;
        subscribe(&mut socket, proto, "again", EVENTS).await;
        assert!(refusals(&until_pong(&mut socket).await).is_empty(), "{proto:?}");
    }
}

/// A message over the 64 KiB cap closes with 1009, before or after
/// `connection_init`, rather than dropping the connection.
#[tokio::test]
async fn oversize_message_closes_1009() {
    let server = Server::start().await;
    let (_, token) = server.create_user("big@example.com").await;
    let big = json!({ "id": "big", "type": "subscribe", "payload": { "query": format!("#{}\n{EVENTS}", "x".repeat(70 * 1024)) } });
    for proto in PROTOCOLS {
        let mut socket = open(&server, proto, &token).await;
        let _ = socket.send(Message::Text(big.to_string())).await;
        assert_eq!(close_frame(&mut socket).await.map(|(code, _)| code), Some(1009), "{proto:?} after init");

        let mut socket = ws::connect(&server.url, proto.name()).await;
        let _ = socket
            .send(Message::Text(format!("{{\"type\":\"connection_init\",\"x\":\"{}\"}}", "x".repeat(70 * 1024))))
            .await;
        assert_eq!(close_frame(&mut socket).await.map(|(code, _)| code), Some(1009), "{proto:?} as the first message");
    }
}

/// Binary frames and text frames that are not UTF-8 close with 4400.
#[tokio::test]
async fn binary_or_invalid_utf8_closes_4400() {
    let server = Server::start().await;
    let (_, token) = server.create_user("binary@example.com").await;
    let subscribe_bytes = |proto: Proto| {
        json!({ "id": "1", "type": proto.subscribe(), "payload": { "query": EVENTS } }).to_string().into_bytes()
    };
    for proto in PROTOCOLS {
        // A binary frame, even one holding a valid message.
        let mut socket = open(&server, proto, &token).await;
        let _ = socket.send(Message::Binary(subscribe_bytes(proto))).await;
        assert_eq!(close_frame(&mut socket).await.map(|(code, _)| code), Some(4400), "{proto:?} binary");

        // A binary connection_init.
        let mut socket = ws::connect(&server.url, proto.name()).await;
        let _ = socket.send(Message::Binary(init_message(&token).to_string().into_bytes())).await;
        assert_eq!(close_frame(&mut socket).await.map(|(code, _)| code), Some(4400), "{proto:?} binary init");

        // A text frame that is not UTF-8.
        let mut socket = open(&server, proto, &token).await;
        let mut bytes = subscribe_bytes(proto);
        bytes.extend_from_slice(&[0xff, 0xfe, 0xfd]);
        let _ = socket.send(Message::Frame(Frame::message(bytes, OpCode::Data(Data::Text), true))).await;
        assert_eq!(close_frame(&mut socket).await.map(|(code, _)| code), Some(4400), "{proto:?} invalid UTF-8");
    }
}

/// A text message that is not a message of the protocol closes with 4400,
/// and the close reason does not quote what was sent.
#[tokio::test]
async fn malformed_message_closes_4400() {
    let server = Server::start().await;
    let (_, token) = server.create_user("malformed@example.com").await;
    let secret = "sk-ant-api03-NOTTOBEECHOED";
    for proto in PROTOCOLS {
        for bad in [
            "not json".to_owned(),
            json!({ "type": "no-such-type", "id": secret }).to_string(),
            json!({ "id": "1", "type": proto.subscribe(), "payload": { "query": EVENTS, "variables": secret } })
                .to_string(),
        ] {
            let mut socket = open(&server, proto, &token).await;
            socket.send(Message::Text(bad.clone())).await.unwrap();
            let (code, reason) = close_frame(&mut socket).await.expect("a close frame");
            assert_eq!(code, 4400, "{proto:?} {bad}: {reason}");
            assert!(!reason.contains("NOTTOBEECHOED"), "{proto:?}: {reason}");
        }
    }
}

/// A second `connection_init` closes with 4429 on both protocols.
#[tokio::test]
async fn second_connection_init_closes_4429() {
    let server = Server::start().await;
    let (_, token) = server.create_user("twice@example.com").await;
    for proto in PROTOCOLS {
        let mut socket = open(&server, proto, &token).await;
        ws::send(&mut socket, init_message(&token)).await;
        let frame = close_frame(&mut socket).await;
        assert_eq!(frame.map(|(code, _)| code), Some(4429), "{proto:?}");
    }
}

/// Issue 21, item 6: 1,100 anonymous upgrades from one address (more than
/// the 1,024 waiting sockets the server keeps) that never send
/// `connection_init` do not lock out a signed-in subscriber from the same
/// address: the oldest waiters are closed (1013) to make room, and the
/// subscriber, who sends its init at once, gets in and receives events.
#[tokio::test]
async fn anonymous_waiters_do_not_lock_out_a_signed_in_subscriber() {
    let server = Server::start_with(&[("SESAME_GRAPHQL__WS_INIT_TIMEOUT", "120s")]).await;
    let (_, token) = server.create_user("waiter-proof@example.com").await;
    let mut waiters = Vec::new();
    for chunk in 0..11 {
        let opened =
            futures_util::future::join_all((0..100).map(|_| ws::connect(&server.url, "graphql-transport-ws"))).await;
        waiters.extend(opened);
        assert_eq!(waiters.len(), (chunk + 1) * 100);
    }
    let mut subscriber = open(&server, Proto::Transport, &token).await;
    subscribe(&mut subscriber, Proto::Transport, "events", EVENTS).await;
    // The subscription is live once a ping after it is answered.
    until_pong(&mut subscriber).await;
    server.api().set_api_key(&token, Provider::Anthropic, ANTHROPIC_KEY).await.unwrap();
    let event = ws::recv(&mut subscriber).await.expect("an event");
    assert_eq!(event["type"], "next", "{event}");
    // The oldest anonymous waiters were the ones closed, with 1013.
    let (code, reason) = close_frame(&mut waiters[0]).await.expect("a close frame");
    assert_eq!(code, 1013, "{reason}");
    drop(waiters);
}
