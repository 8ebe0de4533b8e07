//! Discrete soft actor-critic (Christodoulou 2019, arXiv 1910.07207) over
//! pair-scoring networks: an actor giving one logit per (segment, node)
//! pair, twin critics giving one Q per pair, Polyak-averaged target
//! critics, and an entropy temperature learned toward a target entropy.
//!
//! One [`Sac::update`] on a batch, in order:
//! - critics: `y = r + γ(1−d) Σ_a' π(a'|s')[min Q'(s',a') − α log π(a'|s')]`,
//!   loss `mean((Q1(s,a) − y)²) + mean((Q2(s,a) − y)²)`;
//! - actor (with the updated critics): `mean_s Σ_a π(a|s)[α log π(a|s) − min Q(s,a)]`;
//! - temperature: `−mean(log α · (Σ_a π log π + H̄))` with the target
//!   entropy `H̄ = fraction · log(available actions)` per state;
//! - targets: `θ' ← τθ + (1−τ)θ'`.
//!
//! Unavailable and padding pairs get a logit of −1e9, so their probability
//! is exactly 0 and every sum stays finite.

use candle_core::{D, DType, Device, Tensor, Var};
use candle_nn::{AdamW, Init, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use rand::Rng;
use serde::{Deserialize, Serialize};

use super::RlError;
use super::features::N_FEATURES;
use super::nets::{PairMlp, seeded_init};
use super::replay::Batch;

/// Hidden widths of the actor and critics.
pub const DEFAULT_HIDDEN: [usize; 2] = [64, 64];
/// Discount between a request's segments.
pub const DEFAULT_GAMMA: f64 = 0.5;
/// Polyak rate of the target critics.
pub const DEFAULT_TAU: f64 = 0.02;
/// Actor learning rate (Adam).
pub const DEFAULT_LR_ACTOR: f64 = 1e-3;
/// Critic learning rate (Adam).
pub const DEFAULT_LR_CRITIC: f64 = 3e-3;
/// Temperature learning rate (Adam on log α).
pub const DEFAULT_LR_ALPHA: f64 = 3e-3;
/// Initial entropy temperature α.
pub const DEFAULT_INITIAL_ALPHA: f64 = 0.2;
/// Target entropy as a fraction of log(available actions).
pub const DEFAULT_TARGET_ENTROPY_FRACTION: f64 = 0.2;
/// Transitions per update.
pub const DEFAULT_BATCH_SIZE: usize = 64;
/// Replay buffer capacity.
pub const DEFAULT_BUFFER_CAPACITY: usize = 20_000;

/// Logit given to pairs that may not be chosen.
const MASKED_LOGIT: f64 = 1e9;

/// Hyper-parameters of the agent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SacConfig {
    /// Hidden widths of every net.
    pub hidden: Vec<usize>,
    /// Discount.
    pub gamma: f64,
    /// Polyak rate.
    pub tau: f64,
    /// Actor learning rate.
    pub lr_actor: f64,
    /// Critic learning rate.
    pub lr_critic: f64,
    /// Temperature learning rate.
    pub lr_alpha: f64,
    /// Initial α.
    pub initial_alpha: f64,
    /// Target entropy as a fraction of log(available actions).
    pub target_entropy_fraction: f64,
    /// Transitions per update.
    pub batch_size: usize,
    /// Replay buffer capacity.
    pub buffer_capacity: usize,
    /// The residual actor's gain on the planner feature
    /// ([`RESIDUAL_FEATURE`], standardised): the actor's logits are
    /// `residual_gain · f[RESIDUAL_FEATURE] + net(f)` with the net's output
    /// layer starting at zero, so training starts from a soft version of
    /// the prior planner and learns a correction. 0: a plain actor.
    #[serde(default)]
    pub residual_gain: f64,
}

/// The feature the residual actor starts from: the prior planner's
/// expected reward relative to the segment's best candidate.
pub const RESIDUAL_FEATURE: usize = N_FEATURES - 1;

impl Default for SacConfig {
    fn default() -> Self {
        Self {
            hidden: DEFAULT_HIDDEN.to_vec(),
            gamma: DEFAULT_GAMMA,
            tau: DEFAULT_TAU,
            lr_actor: DEFAULT_LR_ACTOR,
            lr_critic: DEFAULT_LR_CRITIC,
            lr_alpha: DEFAULT_LR_ALPHA,
            initial_alpha: DEFAULT_INITIAL_ALPHA,
            target_entropy_fraction: DEFAULT_TARGET_ENTROPY_FRACTION,
            batch_size: DEFAULT_BATCH_SIZE,
            buffer_capacity: DEFAULT_BUFFER_CAPACITY,
            residual_gain: 0.0,
        }
    }
}

