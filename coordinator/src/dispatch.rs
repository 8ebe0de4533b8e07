//! Dispatch: run every segment on its chosen expert in parallel, each
//! under a deadline, falling back once to the next-best live candidate
//! when a node fails or does not answer in time. A segment travels over
//! gRPC or over the node's QUIC link: the same request and the same
//! streamed messages, counted the same way.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use netmoe_common::link::StreamWire;
use netmoe_edge_node::NodeState;
use netmoe_edge_node::engine::EngineEvent;
use netmoe_proto::v1::{self, edge_node_client::EdgeNodeClient, generate_event::Event};
use prost::Message;

use crate::links::{Links, Transport};
use crate::policy::{Choice, SegmentView};
use crate::registry::{NodeEntry, Registry};

/// Tries per segment: the chosen expert, then one fallback.
pub const MAX_ATTEMPTS: usize = 2;
/// Time granted beyond a segment's generation budget for the answer to
/// arrive before the attempt counts as timed out.
pub const DEADLINE_SLACK: Duration = Duration::from_secs(5);
/// gRPC framing bytes per message.
const FRAME: u64 = 5;

/// What one segment asks of an expert.
#[derive(Debug, Clone)]
pub struct SegmentJob {
    /// The segment text.
    pub segment: String,
    /// The whole prompt.
    pub context: String,
    /// Tokens at most (None: the expert's default).
    pub max_tokens: Option<u32>,
    /// Generation budget.
    pub deadline: Duration,
    /// Sampling seed.
    pub seed: Option<u32>,
    /// Request id for logs.
    pub request_id: String,
    /// Data plane to the node.
    pub transport: Transport,
    /// Sampling temperature (None: the expert's).
    pub temperature: Option<f32>,
    /// Where a streamed request's events go (None: not streamed).
    pub events: Option<SegmentEvents>,
    /// Earlier turns of the conversation, oldest first (shared by the
    /// request's segments).
    pub history: Arc<[v1::Turn]>,
}

/// The streaming side of one segment: its index in the prompt and the
/// request's event channel. Bounded: a slow reader slows its own request.
#[derive(Debug, Clone)]
pub struct SegmentEvents {
    /// The segment's index in the prompt.
    pub index: u32,
    /// The request's events.
    pub tx: tokio::sync::mpsc::Sender<v1::AskEvent>,
}

impl SegmentEvents {
    /// Sends one event; a reader that has gone away is not an error here
    /// (the request is being cancelled).
    async fn send(&self, event: v1::ask_event::Event) {
        let _ = self.tx.send(v1::AskEvent { event: Some(event) }).await;
    }

    async fn started(&self, attempt: u32, target: &str, expert: &str) {
        self.send(v1::ask_event::Event::Started(v1::SegmentStarted {
            index: self.index,
            attempt,
            target: target.to_owned(),
            expert: expert.to_owned(),
        }))
        .await;
    }

    async fn finished(&self, out: &SegmentOutcome) {
        self.send(v1::ask_event::Event::Finished(v1::SegmentFinished {
            index: self.index,
            target: out.target.clone(),
            error: out.error.clone().unwrap_or_default(),
        }))
        .await;
    }

    async fn piece(&self, text: &str) {
        self.send(v1::ask_event::Event::Piece(v1::SegmentPiece {
            index: self.index,
            text: text.to_owned(),
        }))
        .await;
    }
}

/// What came back for one segment.
#[derive(Debug, Clone, Default)]
pub struct SegmentOutcome {
    /// Index of the candidate that answered (or was tried last).
    pub candidate: usize,
    /// Its target id.
    pub target: String,
    /// Generated text (empty on failure).
    pub text: String,
    /// Node's final accounting, when it answered.
    pub fin: Option<v1::GenerateFinal>,
    /// Request bytes sent, gRPC framing included.
    pub bytes_up: u64,
    /// Response bytes received, counted here from the messages.
    pub bytes_down: u64,
    /// Send to final message.
    pub latency: Duration,
    /// Tries made.
    pub attempts: u32,
    /// Failure after the last try.
    pub error: Option<String>,
    /// "grpc", "quic" or "local".
    pub transport: &'static str,
    /// UDP bytes of the QUIC connection while the stream was open.
    pub wire: StreamWire,
}

