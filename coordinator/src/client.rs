//! Connecting to a coordinator as a client: mTLS with a client certificate
//! from the cluster CA and an API key (`authorization: Bearer`), or
//! plaintext with `--insecure`. The CLI, the demo and the tests connect
//! through here.

use std::path::PathBuf;

use clap::Args;
use netmoe_common::pki::grpc::endpoint;
use netmoe_common::pki::{Bearer, COORDINATOR_SERVER_NAME, PkiError, Role, TlsDir};
use netmoe_proto::v1::coordinator_client::CoordinatorClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// A coordinator client whose calls carry the API key.
pub type Client = CoordinatorClient<InterceptedService<Channel, Bearer>>;

/// Why a client could not connect.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TLS directory or key is unusable.
    #[error(transparent)]
    Pki(#[from] PkiError),
    /// The coordinator could not be reached.
    #[error("cannot reach the coordinator at {endpoint}: {source}")]
    Connect {
        /// Where.
        endpoint: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// Neither credentials nor --insecure.
    #[error(
        "no client credentials: give --tls-dir DIR (ca.pem, client.pem, client.key from `coordinator ca issue --client NAME`) and --api-key, or --insecure for a plaintext coordinator"
    )]
    NoCredentials,
}

/// How a client reaches the coordinator (flags of `run`, `nodes`, `probe`).
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// The coordinator's endpoint.
    #[arg(
        long,
        env = "NETMOE_COORDINATOR",
        default_value = "https://127.0.0.1:50050"
    )]
    pub endpoint: String,
    /// Directory with ca.pem, client.pem and client.key.
    #[arg(long, env = "NETMOE_CLIENT_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// API key (from `coordinator key create`).
    #[arg(long, env = "NETMOE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Plaintext, no credentials (a coordinator started with --insecure).
    #[arg(long)]
    pub insecure: bool,
}

impl ClientArgs {
    /// Connects as these flags say.
    pub async fn connect(&self) -> Result<Client, ClientError> {
        let tls = match (&self.tls_dir, self.insecure) {
            (Some(dir), false) => Some(TlsDir::load(dir, Role::Client)?),
            (None, true) => None,
            (Some(_), true) => {
                return Err(PkiError::Refused(
                    "--tls-dir and --insecure exclude each other".into(),
                )
                .into());
            }
            (None, false) => return Err(ClientError::NoCredentials),
        };
        connect(&self.endpoint, tls.as_ref(), self.api_key.as_deref()).await
    }
}

/// Connects to `uri` with `tls` (None: plaintext), attaching `key`.
pub async fn connect(
    uri: &str,
    tls: Option<&TlsDir>,
    key: Option<&str>,
) -> Result<Client, ClientError> {
    let ep = endpoint(uri, tls.map(|t| t.client(COORDINATOR_SERVER_NAME)))?;
    let channel = ep.connect().await.map_err(|source| ClientError::Connect {
        endpoint: uri.to_owned(),
        source,
    })?;
    Ok(CoordinatorClient::with_interceptor(
        channel,
        Bearer::new(key)?,
    ))
}
