//! `coordinator simulate --nodes N`: the same trained policy over N
//! simulated edge nodes drawn from the dataset's experts (each with its own
//! score offset, word-count scale and channel model), to show how the
//! decision cost grows with N and whether the policy still routes well.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::RlError;
use super::dataset::Dataset;
use super::env::{
    DEFAULT_NEW_CHANNEL, DEFAULT_SCORE_NOISE, DEFAULT_WORDS_NOISE, Env, EnvConfig, NodeLayout,
};
use super::eval::DEFAULT_LAYOUT_EPISODES;
use super::methods::{baselines, policy_episode};
use super::policy::{SacPolicy, load_policy};
use super::stats::{percentile, summarize};
use super::train::DEFAULT_POLICY;
use crate::policy::{CostAware, RouteContext, RoutingPolicy};

/// Node counts simulated.
pub const DEFAULT_SIMULATE_NODES: [usize; 5] = [3, 10, 100, 300, 1000];
/// Episodes per node count.
pub const DEFAULT_SIMULATE_EPISODES: usize = 200;
/// Seed of the simulated nodes and episodes.
pub const DEFAULT_SIMULATE_SEED: u64 = 2_024;

/// Flags of `coordinator simulate`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct SimulateArgs {
    /// Trained policy: NAME.json or NAME.safetensors.
    #[arg(long, default_value = DEFAULT_POLICY)]
    pub policy: PathBuf,
    /// Routing dataset [default: the one the policy was trained on].
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// Edge node counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_SIMULATE_NODES)]
    pub nodes: Vec<usize>,
    /// Episodes (held-out prompts) per node count.
    #[arg(long, default_value_t = DEFAULT_SIMULATE_EPISODES)]
    pub episodes: usize,
    /// Seed of the simulated nodes and episodes.
    #[arg(long, default_value_t = DEFAULT_SIMULATE_SEED)]
    pub seed: u64,
    /// Channel models of the simulated nodes (see `train --channel`).
    #[arg(long, default_value = DEFAULT_NEW_CHANNEL)]
    pub channel: String,
    /// Standard deviation of a simulated node's score offset.
    #[arg(long, default_value_t = DEFAULT_SCORE_NOISE)]
    pub score_noise: f64,
    /// Standard deviation of the log of a simulated node's word-count scale.
    #[arg(long, default_value_t = DEFAULT_WORDS_NOISE)]
    pub words_noise: f64,
    /// Do not print the table.
    #[arg(long)]
    pub quiet: bool,
    /// Print the human summary on stdout (off under `--json`, which
    /// prints the report instead; the progress bar stays on stderr).
    #[arg(skip = true)]
    pub print_summary: bool,
}

impl Default for SimulateArgs {
    fn default() -> Self {
        Self {
            policy: DEFAULT_POLICY.into(),
            dataset: None,
            nodes: DEFAULT_SIMULATE_NODES.to_vec(),
            episodes: DEFAULT_SIMULATE_EPISODES,
            seed: DEFAULT_SIMULATE_SEED,
            channel: DEFAULT_NEW_CHANNEL.into(),
            score_noise: DEFAULT_SCORE_NOISE,
            words_noise: DEFAULT_WORDS_NOISE,
            quiet: false,
            print_summary: true,
        }
    }
}

/// One node count's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulateRow {
    /// Edge nodes.
    pub edge_nodes: usize,
    /// Segments decided.
    pub segments: usize,
    /// SAC decision time per segment, median, microseconds.
    pub sac_us_median: f64,
    /// SAC decision time per segment, 95th percentile, microseconds.
    pub sac_us_p95: f64,
    /// Cost-aware baseline decision time per segment, median, microseconds.
    pub cost_us_median: f64,
    /// SAC mean reward per episode.
    pub sac_reward: f64,
    /// Best baseline and its mean reward.
    pub best_baseline: (String, f64),
    /// The bound's mean reward.
    pub bound_reward: f64,
}

/// What `coordinator simulate` measured.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulateReport {
    /// One row per node count.
    pub rows: Vec<SimulateRow>,
}

impl SimulateReport {
    /// The table as text.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{:>6} {:>8} {:>12} {:>12} {:>12} {:>9} {:>9} {:>20} {:>9}\n",
            "nodes",
            "segments",
            "sac µs/seg",
            "sac p95 µs",
            "cost µs/seg",
            "sac",
            "% bound",
            "best baseline",
            "bound"
        );
        for r in &self.rows {
            s.push_str(&format!(
                "{:>6} {:>8} {:>12.1} {:>12.1} {:>12.1} {:>9.3} {:>8.2}% {:>20} {:>9.3}\n",
                r.edge_nodes,
                r.segments,
                r.sac_us_median,
                r.sac_us_p95,
                r.cost_us_median,
                r.sac_reward,
                100.0 * r.sac_reward / r.bound_reward,
                format!("{} {:.3}", r.best_baseline.0, r.best_baseline.1),
                r.bound_reward
            ));
        }
        if std::env::var_os("RAYON_NUM_THREADS").is_none() {
            s.push_str(THREADS_NOTE);
        }
        s
    }
}

