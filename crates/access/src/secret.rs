//! Secrets: `llmops_` and 43 characters of URL-safe base64 (32 random bytes), stored
//! only as their SHA-256.

use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How every secret begins, so that scanners and people recognise one.
pub const SECRET_PREFIX: &str = "llmops_";

/// The characters of a secret a listing shows to recognise it by.
const SHOWN: usize = SECRET_PREFIX.len() + 4;

/// A secret's SHA-256.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretHash([u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(..)")
    }
}

impl SecretHash {
    /// The hash as lowercase hex, as stored.
    pub fn to_hex(self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// A stored hash; `None` unless 64 hex digits.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (index, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(hex.get(index * 2..index * 2 + 2)?, 16).ok()?;
        }
        Some(Self(bytes))
    }

    /// Whether two hashes are equal, in time that does not depend on where they differ.
    pub fn matches(&self, other: &SecretHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

/// The hash of `secret`.
pub fn hash_secret(secret: &str) -> SecretHash {
    SecretHash(Sha256::digest(secret.as_bytes()).into())
}

/// A new secret from the operating system's random source, and what listings show of it.
pub(crate) fn new_secret() -> (String, String) {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    let secret = format!(
        "{SECRET_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let shown = secret[..SHOWN].to_owned();
    (secret, shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_long_random_and_recognisable() {
        let (first, shown) = new_secret();
        let (second, _) = new_secret();
        assert!(first.starts_with(SECRET_PREFIX));
        assert_eq!(first.len(), SECRET_PREFIX.len() + 43);
        assert_ne!(first, second);
        assert!(first.starts_with(&shown) && shown.len() == 11);
    }

    #[test]
    fn hashes_round_trip_and_compare() {
        let hash = hash_secret("llmops_abc");
        assert_eq!(SecretHash::from_hex(&hash.to_hex()), Some(hash));
        assert!(hash.matches(&hash_secret("llmops_abc")));
        assert!(!hash.matches(&hash_secret("llmops_abd")));
        // The standard SHA-256 of "abc".
        assert_eq!(
            hash_secret("abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(SecretHash::from_hex("zz"), None);
    }
}
