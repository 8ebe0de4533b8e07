//! Who may call what on the coordinator.
//!
//! Secured (a state directory made by `coordinator ca init`), every
//! connection is TLS and a client certificate, when presented, must chain
//! to the cluster CA (rustls checks chain and expiry in the handshake).
//! Then per call:
//! - `Join`: no certificate needed; a valid one-time join token is.
//! - `Register`, `Heartbeat`: a node certificate whose id is the id the
//!   message claims (another node's id: PERMISSION_DENIED, logged).
//! - `Ask`, `Probe`, `ListNodes`: a client certificate and a live API key;
//!   a node certificate: PERMISSION_DENIED.
//! - Revoked certificates: UNAUTHENTICATED, whatever the call.
//!
//! `--insecure` serves plaintext and lets every caller through.
//!
//! - [`tokens`]: join tokens. - [`keys`]: API keys. - [`secret`]: random secrets, hashes.

pub mod keys;
pub mod secret;
pub mod tokens;

use std::path::{Path, PathBuf};

use netmoe_common::pki::ca::{LEAF_DAYS, Validity, now_s};
use netmoe_common::pki::grpc::{bearer_of, peer_of_request};
use netmoe_common::pki::{Ca, Peer, PkiError, Revocations, Role, TlsDir, validate_name};
use netmoe_proto::v1;
use tonic::{Request, Status};

/// Largest CSR a joining node may send.
pub const MAX_CSR_BYTES: usize = 8 * 1024;

/// The secured coordinator's state: its CA, revocations, tokens, keys.
#[derive(Debug)]
pub struct Secure {
    /// The CA (signs joining nodes' CSRs).
    pub ca: Ca,
    /// The coordinator's own identity (server, and client to nodes).
    pub tls: TlsDir,
    revocations: Revocations,
    /// Join tokens.
    pub tokens: tokens::Tokens,
    /// API keys.
    pub keys: keys::Keys,
}

/// The coordinator's access control.
#[derive(Debug)]
pub enum Auth {
    /// Plaintext, everyone allowed (`--insecure`).
    Insecure,
    /// mTLS, tokens and API keys.
    Secure(Box<Secure>),
}

impl Auth {
    /// Opens the state directory `dir` (the CA directory).
    pub fn open(dir: &Path) -> Result<Self, PkiError> {
        Ok(Auth::Secure(Box::new(Secure {
            ca: Ca::load(dir)?,
            tls: TlsDir::load(dir, Role::Coordinator)?,
            revocations: Revocations::new(dir),
            tokens: tokens::Tokens::new(dir),
            keys: keys::Keys::new(dir),
        })))
    }

    /// The state directory, when secured.
    pub fn dir(&self) -> Option<PathBuf> {
        match self {
            Auth::Insecure => None,
            Auth::Secure(s) => Some(s.ca.dir().to_owned()),
        }
    }

    /// The coordinator's TLS identity, when secured.
    pub fn tls(&self) -> Option<&TlsDir> {
        match self {
            Auth::Insecure => None,
            Auth::Secure(s) => Some(&s.tls),
        }
    }

    /// The verified, unrevoked certificate identity of the caller.
    fn peer<T>(s: &Secure, req: &Request<T>) -> Result<Peer, Status> {
        let peer = peer_of_request(req)
            .ok_or_else(|| {
                Status::unauthenticated("a client certificate from the cluster CA is required")
            })?
            .map_err(|e| Status::unauthenticated(format!("client certificate: {e}")))?;
        if s.revocations.is_revoked(&peer.serial) {
            tracing::warn!(%peer, "revoked certificate refused");
            return Err(Status::unauthenticated(format!(
                "certificate {} has been revoked",
                peer.serial
            )));
        }
        if now_s() > peer.not_after {
            return Err(Status::unauthenticated("certificate expired"));
        }
        Ok(peer)
    }

