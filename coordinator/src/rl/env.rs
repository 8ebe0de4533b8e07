//! The routing environment: an episode is one prompt of a split with fresh
//! SNR draws for every edge node; each step assigns the next segment to one
//! node and earns the one cost model's reward for what that node's expert
//! really did with the segment (the dataset's score, words and bytes).
//! The local device is an action while it has capacity. Nodes are the
//! dataset's experts, or N simulated nodes drawn from them.

use std::str::FromStr;
use std::sync::Arc;

use netmoe_common::channel::{SnrModel, SnrSampler};
use netmoe_common::cost::CostModel;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::RlError;
use super::dataset::{Dataset, Outcome};
use super::features::{
    ExpertPriors, FeatureNorm, N_FEATURES, StepContext, available, pair_features,
};
use crate::policy::{Candidate, LOCAL_TARGET, SegmentView};

/// Segments the local device takes per episode by default (the paper keeps
/// "some" subtasks on the user's device when it has capacity).
pub const DEFAULT_LOCAL_CAPACITY: usize = 1;
/// Default channels: per episode, each node's mean SNR is drawn uniformly
/// in 0..20 dB and its SNR is one Rayleigh-faded draw around that mean.
pub const DEFAULT_CHANNEL: &str = "random-rayleigh:0:20";
/// Channels of the generalisation runs: each node gets its own model
/// (Rayleigh, uniform or fixed) with parameters drawn once in -5..25 dB.
pub const DEFAULT_NEW_CHANNEL: &str = "per-node:-5:25";
/// Standard deviation of a simulated node's score offset (judge points).
pub const DEFAULT_SCORE_NOISE: f64 = 0.3;
/// Standard deviation of the log of a simulated node's word-count scale.
pub const DEFAULT_WORDS_NOISE: f64 = 0.1;

/// How nodes' SNRs are drawn.
#[derive(Debug, Clone, PartialEq)]
pub enum ChannelSpec {
    /// `random-rayleigh:LO:HI`: per episode and node, a mean uniform in
    /// LO..HI dB, then one Rayleigh-faded draw around it.
    RandomRayleigh {
        /// Lowest mean, dB.
        min_db: f64,
        /// Highest mean, dB.
        max_db: f64,
    },
    /// `per-node:LO:HI`: each node gets one model drawn once (Rayleigh with
    /// a mean, uniform over a range, or fixed) with parameters in LO..HI dB.
    PerNode {
        /// Lowest parameter, dB.
        min_db: f64,
        /// Highest parameter, dB.
        max_db: f64,
    },
    /// `models:SPEC,SPEC,...`: these [`SnrModel`]s, cycled over the nodes.
    Models(Vec<SnrModel>),
}

impl FromStr for ChannelSpec {
    type Err = RlError;

    fn from_str(s: &str) -> Result<Self, RlError> {
        let bad = || {
            RlError::InvalidArgument(format!(
                "channel `{s}`: expected random-rayleigh:LO:HI, per-node:LO:HI or models:SPEC[,SPEC...]"
            ))
        };
        let (kind, rest) = s.trim().split_once(':').ok_or_else(bad)?;
        let range = || -> Result<(f64, f64), RlError> {
            let (a, b) = rest.split_once(':').ok_or_else(bad)?;
            let (a, b): (f64, f64) = (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            );
            if !(a.is_finite() && b.is_finite() && a <= b) {
                return Err(bad());
            }
            Ok((a, b))
        };
        match kind {
            "random-rayleigh" => {
                range().map(|(min_db, max_db)| Self::RandomRayleigh { min_db, max_db })
            }
            "per-node" => range().map(|(min_db, max_db)| Self::PerNode { min_db, max_db }),
            "models" => {
                let models = rest
                    .split(',')
                    .map(str::parse)
                    .collect::<Result<Vec<SnrModel>, _>>()?;
                if models.is_empty() {
                    return Err(bad());
                }
                Ok(Self::Models(models))
            }
            _ => Err(bad()),
        }
    }
}

/// Which nodes the environment has.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NodeLayout {
    /// One node per dataset expert, outcomes exactly as recorded.
    Dataset,
    /// `edge_nodes` simulated nodes: node i runs edge expert i mod E with a
    /// score offset and a word-count scale drawn once per node; plus the
    /// local expert.
    Simulated {
        /// Edge nodes.
        edge_nodes: usize,
        /// Standard deviation of the score offset.
        score_noise: f64,
        /// Standard deviation of the log word-count scale.
        words_noise: f64,
    },
}

