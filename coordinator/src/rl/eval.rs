//! `coordinator eval`: the trained policy against every baseline of the
//! routing trait, a planner on the training priors, the paper's
//! unconstrained no-edge benchmark and the upper bound, on held-out prompts with fresh SNR draws; with the dataset's
//! nodes and with N simulated nodes it never saw (new channel models).
//! Every method meets exactly the same episodes, so differences are paired.
//! With a retest (the same prompts collected again), it also reports how
//! well the judged scores repeat and what routing with them would earn.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Serialize;

use super::RlError;
use super::dataset::Dataset;
use super::env::{
    ChannelSpec, DEFAULT_NEW_CHANNEL, DEFAULT_SCORE_NOISE, DEFAULT_WORDS_NOISE, Env, EnvConfig,
    NodeLayout,
};
use super::methods::{
    BOUND, CROSS_FITTED_BOUND, EXPECTED_BOUND, LOCAL_ALL, MEAN_SCORE_BOUND, PRIOR_PLANNER,
    baselines, local_all, on_top_expert, policy_episode, prior_planner,
};
use super::plot::{Bar, mean_reward_bars, paired_scatter};
use super::policy::{POLICY_NAME, SacPolicy, load_policy};
use super::retest::{RETEST_ORACLE, Reliability, Retest};
use super::stats::{Summary, summarize};
use super::train::{DEFAULT_OUT_DIR, DEFAULT_POLICY};
use crate::policy::{GATED_SUFFIX, GateTopK, RoutingPolicy};

/// Held-out episodes of the evaluation `train` runs after training.
pub const DEFAULT_EVAL_EPISODES: usize = 5000;
/// Held-out episodes per node count of `coordinator eval`: enough that the
/// paired 95% CIs separate SAC from the channel-blind baselines, whose
/// deep-fade episodes make their rewards very spread (~16 s on 2 cores).
pub const DEFAULT_REPORT_EPISODES: usize = 50_000;
/// Seed of the evaluation episodes (apart from every training stream).
pub const DEFAULT_EVAL_SEED: u64 = 1_000_003;
/// Node counts evaluated: 0 is the dataset's own experts; others are simulated.
pub const DEFAULT_EVAL_NODES: [usize; 3] = [0, 5, 8];
/// Simulated layouts are redrawn (new nodes, new channel models) this often.
pub const DEFAULT_LAYOUT_EPISODES: usize = 50;

/// Flags of `coordinator eval`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct EvalArgs {
    /// Trained policy: NAME.json or NAME.safetensors (both files must exist).
    #[arg(long, default_value = DEFAULT_POLICY)]
    pub policy: PathBuf,
    /// Routing dataset [default: the one the policy was trained on].
    #[arg(long)]
    pub dataset: Option<PathBuf>,
    /// A retest of the dataset (the same prompts collected again with
    /// another --seed): adds its test-retest reliability and the retest
    /// oracle [default: the dataset's own second samples, when it has
    /// several per (segment, expert)].
    #[arg(long)]
    pub retest: Option<PathBuf>,
    /// Episodes per node count.
    #[arg(long, default_value_t = DEFAULT_REPORT_EPISODES)]
    pub episodes: usize,
    /// Seed of the evaluation episodes.
    #[arg(long, default_value_t = DEFAULT_EVAL_SEED)]
    pub seed: u64,
    /// Edge node counts, comma-separated; 0 means the dataset's own experts (with the training channel), others are simulated nodes drawn from them with new channel models.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_EVAL_NODES)]
    pub nodes: Vec<usize>,
    /// Channel models of simulated nodes (see `train --channel`).
    #[arg(long, default_value = DEFAULT_NEW_CHANNEL)]
    pub new_channel: String,
    /// Standard deviation of a simulated node's score offset.
    #[arg(long, default_value_t = DEFAULT_SCORE_NOISE)]
    pub score_noise: f64,
    /// Standard deviation of the log of a simulated node's word-count scale.
    #[arg(long, default_value_t = DEFAULT_WORDS_NOISE)]
    pub words_noise: f64,
    /// Directory for the CSV and the PNG figures.
    #[arg(long, default_value = DEFAULT_OUT_DIR)]
    pub out_dir: PathBuf,
    /// Do not print the tables.
    #[arg(long)]
    pub quiet: bool,
    /// Print the human summary on stdout (off under `--json`, which
    /// prints the report instead; the progress bar stays on stderr).
    #[arg(skip = true)]
    pub print_summary: bool,
}

