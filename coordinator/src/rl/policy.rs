//! [`SacPolicy`]: a trained SAC actor behind the routing trait. It builds
//! the same pair features as training from the live [`SegmentView`]s,
//! assigns segments in order (so per-request load and the local device's
//! capacity are known at each step), ranks candidates by the actor's
//! probability (greedy at serve time) and explains the winner.
//!
//! Saved as two files side by side: `NAME.safetensors` (every net and α)
//! and `NAME.json` ([`PolicyInfo`]: features, normalisation, priors,
//! hyper-parameters, training record).
//!
//! Online learning: [`SacPolicy::learn_from_request`] turns one answered
//! request (the views, what ran where, the rewards) into transitions, keeps
//! them in a bounded replay buffer and runs a few SAC updates, unless the
//! policy is frozen ([`SacPolicy::set_frozen`]). It also moves each
//! expert's prior score toward the scores its answers earn
//! ([`ONLINE_PRIOR_WEIGHT`] per answer): the prior feeds the features and
//! the residual actor's base logits, so a node whose quality drops without
//! any feature showing it loses its traffic within a few requests.
//! Routing and learning take the same lock, so a decision never sees
//! half-updated weights.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use netmoe_common::cost::CostModel;
use serde::{Deserialize, Serialize};

use super::RlError;
use super::env::Observation;
use super::features::{
    ExpertPriors, FEATURE_NAMES, FeatureNorm, N_FEATURES, StepContext, available, pair_features,
};
use super::replay::{Batch, ReplayBuffer, Transition};
use super::sac::{Sac, SacConfig, SacLosses};
use crate::policy::{
    Candidate, Choice, RouteContext, RoutingPolicy, SegmentView, estimate, explain, rank_by,
};

/// Version of the JSON layout.
pub const POLICY_FORMAT: u32 = 1;
/// Name the policy registers under.
pub const POLICY_NAME: &str = "sac";
/// Updates per learned request when learning online.
pub const DEFAULT_ONLINE_UPDATES: usize = 4;
/// Step of an expert's live prior score toward each score its answers
/// earn while learning online: after `n` answers the training mean keeps
/// a weight of 0.7^n (a quarter after 4), so a collapse shows within a few
/// requests while one unlucky answer moves the prior by less than a third.
pub const ONLINE_PRIOR_WEIGHT: f64 = 0.3;

/// How a policy was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingInfo {
    /// Dataset it was trained on.
    pub dataset: String,
    /// Share of prompts in the training split.
    pub train_fraction: f64,
    /// Seed of the split (so evaluation finds the same held-out prompts).
    pub split_seed: u64,
    /// Training seed.
    pub seed: u64,
    /// Episodes trained.
    pub episodes: usize,
    /// SAC updates done.
    pub updates: u64,
    /// Wall seconds of training.
    pub seconds: f64,
    /// Channel spec of training episodes.
    pub channel: String,
    /// Edge nodes during training.
    pub edge_nodes: usize,
    /// Episode at which the curve converged, if it did.
    pub converged_at: Option<usize>,
    /// Episode whose weights were saved (best on the training panel; 0: the
    /// residual start, the prior planner).
    #[serde(default)]
    pub kept_episode: usize,
}

/// The JSON half of a saved policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyInfo {
    /// [`POLICY_FORMAT`].
    pub format: u32,
    /// [`POLICY_NAME`].
    pub name: String,
    /// Feature names, checked against [`FEATURE_NAMES`] on load.
    pub features: Vec<String>,
    /// Standardisation of the features.
    pub norm: FeatureNorm,
    /// Per-expert means from the training split.
    pub priors: ExpertPriors,
    /// Hyper-parameters (hidden widths rebuild the nets).
    pub sac: SacConfig,
    /// Cost model the rewards used.
    pub cost: CostModel,
    /// Segments per request the local device takes.
    pub local_capacity: usize,
    /// The weights file, relative to the JSON.
    pub weights: String,
    /// How it was trained.
    pub training: TrainingInfo,
}