/// Settings of an environment.
#[derive(Debug, Clone, PartialEq)]
pub struct EnvConfig {
    /// Segments the local device may take per episode (0: no local option).
    pub local_capacity: usize,
    /// How SNRs are drawn.
    pub channel: ChannelSpec,
    /// The one cost model.
    pub cost: CostModel,
    /// Which nodes exist.
    pub nodes: NodeLayout,
}

impl Default for EnvConfig {
    fn default() -> Self {
        Self {
            local_capacity: DEFAULT_LOCAL_CAPACITY,
            channel: DEFAULT_CHANNEL.parse().expect("default channel parses"),
            cost: CostModel::default(),
            nodes: NodeLayout::Dataset,
        }
    }
}

/// One node of the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeSpec {
    /// Its id (expert name for dataset nodes, `node-i` for simulated ones).
    pub target: String,
    /// The dataset expert it runs.
    pub expert: usize,
    /// True for the local device.
    pub local: bool,
    /// Added to the recorded score (simulated nodes).
    pub score_offset: f64,
    /// Multiplies recorded words and bytes (simulated nodes).
    pub words_scale: f64,
    /// Its own SNR model (per-node and model-list channels).
    pub model: Option<SnrModel>,
}

/// One episode's draw: a prompt and every node's SNR.
#[derive(Debug, Clone, PartialEq)]
pub struct Episode {
    /// Prompt index in the dataset.
    pub prompt: usize,
    /// SNR per node, dB (0 for the local device).
    pub snr_db: Vec<f64>,
    /// Seed for policies that draw (the random baseline).
    pub seed: u64,
    /// `[segment][expert]`: which recorded generation the step is paid
    /// with (all 0 when the dataset has one sample per pair).
    pub samples: Vec<Vec<usize>>,
}

/// Progress through an episode.
#[derive(Debug, Clone, PartialEq)]
pub struct EpisodeState {
    /// Next segment to assign.
    pub position: usize,
    /// Segments assigned to each node so far.
    pub assigned: Vec<u32>,
    /// Segments the local device can still take.
    pub local_left: usize,
    /// Node chosen for each assigned segment.
    pub choices: Vec<usize>,
    /// Reward so far.
    pub total: f64,
}

/// What the agent sees before a step: one normalised feature row per node.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Row-major `[n_nodes, N_FEATURES]`.
    pub features: Vec<f32>,
    /// Which nodes may be chosen.
    pub mask: Vec<bool>,
}

impl Observation {
    /// Number of (segment, node) pairs.
    pub fn n_pairs(&self) -> usize {
        self.mask.len()
    }
}

/// The environment.
#[derive(Debug, Clone)]
pub struct Env {
    data: Arc<Dataset>,
    prompts: Vec<usize>,
    nodes: Vec<NodeSpec>,
    samplers: Vec<Option<SnrSampler>>,
    tokens_per_second: Vec<f64>,
    mean_words: Vec<f64>,
    wire_bytes_per_word: Vec<f64>,
    config: EnvConfig,
    rng: StdRng,
}

