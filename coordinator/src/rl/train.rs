//! `coordinator train`: discrete SAC on the training prompts with fresh SNR
//! draws every episode. After every episode the greedy policy is scored on
//! a fixed panel of training episodes (same prompts and SNRs each time),
//! next to the baselines and the bound on that panel: the paper's Fig. 2,
//! without the noise of comparing different draws. Saves the policy, a CSV
//! of the curve, the figure, and (by default) evaluates on held-out prompts.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use netmoe_common::cost::CostModel;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::RlError;
use super::dataset::{DEFAULT_DATASET, DEFAULT_SPLIT_SEED, DEFAULT_TRAIN_FRACTION, Dataset};
use super::env::{DEFAULT_CHANNEL, DEFAULT_LOCAL_CAPACITY, Env, EnvConfig, Episode, NodeLayout};
use super::eval::{self, DEFAULT_EVAL_EPISODES, DEFAULT_EVAL_SEED, EvalTable};
use super::features::{
    ExpertPriors, FEATURE_NAMES, FeatureNorm, N_FEATURES, StepContext, pair_features,
};
use super::methods::{
    BOUND, CROSS_FITTED_BOUND, EXPECTED_BOUND, LOCAL_ALL, MEAN_SCORE_BOUND, baselines, local_all,
    policy_episode,
};
use super::policy::{POLICY_FORMAT, POLICY_NAME, PolicyInfo, SacPolicy, TrainingInfo};
use super::replay::{ReplayBuffer, Transition};
use super::sac::{
    DEFAULT_BATCH_SIZE, DEFAULT_BUFFER_CAPACITY, DEFAULT_GAMMA, DEFAULT_HIDDEN,
    DEFAULT_INITIAL_ALPHA, DEFAULT_LR_ACTOR, DEFAULT_LR_ALPHA, DEFAULT_LR_CRITIC,
    DEFAULT_TARGET_ENTROPY_FRACTION, DEFAULT_TAU, RESIDUAL_FEATURE, Sac, SacConfig, SacLosses,
    Snapshot,
};
use super::stats::{mean, moving_average, summarize};

/// Training episodes.
pub const DEFAULT_EPISODES: usize = 200;
/// Seed of the agent, the episodes and the exploration.
pub const DEFAULT_SEED: u64 = 7;
/// Where the policy, CSVs and figures go (relative to the repository root).
pub const DEFAULT_OUT_DIR: &str = "coordinator/data/rl";
/// File stem of the saved policy inside the output directory.
pub const DEFAULT_POLICY_STEM: &str = "sac_policy";
/// The policy `train` saves by default, which `eval`, `simulate` and
/// `serve --policy` read.
pub const DEFAULT_POLICY: &str = "coordinator/data/rl/sac_policy.json";
/// SAC updates per environment step (once the buffer holds a batch).
pub const DEFAULT_UPDATES_PER_STEP: usize = 4;
/// Episodes of uniformly random actions before the actor acts.
pub const DEFAULT_WARMUP_EPISODES: usize = 10;
/// Fixed training episodes the greedy policy is scored on after each
/// episode; the weights that scored best on them are the ones saved.
pub const DEFAULT_PANEL_EPISODES: usize = 100;
/// Share of the training prompts kept aside to score the policy during
/// training (the curve, and which weights are saved) and never learned
/// from. 0 by default: on the collected dataset (62 prompts) setting a fifth
/// aside cost more in learning data than it gained in selection (held-out
/// reward over seeds 7-10 was lower or equal).
pub const DEFAULT_VALIDATION_FRACTION: f64 = 0.0;
/// Temperature (reward points) of the residual actor's starting planner.
pub const DEFAULT_RESIDUAL_TEMPERATURE: f64 = 0.5;
/// Random-policy episodes the feature normalisation is fitted on.
pub const DEFAULT_NORM_EPISODES: usize = 300;
/// The curve has converged at the first episode after which it stays
/// within this share of its final level.
pub const CONVERGENCE_TOLERANCE: f64 = 0.01;

