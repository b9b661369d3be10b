//! What a task spends through the proxy: requests, bytes, and the token
//! usage providers report in their answers, read as the answer streams by
//! (SSE `data:` lines through a bounded line buffer; a JSON answer's first
//! [`JSON_CAP`] bytes), never kept: only the numbers are. Added up in
//! memory per grant and flushed to the store in the background
//! ([`Ledger::run`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde_json::Value;

use crate::store::{ProxyHandle, Usage};

/// The longest SSE line parsed (a longer one is skipped, not kept).
const LINE_CAP: usize = 64 * 1024;
/// The most of a JSON answer kept to read its usage at the end.
const JSON_CAP: usize = 64 * 1024;
/// How often the ledger is flushed to the store.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// Token counts read from one answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
}

/// Reads an answer's token usage as its bytes pass.
pub enum Meter {
    /// `text/event-stream`: `data:` lines, each parsed on its own; counts
    /// are cumulative in every provider's stream, so the last one wins.
    Sse { line: Vec<u8>, skipping: bool, tokens: Tokens },
    /// `application/json`: the body, up to [`JSON_CAP`].
    Json { body: Vec<u8>, over: bool },
    /// Anything else (or compressed): bytes only.
    Off,
}

impl Meter {
    /// The meter for an answer with these headers.
    pub fn for_answer(content_type: Option<&str>, content_encoding: Option<&str>) -> Meter {
        if content_encoding.is_some_and(|e| !e.eq_ignore_ascii_case("identity")) {
            return Meter::Off;
        }
        let ct = content_type.unwrap_or("").to_ascii_lowercase();
        if ct.starts_with("text/event-stream") {
            Meter::Sse { line: Vec::new(), skipping: false, tokens: Tokens::default() }
        } else if ct.starts_with("application/json") {
            Meter::Json { body: Vec::new(), over: false }
        } else {
            Meter::Off
        }
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match self {
            Meter::Sse { line, skipping, tokens } => {
                let mut rest = chunk;
                while let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                    if !*skipping && line.len() + nl <= LINE_CAP {
                        line.extend_from_slice(&rest[..nl]);
                        sse_line(line, tokens);
                    }
                    line.clear();
                    *skipping = false;
                    rest = &rest[nl + 1..];
                }
                if !*skipping {
                    if line.len() + rest.len() > LINE_CAP {
                        line.clear();
                        *skipping = true;
                    } else {
                        line.extend_from_slice(rest);
                    }
                }
            }
            Meter::Json { body, over } => {
                if !*over {
                    if body.len() + chunk.len() > JSON_CAP {
                        *over = true;
                        *body = Vec::new();
                    } else {
                        body.extend_from_slice(chunk);
                    }
                }
            }
            Meter::Off => {}
        }
    }

    /// The usage read, once the answer has ended.
    pub fn finish(&mut self) -> Tokens {
        match self {
            Meter::Sse { line, tokens, .. } => {
                if !line.is_empty() {
                    sse_line(line, tokens);
                }
                *tokens
            }
            Meter::Json { body, over: false } => {
                let mut tokens = Tokens::default();
                if let Ok(value) = serde_json::from_slice::<Value>(body) {
                    match value {
                        // Gemini's `streamGenerateContent` without SSE: an array of chunks.
                        Value::Array(items) => items.iter().for_each(|v| read_usage(v, &mut tokens)),
                        v => read_usage(&v, &mut tokens),
                    }
                }
                *body = Vec::new();
                tokens
            }
            _ => Tokens::default(),
        }
    }
}

fn sse_line(line: &[u8], tokens: &mut Tokens) {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(data) = line.strip_prefix(b"data:") else { return };
    // Only events that may carry usage are parsed at all.
    if !data.windows(5).any(|w| w == b"usage" || w == b"Usage") {
        return;
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        read_usage(&value, tokens);
    }
}

