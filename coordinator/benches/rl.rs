//! Benchmarks of the learned router, as one table:
//! - wall time to train the default configuration (`TrainArgs::default()`,
//!   without the final evaluation), as candle is shipped and with
//!   `RAYON_NUM_THREADS=1` (candle re-reads the CPU count from /proc on every
//!   matrix product unless that variable is set);
//! - the policy's decision latency per segment at 3, 100 and 1000 nodes;
//! - SAC training steps per second on a fixed replay of transitions and a
//!   fixed sequence of batches, which `--dump DIR` also writes (with the
//!   initial weights) for the PyTorch twin: `coordinator/bench-py/run.sh`
//!   runs both and prints the ratio.
//!
//! `cargo bench -p netmoe-coordinator --bench rl [-- --synthetic] [--dump DIR] [--steps N]`
//!
//! Uses `coordinator/data/routing_dataset.jsonl` when present and usable,
//! else (or with `--synthetic`) the synthetic dataset; the first line says which.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use candle_core::Tensor;
use netmoe_coordinator::policy::{CostAware, RouteContext, RoutingPolicy};
use netmoe_coordinator::rl::dataset::Dataset;
use netmoe_coordinator::rl::env::{
    DEFAULT_NEW_CHANNEL, DEFAULT_SCORE_NOISE, DEFAULT_WORDS_NOISE, Env, EnvConfig, Episode,
    NodeLayout,
};
use netmoe_coordinator::rl::features::{ExpertPriors, N_FEATURES};
use netmoe_coordinator::rl::replay::{Batch, Transition};
use netmoe_coordinator::rl::stats::percentile;
use netmoe_coordinator::rl::{Sac, SacConfig, SacPolicy, TrainArgs, load_policy, run_train};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DATASET: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data/routing_dataset.jsonl");
const SEED: u64 = 99;

struct Flags {
    synthetic: bool,
    dump: Option<PathBuf>,
    steps: usize,
    json: Option<PathBuf>,
}

fn flags() -> Flags {
    let mut f = Flags {
        synthetic: false,
        dump: None,
        steps: 600,
        json: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--synthetic" => f.synthetic = true,
            "--dump" => f.dump = args.next().map(PathBuf::from),
            "--json" => f.json = args.next().map(PathBuf::from),
            "--steps" => f.steps = args.next().and_then(|s| s.parse().ok()).unwrap_or(f.steps),
            _ => {}
        }
    }
    f
}

fn train_once(dataset: &str, out: &std::path::Path) -> anyhow::Result<(f64, Option<usize>, f64)> {
    let args = TrainArgs {
        dataset: dataset.into(),
        // The bench names a missing file for the synthetic set.
        synthetic: !std::path::Path::new(dataset).exists(),
        out_dir: out.to_owned(),
        eval_episodes: 0,
        quiet: true,
        ..TrainArgs::default()
    };
    let t = Instant::now();
    let r = run_train(args)?;
    let wall = t.elapsed().as_secs_f64();
    let ratio = r.curve.last().map_or(f64::NAN, |c| c.panel_ratio);
    Ok((wall, r.converged_at, ratio))
}

/// Median and p95 microseconds per segment of `policy.route` on `n`-node episodes.
fn latency(
    policy: &dyn RoutingPolicy,
    data: &Arc<Dataset>,
    n: usize,
    episodes: usize,
) -> anyhow::Result<(f64, f64)> {
    let config = EnvConfig {
        channel: DEFAULT_NEW_CHANNEL.parse()?,
        nodes: NodeLayout::Simulated {
            edge_nodes: n,
            score_noise: DEFAULT_SCORE_NOISE,
            words_noise: DEFAULT_WORDS_NOISE,
        },
        ..EnvConfig::default()
    };
    let mut env = Env::new(
        data.clone(),
        (0..data.prompts.len()).collect(),
        config,
        SEED,
    )?;
    let cost = env.config().cost;
    let mut per_segment = Vec::new();
    for i in 0..episodes + 5 {
        let ep: Episode = env.draw();
        let views = env.views(&ep);
        let ctx = RouteContext {
            cost: &cost,
            seed: 1,
        };
        let t = Instant::now();
        std::hint::black_box(policy.route(&views, &ctx));
        let us = t.elapsed().as_secs_f64() * 1e6 / views.len() as f64;
        if i >= 5 {
            per_segment.push(us);
        }
    }
    Ok((
        percentile(&per_segment, 0.5),
        percentile(&per_segment, 0.95),
    ))
}