/// State behind the lock: the agent and its online replay.
#[derive(Debug)]
struct Inner {
    agent: Sac,
    replay: ReplayBuffer,
}

/// A trained SAC policy.
#[derive(Debug)]
pub struct SacPolicy {
    info: PolicyInfo,
    inner: Mutex<Inner>,
    /// The per-expert priors routing reads: the training split's, moved by
    /// online learning. Taken after `inner` when both are held.
    priors: RwLock<ExpertPriors>,
    frozen: AtomicBool,
    online_updates: usize,
}

/// `path` with its extension replaced by `ext` (`x.json` → `x.safetensors`).
fn sibling(path: &Path, ext: &str) -> PathBuf {
    path.with_extension(ext)
}

/// Loads a policy from `NAME.json`, `NAME.safetensors` or `NAME`.
pub fn load_policy(path: &Path) -> Result<SacPolicy, RlError> {
    SacPolicy::load(path)
}

impl SacPolicy {
    /// Wraps a trained agent; online learning starts frozen.
    pub fn new(agent: Sac, info: PolicyInfo) -> Self {
        let replay = ReplayBuffer::new(info.sac.buffer_capacity, info.training.seed);
        Self {
            priors: RwLock::new(info.priors.clone()),
            info,
            inner: Mutex::new(Inner { agent, replay }),
            frozen: AtomicBool::new(true),
            online_updates: DEFAULT_ONLINE_UPDATES,
        }
    }

    /// Loads a saved policy.
    pub fn load(path: &Path) -> Result<Self, RlError> {
        let json = sibling(path, "json");
        let text = std::fs::read_to_string(&json).map_err(|e| RlError::io(&json, e))?;
        let bad = |message: String| RlError::PolicyFile {
            path: json.display().to_string(),
            message,
        };
        let info: PolicyInfo = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        if info.format != POLICY_FORMAT {
            return Err(bad(format!(
                "format {} (this build reads {POLICY_FORMAT})",
                info.format
            )));
        }
        if info.features != FEATURE_NAMES {
            return Err(bad(format!(
                "features {:?} differ from this build's {FEATURE_NAMES:?}",
                info.features
            )));
        }
        if info.norm.mean.len() != N_FEATURES || info.norm.std.len() != N_FEATURES {
            return Err(bad("normalisation has the wrong length".into()));
        }
        let weights = json.with_file_name(&info.weights);
        let mut agent = Sac::build(info.sac.clone(), &super::device())?;
        agent
            .load_weights(&weights)
            .map_err(|e| bad(format!("weights {}: {e}", weights.display())))?;
        Ok(Self::new(agent, info))
    }