impl SegmentOutcome {
    /// The text the judge scores: when the token budget cut the passage,
    /// its complete sentences only. The budget is the caller's choice, not
    /// the expert's flaw; a passage the expert itself left unfinished (it
    /// stopped on its own mid-sentence) is judged as written.
    pub fn judged_text(&self) -> &str {
        let cut = self
            .fin
            .as_ref()
            .is_some_and(|f| f.finish_reason() == v1::FinishReason::Length);
        if cut {
            crate::text::complete_sentences(&self.text)
        } else {
            &self.text
        }
    }

    /// Seconds the expert spent on it (queue, prompt, generation).
    pub fn model_seconds(&self) -> f64 {
        self.fin.as_ref().map_or(0.0, |f| {
            f.queue_seconds + f.prompt_eval_seconds + f.generation_seconds
        })
    }
}

/// Runs segments on edge nodes (over gRPC or QUIC) or the local expert.
pub struct Dispatcher {
    registry: Arc<Registry>,
    local: Option<Arc<NodeState>>,
    links: Arc<Links>,
}

impl Dispatcher {
    /// A dispatcher over the registry, the nodes' QUIC links and,
    /// optionally, the local expert.
    pub fn new(registry: Arc<Registry>, local: Option<Arc<NodeState>>, links: Arc<Links>) -> Self {
        Self {
            registry,
            local,
            links,
        }
    }

    /// Runs all segments concurrently; outcomes come back in segment order.
    pub async fn run_all(
        &self,
        views: &[SegmentView],
        choices: &[Choice],
        jobs: &[SegmentJob],
    ) -> Vec<SegmentOutcome> {
        let futs = views
            .iter()
            .zip(choices)
            .zip(jobs)
            .map(|((v, c), j)| self.run_segment(v, c, j));
        futures::future::join_all(futs).await
    }

    /// Runs one segment on its ranked candidates (the first that answers,
    /// at most [`MAX_ATTEMPTS`] tries), so a caller can act on each outcome
    /// as soon as it is in.
    pub async fn run_segment(
        &self,
        view: &SegmentView,
        choice: &Choice,
        job: &SegmentJob,
    ) -> SegmentOutcome {
        let out = self.try_candidates(view, choice, job).await;
        if let Some(ev) = &job.events {
            ev.finished(&out).await;
        }
        out
    }

    async fn try_candidates(
        &self,
        view: &SegmentView,
        choice: &Choice,
        job: &SegmentJob,
    ) -> SegmentOutcome {
        let mut last = SegmentOutcome::default();
        let mut attempts = 0;
        for &ci in &choice.ranking {
            if attempts as usize >= MAX_ATTEMPTS {
                break;
            }
            let cand = &view.candidates[ci];
            let node = if cand.local {
                None
            } else {
                match self
                    .registry
                    .live()
                    .into_iter()
                    .find(|n| n.id() == cand.target)
                {
                    Some(n) => Some(n),
                    None => continue, // dropped since routing: not a try
                }
            };
            attempts += 1;
            if let Some(ev) = &job.events {
                ev.started(attempts, &cand.target, &cand.expert).await;
            }
            let started = Instant::now();
            let result = match &node {
                None => self.run_local(job).await,
                Some(n) => match job.transport {
                    Transport::Grpc => run_remote(n.channel.clone(), job).await,
                    Transport::Quic => self.run_quic(n, job).await,
                },
            };
            // What a node sent back is checked before it is used.
            let result = match (result, &node) {
                (Ok(out), Some(n)) => match out
                    .fin
                    .as_ref()
                    .map(|f| crate::checks::generated(f, n.id(), allowed_tokens(job, n)))
                {
                    Some(Err(v)) => {
                        self.registry.violation(n.id(), &v);
                        Err((format!("result rejected: {v}"), out.bytes_up, false))
                    }
                    _ => Ok(out),
                },
                (other, _) => other,
            };
            let mut out = match result {
                Ok(out) => out,
                Err((err, bytes_up, unreachable)) => {
                    if unreachable {
                        self.registry.mark_down(&cand.target);
                    }
                    tracing::warn!(segment = view.index, target = %cand.target, error = %err, "segment attempt failed");
                    SegmentOutcome {
                        bytes_up,
                        error: Some(format!("{}: {err}", cand.target)),
                        transport: if cand.local {
                            "local"
                        } else {
                            job.transport.name()
                        },
                        ..Default::default()
                    }
                }
            };
            out.candidate = ci;
            out.target = cand.target.clone();
            out.attempts = attempts;
            out.latency = started.elapsed();
            if out.error.is_none() {
                return out;
            }
            last = out;
        }
        if attempts == 0 {
            last.error = Some("no live candidate for this segment".into());
        }
        last
    }

