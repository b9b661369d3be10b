//! The WebSocket session's reader of client messages, in both protocols
//! (graphql-transport-ws, graphql-ws): the first text frame
//! (`connection_init`, read before the token is checked), then every
//! message through the checks `/graphql/ws` runs before async-graphql's
//! protocol driver sees it (message shape, operation ids, duplicates,
//! subscription limits, a second init, binary frames, read errors).
//!
//! Input: one byte (protocol and message cap), then frames separated by NUL
//! bytes: a text frame, or `\x01` binary, `\x02` ping, `\x03` close,
//! `\x04<text>` a read error.
//!
//! Never panics; a close reason fits a close frame (123 bytes); a session
//! holds no more live operations than the per-socket limit; every session
//! releases its socket and permits (one instance's limits serve every run).
#![no_main]

use std::sync::{Arc, LazyLock};

use libfuzzer_sys::fuzz_target;
use sesame_vault::fuzzing::{ws_completed_id, ws_read, Frame, GraphqlConfig, SubscriptionLimits};

static LIMITS: LazyLock<Arc<SubscriptionLimits>> = LazyLock::new(|| SubscriptionLimits::new(&GraphqlConfig::default()));

fn frame(part: &[u8]) -> Frame {
    match part {
        [1, ..] => Frame::Binary(part[1..].to_vec()),
        [2, ..] => Frame::Ping,
        [3, ..] => Frame::Close,
        [4, rest @ ..] => Frame::Error(String::from_utf8_lossy(rest).into_owned()),
        _ => Frame::Text(String::from_utf8_lossy(part).into_owned()),
    }
}

fuzz_target!(|data: &[u8]| {
    let [setting, rest @ ..] = data else { return };
    let protocol = if setting & 1 == 0 { "graphql-transport-ws" } else { "graphql-ws" };
    let max_message = if setting & 2 == 0 { 64 * 1024 } else { 1024 };
    let frames: Vec<Frame> = rest.split(|&b| b == 0).map(frame).collect();
    for f in &frames {
        if let Frame::Text(text) = f {
            let _ = ws_completed_id(text);
        }
    }
    let read = ws_read(&LIMITS, protocol, frames, max_message);
    let per_socket = GraphqlConfig::default().max_subscriptions_per_socket;
    assert!(read.live <= per_socket, "{} live operations on one socket", read.live);
    let closes = read.first.iter().filter_map(|f| f.as_ref().err()).chain(read.close.as_ref());
    for (code, reason) in closes {
        assert!(reason.len() <= 123, "close reason of {} bytes", reason.len());
        assert!((1000..5000).contains(code), "close code {code}");
    }
    for refusal in &read.refused {
        let value: serde_json::Value = serde_json::from_str(refusal).expect("refusals are JSON");
        assert_eq!(value["type"], "error");
    }
});
