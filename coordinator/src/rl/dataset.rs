//! The routing dataset `coordinator collect` writes (one JSONL row per
//! prompt, segment and expert), grouped prompt → segment → per-expert
//! outcome, with a seeded train/held-out split by prompt; and a small
//! synthetic generator of the same shape for tests and benches.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

use super::RlError;

/// Where `coordinator collect` writes the dataset, relative to the repository root.
pub const DEFAULT_DATASET: &str = "coordinator/data/routing_dataset.jsonl";
/// Share of prompts used for training; the rest are held out.
pub const DEFAULT_TRAIN_FRACTION: f64 = 0.75;
/// Seed of the train/held-out split.
pub const DEFAULT_SPLIT_SEED: u64 = 17;

/// One JSONL row: the row `coordinator collect` writes.
pub use crate::collect::DatasetRow as Row;

/// An expert of the dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpertInfo {
    /// Its name.
    pub name: String,
    /// True for the coordinator's own expert.
    pub local: bool,
}

/// What one expert did with one segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Gate cosine of segment and expert domain.
    pub relevance: f64,
    /// Gate weight among the dataset's experts.
    pub gate_weight: f64,
    /// Judge score, 0-10.
    pub score: f64,
    /// Words written.
    pub words: u32,
    /// Bits on the wire, both ways (0 for the local expert).
    pub bits: u64,
    /// Tokens generated.
    pub generated_tokens: u32,
    /// Generation seconds.
    pub generation_s: f64,
}

/// One segment and every expert's outcome on it.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentData {
    /// Position in the prompt.
    pub index: usize,
    /// The segment text.
    pub text: String,
    /// Expected outcome per expert (the mean over its samples), indexed
    /// like [`Dataset::experts`]: what a router can hope to learn.
    pub outcomes: Vec<Outcome>,
    /// Every generation of each expert (at least one), indexed like
    /// [`Dataset::experts`]: the environment pays one of them per step.
    pub samples: Vec<Vec<Outcome>>,
}

impl Outcome {
    /// The mean of `samples` (relevance and gate weight are the gate's,
    /// the same for every sample).
    pub fn mean(samples: &[Outcome]) -> Outcome {
        let n = samples.len().max(1) as f64;
        let avg = |f: &dyn Fn(&Outcome) -> f64| samples.iter().map(f).sum::<f64>() / n;
        Outcome {
            relevance: samples.first().map_or(0.0, |o| o.relevance),
            gate_weight: samples.first().map_or(0.0, |o| o.gate_weight),
            score: avg(&|o| o.score),
            words: avg(&|o| f64::from(o.words)).round() as u32,
            bits: avg(&|o| o.bits as f64).round() as u64,
            generated_tokens: avg(&|o| f64::from(o.generated_tokens)).round() as u32,
            generation_s: avg(&|o| o.generation_s),
        }
    }
}

/// One prompt and its segments, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct PromptData {
    /// Prompt id.
    pub id: String,
    /// The prompt.
    pub text: String,
    /// Its segments, each with every expert's outcome.
    pub segments: Vec<SegmentData>,
}

/// The dataset, grouped.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Where it came from (a path, or `synthetic(...)`).
    pub source: String,
    /// Edge experts by name, then the local expert(s).
    pub experts: Vec<ExpertInfo>,
    /// Prompts in id order.
    pub prompts: Vec<PromptData>,
    /// Segments dropped because some expert had no row for them.
    pub dropped_segments: usize,
}

/// Prompt indices of the training and held-out sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Prompts to train on.
    pub train: Vec<usize>,
    /// Prompts never seen in training.
    pub held_out: Vec<usize>,
}