impl Env {
    /// An environment over `prompts` of `data`, seeded.
    pub fn new(
        data: Arc<Dataset>,
        prompts: Vec<usize>,
        config: EnvConfig,
        seed: u64,
    ) -> Result<Self, RlError> {
        if prompts.is_empty() {
            return Err(RlError::InvalidArgument(
                "no prompts for the environment".into(),
            ));
        }
        let mut rng = StdRng::seed_from_u64(seed);
        let edge = data.edge_experts();
        let mut nodes: Vec<NodeSpec> = match config.nodes {
            NodeLayout::Dataset => edge
                .iter()
                .map(|&e| NodeSpec {
                    target: data.experts[e].name.clone(),
                    expert: e,
                    local: false,
                    score_offset: 0.0,
                    words_scale: 1.0,
                    model: None,
                })
                .collect(),
            NodeLayout::Simulated {
                edge_nodes,
                score_noise,
                words_noise,
            } => {
                if edge_nodes == 0 {
                    return Err(RlError::InvalidArgument("at least one edge node".into()));
                }
                let s = Normal::new(0.0, score_noise.max(0.0))
                    .map_err(|e| RlError::InvalidArgument(e.to_string()))?;
                let w = Normal::new(0.0, words_noise.max(0.0))
                    .map_err(|e| RlError::InvalidArgument(e.to_string()))?;
                (0..edge_nodes)
                    .map(|i| NodeSpec {
                        target: format!("node-{i}"),
                        expert: edge[i % edge.len()],
                        local: false,
                        score_offset: s.sample(&mut rng),
                        words_scale: f64::exp(w.sample(&mut rng)),
                        model: None,
                    })
                    .collect()
            }
        };
        if config.local_capacity > 0
            && let Some(e) = data.local_expert()
        {
            nodes.push(NodeSpec {
                target: LOCAL_TARGET.into(),
                expert: e,
                local: true,
                score_offset: 0.0,
                words_scale: 1.0,
                model: None,
            });
        }
        for (edge_i, n) in nodes.iter_mut().filter(|n| !n.local).enumerate() {
            n.model = match &config.channel {
                ChannelSpec::RandomRayleigh { .. } => None,
                ChannelSpec::Models(m) => Some(m[edge_i % m.len()].clone()),
                ChannelSpec::PerNode { min_db, max_db } => {
                    let kind = rng.random_range(0..3);
                    let mut draw = || rng.random_range(*min_db..=*max_db);
                    Some(match kind {
                        0 => SnrModel::Rayleigh { mean_db: draw() },
                        1 => {
                            let (a, b) = (draw(), draw());
                            SnrModel::Uniform {
                                min_db: a.min(b),
                                max_db: a.max(b),
                            }
                        }
                        _ => SnrModel::Fixed { db: draw() },
                    })
                }
            };
        }
        let samplers = nodes
            .iter()
            .map(|n| n.model.clone().map(|m| SnrSampler::new(m, rng.random())))
            .collect();
        let (tokens_per_second, mean_words) = (0..data.experts.len())
            .map(|e| {
                let (mut tok, mut secs, mut words, mut n) = (0.0, 0.0, 0.0, 0.0);
                for &p in &prompts {
                    for s in &data.prompts[p].segments {
                        tok += f64::from(s.outcomes[e].generated_tokens);
                        secs += s.outcomes[e].generation_s;
                        words += f64::from(s.outcomes[e].words);
                        n += 1.0;
                    }
                }
                (
                    if secs > 0.0 { tok / secs } else { 0.0 },
                    words / f64::max(n, 1.0),
                )
            })
            .unzip();
        let wire_bytes_per_word = (0..data.experts.len())
            .map(|e| wire_bytes_per_word(&data, &prompts, e))
            .collect();
        Ok(Self {
            data,
            prompts,
            nodes,
            samplers,
            tokens_per_second,
            mean_words,
            wire_bytes_per_word,
            config,
            rng,
        })
    }

    /// The nodes, local device last.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The dataset.
    pub fn data(&self) -> &Arc<Dataset> {
        &self.data
    }

    /// The prompts episodes are drawn from.
    pub fn prompts(&self) -> &[usize] {
        &self.prompts
    }

    /// The settings.
    pub fn config(&self) -> &EnvConfig {
        &self.config
    }

    /// Draws later episodes from `prompts` instead (same nodes and channels).
    pub fn set_prompts(&mut self, prompts: Vec<usize>) -> Result<(), RlError> {
        if prompts.is_empty() {
            return Err(RlError::InvalidArgument(
                "no prompts for the environment".into(),
            ));
        }
        self.prompts = prompts;
        Ok(())
    }

    /// Restarts the episode stream from `seed`, keeping the nodes and
    /// their channel models (a panel or evaluation stream over the same
    /// network).
    pub fn reseed(&mut self, seed: u64) {
        self.rng = StdRng::seed_from_u64(seed);
        for (i, s) in self.samplers.iter_mut().enumerate() {
            if let Some(s) = s {
                *s = SnrSampler::new(s.model().clone(), seed.wrapping_add(i as u64 + 1));
            }
        }
    }

