//! Envelope for secrets at rest: AES-256-SIV (an AEAD that stays safe even if
//! a nonce repeats) with a random nonce per encryption and associated data
//! that binds each ciphertext to its owner, record and field.
//!
//! Stored form: `sv1.<key fingerprint>.<base64url(nonce || ciphertext)>`. The
//! fingerprint names the key, so old keys can decrypt while only the current
//! one encrypts, and a missing key is reported by name.

use aes_siv::aead::{Aead, KeyInit, Payload};
use aes_siv::{Aes256SivAead, Nonce};
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hkdf::Hkdf;
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

const FORMAT: &str = "sv1";
const NONCE_LEN: usize = 16;
const TAG_LEN: usize = 16;
/// base64url (no padding) of a tag and an 8-byte number.
const COUNTER_ID_LEN: usize = (TAG_LEN + 8) * 4 / 3;
const HKDF_SALT: &[u8] = b"sesame-vault";
const HKDF_INFO: &[u8] = b"aes-256-siv key v1";

/// Why a configured key was refused. Never contains key material.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("{name} is empty; generate a key with `sesame-vault keygen` or `openssl rand -hex 32`")]
    Empty { name: String },
    #[error(
        "{name} is not a valid key: expected 64 hex characters (32 bytes, as `openssl rand -hex 32` prints), \
         or a 64-byte key as 128 hex characters or base64; got {len} characters"
    )]
    Invalid { name: String, len: usize },
}

/// Why a stored ciphertext could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecryptError {
    #[error("stored ciphertext is malformed")]
    Malformed,
    #[error("ciphertext was encrypted with key {0}, which is not in the keyring (set it in ENCRYPTION_KEYS_OLD)")]
    UnknownKey(String),
    #[error("ciphertext failed authentication: it was altered, moved to another record, or the key is wrong")]
    Authentication,
}

/// What a ciphertext is bound to; decrypting with any other binding fails.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    pub owner_id: &'a str,
    pub record_id: &'a str,
    pub field: &'a str,
}

impl Binding<'_> {
    fn associated_data(&self) -> Vec<u8> {
        // NUL separators: ids and field names never contain NUL, so distinct
        // bindings can never serialise to the same bytes.
        [b"sesame-vault/v1".as_slice(), self.owner_id.as_bytes(), self.record_id.as_bytes(), self.field.as_bytes()]
            .join(&0u8)
    }
}

/// One 64-byte AES-256-SIV key with its fingerprint.
pub struct Key {
    bytes: Zeroizing<[u8; 64]>,
    fingerprint: String,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Key({} ***)", self.fingerprint)
    }
}

impl Key {
    /// Parses a key as configured: 64 hex chars (32 bytes, expanded with
    /// HKDF-SHA256), or 64 bytes as 128 hex chars or base64. `name` is the
    /// setting's name, used in the error.
    pub fn parse(name: &str, text: &str) -> Result<Key, KeyError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty { name: name.to_owned() });
        }
        let invalid = || KeyError::Invalid { name: name.to_owned(), len: text.chars().count() };
        let mut raw = Zeroizing::new(match text.len() {
            64 | 128 if text.bytes().all(|b| b.is_ascii_hexdigit()) => hex::decode(text).map_err(|_| invalid())?,
            _ => [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
                .iter()
                .find_map(|engine| engine.decode(text).ok())
                .filter(|bytes| bytes.len() == 64)
                .ok_or_else(invalid)?,
        });
        let mut bytes = Zeroizing::new([0u8; 64]);
        if raw.len() == 32 {
            Hkdf::<Sha256>::new(Some(HKDF_SALT), &raw)
                .expand(HKDF_INFO, bytes.as_mut())
                .expect("64 bytes is a valid HKDF-SHA256 output length");
        } else {
            bytes.copy_from_slice(&raw);
        }
        raw.zeroize();
        Ok(Key::from_bytes(bytes))
    }

    fn from_bytes(bytes: Zeroizing<[u8; 64]>) -> Key {
        let digest = Sha256::digest(bytes.as_slice());
        Key { fingerprint: hex::encode(&digest[..8]), bytes }
    }

    /// A fresh random key in the 64-hex-character form.
    pub fn generate() -> String {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(seed.as_mut());
        hex::encode(seed.as_slice())
    }

    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn cipher(&self) -> Aes256SivAead {
        Aes256SivAead::new_from_slice(self.bytes.as_slice()).expect("AES-256-SIV takes a 64-byte key")
    }
}

/// The current key (encrypts and decrypts) and old keys (decrypt only).
#[derive(Debug)]
pub struct Keyring {
    current: Key,
    old: Vec<Key>,
}

impl Keyring {
    pub fn new(current: Key, old: Vec<Key>) -> Keyring {
        let mut old = old;
        old.retain(|k| k.fingerprint != current.fingerprint);
        old.dedup_by(|a, b| a.fingerprint == b.fingerprint);
        Keyring { current, old }
    }

