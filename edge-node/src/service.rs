//! The `EdgeNode` gRPC service: validates requests, hands them to the
//! engine, and streams pieces and the final accounting back.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::Stream;
use netmoe_common::channel::{SnrDraw, SnrSampler};
use netmoe_common::link::Pacer;
use netmoe_common::link::frame::HEADER_BYTES;
use netmoe_proto::v1::{self, GenerateEvent, generate_event::Event};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::engine::{Engine, EngineEvent, FinishReason, GenerateJob, Generation};
use crate::error::RequestError;
use crate::profile::ExpertProfile;
use crate::prompt::{Layout, Prompt, PromptError, Speaker, Turn};

/// Largest segment accepted, in bytes.
pub const DEFAULT_MAX_SEGMENT_BYTES: u32 = 8 * 1024;
/// Largest context (whole prompt) accepted, in bytes.
pub const DEFAULT_MAX_CONTEXT_BYTES: u32 = 32 * 1024;
/// Most tokens one request may ask for.
pub const DEFAULT_MAX_TOKENS_LIMIT: u32 = 512;
/// Most earlier conversation turns one request may carry.
pub const MAX_HISTORY_TURNS: usize = 32;
/// Most bytes of text in those turns, all together.
pub const MAX_HISTORY_BYTES: usize = 16 * 1024;
/// Largest gRPC message the node decodes: the three text limits plus room.
pub const MAX_REQUEST_MESSAGE_BYTES: usize = 64 * 1024;
const _: () = assert!(
    (DEFAULT_MAX_SEGMENT_BYTES + DEFAULT_MAX_CONTEXT_BYTES) as usize + MAX_HISTORY_BYTES + 4096
        <= MAX_REQUEST_MESSAGE_BYTES
);
/// Bytes of framing added to every message (flag + length), the same on
/// gRPC and on the QUIC data plane.
const GRPC_FRAME_HEADER: u64 = HEADER_BYTES;

/// Request limits of a node.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most bytes of `segment`.
    pub max_segment_bytes: u32,
    /// Most bytes of `context`.
    pub max_context_bytes: u32,
    /// Most `max_tokens`.
    pub max_tokens: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_segment_bytes: DEFAULT_MAX_SEGMENT_BYTES,
            max_context_bytes: DEFAULT_MAX_CONTEXT_BYTES,
            max_tokens: DEFAULT_MAX_TOKENS_LIMIT,
        }
    }
}

/// Everything a node serves from; shared by the service and the
/// registration loop.
pub struct NodeState {
    /// The id the node registers under.
    pub node_id: String,
    /// Its expert.
    pub profile: ExpertProfile,
    /// The inference engine.
    pub engine: Engine,
    /// The simulated channel; one draw per transfer and per heartbeat.
    pub snr: Mutex<SnrSampler>,
    /// Request limits.
    pub limits: Limits,
    /// Hardware summary, read once.
    pub hardware: v1::HardwareInfo,
    /// Channel emulation: paces outgoing data-plane bytes (None: off).
    pub pacer: Option<Pacer>,
    /// The QUIC endpoint, once bound, and probe admission.
    pub link: crate::link::LinkState,
    /// How segments are laid out for this node's model (resolved at start).
    pub layout: Layout,
    /// Prometheus metrics of this node.
    pub metrics: crate::metrics::NodeMetrics,
}

impl NodeState {
    /// A node's state: resolves the prompt layout of `profile` on `engine`'s
    /// model and reads the hardware summary once.
    pub fn new(
        node_id: String,
        profile: ExpertProfile,
        engine: Engine,
        snr: SnrSampler,
        limits: Limits,
        pacer: Option<Pacer>,
    ) -> Result<Self, PromptError> {
        let layout = Layout::resolve(engine.llama(), &profile)?;
        tracing::info!(expert = %profile.name, layout = layout.name(), "prompt layout");
        Ok(Self {
            node_id,
            profile,
            engine,
            snr: Mutex::new(snr),
            limits,
            hardware: crate::hardware::summary(),
            pacer,
            link: Default::default(),
            layout,
            metrics: Default::default(),
        })
    }

    /// The prompt for one segment in this node's layout, after the newest
    /// turns of `history` that leave room for `max_tokens` in a sequence's
    /// context window; returns it and the number of turns it carries.
    pub fn prompt(
        &self,
        segment: &str,
        context: &str,
        history: &[Turn],
        max_tokens: u32,
    ) -> Result<(Prompt, usize), RequestError> {
        crate::prompt::fit(
            history,
            max_tokens,
            self.engine.config().ctx_per_slot,
            |turns| {
                self.layout
                    .render(self.engine.llama(), &self.profile, segment, context, turns)
            },
            |p| self.engine.tokenize(p).len() as u32,
        )
        .map_err(RequestError::Prompt)
    }

