//! One request end to end: validate, gate, route, dispatch, fuse, judge,
//! and account for every cost with the one cost model.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use netmoe_common::cost::CostModel;
use netmoe_edge_node::NodeState;
use netmoe_proto::v1;
use tokio::sync::Semaphore;

use crate::dispatch::{Dispatcher, SegmentJob, SegmentOutcome};
use crate::fusion::Fuser;
use crate::gate::{Domain, Gate, MAX_SEGMENTS, segment};
use crate::judge::{Judge, JudgeInput};
use crate::links::{Links, Transport};
use crate::policy::{
    Candidate, LOCAL_TARGET, MeasuredLink, RouteContext, RoutingPolicy, SegmentView,
    WORDS_PER_TOKEN, estimate,
};
use crate::registry::Registry;

/// Largest prompt accepted, in bytes.
pub const MAX_PROMPT_BYTES: usize = 4096;
/// Most earlier conversation turns a request may carry (the nodes' limit).
pub const MAX_HISTORY_TURNS: usize = netmoe_edge_node::service::MAX_HISTORY_TURNS;
/// Most bytes of text in those turns together (the nodes' limit).
pub const MAX_HISTORY_BYTES: usize = netmoe_edge_node::service::MAX_HISTORY_BYTES;
/// Most tokens a request may ask of each expert (`Ask.max_tokens`); it
/// also bounds the text the coordinator accumulates per segment.
pub const MAX_ASK_TOKENS: u32 = 1024;
/// Default number of segments a prompt may be split into.
pub const DEFAULT_MAX_SEGMENTS: u32 = 4;
/// Default generation budget of one segment.
pub const DEFAULT_SEGMENT_DEADLINE: Duration = Duration::from_secs(60);
/// Requests answered at once; more get RESOURCE_EXHAUSTED.
pub const DEFAULT_MAX_CONCURRENT_ASKS: usize = 4;
/// Tokens assumed for an expert that does not say: the nodes' own default.
const FALLBACK_MAX_TOKENS: u32 = netmoe_edge_node::profile::DEFAULT_MAX_TOKENS;

/// Why a request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum AskError {
    /// Nothing to answer.
    #[error("prompt is empty")]
    EmptyPrompt,
    /// Prompt over the byte limit.
    #[error("prompt is {bytes} bytes; the limit is {limit}")]
    PromptTooLarge {
        /// Its size.
        bytes: usize,
        /// The limit.
        limit: usize,
    },
    /// Conversation history over the turn or byte limit.
    #[error(
        "history is {turns} turns and {bytes} bytes; the limits are {MAX_HISTORY_TURNS} turns and {MAX_HISTORY_BYTES} bytes"
    )]
    HistoryTooLarge {
        /// Turns sent.
        turns: usize,
        /// Bytes of text in them.
        bytes: usize,
    },
    /// A history turn with no role.
    #[error("history turn {0} has no role (user or assistant)")]
    BadTurnRole(usize),
    /// K out of range.
    #[error("max_segments {0} is out of range 1..={MAX_SEGMENTS}")]
    BadSegmentCount(u32),
    /// A per-segment budget of zero.
    #[error("segment_deadline_ms must be at least 1")]
    ZeroDeadline,
    /// max_tokens 0 or over the bound.
    #[error("max_tokens {0} is out of range 1..={MAX_ASK_TOKENS}")]
    BadTokens(u32),
    /// Unknown transport.
    #[error("{0}")]
    UnknownTransport(String),
    /// Temperature out of range.
    #[error("temperature {0} is out of range (0, 5]")]
    BadTemperature(f32),
    /// No live node serves the pinned expert.
    #[error("no live node serves expert {0:?}")]
    UnknownExpert(String),
    /// Unknown policy.
    #[error("unknown policy {name:?}; known: {known}")]
    UnknownPolicy {
        /// As asked.
        name: String,
        /// Known names.
        known: String,
    },
    /// Nobody to route to.
    #[error(
        "no live edge nodes (and policy {0:?} needs them); start edge nodes with --coordinator pointing here"
    )]
    NoLiveNodes(String),
    /// Too many requests in flight.
    #[error("coordinator is answering {0} requests already; retry later")]
    Busy(usize),
    /// Every segment failed.
    #[error("every segment failed: {0}")]
    AllFailed(String),
    /// The gate's model failed.
    #[error("gate: {0}")]
    Gate(#[from] crate::analyzer::AnalyzerError),
    /// Fusion failed.
    #[error("fusion: {0}")]
    Fusion(#[from] crate::fusion::FusionError),
    /// The judge failed.
    #[error("judge: {0}")]
    Judge(#[from] crate::judge::JudgeError),
}

impl AskError {
    /// A short label of the reason, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            AskError::EmptyPrompt => "empty_prompt",
            AskError::PromptTooLarge { .. } => "prompt_too_large",
            AskError::HistoryTooLarge { .. } => "history_too_large",
            AskError::BadTurnRole(_) => "bad_turn_role",
            AskError::BadSegmentCount(_) => "bad_segment_count",
            AskError::ZeroDeadline => "zero_deadline",
            AskError::BadTokens(_) => "bad_max_tokens",
            AskError::UnknownTransport(_) => "unknown_transport",
            AskError::BadTemperature(_) => "bad_temperature",
            AskError::UnknownExpert(_) => "unknown_expert",
            AskError::UnknownPolicy { .. } => "unknown_policy",
            AskError::NoLiveNodes(_) => "no_live_nodes",
            AskError::Busy(_) => "busy",
            AskError::AllFailed(_) => "all_segments_failed",
            AskError::Gate(_) => "gate_failed",
            AskError::Fusion(_) => "fusion_failed",
            AskError::Judge(_) => "judge_failed",
        }
    }
}