    pub fn current_fingerprint(&self) -> &str {
        self.current.fingerprint()
    }

    pub fn encrypt(&self, plaintext: &[u8], binding: Binding<'_>) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = binding.associated_data();
        let sealed = self
            .current
            .cipher()
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .expect("AES-SIV encryption cannot fail for in-memory input");
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        format!("{FORMAT}.{}.{}", self.current.fingerprint, URL_SAFE_NO_PAD.encode(blob))
    }

    pub fn decrypt(&self, stored: &str, binding: Binding<'_>) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let mut parts = stored.splitn(3, '.');
        let (Some(FORMAT), Some(fingerprint), Some(body)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(DecryptError::Malformed);
        };
        let key = self.key(fingerprint).ok_or_else(|| {
            DecryptError::UnknownKey(fingerprint.chars().filter(char::is_ascii_hexdigit).take(16).collect())
        })?;
        let blob = URL_SAFE_NO_PAD.decode(body).map_err(|_| DecryptError::Malformed)?;
        if blob.len() < NONCE_LEN + TAG_LEN {
            return Err(DecryptError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let aad = binding.associated_data();
        key.cipher()
            .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
            .map(Zeroizing::new)
            .map_err(|_| DecryptError::Authentication)
    }

    /// Decrypts a UTF-8 string.
    pub fn decrypt_string(&self, stored: &str, binding: Binding<'_>) -> Result<Zeroizing<String>, DecryptError> {
        let bytes = self.decrypt(stored, binding)?;
        String::from_utf8(bytes.to_vec()).map(Zeroizing::new).map_err(|_| DecryptError::Malformed)
    }

    /// Whether a ciphertext is already under the current key (rotation skips it).
    pub fn is_current(&self, stored: &str) -> bool {
        stored.split('.').nth(1) == Some(self.current.fingerprint.as_str())
    }

    /// An opaque id for a number shown to clients (an event's place in the
    /// outbox): AES-SIV with a fixed nonce, so one number always gives one id
    /// under one key, and nobody without the key can read, order or count by
    /// it (the gap between two of a person's ids would otherwise count
    /// everyone else's events). `purpose` keeps ids of different kinds apart.
    pub fn seal_counter(&self, purpose: &str, n: i64) -> String {
        let sealed = self
            .current
            .cipher()
            .encrypt(Nonce::from_slice(&[0u8; NONCE_LEN]), Payload { msg: &n.to_be_bytes(), aad: purpose.as_bytes() })
            .expect("AES-SIV encryption cannot fail for in-memory input");
        URL_SAFE_NO_PAD.encode(sealed)
    }

    /// The number behind an id [`Keyring::seal_counter`] gave, under the
    /// current key or an old one; `None` for anything else.
    pub fn open_counter(&self, purpose: &str, id: &str) -> Option<i64> {
        if id.len() != COUNTER_ID_LEN {
            return None;
        }
        let sealed = URL_SAFE_NO_PAD.decode(id).ok()?;
        std::iter::once(&self.current).chain(&self.old).find_map(|key| {
            let plain = key
                .cipher()
                .decrypt(Nonce::from_slice(&[0u8; NONCE_LEN]), Payload { msg: &sealed, aad: purpose.as_bytes() })
                .ok()?;
            Some(i64::from_be_bytes(plain.as_slice().try_into().ok()?))
        })
    }

    fn key(&self, fingerprint: &str) -> Option<&Key> {
        std::iter::once(&self.current).chain(&self.old).find(|k| k.fingerprint == fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_ids_are_opaque_stable_and_read_back_under_old_keys() {
        let old = Key::parse("K", &"11".repeat(32)).unwrap();
        let new = Key::parse("K", &"22".repeat(32)).unwrap();
        let before = Keyring::new(old, vec![]);
        let id = before.seal_counter("event", 7);
        assert_eq!(id, before.seal_counter("event", 7));
        assert_ne!(id, before.seal_counter("event", 8));
        assert_ne!(id, before.seal_counter("other", 7));
        assert!(!id.contains('7'.to_string().as_str()) || id.len() == COUNTER_ID_LEN);
        assert_eq!(before.open_counter("event", &id), Some(7));
        assert_eq!(before.open_counter("other", &id), None);
        assert_eq!(before.open_counter("event", "7"), None);
        assert_eq!(before.open_counter("event", &"A".repeat(COUNTER_ID_LEN)), None);
        let after = Keyring::new(new, vec![Key::parse("K", &"11".repeat(32)).unwrap()]);
        assert_eq!(after.open_counter("event", &id), Some(7));
        assert_ne!(after.seal_counter("event", 7), id);
    }

    const HEX32: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn binding() -> Binding<'static> {
        Binding { owner_id: "user-1", record_id: "cred-1", field: "secret" }
    }

    fn ring(key: &str) -> Keyring {
        Keyring::new(Key::parse("ENCRYPTION_KEY", key).unwrap(), vec![])
    }

    #[test]
    fn accepts_the_three_key_forms() {
        let hex64 = "ab".repeat(64);
        let b64 = STANDARD.encode([7u8; 64]);
        for key in [HEX32, hex64.as_str(), b64.as_str()] {
            let ring = ring(key);
            let sealed = ring.encrypt(b"x", binding());
            assert_eq!(ring.decrypt(&sealed, binding()).unwrap().as_slice(), b"x");
        }
        // A 32-byte key is expanded, not zero-padded: it differs from its bytes used raw.
        assert_ne!(
            ring(HEX32).current_fingerprint(),
            ring(&format!("{HEX32}{}", "00".repeat(32))).current_fingerprint()
        );
    }

    #[test]
    fn refuses_bad_keys_without_echoing_them() {
        for bad in [
            "",
            "   ",
            "abc",
            &"g".repeat(64),
            &"ab".repeat(31),
            &STANDARD.encode([1u8; 32]),
            "correct horse battery staple",
        ] {
            let err = Key::parse("ENCRYPTION_KEY", bad).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("ENCRYPTION_KEY"), "{msg}");
            if bad.trim().len() > 3 {
                assert!(!msg.contains(bad.trim()), "error echoes the key: {msg}");
            }
        }
    }

    #[test]
    fn two_encryptions_of_one_value_differ() {
        let ring = ring(HEX32);
        let a = ring.encrypt(b"sk-ant-api03-secret", binding());
        let b = ring.encrypt(b"sk-ant-api03-secret", binding());
        assert_ne!(a, b);
        assert!(!a.contains("secret"));
        assert_eq!(ring.decrypt(&a, binding()).unwrap().as_slice(), ring.decrypt(&b, binding()).unwrap().as_slice());
    }

    #[test]
    fn a_flipped_byte_fails() {
        let ring = ring(HEX32);
        let sealed = ring.encrypt(b"value", binding());
        let (head, body) = sealed.rsplit_once('.').unwrap();
        let mut blob = URL_SAFE_NO_PAD.decode(body).unwrap();
        for i in [0, NONCE_LEN, blob.len() - 1] {
            blob[i] ^= 1;
            let tampered = format!("{head}.{}", URL_SAFE_NO_PAD.encode(&blob));
            assert_eq!(ring.decrypt(&tampered, binding()), Err(DecryptError::Authentication));
            blob[i] ^= 1;
        }
        assert_eq!(ring.decrypt("sv1.zz", binding()), Err(DecryptError::Malformed));
        assert_eq!(ring.decrypt(&format!("{head}.AAAA"), binding()), Err(DecryptError::Malformed));
    }

    #[test]
    fn a_moved_ciphertext_fails() {
        let ring = ring(HEX32);
        let sealed = ring.encrypt(b"value", binding());
        for moved in [
            Binding { owner_id: "user-2", ..binding() },
            Binding { record_id: "cred-2", ..binding() },
            Binding { field: "hint", ..binding() },
        ] {
            assert_eq!(ring.decrypt(&sealed, moved), Err(DecryptError::Authentication));
        }
    }

    #[test]
    fn a_wrong_key_fails_and_is_named() {
        let sealed = ring(HEX32).encrypt(b"value", binding());
        let other = ring(&Key::generate());
        match other.decrypt(&sealed, binding()) {
            Err(DecryptError::UnknownKey(fp)) => assert_eq!(fp, ring(HEX32).current_fingerprint()),
            other => panic!("expected UnknownKey, got {other:?}"),
        }
        // Same fingerprint claimed, different key: authentication fails.
        let forged = sealed.replacen(ring(HEX32).current_fingerprint(), other.current_fingerprint(), 1);
        assert_eq!(other.decrypt(&forged, binding()), Err(DecryptError::Authentication));
    }

    #[test]
    fn old_keys_decrypt_but_only_the_current_encrypts() {
        let old_text = Key::generate();
        let sealed = ring(&old_text).encrypt(b"value", binding());
        let rotated = Keyring::new(
            Key::parse("ENCRYPTION_KEY", &Key::generate()).unwrap(),
            vec![Key::parse("ENCRYPTION_KEYS_OLD", &old_text).unwrap()],
        );
        assert!(!rotated.is_current(&sealed));
        let plain = rotated.decrypt(&sealed, binding()).unwrap();
        let resealed = rotated.encrypt(&plain, binding());
        assert!(rotated.is_current(&resealed));
        // With the old key removed the re-encrypted value still opens.
        let without_old = Keyring::new(
            Key { bytes: rotated.current.bytes.clone(), fingerprint: rotated.current.fingerprint.clone() },
            vec![],
        );
        assert_eq!(without_old.decrypt(&resealed, binding()).unwrap().as_slice(), b"value");
        assert!(matches!(without_old.decrypt(&sealed, binding()), Err(DecryptError::UnknownKey(_))));
    }

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = Key::parse("K", &"ab".repeat(64)).unwrap();
        assert!(!format!("{key:?}").contains("abab"));
    }
}
