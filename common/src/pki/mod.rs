//! The project's PKI: a CA made and used by NetMoE's own commands, and
//! certificates whose URI SAN names the holder's role and id
//! (`netmoe://node/fantasy-1`), so that every gRPC and QUIC peer is known
//! by what its certificate says, never by what its messages claim.
//!
//! - [`ca`]: the CA directory: init, issue, sign a CSR, revoke, records.
//! - [`grpc`]: tonic TLS settings (server, client, bearer API keys) from PEM files.
//! - [`pin`]: trusting a coordinator by the CA fingerprint a join token carries.
//! - [`token`]: the join token's format.
//! - [`files`]: 0600 keys, atomic writes, locked JSON records.

pub mod ca;
pub mod files;
pub mod grpc;
pub mod pin;
pub mod token;

use std::path::PathBuf;

pub use ca::{Ca, CertRecord, Issued, Revocations};
pub use grpc::{Bearer, TlsDir};

/// The server name every coordinator certificate carries; clients and
/// nodes verify the coordinator by it, whatever address they dial.
pub const COORDINATOR_SERVER_NAME: &str = "coordinator.netmoe";

/// Longest id or name in a certificate (one DNS label).
pub const MAX_NAME_LEN: usize = 63;

/// The server name a node's certificate carries: the coordinator dials
/// node `id` and accepts only a certificate for this name, so an endpoint
/// registered for a node is that node.
pub fn node_server_name(id: &str) -> String {
    format!("{id}.node.netmoe")
}

/// What a certificate's holder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An edge node; the name is its node id.
    Node,
    /// A client of the coordinator's API (`ask`, `nodes`, `probe`).
    Client,
    /// The coordinator itself (its server certificate and the client
    /// certificate it dials nodes with).
    Coordinator,
}

impl Role {
    /// As written in the URI SAN.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Node => "node",
            Role::Client => "client",
            Role::Coordinator => "coordinator",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "node" => Role::Node,
            "client" => Role::Client,
            "coordinator" => Role::Coordinator,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The identity a verified certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its role.
    pub role: Role,
    /// Node id, client name or coordinator name.
    pub name: String,
    /// Serial number, lowercase hex (what revocation lists).
    pub serial: String,
    /// Expiry, seconds since the Unix epoch.
    pub not_after: i64,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {:?} (serial {})", self.role, self.name, self.serial)
    }
}

/// The URI SAN naming `role` and `name`.
pub fn identity_uri(role: Role, name: &str) -> String {
    format!("netmoe://{}/{}", role.as_str(), name)
}

/// Errors of the PKI.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Certificate or key generation or signing failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// A certificate could not be parsed or carries no NetMoE identity.
    #[error("certificate: {0}")]
    BadCertificate(String),
    /// An id or name is not usable in a certificate.
    #[error(
        "name {0:?} must be 1-{MAX_NAME_LEN} characters of a-z, 0-9 and '-', not starting or ending with '-'"
    )]
    BadName(String),
    /// The directory already holds a CA.
    #[error("{} already holds a CA (ca.pem); remove it first to make a new one", .0.display())]
    Exists(PathBuf),
    /// Something refused by the CA's rules.
    #[error("{0}")]
    Refused(String),
}

/// Checks an id or name: one DNS label, lowercase, so it can sit in a
/// server name (`ID.node.netmoe`) and in a URI.
pub fn validate_name(name: &str) -> Result<(), PkiError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(PkiError::BadName(name.to_owned()))
    }
}

/// The NetMoE identity of a DER certificate (already verified by TLS): its
/// one `netmoe://ROLE/NAME` URI SAN, serial and expiry.
pub fn peer_of(der: &[u8]) -> Result<Peer, PkiError> {
    use x509_parser::prelude::*;
    let (_, cert) =
        parse_x509_certificate(der).map_err(|e| PkiError::BadCertificate(e.to_string()))?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::BadCertificate(e.to_string()))?
        .ok_or_else(|| PkiError::BadCertificate("no subject alternative names".into()))?;
    let mut found = None;
    for name in &sans.value.general_names {
        if let GeneralName::URI(uri) = name
            && let Some(rest) = uri.strip_prefix("netmoe://")
        {
            let (role, name) = rest
                .split_once('/')
                .ok_or_else(|| PkiError::BadCertificate(format!("malformed identity {uri:?}")))?;
            let role = Role::parse(role)
                .ok_or_else(|| PkiError::BadCertificate(format!("unknown role in {uri:?}")))?;
            validate_name(name)?;
            if found.is_some() {
                return Err(PkiError::BadCertificate(
                    "more than one netmoe:// identity".into(),
                ));
            }
            found = Some((role, name.to_owned()));
        }
    }
    let (role, name) =
        found.ok_or_else(|| PkiError::BadCertificate("no netmoe:// identity URI".into()))?;
    Ok(Peer {
        role,
        name,
        serial: hex::encode(cert.raw_serial()),
        not_after: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dns_labels() {
        for ok in ["fantasy-50061", "a", "node-1", &"x".repeat(63)] {
            validate_name(ok).unwrap();
        }
        for bad in ["", "-a", "a-", "A", "a.b", "a/b", "ä", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