impl AskError {
    /// The gRPC code of the refusal (the HTTP API maps it to a status).
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            AskError::EmptyPrompt
            | AskError::PromptTooLarge { .. }
            | AskError::HistoryTooLarge { .. }
            | AskError::BadTurnRole(_)
            | AskError::BadSegmentCount(_)
            | AskError::ZeroDeadline
            | AskError::BadTokens(_)
            | AskError::UnknownTransport(_)
            | AskError::BadTemperature(_)
            | AskError::UnknownPolicy { .. } => Code::InvalidArgument,
            AskError::UnknownExpert(_) => Code::NotFound,
            AskError::NoLiveNodes(_) | AskError::AllFailed(_) => Code::Unavailable,
            AskError::Busy(_) => Code::ResourceExhausted,
            AskError::Gate(_) | AskError::Fusion(_) | AskError::Judge(_) => Code::Internal,
        }
    }

    /// What the caller is told: internal failures may name URLs, paths or
    /// a judge's reply, so they go to the log and the caller gets a
    /// generic line.
    pub fn public_message(&self) -> String {
        if self.code() == tonic::Code::Internal {
            tracing::error!(error = %self, "internal failure answering a request");
            "internal error answering the request (details in the coordinator log)".into()
        } else {
            self.to_string()
        }
    }
}

impl From<AskError> for tonic::Status {
    fn from(e: AskError) -> Self {
        tonic::Status::new(e.code(), e.public_message())
    }
}

/// Answers kept for the dashboard.
pub const RECENT_ANSWERS: usize = 20;

/// The last [`RECENT_ANSWERS`] answers with their prompts, newest last.
#[derive(Debug, Default)]
pub struct Recent {
    items: std::sync::Mutex<std::collections::VecDeque<(String, v1::AskResponse)>>,
}

impl Recent {
    /// Keeps an answer, dropping the oldest beyond the bound.
    pub fn push(&self, prompt: &str, r: &v1::AskResponse) {
        let mut q = self.items.lock().expect("recent lock");
        if q.len() == RECENT_ANSWERS {
            q.pop_front();
        }
        q.push_back((prompt.to_owned(), r.clone()));
    }