/// Flags of `coordinator train`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct TrainArgs {
    /// Routing dataset (JSONL from `coordinator collect`); it must exist.
    #[arg(long, default_value = DEFAULT_DATASET)]
    pub dataset: PathBuf,
    /// Train on the seeded synthetic dataset instead of --dataset.
    #[arg(long)]
    pub synthetic: bool,
    /// Directory for the policy (sac_policy.json + .safetensors), CSVs and PNG figures.
    #[arg(long, default_value = DEFAULT_OUT_DIR)]
    pub out_dir: PathBuf,
    /// Training episodes (one prompt and fresh SNRs each).
    #[arg(long, default_value_t = DEFAULT_EPISODES)]
    pub episodes: usize,
    /// Seed of the agent, the episodes and the exploration.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
    /// Channels: random-rayleigh:LO:HI (a new mean per node and episode), per-node:LO:HI, or models:SPEC,SPEC,...
    #[arg(long, default_value = DEFAULT_CHANNEL)]
    pub channel: String,
    /// Segments per episode the local device may take (0: no local option).
    #[arg(long, default_value_t = DEFAULT_LOCAL_CAPACITY)]
    pub local_capacity: usize,
    /// Share of prompts to train on; the rest are held out.
    #[arg(long, default_value_t = DEFAULT_TRAIN_FRACTION)]
    pub train_fraction: f64,
    /// Seed of the train/held-out split.
    #[arg(long, default_value_t = DEFAULT_SPLIT_SEED)]
    pub split_seed: u64,
    /// SAC updates per environment step.
    #[arg(long, default_value_t = DEFAULT_UPDATES_PER_STEP)]
    pub updates_per_step: usize,
    /// Episodes of uniformly random actions first.
    #[arg(long, default_value_t = DEFAULT_WARMUP_EPISODES)]
    pub warmup_episodes: usize,
    /// Fixed validation episodes the greedy policy is scored on after each episode (the curve); the best-scoring weights are saved if they beat the residual start beyond the paired 95% CI.
    #[arg(long, default_value_t = DEFAULT_PANEL_EPISODES)]
    pub panel_episodes: usize,
    /// Share of the training prompts set aside for those validation episodes (0: score on the training prompts themselves).
    #[arg(long, default_value_t = DEFAULT_VALIDATION_FRACTION)]
    pub validation_fraction: f64,
    /// Transitions per SAC update.
    #[arg(long, default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
    /// Replay buffer capacity.
    #[arg(long, default_value_t = DEFAULT_BUFFER_CAPACITY)]
    pub buffer_capacity: usize,
    /// Hidden widths of actor and critics, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_HIDDEN)]
    pub hidden: Vec<usize>,
    /// Discount between a request's segments.
    #[arg(long, default_value_t = DEFAULT_GAMMA)]
    pub gamma: f64,
    /// Polyak rate of the target critics.
    #[arg(long, default_value_t = DEFAULT_TAU)]
    pub tau: f64,
    /// Actor learning rate.
    #[arg(long, default_value_t = DEFAULT_LR_ACTOR)]
    pub lr_actor: f64,
    /// Critic learning rate.
    #[arg(long, default_value_t = DEFAULT_LR_CRITIC)]
    pub lr_critic: f64,
    /// Entropy temperature learning rate.
    #[arg(long, default_value_t = DEFAULT_LR_ALPHA)]
    pub lr_alpha: f64,
    /// Initial entropy temperature.
    #[arg(long, default_value_t = DEFAULT_INITIAL_ALPHA)]
    pub initial_alpha: f64,
    /// Target entropy as a fraction of log(available actions).
    #[arg(long, default_value_t = DEFAULT_TARGET_ENTROPY_FRACTION)]
    pub target_entropy_fraction: f64,
    /// Residual actor: the actor starts as the prior planner softened at
    /// this temperature (reward points) and learns a correction; 0 trains a
    /// plain actor from scratch.
    #[arg(long, default_value_t = DEFAULT_RESIDUAL_TEMPERATURE)]
    pub residual_temperature: f64,
    /// Held-out evaluation episodes after training (0: skip; `coordinator eval` does more).
    #[arg(long, default_value_t = DEFAULT_EVAL_EPISODES)]
    pub eval_episodes: usize,
    /// No progress bar and no printed summary.
    #[arg(long)]
    pub quiet: bool,
    /// Print the human summary on stdout (off under `--json`, which
    /// prints the report instead; the progress bar stays on stderr).
    #[arg(skip = true)]
    pub print_summary: bool,
}