/// The losses and temperature of one update (before its steps).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SacLosses {
    /// Sum of both critics' mean squared TD errors.
    pub critic: f32,
    /// Actor loss.
    pub actor: f32,
    /// Temperature loss.
    pub alpha_loss: f32,
    /// α used in this update.
    pub alpha: f32,
    /// Mean policy entropy over the batch.
    pub entropy: f32,
}

/// Every weight of an agent by name, as [`Sac::snapshot`] copies them.
pub type Snapshot = Vec<(String, Tensor)>;

/// Names of the nets inside the variable map (and the safetensors file).
pub const NETS: [&str; 5] = ["actor", "critic1", "critic2", "target1", "target2"];

/// The agent: actor, twin critics, targets, temperature and optimizers.
pub struct Sac {
    config: SacConfig,
    vars: VarMap,
    actor: PairMlp,
    critic1: PairMlp,
    critic2: PairMlp,
    target1: PairMlp,
    target2: PairMlp,
    log_alpha: Var,
    opt_actor: AdamW,
    opt_critic: AdamW,
    opt_alpha: AdamW,
    device: Device,
    updates: u64,
}

impl std::fmt::Debug for Sac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sac")
            .field("config", &self.config)
            .field("updates", &self.updates)
            .finish_non_exhaustive()
    }
}

/// Variables of `vars` whose names start with `prefix.`.
fn vars_of(vars: &VarMap, prefix: &str) -> Vec<Var> {
    let data = vars.data().lock().expect("var map lock");
    let mut named: Vec<(&String, &Var)> = data
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{prefix}.")) || *k == prefix)
        .collect();
    named.sort_by(|a, b| a.0.cmp(b.0));
    named.into_iter().map(|(_, v)| v.clone()).collect()
}

/// Adam (AdamW without weight decay), as in the SAC papers.
fn adam(vars: Vec<Var>, lr: f64) -> candle_core::Result<AdamW> {
    AdamW::new(
        vars,
        ParamsAdamW {
            lr,
            weight_decay: 0.0,
            ..ParamsAdamW::default()
        },
    )
}

/// `logits` with `−1e9` added where `mask` (1/0) is 0.
fn masked(logits: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    logits + ((mask - 1.0)? * MASKED_LOGIT)?
}

impl Sac {
    /// A fresh agent with seeded weights; targets start equal to the critics.
    pub fn new(config: SacConfig, seed: u64) -> Result<Self, RlError> {
        let agent = Self::build(config, &super::device())?;
        for (i, net) in ["actor", "critic1", "critic2"].iter().enumerate() {
            seeded_init(&agent.vars, net, seed.wrapping_add(i as u64))?;
        }
        agent.copy_net("critic1", "target1")?;
        agent.copy_net("critic2", "target2")?;
        if agent.config.residual_gain != 0.0 {
            // The correction starts at zero: the first policy is the planner's.
            for v in vars_of(&agent.vars, "actor.out") {
                v.set(&v.as_tensor().zeros_like()?)?;
            }
        }
        Ok(agent)
    }

    /// The actor's logits `[B, P]`: the net's, plus the planner's term for
    /// a residual actor.
    fn actor_logits(&self, obs: &Tensor) -> candle_core::Result<Tensor> {
        let net = self.actor.forward(obs)?;
        if self.config.residual_gain == 0.0 {
            return Ok(net);
        }
        let planner = obs.narrow(2, RESIDUAL_FEATURE, 1)?.squeeze(2)?;
        net + (planner * self.config.residual_gain)?
    }