/// A replay of random-policy transitions, padded to one pair count.
struct Replay {
    full: HashMap<&'static str, Tensor>,
    indices: Vec<Vec<u32>>,
}

fn replay(
    data: &Arc<Dataset>,
    policy: &SacPolicy,
    steps: usize,
    batch: usize,
) -> anyhow::Result<Replay> {
    let info = policy.info();
    let mut env = Env::new(
        data.clone(),
        (0..data.prompts.len()).collect(),
        EnvConfig::default(),
        SEED,
    )?;
    let priors: &ExpertPriors = &info.priors;
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut ts: Vec<Transition> = Vec::new();
    while ts.len() < 2000 {
        let ep = env.draw();
        let mut st = env.start(&ep);
        let mut obs = env.observe(&ep, &st, priors, &info.norm);
        while !env.done(&ep, &st) {
            let avail: Vec<usize> = (0..obs.mask.len()).filter(|&j| obs.mask[j]).collect();
            let a = avail[rng.random_range(0..avail.len())];
            let r = env.step(&ep, &mut st, a)?;
            let next = (!env.done(&ep, &st)).then(|| env.observe(&ep, &st, priors, &info.norm));
            ts.push(Transition {
                obs,
                action: a,
                reward: r as f32,
                next: next.clone(),
            });
            match next {
                Some(n) => obs = n,
                None => break,
            }
        }
    }
    let all: Vec<&Transition> = ts.iter().collect();
    let b = Batch::new(&all, &candle_core::Device::Cpu)?;
    let mut full = HashMap::new();
    full.insert("obs", b.obs);
    full.insert("mask", b.mask);
    full.insert("action", b.action);
    full.insert("reward", b.reward);
    full.insert("next_obs", b.next_obs);
    full.insert("next_mask", b.next_mask);
    full.insert("done", b.done);
    full.insert("n_valid", b.n_valid);
    let indices = (0..steps)
        .map(|_| {
            (0..batch)
                .map(|_| rng.random_range(0..ts.len() as u32))
                .collect()
        })
        .collect();
    Ok(Replay { full, indices })
}

fn gather(r: &Replay, step: usize) -> anyhow::Result<Batch> {
    let idx = Tensor::new(r.indices[step].as_slice(), &candle_core::Device::Cpu)?;
    let g = |k: &str| r.full[k].index_select(&idx, 0);
    Ok(Batch {
        obs: g("obs")?,
        mask: g("mask")?,
        action: g("action")?,
        reward: g("reward")?,
        next_obs: g("next_obs")?,
        next_mask: g("next_mask")?,
        done: g("done")?,
        n_valid: g("n_valid")?,
    })
}

const WARMUP_STEPS: usize = 20;