impl Default for TrainArgs {
    fn default() -> Self {
        Self {
            dataset: DEFAULT_DATASET.into(),
            synthetic: false,
            out_dir: DEFAULT_OUT_DIR.into(),
            episodes: DEFAULT_EPISODES,
            seed: DEFAULT_SEED,
            channel: DEFAULT_CHANNEL.into(),
            local_capacity: DEFAULT_LOCAL_CAPACITY,
            train_fraction: DEFAULT_TRAIN_FRACTION,
            split_seed: DEFAULT_SPLIT_SEED,
            updates_per_step: DEFAULT_UPDATES_PER_STEP,
            warmup_episodes: DEFAULT_WARMUP_EPISODES,
            panel_episodes: DEFAULT_PANEL_EPISODES,
            validation_fraction: DEFAULT_VALIDATION_FRACTION,
            batch_size: DEFAULT_BATCH_SIZE,
            buffer_capacity: DEFAULT_BUFFER_CAPACITY,
            hidden: DEFAULT_HIDDEN.to_vec(),
            gamma: DEFAULT_GAMMA,
            tau: DEFAULT_TAU,
            lr_actor: DEFAULT_LR_ACTOR,
            lr_critic: DEFAULT_LR_CRITIC,
            lr_alpha: DEFAULT_LR_ALPHA,
            initial_alpha: DEFAULT_INITIAL_ALPHA,
            target_entropy_fraction: DEFAULT_TARGET_ENTROPY_FRACTION,
            residual_temperature: DEFAULT_RESIDUAL_TEMPERATURE,
            eval_episodes: DEFAULT_EVAL_EPISODES,
            quiet: false,
            print_summary: true,
        }
    }
}

impl TrainArgs {
    /// The SAC hyper-parameters these flags set.
    pub fn sac_config(&self) -> SacConfig {
        SacConfig {
            hidden: self.hidden.clone(),
            gamma: self.gamma,
            tau: self.tau,
            lr_actor: self.lr_actor,
            lr_critic: self.lr_critic,
            lr_alpha: self.lr_alpha,
            initial_alpha: self.initial_alpha,
            target_entropy_fraction: self.target_entropy_fraction,
            batch_size: self.batch_size,
            buffer_capacity: self.buffer_capacity,
            residual_gain: 0.0,
        }
    }

    /// [`Self::sac_config`] for features standardised by `norm`: the
    /// residual gain turns the standardised planner feature back into
    /// reward points over the residual temperature.
    pub fn sac_config_for(&self, norm: &FeatureNorm) -> SacConfig {
        let residual_gain = if self.residual_temperature > 0.0 {
            f64::from(norm.std[RESIDUAL_FEATURE]) / self.residual_temperature
        } else {
            0.0
        };
        SacConfig {
            residual_gain,
            ..self.sac_config()
        }
    }
}

/// One point of the training curve.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CurvePoint {
    /// 1-based episode.
    pub episode: usize,
    /// Reward the exploring policy earned in this episode.
    pub behaviour_reward: f64,
    /// The bound on this episode.
    pub behaviour_bound: f64,
    /// Mean greedy reward on the panel after this episode.
    pub panel_reward: f64,
    /// `panel_reward` / the bound's panel mean.
    pub panel_ratio: f64,
    /// Last update's losses, if any update ran yet.
    pub losses: Option<SacLosses>,
}

/// What a training run did and wrote.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Where the data came from.
    pub dataset: String,
    /// Prompts learned from / used for validation (the same when no
    /// fraction was set aside) / held out.
    pub prompts: (usize, usize, usize),
    /// The saved policy's JSON.
    pub policy: PathBuf,
    /// Wall seconds of the training loop (without the final evaluation).
    pub train_seconds: f64,
    /// Episodes trained.
    pub episodes: usize,
    /// SAC updates done.
    pub updates: u64,
    /// The curve.
    pub curve: Vec<CurvePoint>,
    /// Mean reward of every other method on the panel.
    pub panel_lines: Vec<(String, f64)>,
    /// First episode after which the panel ratio stays within
    /// [`CONVERGENCE_TOLERANCE`] of its final value.
    pub converged_at: Option<usize>,
    /// The episode whose weights were saved (best on the panel among those
    /// beating the start beyond the paired CI; 0: the residual actor's
    /// untrained start, the prior planner).
    pub kept_episode: usize,
    /// The saved weights' greedy reward on the panel / the panel's
    /// hindsight bound.
    pub kept_panel_ratio: f64,
    /// True when the panel's prompts were set aside from learning.
    pub validation_set_aside: bool,
    /// Files written (CSV, PNG).
    pub files: Vec<PathBuf>,
    /// Held-out evaluation, unless skipped.
    pub eval: Option<EvalTable>,
}