    /// Draws the channel for a new transfer or heartbeat.
    pub fn draw_snr(&self) -> v1::SnrReport {
        let mut s = self.snr.lock().expect("snr lock");
        let d = s.draw();
        if let Some(p) = &self.pacer {
            p.set_snr(d.snr_db);
        }
        report(&d, s.model())
    }

    /// Waits until `bytes` may leave on the emulated channel; returns the
    /// wait (zero without emulation).
    pub async fn pace(&self, bytes: u64) -> Duration {
        match &self.pacer {
            Some(p) => p.take(bytes).await,
            None => Duration::ZERO,
        }
    }

    /// The QUIC endpoint and emulation, as `Info` reports them.
    pub fn link_info(&self) -> v1::LinkInfo {
        let mut l = self.link.info.get().cloned().unwrap_or_default();
        l.emulated_bandwidth_hz = self.pacer.as_ref().map_or(0.0, Pacer::bandwidth_hz);
        l
    }

    /// The last draw, without drawing.
    /// The latest channel draw, if any (for metrics).
    pub fn latest_snr(&self) -> Option<v1::SnrReport> {
        self.last_snr()
    }

    fn last_snr(&self) -> Option<v1::SnrReport> {
        let s = self.snr.lock().expect("snr lock");
        s.last().map(|d| report(&d, s.model()))
    }

    /// Current load as the contract reports it.
    pub fn load(&self) -> v1::Load {
        let l = self.engine.load();
        v1::Load {
            active: l.active,
            queued: l.queued,
            slots: l.slots,
            queue_capacity: l.queue_depth,
        }
    }

    /// The node's full description.
    pub fn info(&self) -> v1::NodeInfo {
        let m = self.engine.model();
        let cfg = self.engine.config();
        v1::NodeInfo {
            node_id: self.node_id.clone(),
            profile: Some(self.profile.to_proto()),
            model: Some(v1::ModelInfo {
                name: m.name(),
                layout: self.layout.name().into(),
                file_name: m.file_name(),
                size_bytes: m.file.size_bytes,
                quantization: m.file.quantization.clone().unwrap_or_default(),
                architecture: m.file.architecture.clone().unwrap_or_default(),
                n_params: m.model.n_params(),
                n_ctx_per_sequence: cfg.ctx_per_slot,
                n_ctx_train: m.model.n_ctx_train(),
            }),
            threads: cfg.threads,
            tokens_per_second: self.engine.tokens_per_second(),
            snr: self.last_snr(),
            hardware: Some(self.hardware.clone()),
            load: Some(self.load()),
            limits: Some(v1::Limits {
                max_segment_bytes: self.limits.max_segment_bytes,
                max_context_bytes: self.limits.max_context_bytes,
                max_tokens: self.limits.max_tokens,
                n_ctx_per_sequence: cfg.ctx_per_slot,
            }),
            version: env!("CARGO_PKG_VERSION").into(),
            link: Some(self.link_info()),
        }
    }

    /// Checks a request against the limits and resolves it into a job.
    pub fn job(&self, req: &v1::GenerateRequest) -> Result<GenerateJob, RequestError> {
        let segment = req.segment.trim();
        if segment.is_empty() {
            return Err(RequestError::EmptySegment);
        }
        let l = &self.limits;
        if req.segment.len() > l.max_segment_bytes as usize {
            return Err(RequestError::TooLarge {
                field: "segment",
                bytes: req.segment.len(),
                limit: l.max_segment_bytes,
            });
        }
        if req.context.len() > l.max_context_bytes as usize {
            return Err(RequestError::TooLarge {
                field: "context",
                bytes: req.context.len(),
                limit: l.max_context_bytes,
            });
        }
        let max_tokens = match req.max_tokens {
            None => self.profile.default_max_tokens.min(l.max_tokens),
            Some(0) => return Err(RequestError::ZeroTokens),
            Some(n) if n > l.max_tokens => {
                return Err(RequestError::TooManyTokens {
                    asked: n,
                    limit: l.max_tokens,
                });
            }
            Some(n) => n,
        };
        let deadline = match req.deadline_ms {
            Some(0) => return Err(RequestError::ZeroDeadline),
            Some(ms) => Some(Instant::now() + Duration::from_millis(u64::from(ms))),
            None => None,
        };
        let sampling = match &req.sampling {
            Some(o) => self.profile.sampling.with_overrides(o)?,
            None => self.profile.sampling.clone(),
        };
        let request_id = if req.request_id.is_empty() {
            format!("{:016x}", rand::random::<u64>())
        } else {
            req.request_id.clone()
        };
        let history = history(&req.history)?;
        let (prompt, kept) = self.prompt(segment, &req.context, &history, max_tokens)?;
        Ok(GenerateJob {
            request_id,
            prompt,
            max_tokens,
            sampling,
            deadline,
            ignore_eos: req.ignore_eos,
            // A fixed-length request runs to its budget: stop text would end
            // it early as an end-of-generation token would.
            stops: if req.ignore_eos {
                Vec::new()
            } else {
                self.layout.stops(&self.profile, kept > 0)
            },
            history_turns: kept as u32,
        })
    }
}

