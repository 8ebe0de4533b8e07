//! A retest: a second collection of the same segments by the same experts
//! with other sampling seeds (`coordinator collect --seed`). It measures
//! how well one generation's judged score predicts the next one for the
//! same (segment, expert), and drives the "retest oracle", a router that
//! has already seen every expert answer this very segment once. Together
//! they show how much of the gap to the hindsight bound any router could
//! close: the bound picks with the score of the very passage it is paid
//! for, which no router can see before generating.

use std::path::PathBuf;

use super::RlError;
use super::dataset::Dataset;
use super::env::{Env, Episode};
use super::stats::{mean, pearson};

/// Name of the retest oracle in tables.
pub const RETEST_ORACLE: &str = "retest oracle";

/// A retest's scores aligned with a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Retest {
    /// Where the retest came from.
    pub source: String,
    /// `[prompt][segment][expert]`, indexed like the dataset.
    scores: Vec<Vec<Vec<f64>>>,
    /// The first test's scores when they are not the dataset's (expected)
    /// scores: sample 0 of a dataset with several samples per pair.
    first: Option<Vec<Vec<Vec<f64>>>>,
    /// The oracle believes another generation of each pair than the one
    /// the episode drew (a retest made of the dataset's own samples).
    other_sample: bool,
}

/// How well a retest repeats the dataset's scores.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Reliability {
    /// (segment, expert) pairs compared.
    pub pairs: usize,
    /// Segments compared.
    pub segments: usize,
    /// Correlation of the two scores of each pair.
    pub score_corr: f64,
    /// Correlation of each score's deviation from its segment's mean over
    /// the experts: does the expert that wrote the better passage once do
    /// so again? This is the part of the score routing can act on.
    pub within_segment_corr: f64,
    /// Correlation of what is left of each score once its segment's mean
    /// and its expert's mean (over the compared segments) are taken out:
    /// does an expert beat ITS OWN average on this segment again? This is
    /// all a router that already knows each expert's average score (the
    /// prior planner) could still learn per segment.
    pub interaction_corr: f64,
    /// Mean |first − second| score of a pair.
    pub mean_abs_diff: f64,
    /// Share of segments whose best-scored expert is the same both times.
    pub same_best: f64,
    /// That share if the best expert were drawn at random (1 / experts).
    pub same_best_chance: f64,
}