/// Normalisation fitted on random-policy rollouts of `env` (reseeded).
pub fn fit_norm(
    env: &Env,
    priors: &ExpertPriors,
    episodes: usize,
    seed: u64,
) -> Result<FeatureNorm, RlError> {
    let mut env = env.clone();
    env.reseed(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut rows: Vec<[f32; N_FEATURES]> = Vec::new();
    for _ in 0..episodes {
        let ep = env.draw();
        let mut st = env.start(&ep);
        while !env.done(&ep, &st) {
            let cands = env.candidates(&ep, st.position);
            let step = StepContext {
                position: st.position,
                n_segments: env.n_segments(&ep),
                local_left: st.local_left,
            };
            rows.extend(pair_features(
                &cands,
                &st.assigned,
                &step,
                priors,
                &env.config().cost,
            ));
            let mask = env.mask(&ep, &st);
            let a = random_available(&mask, &mut rng);
            env.step(&ep, &mut st, a)?;
        }
    }
    Ok(FeatureNorm::fit(&rows))
}

/// A uniformly random available index.
fn random_available(mask: &[bool], rng: &mut impl Rng) -> usize {
    let avail: Vec<usize> = (0..mask.len()).filter(|&j| mask[j]).collect();
    avail[rng.random_range(0..avail.len())]
}

/// The greedy agent's reward on one episode.
pub fn greedy_episode(
    env: &Env,
    ep: &Episode,
    agent: &Sac,
    priors: &ExpertPriors,
    norm: &FeatureNorm,
) -> Result<f64, RlError> {
    let mut st = env.start(ep);
    let mut rng = StdRng::seed_from_u64(0);
    while !env.done(ep, &st) {
        let obs = env.observe(ep, &st, priors, norm);
        let a = agent.act(&obs.features, &obs.mask, true, &mut rng)?;
        env.step(ep, &mut st, a)?;
    }
    Ok(st.total)
}

/// The greedy agent's reward on each of the fixed `panel` episodes.
fn panel_rewards(
    env: &Env,
    panel: &[Episode],
    agent: &Sac,
    priors: &ExpertPriors,
    norm: &FeatureNorm,
) -> Result<Vec<f64>, RlError> {
    panel
        .iter()
        .map(|p| greedy_episode(env, p, agent, priors, norm))
        .collect()
}

/// Whether `trained` beats `start` on the same panel episodes beyond the
/// paired 95% interval: the bar learned weights must clear to replace the
/// residual actor's start (the prior planner). Clearing only the panel's
/// mean would often ship a correction fitted to sampling noise, which
/// then trails the planner on held-out prompts.
pub fn beats_beyond_ci(trained: &[f64], start: &[f64]) -> bool {
    let diffs: Vec<f64> = trained.iter().zip(start).map(|(t, s)| t - s).collect();
    let d = summarize(&diffs);
    d.n > 1 && d.mean - d.half_width > 0.0
}

/// First 1-based episode after which the curve, smoothed over
/// [`CONVERGENCE_WINDOW`] episodes, stays within `tol` of its final level
/// (the mean of the last fifth of the run, at least the window).
pub fn converged_at(ratios: &[f64], tol: f64) -> Option<usize> {
    if ratios.is_empty() {
        return None;
    }
    let tail = (ratios.len() / 5).max(CONVERGENCE_WINDOW).min(ratios.len());
    let last = ratios[ratios.len() - tail..].iter().sum::<f64>() / tail as f64;
    let smooth = moving_average(ratios, CONVERGENCE_WINDOW);
    let mut at = None;
    for (i, &r) in smooth.iter().enumerate().rev() {
        if r < last - tol {
            break;
        }
        at = Some(i + 1);
    }
    at
}

/// Episodes the curve is smoothed over to judge convergence.
pub const CONVERGENCE_WINDOW: usize = 10;

/// Splits training prompts into (learn, validation); without a usable
/// fraction, both are all of them.
fn validation_split(train: &[usize], fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let k = (train.len() as f64 * fraction).round() as usize;
    if fraction <= 0.0 || k == 0 || k >= train.len() {
        return (train.to_vec(), train.to_vec());
    }
    let mut idx = train.to_vec();
    idx.shuffle(&mut StdRng::seed_from_u64(seed ^ PANEL_SALT));
    let (mut val, mut learn) = (idx[..k].to_vec(), idx[k..].to_vec());
    val.sort_unstable();
    learn.sort_unstable();
    (learn, val)
}

/// Salts that keep the episode, panel, normalisation and exploration streams apart.
const PANEL_SALT: u64 = 0x9e37_79b9_7f4a_7c15;
const NORM_SALT: u64 = 0xc2b2_ae3d_27d4_eb4f;
const ACT_SALT: u64 = 0x1656_67b1_9e37_79f9;

/// Trains a policy; see the module docs.
pub fn run_train(args: TrainArgs) -> Result<TrainReport, RlError> {
    if args.episodes == 0 || args.batch_size == 0 {
        return Err(RlError::InvalidArgument(
            "episodes and batch size must be at least 1".into(),
        ));
    }
    let data = Arc::new(Dataset::for_training(
        &args.dataset,
        args.synthetic,
        args.seed,
    )?);
    let split = data.split(args.train_fraction, args.split_seed);
    let (learn, validation) = validation_split(&split.train, args.validation_fraction, args.seed);
    let priors = ExpertPriors::from_dataset(&data, &learn);
    let env_cfg = EnvConfig {
        local_capacity: args.local_capacity,
        channel: args.channel.parse()?,
        cost: CostModel::default(),
        nodes: NodeLayout::Dataset,
    };
    let mut env = Env::new(data.clone(), learn.clone(), env_cfg.clone(), args.seed)?;
    let t0 = Instant::now();
    let norm = fit_norm(&env, &priors, DEFAULT_NORM_EPISODES, args.seed ^ NORM_SALT)?;

    let mut panel_env = env.clone();
    panel_env.set_prompts(validation.clone())?;
    panel_env.reseed(args.seed ^ PANEL_SALT);
    let panel: Vec<Episode> = (0..args.panel_episodes.max(1))
        .map(|_| panel_env.draw())
        .collect();
    let mut panel_lines = Vec::new();
    let bound_mean = mean(panel.iter().map(|ep| env.upper_bound(ep).0));
    panel_lines.push((BOUND.to_owned(), bound_mean));
    panel_lines.push((
        MEAN_SCORE_BOUND.to_owned(),
        mean(panel.iter().map(|ep| env.mean_score_bound(ep, &priors))),
    ));
    panel_lines.push((
        EXPECTED_BOUND.to_owned(),
        mean(panel.iter().map(|ep| env.expected_bound(ep))),
    ));
    if data.max_samples() > 1 {
        panel_lines.push((
            CROSS_FITTED_BOUND.to_owned(),
            mean(panel.iter().filter_map(|ep| env.cross_fitted_bound(ep))),
        ));
    }
    for (name, p) in baselines() {
        let mut total = 0.0;
        for ep in &panel {
            total += policy_episode(&env, ep, p.as_ref())?.total;
        }
        panel_lines.push((name, total / panel.len() as f64));
    }
    if env.nodes().iter().any(|n| n.local) {
        panel_lines.push((
            LOCAL_ALL.to_owned(),
            mean(panel.iter().filter_map(|ep| local_all(&env, ep))),
        ));
    }

    let sac = args.sac_config_for(&norm);
    let mut agent = Sac::new(sac.clone(), args.seed)?;
    let mut replay = ReplayBuffer::new(sac.buffer_capacity, args.seed);
    let mut rng = StdRng::seed_from_u64(args.seed ^ ACT_SALT);
    let bar = progress(args.episodes as u64, args.quiet);
    let mut curve = Vec::with_capacity(args.episodes);
    let mut last_losses = None;
    // Model selection: keep the weights the panel liked best, among the
    // second half of training (early lucky draws of a barely trained actor
    // are not what we want to ship).
    let select_from = (args.episodes / 2).max(args.warmup_episodes + 1);
    let mut best: Option<(f64, usize, Snapshot)> = None;
    // A residual actor starts as the prior planner (its correction is
    // zero), so its untrained weights are a candidate too ("episode 0"):
    // training replaces them only with weights that beat them on the panel
    // beyond the paired 95% interval ([`beats_beyond_ci`]). Where the
    // judged scores carry nothing the features predict beyond the priors,
    // the start is what it ships, and the report says so.
    let start = if sac.residual_gain > 0.0 {
        let rewards = panel_rewards(&env, &panel, &agent, &priors, &norm)?;
        best = Some((mean(rewards.iter().copied()), 0, agent.snapshot()?));
        Some(rewards)
    } else {
        None
    };
    for e in 0..args.episodes {
        let ep = env.draw();
        let mut st = env.start(&ep);
        let mut obs = env.observe(&ep, &st, &priors, &norm);
        while !env.done(&ep, &st) {
            let a = if e < args.warmup_episodes {
                random_available(&obs.mask, &mut rng)
            } else {
                agent.act(&obs.features, &obs.mask, false, &mut rng)?
            };
            let r = env.step(&ep, &mut st, a)?;
            let next = (!env.done(&ep, &st)).then(|| env.observe(&ep, &st, &priors, &norm));
            replay.push(Transition {
                obs,
                action: a,
                reward: r as f32,
                next: next.clone(),
            });
            if replay.len() >= sac.batch_size {
                for _ in 0..args.updates_per_step {
                    let batch = replay.sample(sac.batch_size, agent.device())?;
                    last_losses = Some(agent.update(&batch)?);
                }
            }
            match next {
                Some(n) => obs = n,
                None => break,
            }
        }
        let rewards = panel_rewards(&env, &panel, &agent, &priors, &norm)?;
        let panel_reward = mean(rewards.iter().copied());
        if e + 1 >= select_from
            && best.as_ref().is_none_or(|b| panel_reward > b.0)
            && start.as_ref().is_none_or(|s| beats_beyond_ci(&rewards, s))
        {
            best = Some((panel_reward, e + 1, agent.snapshot()?));
        }
        let point = CurvePoint {
            episode: e + 1,
            behaviour_reward: st.total,
            behaviour_bound: env.upper_bound(&ep).0,
            panel_reward,
            panel_ratio: panel_reward / bound_mean,
            losses: last_losses,
        };
        bar.set_message(format!(
            "greedy {:.1}% of bound, alpha {:.3}",
            100.0 * point.panel_ratio,
            last_losses.map_or(sac.initial_alpha as f32, |l| l.alpha)
        ));
        bar.inc(1);
        curve.push(point);
    }
    bar.finish_and_clear();
    let (kept, kept_panel_reward) = match &best {
        Some((reward, episode, weights)) => {
            agent.restore(weights)?;
            (*episode, *reward)
        }
        None => (
            args.episodes,
            curve.last().map_or(f64::NAN, |c| c.panel_reward),
        ),
    };
    let train_seconds = t0.elapsed().as_secs_f64();
    let ratios: Vec<f64> = curve.iter().map(|c| c.panel_ratio).collect();
    let converged = converged_at(&ratios, CONVERGENCE_TOLERANCE);

    let info = PolicyInfo {
        format: POLICY_FORMAT,
        name: POLICY_NAME.into(),
        features: FEATURE_NAMES.iter().map(|s| (*s).to_owned()).collect(),
        norm,
        priors,
        sac,
        cost: env_cfg.cost,
        local_capacity: args.local_capacity,
        weights: String::new(),
        training: TrainingInfo {
            dataset: data.source.clone(),
            train_fraction: args.train_fraction,
            split_seed: args.split_seed,
            seed: args.seed,
            episodes: args.episodes,
            updates: agent.updates(),
            seconds: train_seconds,
            channel: args.channel.clone(),
            edge_nodes: env.nodes().iter().filter(|n| !n.local).count(),
            converged_at: converged,
            kept_episode: kept,
        },
    };
    let updates = agent.updates();
    let policy = SacPolicy::new(agent, info);
    let policy_path = policy.save(&args.out_dir.join(DEFAULT_POLICY_STEM))?;
    let mut files = vec![write_curve_csv(&args.out_dir, &curve, &panel_lines)?];
    let fig2 = args.out_dir.join("fig2_reward_vs_episode.png");
    super::plot::reward_vs_episode(
        &fig2,
        &format!(
            "SAC training: greedy reward on {} fixed {} episodes ({})",
            panel.len(),
            if learn != validation {
                "validation"
            } else {
                "training"
            },
            data.source
        ),
        &curve.iter().map(|c| c.panel_reward).collect::<Vec<_>>(),
        // The exploring policy's own episodes differ from the panel's, so
        // its reward (in the CSV) is not drawn against these lines.
        &[],
        &panel_lines,
    )?;
    files.push(fig2);

    let eval = if args.eval_episodes > 0 {
        let table = eval::evaluate(
            &policy,
            &data,
            &split.held_out,
            env_cfg,
            args.eval_episodes,
            DEFAULT_EVAL_SEED,
            None,
        )?;
        files.extend(eval::write_table(
            &table,
            eval::Output {
                dir: &args.out_dir,
                suffix: "",
                fresh_csv: true,
            },
        )?);
        Some(table)
    } else {
        None
    };
    let report = TrainReport {
        dataset: data.source.clone(),
        prompts: (learn.len(), validation.len(), split.held_out.len()),
        policy: policy_path,
        train_seconds,
        episodes: args.episodes,
        updates,
        curve,
        panel_lines,
        converged_at: converged,
        kept_episode: kept,
        kept_panel_ratio: kept_panel_reward / bound_mean,
        validation_set_aside: learn != validation,
        files,
        eval,
    };
    if !args.quiet && args.print_summary {
        print!("{}", report.summary());
    }
    Ok(report)
}

fn progress(len: u64, quiet: bool) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} training [{bar:30}] {pos}/{len} episodes {elapsed} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

