//! Join tokens (kubeadm-style): `ID.SECRET.CA_SHA256`. The id is public, the
//! secret is 16 random characters of which only the SHA-256 is stored, the
//! CA fingerprint lets the joining node verify the coordinator before it
//! sends anything. A token expires after its TTL and admits one node.

use std::path::Path;

use netmoe_common::pki::PkiError;
use netmoe_common::pki::ca::now_s;
use netmoe_common::pki::files::JsonRecords;
use serde::{Deserialize, Serialize};

use super::secret;

pub use netmoe_common::pki::token::{ID_LEN, SECRET_LEN, TokenParts, parse};
/// Longest TTL a token may have.
pub const MAX_TTL_S: i64 = 7 * 86_400;
/// Most tokens kept; expired and used ones beyond a day old are pruned.
pub const MAX_TOKENS: usize = 4096;

/// One token as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id.
    pub id: String,
    /// SHA-256 of the secret.
    pub secret_sha256: String,
    /// Unix seconds.
    pub created: i64,
    /// Unix seconds.
    pub expires: i64,
    /// When it admitted a node, and which.
    #[serde(default)]
    pub used: Option<(i64, String)>,
    /// When it was revoked.
    #[serde(default)]
    pub revoked_at: Option<i64>,
    /// What the operator wrote when making it.
    #[serde(default)]
    pub description: String,
}

impl TokenRecord {
    /// "valid", "used by X", "expired" or "revoked" at `now`.
    pub fn state(&self, now: i64) -> String {
        if self.revoked_at.is_some() {
            "revoked".into()
        } else if let Some((_, node)) = &self.used {
            format!("used by {node}")
        } else if now > self.expires {
            "expired".into()
        } else {
            "valid".into()
        }
    }
}

/// Why a token was not accepted. Only a caller that proved the secret
/// learns more than `Invalid`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Unknown id or wrong secret.
    #[error("unknown join token or wrong secret")]
    Invalid,
    /// Past its TTL.
    #[error("join token expired")]
    Expired,
    /// Already admitted a node.
    #[error("join token already used (by {0})")]
    Used(String),
    /// Revoked by the operator.
    #[error("join token revoked")]
    Revoked,
}

/// The token file of a state directory.
#[derive(Debug, Clone)]
pub struct Tokens(JsonRecords);

impl Tokens {
    /// `DIR/tokens.json`.
    pub fn new(dir: &Path) -> Self {
        Self(JsonRecords::new(dir, "tokens.json"))
    }

    /// Makes a token valid for `ttl_s` seconds; returns its record and the
    /// `ID.SECRET` half (the caller appends the CA fingerprint).
    pub fn create(&self, ttl_s: i64, description: &str) -> Result<(TokenRecord, String), PkiError> {
        if !(1..=MAX_TTL_S).contains(&ttl_s) {
            return Err(PkiError::Refused(format!(
                "token TTL must be 1 s to {} days",
                MAX_TTL_S / 86_400
            )));
        }
        let now = now_s();
        let sec = secret::random_token(SECRET_LEN);
        let rec = TokenRecord {
            id: secret::random_token(ID_LEN),
            secret_sha256: secret::hash(&sec),
            created: now,
            expires: now + ttl_s,
            used: None,
            revoked_at: None,
            description: description.to_owned(),
        };
        self.0.update(|all: &mut Vec<TokenRecord>| {
            // Keep the file bounded: forget long-dead tokens first.
            all.retain(|t| t.state(now) == "valid" || now - t.expires < 86_400);
            if all.len() >= MAX_TOKENS {
                return Err(PkiError::Refused(format!(
                    "{MAX_TOKENS} tokens outstanding; revoke some first"
                )));
            }
            all.push(rec.clone());
            Ok(())
        })?;
        let half = format!("{}.{sec}", rec.id);
        Ok((rec, half))
    }

    /// Every token.
    pub fn list(&self) -> Result<Vec<TokenRecord>, PkiError> {
        self.0.read()
    }