/// Anthropic (`usage`, `message.usage` in `message_start`), OpenAI
/// Responses (`response.usage` in `response.completed`), chat completions
/// (`usage.prompt_tokens`), Gemini (`usageMetadata`). A count present
/// replaces the one before (they are cumulative).
fn read_usage(v: &Value, tokens: &mut Tokens) {
    for usage in [&v["usage"], &v["message"]["usage"], &v["response"]["usage"], &v["usageMetadata"]] {
        if !usage.is_object() {
            continue;
        }
        let pick = |keys: &[&str]| keys.iter().find_map(|k| usage[*k].as_u64());
        if let Some(n) = pick(&["input_tokens", "prompt_tokens", "promptTokenCount"]) {
            tokens.input = n;
        }
        if let Some(n) = pick(&["output_tokens", "completion_tokens", "candidatesTokenCount"]) {
            tokens.output = n;
        }
    }
}

/// Usage added up per grant key until the next flush.
#[derive(Clone, Default)]
pub struct Ledger {
    pending: Arc<Mutex<HashMap<String, Usage>>>,
}

impl Ledger {
    pub fn add(&self, grant_key: &str, usage: Usage) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = pending.entry(grant_key.to_owned()).or_default();
        entry.requests += usage.requests;
        entry.bytes_sent += usage.bytes_sent;
        entry.bytes_received += usage.bytes_received;
        entry.input_tokens += usage.input_tokens;
        entry.output_tokens += usage.output_tokens;
    }

    async fn flush(&self, store: &ProxyHandle) {
        let taken = std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        for (key, usage) in taken {
            if let Err(e) = store.add_usage(&key, usage).await {
                tracing::warn!(error = ?e, "recording a task's proxy usage failed; it is added to the next flush");
                self.add(&key, usage);
            }
        }
    }

    /// Flushes every second until the shutdown, then once more.
    pub async fn run(self, store: ProxyHandle) {
        let mut tick = tokio::time::interval(FLUSH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => self.flush(&store).await,
                () = crate::shutdown::triggered() => break,
            }
        }
        self.flush(&store).await;
    }

    /// The final flush (after the proxy's connections are done).
    pub async fn flush_now(&self, store: &ProxyHandle) {
        self.flush(store).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sse(chunks: &[&str]) -> Tokens {
        let mut m = Meter::for_answer(Some("text/event-stream; charset=utf-8"), None);
        chunks.iter().for_each(|c| m.feed(c.as_bytes()));
        m.finish()
    }

    #[test]
    fn anthropic_stream_split_anywhere() {
        let text = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1}}}\n\n\
                    event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"hi\"}}\n\n\
                    event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":15}}\n\n";
        for cut in [1, 7, 50, text.len() - 3] {
            assert_eq!(sse(&[&text[..cut], &text[cut..]]), Tokens { input: 25, output: 15 }, "cut at {cut}");
        }
    }

    #[test]
    fn openai_gemini_and_chat_completions() {
        let responses = "data: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":4}}}\r\n\r\n";
        assert_eq!(sse(&[responses]), Tokens { input: 9, output: 4 });
        let chat = "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n";
        assert_eq!(sse(&[chat]), Tokens { input: 3, output: 2 });
        let gemini = "data: {\"usageMetadata\":{\"promptTokenCount\":7,\"candidatesTokenCount\":1}}\n\ndata: {\"usageMetadata\":{\"promptTokenCount\":7,\"candidatesTokenCount\":5}}";
        assert_eq!(sse(&[gemini]), Tokens { input: 7, output: 5 });
        let mut json = Meter::for_answer(Some("application/json"), None);
        json.feed(br#"[{"usageMetadata":{"promptTokenCount":2}},{"usageMetadata":{"promptTokenCount":2,"candidatesTokenCount":8}}]"#);
        assert_eq!(json.finish(), Tokens { input: 2, output: 8 });
    }

    #[test]
    fn long_lines_and_bodies_are_not_kept() {
        let mut m = Meter::for_answer(Some("text/event-stream"), None);
        let long = vec![b'x'; LINE_CAP * 3];
        m.feed(&long);
        assert!(matches!(&m, Meter::Sse { line, .. } if line.capacity() <= LINE_CAP * 2));
        m.feed(b"\ndata: {\"usage\":{\"input_tokens\":1}}\n");
        assert_eq!(m.finish().input, 1);
        let mut j = Meter::for_answer(Some("application/json"), None);
        j.feed(&vec![b' '; JSON_CAP + 1]);
        assert!(matches!(&j, Meter::Json { body, over: true } if body.is_empty()));
        assert!(matches!(Meter::for_answer(Some("application/json"), Some("gzip")), Meter::Off));
    }
}
