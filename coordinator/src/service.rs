//! The `Coordinator` gRPC service: node registration and heartbeats, the
//! node list, `Ask`, and link probes.

use std::sync::Arc;

use netmoe_proto::v1::{self, coordinator_server::Coordinator};
use tonic::{Request, Response, Status};

use netmoe_common::link::probe::MAX_PROBE_BYTES;

use crate::pipeline::Pipeline;
use crate::registry::RegistryError;
use tokio_util::task::TaskTracker;

/// Link probes of newly registered nodes running at once; a registration
/// beyond it is probed by the periodic sweep instead.
pub const MAX_REGISTRATION_PROBES: usize = 8;
/// How long a registration probe may take.
pub const REGISTRATION_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The service over a shared pipeline.
#[derive(Clone)]
pub struct CoordinatorService {
    pipeline: Arc<Pipeline>,
    tasks: TaskTracker,
    probes: Arc<tokio::sync::Semaphore>,
}

impl CoordinatorService {
    /// Serves `pipeline`; background work (registration probes) runs in
    /// `tasks`, which the server waits for on shutdown.
    pub fn new(pipeline: Arc<Pipeline>, tasks: TaskTracker) -> Self {
        Self {
            pipeline,
            tasks,
            probes: Arc::new(tokio::sync::Semaphore::new(MAX_REGISTRATION_PROBES)),
        }
    }
}

#[tonic::async_trait]
impl Coordinator for CoordinatorService {
    async fn register(
        &self,
        request: Request<v1::RegisterRequest>,
    ) -> Result<Response<v1::RegisterResponse>, Status> {
        let claimed = request
            .get_ref()
            .info
            .as_ref()
            .map(|i| i.node_id.clone())
            .unwrap_or_default();
        self.pipeline.auth.node(&request, &claimed)?;
        let req = request.into_inner();
        let reg = &self.pipeline.registry;
        reg.register(req.info, &req.endpoint).map_err(|e| match e {
            RegistryError::Full(_) => Status::resource_exhausted(e.to_string()),
            RegistryError::Quarantined { .. } => Status::permission_denied(e.to_string()),
            _ => Status::invalid_argument(e.to_string()),
        })?;
        // Measure the new node's link right away, off the request path,
        // bounded in number and time.
        if let (Some(node), Ok(permit)) =
            (reg.get(&claimed), self.probes.clone().try_acquire_owned())
        {
            let p = self.pipeline.clone();
            self.tasks.spawn(async move {
                let _permit = permit;
                let probe = p.links.probe(&p.registry, &node, 0);
                if tokio::time::timeout(REGISTRATION_PROBE_TIMEOUT, probe)
                    .await
                    .is_err()
                {
                    tracing::warn!(node = %node.id(), "registration probe timed out");
                }
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
        self.pipeline
            .auth
            .node(&request, &request.get_ref().node_id)?;
        let known = self
            .pipeline
            .registry
            .heartbeat(&request.into_inner())
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        Ok(Response::new(v1::HeartbeatResponse { known }))
    }

    async fn list_nodes(
        &self,
        request: Request<v1::ListNodesRequest>,
    ) -> Result<Response<v1::ListNodesResponse>, Status> {
        self.pipeline.auth.client(&request)?;
        Ok(Response::new(v1::ListNodesResponse {
            nodes: self.pipeline.registry.list(),
        }))
    }

    async fn probe(
        &self,
        request: Request<v1::ProbeRequest>,
    ) -> Result<Response<v1::ProbeResponse>, Status> {
        self.pipeline.auth.client(&request)?;
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

    type AskStreamStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<v1::AskEvent, Status>> + Send + 'static>,
    >;

    async fn ask_stream(
        &self,
        request: Request<v1::AskRequest>,
    ) -> Result<Response<Self::AskStreamStream>, Status> {
        let caller = self.pipeline.auth.client(&request)?;
        tracing::debug!(%caller, "ask (streamed)");
        let events = crate::stream::ask_stream(self.pipeline.clone(), request.into_inner());
        Ok(Response::new(Box::pin(futures::StreamExt::map(
            events,
            |r| r.map_err(Status::from),
        ))))
    }

    async fn ask(
        &self,
        request: Request<v1::AskRequest>,
    ) -> Result<Response<v1::AskResponse>, Status> {
        let caller = self.pipeline.auth.client(&request)?;
        tracing::debug!(%caller, "ask");
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

    async fn join(
        &self,
        request: Request<v1::JoinRequest>,
    ) -> Result<Response<v1::JoinResponse>, Status> {
        let auth = self.pipeline.auth.clone();
        let req = request.into_inner();
        // Signing and the locked state files are blocking work.
        tokio::task::spawn_blocking(move || auth.join(&req))
            .await
            .map_err(|_| Status::internal("join task failed"))?
            .map(Response::new)
    }
}
