//! A WebSocket through the proxy (Codex opens one to `/v1/responses`): the
//! provider's frames are read as they pass, so the token usage its events
//! report (`response.completed` → `response.usage`) is counted like an SSE
//! stream's. The extension header is not sent on, so no frame is compressed.
//! Nothing is kept but the current text message, up to the meter's bound.

use super::usage::Meter;

/// The longest text message read for usage; longer ones pass unread.
const MESSAGE_CAP: usize = 64 * 1024;

/// Reads the frames of one direction of a WebSocket (RFC 6455 §5.2).
#[derive(Default)]
pub struct Frames {
    /// The frame header being read (at most 14 bytes).
    header: Vec<u8>,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    in_payload: bool,
    mask: Option<[u8; 4]>,
    /// Offset into the current frame's payload (for the mask).
    offset: u64,
    /// The current frame belongs to a message and ends it.
    data: bool,
    fin: bool,
    /// The current message is text and still under the cap.
    text: bool,
    message: Vec<u8>,
}

impl Frames {
    /// Reads `bytes` (as they pass, in order), feeding each whole text
    /// message to `meter` as one SSE `data:` line.
    pub fn feed(&mut self, mut bytes: &[u8], meter: &mut Meter) {
        while !bytes.is_empty() {
            if !self.in_payload {
                let need = self.header_len().saturating_sub(self.header.len()).max(1);
                let take = need.min(bytes.len());
                self.header.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.header.len() >= 2 && self.header.len() == self.header_len() {
                    self.start_frame();
                    if self.remaining == 0 {
                        self.end_frame(meter);
                    }
                }
                continue;
            }
            let take = usize::try_from(self.remaining).unwrap_or(usize::MAX).min(bytes.len());
            if self.data && self.text {
                if self.message.len() + take > MESSAGE_CAP {
                    self.text = false;
                    self.message = Vec::new();
                } else {
                    let start = self.message.len();
                    self.message.extend_from_slice(&bytes[..take]);
                    if let Some(mask) = self.mask {
                        for (i, b) in self.message[start..].iter_mut().enumerate() {
                            *b ^= mask[((self.offset + i as u64) % 4) as usize];
                        }
                    }
                }
            }
            self.offset += take as u64;
            self.remaining -= take as u64;
            bytes = &bytes[take..];
            if self.remaining == 0 {
                self.end_frame(meter);
            }
        }
    }

    /// The full header length, as far as the bytes read tell.
    fn header_len(&self) -> usize {
        if self.header.len() < 2 {
            return 2;
        }
        let extended = match self.header[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
        2 + extended + mask
    }

    fn start_frame(&mut self) {
        let h = &self.header;
        let opcode = h[0] & 0x0f;
        self.fin = h[0] & 0x80 != 0;
        let (len, at) = match h[1] & 0x7f {
            126 => (u64::from(u16::from_be_bytes([h[2], h[3]])), 4),
            127 => (u64::from_be_bytes(h[2..10].try_into().expect("eight bytes")), 10),
            n => (u64::from(n), 2),
        };
        self.mask = (h[1] & 0x80 != 0).then(|| [h[at], h[at + 1], h[at + 2], h[at + 3]]);
        self.remaining = len;
        self.offset = 0;
        self.in_payload = true;
        self.data = opcode <= 2;
        match opcode {
            // A text message starts; a binary one is not read.
            1 => {
                self.text = true;
                self.message.clear();
            }
            2 => {
                self.text = false;
                self.message.clear();
            }
            _ => {}
        }
    }

    fn end_frame(&mut self, meter: &mut Meter) {
        if self.data && self.fin && self.text {
            meter.feed(b"data:");
            meter.feed(&self.message);
            meter.feed(b"\n");
        }
        if self.data && self.fin {
            self.text = false;
            self.message.clear();
        }
        self.header.clear();
        self.in_payload = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::usage::Tokens;

    fn frame(opcode: u8, fin: bool, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        let m = if mask.is_some() { 0x80 } else { 0 };
        match payload.len() {
            n if n < 126 => f.push(m | n as u8),
            n if n < 65536 => {
                f.push(m | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(m | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        match mask {
            Some(k) => {
                f.extend_from_slice(&k);
                f.extend(payload.iter().enumerate().map(|(i, b)| b ^ k[i % 4]));
            }
            None => f.extend_from_slice(payload),
        }
        f
    }

    fn read(stream: &[u8], cut: usize) -> Tokens {
        let mut meter = Meter::for_answer(Some("text/event-stream"), None);
        let mut frames = Frames::default();
        for chunk in stream.chunks(cut.max(1)) {
            frames.feed(chunk, &mut meter);
        }
        meter.finish()
    }

    #[test]
    fn usage_in_a_responses_event_is_read_however_the_stream_is_cut() {
        let done = br#"{"type":"response.completed","response":{"usage":{"input_tokens":42,"output_tokens":7}}}"#;
        let mut stream = frame(1, true, br#"{"type":"response.created"}"#, None);
        stream.extend(frame(9, true, b"ping", None));
        stream.extend(frame(2, true, &[0, 1, 2, 255], None));
        // Fragmented: text, a control frame between, then the rest.
        stream.extend(frame(1, false, &done[..20], None));
        stream.extend(frame(10, true, b"", None));
        stream.extend(frame(0, true, &done[20..], None));
        for cut in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(read(&stream, cut), Tokens { input: 42, output: 7 }, "cut {cut}");
        }
        // Masked (a client's frames) and long (16-bit and 64-bit lengths).
        let padded = format!(r#"{{"pad":"{}","usage":{{"input_tokens":5,"output_tokens":6}}}}"#, "x".repeat(70_000));
        let small = br#"{"usage":{"input_tokens":1,"output_tokens":2}}"#;
        let masked = frame(1, true, small, Some([1, 2, 3, 4]));
        assert_eq!(read(&masked, 5), Tokens { input: 1, output: 2 });
        // Over the cap: passes unread, and the next message is read again.
        let mut long = frame(1, true, padded.as_bytes(), None);
        long.extend(frame(1, true, small, None));
        assert_eq!(read(&long, 4096), Tokens { input: 1, output: 2 });
        let medium = format!(r#"{{"pad":"{}","usage":{{"input_tokens":3,"output_tokens":4}}}}"#, "y".repeat(300));
        assert_eq!(read(&frame(1, true, medium.as_bytes(), None), 100), Tokens { input: 3, output: 4 });
    }
}