impl Default for EvalArgs {
    fn default() -> Self {
        Self {
            policy: DEFAULT_POLICY.into(),
            dataset: None,
            retest: None,
            episodes: DEFAULT_REPORT_EPISODES,
            seed: DEFAULT_EVAL_SEED,
            nodes: DEFAULT_EVAL_NODES.to_vec(),
            new_channel: DEFAULT_NEW_CHANNEL.into(),
            score_noise: DEFAULT_SCORE_NOISE,
            words_noise: DEFAULT_WORDS_NOISE,
            out_dir: DEFAULT_OUT_DIR.into(),
            quiet: false,
            print_summary: true,
        }
    }
}

/// One method's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MethodRow {
    /// Method name.
    pub name: String,
    /// Reward per episode: mean and 95% CI.
    pub reward: Summary,
    /// Mean reward / the bound's mean reward.
    pub ratio_to_bound: f64,
    /// Paired difference SAC − this method (absent for SAC itself).
    pub sac_minus: Option<Summary>,
    /// Share of segments a routing policy sent to their most relevant
    /// expert (absent for the planner, the bounds and references).
    pub on_top_expert: Option<f64>,
}

/// One evaluation setting's results.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvalTable {
    /// What was evaluated, for humans.
    pub label: String,
    /// Edge nodes.
    pub edge_nodes: usize,
    /// Held-out prompts.
    pub prompts: usize,
    /// Episodes.
    pub episodes: usize,
    /// SAC, the baselines, local-all, the references, the bound.
    pub rows: Vec<MethodRow>,
    /// Test-retest agreement of the held-out scores, with a retest.
    pub reliability: Option<Reliability>,
}

impl EvalTable {
    /// The row of `name`.
    pub fn row(&self, name: &str) -> Option<&MethodRow> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// SAC's mean reward / the bound's.
    pub fn sac_ratio(&self) -> f64 {
        self.row(POLICY_NAME).map_or(f64::NAN, |r| r.ratio_to_bound)
    }

    /// Methods SAC does NOT beat by more than the 95% CI of the paired
    /// difference (every method meets the same episodes); empty when it
    /// beats them all.
    pub fn not_beaten(&self) -> Vec<String> {
        self.others()
            .filter(|r| r.sac_minus.is_none_or(|d| d.mean <= d.half_width))
            .map(|r| r.name.clone())
            .collect()
    }

    /// Methods whose own 95% CI overlaps SAC's (a stricter, unpaired test:
    /// episodes differ a lot in segments and channels, so these intervals
    /// are wide).
    pub fn overlapping(&self) -> Vec<String> {
        let Some(sac) = self.row(POLICY_NAME) else {
            return Vec::new();
        };
        self.others()
            .filter(|r| {
                sac.reward.mean - r.reward.mean <= sac.reward.half_width + r.reward.half_width
            })
            .map(|r| r.name.clone())
            .collect()
    }

    /// The competing methods (the baselines and the prior planner):
    /// everything but SAC (alone or gated), the bound, the references that
    /// know more than a router (mean-score, retest oracle) and local-all
    /// (which ignores the local capacity).
    fn others(&self) -> impl Iterator<Item = &MethodRow> {
        self.rows.iter().filter(|r| {
            !r.name.ends_with(GATED_SUFFIX)
                && ![
                    POLICY_NAME,
                    BOUND,
                    MEAN_SCORE_BOUND,
                    EXPECTED_BOUND,
                    CROSS_FITTED_BOUND,
                    RETEST_ORACLE,
                    LOCAL_ALL,
                ]
                .contains(&r.name.as_str())
        })
    }