fn write_curve_csv(
    dir: &Path,
    curve: &[CurvePoint],
    lines: &[(String, f64)],
) -> Result<PathBuf, RlError> {
    std::fs::create_dir_all(dir).map_err(|e| RlError::io(dir, e))?;
    let path = dir.join("train_curve.csv");
    let mut s = String::from(
        "episode,behaviour_reward,behaviour_bound,greedy_panel_reward,panel_ratio_to_bound,alpha,entropy,critic_loss,actor_loss",
    );
    for (name, _) in lines {
        let column: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        s.push_str(&format!(",panel_{}", column.trim_end_matches('_')));
    }
    s.push('\n');
    for c in curve {
        let l = c.losses;
        s.push_str(&format!(
            "{},{:.4},{:.4},{:.4},{:.5},{},{},{},{}",
            c.episode,
            c.behaviour_reward,
            c.behaviour_bound,
            c.panel_reward,
            c.panel_ratio,
            l.map_or(String::new(), |l| format!("{:.5}", l.alpha)),
            l.map_or(String::new(), |l| format!("{:.4}", l.entropy)),
            l.map_or(String::new(), |l| format!("{:.4}", l.critic)),
            l.map_or(String::new(), |l| format!("{:.4}", l.actor)),
        ));
        for (_, v) in lines {
            s.push_str(&format!(",{v:.4}"));
        }
        s.push('\n');
    }
    std::fs::write(&path, s).map_err(|e| RlError::io(&path, e))?;
    Ok(path)
}