fn main() -> anyhow::Result<()> {
    let f = flags();
    let dir = tempfile::tempdir()?;
    // A missing path makes training fall back to the synthetic set.
    let missing = dir.path().join("no-dataset.jsonl");
    let mut dataset = if f.synthetic {
        missing.to_string_lossy().into_owned()
    } else {
        DATASET.to_owned()
    };
    let data = match Dataset::for_training(std::path::Path::new(&dataset), f.synthetic, 7) {
        Ok(d) => d,
        Err(e) => {
            println!("{DATASET} unusable ({e}); using the synthetic dataset");
            dataset = missing.to_string_lossy().into_owned();
            Dataset::synthetic(
                netmoe_coordinator::rl::dataset::DEFAULT_SYNTHETIC_PROMPTS,
                7,
            )
        }
    };
    let data = Arc::new(data);
    println!("dataset: {} ({} prompts)", data.source, data.prompts.len());

    let (wall_default, converged, ratio) = train_once(&dataset, dir.path())?;
    let threads_set = std::env::var_os("RAYON_NUM_THREADS").is_some();
    if !threads_set {
        // SAFETY: no other thread reads or writes the environment here: the
        // training run above has returned and this binary spawns none.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    let (wall_one, _, _) = train_once(&dataset, dir.path())?;
    let policy = load_policy(&dir.path().join("sac_policy.json"))?;

    let mut lat = Vec::new();
    for (n, eps) in [(3usize, 300usize), (100, 100), (1000, 30)] {
        let sac = latency(&policy, &data, n, eps)?;
        let cost = latency(&CostAware, &data, n, eps)?;
        lat.push((n, sac, cost));
    }

    let cfg = SacConfig::default();
    let rp = replay(&data, &policy, f.steps, cfg.batch_size)?;
    let mut agent = Sac::new(cfg.clone(), SEED)?;
    if let Some(d) = &f.dump {
        std::fs::create_dir_all(d)?;
        agent.save(&d.join("weights.safetensors"))?;
        let mut t: HashMap<String, Tensor> = rp
            .full
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        let flat: Vec<u32> = rp.indices.iter().flatten().copied().collect();
        t.insert(
            "indices".into(),
            Tensor::from_vec(flat, (f.steps, cfg.batch_size), &candle_core::Device::Cpu)?,
        );
        candle_core::safetensors::save(&t, d.join("transitions.safetensors"))?;
        let mut c = serde_json::to_value(&cfg)?;
        c["warmup"] = WARMUP_STEPS.into();
        c["n_features"] = N_FEATURES.into();
        std::fs::write(d.join("config.json"), serde_json::to_string_pretty(&c)?)?;
    }
    for s in 0..WARMUP_STEPS {
        agent.update(&gather(&rp, s)?)?;
    }
    let t = Instant::now();
    let mut last = None;
    for s in WARMUP_STEPS..f.steps {
        last = Some(agent.update(&gather(&rp, s)?)?);
    }
    let secs = t.elapsed().as_secs_f64();
    let steps = f.steps - WARMUP_STEPS;
    let sps = steps as f64 / secs;
    let pairs = rp.full["obs"].dims()[1];

    println!("| benchmark | value |");
    println!("|---|---|");
    println!(
        "| train default config ({} episodes), candle as shipped{} | {wall_default:.2} s |",
        TrainArgs::default().episodes,
        if threads_set {
            " (RAYON_NUM_THREADS was set)"
        } else {
            ""
        }
    );
    println!("| train default config, RAYON_NUM_THREADS=1 | {wall_one:.2} s |");
    println!(
        "| converged at episode (greedy panel) | {} ({:.2}% of bound at the end) |",
        converged.map_or("-".into(), |e| e.to_string()),
        100.0 * ratio
    );
    for (n, (m, p95), (cm, _)) in &lat {
        println!(
            "| decision latency per segment, {n} nodes: sac median / p95 (cost baseline) | {m:.1} / {p95:.1} µs ({cm:.1} µs) |"
        );
    }
    println!(
        "| candle SAC update steps/s (batch {}, {} pairs, hidden {:?}, {} steps) | {sps:.1} |",
        cfg.batch_size, pairs, cfg.hidden, steps
    );
    if let Some(j) = &f.json {
        let v = serde_json::json!({
            "impl": "candle 0.11.1",
            "steps": steps,
            "seconds": secs,
            "steps_per_s": sps,
            "last": last,
        });
        std::fs::write(j, v.to_string())?;
    }
    Ok(())
}
