//! Proxy delivery's placeholders: what a task holds instead of a secret.
//!
//! A placeholder is `<prefix>svp_<field><grant>`: a public prefix the CLI
//! insists on (`github_pat_`, `sk-ant-oat01-`; never a byte of the real
//! value), the marker, one letter for the field it stands for, and the
//! grant's random id (26 base62 characters, ~152 bits), which only the task
//! it was issued to holds. Where a CLI needs a JWT (Codex's `id_token` and
//! access token), the real header and claims are kept and the placeholder
//! takes the signature's place. The store keeps the SHA-256 of the grant id,
//! never the id.
//!
//! The egress proxy finds placeholders with [`find_all`]: the span it
//! replaces is the whole token around the marker (prefix and JWT parts
//! included), so the provider receives exactly the real value.

use std::fmt;
use std::ops::Range;

use rand::distributions::Alphanumeric;
use rand::Rng;
use sha2::{Digest, Sha256};

/// What every placeholder contains.
pub const MARKER: &str = "svp_";
/// Length of a grant id.
pub const GRANT_ID_LEN: usize = 26;

/// Which secret of a grant a placeholder stands for.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Field {
    /// An API key (a person's or the system-wide one).
    ApiKey,
    /// A subscription's access token.
    Access,
    /// A subscription's refresh token (answered by the proxy itself, never
    /// sent anywhere).
    Refresh,
    /// Codex's `id_token`.
    IdToken,
}

impl Field {
    fn letter(self) -> char {
        match self {
            Field::ApiKey => 'k',
            Field::Access => 'a',
            Field::Refresh => 'r',
            Field::IdToken => 'i',
        }
    }

    fn from_letter(c: u8) -> Option<Field> {
        Some(match c {
            b'k' => Field::ApiKey,
            b'a' => Field::Access,
            b'r' => Field::Refresh,
            b'i' => Field::IdToken,
            _ => return None,
        })
    }
}

/// A grant's random id: what a task's placeholders carry. `Debug` hides it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GrantId(String);

impl GrantId {
    pub fn mint() -> GrantId {
        GrantId(rand::thread_rng().sample_iter(&Alphanumeric).take(GRANT_ID_LEN).map(char::from).collect())
    }

    /// What the store keys grants by (hex SHA-256).
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.0.as_bytes()))
    }

    /// The placeholder text for `field`, after `prefix`.
    pub fn placeholder(&self, prefix: &str, field: Field) -> String {
        format!("{prefix}{MARKER}{}{}", field.letter(), self.0)
    }

    /// A JWT-shaped placeholder: `jwt`'s header and claims (public parts,
    /// kept so the CLI reads the same expiry and account), the placeholder
    /// as its signature. A value that is not a JWT gets a plain placeholder.
    pub fn jwt_placeholder(&self, jwt: &str, field: Field) -> String {
        let mut parts = jwt.split('.');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(h), Some(c), Some(_), None) if is_b64url(h) && is_b64url(c) => {
                format!("{h}.{c}.{}", self.placeholder("", field))
            }
            _ => self.placeholder("", field),
        }
    }
}

impl fmt::Debug for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("GrantId(***)")
    }
}

fn is_b64url(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A placeholder found in text a task sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    /// The bytes to replace: the whole token around the marker.
    pub span: Range<usize>,
    pub field: Field,
    pub grant: GrantId,
}

/// Characters a placeholder is made of (its prefix, the marker, the id,
/// and a JWT's base64url parts); `=`, `&`, `"` and spaces end it, so one
/// is found whole in a header, a query string, a form or JSON.
fn token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
}

