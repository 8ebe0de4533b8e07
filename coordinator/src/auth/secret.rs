//! Random secrets and their stored form: secrets are drawn from the OS-
//! seeded CSPRNG, only their SHA-256 is written down, and comparison runs
//! in constant time.

use rand::Rng;
use sha2::{Digest, Sha256};

const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// `n` random characters of a-z0-9 (5.17 bits each).
pub fn random_token(n: usize) -> String {
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// True when every character is of the token alphabet and there are `n`.
pub fn is_token(s: &str, n: usize) -> bool {
    s.len() == n && s.bytes().all(|b| ALPHABET.contains(&b))
}

/// Lowercase hex SHA-256 of a secret: what the state files keep.
pub fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a secret with a stored hash without an early exit.
pub fn matches(secret: &str, stored_hash: &str) -> bool {
    let h = hash(secret);
    h.len() == stored_hash.len()
        && h.bytes()
            .zip(stored_hash.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_fresh_and_hashes_compare() {
        let a = random_token(16);
        assert!(is_token(&a, 16));
        assert_ne!(a, random_token(16));
        assert!(!is_token("ABC", 3));
        assert!(matches(&a, &hash(&a)));
        assert!(!matches("other", &hash(&a)));
        assert!(!matches(&a, "short"));
    }
}