    /// The kept answers, oldest first.
    pub fn list(&self) -> Vec<(String, v1::AskResponse)> {
        self.items
            .lock()
            .expect("recent lock")
            .iter()
            .cloned()
            .collect()
    }
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Segments when a request does not say.
    pub max_segments: u32,
    /// Policy when a request does not say.
    pub default_policy: String,
    /// Generation budget per segment.
    pub segment_deadline: Duration,
    /// The cost model.
    pub cost: CostModel,
    /// Offer the local expert as a routing candidate.
    pub local_candidate: bool,
    /// Data plane when a request names none.
    pub transport: Transport,
}

/// Everything a request needs, shared across requests.
pub struct Pipeline {
    /// Node registry.
    pub registry: Arc<Registry>,
    /// Who may call what (mTLS identities, join tokens, API keys).
    pub auth: Arc<crate::auth::Auth>,
    /// The gate.
    pub gate: Gate,
    /// Routing policies by name.
    pub policies: HashMap<String, Arc<dyn RoutingPolicy>>,
    /// Segment dispatch.
    pub dispatcher: Dispatcher,
    /// QUIC links to the nodes and their probes.
    pub links: Arc<Links>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Fusion.
    pub fuser: Fuser,
    /// The judge.
    pub judge: Box<dyn Judge>,
    /// The coordinator's own expert.
    pub local: Option<Arc<NodeState>>,
    /// Settings.
    pub config: PipelineConfig,
    /// Bounds concurrent requests.
    pub limit: Semaphore,
    /// The bound of `limit`, for the refusal message.
    pub limit_size: usize,
    /// The last answers, for the dashboard.
    pub recent: Recent,
    /// The trained policy's file, when one is loaded (the dashboard shows
    /// the training curve beside it).
    pub policy_file: Option<std::path::PathBuf>,
    /// The trained policy, when one is loaded; it learns from the rewards
    /// of the requests it routed unless frozen.
    pub learner: Option<Arc<crate::rl::SacPolicy>>,
}

/// Seconds of a duration.
fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The coordinator's own expert as a candidate sees it.
#[derive(Debug, Clone, Copy)]
pub struct LocalCandidate<'a> {
    /// Its profile (name, domain, default length).
    pub profile: &'a netmoe_edge_node::ExpertProfile,
    /// Its generation speed.
    pub tokens_per_second: f64,
    /// (active + queued) / slots.
    pub load: f64,
}

/// Every candidate of a request before the gate has scored it: each live
/// node as its registry entry describes it, then the local expert if any;
/// with the domain the gate compares each with. The one candidate path:
/// serving and `coordinator collect` both build their candidates here, so
/// the routing dataset names experts and measures them exactly as a live
/// request does.
pub fn targets(
    nodes: &[crate::registry::NodeEntry],
    local: Option<LocalCandidate<'_>>,
    max_tokens: Option<u32>,
) -> (Vec<Candidate>, Vec<Domain>) {
    let mut targets: Vec<Candidate> = nodes
        .iter()
        .map(|n| {
            let max = max_tokens.unwrap_or_else(|| {
                n.info
                    .profile
                    .as_ref()
                    .map_or(FALLBACK_MAX_TOKENS, |p| p.default_max_tokens)
            });
            let load = f64::from(n.load.active + n.load.queued) / f64::from(n.load.slots.max(1));
            Candidate {
                link: n.measured_link().and_then(MeasuredLink::from_probe),
                target: n.id().to_owned(),
                expert: n.expert().to_owned(),
                local: false,
                relevance: 0.0,
                gate_weight: 0.0,
                snr_db: n.snr.snr_db,
                tokens_per_second: n.tokens_per_second,
                load,
                expected_words: f64::from(max) * WORDS_PER_TOKEN,
                wire_bytes_per_word: n.wire_bytes_per_word,
            }
        })
        .collect();
    let mut domains: Vec<Domain> = nodes.iter().map(|n| n.gate_domain()).collect();
    if let Some(l) = local {
        targets.push(Candidate {
            link: None,
            target: LOCAL_TARGET.into(),
            expert: l.profile.name.clone(),
            local: true,
            relevance: 0.0,
            gate_weight: 0.0,
            snr_db: 0.0,
            tokens_per_second: l.tokens_per_second,
            load: l.load,
            expected_words: f64::from(max_tokens.unwrap_or(l.profile.default_max_tokens))
                * WORDS_PER_TOKEN,
            wire_bytes_per_word: 0.0,
        });
        domains.push(Domain {
            line: l.profile.domain.clone(),
            examples: l.profile.examples.clone(),
        });
    }
    (targets, domains)
}