    /// A node's own call about node `claimed` (`Register`, `Heartbeat`).
    pub fn node<T>(&self, req: &Request<T>, claimed: &str) -> Result<(), Status> {
        let Auth::Secure(s) = self else {
            return Ok(());
        };
        let peer = Self::peer(s, req)?;
        if peer.role != Role::Node {
            return Err(Status::permission_denied(format!(
                "only node certificates may register or heartbeat; this is a {} certificate",
                peer.role
            )));
        }
        if peer.name != claimed {
            tracing::warn!(certificate = %peer.name, claimed, "node certificate claimed another node's id; refused");
            return Err(Status::permission_denied(format!(
                "certificate is for node {:?}, not {claimed:?}",
                peer.name
            )));
        }
        Ok(())
    }

    /// A client call (`Ask`, `Probe`, `ListNodes`): a client certificate
    /// and a live API key. Returns who it is, for the log.
    pub fn client<T>(&self, req: &Request<T>) -> Result<String, Status> {
        let Auth::Secure(s) = self else {
            return Ok("insecure".into());
        };
        let peer = Self::peer(s, req)?;
        if peer.role != Role::Client {
            tracing::warn!(%peer, "non-client certificate called the client API; refused");
            return Err(Status::permission_denied(format!(
                "a {} certificate may not call the client API",
                peer.role
            )));
        }
        let key = s
            .keys
            .verify(bearer_of(req))
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        Ok(format!("{} (key {})", peer.name, key.name))
    }

    /// An HTTP API call: a live API key as the bearer token (anyone when
    /// `--insecure`). Returns who it is, or why not.
    pub fn api_key(&self, bearer: Option<&str>) -> Result<String, String> {
        let Auth::Secure(s) = self else {
            return Ok("insecure".into());
        };
        s.keys
            .verify(bearer)
            .map(|k| format!("key {}", k.name))
            .map_err(|e| e.to_string())
    }

    /// `Join`: spends the token, certifies the CSR's key as the node.
    pub fn join(&self, req: &v1::JoinRequest) -> Result<v1::JoinResponse, Status> {
        let Auth::Secure(s) = self else {
            return Err(Status::failed_precondition(
                "this coordinator runs --insecure: nodes do not join, they register",
            ));
        };
        validate_name(&req.node_id).map_err(|e| Status::invalid_argument(e.to_string()))?;
        if req.csr_pem.len() > MAX_CSR_BYTES {
            return Err(Status::invalid_argument(format!(
                "CSR over {MAX_CSR_BYTES} bytes"
            )));
        }
        // Parse before spending the token: a malformed CSR costs nothing.
        rcgen::CertificateSigningRequestParams::from_pem(&req.csr_pem)
            .map_err(|e| Status::invalid_argument(format!("CSR: {e}")))?;
        let internal = |e: PkiError| {
            tracing::error!(error = %e, "join state");
            Status::internal("the coordinator could not record the join")
        };
        if let Err(e) = s
            .tokens
            .consume(&req.token_id, &req.token_secret, &req.node_id)
            .map_err(internal)?
        {
            tracing::warn!(token = %req.token_id, node = %req.node_id, error = %e, "join refused");
            return Err(Status::unauthenticated(e.to_string()));
        }
        let issued = match s.ca.sign_csr(
            &req.csr_pem,
            Role::Node,
            &req.node_id,
            Validity::days(LEAF_DAYS),
        ) {
            Ok(i) => i,
            Err(e) => {
                s.tokens.refund(&req.token_id).map_err(internal)?;
                return Err(match e {
                    PkiError::Refused(m) => Status::already_exists(m),
                    other => Status::invalid_argument(other.to_string()),
                });
            }
        };
        tracing::info!(node = %req.node_id, token = %req.token_id, serial = %issued.record.serial, "node joined");
        Ok(v1::JoinResponse {
            cert_pem: issued.chain_pem,
            ca_pem: s.ca.cert_pem().to_owned(),
            not_after: issued.record.not_after,
        })
    }
}