/// The earlier turns of a request, checked against the history limits;
/// empty turns are left out.
pub fn history(turns: &[v1::Turn]) -> Result<Vec<Turn>, RequestError> {
    if turns.len() > MAX_HISTORY_TURNS {
        return Err(RequestError::TooManyTurns {
            turns: turns.len(),
            limit: MAX_HISTORY_TURNS,
        });
    }
    let bytes: usize = turns.iter().map(|t| t.text.len()).sum();
    if bytes > MAX_HISTORY_BYTES {
        return Err(RequestError::TooLarge {
            field: "history",
            bytes,
            limit: MAX_HISTORY_BYTES as u32,
        });
    }
    turns
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.text.trim().is_empty())
        .map(|(i, t)| {
            let speaker = match v1::TurnRole::try_from(t.role) {
                Ok(v1::TurnRole::User) => Speaker::User,
                Ok(v1::TurnRole::Assistant) => Speaker::Assistant,
                _ => return Err(RequestError::BadTurnRole { index: i }),
            };
            Ok(Turn {
                speaker,
                text: t.text.clone(),
            })
        })
        .collect()
}

fn report(d: &SnrDraw, model: &impl std::fmt::Display) -> v1::SnrReport {
    v1::SnrReport {
        snr_db: d.snr_db,
        model: model.to_string(),
        draw: d.draw,
    }
}

/// The gRPC service over a shared [`NodeState`].
#[derive(Clone)]
pub struct EdgeNodeService {
    state: Arc<NodeState>,
}

impl EdgeNodeService {
    /// Serves `state`.
    pub fn new(state: Arc<NodeState>) -> Self {
        Self { state }
    }
}

/// The response stream of `Generate`.
pub type GenerateStream = Pin<Box<dyn Stream<Item = Result<GenerateEvent, Status>> + Send>>;

#[tonic::async_trait]
impl v1::edge_node_server::EdgeNode for EdgeNodeService {
    async fn info(&self, _: Request<v1::InfoRequest>) -> Result<Response<v1::NodeInfo>, Status> {
        Ok(Response::new(self.state.info()))
    }

    type GenerateStream = GenerateStream;

    async fn generate(
        &self,
        request: Request<v1::GenerateRequest>,
    ) -> Result<Response<Self::GenerateStream>, Status> {
        Ok(Response::new(generate_events(
            &self.state,
            &request.into_inner(),
        )?))
    }

    type DownloadStream = crate::probe::ProbeStream;

    async fn download(
        &self,
        request: Request<v1::DownloadRequest>,
    ) -> Result<Response<Self::DownloadStream>, Status> {
        Ok(Response::new(crate::probe::download_events(
            &self.state,
            &request.into_inner(),
        )?))
    }
}

/// Validates a request, hands it to the engine, and returns its events:
/// the one implementation behind gRPC `Generate` and the QUIC data plane.
/// The transfer's SNR is drawn now, so an emulated channel paces the whole
/// stream at it.
pub fn generate_events(
    state: &Arc<NodeState>,
    req: &v1::GenerateRequest,
) -> Result<GenerateStream, Status> {
    let admitted = (|| -> Result<_, Status> {
        let job = state.job(req)?;
        let id = job.request_id.clone();
        let turns = job.history_turns;
        Ok((id, turns, state.engine.submit(job)?))
    })();
    let (request_id, history_turns, generation) =
        admitted.inspect_err(|_| state.metrics.refused())?;
    tracing::info!(request = %request_id, prompt_tokens = generation.prompt_tokens, "generation accepted");
    let stream = StreamState {
        generation,
        snr: state.draw_snr(),
        state: state.clone(),
        request_id,
        history_turns,
        bytes_sent: 0,
        paced: Duration::ZERO,
        done: false,
    };
    Ok(Box::pin(futures::stream::unfold(stream, StreamState::step)))
}