impl Dataset {
    /// Reads a JSONL dataset.
    pub fn load(path: &Path) -> Result<Self, RlError> {
        let text = std::fs::read_to_string(path).map_err(|e| RlError::io(path, e))?;
        let name = path.display().to_string();
        let mut rows = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let row: Row = serde_json::from_str(line).map_err(|e| RlError::DatasetRow {
                path: name.clone(),
                line: i + 1,
                message: e.to_string(),
            })?;
            rows.push(row);
        }
        Self::from_rows(name, &rows)
    }

    /// Groups rows; segments some expert is missing from are dropped (and
    /// counted), prompts left without segments are dropped.
    pub fn from_rows(source: String, rows: &[Row]) -> Result<Self, RlError> {
        let mut kinds: BTreeMap<&str, bool> = BTreeMap::new();
        for r in rows {
            if !(0.0..=10.0).contains(&r.score) || !r.relevance.is_finite() {
                return Err(RlError::Dataset(format!(
                    "prompt {} segment {} expert {}: score {} or relevance {} out of range",
                    r.prompt_id, r.segment_index, r.expert, r.score, r.relevance
                )));
            }
            kinds.insert(&r.expert, r.local);
        }
        // Edge experts by name, then local ones: a stable node order.
        let mut experts: Vec<ExpertInfo> = kinds
            .iter()
            .map(|(n, &l)| ExpertInfo {
                name: (*n).to_owned(),
                local: l,
            })
            .collect();
        experts.sort_by_key(|e| e.local);
        let index: HashMap<&str, usize> = experts
            .iter()
            .enumerate()
            .map(|(i, e)| (e.name.as_str(), i))
            .collect();
        // prompt id → (prompt text, segment index → (segment text, outcome per expert))
        type Segments<'a> = BTreeMap<u32, (&'a str, Vec<Vec<Outcome>>)>;
        let mut grouped: BTreeMap<&str, (&str, Segments<'_>)> = BTreeMap::new();
        for r in rows {
            let prompt = grouped
                .entry(&r.prompt_id)
                .or_insert_with(|| (&r.prompt, BTreeMap::new()));
            let seg = prompt
                .1
                .entry(r.segment_index)
                .or_insert_with(|| (&r.segment, vec![Vec::new(); experts.len()]));
            seg.1[index[r.expert.as_str()]].push(Outcome {
                relevance: r.relevance,
                gate_weight: r.gate_weight,
                score: r.score,
                words: r.words,
                bits: if r.local {
                    0
                } else {
                    (r.bytes_up + r.bytes_down) * 8
                },
                generated_tokens: r.generated_tokens,
                generation_s: r.generation_s,
            });
        }
        let mut dropped_segments = 0;
        let mut prompts = Vec::new();
        for (id, (text, segs)) in grouped {
            let mut segments = Vec::new();
            for (_, (seg_text, samples)) in segs {
                if samples.iter().any(Vec::is_empty) {
                    dropped_segments += 1;
                    continue;
                }
                segments.push(SegmentData {
                    index: segments.len(),
                    text: seg_text.to_owned(),
                    outcomes: samples.iter().map(|s| Outcome::mean(s)).collect(),
                    samples,
                });
            }
            if !segments.is_empty() {
                prompts.push(PromptData {
                    id: id.to_owned(),
                    text: text.to_owned(),
                    segments,
                });
            }
        }
        if prompts.len() < 2 {
            return Err(RlError::Dataset(format!(
                "{source}: {} usable prompts; at least 2 are needed for a split",
                prompts.len()
            )));
        }
        if !experts.iter().any(|e| !e.local) {
            return Err(RlError::Dataset(format!("{source}: no edge experts")));
        }
        Ok(Self {
            source,
            experts,
            prompts,
            dropped_segments,
        })
    }

    /// The training data: the seeded synthetic set when asked for it, else
    /// `path`, which must exist.
    pub fn for_training(path: &Path, synthetic: bool, seed: u64) -> Result<Self, RlError> {
        if synthetic {
            tracing::info!("training on the seeded synthetic dataset (--synthetic)");
            return Ok(Self::synthetic(DEFAULT_SYNTHETIC_PROMPTS, seed));
        }
        if !path.exists() {
            // A silent fallback would train on made-up data and report it
            // as if it were the cluster's.
            return Err(RlError::InvalidArgument(format!(
                "no routing dataset at {}: run `coordinator collect --out {}` first, or pass --synthetic to train on the seeded synthetic set",
                path.display(),
                path.display()
            )));
        }
        Self::load(path)
    }

    /// Splits prompts (not rows) into train and held-out, seeded; each side
    /// gets at least one prompt.
    pub fn split(&self, train_fraction: f64, seed: u64) -> Split {
        let mut idx: Vec<usize> = (0..self.prompts.len()).collect();
        idx.shuffle(&mut StdRng::seed_from_u64(seed));
        let n = self.prompts.len();
        let k = ((n as f64 * train_fraction).round() as usize).clamp(1, n - 1);
        let mut train = idx[..k].to_vec();
        let mut held_out = idx[k..].to_vec();
        train.sort_unstable();
        held_out.sort_unstable();
        Split { train, held_out }
    }

    /// Index of the first local expert, if any.
    pub fn local_expert(&self) -> Option<usize> {
        self.experts.iter().position(|e| e.local)
    }

    /// Indices of the edge experts.
    pub fn edge_experts(&self) -> Vec<usize> {
        (0..self.experts.len())
            .filter(|&e| !self.experts[e].local)
            .collect()
    }

    /// The most samples any (segment, expert) pair has.
    pub fn max_samples(&self) -> usize {
        self.prompts
            .iter()
            .flat_map(|p| &p.segments)
            .flat_map(|s| s.samples.iter().map(Vec::len))
            .max()
            .unwrap_or(0)
    }

    /// Number of segments over `prompts`.
    pub fn segments_in(&self, prompts: &[usize]) -> usize {
        prompts
            .iter()
            .map(|&p| self.prompts[p].segments.len())
            .sum()
    }
}