    /// The table as text.
    pub fn render(&self) -> String {
        let mut s = format!(
            "{} — {} held-out prompts, {} episodes\n{:<16} {:>9} {:>8} {:>8} {:>20} {:>9}\n",
            self.label,
            self.prompts,
            self.episodes,
            "method",
            "mean",
            "±95%",
            "% bound",
            "sac − method ±95%",
            "top-rel"
        );
        for r in &self.rows {
            let diff = r.sac_minus.map_or(String::new(), |d| {
                format!("{:+.3} ± {:.3}", d.mean, d.half_width)
            });
            let top = r
                .on_top_expert
                .map_or(String::new(), |t| format!("{:.1}%", 100.0 * t));
            s.push_str(&format!(
                "{:<16} {:>9.3} {:>8.3} {:>7.2}% {:>20} {:>9}\n",
                r.name,
                r.reward.mean,
                r.reward.half_width,
                100.0 * r.ratio_to_bound,
                diff,
                top
            ));
        }
        let nb = self.not_beaten();
        let ov = self.overlapping();
        if self.row(LOCAL_ALL).is_some() {
            s.push_str("(* local-all ignores the local device's capacity; it is shown, not competed with)\n");
        }
        s.push_str("(top-rel: segments a routing policy sent to their most relevant expert)\n");
        if let Some(r) = &self.reliability {
            s.push_str(&format!("held-out prompts: {}\n", r.render()));
        }
        let mut of_oracle = match (self.row(POLICY_NAME), self.row(EXPECTED_BOUND)) {
            (Some(sac), Some(o)) => format!(
                ", {:.2}% of the expected-value bound",
                100.0 * sac.reward.mean / o.reward.mean
            ),
            _ => String::new(),
        };
        if let (Some(sac), Some(o)) = (self.row(POLICY_NAME), self.row(CROSS_FITTED_BOUND)) {
            of_oracle.push_str(&format!(
                ", {:.2}% of the cross-fitted bound",
                100.0 * sac.reward.mean / o.reward.mean
            ));
        }
        if let (Some(sac), Some(o)) = (self.row(POLICY_NAME), self.row(RETEST_ORACLE)) {
            of_oracle.push_str(&format!(
                ", {:.2}% of the retest oracle",
                100.0 * sac.reward.mean / o.reward.mean
            ));
        }
        s.push_str(&format!(
            "sac reaches {:.2}% of the hindsight bound{of_oracle}; {}; unpaired CIs {}\n",
            100.0 * self.sac_ratio(),
            if nb.is_empty() {
                "beats every other method by more than the paired 95% CI".to_owned()
            } else {
                format!(
                    "does NOT beat by more than the paired CI: {}",
                    nb.join(", ")
                )
            },
            if ov.is_empty() {
                "separate from every other method".to_owned()
            } else {
                format!("overlap with {}", ov.join(", "))
            }
        ));
        s
    }
}

