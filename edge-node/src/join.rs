//! Joining a secured cluster: the node makes its key here (it never leaves
//! the node), sends a certificate request with a one-time join token over
//! TLS to a coordinator it verifies by the CA fingerprint the token
//! carries, and keeps the certificate and CA it gets back in its TLS
//! directory (`node.key` 0600, `node.pem`, `ca.pem`).

use std::path::Path;

use netmoe_common::pki::pin::PinnedCa;
use netmoe_common::pki::{
    COORDINATOR_SERVER_NAME, PkiError, Role, TlsDir, files, token, validate_name,
};
use netmoe_proto::v1::{self, coordinator_client::CoordinatorClient};

/// Why a join failed.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The token, id or files are unusable.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The coordinator could not be reached or verified.
    #[error(
        "cannot reach the coordinator at {endpoint} (or it is not the cluster the token names): {source}"
    )]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The coordinator refused.
    #[error("join refused: {0}")]
    Refused(tonic::Status),
    /// The coordinator answered with a CA other than the pinned one.
    #[error("the coordinator sent a CA that is not the one the token names")]
    WrongCa,
}

/// Joins the cluster at `coordinator` as `node_id` with `token`, writing
/// the identity into `dir`; returns it loaded.
pub async fn join(
    coordinator: &str,
    token: &str,
    node_id: &str,
    dir: &Path,
) -> Result<TlsDir, JoinError> {
    let parts = token::parse(token)?;
    validate_name(node_id)?;
    let key = rcgen::KeyPair::generate().map_err(PkiError::from)?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(PkiError::from)?
        .serialize_request(&key)
        .map_err(PkiError::from)?
        .pem()
        .map_err(PkiError::from)?;
    let pin = std::sync::Arc::new(PinnedCa::new(&parts.ca_sha256));
    let uri = match coordinator.strip_prefix("http://") {
        Some(rest) => format!("https://{rest}"),
        None => coordinator.to_owned(),
    };
    let connect_err = |source| JoinError::Connect {
        endpoint: coordinator.to_owned(),
        source,
    };
    let channel = tonic::transport::Endpoint::from_shared(uri)
        .map_err(connect_err)?
        .tls_config_with_verifier(
            tonic::transport::ClientTlsConfig::new().domain_name(COORDINATOR_SERVER_NAME),
            pin.clone(),
        )
        .map_err(connect_err)?
        .connect()
        .await
        .map_err(connect_err)?;
    let resp = CoordinatorClient::new(channel)
        .join(v1::JoinRequest {
            token_id: parts.id.clone(),
            token_secret: parts.secret.clone(),
            node_id: node_id.to_owned(),
            csr_pem: csr,
        })
        .await
        .map_err(JoinError::Refused)?
        .into_inner();
    if !pin.matches_pem(&resp.ca_pem) {
        return Err(JoinError::WrongCa);
    }
    files::write_secret(&dir.join("node.key"), key.serialize_pem().as_bytes())?;
    files::write_public(&dir.join("node.pem"), resp.cert_pem.as_bytes())?;
    files::write_public(&dir.join("ca.pem"), resp.ca_pem.as_bytes())?;
    let tls = TlsDir::load(dir, Role::Node)?;
    if tls.me.name != node_id {
        return Err(PkiError::BadCertificate(format!(
            "the coordinator certified {:?}, not {node_id:?}",
            tls.me.name
        ))
        .into());
    }
    tracing::info!(node = node_id, serial = %tls.me.serial, dir = %dir.display(), "joined the cluster");
    Ok(tls)
}
