//! A real WebSocket GraphQL client (graphql-transport-ws or legacy graphql-ws).

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

pub type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(base: &str, protocol: &str) -> Socket {
    let mut request = format!("{}/graphql/ws", base.replacen("http", "ws", 1)).into_client_request().unwrap();
    request.headers_mut().insert("Sec-WebSocket-Protocol", protocol.parse().unwrap());
    tokio_tungstenite::connect_async(request).await.expect("websocket").0
}

/// Connects and initialises with the token; panics unless acknowledged.
pub async fn open(base: &str, token: &str) -> Socket {
    let mut ws = connect(base, "graphql-transport-ws").await;
    send(&mut ws, json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
        .await;
    let ack = recv(&mut ws).await.expect("ack");
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    ws
}

pub async fn send(ws: &mut Socket, msg: Value) {
    ws.send(Message::Text(msg.to_string())).await.unwrap();
}

/// The next JSON message, or `None` when closed (pings are skipped).
pub async fn recv(ws: &mut Socket) -> Option<Value> {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(60), ws.next())
            .await
            .expect("websocket message in 60 s")?
        {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(&text).unwrap()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            _ => return None,
        }
    }
}

/// The close code the server sent.
pub async fn close_code(ws: &mut Socket) -> Option<u16> {
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(20), ws.next()).await.expect("close in 20 s") {
            Some(Ok(Message::Close(Some(frame)))) => return Some(frame.code.into()),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return None,
            Some(Ok(_)) => continue,
        }
    }
}

/// Subscribes and collects every `next` payload's data until `complete`
/// (or an error, returned as the last element).
pub async fn collect(ws: &mut Socket, id: &str, query: &str, variables: Value) -> Vec<Value> {
    send(ws, json!({ "id": id, "type": "subscribe", "payload": { "query": query, "variables": variables } })).await;
    let mut out = Vec::new();
    while let Some(msg) = recv(ws).await {
        if msg["id"] != id {
            continue;
        }
        match msg["type"].as_str() {
            Some("next") => {
                if msg["payload"]["errors"].is_array() {
                    out.push(msg["payload"].clone());
                } else {
                    out.push(msg["payload"]["data"].clone());
                }
            }
            Some("error") => {
                out.push(json!({ "errors": msg["payload"] }));
                break;
            }
            Some("complete") => break,
            _ => {}
        }
    }
    out
}

/// Reads until `complete` (or the socket ends); the data of the last `next`.
pub async fn last_before_complete(ws: &mut Socket) -> Value {
    let mut last = Value::Null;
    while let Some(msg) = recv(ws).await {
        if msg["type"] == "complete" {
            break;
        }
        if msg["type"] == "next" {
            last = msg["payload"]["data"].clone();
        }
    }
    last
}