/// Every segment's view: its candidates ([`targets`]) carrying the gate's
/// relevance and weight for that segment (`rel` indexed like them).
pub fn views_of(
    segments: &[String],
    targets: &[Candidate],
    rel: &crate::gate::Relevance,
) -> Vec<SegmentView> {
    segments
        .iter()
        .enumerate()
        .map(|(i, s)| SegmentView {
            index: i,
            text: s.clone(),
            candidates: targets
                .iter()
                .enumerate()
                .map(|(e, c)| Candidate {
                    relevance: rel.cosine[i][e],
                    gate_weight: rel.weights[i][e],
                    ..c.clone()
                })
                .collect(),
        })
        .collect()
}

impl Pipeline {
    fn validate(
        &self,
        req: &v1::AskRequest,
    ) -> Result<(String, usize, Arc<dyn RoutingPolicy>, Transport), AskError> {
        let prompt = req.prompt.trim();
        if prompt.is_empty() {
            return Err(AskError::EmptyPrompt);
        }
        if req.prompt.len() > MAX_PROMPT_BYTES {
            return Err(AskError::PromptTooLarge {
                bytes: req.prompt.len(),
                limit: MAX_PROMPT_BYTES,
            });
        }
        let bytes: usize = req.history.iter().map(|t| t.text.len()).sum();
        if req.history.len() > MAX_HISTORY_TURNS || bytes > MAX_HISTORY_BYTES {
            return Err(AskError::HistoryTooLarge {
                turns: req.history.len(),
                bytes,
            });
        }
        if let Some(i) = req.history.iter().position(|t| {
            !matches!(
                v1::TurnRole::try_from(t.role),
                Ok(v1::TurnRole::User | v1::TurnRole::Assistant)
            )
        }) {
            return Err(AskError::BadTurnRole(i));
        }
        let k = req.max_segments.unwrap_or(self.config.max_segments);
        if k == 0 || k as usize > MAX_SEGMENTS {
            return Err(AskError::BadSegmentCount(k));
        }
        if req.segment_deadline_ms == Some(0) {
            return Err(AskError::ZeroDeadline);
        }
        if let Some(t) = req.max_tokens
            && !(1..=MAX_ASK_TOKENS).contains(&t)
        {
            return Err(AskError::BadTokens(t));
        }
        let name = if req.policy.is_empty() {
            &self.config.default_policy
        } else {
            &req.policy
        };
        let policy = self.policies.get(name).cloned().ok_or_else(|| {
            let mut known: Vec<_> = self.policies.keys().cloned().collect();
            known.sort();
            AskError::UnknownPolicy {
                name: name.clone(),
                known: known.join(", "),
            }
        })?;
        if let Some(t) = req.temperature
            && !netmoe_edge_node::sampling::temperature_ok(t)
        {
            return Err(AskError::BadTemperature(t));
        }
        let transport = if req.transport.is_empty() {
            self.config.transport
        } else {
            req.transport.parse().map_err(AskError::UnknownTransport)?
        };
        Ok((prompt.to_owned(), k as usize, policy, transport))
    }

    /// Answers one request.
    pub async fn ask(&self, req: v1::AskRequest) -> Result<v1::AskResponse, AskError> {
        self.ask_events(req, None).await
    }

