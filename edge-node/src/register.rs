//! Registration with the coordinator: `Register`, then a `Heartbeat` each
//! period carrying a fresh SNR draw and the load; registers again when the
//! coordinator says it does not know the node.

use std::sync::Arc;
use std::time::Duration;

use netmoe_proto::v1::{self, coordinator_client::CoordinatorClient};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

use crate::service::NodeState;
use netmoe_common::pki::{COORDINATOR_SERVER_NAME, TlsDir};

/// Longest wait between attempts while the coordinator is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Keeps the node registered until `shutdown`.
/// With `tls`, the coordinator is dialled over mTLS with the node's
/// certificate and verified as the cluster's coordinator.
pub async fn keep_registered(
    state: Arc<NodeState>,
    coordinator: String,
    endpoint: String,
    period: Duration,
    tls: Option<TlsDir>,
    shutdown: CancellationToken,
) {
    let mut backoff = period;
    let mut client: Option<CoordinatorClient<Channel>> = None;
    let mut registered = false;
    loop {
        let outcome = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = beat(&state, &coordinator, &endpoint, tls.as_ref(), &mut client, &mut registered) => r,
        };
        let wait = match outcome {
            Ok(()) => {
                backoff = period;
                period
            }
            Err(e) => {
                tracing::warn!(coordinator = %coordinator, error = %e, "coordinator unreachable; retrying");
                client = None;
                registered = false;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                backoff
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn beat(
    state: &NodeState,
    coordinator: &str,
    endpoint: &str,
    tls: Option<&TlsDir>,
    client: &mut Option<CoordinatorClient<Channel>>,
    registered: &mut bool,
) -> Result<(), tonic::Status> {
    if client.is_none() {
        let ep = netmoe_common::pki::grpc::endpoint(
            coordinator,
            tls.map(|t| t.client(COORDINATOR_SERVER_NAME)),
        )
        .map_err(|e| tonic::Status::invalid_argument(e.to_string()))?;
        let channel = ep
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        *client = Some(CoordinatorClient::new(channel));
    }
    let c = client.as_mut().expect("connected above");
    if !*registered {
        let resp = c
            .register(v1::RegisterRequest {
                info: Some(state.info()),
                endpoint: endpoint.to_owned(),
            })
            .await?
            .into_inner();
        tracing::info!(coordinator, node = %state.node_id, heartbeat_ms = resp.heartbeat_interval_ms, "registered");
        *registered = true;
    }
    let snr = state.draw_snr();
    if let Some(shaper) = state.link.shaper.get()
        && let Err(e) = shaper.apply(snr.snr_db).await
    {
        tracing::warn!(error = %e, "link shaping failed");
    }
    let resp = c
        .heartbeat(v1::HeartbeatRequest {
            node_id: state.node_id.clone(),
            snr: Some(snr),
            load: Some(state.load()),
            tokens_per_second: state.engine.tokens_per_second(),
        })
        .await?
        .into_inner();
    if !resp.known {
        tracing::info!(node = %state.node_id, "coordinator forgot this node; registering again");
        *registered = false;
    }
    Ok(())
}