    /// Draws the next episode: a prompt and fresh SNRs.
    pub fn draw(&mut self) -> Episode {
        let prompt = self.prompts[self.rng.random_range(0..self.prompts.len())];
        let mut snr_db = Vec::with_capacity(self.nodes.len());
        for (i, n) in self.nodes.iter().enumerate() {
            let v = if n.local {
                0.0
            } else if let Some(s) = self.samplers[i].as_mut() {
                s.draw().snr_db
            } else if let ChannelSpec::RandomRayleigh { min_db, max_db } = self.config.channel {
                let mean_db = self.rng.random_range(min_db..=max_db);
                SnrSampler::new(SnrModel::Rayleigh { mean_db }, self.rng.random())
                    .draw()
                    .snr_db
            } else {
                unreachable!("every non-random channel gives each node a sampler")
            };
            snr_db.push(v);
        }
        // One of each pair's generations, drawn per step: the sampling
        // noise of a real expert. Nothing is drawn when there is only one,
        // so single-sample datasets keep their episode streams.
        let samples = self.data.prompts[prompt]
            .segments
            .iter()
            .map(|seg| {
                seg.samples
                    .iter()
                    .map(|k| match k.len() {
                        0 | 1 => 0,
                        n => self.rng.random_range(0..n),
                    })
                    .collect()
            })
            .collect();
        Episode {
            prompt,
            snr_db,
            seed: self.rng.random(),
            samples,
        }
    }

    /// Segments of the episode's prompt.
    pub fn n_segments(&self, ep: &Episode) -> usize {
        self.data.prompts[ep.prompt].segments.len()
    }

    /// The candidates of segment `s` as the live pipeline would build them:
    /// gate relevance, the gate weight renormalised over these nodes,
    /// current SNR, the expert's speed and mean words from the data.
    pub fn candidates(&self, ep: &Episode, s: usize) -> Vec<Candidate> {
        let seg = &self.data.prompts[ep.prompt].segments[s];
        let z: f64 = self
            .nodes
            .iter()
            .map(|n| seg.outcomes[n.expert].gate_weight)
            .sum();
        self.nodes
            .iter()
            .zip(&ep.snr_db)
            .map(|(n, &snr_db)| {
                let o = &seg.outcomes[n.expert];
                Candidate {
                    link: None,
                    target: n.target.clone(),
                    expert: self.data.experts[n.expert].name.clone(),
                    local: n.local,
                    relevance: o.relevance,
                    gate_weight: if z > 0.0 { o.gate_weight / z } else { 0.0 },
                    snr_db,
                    tokens_per_second: self.tokens_per_second[n.expert],
                    load: 0.0,
                    expected_words: self.mean_words[n.expert],
                    wire_bytes_per_word: if n.local {
                        0.0
                    } else {
                        self.wire_bytes_per_word[n.expert]
                    },
                }
            })
            .collect()
    }

    /// Every segment's view, as the routing trait receives them live.
    pub fn views(&self, ep: &Episode) -> Vec<SegmentView> {
        let p = &self.data.prompts[ep.prompt];
        p.segments
            .iter()
            .map(|s| SegmentView {
                index: s.index,
                text: s.text.clone(),
                candidates: self.candidates(ep, s.index),
            })
            .collect()
    }

    /// The generation of `expert` on segment `s` this episode pays: the
    /// sample drawn for it.
    pub fn outcome(&self, ep: &Episode, s: usize, expert: usize) -> &Outcome {
        let k = ep.samples.get(s).and_then(|v| v.get(expert)).copied();
        let samples = &self.data.prompts[ep.prompt].segments[s].samples[expert];
        &samples[k.unwrap_or(0).min(samples.len() - 1)]
    }

    /// The true reward of segment `s` on node `node`: the drawn generation
    /// (with the node's offsets) through the one cost model.
    pub fn reward(&self, ep: &Episode, s: usize, node: usize) -> f64 {
        let n = &self.nodes[node];
        let o = self.outcome(ep, s, n.expert);
        self.reward_of(ep, node, o, (o.score + n.score_offset).clamp(0.0, 10.0))
    }

    /// The expected reward of segment `s` on `node`: the mean over every
    /// recorded generation of the pair (this episode's SNR). What a router
    /// that cannot see the passage before it is written can at best aim at.
    pub fn expected_reward(&self, ep: &Episode, s: usize, node: usize) -> f64 {
        let n = &self.nodes[node];
        let samples = &self.data.prompts[ep.prompt].segments[s].samples[n.expert];
        samples
            .iter()
            .map(|o| self.reward_of(ep, node, o, (o.score + n.score_offset).clamp(0.0, 10.0)))
            .sum::<f64>()
            / samples.len().max(1) as f64
    }

    /// The expected-value bound: exhaustive search (local capacity
    /// respected) on every pair's [`Self::expected_reward`], paid with the
    /// TRUE (drawn) rewards. No router can expect more; the hindsight
    /// bound ([`Self::upper_bound`]) also knows which sample was drawn.
    pub fn expected_bound(&self, ep: &Episode) -> f64 {
        let choices = self.best_assignment(ep, |s, j| self.expected_reward(ep, s, j));
        self.total(ep, &choices)
    }