/// Turns engine events into protocol messages, counting bytes as it goes.
/// Dropping it (client gone) drops the [`Generation`], which cancels the
/// sequence in the engine.
struct StreamState {
    generation: Generation,
    state: Arc<NodeState>,
    request_id: String,
    history_turns: u32,
    snr: v1::SnrReport,
    bytes_sent: u64,
    paced: Duration,
    done: bool,
}

impl StreamState {
    async fn step(mut self) -> Option<(Result<GenerateEvent, Status>, Self)> {
        if self.done {
            return None;
        }
        let item = match self.generation.next().await {
            Some(EngineEvent::Piece { text, tokens }) => {
                let ev = GenerateEvent {
                    event: Some(Event::Piece(v1::GeneratePiece { text, tokens })),
                };
                let n = ev.encoded_len() as u64 + GRPC_FRAME_HEADER;
                self.paced += self.state.pace(n).await;
                self.bytes_sent += n;
                Ok(ev)
            }
            Some(EngineEvent::Done(stats)) => {
                self.done = true;
                self.state.metrics.finished(&stats);
                let words = stats.text.split_whitespace().count() as u32;
                let mut fin = v1::GenerateFinal {
                    request_id: self.request_id.clone(),
                    text: stats.text,
                    finish_reason: finish_reason(stats.finish) as i32,
                    prompt_tokens: stats.prompt_tokens,
                    generated_tokens: stats.generated_tokens,
                    words,
                    queue_seconds: stats.queue.as_secs_f64(),
                    prompt_eval_seconds: stats.prompt_eval.as_secs_f64(),
                    generation_seconds: stats.generation.as_secs_f64(),
                    bytes_sent: 0,
                    snr: Some(self.snr.clone()),
                    node_id: self.state.node_id.clone(),
                    paced_seconds: self.paced.as_secs_f64(),
                    history_turns: self.history_turns,
                };
                fin.bytes_sent = total_with_self(self.bytes_sent, &mut fin);
                self.state.pace(fin.bytes_sent - self.bytes_sent).await;
                tracing::info!(
                    request = %self.request_id,
                    tokens = fin.generated_tokens,
                    words,
                    gen_s = fin.generation_seconds,
                    "generated"
                );
                Ok(GenerateEvent {
                    event: Some(Event::Final(fin)),
                })
            }
            Some(EngineEvent::Failed(e)) => {
                self.done = true;
                self.state.metrics.failed();
                Err(Status::from(e))
            }
            None => {
                self.done = true;
                Err(Status::internal("engine ended the stream without a result"))
            }
        };
        Some((item, self))
    }
}

impl Drop for StreamState {
    fn drop(&mut self) {
        if !self.done {
            self.state.metrics.cancelled();
        }
    }
}

/// The byte count of the stream including the final message itself, whose
/// own size depends on the number it carries.
fn total_with_self(before: u64, fin: &mut v1::GenerateFinal) -> u64 {
    let total = count_with_last(before, |t| {
        fin.bytes_sent = t;
        GenerateEvent {
            event: Some(Event::Final(fin.clone())),
        }
        .encoded_len() as u64
    });
    fin.bytes_sent = total;
    total
}

/// The framed byte count of a stream whose last message carries that very
/// count: `last_len(t)` is the last message's encoded size when it says
/// `t`. Iterates to the fixed point (varints grow monotonically, so two or
/// three rounds suffice). Shared by generation and probe streams.
pub(crate) fn count_with_last(before: u64, mut last_len: impl FnMut(u64) -> u64) -> u64 {
    let mut total = 0;
    loop {
        let next = before + last_len(total) + GRPC_FRAME_HEADER;
        if next == total {
            return total;
        }
        total = next;
    }
}

/// The wire form of why a generation ended.
pub fn finish_reason(f: FinishReason) -> v1::FinishReason {
    match f {
        FinishReason::Stop => v1::FinishReason::Stop,
        FinishReason::Length => v1::FinishReason::Length,
        FinishReason::Deadline => v1::FinishReason::Deadline,
        FinishReason::ContextFull => v1::FinishReason::ContextFull,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_count_includes_the_final_message() {
        let mut fin = v1::GenerateFinal {
            text: "x".repeat(300),
            ..Default::default()
        };
        let total = total_with_self(1000, &mut fin);
        let own = GenerateEvent {
            event: Some(Event::Final(fin.clone())),
        }
        .encoded_len() as u64;
        assert_eq!(total, 1000 + own + GRPC_FRAME_HEADER);
        assert_eq!(fin.bytes_sent, total);
    }
}
