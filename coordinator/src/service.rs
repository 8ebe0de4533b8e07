//! The `Coordinator` gRPC service: node registration and heartbeats, the
//! node list, `Ask`, and link probes.

use std::sync::Arc;

use netmoe_proto::v1::{self, coordinator_server::Coordinator};
use tonic::{Request, Response, Status};

use netmoe_common::link::probe::MAX_PROBE_BYTES;

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
        let id = req.info.as_ref().map(|i| i.node_id.clone());
        reg.register(req.info, &req.endpoint)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        // Measure the new node's link right away, off the request path.
        if let Some(node) = id.and_then(|id| reg.get(&id)) {
            let p = self.pipeline.clone();
            tokio::spawn(async move {
                p.links.probe(&p.registry, &node, 0).await;
            });
        }
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

    async fn probe(
        &self,
        request: Request<v1::ProbeRequest>,
    ) -> Result<Response<v1::ProbeResponse>, Status> {
        let req = request.into_inner();
        if req.bytes > MAX_PROBE_BYTES {
            return Err(Status::invalid_argument(format!(
                "probe bytes {} over the {MAX_PROBE_BYTES}-byte limit",
                req.bytes
            )));
        }
        let p = &self.pipeline;
        let probes = if req.node_id.is_empty() {
            if p.registry.live().is_empty() {
                return Err(Status::unavailable("no live edge nodes to probe"));
            }
            p.links.probe_all(&p.registry, req.bytes).await
        } else {
            let node = p.registry.get(&req.node_id).ok_or_else(|| {
                Status::not_found(format!("no node {:?} is registered", req.node_id))
            })?;
            vec![p.links.probe(&p.registry, &node, req.bytes).await]
        };
        Ok(Response::new(v1::ProbeResponse { probes }))
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