    /// Answers one request, sending its routing decision and each
    /// segment's text to `events` as they happen (the answer itself is the
    /// return value). Counted in the metrics, refusals too.
    pub async fn ask_events(
        &self,
        req: v1::AskRequest,
        events: Option<tokio::sync::mpsc::Sender<v1::AskEvent>>,
    ) -> Result<v1::AskResponse, AskError> {
        let prompt = req.prompt.clone();
        let result = self.answer(req, events).await;
        match &result {
            Ok(r) => {
                self.metrics.observe_answer(r);
                self.recent.push(&prompt, r);
            }
            Err(e) => self.metrics.observe_refusal(e.reason(), e.code()),
        }
        result
    }

    /// Feeds each edge answer's measured bytes and words to its node's
    /// bytes-per-word mean, which later candidates carry.
    fn observe_wire(&self, outcomes: &[SegmentOutcome]) {
        for o in outcomes.iter().filter(|o| o.error.is_none()) {
            if let Some(fin) = o.fin.as_ref().filter(|_| o.target != LOCAL_TARGET) {
                self.registry
                    .observe_wire(&o.target, o.bytes_up + o.bytes_down, fin.words);
            }
        }
    }

    /// Every candidate of a request before the gate has scored it; see
    /// [`targets`].
    pub fn targets(
        &self,
        nodes: &[crate::registry::NodeEntry],
        max_tokens: Option<u32>,
        with_local: bool,
    ) -> (Vec<Candidate>, Vec<Domain>) {
        let local = self.local.as_ref().filter(|_| with_local).map(|l| {
            let load = l.engine.load();
            LocalCandidate {
                profile: &l.profile,
                tokens_per_second: l.engine.tokens_per_second(),
                load: f64::from(load.active + load.queued) / f64::from(load.slots.max(1)),
            }
        });
        targets(nodes, local, max_tokens)
    }

    /// The gate stage: every segment's view, its candidates ([`Self::targets`])
    /// carrying the gate's relevance and weight for that segment.
    pub async fn segment_views(
        &self,
        segments: &[String],
        nodes: &[crate::registry::NodeEntry],
        max_tokens: Option<u32>,
        with_local: bool,
    ) -> Result<Vec<SegmentView>, AskError> {
        let (targets, domains) = self.targets(nodes, max_tokens, with_local);
        let rel = self.gate.relevance(segments, &domains).await?;
        Ok(views_of(segments, &targets, &rel))
    }

