//! The `Coordinator` gRPC service: node registration and heartbeats, the
//! node list, and `Ask`.

use std::sync::Arc;

use netmoe_proto::v1::{self, coordinator_server::Coordinator};
use tonic::{Request, Response, Status};

use crate::pipeline::Pipeline;

/// The service over a shared pipeline.
#[derive(Clone)]
pub struct CoordinatorService {
    pipeline: Arc<Pipeline>,
}

impl CoordinatorService {
    /// Serves `pipeline`.
    pub fn new(pipeline: Arc<Pipeline>) -> Self {
        Self { pipeline }
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let req = request.into_inner();
        let reg = &self.pipeline.registry;
        reg.register(req.info, &req.endpoint)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(v1::RegisterResponse {
            heartbeat_interval_ms: reg.heartbeat_interval.as_millis() as u32,
            liveness_timeout_ms: reg.liveness_timeout.as_millis() as u32,
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<v1::HeartbeatRequest>,
    ) -> Result<Response<v1::HeartbeatResponse>, Status> {
        let known = self.pipeline.registry.heartbeat(&request.into_inner());
        Ok(Response::new(v1::HeartbeatResponse { known }))
    }

    async fn list_nodes(
        &self,
        _: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        Ok(Response::new(v1::ListNodesResponse {
            nodes: self.pipeline.registry.list(),
        }))
    }

    async fn ask(
        &self,
        request: Request<v1::AskRequest>,
    ) -> Result<Response<v1::AskResponse>, Status> {
        let resp = self.pipeline.ask(request.into_inner()).await.map_err(|e| {
            tracing::warn!(error = %e, "ask failed");
            Status::from(e)
        })?;
        tracing::info!(
            request = %resp.request_id,
            policy = %resp.policy,
            segments = resp.segments.len(),
            score = resp.score,
            total_s = resp.timings.as_ref().map_or(0.0, |t| t.total_s),
            "answered"
        );
        Ok(Response::new(resp))
    }
}