    /// Saves `NAME.safetensors` and `NAME.json` for `stem` = `dir/NAME`;
    /// returns the JSON path.
    pub fn save(&self, stem: &Path) -> Result<PathBuf, RlError> {
        let weights = sibling(stem, "safetensors");
        let json = sibling(stem, "json");
        if let Some(dir) = stem.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| RlError::io(dir, e))?;
        }
        let mut info = self.info.clone();
        info.priors = self.priors();
        info.weights = weights
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.lock().agent.save(&weights)?;
        let text = serde_json::to_string_pretty(&info).map_err(|e| RlError::PolicyFile {
            path: json.display().to_string(),
            message: e.to_string(),
        })?;
        std::fs::write(&json, text).map_err(|e| RlError::io(&json, e))?;
        Ok(json)
    }

    /// The JSON half (its priors are the training split's; see
    /// [`Self::priors`] for the live ones).
    pub fn info(&self) -> &PolicyInfo {
        &self.info
    }

    /// The priors routing reads now: the training split's, moved by
    /// online learning.
    pub fn priors(&self) -> ExpertPriors {
        self.priors
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic mid-update leaves usable (if partly stepped) weights.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops (`true`) or resumes (`false`) online learning.
    pub fn set_frozen(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::Relaxed);
    }

    /// True while online learning is off (the default after loading).
    pub fn is_frozen(&self) -> bool {
        self.frozen.load(Ordering::Relaxed)
    }

    /// Sets how many SAC updates each learned request runs.
    pub fn set_online_updates(&mut self, n: usize) {
        self.online_updates = n;
    }

    /// The normalised observations of a request's segments, in order, if
    /// segment `k` went to candidate `chosen[k]`; and each step's mask.
    pub fn observations(&self, segments: &[SegmentView], chosen: &[usize]) -> Vec<Observation> {
        let mut counts = std::collections::HashMap::<&str, u32>::new();
        let mut local_left = self.info.local_capacity;
        let mut out = Vec::with_capacity(segments.len());
        for (k, s) in segments.iter().enumerate() {
            out.push(self.observe(&s.candidates, &counts, k, segments.len(), local_left));
            if let Some(c) = chosen.get(k).and_then(|&j| s.candidates.get(j)) {
                *counts.entry(&c.target).or_default() += 1;
                if c.local {
                    local_left = local_left.saturating_sub(1);
                }
            }
        }
        out
    }

    /// The normalised features and mask of one segment's candidates, as
    /// the actor sees them (`counts`: earlier segments of this request per
    /// target).
    pub fn observe(
        &self,
        cands: &[Candidate],
        counts: &std::collections::HashMap<&str, u32>,
        position: usize,
        n_segments: usize,
        local_left: usize,
    ) -> Observation {
        let assigned: Vec<u32> = cands
            .iter()
            .map(|c| counts.get(c.target.as_str()).copied().unwrap_or(0))
            .collect();
        let step = StepContext {
            position,
            n_segments,
            local_left,
        };
        let mut features = Vec::with_capacity(cands.len() * N_FEATURES);
        let priors = self.priors.read().unwrap_or_else(|e| e.into_inner());
        for mut row in pair_features(cands, &assigned, &step, &priors, &self.info.cost) {
            self.info.norm.apply(&mut row);
            features.extend_from_slice(&row);
        }
        Observation {
            features,
            mask: available(cands, local_left),
        }
    }

    /// Learns from one answered request: segment `k` ran on candidate
    /// `chosen[k]`, the judge scored it `scores[k]` and it earned
    /// `rewards[k]`. Does nothing while frozen; moves the chosen experts'
    /// priors toward their scores; returns the last update's losses once
    /// the buffer holds a batch.
    pub fn learn_from_request(
        &self,
        segments: &[SegmentView],
        chosen: &[usize],
        scores: &[f64],
        rewards: &[f64],
    ) -> Result<Option<SacLosses>, RlError> {
        if self.is_frozen() {
            return Ok(None);
        }
        let n = segments.len();
        if chosen.len() != n || rewards.len() != n || scores.len() != n {
            return Err(RlError::InvalidArgument(format!(
                "{n} segments, {} choices, {} scores, {} rewards",
                chosen.len(),
                scores.len(),
                rewards.len()
            )));
        }
        if let Some(k) = (0..n).find(|&k| chosen[k] >= segments[k].candidates.len()) {
            return Err(RlError::InvalidArgument(format!(
                "segment {k}: candidate {} of {}",
                chosen[k],
                segments[k].candidates.len()
            )));
        }
        let obs = self.observations(segments, chosen);
        let mut inner = self.lock();
        for (k, o) in obs.iter().enumerate() {
            let mut o = o.clone();
            // A fallback may have run a segment where the policy could not
            // have sent it; it still happened, so it is a valid action.
            if let Some(m) = o.mask.get_mut(chosen[k]) {
                *m = true;
            }
            inner.replay.push(Transition {
                obs: o,
                action: chosen[k],
                reward: rewards[k] as f32,
                next: obs.get(k + 1).cloned(),
            });
        }
        {
            let mut priors = self.priors.write().unwrap_or_else(|e| e.into_inner());
            for k in 0..n {
                let c = &segments[k].candidates[chosen[k]];
                priors.observe_score(
                    &c.expert,
                    c.local,
                    c.expected_words,
                    scores[k],
                    ONLINE_PRIOR_WEIGHT,
                );
            }
        }
        let batch_size = self.info.sac.batch_size;
        if inner.replay.len() < batch_size {
            return Ok(None);
        }
        let mut last = None;
        for _ in 0..self.online_updates {
            let Inner { agent, replay } = &mut *inner;
            let batch: Batch = replay.sample(batch_size, agent.device())?;
            last = Some(agent.update(&batch)?);
        }
        Ok(last)
    }

    /// Routes like [`RoutingPolicy::route`], or says why the net failed.
    pub fn try_route(
        &self,
        segments: &[SegmentView],
        ctx: &RouteContext<'_>,
    ) -> Result<Vec<Choice>, RlError> {
        let inner = self.lock();
        let mut counts = std::collections::HashMap::<&str, u32>::new();
        let mut local_left = self.info.local_capacity;
        let mut out = Vec::with_capacity(segments.len());
        for (k, s) in segments.iter().enumerate() {
            let obs = self.observe(&s.candidates, &counts, k, segments.len(), local_left);
            let probs = inner.agent.probabilities(&obs.features, &obs.mask)?;
            let values: Vec<f64> = probs.iter().map(|&p| f64::from(p)).collect();
            let ranking = rank_by(&values);
            let explanation = ranking.first().map_or_else(String::new, |&b| {
                let c = &s.candidates[b];
                let e = estimate(c, &s.candidates, ctx.cost);
                let prior = self
                    .priors
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&c.expert, c.local, c.expected_words);
                format!(
                    "{}; the SAC actor gave it probability {:.2} among {} candidates (expected score {:.1})",
                    explain(POLICY_NAME, c, &e, values[b]),
                    values[b],
                    s.candidates.len(),
                    prior.mean_score
                )
            });
            if let Some(&b) = ranking.first() {
                let c = &s.candidates[b];
                *counts.entry(&c.target).or_default() += 1;
                if c.local {
                    local_left = local_left.saturating_sub(1);
                }
            }
            out.push(Choice {
                ranking,
                values,
                explanation,
            });
        }
        Ok(out)
    }
}