    async fn answer(
        &self,
        req: v1::AskRequest,
        events: Option<tokio::sync::mpsc::Sender<v1::AskEvent>>,
    ) -> Result<v1::AskResponse, AskError> {
        let (prompt, k, policy, transport) = self.validate(&req)?;
        let _permit = self
            .limit
            .try_acquire()
            .map_err(|_| AskError::Busy(self.limit_size))?;
        let t0 = Instant::now();
        let request_id = format!("{:016x}", rand::random::<u64>());
        let seed = req.seed.unwrap_or_else(rand::random);

        // Gate.
        let nodes = self.registry.live();
        let local_ok =
            self.local.is_some() && (self.config.local_candidate || policy.name() == "local");
        if nodes.is_empty() && policy.name() != "local" {
            return Err(AskError::NoLiveNodes(policy.name().to_owned()));
        }
        let segments = segment(&prompt, k);
        let views = self
            .segment_views(&segments, &nodes, req.max_tokens, local_ok)
            .await?;
        let t_gate = t0.elapsed();

        // Route.
        let t1 = Instant::now();
        let (mut choices, decided_by) = policy.route_decided(
            &views,
            &RouteContext {
                cost: &self.config.cost,
                seed,
            },
        );
        if !req.expert.is_empty() {
            pin(&mut choices, &views, &req.expert)?;
        }
        let t_route = t1.elapsed();
        if let Some(tx) = &events {
            let routed = v1::AskRouted {
                request_id: request_id.clone(),
                policy: decided_by.clone(),
                segments: views
                    .iter()
                    .zip(&choices)
                    .map(|(v, c)| {
                        let first = c.ranking.first().map(|&i| &v.candidates[i]);
                        v1::SegmentRoute {
                            index: v.index as u32,
                            segment: v.text.clone(),
                            target: first.map(|c| c.target.clone()).unwrap_or_default(),
                            expert: first.map(|c| c.expert.clone()).unwrap_or_default(),
                            explanation: c.explanation.clone(),
                        }
                    })
                    .collect(),
                gate_s: secs(t_gate),
                route_s: secs(t_route),
            };
            let _ = tx
                .send(v1::AskEvent {
                    event: Some(v1::ask_event::Event::Routed(routed)),
                })
                .await;
        }

        // Dispatch.
        let t2 = Instant::now();
        let deadline = req
            .segment_deadline_ms
            .map_or(self.config.segment_deadline, |ms| {
                Duration::from_millis(u64::from(ms))
            });
        let history: Arc<[v1::Turn]> = req.history.clone().into();
        let jobs: Vec<SegmentJob> = segments
            .iter()
            .enumerate()
            .map(|(i, s)| SegmentJob {
                segment: s.clone(),
                context: prompt.clone(),
                max_tokens: req.max_tokens,
                deadline,
                seed: Some((seed as u32).wrapping_add(i as u32)),
                request_id: format!("{request_id}-{i}"),
                transport,
                temperature: req.temperature,
                events: events.clone().map(|tx| crate::dispatch::SegmentEvents {
                    index: i as u32,
                    tx,
                }),
                history: history.clone(),
            })
            .collect();
        // Each passage is judged as soon as its segment is in, while slower
        // segments are still generating: judging is off the critical path
        // except for the last passage.
        let judge_time = std::sync::Mutex::new(Duration::ZERO);
        let per_segment =
            views
                .iter()
                .zip(&choices)
                .zip(&jobs)
                .zip(&segments)
                .map(|(((v, c), j), s)| {
                    let judge_time = &judge_time;
                    async move {
                        let o = self.dispatcher.run_segment(v, c, j).await;
                        if o.error.is_some() {
                            return Ok((o, 0.0));
                        }
                        let t = Instant::now();
                        let score = self
                            .judge
                            .score(JudgeInput {
                                task: s,
                                text: o.judged_text(),
                            })
                            .await?
                            .score;
                        *judge_time.lock().expect("judge time") += t.elapsed();
                        Ok::<_, AskError>((o, score))
                    }
                });
        let judged = futures::future::join_all(per_segment)
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?;
        let (outcomes, scores): (Vec<SegmentOutcome>, Vec<f64>) = judged.into_iter().unzip();
        let t_dispatch = t2.elapsed();
        self.observe_wire(&outcomes);
        if outcomes.iter().all(|o| o.error.is_some()) {
            let errs: Vec<_> = outcomes.iter().filter_map(|o| o.error.clone()).collect();
            return Err(AskError::AllFailed(errs.join("; ")));
        }

        // Fuse.
        let t3 = Instant::now();
        let passages: Vec<String> = outcomes
            .iter()
            .filter(|o| o.error.is_none())
            .map(|o| o.text.clone())
            .collect();
        let fused = self.fuser.fuse(&prompt, &passages).await?;
        let t_fusion = t3.elapsed();

        // The story: a stitched story is its passages, already judged, so its
        // score is their mean weighted by words; a story the model rewrote is
        // judged again as a whole.
        let t4 = Instant::now();
        let story_score = match self.fuser.mode() {
            crate::fusion::FusionMode::Stitch => word_weighted(&outcomes, &scores),
            crate::fusion::FusionMode::Model => {
                self.judge
                    .score(JudgeInput {
                        task: &prompt,
                        text: &fused.text,
                    })
                    .await?
                    .score
            }
        };
        let t_judge = *judge_time.lock().expect("judge time") + t4.elapsed();

        // Account.
        let reports: Vec<v1::SegmentReport> = views
            .iter()
            .zip(&choices)
            .zip(&outcomes)
            .zip(&scores)
            .map(|(((v, c), o), &score)| self.report(v, c, o, score))
            .collect();
        let totals = totals(&reports);
        // Only a policy's own decisions teach it.
        if decided_by == policy.name() {
            self.learn(policy.name(), &views, &outcomes, &reports).await;
        }
        let total = t0.elapsed();
        let slowest_model = outcomes
            .iter()
            .map(SegmentOutcome::model_seconds)
            .fold(0.0, f64::max);
        let gate_model = secs(t_gate);
        let model_s = gate_model + slowest_model + secs(fused.model_time) + secs(t_judge);
        Ok(v1::AskResponse {
            request_id,
            policy: decided_by,
            judge: self.judge.name().to_owned(),
            story: fused.text.clone(),
            score: story_score,
            fusion_coverage: fused.min_coverage(),
            partial: reports.iter().any(|r| !r.error.is_empty()),
            segments: reports,
            totals: Some(totals),
            timings: Some(v1::Timings {
                gate_s: secs(t_gate),
                route_s: secs(t_route),
                dispatch_s: secs(t_dispatch),
                fusion_s: secs(t_fusion),
                judge_s: secs(t_judge),
                total_s: secs(total),
                model_s,
                overhead_s: (secs(total) - model_s).max(0.0),
            }),
        })
    }

