//! Bearer tokens and the principals they stand for.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::domain::Role;
use crate::error::ApiError;

const PREFIX: &str = "sv_";
const TOKEN_BYTES: usize = 32;
/// `sv_` + 32 bytes in unpadded base64url.
const TOKEN_LEN: usize = PREFIX.len() + 43;

/// Who is calling. A person acts through owner (and, if admin, admin)
/// handles on the store; a runner only through the runner handle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Person {
        user_id: String,
        role: Role,
        token_id: String,
    },
    /// `created_by`: who made the runner token, in words ("operator CLI",
    /// another runner, or "the IdP's runner role" for a runner JWT); every
    /// issuance's audit entry names it.
    Runner {
        token_id: String,
        name: String,
        created_by: String,
    },
}

impl Principal {
    pub fn actor_kind(&self) -> &'static str {
        match self {
            Principal::Person { role: Role::Admin, .. } => "ADMIN",
            Principal::Person { .. } => "USER",
            Principal::Runner { .. } => "RUNNER",
        }
    }

    pub fn actor_id(&self) -> &str {
        match self {
            Principal::Person { user_id, .. } => user_id,
            Principal::Runner { token_id, .. } => token_id,
        }
    }

    pub fn user_id(&self) -> Option<&str> {
        match self {
            Principal::Person { user_id, .. } => Some(user_id),
            Principal::Runner { .. } => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Person { role: Role::Admin, .. })
    }

    /// Who this caller is as the creator of a runner token, in words.
    pub fn as_creator(&self) -> String {
        match self {
            Principal::Runner { token_id, name, .. } => format!("runner \"{name}\" ({token_id})"),
            Principal::Person { user_id, .. } => format!("{} {user_id}", self.actor_kind()),
        }
    }

    /// A runner in words for the audit trail: its token's name and who
    /// created it (none for a person).
    pub fn runner_label(&self) -> Option<String> {
        match self {
            Principal::Runner { name, created_by, .. } => {
                Some(format!("runner token \"{name}\" (created by {created_by})"))
            }
            Principal::Person { .. } => None,
        }
    }
}

/// A syntactically valid bearer token. Its Debug never shows the value.
pub struct BearerToken(zeroize::Zeroizing<String>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(***)")
    }
}

impl BearerToken {
    /// Parses an `Authorization` header value (`Bearer sv_…`).
    pub fn from_header(value: &str) -> Result<BearerToken, ApiError> {
        let mut parts = value.trim().splitn(2, ' ');
        let scheme = parts.next().unwrap_or_default();
        let token = parts.next().unwrap_or_default().trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(ApiError::Unauthenticated("the Authorization header must be `Bearer <token>`".into()));
        }
        BearerToken::parse(token)
    }

    pub fn parse(token: &str) -> Result<BearerToken, ApiError> {
        let well_formed = token.len() == TOKEN_LEN
            && token.starts_with(PREFIX)
            && URL_SAFE_NO_PAD.decode(&token[PREFIX.len()..]).is_ok_and(|b| b.len() == TOKEN_BYTES);
        if !well_formed {
            return Err(ApiError::Unauthenticated(format!(
                "malformed token: sesame-vault tokens start with `{PREFIX}` and are {TOKEN_LEN} characters long"
            )));
        }
        Ok(BearerToken(zeroize::Zeroizing::new(token.to_owned())))
    }

    /// The stored form: hex SHA-256. Tokens carry 256 bits of randomness,
    /// so a fast hash is enough (no dictionary to defend against).
    pub fn hash(&self) -> String {
        hash_token(&self.0)
    }
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A fresh token and its stored hash.
pub fn generate_token() -> (zeroize::Zeroizing<String>, String) {
    let mut bytes = [0u8; TOKEN_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let token = zeroize::Zeroizing::new(format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)));
    let hash = hash_token(&token);
    (token, hash)
}

/// Constant-time equality of two stored hashes.
pub fn hashes_match(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_and_hash_consistently() {
        let (token, hash) = generate_token();
        let parsed = BearerToken::from_header(&format!("Bearer {}", token.as_str())).unwrap();
        assert!(hashes_match(&parsed.hash(), &hash));
        assert_ne!(generate_token().0.as_str(), token.as_str());
    }

    #[test]
    fn malformed_tokens_are_refused_without_echo() {
        for header in [
            "",
            "Bearer",
            "Basic abc",
            "Bearer sv_short",
            "Bearer xx_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            "Bearer sv_!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            match BearerToken::from_header(header) {
                Err(ApiError::Unauthenticated(msg)) => assert!(!msg.contains("!!!") && !msg.contains("short")),
                other => panic!("{header:?} gave {other:?}"),
            }
        }
    }
}