impl RoutingPolicy for SacPolicy {
    fn name(&self) -> &str {
        POLICY_NAME
    }

    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice> {
        self.route_decided(segments, ctx).0
    }

    fn route_decided(
        &self,
        segments: &[SegmentView],
        ctx: &RouteContext<'_>,
    ) -> (Vec<Choice>, String) {
        match self.try_route(segments, ctx) {
            Ok(c) => (c, POLICY_NAME.to_owned()),
            Err(e) => {
                // A broken net must not stop serving: the cost baseline
                // decides, and the answer says so.
                tracing::error!("sac policy failed ({e}); the cost policy routes instead");
                let name = crate::policy::CostAware.name().to_owned();
                let mut choices = crate::policy::CostAware.route(segments, ctx);
                for c in &mut choices {
                    c.explanation = format!("sac failed ({e}); {}", c.explanation);
                }
                (choices, name)
            }
        }
    }
}

/// A fresh agent's policy info with identity normalisation and empty
/// priors (tests and benches).
pub fn untrained_info(sac: SacConfig) -> PolicyInfo {
    PolicyInfo {
        format: POLICY_FORMAT,
        name: POLICY_NAME.into(),
        features: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        norm: FeatureNorm::identity(),
        priors: ExpertPriors { experts: vec![] },
        sac,
        cost: CostModel::default(),
        local_capacity: super::env::DEFAULT_LOCAL_CAPACITY,
        weights: String::new(),
        training: TrainingInfo {
            dataset: String::new(),
            train_fraction: super::dataset::DEFAULT_TRAIN_FRACTION,
            split_seed: super::dataset::DEFAULT_SPLIT_SEED,
            seed: 0,
            episodes: 0,
            updates: 0,
            seconds: 0.0,
            channel: super::env::DEFAULT_CHANNEL.into(),
            edge_nodes: 0,
            converged_at: None,
            kept_episode: 0,
        },
    }
}

#[cfg(test)]
mod tests;