    /// Feeds the answered segments to the learning policy (not frozen, and
    /// the one that routed this request), off the async executor.
    async fn learn(
        &self,
        policy: &str,
        views: &[SegmentView],
        outcomes: &[SegmentOutcome],
        reports: &[v1::SegmentReport],
    ) {
        let Some(learner) = self
            .learner
            .clone()
            .filter(|l| !l.is_frozen() && l.name() == policy)
        else {
            return;
        };
        let ok: Vec<usize> = (0..outcomes.len())
            .filter(|&i| outcomes[i].error.is_none())
            .collect();
        let views: Vec<SegmentView> = ok.iter().map(|&i| views[i].clone()).collect();
        let chosen: Vec<usize> = ok.iter().map(|&i| outcomes[i].candidate).collect();
        let rewards: Vec<f64> = ok.iter().map(|&i| reports[i].reward).collect();
        let scores: Vec<f64> = ok.iter().map(|&i| reports[i].score).collect();
        let result = tokio::task::spawn_blocking(move || {
            learner.learn_from_request(&views, &chosen, &scores, &rewards)
        })
        .await;
        match result {
            Ok(Ok(Some(losses))) => tracing::info!(?losses, "online SAC update"),
            Ok(Ok(None)) => tracing::debug!("online SAC: transitions stored"),
            Ok(Err(e)) => tracing::warn!(error = %e, "online SAC update failed"),
            Err(e) => tracing::warn!(error = %e, "online SAC task failed"),
        }
    }

