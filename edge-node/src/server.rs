//! Serving: the gRPC server (EdgeNode, health, reflection) on an already
//! bound listener, the registration loop, and the drain on shutdown.

use std::sync::Arc;
use std::time::Duration;

use netmoe_proto::v1::edge_node_server::EdgeNodeServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::service::{EdgeNodeService, MAX_REQUEST_MESSAGE_BYTES, NodeState};

/// Where and how a node registers.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Coordinator URL.
    pub coordinator: String,
    /// The endpoint the coordinator should dial.
    pub endpoint: String,
    /// Heartbeat period.
    pub period: Duration,
}

/// Errors of the server itself.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC transport failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built from the descriptors.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves `state` on `listener` (gRPC) and `quic` until `shutdown`, then
/// stops accepting,
/// gives in-flight streams `grace` to finish, fails the rest with
/// UNAVAILABLE, and returns once every connection has closed.
pub async fn run(
    listener: TcpListener,
    quic: Option<quinn::Endpoint>,
    state: Arc<NodeState>,
    registration: Option<Registration>,
    grace: Duration,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let tasks = TaskTracker::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<EdgeNodeServer<EdgeNodeService>>()
        .await;
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(netmoe_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let service = EdgeNodeServer::new(EdgeNodeService::new(state.clone()))
        .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES);

    if let Some(r) = registration {
        tasks.spawn(crate::register::keep_registered(
            state.clone(),
            r.coordinator,
            r.endpoint,
            r.period,
            shutdown.child_token(),
        ));
    }
    if let Some(endpoint) = quic.clone() {
        tasks.spawn(crate::link::serve(
            endpoint,
            state.clone(),
            shutdown.clone(),
            tasks.clone(),
        ));
    }
    let engine = state.engine.clone();
    let drain = shutdown.clone();
    let served = CancellationToken::new();
    let server_done = served.clone();
    tasks.spawn(async move {
        drain.cancelled().await;
        health
            .set_not_serving::<EdgeNodeServer<EdgeNodeService>>()
            .await;
        tokio::select! {
            _ = tokio::time::sleep(grace) => {
                tracing::info!("grace period over; cancelling in-flight generations");
                engine.cancel_all();
            }
            _ = server_done.cancelled() => {}
        }
    });
    tasks.close();

    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(reflection)
        .add_service(service)
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled())
        .await;
    served.cancel();
    shutdown.cancel();
    tasks.wait().await;
    if let Some(endpoint) = quic {
        endpoint.close(0u32.into(), b"node shutting down");
        let _ = tokio::time::timeout(Duration::from_secs(1), endpoint.wait_idle()).await;
    }
    Ok(result?)
}

/// The accepted connections of `listener`, with Nagle's algorithm off: a
/// generation streams many small messages, and Nagle plus delayed ACKs
/// held each stream's tail for ~40 ms (found by the transport benchmark).
/// The one accept path of every NetMoE gRPC server.
pub fn incoming(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    TcpListenerStream::new(listener).map(|conn| {
        let conn = conn?;
        conn.set_nodelay(true)?;
        Ok(conn)
    })
}

/// Cancels `token` on the first SIGINT or SIGTERM: the one shutdown path of
/// every NetMoE binary.
pub async fn cancel_on_signal(token: CancellationToken) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutdown signal; draining");
    token.cancel();
}
