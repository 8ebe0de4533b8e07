//! API keys of the client-facing API: `nmk_ID_SECRET`, sent as
//! `authorization: Bearer KEY`. Only the SHA-256 of the secret is stored;
//! a key is looked up by its id and compared in constant time.

use std::path::Path;

use netmoe_common::pki::PkiError;
use netmoe_common::pki::ca::now_s;
use netmoe_common::pki::files::{JsonRecords, Watched};
use serde::{Deserialize, Serialize};

use super::secret;

/// Characters of a key id.
pub const ID_LEN: usize = 8;
/// Characters of a key secret (~165 bits).
pub const SECRET_LEN: usize = 32;
/// Most keys kept.
pub const MAX_KEYS: usize = 4096;

/// One key as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Public id.
    pub id: String,
    /// Who it is for.
    pub name: String,
    /// SHA-256 of the secret.
    pub secret_sha256: String,
    /// Unix seconds.
    pub created: i64,
    /// When it was revoked.
    #[serde(default)]
    pub revoked_at: Option<i64>,
}

/// Why a key was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    /// No `authorization: Bearer` metadata.
    #[error("missing API key: send `authorization: Bearer KEY` (see `coordinator key create`)")]
    Missing,
    /// Unknown, malformed, wrong or revoked.
    #[error("unknown or revoked API key")]
    Invalid,
}

/// The key file of a state directory, cached until it changes.
#[derive(Debug)]
pub struct Keys {
    records: JsonRecords,
    watched: Watched<KeyRecord>,
}

impl Keys {
    /// `DIR/keys.json`.
    pub fn new(dir: &Path) -> Self {
        let records = JsonRecords::new(dir, "keys.json");
        Self {
            watched: Watched::new(records.clone()),
            records,
        }
    }

    /// Makes a key for `name`; returns its record and the key (shown once).
    pub fn create(&self, name: &str) -> Result<(KeyRecord, String), PkiError> {
        let sec = secret::random_token(SECRET_LEN);
        let rec = KeyRecord {
            id: secret::random_token(ID_LEN),
            name: name.to_owned(),
            secret_sha256: secret::hash(&sec),
            created: now_s(),
            revoked_at: None,
        };
        self.records.update(|all: &mut Vec<KeyRecord>| {
            if all.len() >= MAX_KEYS {
                return Err(PkiError::Refused(format!("{MAX_KEYS} keys exist")));
            }
            all.push(rec.clone());
            Ok(())
        })?;
        let key = format!("nmk_{}_{sec}", rec.id);
        Ok((rec, key))
    }

    /// Every key.
    pub fn list(&self) -> Result<Vec<KeyRecord>, PkiError> {
        self.records.read()
    }

    /// Revokes the keys whose id or name is `which`; returns how many.
    pub fn revoke(&self, which: &str) -> Result<usize, PkiError> {
        let now = now_s();
        self.records.update(|all: &mut Vec<KeyRecord>| {
            let mut n = 0;
            for k in all.iter_mut() {
                if (k.id == which || k.name == which) && k.revoked_at.is_none() {
                    k.revoked_at = Some(now);
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    /// The key's record if `key` is a live key. An unreadable key file
    /// refuses every key.
    pub fn verify(&self, key: Option<&str>) -> Result<KeyRecord, KeyError> {
        let key = key.ok_or(KeyError::Missing)?;
        let rest = key.strip_prefix("nmk_").ok_or(KeyError::Invalid)?;
        let (id, sec) = rest.split_once('_').ok_or(KeyError::Invalid)?;
        if !secret::is_token(id, ID_LEN) || !secret::is_token(sec, SECRET_LEN) {
            return Err(KeyError::Invalid);
        }
        let all = self.watched.get().map_err(|e| {
            tracing::error!(error = %e, "API key file unreadable; refusing every key");
            KeyError::Invalid
        })?;
        let rec = all.iter().find(|k| k.id == id).ok_or(KeyError::Invalid)?;
        if rec.revoked_at.is_some() || !secret::matches(sec, &rec.secret_sha256) {
            return Err(KeyError::Invalid);
        }
        Ok(rec.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_verify_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Keys::new(dir.path());
        let (rec, key) = keys.create("alice").unwrap();
        assert_eq!(keys.verify(Some(&key)).unwrap().name, "alice");
        assert_eq!(keys.verify(None).unwrap_err(), KeyError::Missing);
        assert_eq!(keys.verify(Some("nmk_x_y")).unwrap_err(), KeyError::Invalid);
        let wrong = format!("nmk_{}_{}", rec.id, "a".repeat(SECRET_LEN));
        assert_eq!(keys.verify(Some(&wrong)).unwrap_err(), KeyError::Invalid);
        assert_eq!(keys.revoke("alice").unwrap(), 1);
        assert_eq!(keys.verify(Some(&key)).unwrap_err(), KeyError::Invalid);
        let stored = std::fs::read_to_string(dir.path().join("keys.json")).unwrap();
        assert!(!stored.contains(key.rsplit('_').next().unwrap()));
    }
}