impl Retest {
    /// Aligns `retest` with `data`: every prompt (by id), segment (same
    /// position and text) and expert (by name) of `data` must be in it.
    pub fn align(data: &Dataset, retest: &Dataset) -> Result<Self, RlError> {
        let mismatch = |what: String| {
            RlError::Dataset(format!(
                "retest {} does not repeat {}: {what}",
                retest.source, data.source
            ))
        };
        let experts = data
            .experts
            .iter()
            .map(|e| {
                retest
                    .experts
                    .iter()
                    .position(|r| r.name == e.name && r.local == e.local)
                    .ok_or_else(|| mismatch(format!("no expert {}", e.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let scores = data
            .prompts
            .iter()
            .map(|p| {
                let r = retest
                    .prompts
                    .iter()
                    .find(|r| r.id == p.id)
                    .ok_or_else(|| mismatch(format!("no prompt {}", p.id)))?;
                if r.segments.len() != p.segments.len() {
                    return Err(mismatch(format!(
                        "prompt {} has {} segments, not {}",
                        p.id,
                        r.segments.len(),
                        p.segments.len()
                    )));
                }
                p.segments
                    .iter()
                    .zip(&r.segments)
                    .map(|(s, rs)| {
                        if s.text != rs.text {
                            return Err(mismatch(format!(
                                "prompt {} segment {} is {:?}, not {:?}",
                                p.id, s.index, rs.text, s.text
                            )));
                        }
                        Ok(experts.iter().map(|&e| rs.outcomes[e].score).collect())
                    })
                    .collect::<Result<Vec<Vec<f64>>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            source: retest.source.clone(),
            scores,
            first: None,
            other_sample: false,
        })
    }

    /// The retest inside a dataset collected with several samples per
    /// (segment, expert): reliability compares each pair's first and second
    /// generation; the oracle believes, for every pair, the score of a
    /// generation other than the one the episode pays. `None` when some
    /// pair has a single sample.
    pub fn from_samples(data: &Dataset) -> Option<Self> {
        let pick = |k: usize| -> Option<Vec<Vec<Vec<f64>>>> {
            data.prompts
                .iter()
                .map(|p| {
                    p.segments
                        .iter()
                        .map(|s| {
                            s.samples
                                .iter()
                                .map(|v| v.get(k).map(|o| o.score))
                                .collect()
                        })
                        .collect()
                })
                .collect()
        };
        Some(Self {
            source: format!("{} (second samples)", data.source),
            scores: pick(1)?,
            first: Some(pick(0)?),
            other_sample: true,
        })
    }

    /// The retest's score of `expert` on segment `segment` of `prompt`.
    pub fn score(&self, prompt: usize, segment: usize, expert: usize) -> f64 {
        self.scores[prompt][segment][expert]
    }

    /// The retest oracle's TRUE total on `ep`: exhaustive search believing
    /// the retest's scores (plus each node's score offset).
    pub fn oracle_total(&self, env: &Env, ep: &Episode) -> f64 {
        env.planned_total(ep, |s, n| {
            let seen = if self.other_sample {
                let samples = &env.data().prompts[ep.prompt].segments[s].samples[n.expert];
                let drawn = ep.samples[s][n.expert];
                samples[(drawn + 1) % samples.len()].score
            } else {
                self.score(ep.prompt, s, n.expert)
            };
            (seen + n.score_offset).clamp(0.0, 10.0)
        })
    }

    /// Every (segment, expert) score of `prompts` in the dataset and in the
    /// retest, each as its deviation from its segment's mean over the
    /// experts: the part of a score routing can act on.
    pub fn deviations(&self, data: &Dataset, prompts: &[usize]) -> (Vec<f64>, Vec<f64>) {
        let (mut first, mut second) = (vec![], vec![]);
        for (a, b) in self.segment_scores(data, prompts) {
            let (ma, mb) = (mean(a.iter().copied()), mean(b.iter().copied()));
            first.extend(a.iter().map(|x| x - ma));
            second.extend(b.iter().map(|x| x - mb));
        }
        (first, second)
    }

    /// Test-retest agreement over the segments of `prompts`.
    pub fn reliability(&self, data: &Dataset, prompts: &[usize]) -> Reliability {
        let (mut first, mut second) = (vec![], vec![]);
        let (mut segments, mut same_best) = (0usize, 0usize);
        let argmax = |xs: &[f64]| {
            (0..xs.len())
                .max_by(|&a, &b| xs[a].total_cmp(&xs[b]))
                .unwrap_or(0)
        };
        for (a, b) in self.segment_scores(data, prompts) {
            first.extend_from_slice(&a);
            second.extend_from_slice(b);
            segments += 1;
            same_best += usize::from(argmax(&a) == argmax(b));
        }
        let (dev1, dev2) = self.deviations(data, prompts);
        let pairs = first.len();
        let experts = data.experts.len();
        Reliability {
            pairs,
            segments,
            score_corr: pearson(&first, &second),
            within_segment_corr: pearson(&dev1, &dev2),
            interaction_corr: pearson(
                &minus_expert_means(&dev1, experts),
                &minus_expert_means(&dev2, experts),
            ),
            mean_abs_diff: first
                .iter()
                .zip(&second)
                .map(|(a, b)| (a - b).abs())
                .sum::<f64>()
                / pairs.max(1) as f64,
            same_best: same_best as f64 / segments.max(1) as f64,
            same_best_chance: 1.0 / data.experts.len().max(1) as f64,
        }
    }

    /// Per segment of `prompts`: the dataset's scores and the retest's, by expert.
    fn segment_scores<'a>(
        &'a self,
        data: &'a Dataset,
        prompts: &'a [usize],
    ) -> impl Iterator<Item = (Vec<f64>, &'a [f64])> + 'a {
        prompts.iter().flat_map(move |&p| {
            data.prompts[p]
                .segments
                .iter()
                .enumerate()
                .map(move |(s, seg)| {
                    (
                        self.first.as_ref().map_or_else(
                            || seg.outcomes.iter().map(|o| o.score).collect(),
                            |f| f[p][s].clone(),
                        ),
                        self.scores[p][s].as_slice(),
                    )
                })
        })
    }
}

/// `devs` (segment-major, `experts` per segment, each already less its
/// segment's mean) less each expert's mean deviation: the double-centred
/// residual of a two-way layout.
fn minus_expert_means(devs: &[f64], experts: usize) -> Vec<f64> {
    let experts = experts.max(1);
    let segments = (devs.len() / experts).max(1) as f64;
    let mut means = vec![0.0; experts];
    for (i, d) in devs.iter().enumerate() {
        means[i % experts] += d / segments;
    }
    devs.iter()
        .enumerate()
        .map(|(i, d)| d - means[i % experts])
        .collect()
}

impl Reliability {
    /// One line for humans.
    pub fn render(&self) -> String {
        format!(
            "test-retest over {} segments ({} pairs): score r = {:.3}, within-segment r = {:.3}, beyond each expert's mean r = {:.3}, mean |Δscore| = {:.2}, same best expert {:.1}% (chance {:.1}%)",
            self.segments,
            self.pairs,
            self.score_corr,
            self.within_segment_corr,
            self.interaction_corr,
            self.mean_abs_diff,
            100.0 * self.same_best,
            100.0 * self.same_best_chance
        )
    }
}

/// Flags of `coordinator retest`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct RetestArgs {
    /// Datasets collected with `--samples 2` or more: each pair's first
    /// and second generation are compared.
    #[arg(required = true)]
    pub datasets: Vec<PathBuf>,
    /// Compare only the prompts this dataset holds, so that collections
    /// of different sizes are measured on the same segments.
    #[arg(long)]
    pub prompts_of: Option<PathBuf>,
}

/// One dataset's test-retest reliability.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RetestRow {
    /// The dataset.
    pub dataset: String,
    /// Its reliability over the compared prompts.
    #[serde(flatten)]
    pub reliability: Reliability,
}

/// `coordinator retest`: do the judged scores of each dataset repeat
/// between two generations of the same (segment, expert)? Routing by
/// quality can only learn what repeats, so this is the first thing to
/// measure of a new set of experts, sampling settings or judge.
pub fn run_retest(args: &RetestArgs) -> Result<Vec<RetestRow>, RlError> {
    let only: Option<std::collections::HashSet<String>> = args
        .prompts_of
        .as_deref()
        .map(Dataset::load)
        .transpose()?
        .map(|d| d.prompts.into_iter().map(|p| p.id).collect());
    args.datasets
        .iter()
        .map(|path| {
            let data = Dataset::load(path)?;
            let retest = Retest::from_samples(&data).ok_or_else(|| {
                RlError::Dataset(format!(
                    "{}: some (segment, expert) has a single generation; collect with --samples 2 or more",
                    path.display()
                ))
            })?;
            let prompts: Vec<usize> = (0..data.prompts.len())
                .filter(|&i| only.as_ref().is_none_or(|o| o.contains(&data.prompts[i].id)))
                .collect();
            if prompts.is_empty() {
                return Err(RlError::Dataset(format!(
                    "{}: none of its prompts is in --prompts-of",
                    path.display()
                )));
            }
            Ok(RetestRow {
                dataset: path.display().to_string(),
                reliability: retest.reliability(&data, &prompts),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rl::env::EnvConfig;

    #[test]
    fn a_dataset_retested_by_itself_is_the_hindsight_bound() {
        let d = Arc::new(Dataset::synthetic(12, 3));
        let retest = Retest::align(&d, &d).unwrap();
        let all: Vec<usize> = (0..d.prompts.len()).collect();
        let r = retest.reliability(&d, &all);
        assert!((r.within_segment_corr - 1.0).abs() < 1e-9, "{r:?}");
        assert!((r.interaction_corr - 1.0).abs() < 1e-9, "{r:?}");
        assert_eq!(r.same_best, 1.0);
        assert_eq!(r.mean_abs_diff, 0.0);
        let mut env = Env::new(d.clone(), all, EnvConfig::default(), 5).unwrap();
        for _ in 0..30 {
            let ep = env.draw();
            assert_eq!(retest.oracle_total(&env, &ep), env.upper_bound(&ep).0);
        }
    }

    #[test]
    fn an_unrelated_retest_predicts_less_and_never_beats_the_bound() {
        let d = Arc::new(Dataset::synthetic(12, 3));
        // The same segments with every segment's scores handed to the
        // experts in reverse order.
        let mut other = (*d).clone();
        for p in &mut other.prompts {
            for s in &mut p.segments {
                let rev: Vec<f64> = s.outcomes.iter().rev().map(|o| o.score).collect();
                for (o, r) in s.outcomes.iter_mut().zip(rev) {
                    o.score = r;
                }
            }
        }
        let retest = Retest::align(&d, &other).unwrap();
        let all: Vec<usize> = (0..d.prompts.len()).collect();
        assert!(retest.reliability(&d, &all).within_segment_corr < 0.999);
        let mut env = Env::new(d.clone(), all, EnvConfig::default(), 5).unwrap();
        let mut below = 0;
        for _ in 0..50 {
            let ep = env.draw();
            let (o, b) = (retest.oracle_total(&env, &ep), env.upper_bound(&ep).0);
            assert!(o <= b + 1e-9);
            below += usize::from(o < b - 1e-9);
        }
        assert!(below > 0, "other scores should mislead some episodes");
    }

    #[test]
    fn the_shipped_dataset_retests_itself_with_its_second_samples() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/routing_dataset.jsonl");
        let d = Arc::new(Dataset::load(std::path::Path::new(path)).unwrap());
        assert!(
            d.max_samples() >= 3,
            "the shipped set has 3 samples per pair"
        );
        let retest = Retest::from_samples(&d).unwrap();
        let all: Vec<usize> = (0..d.prompts.len()).collect();
        let rel = retest.reliability(&d, &all);
        assert_eq!(rel.segments, d.segments_in(&all));
        assert_eq!(rel.pairs, rel.segments * d.experts.len());
        // Other seeds wrote other passages: the scores differ.
        assert!(rel.mean_abs_diff > 0.0, "{rel:?}");
        // The oracle sees another generation, never the paid one: it can
        // not beat the hindsight bound.
        let mut env = Env::new(d.clone(), all, EnvConfig::default(), 5).unwrap();
        for _ in 0..50 {
            let ep = env.draw();
            assert!(retest.oracle_total(&env, &ep) <= env.upper_bound(&ep).0 + 1e-9);
        }
    }

    #[test]
    fn retest_measures_each_dataset_on_the_chosen_prompts() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, rows: &[crate::rl::dataset::Row]| {
            let path = dir.path().join(name);
            let text: String = rows
                .iter()
                .map(|r| serde_json::to_string(r).unwrap() + "\n")
                .collect();
            std::fs::write(&path, text).unwrap();
            path
        };
        let rows = Dataset::synthetic_rows(8, 3, 2);
        let two = write("two.jsonl", &rows);
        let one = write("one.jsonl", &Dataset::synthetic_rows(8, 3, 1));
        let firsts: Vec<_> = rows
            .iter()
            .filter(|r| ["s000", "s001", "s002"].contains(&r.prompt_id.as_str()))
            .cloned()
            .collect();
        let few = write("few.jsonl", &firsts);

        let args = |datasets: Vec<PathBuf>, prompts_of: Option<PathBuf>| RetestArgs {
            datasets,
            prompts_of,
        };
        let all = run_retest(&args(vec![two.clone()], None)).unwrap();
        let some = run_retest(&args(vec![two.clone()], Some(few.clone()))).unwrap();
        let d = Dataset::load(&two).unwrap();
        let every: Vec<usize> = (0..d.prompts.len()).collect();
        assert_eq!(all[0].reliability.segments, d.segments_in(&every));
        assert_eq!(
            some[0].reliability.segments,
            Dataset::load(&few).unwrap().segments_in(&[0, 1, 2])
        );
        assert!(some[0].reliability.segments < all[0].reliability.segments);
        assert!(all[0].reliability.mean_abs_diff > 0.0);
        let e = run_retest(&args(vec![one], None)).unwrap_err().to_string();
        assert!(e.contains("--samples 2"), "{e}");
    }

    #[test]
    fn double_centring_leaves_the_interaction() {
        // 3 segments x 2 experts: segment effects 0, 4, 8; expert effects
        // +1, -1; an interaction of +-0.5 whose rows and columns sum to 0.
        let c = [0.5, -0.5, -0.5, 0.5, 0.0, 0.0];
        let scores: Vec<f64> = (0..6)
            .map(|i| 4.0 * (i / 2) as f64 + [1.0, -1.0][i % 2] + c[i])
            .collect();
        let devs: Vec<f64> = scores
            .chunks(2)
            .flat_map(|seg| {
                let m = (seg[0] + seg[1]) / 2.0;
                seg.iter().map(move |x| x - m)
            })
            .collect();
        for (got, want) in minus_expert_means(&devs, 2).iter().zip(c) {
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
        }
    }

    #[test]
    fn a_retest_that_keeps_the_expert_means_but_flips_the_rest_is_told_apart() {
        // The retest keeps every segment's mean and every expert's mean
        // deviation and negates what is left: the experts' ranking by
        // average repeats, their per-segment luck does not.
        let d = Dataset::synthetic(12, 3);
        let all: Vec<usize> = (0..d.prompts.len()).collect();
        let itself = Retest::align(&d, &d).unwrap();
        let (devs, _) = itself.deviations(&d, &all);
        let inter = minus_expert_means(&devs, d.experts.len());
        let mut other = d.clone();
        let mut i = 0;
        for p in &mut other.prompts {
            for s in &mut p.segments {
                for o in &mut s.outcomes {
                    o.score -= 2.0 * inter[i];
                    i += 1;
                }
            }
        }
        let r = Retest::align(&d, &other).unwrap().reliability(&d, &all);
        assert!((r.interaction_corr + 1.0).abs() < 1e-9, "{r:?}");
        assert!(r.within_segment_corr > r.interaction_corr, "{r:?}");
    }

    #[test]
    fn a_retest_of_other_segments_is_refused() {
        let d = Dataset::synthetic(6, 3);
        let mut other = d.clone();
        other.prompts[2].segments[0].text.push_str(" (edited)");
        let e = Retest::align(&d, &other).unwrap_err().to_string();
        assert!(e.contains("segment 0"), "{e}");
        let mut fewer = d.clone();
        fewer.prompts.remove(1);
        let e = Retest::align(&d, &fewer).unwrap_err().to_string();
        assert!(e.contains("no prompt"), "{e}");
    }
}