    /// The nets with candle's default initialisation (overwritten by
    /// [`Sac::new`] or a loaded file) and fresh optimizers.
    pub fn build(config: SacConfig, device: &Device) -> Result<Self, RlError> {
        if config.hidden.is_empty() || config.hidden.contains(&0) {
            return Err(RlError::InvalidArgument(format!(
                "hidden widths {:?} must be non-empty and positive",
                config.hidden
            )));
        }
        let vars = VarMap::new();
        let vb = VarBuilder::from_varmap(&vars, DType::F32, device);
        let net = |name: &str| PairMlp::new(vb.pp(name), N_FEATURES, &config.hidden);
        let (actor, critic1, critic2, target1, target2) = (
            net("actor")?,
            net("critic1")?,
            net("critic2")?,
            net("target1")?,
            net("target2")?,
        );
        vb.get_with_hints(1, "log_alpha", Init::Const(config.initial_alpha.ln()))?;
        let log_alpha = vars_of(&vars, "log_alpha")
            .pop()
            .expect("log_alpha was just created");
        let opt_actor = adam(vars_of(&vars, "actor"), config.lr_actor)?;
        let mut critics = vars_of(&vars, "critic1");
        critics.extend(vars_of(&vars, "critic2"));
        let opt_critic = adam(critics, config.lr_critic)?;
        let opt_alpha = adam(vec![log_alpha.clone()], config.lr_alpha)?;
        Ok(Self {
            config,
            vars,
            actor,
            critic1,
            critic2,
            target1,
            target2,
            log_alpha,
            opt_actor,
            opt_critic,
            opt_alpha,
            device: device.clone(),
            updates: 0,
        })
    }

    /// Hyper-parameters.
    pub fn config(&self) -> &SacConfig {
        &self.config
    }

    /// Every variable, by name (`actor.l0.weight`, ..., `log_alpha`).
    pub fn vars(&self) -> &VarMap {
        &self.vars
    }

    /// Updates done.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// Current α.
    pub fn alpha(&self) -> Result<f32, RlError> {
        Ok(self.log_alpha.as_tensor().exp()?.to_vec1::<f32>()?[0])
    }