/// Evaluates `policy` against every baseline, local-all, the references
/// (mean scores; the retest's scores when one is given) and the bound on
/// `episodes` draws over `prompts`. Simulated layouts are redrawn every
/// [`DEFAULT_LAYOUT_EPISODES`] episodes.
pub fn evaluate(
    policy: &SacPolicy,
    data: &Arc<Dataset>,
    prompts: &[usize],
    config: EnvConfig,
    episodes: usize,
    seed: u64,
    retest: Option<&Retest>,
) -> Result<EvalTable, RlError> {
    let others = baselines();
    let gated = GateTopK::new(policy, 1);
    let mut names = vec![POLICY_NAME.to_owned(), gated.name().to_owned()];
    names.extend(others.iter().map(|(n, _)| n.clone()));
    let simulated = matches!(config.nodes, NodeLayout::Simulated { .. });
    let mut env = Env::new(data.clone(), prompts.to_vec(), config.clone(), seed)?;
    let has_local = env.nodes().iter().any(|n| n.local);
    names.push(PRIOR_PLANNER.to_owned());
    if has_local {
        names.push(LOCAL_ALL.to_owned());
    }
    names.push(MEAN_SCORE_BOUND.to_owned());
    names.push(EXPECTED_BOUND.to_owned());
    let cross_fit = data.max_samples() > 1;
    if cross_fit {
        names.push(CROSS_FITTED_BOUND.to_owned());
    }
    if retest.is_some() {
        names.push(RETEST_ORACLE.to_owned());
    }
    names.push(BOUND.to_owned());
    let mut rewards: Vec<Vec<f64>> = vec![Vec::with_capacity(episodes); names.len()];
    // Per routing policy (SAC, gated SAC, the baselines): segments on their
    // most relevant expert, and segments.
    let mut top = vec![(0usize, 0usize); 2 + others.len()];
    for e in 0..episodes {
        if simulated && e > 0 && e % DEFAULT_LAYOUT_EPISODES == 0 {
            env = Env::new(
                data.clone(),
                prompts.to_vec(),
                config.clone(),
                seed.wrapping_add(e as u64),
            )?;
        }
        let ep = env.draw();
        let routers = [policy as &dyn RoutingPolicy, &gated]
            .into_iter()
            .chain(others.iter().map(|(_, p)| p.as_ref()));
        for (k, p) in routers.enumerate() {
            let st = policy_episode(&env, &ep, p)?;
            let (h, n) = on_top_expert(&env, &ep, &st);
            top[k].0 += h;
            top[k].1 += n;
            rewards[k].push(st.total);
        }
        let mut i = top.len() - 1;
        i += 1;
        rewards[i].push(prior_planner(&env, &ep, &policy.info().priors));
        if has_local {
            i += 1;
            rewards[i].push(local_all(&env, &ep).unwrap_or(f64::NAN));
        }
        i += 1;
        rewards[i].push(env.mean_score_bound(&ep, &policy.info().priors));
        i += 1;
        rewards[i].push(env.expected_bound(&ep));
        if cross_fit {
            i += 1;
            rewards[i].push(env.cross_fitted_bound(&ep).unwrap_or(f64::NAN));
        }
        if let Some(r) = retest {
            i += 1;
            rewards[i].push(r.oracle_total(&env, &ep));
        }
        rewards[i + 1].push(env.upper_bound(&ep).0);
    }
    let bound = summarize(rewards.last().expect("bound row")).mean;
    let sac = &rewards[0];
    let rows = names
        .iter()
        .zip(&rewards)
        .enumerate()
        .map(|(k, (name, r))| {
            let reward = summarize(r);
            MethodRow {
                name: name.clone(),
                reward,
                ratio_to_bound: reward.mean / bound,
                sac_minus: (k > 0)
                    .then(|| summarize(&sac.iter().zip(r).map(|(a, b)| a - b).collect::<Vec<_>>())),
                on_top_expert: top.get(k).map(|&(h, n)| h as f64 / n.max(1) as f64),
            }
        })
        .collect();
    let edge_nodes = env.nodes().iter().filter(|n| !n.local).count();
    Ok(EvalTable {
        label: format!(
            "{} edge nodes{} ({}), channel {}",
            edge_nodes,
            if has_local { " + local device" } else { "" },
            if simulated {
                "simulated from the dataset's experts"
            } else {
                "the dataset's experts"
            },
            channel_label(&config.channel)
        ),
        edge_nodes,
        prompts: prompts.len(),
        episodes,
        rows,
        reliability: retest.map(|r| r.reliability(data, prompts)),
    })
}

fn channel_label(c: &ChannelSpec) -> String {
    match c {
        ChannelSpec::RandomRayleigh { min_db, max_db } => {
            format!("random-rayleigh:{min_db}:{max_db}")
        }
        ChannelSpec::PerNode { min_db, max_db } => format!("per-node:{min_db}:{max_db}"),
        ChannelSpec::Models(m) => format!(
            "models:{}",
            m.iter().map(|m| m.spec()).collect::<Vec<_>>().join(",")
        ),
    }
}

