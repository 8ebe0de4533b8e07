//! A small client for trying a node by hand: stream one generation to a
//! writer and return the final accounting.

use std::io::Write;

use futures::StreamExt;
use netmoe_proto::v1::{self, edge_node_client::EdgeNodeClient, generate_event::Event};

/// Errors of the hand client.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Could not connect.
    #[error("cannot connect to {endpoint}: {source}")]
    Connect {
        /// The endpoint.
        endpoint: String,
        /// Why.
        source: tonic::transport::Error,
    },
    /// The node refused or failed the request.
    #[error("node answered {}: {}", .0.code(), .0.message())]
    Status(#[from] tonic::Status),
    /// Writing the output failed.
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended without its final message.
    #[error("stream ended without a final message")]
    Truncated,
}

/// One generation as the hand client saw it.
#[derive(Debug)]
pub struct Generated {
    /// The node's final accounting.
    pub fin: v1::GenerateFinal,
    /// From sending the request to the first piece of text (None: no text).
    pub first_text: Option<std::time::Duration>,
    /// From sending the request to the final message.
    pub total: std::time::Duration,
}

/// Streams the pieces of one generation into `out` as they arrive. The
/// clock starts once connected, as the request is sent, so the first-text
/// time is the node's own (prompt evaluation, first token, one hop) and is
/// comparable with what the coordinator reports for the same segment.
pub async fn generate_to(
    endpoint: &str,
    request: v1::GenerateRequest,
    out: &mut impl Write,
) -> Result<Generated, ClientError> {
    let mut client = EdgeNodeClient::connect(endpoint.to_owned())
        .await
        .map_err(|source| ClientError::Connect {
            endpoint: endpoint.to_owned(),
            source,
        })?;
    let sent = std::time::Instant::now();
    let mut first_text = None;
    let mut stream = client.generate(request).await?.into_inner();
    while let Some(ev) = stream.next().await {
        match ev?.event {
            Some(Event::Piece(p)) => {
                if first_text.is_none() && !p.text.is_empty() {
                    first_text = Some(sent.elapsed());
                }
                out.write_all(p.text.as_bytes())?;
                out.flush()?;
            }
            Some(Event::Final(fin)) => {
                return Ok(Generated {
                    fin,
                    first_text,
                    total: sent.elapsed(),
                });
            }
            None => {}
        }
    }
    Err(ClientError::Truncated)
}

/// Asks `grpc.health.v1` at `endpoint` (the container health check of both
/// binaries). With `tls` the server is verified as `server_name` and this
/// identity is presented (health is served to any certificate of the CA).
/// True when the server says SERVING.
pub async fn health(
    endpoint: &str,
    tls: Option<&netmoe_common::pki::TlsDir>,
    server_name: &str,
) -> Result<bool, ClientError> {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let ep = netmoe_common::pki::grpc::endpoint(endpoint, tls.map(|t| t.client(server_name)))
        .map_err(|e| ClientError::Status(tonic::Status::invalid_argument(e.to_string())))?
        .connect_timeout(std::time::Duration::from_secs(2))
        .timeout(std::time::Duration::from_secs(3));
    let channel = ep.connect().await.map_err(|source| ClientError::Connect {
        endpoint: endpoint.to_owned(),
        source,
    })?;
    let resp = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?
        .into_inner();
    Ok(resp.status == ServingStatus::Serving as i32)
}
