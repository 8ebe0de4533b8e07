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

/// Only the coordinator's certificate may call a secured node's
/// `EdgeNode` service (another node's: PERMISSION_DENIED).
#[derive(Clone)]
pub struct CoordinatorOnly(pub bool);

impl tonic::service::Interceptor for CoordinatorOnly {
    fn call(&mut self, req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if !self.0 {
            return Ok(req);
        }
        match netmoe_common::pki::grpc::peer_of_request(&req) {
            Some(Ok(p)) if p.role == netmoe_common::pki::Role::Coordinator => Ok(req),
            Some(Ok(p)) => {
                tracing::warn!(peer = %p, "non-coordinator certificate called the node; refused");
                Err(tonic::Status::permission_denied(format!(
                    "a {} certificate may not call an edge node; only the coordinator",
                    p.role
                )))
            }
            Some(Err(e)) => Err(tonic::Status::unauthenticated(e.to_string())),
            None => Err(tonic::Status::unauthenticated(
                "a client certificate is required",
            )),
        }
    }
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
    tls: Option<netmoe_common::pki::TlsDir>,
    grace: Duration,
    shutdown: CancellationToken,
) -> Result<(), ServeError> {
    let tasks = TaskTracker::new();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<EdgeNodeServer<EdgeNodeService>>()
        .await;
    let support = support_routes(&["netmoe.v1.EdgeNode"], health_service)?;
    let service = tonic::service::interceptor::InterceptedService::new(
        EdgeNodeServer::new(EdgeNodeService::new(state.clone()))
            .max_decoding_message_size(MAX_REQUEST_MESSAGE_BYTES),
        CoordinatorOnly(tls.is_some()),
    );
    let mut builder = tonic::transport::Server::builder();
    match &tls {
        Some(t) => builder = builder.tls_config(t.server(false))?,
        None => tracing::warn!(
            "--insecure: plaintext gRPC; anyone who reaches this port can use this node"
        ),
    }

    if let Some(r) = registration {
        tasks.spawn(crate::register::keep_registered(
            state.clone(),
            r.coordinator,
            r.endpoint,
            r.period,
            tls.clone(),
            shutdown.child_token(),
        ));
    }
    if let Some(endpoint) = quic.clone() {
        tasks.spawn(crate::link::serve(
            endpoint,
            state.clone(),
            shutdown.clone(),
            tasks.clone(),
            tls.is_some(),
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

    let result = builder
        .add_routes(support)
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

/// Health and gRPC reflection, both `grpc.reflection.v1` and `v1alpha`
/// (older grpcurl and Python's reflection client speak only v1alpha),
/// listing exactly `services` (full names) besides health and reflection.
pub fn support_routes(
    services: &[&str],
    health: tonic_health::pb::health_server::HealthServer<
        impl tonic_health::pb::health_server::Health,
    >,
) -> Result<tonic::service::Routes, tonic_reflection::server::Error> {
    let builder = || {
        let mut b = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(netmoe_proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .with_service_name("grpc.health.v1.Health");
        for s in services {
            b = b.with_service_name(*s);
        }
        b
    };
    Ok(tonic::service::Routes::new(health)
        .add_service(builder().build_v1()?)
        .add_service(builder().build_v1alpha()?))
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
