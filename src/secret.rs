//! A configured secret value (a database URL, an encryption key, a
//! system-wide API key): a plain value type that settings and the store
//! share; it imports nothing of the crate.

use serde::{Deserialize, Serialize};

/// A configured secret: prints as `***` in Debug and never serialises its value.
#[derive(Clone, Default, Deserialize, PartialEq, Eq, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
#[serde(transparent)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn new(value: impl Into<String>) -> Self {
        SecretValue(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl Serialize for SecretValue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("***")
    }
}