/// Prompts of the synthetic dataset used when no real one exists.
pub const DEFAULT_SYNTHETIC_PROMPTS: usize = 64;

/// A synthetic dataset shaped like the collected one: experts `fantasy`,
/// `scifi`, `nature` (edge) and `local` (a generalist); each segment has a
/// hidden topic; relevance is higher for the matching expert; scores follow
/// relevance plus judge noise; word counts and bytes are per expert.
/// For tests and benches only: its numbers say nothing about real experts.
pub fn synthetic(n_prompts: usize, seed: u64) -> Dataset {
    Dataset::synthetic(n_prompts, seed)
}

impl Dataset {
    /// See [`synthetic`].
    pub fn synthetic(n_prompts: usize, seed: u64) -> Self {
        Self::synthetic_sampled(n_prompts, seed, 1)
    }

    /// [`synthetic`] with `samples` generations of each (segment, expert):
    /// the first is the single-sample set's, the others redraw the judge
    /// noise and the length.
    pub fn synthetic_sampled(n_prompts: usize, seed: u64, samples: u32) -> Self {
        Self::from_rows(
            format!("synthetic({n_prompts}, seed {seed})"),
            &Self::synthetic_rows(n_prompts, seed, samples),
        )
        .expect("the synthetic rows are complete")
    }

