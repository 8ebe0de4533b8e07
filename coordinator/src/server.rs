//! Serving the coordinator on a bound listener: the gRPC services, health,
//! reflection, and the liveness sweep of the registry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use netmoe_proto::v1::coordinator_server::CoordinatorServer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::Pipeline;
use crate::service::CoordinatorService;

/// Largest request message the coordinator decodes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Errors of the server itself.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC transport failed.
    #[error("gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Reflection could not be built.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Serves until `shutdown`, then drains in-flight requests for at most
/// `grace`. Probes every live node's link each `probe_interval` (None:
/// only at registration and on demand).
pub async fn run(
    listener: TcpListener,
    pipeline: Arc<Pipeline>,
    grace: Duration,
    probe_interval: Option<Duration>,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let tasks = TaskTracker::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<CoordinatorServer<CoordinatorService>>()
        .await;
    let support =
        netmoe_edge_node::server::support_routes(&["netmoe.v1.Coordinator"], health_service)?;
    let service = CoordinatorServer::new(CoordinatorService::new(pipeline.clone(), tasks.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let mut builder = tonic::transport::Server::builder();
    match pipeline.auth.tls() {
        // Client certificates are optional at the handshake (a joining
        // node has none yet) but verified when presented; each call then
        // requires the identity it needs.
        Some(tls) => builder = builder.tls_config(tls.server(true))?,
        None => tracing::warn!(
            "--insecure: plaintext gRPC, no access control; anyone who reaches this port can register nodes and ask"
        ),
    }

    let registry = pipeline.registry.clone();
    let stop = shutdown.clone();
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(registry.heartbeat_interval / 2);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => { registry.sweep(Instant::now()); }
            }
        }
    });
    if let Some(interval) = probe_interval {
        tasks.spawn(pipeline.links.clone().probe_periodically(
            pipeline.registry.clone(),
            interval,
            shutdown.clone(),
        ));
    }
    let server = builder
        .add_routes(support)
        .add_service(service)
        .serve_with_incoming_shutdown(
            netmoe_edge_node::server::incoming(listener),
            shutdown.cancelled(),
        );
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        _ = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!("grace period over; abandoning in-flight requests");
            Ok(())
        }
    };
    shutdown.cancel();
    tasks.close();
    tasks.wait().await;
    pipeline.links.close();
    Ok(result?)
}
