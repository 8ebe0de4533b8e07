//! Fitting the quality judge's weights: pairwise logistic regression (the
//! better text of a pair should score higher) over standardised signals, by
//! gradient descent with an L2 penalty, every kind of pair weighing the same;
//! then an intercept that puts the median better text at [`GOOD_SCORE`].
//! `coordinator judge-fit` runs it on the signals `judge-eval --split tune
//! --dump` wrote, and prints the [`super::quality::MODEL`] constant.

use std::collections::HashMap;

use super::quality::{FEATURES, Features, N_FEATURES};

/// L2 penalty on the weights (standardised units).
pub const DEFAULT_L2: f64 = 0.01;
/// Gradient steps.
pub const DEFAULT_STEPS: usize = 3000;
/// Step size.
const RATE: f64 = 0.2;
/// Score (0-10) of the median better text of the tuning pairs.
pub const GOOD_SCORE: f64 = 8.5;

/// Per signal (mean, standard deviation, weight), then the intercept.
pub type Model = ([(f64, f64, f64); N_FEATURES], f64);

/// One tuning pair: the kind, the better text's signals, the worse one's.
pub type Pair = (String, Features, Features);

fn standardise(f: &Features, stats: &[(f64, f64, f64); N_FEATURES]) -> [f64; N_FEATURES] {
    let mut x = [0.0; N_FEATURES];
    for j in 0..N_FEATURES {
        x[j] = (f[j] - stats[j].0) / stats[j].1;
    }
    x
}

/// Fits a model to `pairs`.
///
/// ```
/// # use netmoe_coordinator::judge::fit::fit;
/// // The better text has the higher first signal; it gets a positive weight.
/// let pairs: Vec<_> = (0..20)
///     .map(|i| {
///         let n = netmoe_coordinator::judge::quality::N_FEATURES;
///         let (mut a, mut b) = ([0.0; 15], [0.0; 15]);
///         assert_eq!(a.len(), n);
///         a[0] = 1.0 + i as f64;
///         b[0] = i as f64;
///         ("k".to_string(), a, b)
///     })
///     .collect();
/// let (params, _) = fit(&pairs, 0.01, 500);
/// assert!(params[0].2 > 0.5);
/// ```
pub fn fit(pairs: &[Pair], l2: f64, steps: usize) -> Model {
    let all: Vec<&Features> = pairs.iter().flat_map(|(_, a, b)| [a, b]).collect();
    let n = all.len().max(1) as f64;
    let mut stats = [(0.0, 1.0, 0.0); N_FEATURES];
    for (j, s) in stats.iter_mut().enumerate() {
        let m = all.iter().map(|f| f[j]).sum::<f64>() / n;
        let var = all.iter().map(|f| (f[j] - m).powi(2)).sum::<f64>() / n;
        *s = (m, var.sqrt().max(1e-6), 0.0);
    }
    let mut per_kind: HashMap<&str, usize> = HashMap::new();
    for (k, ..) in pairs {
        *per_kind.entry(k.as_str()).or_default() += 1;
    }
    let kinds = per_kind.len().max(1) as f64;
    let d: Vec<([f64; N_FEATURES], f64)> = pairs
        .iter()
        .map(|(k, a, b)| {
            let (xa, xb) = (standardise(a, &stats), standardise(b, &stats));
            let mut x = [0.0; N_FEATURES];
            for j in 0..N_FEATURES {
                x[j] = xa[j] - xb[j];
            }
            (x, 1.0 / (kinds * per_kind[k.as_str()] as f64))
        })
        .collect();
    let mut w = [0.0; N_FEATURES];
    for _ in 0..steps {
        let mut g = [0.0; N_FEATURES];
        for (x, weight) in &d {
            let p = 1.0 / (1.0 + (-dot(&w, x)).exp());
            for j in 0..N_FEATURES {
                g[j] += weight * (p - 1.0) * x[j];
            }
        }
        for j in 0..N_FEATURES {
            w[j] -= RATE * (g[j] + l2 * w[j]);
        }
    }
    for j in 0..N_FEATURES {
        stats[j].2 = w[j];
    }
    let mut better: Vec<f64> = pairs
        .iter()
        .map(|(_, a, _)| dot(&w, &standardise(a, &stats)))
        .collect();
    better.sort_by(f64::total_cmp);
    let median = better.get(better.len() / 2).copied().unwrap_or(0.0);
    let target = (GOOD_SCORE / (10.0 - GOOD_SCORE)).ln();
    (stats, target - median)
}

fn dot(a: &[f64; N_FEATURES], b: &[f64; N_FEATURES]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Reads `judge-eval --dump` lines of the quality judge into tuning pairs:
/// each worse text with the better text of its task (graded expert passages
/// and empty texts are left out: an expert passage of middle grade is the
/// better side of one pair and the worse of another, and an empty text has
/// no signals).
pub fn rows_from_dump(jsonl: &str) -> Result<Vec<Pair>, String> {
    let mut better: HashMap<String, Features> = HashMap::new();
    let mut worse: Vec<(String, String, Features)> = Vec::new();
    for (i, line) in jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        if v["judge"] != "quality" || v["kind"] == "expert" {
            continue;
        }
        let parts = &v["parts"];
        if parts.get(FEATURES[0]).is_none() {
            continue;
        }
        let mut f = [0.0; N_FEATURES];
        for (j, name) in FEATURES.iter().enumerate() {
            f[j] = parts[*name]
                .as_f64()
                .ok_or_else(|| format!("line {}: no {name}", i + 1))?;
        }
        let task = v["task"].as_str().unwrap_or_default().to_owned();
        if v["better"].as_bool().unwrap_or(false) {
            better.insert(task, f);
        } else {
            worse.push((task, v["kind"].as_str().unwrap_or_default().to_owned(), f));
        }
    }
    Ok(worse
        .into_iter()
        .filter_map(|(task, kind, f)| better.get(&task).map(|b| (kind, *b, f)))
        .collect())
}

/// The model as the Rust constant of [`super::quality::MODEL`].
pub fn render(model: &Model) -> String {
    let mut s = String::from("pub const MODEL: Model = (\n    [\n");
    for ((m, sd, w), name) in model.0.iter().zip(FEATURES) {
        s.push_str(&format!("        ({m:.6}, {sd:.6}, {w:.6}), // {name}\n"));
    }
    s.push_str(&format!("    ],\n    {:.6},\n);\n", model.1));
    s
}