/// Every placeholder in `text`, in order. A marker not followed by a field
/// letter and a full grant id is not a placeholder (the caller refuses a
/// request that holds a marker but no placeholder: [`has_marker`]).
pub fn find_all(text: &str) -> Vec<Found> {
    let bytes = text.as_bytes();
    let mut found = Vec::new();
    let mut from = 0;
    // Where the last placeholder ended: a span never reaches back past it
    // (but it does past a false marker, e.g. `svp_` inside a JWT's claims).
    let mut last_end = 0;
    while let Some(at) = text[from..].find(MARKER).map(|i| i + from) {
        let id_start = at + MARKER.len() + 1;
        let id_end = id_start + GRANT_ID_LEN;
        let field = bytes.get(at + MARKER.len()).copied().and_then(Field::from_letter);
        let id_ok = id_end <= bytes.len() && bytes[id_start..id_end].iter().all(u8::is_ascii_alphanumeric);
        match field {
            Some(field) if id_ok => {
                let mut start = at;
                while start > last_end && token_byte(bytes[start - 1]) {
                    start -= 1;
                }
                let mut end = id_end;
                while end < bytes.len() && token_byte(bytes[end]) {
                    end += 1;
                }
                found.push(Found { span: start..end, field, grant: GrantId(text[id_start..id_end].to_owned()) });
                from = end;
                last_end = end;
            }
            _ => from = at + MARKER.len(),
        }
    }
    found
}

/// Whether `text` holds the marker at all (a damaged placeholder is refused,
/// not sent on).
pub fn has_marker(text: &str) -> bool {
    text.contains(MARKER)
}

/// `text` with every placeholder replaced by `real(found)`; `None` when one
/// of them has no real value (the request must be refused).
pub fn replace_all(text: &str, mut real: impl FnMut(&Found) -> Option<String>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for f in find_all(text) {
        out.push_str(&text[last..f.span.start]);
        out.push_str(&real(&f)?);
        last = f.span.end;
    }
    out.push_str(&text[last..]);
    Some(out)
}

/// Where the vault's egress proxy is, as a task reaches it, and the public
/// certificate of the CA it signs intercepted hosts with.
#[derive(Clone, Debug)]
pub struct ProxyAccess {
    /// e.g. `http://127.0.0.1:8443`.
    pub url: String,
    /// PEM, public part only.
    pub ca_cert_pem: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_placeholder_is_found_with_its_prefix_and_replaced_whole() {
        let g = GrantId::mint();
        let p = g.placeholder("github_pat_", Field::Access);
        let header = format!("Bearer {p}");
        let found = find_all(&header);
        assert_eq!(found.len(), 1);
        assert_eq!(&header[found[0].span.clone()], p);
        assert_eq!(found[0].field, Field::Access);
        assert_eq!(found[0].grant, g);
        assert_eq!(replace_all(&header, |_| Some("REAL".into())).unwrap(), "Bearer REAL");
    }

    #[test]
    fn a_jwt_placeholder_keeps_header_and_claims_and_is_replaced_whole() {
        let g = GrantId::mint();
        let p = g.jwt_placeholder("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJl", Field::IdToken);
        assert!(p.starts_with("eyJhbGciOiJSUzI1NiJ9.eyJleHAiOjF9."));
        assert!(!p.contains("c2lnbmF0dXJl"), "the real signature is gone");
        let found = find_all(&p);
        assert_eq!(found[0].span, 0..p.len());
        assert_eq!(found[0].field, Field::IdToken);
    }

    #[test]
    fn damaged_markers_are_not_placeholders() {
        for text in ["svp_", "svp_x0123", "svp_kshort", "xx svp_k", "svp_k!!!!!!!!!!!!!!!!!!!!!!!!!!!!"] {
            assert!(find_all(text).is_empty(), "{text}");
            assert!(has_marker(text));
        }
        assert_eq!(replace_all("no placeholder", |_| None).unwrap(), "no placeholder");
    }

    #[test]
    fn a_false_marker_in_a_jwts_claims_does_not_cut_the_span() {
        let g = GrantId::mint();
        // Claims whose base64url happens to hold the marker.
        let p = g.jwt_placeholder("eyJhbGciOiJSUzI1NiJ9.eyJzvp_xyz.c2ln", Field::Access);
        let header = format!("Bearer {p}");
        let found = find_all(&header);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(&header[found[0].span.clone()], p);
    }

    #[test]
    fn two_placeholders_in_one_text() {
        let (a, b) = (GrantId::mint(), GrantId::mint());
        let text = format!("k={}&r={}", a.placeholder("", Field::ApiKey), b.placeholder("", Field::Refresh));
        let found = find_all(&text);
        assert_eq!(found.len(), 2, "{found:?}");
        let out = replace_all(&text, |f| Some(if f.grant == a { "A".into() } else { "B".into() })).unwrap();
        assert_eq!(out, "k=A&r=B");
    }
}