    fn report(
        &self,
        v: &SegmentView,
        c: &crate::policy::Choice,
        o: &SegmentOutcome,
        score: f64,
    ) -> v1::SegmentReport {
        let cost = &self.config.cost;
        let cand = &v.candidates[o.candidate.min(v.candidates.len() - 1)];
        let fin = o.fin.clone().unwrap_or_default();
        let words = fin.words;
        let snr_db = fin.snr.as_ref().map_or(cand.snr_db, |s| s.snr_db);
        let bits = if cand.local {
            0
        } else {
            (o.bytes_up + o.bytes_down) * 8
        };
        let r = cost.reward(score, words, bits, snr_db);
        let model_seconds = o.model_seconds();
        let candidates = c
            .ranking
            .iter()
            .map(|&i| {
                let x = &v.candidates[i];
                let e = estimate(x, &v.candidates, cost);
                v1::Candidate {
                    target: x.target.clone(),
                    expert: x.expert.clone(),
                    relevance: x.relevance,
                    gate_weight: x.gate_weight,
                    snr_db: x.snr_db,
                    rate_bps: e.rate_bps,
                    expected_words: x.expected_words,
                    expected_compute_cost: e.compute_cost,
                    expected_transfer_s: e.transfer_s,
                    value: c.values[i],
                    measured_goodput_bps: x.link.map_or(0.0, |l| l.goodput_bps),
                    measured_rtt_ms: x.link.map_or(0.0, |l| l.rtt_s * 1e3),
                }
            })
            .collect();
        let explanation = if o.attempts > 1 {
            format!(
                "{} | first choice failed; retried on {}",
                c.explanation, cand.target
            )
        } else {
            c.explanation.clone()
        };
        v1::SegmentReport {
            index: v.index as u32,
            segment: v.text.clone(),
            target: cand.target.clone(),
            expert: cand.expert.clone(),
            text: o.text.clone(),
            relevance: cand.relevance,
            gate_weight: cand.gate_weight,
            snr_db: if cand.local { 0.0 } else { snr_db },
            rate_bps: if cand.local { 0.0 } else { r.transfer.rate_bps },
            words,
            prompt_tokens: fin.prompt_tokens,
            generated_tokens: fin.generated_tokens,
            score,
            compute_cost: r.compute_cost,
            payload_bits: bits,
            sim_transfer_s: r.transfer.seconds,
            sim_energy_j: r.transfer.energy_j,
            measured_bytes_up: o.bytes_up,
            measured_bytes_down: o.bytes_down,
            measured_transfer_s: if cand.local {
                0.0
            } else {
                (secs(o.latency) - model_seconds).max(0.0)
            },
            latency_s: secs(o.latency),
            model_seconds,
            reward: r.reward,
            candidates,
            explanation,
            attempts: o.attempts,
            error: o.error.clone().unwrap_or_default(),
            transport: o.transport.to_owned(),
            wire_bytes_up: o.wire.up,
            wire_bytes_down: o.wire.down,
            wire_bytes_shared: o.wire.shared,
            paced_s: fin.paced_seconds,
            history_turns: fin.history_turns,
        }
    }
}

/// Puts the candidates of `expert` first in every segment's ranking (the
/// rest keep their order as fallbacks); refuses an expert no candidate has.
fn pin(
    choices: &mut [crate::policy::Choice],
    views: &[SegmentView],
    expert: &str,
) -> Result<(), AskError> {
    for (c, v) in choices.iter_mut().zip(views) {
        if !v.candidates.iter().any(|x| x.expert == expert) {
            return Err(AskError::UnknownExpert(expert.to_owned()));
        }
        c.ranking.sort_by_key(|&i| v.candidates[i].expert != expert);
        c.explanation = format!(
            "pinned to expert {expert} by the request | {}",
            c.explanation
        );
    }
    Ok(())
}

/// Mean of the answered segments' scores weighted by their words (0 when
/// none answered).
///
/// ```
/// # use netmoe_coordinator::pipeline::word_weighted;
/// # use netmoe_coordinator::dispatch::SegmentOutcome;
/// let mut a = SegmentOutcome::default();
/// a.text = "one two three".into();
/// let mut b = SegmentOutcome::default();
/// b.text = "four".into();
/// assert_eq!(word_weighted(&[a, b], &[8.0, 4.0]), 7.0);
/// ```
pub fn word_weighted(outcomes: &[SegmentOutcome], scores: &[f64]) -> f64 {
    let (mut sum, mut words) = (0.0, 0.0);
    for (o, s) in outcomes.iter().zip(scores) {
        if o.error.is_none() {
            let w = o.text.split_whitespace().count() as f64;
            sum += w * s;
            words += w;
        }
    }
    if words > 0.0 { sum / words } else { 0.0 }
}

/// Sums of the per-segment costs.
pub fn totals(reports: &[v1::SegmentReport]) -> v1::Totals {
    let mut t = v1::Totals::default();
    for r in reports {
        t.words += r.words;
        t.generated_tokens += r.generated_tokens;
        t.compute_cost += r.compute_cost;
        t.payload_bits += r.payload_bits;
        t.sim_transfer_s += r.sim_transfer_s;
        t.sim_energy_j += r.sim_energy_j;
        t.measured_bytes += r.measured_bytes_up + r.measured_bytes_down;
        t.measured_transfer_s += r.measured_transfer_s;
        t.reward += r.reward;
        t.wire_bytes += r.wire_bytes_up + r.wire_bytes_down;
    }
    t
}