/// Where [`write_table`] puts a table.
#[derive(Debug, Clone, Copy)]
pub struct Output<'a> {
    /// Directory of `eval.csv` and the figure.
    pub dir: &'a Path,
    /// Appended to the figure's name (`fig3_mean_reward{suffix}.png`).
    pub suffix: &'a str,
    /// Start `eval.csv` afresh (the first table of a run) instead of appending.
    pub fresh_csv: bool,
}

/// Writes `table`'s rows to `eval.csv` and its Fig. 3 PNG; returns both paths.
pub fn write_table(table: &EvalTable, out: Output<'_>) -> Result<Vec<PathBuf>, RlError> {
    let dir = out.dir;
    std::fs::create_dir_all(dir).map_err(|e| RlError::io(dir, e))?;
    let csv = dir.join("eval.csv");
    let mut text = if out.fresh_csv {
        "setting,edge_nodes,method,episodes,mean,std,ci95_half_width,ratio_to_bound,sac_minus_method,sac_minus_method_ci95,on_top_expert\n".to_owned()
    } else {
        std::fs::read_to_string(&csv).unwrap_or_default()
    };
    for r in &table.rows {
        text.push_str(&format!(
            "\"{}\",{},{},{},{:.5},{:.5},{:.5},{:.5},{},{},{}\n",
            table.label,
            table.edge_nodes,
            r.name,
            r.reward.n,
            r.reward.mean,
            r.reward.std,
            r.reward.half_width,
            r.ratio_to_bound,
            r.sac_minus
                .map_or(String::new(), |d| format!("{:.5}", d.mean)),
            r.sac_minus
                .map_or(String::new(), |d| format!("{:.5}", d.half_width)),
            r.on_top_expert.map_or(String::new(), |t| format!("{t:.4}")),
        ));
    }
    std::fs::write(&csv, text).map_err(|e| RlError::io(&csv, e))?;
    let png = dir.join(format!("fig3_mean_reward{}.png", out.suffix));
    let bars: Vec<Bar> = table
        .rows
        .iter()
        .map(|r| Bar {
            label: r.name.clone(),
            mean: r.reward.mean,
            half_width: r.reward.half_width,
        })
        .collect();
    mean_reward_bars(
        &png,
        &format!("Held-out mean reward: {}", table.label),
        &bars,
    )?;
    Ok(vec![csv, png])
}

/// What `coordinator eval` produced.
#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    /// One table per node count.
    pub tables: Vec<EvalTable>,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// The dataset `path`, or else the one `policy` was trained on (the
/// synthetic set is regenerated from its seed).
pub fn policy_dataset(policy: &SacPolicy, path: Option<&Path>) -> Result<Dataset, RlError> {
    let t = &policy.info().training;
    match path {
        Some(p) => Dataset::load(p),
        None if t.dataset.starts_with("synthetic(") => Ok(Dataset::synthetic(
            super::dataset::DEFAULT_SYNTHETIC_PROMPTS,
            t.seed,
        )),
        None => Dataset::load(Path::new(&t.dataset)),
    }
}

/// The retest `args` names (aligned with `data`), else the dataset's own
/// second samples when it has several per pair.
fn retest_for(args: &EvalArgs, data: &Dataset) -> Result<Option<Retest>, RlError> {
    let path = match &args.retest {
        Some(p) => p.clone(),
        None => return Ok(Retest::from_samples(data)),
    };
    Retest::align(data, &Dataset::load(&path)?).map(Some)
}

