//! Identifiers and cursors, parsed at the edge.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use uuid::Uuid;

use crate::error::ApiError;

/// A new time-ordered id (UUIDv7), so ordering by id is ordering by creation.
pub fn new_id() -> String {
    Uuid::now_v7().to_string()
}

/// Parses a client-supplied id; `what` names it in the error ("credential id").
pub fn parse_id(what: &str, raw: &str) -> Result<String, ApiError> {
    Uuid::parse_str(raw.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| ApiError::bad_input(format!("{what} is not a valid id (expected a UUID such as 0190c1d2-…)")))
}

/// Page size: `first` must be 1..=MAX_PAGE.
pub const MAX_PAGE: i32 = 100;

pub fn page_size(first: Option<i32>) -> Result<u64, ApiError> {
    match first.unwrap_or(50) {
        n @ 1..=MAX_PAGE => Ok(n as u64),
        _ => Err(ApiError::bad_input(format!("first must be between 1 and {MAX_PAGE}"))),
    }
}

/// Cursors are opaque to clients; inside they are the last key seen.
pub fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key)
}

pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(cursor) = cursor else { return Ok(None) };
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .filter(|s| s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_input("after is not a cursor this server issued; pass nextCursor from the previous page")
        })
}
