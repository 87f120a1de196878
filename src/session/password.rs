//! Password hashing: argon2id for everything written, and the original server's hex
//! HMAC-SHA256 accepted on read so an imported database keeps working until each user logs in.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How a password compared with what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Match,
    /// Right password, stored in the legacy format: rehash it now.
    MatchLegacy,
    Mismatch,
}

/// Hashes with argon2id and a fresh salt. Takes tens of milliseconds: call it off the async threads.
pub fn hash(password: &str) -> Result<String, argon2::password_hash::Error> {
    let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)?
        .to_string())
}

/// Compares `password` with a stored argon2 hash or legacy hex HMAC-SHA256 keyed by `legacy_secret`.
/// Anything else stored (no password, a foreign format) never matches.
pub fn verify(password: &str, stored: &str, legacy_secret: &str) -> Verdict {
    if let Ok(parsed) = PasswordHash::new(stored) {
        return match Argon2::default().verify_password(password.as_bytes(), &parsed) {
            Ok(()) => Verdict::Match,
            Err(_) => Verdict::Mismatch,
        };
    }
    let Ok(expected) = hex::decode(stored) else {
        return Verdict::Mismatch;
    };
    if expected.len() != 32 {
        return Verdict::Mismatch;
    }
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(legacy_secret.as_bytes()) else {
        return Verdict::Mismatch;
    };
    mac.update(password.as_bytes());
    // verify_slice compares in constant time.
    match mac.verify_slice(&expected) {
        Ok(()) => Verdict::MatchLegacy,
        Err(_) => Verdict::Mismatch,
    }
}

/// The original server's format, for tests and for importing users by hand.
pub fn legacy_hash(password: &str, legacy_secret: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(legacy_secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(password.as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip() {
        let stored = hash("123456").unwrap();
        assert!(stored.starts_with("$argon2id$"));
        assert_eq!(verify("123456", &stored, "im-server"), Verdict::Match);
        assert_eq!(verify("1234567", &stored, "im-server"), Verdict::Mismatch);
    }

    #[test]
    fn legacy_hash_matches_node_crypto() {
        // Printed by Node: crypto.createHmac('sha256', 'im-server').update('123456').digest('hex')
        let stored = "e923616b0adade3a3347a5a0bd4d4b120662adaeb252d9ce4d3e92a6e9a0adf5";
        assert_eq!(legacy_hash("123456", "im-server"), stored);
        assert_eq!(verify("123456", stored, "im-server"), Verdict::MatchLegacy);
        assert_eq!(verify("654321", stored, "im-server"), Verdict::Mismatch);
        assert_eq!(verify("123456", stored, "other-secret"), Verdict::Mismatch);
        assert_eq!(verify("123456", "", "im-server"), Verdict::Mismatch);
    }
}