/// Said when candle will re-read the CPU count on every matrix product.
pub const THREADS_NOTE: &str = "note: RAYON_NUM_THREADS is unset, so candle re-reads the CPU count from /proc on every matrix product (~25 µs each); set RAYON_NUM_THREADS=1 for serving latencies\n";

/// Microseconds per segment of one `route` call over `ep`'s views.
fn time_route(policy: &dyn RoutingPolicy, env: &Env, ep: &super::env::Episode) -> f64 {
    let views = env.views(ep);
    let ctx = RouteContext {
        cost: &env.config().cost,
        seed: ep.seed,
    };
    let t = Instant::now();
    let c = policy.route(&views, &ctx);
    let us = t.elapsed().as_secs_f64() * 1e6;
    std::hint::black_box(c);
    us / views.len().max(1) as f64
}

/// Runs `policy` over simulated networks of each size in `nodes`.
pub fn simulate(
    policy: &SacPolicy,
    data: &Arc<Dataset>,
    prompts: &[usize],
    args: &SimulateArgs,
) -> Result<SimulateReport, RlError> {
    let others = baselines();
    let mut rows = Vec::new();
    for &n in &args.nodes {
        let config = EnvConfig {
            local_capacity: policy.info().local_capacity,
            channel: args.channel.parse()?,
            cost: policy.info().cost,
            nodes: NodeLayout::Simulated {
                edge_nodes: n,
                score_noise: args.score_noise,
                words_noise: args.words_noise,
            },
        };
        let seed = args.seed.wrapping_add(n as u64);
        let mut env = Env::new(data.clone(), prompts.to_vec(), config.clone(), seed)?;
        let (mut sac_us, mut cost_us, mut sac_r, mut bound_r) = (vec![], vec![], vec![], vec![]);
        let mut base_r = vec![0.0; others.len()];
        let mut segments = 0;
        for e in 0..args.episodes {
            if e > 0 && e % DEFAULT_LAYOUT_EPISODES == 0 {
                // New nodes and channel models, as in `eval`.
                env = Env::new(
                    data.clone(),
                    prompts.to_vec(),
                    config.clone(),
                    seed.wrapping_add(e as u64),
                )?;
            }
            let ep = env.draw();
            segments += env.n_segments(&ep);
            sac_us.push(time_route(policy, &env, &ep));
            cost_us.push(time_route(&CostAware, &env, &ep));
            sac_r.push(policy_episode(&env, &ep, policy)?.total);
            for (k, (_, p)) in others.iter().enumerate() {
                base_r[k] += policy_episode(&env, &ep, p.as_ref())?.total / args.episodes as f64;
            }
            bound_r.push(env.upper_bound(&ep).0);
        }
        let best = others
            .iter()
            .zip(&base_r)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|((name, _), &r)| (name.clone(), r))
            .unwrap_or_default();
        rows.push(SimulateRow {
            edge_nodes: n,
            segments,
            sac_us_median: percentile(&sac_us, 0.5),
            sac_us_p95: percentile(&sac_us, 0.95),
            cost_us_median: percentile(&cost_us, 0.5),
            sac_reward: summarize(&sac_r).mean,
            best_baseline: best,
            bound_reward: summarize(&bound_r).mean,
        });
    }
    Ok(SimulateReport { rows })
}

/// Loads the policy and its dataset and runs [`simulate`] on the held-out prompts.
pub fn run_simulate(args: SimulateArgs) -> Result<SimulateReport, RlError> {
    if args.nodes.contains(&0) || args.episodes == 0 {
        return Err(RlError::InvalidArgument(
            "node counts and episodes must be at least 1".into(),
        ));
    }
    let policy = load_policy(&args.policy)?;
    let data = Arc::new(super::eval::policy_dataset(
        &policy,
        args.dataset.as_deref(),
    )?);
    let info = policy.info();
    let split = data.split(info.training.train_fraction, info.training.split_seed);
    let report = simulate(&policy, &data, &split.held_out, &args)?;
    if !args.quiet && args.print_summary {
        print!("{}", report.render());
    }
    Ok(report)
}