    /// The device the nets live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn copy_net(&self, from: &str, to: &str) -> Result<(), RlError> {
        for (src, dst) in vars_of(&self.vars, from)
            .iter()
            .zip(vars_of(&self.vars, to))
        {
            dst.set(src.as_tensor())?;
        }
        Ok(())
    }

    /// A copy of every weight and α (optimizer state excluded).
    pub fn snapshot(&self) -> Result<Snapshot, RlError> {
        let data = self.vars.data().lock().expect("var map lock");
        let mut out = Vec::with_capacity(data.len());
        for (name, var) in data.iter() {
            out.push((name.clone(), var.as_tensor().copy()?));
        }
        Ok(out)
    }

    /// Puts back weights taken by [`Sac::snapshot`].
    pub fn restore(&self, snapshot: &[(String, Tensor)]) -> Result<(), RlError> {
        let data = self.vars.data().lock().expect("var map lock");
        for (name, t) in snapshot {
            if let Some(var) = data.get(name) {
                var.set(t)?;
            }
        }
        Ok(())
    }

    /// Saves every net and α as safetensors.
    pub fn save(&self, path: &std::path::Path) -> Result<(), RlError> {
        Ok(self.vars.save(path)?)
    }

    /// Loads weights saved by [`Sac::save`] into this agent.
    pub fn load_weights(&mut self, path: &std::path::Path) -> Result<(), RlError> {
        Ok(self.vars.load(path)?)
    }

    /// `[B, P, F]` features and `[B, P]` mask → actor log-probabilities `[B, P]`.
    pub fn log_probs(&self, obs: &Tensor, mask: &Tensor) -> Result<Tensor, RlError> {
        let logits = masked(&self.actor_logits(obs)?, mask)?;
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
    }

    /// Probabilities of one observation's pairs (`features` row-major
    /// `[P, F]`); unavailable pairs get exactly 0.
    pub fn probabilities(&self, features: &[f32], mask: &[bool]) -> Result<Vec<f32>, RlError> {
        let p = mask.len();
        let obs = Tensor::from_slice(features, (1, p, N_FEATURES), &self.device)?;
        let m: Vec<f32> = mask.iter().map(|&m| f32::from(u8::from(m))).collect();
        let m = Tensor::from_vec(m, (1, p), &self.device)?;
        Ok(self
            .log_probs(&obs, &m)?
            .exp()?
            .squeeze(0)?
            .to_vec1::<f32>()?)
    }

    /// The smaller of the twin critics' Q for each pair of one observation
    /// (`features` row-major `[P, F]`).
    pub fn q_values(&self, features: &[f32], n_pairs: usize) -> Result<Vec<f32>, RlError> {
        let obs = Tensor::from_slice(features, (1, n_pairs, N_FEATURES), &self.device)?;
        let q = self
            .critic1
            .forward(&obs)?
            .minimum(&self.critic2.forward(&obs)?)?;
        Ok(q.squeeze(0)?.to_vec1::<f32>()?)
    }

    /// Picks a pair: the most probable when `greedy`, else a draw from π.
    pub fn act(
        &self,
        features: &[f32],
        mask: &[bool],
        greedy: bool,
        rng: &mut impl Rng,
    ) -> Result<usize, RlError> {
        let probs = self.probabilities(features, mask)?;
        if greedy {
            return Ok(argmax(&probs, mask));
        }
        let u: f32 = rng.random();
        let mut acc = 0.0;
        for (j, &p) in probs.iter().enumerate() {
            acc += p;
            if u < acc && mask[j] {
                return Ok(j);
            }
        }
        Ok(argmax(&probs, mask))
    }

    /// One update of critics, actor, temperature and targets on `batch`.
    pub fn update(&mut self, batch: &Batch) -> Result<SacLosses, RlError> {
        let cfg = &self.config;
        let alpha = self.log_alpha.as_tensor().exp()?.detach();

        // Critics toward the soft target of the next state.
        let next_logp = self.log_probs(&batch.next_obs, &batch.next_mask)?.detach();
        let next_p = next_logp.exp()?;
        let next_q = self
            .target1
            .forward(&batch.next_obs)?
            .minimum(&self.target2.forward(&batch.next_obs)?)?;
        let soft = (next_q - next_logp.broadcast_mul(&alpha)?)?;
        let next_v = (next_p * soft)?.sum(D::Minus1)?;
        let not_done = (1.0 - &batch.done)?;
        let y = (&batch.reward + (not_done * next_v)?.affine(cfg.gamma, 0.0)?)?.detach();
        let q1 = self
            .critic1
            .forward(&batch.obs)?
            .gather(&batch.action, 1)?
            .squeeze(1)?;
        let q2 = self
            .critic2
            .forward(&batch.obs)?
            .gather(&batch.action, 1)?
            .squeeze(1)?;
        let critic_loss = ((q1 - &y)?.sqr()?.mean_all()? + (q2 - &y)?.sqr()?.mean_all()?)?;
        self.opt_critic.backward_step(&critic_loss)?;

        // Actor against the updated critics.
        let logp = self.log_probs(&batch.obs, &batch.mask)?;
        let p = logp.exp()?;
        let q = self
            .critic1
            .forward(&batch.obs)?
            .minimum(&self.critic2.forward(&batch.obs)?)?
            .detach();
        let inner = (logp.broadcast_mul(&alpha)? - q)?;
        let actor_loss = (&p * inner)?.sum(D::Minus1)?.mean_all()?;
        self.opt_actor.backward_step(&actor_loss)?;

        // Temperature toward the target entropy.
        let p_logp = (p * logp)?.sum(D::Minus1)?.detach();
        let target = (batch.n_valid.log()? * cfg.target_entropy_fraction)?;
        let gap = (&p_logp + target)?;
        let alpha_loss = self
            .log_alpha
            .as_tensor()
            .broadcast_mul(&gap)?
            .mean_all()?
            .neg()?;
        self.opt_alpha.backward_step(&alpha_loss)?;

        self.soft_update()?;
        self.updates += 1;
        Ok(SacLosses {
            critic: critic_loss.to_scalar::<f32>()?,
            actor: actor_loss.to_scalar::<f32>()?,
            alpha_loss: alpha_loss.to_scalar::<f32>()?,
            alpha: alpha.to_vec1::<f32>()?[0],
            entropy: -p_logp.mean_all()?.to_scalar::<f32>()?,
        })
    }

    /// `θ' ← τθ + (1−τ)θ'` for both target critics.
    fn soft_update(&self) -> Result<(), RlError> {
        let tau = self.config.tau;
        for (online, target) in [("critic1", "target1"), ("critic2", "target2")] {
            for (o, t) in vars_of(&self.vars, online)
                .iter()
                .zip(vars_of(&self.vars, target))
            {
                let next = ((o.as_tensor() * tau)? + (t.as_tensor() * (1.0 - tau))?)?;
                t.set(&next)?;
            }
        }
        Ok(())
    }
}

/// Index of the largest probability among available pairs (first on ties).
pub fn argmax(probs: &[f32], mask: &[bool]) -> usize {
    let mut best = usize::MAX;
    for (j, &p) in probs.iter().enumerate() {
        if mask.get(j).copied().unwrap_or(true) && (best == usize::MAX || p > probs[best]) {
            best = j;
        }
    }
    if best == usize::MAX { 0 } else { best }
}

#[cfg(test)]
mod tests;