/// Evaluates a saved policy; see the module docs.
pub fn run_eval(args: EvalArgs) -> Result<EvalReport, RlError> {
    let policy = load_policy(&args.policy)?;
    let info = policy.info().clone();
    let data = Arc::new(policy_dataset(&policy, args.dataset.as_deref())?);
    let split = data.split(info.training.train_fraction, info.training.split_seed);
    let retest = retest_for(&args, &data)?;
    let mut tables = Vec::new();
    let mut files = Vec::new();
    if let Some(r) = &retest {
        let all: Vec<usize> = (0..data.prompts.len()).collect();
        let rel = r.reliability(&data, &all);
        if !args.quiet && args.print_summary {
            println!(
                "retest {}; all {} prompts: {}",
                r.source,
                all.len(),
                rel.render()
            );
        }
        std::fs::create_dir_all(&args.out_dir).map_err(|e| RlError::io(&args.out_dir, e))?;
        let png = args.out_dir.join("fig4_retest.png");
        let (first, second) = r.deviations(&data, &all);
        paired_scatter(
            &png,
            &format!(
                "Same segment, same expert, another seed: within-segment r = {:.3} ({} pairs)",
                rel.within_segment_corr, rel.pairs
            ),
            (
                "score − segment mean, dataset",
                "score − segment mean, retest",
            ),
            &first,
            &second,
        )?;
        files.push(png);
    }
    for (k, &n) in args.nodes.iter().enumerate() {
        let (nodes, channel) = if n == 0 {
            (NodeLayout::Dataset, info.training.channel.parse()?)
        } else {
            (
                NodeLayout::Simulated {
                    edge_nodes: n,
                    score_noise: args.score_noise,
                    words_noise: args.words_noise,
                },
                args.new_channel.parse()?,
            )
        };
        let config = EnvConfig {
            local_capacity: info.local_capacity,
            channel,
            cost: info.cost,
            nodes,
        };
        let suffix = if n == 0 {
            String::new()
        } else {
            format!("_{n}_nodes")
        };
        let table = evaluate(
            &policy,
            &data,
            &split.held_out,
            config,
            args.episodes,
            args.seed.wrapping_add(k as u64),
            retest.as_ref(),
        )?;
        let written = write_table(
            &table,
            Output {
                dir: &args.out_dir,
                suffix: &suffix,
                fresh_csv: k == 0,
            },
        )?;
        if !args.quiet && args.print_summary {
            println!("{}", table.render());
        }
        tables.push(table);
        for f in written {
            if !files.contains(&f) {
                files.push(f);
            }
        }
    }
    if !args.quiet && args.print_summary {
        for f in &files {
            println!("wrote {}", f.display());
        }
    }
    Ok(EvalReport { tables, files })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rl::train::run_train;
    use crate::rl::train::tests::tiny_run;

    #[test]
    fn a_retest_adds_its_oracle_and_reliability_to_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let trained = run_train(tiny_run(dir.path(), 6)).unwrap();
        let policy = load_policy(&trained.policy).unwrap();
        let data = Arc::new(policy_dataset(&policy, None).unwrap());
        let t = &policy.info().training;
        let split = data.split(t.train_fraction, t.split_seed);
        let table = |retest: Option<&Retest>| {
            evaluate(
                &policy,
                &data,
                &split.held_out,
                EnvConfig::default(),
                60,
                3,
                retest,
            )
            .unwrap()
        };
        let plain = table(None);
        assert!(plain.row(RETEST_ORACLE).is_none() && plain.reliability.is_none());
        // Retested by itself, the oracle knows the very scores it is paid.
        let itself = Retest::align(&data, &data).unwrap();
        let with = table(Some(&itself));
        let (oracle, bound) = (with.row(RETEST_ORACLE).unwrap(), with.row(BOUND).unwrap());
        assert_eq!(oracle.reward.mean, bound.reward.mean);
        assert_eq!(with.reliability.unwrap().same_best, 1.0);
        // The other rows are the same episodes as without a retest.
        assert_eq!(with.row(POLICY_NAME), plain.row(POLICY_NAME));
        assert!(!with.not_beaten().contains(&RETEST_ORACLE.to_owned()));
        assert!(
            with.render().contains("of the retest oracle"),
            "{}",
            with.render()
        );
    }
}
