//! What the egress proxy parses of the bodies that pass through it: the
//! token-endpoint requests a task sends (JSON and form, read for
//! `grant_type` and `refresh_token`), and the answers a provider streams
//! back, read for token usage (SSE `data:` lines or JSON, cut anywhere).
//!
//! Never panics; a JSON body read is an object; the usage read from an SSE
//! stream does not depend on where the stream was cut into chunks (as long
//! as no line passes the meter's bound, past which a line is skipped).
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sesame_vault::fuzzing::{token_request_params, Meter};

#[derive(Arbitrary, Debug)]
struct Input {
    body: Vec<u8>,
    form: bool,
    /// Where the answer is cut into chunks (offsets into `body`).
    cuts: Vec<u16>,
    kind: u8,
}

fn metered(content_type: &str, chunks: &[&[u8]]) -> sesame_vault::fuzzing::Tokens {
    let mut meter = Meter::for_answer(Some(content_type), None);
    for chunk in chunks {
        meter.feed(chunk);
    }
    meter.finish()
}

fuzz_target!(|input: Input| {
    if let Some((grant_type, refresh_token)) = token_request_params(&input.body, input.form) {
        if !input.form {
            let value: serde_json::Value = serde_json::from_slice(&input.body).expect("read as JSON");
            assert!(value.is_object());
            assert_eq!(grant_type.as_deref(), value.get("grant_type").and_then(|v| v.as_str()));
            assert_eq!(refresh_token.as_deref(), value.get("refresh_token").and_then(|v| v.as_str()));
        }
    }

    let content_type = ["text/event-stream", "application/json", "text/plain"][usize::from(input.kind % 3)];
    let mut cuts: Vec<usize> = input.cuts.iter().map(|&c| usize::from(c) % (input.body.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.dedup();
    let mut chunks = Vec::new();
    let mut last = 0;
    for cut in cuts {
        chunks.push(&input.body[last..cut]);
        last = cut;
    }
    chunks.push(&input.body[last..]);
    let whole = metered(content_type, &[&input.body]);
    let split = metered(content_type, &chunks);
    let longest_line = input.body.split(|&b| b == b'\n').map(<[u8]>::len).max().unwrap_or(0);
    if content_type == "text/event-stream" && longest_line < 60 * 1024 {
        assert_eq!(whole, split, "usage depends on the chunking");
    }
    if content_type == "application/json" {
        assert_eq!(whole, split);
    }
});