impl TrainReport {
    /// `validation` when the panel's prompts were set aside, else `training`.
    pub fn panel_kind(&self) -> &'static str {
        if self.validation_set_aside {
            "validation"
        } else {
            "training"
        }
    }

    /// A human summary: time, convergence, the panel lines, the held-out table.
    pub fn summary(&self) -> String {
        let prompts = if self.validation_set_aside {
            format!(
                "{} learning / {} validation / {} held-out prompts",
                self.prompts.0, self.prompts.1, self.prompts.2
            )
        } else {
            format!(
                "{} training / {} held-out prompts",
                self.prompts.0, self.prompts.2
            )
        };
        let mut s = format!(
            "trained on {} ({prompts}): {} episodes, {} updates in {:.1} s\n",
            self.dataset, self.episodes, self.updates, self.train_seconds
        );
        if let Some(last) = self.curve.last() {
            s.push_str(&format!(
                "greedy policy on the {} panel: {:.3} ({:.2}% of the bound) at the end; converged at episode {}; saved the weights of episode {} ({:.2}%)\n",
                self.panel_kind(),
                last.panel_reward,
                100.0 * last.panel_ratio,
                self.converged_at.map_or("-".to_owned(), |e| e.to_string()),
                self.kept_episode,
                100.0 * self.kept_panel_ratio,
            ));
        }
        for (name, v) in &self.panel_lines {
            s.push_str(&format!("  panel {name:<12} {v:.3}\n"));
        }
        s.push_str(&format!("policy: {}\n", self.policy.display()));
        if let Some(t) = &self.eval {
            s.push_str(&t.render());
        }
        for f in &self.files {
            s.push_str(&format!("wrote {}\n", f.display()));
        }
        s
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: TrainArgs,
    }

    #[test]
    fn clap_defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["train"]).unwrap();
        assert_eq!(cli.args, TrainArgs::default());
        let cli = Cli::try_parse_from(["train", "--hidden", "32,16", "--episodes", "5"]).unwrap();
        assert_eq!(cli.args.hidden, [32, 16]);
    }

    #[test]
    fn convergence_is_the_start_of_the_final_plateau() {
        let mut r = vec![0.5; 10];
        r.extend([0.99; 30]);
        r[20] = 0.8;
        // Smoothed over 10, the dip at episode 21 keeps episodes up to 30 low.
        assert_eq!(converged_at(&r, 0.01), Some(31));
        assert_eq!(converged_at(&[0.99; 5], 0.01), Some(1));
        assert_eq!(converged_at(&[], 0.01), None);
    }

    /// A run of `episodes` small enough for a unit test, on the synthetic
    /// set, writing into `dir`.
    pub(crate) fn tiny_run(dir: &std::path::Path, episodes: usize) -> TrainArgs {
        TrainArgs {
            dataset: dir.join("missing.jsonl"),
            synthetic: true,
            out_dir: dir.to_owned(),
            episodes,
            warmup_episodes: 2,
            panel_episodes: 5,
            batch_size: 8,
            hidden: vec![16],
            eval_episodes: 20,
            quiet: true,
            ..TrainArgs::default()
        }
    }

    #[test]
    fn a_missing_dataset_is_refused_unless_synthetic_is_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let args = TrainArgs {
            synthetic: false,
            ..tiny_run(dir.path(), 2)
        };
        let err = run_train(args).unwrap_err().to_string();
        assert!(
            err.contains("--synthetic") && err.contains("missing.jsonl"),
            "{err}"
        );
        assert!(!dir.path().join("sac_policy.json").exists());
    }

    #[test]
    fn short_training_run_writes_policy_curve_and_figures() {
        let dir = tempfile::tempdir().unwrap();
        let r = run_train(tiny_run(dir.path(), 12)).unwrap();
        assert_eq!(r.curve.len(), 12);
        assert!(r.updates > 0);
        assert!(r.policy.exists());
        assert!(r.files.iter().all(|f| f.exists()), "{:?}", r.files);
        assert!(r.eval.is_some());
        let p = super::super::load_policy(&r.policy).unwrap();
        assert_eq!(p.info().training.episodes, 12);
        // The saved weights are the untrained residual start (episode 0) or
        // weights of the second half (which beat it beyond the paired CI).
        match r.kept_episode {
            0 => {}
            k => {
                assert!(k > 5, "kept episode {k} is in the first half");
                assert!((r.curve[k - 1].panel_ratio - r.kept_panel_ratio).abs() < 1e-9);
            }
        }
    }

    #[test]
    fn learned_weights_replace_the_start_only_beyond_the_paired_interval() {
        let start = [5.0, 6.0, 7.0, 8.0, 9.0];
        // A steady gain of 0.1 on every episode: significant.
        let steady: Vec<f64> = start.iter().map(|s| s + 0.1).collect();
        assert!(beats_beyond_ci(&steady, &start));
        // A larger mean gain from one lucky episode: not.
        let lucky = [5.0, 6.0, 7.0, 8.0, 11.0];
        assert!(!beats_beyond_ci(&lucky, &start));
        // Equal, worse, or a single episode: never.
        assert!(!beats_beyond_ci(&start, &start));
        let worse: Vec<f64> = start.iter().map(|s| s - 0.1).collect();
        assert!(!beats_beyond_ci(&worse, &start));
        assert!(!beats_beyond_ci(&[9.0], &[1.0]));
    }
}