    /// Revokes token `id`; false when there is none.
    pub fn revoke(&self, id: &str) -> Result<bool, PkiError> {
        let now = now_s();
        self.0.update(|all: &mut Vec<TokenRecord>| {
            Ok(all
                .iter_mut()
                .find(|t| t.id == id)
                .map(|t| t.revoked_at.get_or_insert(now))
                .is_some())
        })
    }

    /// Spends token `id` for `node`: checks the secret, expiry, use and
    /// revocation, and marks it used, all under the file lock (two joins
    /// racing with one token: one wins). Outer error: the state file.
    pub fn consume(
        &self,
        id: &str,
        sec: &str,
        node: &str,
    ) -> Result<Result<(), TokenError>, PkiError> {
        let now = now_s();
        self.0.update(|all: &mut Vec<TokenRecord>| {
            let Some(t) = all.iter_mut().find(|t| t.id == id) else {
                return Ok(Err(TokenError::Invalid));
            };
            if !secret::matches(sec, &t.secret_sha256) {
                return Ok(Err(TokenError::Invalid));
            }
            if t.revoked_at.is_some() {
                return Ok(Err(TokenError::Revoked));
            }
            if let Some((_, by)) = &t.used {
                return Ok(Err(TokenError::Used(by.clone())));
            }
            if now > t.expires {
                return Ok(Err(TokenError::Expired));
            }
            t.used = Some((now, node.to_owned()));
            Ok(Ok(()))
        })
    }

    /// Gives back a token spent on a join that then failed (the CA refused
    /// the request), so the operator need not make another.
    pub fn refund(&self, id: &str) -> Result<(), PkiError> {
        self.0.update(|all: &mut Vec<TokenRecord>| {
            if let Some(t) = all.iter_mut().find(|t| t.id == id) {
                t.used = None;
            }
            Ok(())
        })
    }

    /// Test and admin hook: makes token `id` expire now.
    pub fn expire_now(&self, id: &str) -> Result<(), PkiError> {
        let now = now_s();
        self.0.update(|all: &mut Vec<TokenRecord>| {
            if let Some(t) = all.iter_mut().find(|t| t.id == id) {
                t.expires = now - 1;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_admits_one_node_once_before_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = Tokens::new(dir.path());
        let (rec, half) = tokens.create(900, "test").unwrap();
        let full = format!("{half}.{}", "ab".repeat(32));
        let p = parse(&full).unwrap();
        assert_eq!(p.id, rec.id);
        assert!(parse("abc.def").is_err());
        assert!(parse(&format!("{half}.zz")).is_err());

        assert_eq!(
            tokens.consume(&p.id, "wrongwrongwrongw", "n").unwrap(),
            Err(TokenError::Invalid)
        );
        assert_eq!(
            tokens.consume("nosuch", &p.secret, "n").unwrap(),
            Err(TokenError::Invalid)
        );
        assert_eq!(tokens.consume(&p.id, &p.secret, "n1").unwrap(), Ok(()));
        assert_eq!(
            tokens.consume(&p.id, &p.secret, "n2").unwrap(),
            Err(TokenError::Used("n1".into()))
        );
        tokens.refund(&p.id).unwrap();
        assert_eq!(tokens.consume(&p.id, &p.secret, "n2").unwrap(), Ok(()));

        let (r2, h2) = tokens.create(900, "").unwrap();
        let s2 = h2.split_once('.').unwrap().1.to_owned();
        assert!(tokens.revoke(&r2.id).unwrap());
        assert_eq!(
            tokens.consume(&r2.id, &s2, "n").unwrap(),
            Err(TokenError::Revoked)
        );

        let (r3, h3) = tokens.create(900, "").unwrap();
        let s3 = h3.split_once('.').unwrap().1.to_owned();
        tokens.expire_now(&r3.id).unwrap();
        assert_eq!(
            tokens.consume(&r3.id, &s3, "n").unwrap(),
            Err(TokenError::Expired)
        );
        assert!(tokens.create(0, "").is_err());
        let stored = std::fs::read_to_string(dir.path().join("tokens.json")).unwrap();
        assert!(!stored.contains(&p.secret), "only hashes are stored");
    }
}