    /// The expected reward of segment `s` on `node` estimated WITHOUT this
    /// episode's drawn generation: the mean over the pair's other
    /// generations. `None` when the pair has only the one.
    pub fn held_out_expected_reward(&self, ep: &Episode, s: usize, node: usize) -> Option<f64> {
        let n = &self.nodes[node];
        let samples = &self.data.prompts[ep.prompt].segments[s].samples[n.expert];
        if samples.len() < 2 {
            return None;
        }
        let drawn = ep.samples.get(s).and_then(|v| v.get(n.expert)).copied();
        let drawn = drawn.unwrap_or(0).min(samples.len() - 1);
        let others = samples
            .iter()
            .enumerate()
            .filter(|&(k, _)| k != drawn)
            .map(|(_, o)| self.reward_of(ep, node, o, (o.score + n.score_offset).clamp(0.0, 10.0)));
        Some(others.sum::<f64>() / (samples.len() - 1) as f64)
    }

    /// The cross-fitted expected-value bound: exhaustive search on every
    /// pair's mean over its OTHER generations
    /// ([`Self::held_out_expected_reward`]), paid with the drawn one.
    /// [`Self::expected_bound`] plans on a mean that includes the drawn
    /// generation, so with few generations per pair part of what it earns
    /// is hindsight on that draw's luck; this one plans on independent
    /// generations, so it is what a router that knew each pair's quality
    /// from `samples − 1` earlier tries would earn. `None` with one
    /// generation per pair.
    pub fn cross_fitted_bound(&self, ep: &Episode) -> Option<f64> {
        let n = self.n_segments(ep);
        let mut values = vec![vec![0.0; self.nodes.len()]; n];
        for (s, row) in values.iter_mut().enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = self.held_out_expected_reward(ep, s, j)?;
            }
        }
        let choices = self.best_assignment(ep, |s, j| values[s][j]);
        Some(self.total(ep, &choices))
    }

    /// The reward of segment `s` on `node` had its judge given `score`
    /// (words and bits of the drawn generation, scaled by the node's offsets).
    fn reward_with_score(&self, ep: &Episode, s: usize, node: usize, score: f64) -> f64 {
        let o = self.outcome(ep, s, self.nodes[node].expert);
        self.reward_of(ep, node, o, score)
    }

    /// The reward of outcome `o` on `node` judged `score`, through the one
    /// cost model at this episode's SNR.
    fn reward_of(&self, ep: &Episode, node: usize, o: &Outcome, score: f64) -> f64 {
        let n = &self.nodes[node];
        let words = (f64::from(o.words) * n.words_scale).round() as u32;
        let bits = if n.local {
            0
        } else {
            (o.bits as f64 * n.words_scale).round() as u64
        };
        self.config
            .cost
            .reward(score, words, bits, ep.snr_db[node])
            .reward
    }

    /// The state before the first step.
    pub fn start(&self, _ep: &Episode) -> EpisodeState {
        EpisodeState {
            position: 0,
            assigned: vec![0; self.nodes.len()],
            local_left: self.config.local_capacity,
            choices: Vec::new(),
            total: 0.0,
        }
    }

    /// True when every segment is assigned.
    pub fn done(&self, ep: &Episode, st: &EpisodeState) -> bool {
        st.position >= self.n_segments(ep)
    }

    /// Which nodes the next step may choose.
    pub fn mask(&self, ep: &Episode, st: &EpisodeState) -> Vec<bool> {
        available(&self.candidates(ep, st.position), st.local_left)
    }

    /// The normalised pair features of the next step.
    pub fn observe(
        &self,
        ep: &Episode,
        st: &EpisodeState,
        priors: &ExpertPriors,
        norm: &FeatureNorm,
    ) -> Observation {
        let cands = self.candidates(ep, st.position);
        let step = StepContext {
            position: st.position,
            n_segments: self.n_segments(ep),
            local_left: st.local_left,
        };
        let mut features = Vec::with_capacity(cands.len() * N_FEATURES);
        for mut row in pair_features(&cands, &st.assigned, &step, priors, &self.config.cost) {
            norm.apply(&mut row);
            features.extend_from_slice(&row);
        }
        Observation {
            features,
            mask: available(&cands, st.local_left),
        }
    }

    /// Assigns the next segment to `node`; returns the reward.
    pub fn step(&self, ep: &Episode, st: &mut EpisodeState, node: usize) -> Result<f64, RlError> {
        if self.done(ep, st) {
            return Err(RlError::InvalidArgument("episode is over".into()));
        }
        if node >= self.nodes.len() || (self.nodes[node].local && st.local_left == 0) {
            return Err(RlError::InvalidArgument(format!(
                "node {node} is not available at segment {}",
                st.position
            )));
        }
        let r = self.reward(ep, st.position, node);
        if self.nodes[node].local {
            st.local_left -= 1;
        }
        st.assigned[node] += 1;
        st.choices.push(node);
        st.position += 1;
        st.total += r;
        Ok(r)
    }

    /// The upper bound: the best assignment of every segment with the TRUE
    /// rewards, respecting the local capacity. Returns the total and the
    /// choices. See [`Env::best_assignment`] for why this is exhaustive.
    pub fn upper_bound(&self, ep: &Episode) -> (f64, Vec<usize>) {
        let choices = self.best_assignment(ep, |s, j| self.reward(ep, s, j));
        (self.total(ep, &choices), choices)
    }

    /// A non-clairvoyant reference: the best assignment if each passage's
    /// judged score were its expert's mean score in `priors` (true words,
    /// bytes and SNRs), scored with the TRUE rewards. What the upper bound
    /// gains over this is the judge's per-passage variation, which no
    /// routing feature predicts.
    pub fn mean_score_bound(&self, ep: &Episode, priors: &ExpertPriors) -> f64 {
        let seg = &self.data.prompts[ep.prompt].segments;
        self.planned_total(ep, |s, n| {
            let o = &seg[s].outcomes[n.expert];
            let e = &self.data.experts[n.expert];
            priors.get(&e.name, e.local, f64::from(o.words)).mean_score
        })
    }

    /// The TRUE total of the assignment exhaustive search makes when it
    /// believes the judge gives segment `s` on node `n` the score
    /// `believed(s, n)` (true words, bytes and SNRs): the one planner
    /// behind every reference that knows more than a router but less than
    /// the bound (mean scores, a retest's scores).
    pub fn planned_total(&self, ep: &Episode, believed: impl Fn(usize, &NodeSpec) -> f64) -> f64 {
        let choices = self.best_assignment(ep, |s, j| {
            self.reward_with_score(ep, s, j, believed(s, &self.nodes[j]))
        });
        self.total(ep, &choices)
    }

    /// True total reward of assigning segment `s` to `choices[s]`.
    pub fn total(&self, ep: &Episode, choices: &[usize]) -> f64 {
        choices
            .iter()
            .enumerate()
            .map(|(s, &j)| self.reward(ep, s, j))
            .sum()
    }

    /// The assignment maximising the sum of `value(segment, node)` under
    /// the local capacity. Segments interact only through that capacity,
    /// so the optimum is every segment's best edge node, with the local
    /// device given to the segments that gain most from it: equal to
    /// exhaustive search over all assignments (a test checks that).
    pub fn best_assignment(&self, ep: &Episode, value: impl Fn(usize, usize) -> f64) -> Vec<usize> {
        let local = self.nodes.iter().position(|n| n.local);
        let segs = self.n_segments(ep);
        let mut choices = Vec::with_capacity(segs);
        let mut gains = Vec::new();
        for s in 0..segs {
            let (best, r) = (0..self.nodes.len())
                .filter(|&j| !self.nodes[j].local)
                .map(|j| (j, value(s, j)))
                .fold((usize::MAX, f64::NEG_INFINITY), |a, b| {
                    if b.1 > a.1 { b } else { a }
                });
            choices.push(best);
            if let Some(l) = local {
                gains.push((value(s, l) - r, s));
            }
        }
        gains.sort_by(|a, b| b.0.total_cmp(&a.0));
        for &(g, s) in gains.iter().take(self.config.local_capacity) {
            if g > 0.0 {
                choices[s] = local.expect("gains only with a local node");
            }
        }
        choices
    }

    /// Runs a whole episode with `choose(observation-free state, mask)`
    /// picking nodes; returns the total reward and choices.
    pub fn rollout(
        &self,
        ep: &Episode,
        mut choose: impl FnMut(&EpisodeState, &[bool]) -> usize,
    ) -> Result<EpisodeState, RlError> {
        let mut st = self.start(ep);
        while !self.done(ep, &st) {
            let mask = self.mask(ep, &st);
            let a = choose(&st, &mask);
            self.step(ep, &mut st, a)?;
        }
        Ok(st)
    }
}