    async fn run_local(&self, job: &SegmentJob) -> Result<SegmentOutcome, (String, u64, bool)> {
        let state = self
            .local
            .as_ref()
            .ok_or(("no local expert".to_owned(), 0, false))?;
        let req = request(job);
        let gen_job = state.job(&req).map_err(|e| (e.to_string(), 0, false))?;
        let history_turns = gen_job.history_turns;
        let mut generation = state
            .engine
            .submit(gen_job)
            .map_err(|e| (e.to_string(), 0, false))?;
        let deadline = tokio::time::Instant::now() + job.deadline + DEADLINE_SLACK;
        loop {
            let ev = tokio::time::timeout_at(deadline, generation.next())
                .await
                .map_err(|_| ("local expert timed out".to_owned(), 0, false))?;
            match ev {
                Some(EngineEvent::Piece { text, .. }) => {
                    if let Some(ev) = &job.events {
                        ev.piece(&text).await;
                    }
                }
                Some(EngineEvent::Done(s)) => {
                    let words = s.text.split_whitespace().count() as u32;
                    let fin = v1::GenerateFinal {
                        request_id: job.request_id.clone(),
                        words,
                        prompt_tokens: s.prompt_tokens,
                        generated_tokens: s.generated_tokens,
                        queue_seconds: s.queue.as_secs_f64(),
                        prompt_eval_seconds: s.prompt_eval.as_secs_f64(),
                        generation_seconds: s.generation.as_secs_f64(),
                        node_id: crate::policy::LOCAL_TARGET.into(),
                        text: s.text.clone(),
                        finish_reason: netmoe_edge_node::service::finish_reason(s.finish) as i32,
                        history_turns,
                        ..Default::default()
                    };
                    return Ok(SegmentOutcome {
                        text: s.text,
                        fin: Some(fin),
                        transport: "local",
                        ..Default::default()
                    });
                }
                Some(EngineEvent::Failed(e)) => return Err((e.to_string(), 0, false)),
                None => return Err(("local expert stopped".into(), 0, false)),
            }
        }
    }
}

impl Dispatcher {
    /// One attempt over the node's QUIC link: the same request and stream
    /// as gRPC, framed on a QUIC stream. Dropping the call on a timeout
    /// stops the stream, which cancels the generation on the node.
    async fn run_quic(
        &self,
        node: &NodeEntry,
        job: &SegmentJob,
    ) -> Result<SegmentOutcome, (String, u64, bool)> {
        let overall = tokio::time::Instant::now() + job.deadline + DEADLINE_SLACK;
        let conn = match tokio::time::timeout_at(overall, self.links.connection(node)).await {
            Err(_) => return Err(("no QUIC link before the deadline".into(), 0, false)),
            Ok(Err(e)) => return Err((e.to_string(), 0, e.unreachable())),
            Ok(Ok(c)) => c,
        };
        let mut call = match tokio::time::timeout_at(overall, conn.generate(request(job))).await {
            Err(_) => return Err(("no answer before the deadline".into(), 0, false)),
            Ok(Err(e)) => return Err((e.to_string(), 0, e.unreachable())),
            Ok(Ok(c)) => c,
        };
        let mut text = String::new();
        loop {
            let ev = match tokio::time::timeout_at(overall, call.next()).await {
                Err(_) => {
                    return Err((
                        "stream stalled past the deadline".into(),
                        call.bytes_up,
                        false,
                    ));
                }
                Ok(None) => {
                    return Err((
                        "stream ended without a final message".into(),
                        call.bytes_up,
                        true,
                    ));
                }
                Ok(Some(Err(e))) => return Err((e.to_string(), call.bytes_up, e.unreachable())),
                Ok(Some(Ok(ev))) => ev,
            };
            if let Some(f) = absorb(&mut text, ev, job).await {
                return Ok(SegmentOutcome {
                    text: f.text.clone(),
                    fin: Some(f),
                    bytes_up: call.bytes_up,
                    bytes_down: call.bytes_down,
                    transport: Transport::Quic.name(),
                    wire: call.wire(),
                    ..Default::default()
                });
            }
        }
    }
}