    /// The rows of [`Dataset::synthetic_sampled`], as `collect` would write them.
    pub fn synthetic_rows(n_prompts: usize, seed: u64, samples: u32) -> Vec<Row> {
        let mut rng = StdRng::seed_from_u64(seed);
        let noise = |sd: f64| Normal::new(0.0, sd).expect("finite sd");
        let names = ["fantasy", "scifi", "nature", "local"];
        let mean_words = [72.0, 64.0, 58.0, 70.0];
        let mut rows = Vec::new();
        for p in 0..n_prompts.max(2) {
            let n_segments: u32 = [1, 2, 2, 3, 3, 3, 4, 4][rng.random_range(0..8)];
            let id = format!("s{p:03}");
            for s in 0..n_segments {
                let topic = rng.random_range(0..3usize);
                let mut rel = [0.0f64; 4];
                for (e, r) in rel.iter_mut().enumerate() {
                    *r = match e {
                        3 => 0.33 + noise(0.04).sample(&mut rng),
                        _ if e == topic => 0.55 + noise(0.08).sample(&mut rng),
                        _ => 0.25 + noise(0.08).sample(&mut rng),
                    };
                }
                let max = rel.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let exps: Vec<f64> = rel.iter().map(|r| ((r - max) / 0.02).exp()).collect();
                let z: f64 = exps.iter().sum();
                for (e, k) in (0..4).flat_map(|e| (0..samples.max(1)).map(move |k| (e, k))) {
                    let local = e == 3;
                    let score = if local {
                        6.2 + noise(0.5).sample(&mut rng)
                    } else {
                        4.8 + 7.0 * (rel[e] - 0.25) + noise(0.5).sample(&mut rng)
                    };
                    let words = (mean_words[e] + noise(6.0).sample(&mut rng)).max(10.0) as u32;
                    rows.push(Row {
                        prompt_id: id.clone(),
                        prompt: format!("synthetic prompt {p}"),
                        n_segments,
                        segment_index: s,
                        segment: format!("synthetic segment {s} on topic {topic}"),
                        sample: k,
                        expert: names[e].to_owned(),
                        local,
                        relevance: rel[e],
                        gate_weight: exps[e] / z,
                        score: score.clamp(0.0, 10.0),
                        words,
                        generated_tokens: (f64::from(words) / 0.75) as u32,
                        generation_s: f64::from(words) / 30.0,
                        bytes_up: if local { 0 } else { 250 },
                        bytes_down: if local { 0 } else { u64::from(words) * 12 },
                        prompt_tokens: 60,
                        prompt_eval_s: 0.2,
                        text: String::new(),
                    });
                }
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_rows_and_orders_edge_experts_first() {
        let d = Dataset::synthetic(10, 1);
        assert_eq!(d.prompts.len(), 10);
        let names: Vec<_> = d.experts.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["fantasy", "nature", "scifi", "local"]);
        assert_eq!(d.local_expert(), Some(3));
        for p in &d.prompts {
            for (i, s) in p.segments.iter().enumerate() {
                assert_eq!(s.index, i);
                assert_eq!(s.outcomes.len(), 4);
                assert_eq!(s.outcomes[3].bits, 0);
                assert!(s.outcomes[0].bits > 0);
            }
        }
    }

    #[test]
    fn split_is_by_prompt_seeded_and_disjoint() {
        let d = Dataset::synthetic(20, 1);
        let a = d.split(0.75, 3);
        assert_eq!(a, d.split(0.75, 3));
        assert_ne!(a, d.split(0.75, 4));
        assert_eq!(a.train.len(), 15);
        assert_eq!(a.held_out.len(), 5);
        assert!(a.train.iter().all(|p| !a.held_out.contains(p)));
    }

    #[test]
    fn parses_collect_rows_and_drops_incomplete_segments() {
        let line = |seg: u32, expert: &str, local: bool| {
            format!(
                r#"{{"prompt_id":"p001","prompt":"x","n_segments":2,"segment_index":{seg},"segment":"s","expert":"{expert}","local":{local},"relevance":0.75,"gate_weight":0.6,"score":7.2,"words":70,"generated_tokens":96,"prompt_tokens":80,"prompt_eval_s":0.2,"generation_s":1.2,"bytes_up":400,"bytes_down":2000,"text":"t"}}"#
            )
        };
        let mut text = [
            line(0, "fantasy", false),
            line(0, "local", true),
            line(1, "fantasy", false),
        ]
        .join("\n");
        text.push('\n');
        text.push_str(&line(0, "fantasy", false).replace("p001", "p002"));
        text.push('\n');
        text.push_str(&line(0, "local", true).replace("p001", "p002"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(&path, text).unwrap();
        let d = Dataset::load(&path).unwrap();
        assert_eq!(d.prompts.len(), 2);
        assert_eq!(d.dropped_segments, 1);
        assert_eq!(d.prompts[0].segments[0].outcomes[0].bits, 2400 * 8);
        std::fs::write(&path, "{not json").unwrap();
        assert!(matches!(
            Dataset::load(&path),
            Err(RlError::DatasetRow { line: 1, .. })
        ));
    }
}

/// Arbitrary and mutated dataset files: a dataset or a named error.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const SHIPPED: &str = include_str!("../../data/routing_dataset.jsonl");

    fn load_text(text: &str) -> Result<Dataset, RlError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("d.jsonl");
        std::fs::write(&path, text).expect("write");
        Dataset::load(&path)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_text_is_a_dataset_or_an_error(text in "(\\{.{0,200}\\}\n){0,4}") {
            let _ = load_text(&text);
        }

        #[test]
        fn mutated_datasets_are_a_dataset_or_an_error(
            lines in 1usize..40,
            at in 0usize..4000,
            junk in "[ -~]{0,12}",
        ) {
            let mut s: String = SHIPPED.lines().take(lines).collect::<Vec<_>>().join("\n");
            let at = at.min(s.len());
            if s.is_char_boundary(at) {
                s.insert_str(at, &junk);
            }
            let _ = load_text(&s);
        }
    }
}
