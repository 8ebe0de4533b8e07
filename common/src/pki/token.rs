//! The join token as a node holds it: `ID.SECRET.CA_SHA256`, kubeadm-style
//! (`coordinator token create` prints it). The id is public, the secret
//! proves the holder was given the token, the CA fingerprint lets the node
//! verify the coordinator before it sends the secret.

use super::PkiError;

/// Characters of a token id.
pub const ID_LEN: usize = 6;
/// Characters of a token secret (16 of a-z0-9: ~82 bits).
pub const SECRET_LEN: usize = 16;

/// A token, split.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenParts {
    /// Public id.
    pub id: String,
    /// The secret.
    pub secret: String,
    /// SHA-256 of the CA certificate, lowercase hex.
    pub ca_sha256: String,
}

impl std::fmt::Debug for TokenParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenParts")
            .field("id", &self.id)
            .field("ca_sha256", &self.ca_sha256)
            .finish_non_exhaustive()
    }
}

fn is_token(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// Splits `ID.SECRET.CA_SHA256`.
pub fn parse(token: &str) -> Result<TokenParts, PkiError> {
    let bad = || {
        PkiError::Refused(format!(
            "a join token is ID.SECRET.CA_SHA256 ({ID_LEN}, {SECRET_LEN} and 64 characters), as `coordinator token create` prints it"
        ))
    };
    let mut it = token.trim().split('.');
    let (Some(id), Some(sec), Some(fp), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(bad());
    };
    let fp_ok = fp.len() == 64 && fp.bytes().all(|b| b.is_ascii_hexdigit());
    if !is_token(id, ID_LEN) || !is_token(sec, SECRET_LEN) || !fp_ok {
        return Err(bad());
    }
    Ok(TokenParts {
        id: id.into(),
        secret: sec.into(),
        ca_sha256: fp.to_ascii_lowercase(),
    })
}