/// Tokens a node may generate for `job`: the request's bound, else the
/// node's advertised default, never more than the coordinator's limit.
fn allowed_tokens(job: &SegmentJob, node: &NodeEntry) -> u32 {
    job.max_tokens
        .unwrap_or_else(|| {
            node.info
                .profile
                .as_ref()
                .map_or(crate::pipeline::MAX_ASK_TOKENS, |p| p.default_max_tokens)
        })
        .clamp(1, crate::pipeline::MAX_ASK_TOKENS)
}

/// Folds one streamed event into the text so far; returns the final
/// message, which ends the stream. The same on both transports. The text
/// kept is capped at what the coordinator's token limit allows: a node
/// that streams more fails the final check, and never grows our memory.
async fn absorb(
    text: &mut String,
    ev: v1::GenerateEvent,
    job: &SegmentJob,
) -> Option<v1::GenerateFinal> {
    match ev.event? {
        Event::Piece(p) => {
            if text.len() <= crate::checks::max_text_bytes(crate::pipeline::MAX_ASK_TOKENS) {
                text.push_str(&p.text);
                if let Some(ev) = &job.events {
                    ev.piece(&p.text).await;
                }
            }
            None
        }
        Event::Final(f) => {
            if *text != f.text {
                tracing::warn!(request = %job.request_id, "streamed pieces differ from the final text");
            }
            Some(f)
        }
    }
}

fn request(job: &SegmentJob) -> v1::GenerateRequest {
    v1::GenerateRequest {
        request_id: job.request_id.clone(),
        segment: job.segment.clone(),
        context: job.context.clone(),
        max_tokens: job.max_tokens,
        sampling: (job.seed.is_some() || job.temperature.is_some()).then(|| v1::SamplingParams {
            seed: job.seed,
            temperature: job.temperature,
            ..Default::default()
        }),
        deadline_ms: Some(job.deadline.as_millis().min(u128::from(u32::MAX)) as u32),
        ignore_eos: false,
        history: job.history.to_vec(),
    }
}

/// One gRPC attempt. Errors carry the bytes already sent and whether the
/// node looked unreachable (so the registry drops it).
async fn run_remote(
    channel: tonic::transport::Channel,
    job: &SegmentJob,
) -> Result<SegmentOutcome, (String, u64, bool)> {
    let req = request(job);
    let bytes_up = req.encoded_len() as u64 + FRAME;
    let mut grpc = tonic::Request::new(req);
    grpc.set_timeout(job.deadline + DEADLINE_SLACK);
    let unreachable =
        |s: &tonic::Status| matches!(s.code(), tonic::Code::Unavailable | tonic::Code::Unknown);
    let mut client = EdgeNodeClient::new(channel);
    let overall = tokio::time::Instant::now() + job.deadline + DEADLINE_SLACK;
    let mut stream = match tokio::time::timeout_at(overall, client.generate(grpc)).await {
        Err(_) => return Err(("no answer before the deadline".into(), bytes_up, false)),
        Ok(Err(s)) => {
            return Err((
                format!("{}: {}", s.code(), s.message()),
                bytes_up,
                unreachable(&s),
            ));
        }
        Ok(Ok(r)) => r.into_inner(),
    };
    let mut bytes_down = 0;
    let mut text = String::new();
    loop {
        let ev = match tokio::time::timeout_at(overall, stream.next()).await {
            Err(_) => return Err(("stream stalled past the deadline".into(), bytes_up, false)),
            Ok(None) => {
                return Err((
                    "stream ended without a final message".into(),
                    bytes_up,
                    true,
                ));
            }
            Ok(Some(Err(s))) => {
                return Err((
                    format!("{}: {}", s.code(), s.message()),
                    bytes_up,
                    unreachable(&s),
                ));
            }
            Ok(Some(Ok(ev))) => ev,
        };
        bytes_down += ev.encoded_len() as u64 + FRAME;
        if let Some(f) = absorb(&mut text, ev, job).await {
            return Ok(SegmentOutcome {
                text: f.text.clone(),
                fin: Some(f),
                bytes_up,
                bytes_down,
                transport: Transport::Grpc.name(),
                ..Default::default()
            });
        }
    }
}