/// Bytes on the wire (both ways) per word expert `e` wrote over the
/// segments of `prompts`, as the dataset measured them: what a live node's
/// candidate carries once the coordinator has measured its link.
pub fn wire_bytes_per_word(data: &Dataset, prompts: &[usize], e: usize) -> f64 {
    let (mut bits, mut words) = (0.0, 0.0);
    for &p in prompts {
        for s in &data.prompts[p].segments {
            for o in &s.samples[e] {
                bits += o.bits as f64;
                words += f64::from(o.words);
            }
        }
    }
    if words > 0.0 { bits / 8.0 / words } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(nodes: NodeLayout, seed: u64) -> Env {
        let d = Arc::new(Dataset::synthetic(12, 5));
        let prompts = (0..d.prompts.len()).collect();
        Env::new(
            d,
            prompts,
            EnvConfig {
                nodes,
                ..EnvConfig::default()
            },
            seed,
        )
        .unwrap()
    }

    #[test]
    fn episodes_are_reproducible_from_the_seed() {
        let (mut a, mut b, mut c) = (
            env(NodeLayout::Dataset, 1),
            env(NodeLayout::Dataset, 1),
            env(NodeLayout::Dataset, 2),
        );
        let ea: Vec<Episode> = (0..20).map(|_| a.draw()).collect();
        let eb: Vec<Episode> = (0..20).map(|_| b.draw()).collect();
        let ec: Vec<Episode> = (0..20).map(|_| c.draw()).collect();
        assert_eq!(ea, eb);
        assert_ne!(ea, ec);
        assert_eq!(a.nodes().len(), 4);
        assert!(a.nodes()[3].local);
        assert!(ea.iter().all(|e| e.snr_db[3] == 0.0));
    }

    #[test]
    fn local_capacity_is_enforced_and_rewards_use_the_cost_model() {
        let mut e = env(NodeLayout::Dataset, 3);
        let ep = loop {
            let ep = e.draw();
            if e.n_segments(&ep) >= 2 {
                break ep;
            }
        };
        let mut st = e.start(&ep);
        let r = e.step(&ep, &mut st, 3).unwrap();
        let o = &e.data().prompts[ep.prompt].segments[0].outcomes[3];
        let want = CostModel::default().reward(o.score, o.words, 0, 0.0).reward;
        assert!((r - want).abs() < 1e-12);
        assert_eq!(e.mask(&ep, &st), [true, true, true, false]);
        assert!(e.step(&ep, &mut st, 3).is_err());
        e.step(&ep, &mut st, 0).unwrap();
    }

    #[test]
    fn upper_bound_equals_exhaustive_search() {
        for layout in [
            NodeLayout::Dataset,
            NodeLayout::Simulated {
                edge_nodes: 5,
                score_noise: DEFAULT_SCORE_NOISE,
                words_noise: DEFAULT_WORDS_NOISE,
            },
        ] {
            let mut e = env(layout, 9);
            for _ in 0..30 {
                let ep = e.draw();
                let (bound, choices) = e.upper_bound(&ep);
                let segs = e.n_segments(&ep);
                let n = e.nodes().len();
                let mut best = f64::NEG_INFINITY;
                for code in 0..n.pow(segs as u32) {
                    let assign: Vec<usize> =
                        (0..segs).map(|s| code / n.pow(s as u32) % n).collect();
                    let locals = assign.iter().filter(|&&j| e.nodes()[j].local).count();
                    if locals > e.config().local_capacity {
                        continue;
                    }
                    let r: f64 = assign
                        .iter()
                        .enumerate()
                        .map(|(s, &j)| e.reward(&ep, s, j))
                        .sum();
                    best = best.max(r);
                }
                assert!((bound - best).abs() < 1e-9, "{bound} vs {best}");
                let replay = e.rollout(&ep, |st, _| choices[st.position]).unwrap();
                assert!((replay.total - bound).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn the_default_wire_size_is_what_the_shipped_dataset_measured() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/routing_dataset.jsonl");
        let d = Dataset::load(std::path::Path::new(path)).unwrap();
        let all: Vec<usize> = (0..d.prompts.len()).collect();
        for e in d.edge_experts() {
            let measured = wire_bytes_per_word(&d, &all, e);
            let gap = (measured / crate::policy::DEFAULT_WIRE_BYTES_PER_WORD - 1.0).abs();
            assert!(gap < 0.15, "{}: {measured:.1} B/word", d.experts[e].name);
        }
    }

    #[test]
    fn expected_bound_never_beats_hindsight_and_plans_best_on_the_means() {
        // Three generations per pair, so the drawn sample matters.
        let data = Arc::new(Dataset::synthetic_sampled(16, 4, 3));
        assert_eq!(data.max_samples(), 3);
        let all: Vec<usize> = (0..data.prompts.len()).collect();
        let mut env = Env::new(data.clone(), all.clone(), EnvConfig::default(), 2).unwrap();
        let (mut expected, mut hindsight) = (0.0, 0.0);
        let mut draws = std::collections::HashSet::new();
        for _ in 0..200 {
            let ep = env.draw();
            draws.extend(ep.samples.iter().flatten().copied());
            let (h, _) = env.upper_bound(&ep);
            let x = env.expected_bound(&ep);
            assert!(x <= h + 1e-9, "the expected bound never beats hindsight");
            expected += x;
            hindsight += h;
            // Paid with the drawn sample, the expected bound's plan is the
            // best on the pairs' means.
            let plan = env.best_assignment(&ep, |s, j| env.expected_reward(&ep, s, j));
            let mean_of = |c: &[usize]| -> f64 {
                c.iter()
                    .enumerate()
                    .map(|(s, &j)| env.expected_reward(&ep, s, j))
                    .sum()
            };
            let (_, hindsight_plan) = env.upper_bound(&ep);
            assert!(mean_of(&plan) >= mean_of(&hindsight_plan) - 1e-9);
        }
        assert_eq!(draws.len(), 3, "every sample is drawn");
        assert!(expected < hindsight, "{expected} vs {hindsight}");
    }

    #[test]
    fn the_cross_fitted_bound_plans_without_the_drawn_generation() {
        let data = Arc::new(Dataset::synthetic_sampled(16, 4, 3));
        let all: Vec<usize> = (0..data.prompts.len()).collect();
        let mut env = Env::new(data, all, EnvConfig::default(), 2).unwrap();
        let (mut crossed, mut expected) = (0.0, 0.0);
        for _ in 0..300 {
            let mut ep = env.draw();
            let x = env.cross_fitted_bound(&ep).unwrap();
            assert!(x <= env.upper_bound(&ep).0 + 1e-9);
            crossed += x;
            expected += env.expected_bound(&ep);
            // The estimate is the mean of the two generations not drawn;
            // the full mean does not depend on which one was.
            let est = env.held_out_expected_reward(&ep, 0, 0).unwrap();
            let paid = env.reward(&ep, 0, 0);
            let mean = env.expected_reward(&ep, 0, 0);
            assert!(
                (mean * 3.0 - paid - est * 2.0).abs() < 1e-9,
                "mean of the other two"
            );
            ep.samples[0][0] = (ep.samples[0][0] + 1) % 3;
            assert!((env.expected_reward(&ep, 0, 0) - mean).abs() < 1e-12);
        }
        assert!(
            crossed < expected,
            "planning on the drawn luck earns more: {crossed} vs {expected}"
        );
        // With one generation per pair there is nothing to cross-fit on.
        let single = Arc::new(Dataset::synthetic(8, 2));
        let all: Vec<usize> = (0..single.prompts.len()).collect();
        let mut env = Env::new(single, all, EnvConfig::default(), 2).unwrap();
        let ep = env.draw();
        assert_eq!(env.cross_fitted_bound(&ep), None);
    }

    #[test]
    fn simulated_nodes_cycle_experts_and_channels_parse() {
        let e = env(
            NodeLayout::Simulated {
                edge_nodes: 8,
                score_noise: 0.3,
                words_noise: 0.1,
            },
            1,
        );
        assert_eq!(e.nodes().len(), 9);
        assert_eq!(e.nodes()[0].expert, e.nodes()[3].expert);
        assert_ne!(e.nodes()[0].score_offset, e.nodes()[3].score_offset);
        assert!(matches!(
            "per-node:-5:25".parse::<ChannelSpec>(),
            Ok(ChannelSpec::PerNode { .. })
        ));
        assert!(matches!(
            "models:rayleigh:12,fixed:18".parse::<ChannelSpec>(),
            Ok(ChannelSpec::Models(m)) if m.len() == 2
        ));
        assert!("uniform:0:1".parse::<ChannelSpec>().is_err());
        assert!("random-rayleigh:5:1".parse::<ChannelSpec>().is_err());
    }
}
