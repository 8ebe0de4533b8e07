//! The gate (the paper's gating network, run locally): split the prompt
//! into segments, then score each segment's relevance to each expert from
//! embeddings and turn the scores into gate weights.
//!
//! - [`segment`](segment()): the deterministic prompt splitter.
//! - [`minilm`]: the sentence-embedding model (all-MiniLM-L6-v2 in candle).
//! - [`eval`]: segment-to-domain accuracy on a labelled prompt set.

pub mod eval;
pub mod minilm;
mod segment;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use segment::{MAX_SEGMENTS, MIN_CLAUSE_WORDS, MIN_SEGMENT_WORDS, segment};

pub use minilm::{MiniLm, MiniLmError};

use crate::analyzer::{Analyzer, AnalyzerError, cosine};

/// Softmax temperature of the gate weights. Cosines of mean-pooled
/// embeddings from a small model sit in a narrow band (~0.6-0.9), so a low
/// temperature is needed for the weights to separate experts.
pub const DEFAULT_GATE_TEMPERATURE: f64 = 0.02;

/// Softmax temperature with the sentence-embedding model: its cosines of a
/// segment to domain lines spread over ~0.0-0.6, so a wider temperature
/// gives weights as decisive as [`DEFAULT_GATE_TEMPERATURE`] with the
/// generative model.
pub const MINILM_GATE_TEMPERATURE: f64 = 0.05;

/// What turns texts into vectors for the gate.
#[derive(Clone)]
pub enum Embedder {
    /// all-MiniLM-L6-v2 (the default): a model trained for sentence similarity.
    MiniLm(MiniLm),
    /// Mean-pooled hidden states of the coordinator's GGUF through llama.cpp.
    Model(Analyzer),
}

impl Embedder {
    /// Short name for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::MiniLm(_) => "minilm",
            Self::Model(_) => "model",
        }
    }

    /// L2-normalised embeddings of `texts`, in order.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, AnalyzerError> {
        match self {
            Self::MiniLm(m) => {
                let m = m.clone();
                let texts = texts.to_vec();
                tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    m.embed(&refs)
                })
                .await
                .map_err(|e| AnalyzerError::Decode(e.to_string()))?
                .map_err(|e| AnalyzerError::Decode(e.to_string()))
            }
            Self::Model(a) => {
                let mut out = Vec::with_capacity(texts.len());
                for t in texts {
                    out.push(a.embed(t).await?);
                }
                Ok(out)
            }
        }
    }
}

/// Domain embeddings kept at most (the registry holds at most 1024 nodes).
const MAX_CACHED_DOMAINS: usize = 1024;

/// What the gate matches a segment against for one expert: its domain line
/// and its example premises (the profile's `domain` and `examples`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Domain {
    /// The domain line ("fantasy adventure: knights, dragons, ...").
    pub line: String,
    /// Example premises (may be empty).
    pub examples: Vec<String>,
}

impl Domain {
    /// A domain line without examples.
    pub fn line(line: impl Into<String>) -> Self {
        Self {
            line: line.into(),
            examples: Vec::new(),
        }
    }

    /// The domain an expert advertises.
    pub fn of(profile: &netmoe_proto::v1::ExpertProfile) -> Self {
        Self {
            line: profile.domain.clone(),
            examples: profile.examples.clone(),
        }
    }
}

/// Relevance of every segment to every expert.
#[derive(Debug, Clone, PartialEq)]
pub struct Relevance {
    /// `cosine[s][e]`: cosine similarity of segment `s` and expert `e`'s domain.
    pub cosine: Vec<Vec<f64>>,
    /// `weights[s][e]`: softmax of `cosine[s]` at the gate temperature; each row sums to 1.
    pub weights: Vec<Vec<f64>>,
}

/// The gate, with a cache of expert-domain embeddings (domains rarely
/// change, segments always do).
pub struct Gate {
    embedder: Embedder,
    temperature: f64,
    scoring: Scoring,
    domains: Mutex<HashMap<Domain, Arc<DomainVecs>>>,
}

/// How a segment is matched to an expert's domain line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scoring {
    /// Cosine with the whole domain line.
    Line,
    /// The mean of the cosine with the whole line and the best cosine with
    /// any one subject the line lists ("knights, dragons, wizards..."), each
    /// read as "a story about <subject>". A segment about one subject of a
    /// long list is close to that subject even when the list as a whole
    /// averages it away.
    Subjects,
    /// The cosine with the centroid of the expert's example premises; an
    /// expert without examples is scored as in [`Scoring::Subjects`]. The
    /// default: best on the gate set's tune half (see [`eval`]), ahead of
    /// [`Scoring::Blend`], the mean of the 3 nearest examples, and the
    /// centroid of examples and subjects together.
    #[default]
    Examples,
    /// The mean of the [`Scoring::Subjects`] and [`Scoring::Examples`]
    /// scores.
    Blend,
    /// [`Scoring::Examples`] after removing what every expert's examples
    /// share: the segment and each centroid have the mean of the experts'
    /// centroids subtracted before the cosine, so "a story premise" in
    /// general no longer pulls a segment toward whichever expert sits
    /// closest to the average premise.
    Centered,
    /// [`Scoring::Examples`] as a z-score against the other experts'
    /// examples: how far above a typical foreign premise the segment sits
    /// for this expert. An expert whose centroid is near every premise (a
    /// hub) no longer wins segments of other domains.
    Calibrated,
}

impl Scoring {
    /// Every scoring, for side-by-side measurement.
    pub const ALL: [Scoring; 6] = [
        Self::Line,
        Self::Subjects,
        Self::Examples,
        Self::Blend,
        Self::Centered,
        Self::Calibrated,
    ];
}

/// The embeddings of one domain.
#[derive(Debug)]
struct DomainVecs {
    line: Vec<f32>,
    subjects: Vec<Vec<f32>>,
    /// The L2-normalised mean of the examples' embeddings (`None` without
    /// examples).
    examples: Option<Vec<f32>>,
    /// The examples' embeddings.
    example_vecs: Vec<Vec<f32>>,
}

impl DomainVecs {
    /// The score of a segment embedding `e` under `scoring`.
    fn score(&self, e: &[f32], scoring: Scoring) -> f64 {
        let line = f64::from(cosine(e, &self.line));
        let subjects = || {
            let best = self
                .subjects
                .iter()
                .map(|s| f64::from(cosine(e, s)))
                .fold(f64::NEG_INFINITY, f64::max);
            if best.is_finite() {
                0.5 * (line + best)
            } else {
                line
            }
        };
        let examples = self.examples.as_ref().map(|c| f64::from(cosine(e, c)));
        match (scoring, examples) {
            (Scoring::Line, _) => line,
            (Scoring::Subjects, _) | (_, None) => subjects(),
            (Scoring::Examples | Scoring::Centered | Scoring::Calibrated, Some(x)) => x,
            (Scoring::Blend, Some(x)) => 0.5 * (subjects() + x),
        }
    }
}

/// Subjects a domain line lists: what follows a `:` (or the whole line),
/// split at commas and "and".
///
/// ```
/// # use netmoe_coordinator::gate::domain_subjects;
/// assert_eq!(
///     domain_subjects("fantasy adventure: knights, dragons and ancient kingdoms"),
///     ["knights", "dragons", "ancient kingdoms"]
/// );
/// ```
pub fn domain_subjects(domain: &str) -> Vec<String> {
    let list = domain.split_once(':').map_or(domain, |(_, rest)| rest);
    list.split(',')
        .flat_map(|p| p.split(" and "))
        .map(|p| p.trim().trim_start_matches("and ").trim().to_owned())
        .filter(|p| !p.is_empty())
        .take(MAX_SUBJECTS)
        .collect()
}

/// Subjects read per domain line at most.
const MAX_SUBJECTS: usize = 24;

impl Gate {
    /// A gate over `embedder`.
    pub fn new(embedder: Embedder, temperature: f64) -> Self {
        Self::with_scoring(embedder, temperature, Scoring::default())
    }

    /// A gate with a chosen [`Scoring`] (for comparisons).
    pub fn with_scoring(embedder: Embedder, temperature: f64, scoring: Scoring) -> Self {
        Self {
            embedder,
            temperature,
            scoring,
            domains: Mutex::new(HashMap::new()),
        }
    }

    /// The same embedder and temperature with another scoring (empty cache).
    pub fn rescored(&self, scoring: Scoring) -> Self {
        Self::with_scoring(self.embedder.clone(), self.temperature, scoring)
    }

    /// The scoring in use.
    pub fn scoring(&self) -> Scoring {
        self.scoring
    }

    /// The embedder's name.
    pub fn embedder(&self) -> &'static str {
        self.embedder.name()
    }

    async fn domain_embedding(&self, domain: &Domain) -> Result<Arc<DomainVecs>, AnalyzerError> {
        if let Some(v) = self.domains.lock().expect("gate cache").get(domain) {
            return Ok(v.clone());
        }
        let subjects: Vec<String> = if self.scoring == Scoring::Line {
            Vec::new()
        } else {
            domain_subjects(&domain.line)
                .iter()
                .map(|s| format!("a story about {s}"))
                .collect()
        };
        let examples: &[String] = match self.scoring {
            Scoring::Examples | Scoring::Blend | Scoring::Centered | Scoring::Calibrated => {
                &domain.examples
            }
            Scoring::Line | Scoring::Subjects => &[],
        };
        let mut texts = vec![domain.line.clone()];
        texts.extend(subjects.iter().cloned());
        texts.extend(examples.iter().cloned());
        let mut vecs = self.embedder.embed(&texts).await?.into_iter();
        let line = vecs.next().unwrap_or_default();
        let subjects: Vec<Vec<f32>> = vecs.by_ref().take(subjects.len()).collect();
        let examples: Vec<Vec<f32>> = vecs.collect();
        let v = Arc::new(DomainVecs {
            line,
            subjects,
            examples: centroid(&examples),
            example_vecs: examples,
        });
        let mut cache = self.domains.lock().expect("gate cache");
        // Domains come from registered nodes (at most the registry's bound);
        // a cache that somehow outgrows it starts over rather than grow.
        if cache.len() >= MAX_CACHED_DOMAINS {
            cache.clear();
        }
        cache.insert(domain.clone(), v.clone());
        Ok(v)
    }

    /// Scores `segments` against the experts' `domains`.
    pub async fn relevance(
        &self,
        segments: &[String],
        domains: &[Domain],
    ) -> Result<Relevance, AnalyzerError> {
        let mut experts = Vec::with_capacity(domains.len());
        for d in domains {
            experts.push(self.domain_embedding(d).await?);
        }
        let mut cos = Vec::with_capacity(segments.len());
        let set = SetStats::of(&experts, self.scoring);
        for e in self.embedder.embed(segments).await? {
            cos.push(
                experts
                    .iter()
                    .enumerate()
                    .map(|(i, x)| set.score(i, x, &e, self.scoring))
                    .collect::<Vec<_>>(),
            );
        }
        let weights = cos
            .iter()
            .map(|row| gate_weights(row, self.temperature))
            .collect();
        Ok(Relevance {
            cosine: cos,
            weights,
        })
    }
}

/// What [`Scoring::Centered`] and [`Scoring::Calibrated`] need to know of
/// the whole expert set.
struct SetStats {
    /// The mean of the experts' example centroids.
    mean: Option<Vec<f32>>,
    /// Per expert: mean and standard deviation of its centroid's cosine
    /// with the other experts' examples.
    foreign: Vec<Option<(f64, f64)>>,
}

impl SetStats {
    fn of(experts: &[Arc<DomainVecs>], scoring: Scoring) -> Self {
        let centroids: Vec<&Vec<f32>> =
            experts.iter().filter_map(|x| x.examples.as_ref()).collect();
        let mean = (scoring == Scoring::Centered && centroids.len() > 1).then(|| {
            let mut m = vec![0.0f32; centroids[0].len()];
            for c in &centroids {
                for (s, x) in m.iter_mut().zip(c.iter()) {
                    *s += x / centroids.len() as f32;
                }
            }
            m
        });
        let foreign = experts
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let c = x
                    .examples
                    .as_ref()
                    .filter(|_| scoring == Scoring::Calibrated)?;
                let v: Vec<f64> = experts
                    .iter()
                    .enumerate()
                    .filter(|&(j, _)| j != i)
                    .flat_map(|(_, y)| y.example_vecs.iter())
                    .map(|e| f64::from(cosine(e, c)))
                    .collect();
                if v.len() < 2 {
                    return None;
                }
                let mu = v.iter().sum::<f64>() / v.len() as f64;
                let var = v.iter().map(|x| (x - mu).powi(2)).sum::<f64>() / (v.len() - 1) as f64;
                Some((mu, var.sqrt().max(1e-6)))
            })
            .collect();
        Self { mean, foreign }
    }

    fn score(&self, i: usize, x: &DomainVecs, e: &[f32], scoring: Scoring) -> f64 {
        match (scoring, &self.mean, x.examples.as_ref(), self.foreign[i]) {
            (Scoring::Centered, Some(m), Some(c), _) => {
                let sub = |v: &[f32]| -> Vec<f32> { v.iter().zip(m).map(|(a, b)| a - b).collect() };
                f64::from(cosine(&sub(e), &sub(c)))
            }
            (Scoring::Calibrated, _, Some(c), Some((mu, sd))) => {
                (f64::from(cosine(e, c)) - mu) / sd
            }
            _ => x.score(e, scoring),
        }
    }
}

/// The L2-normalised mean of unit vectors (`None` for none).
fn centroid(vecs: &[Vec<f32>]) -> Option<Vec<f32>> {
    let first = vecs.first()?;
    let mut sum = vec![0.0f32; first.len()];
    for v in vecs {
        for (s, x) in sum.iter_mut().zip(v) {
            *s += x;
        }
    }
    Some(crate::analyzer::l2_normalised(&sum))
}

/// Softmax of `scores / temperature`.
///
/// ```
/// # use netmoe_coordinator::gate::gate_weights;
/// let w = gate_weights(&[0.80, 0.78], 0.02);
/// // e^(0.02/0.02) = e ≈ 2.718 times more weight on the first expert.
/// assert!((w[0] / w[1] - std::f64::consts::E).abs() < 1e-9);
/// assert!((w.iter().sum::<f64>() - 1.0).abs() < 1e-12);
/// ```
pub fn gate_weights(scores: &[f64], temperature: f64) -> Vec<f64> {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exps: Vec<f64> = scores
        .iter()
        .map(|s| ((s - max) / temperature).exp())
        .collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        crate::analyzer::l2_normalised(v)
    }

    #[test]
    fn examples_score_by_their_centroid_and_experts_without_fall_back_to_subjects() {
        let with = DomainVecs {
            line: unit(&[1.0, 0.0, 0.0]),
            subjects: vec![unit(&[1.0, 1.0, 0.0])],
            examples: centroid(&[unit(&[0.0, 1.0, 0.0]), unit(&[0.0, 0.0, 1.0])]),
            example_vecs: Vec::new(),
        };
        let e = unit(&[0.0, 1.0, 1.0]);
        // The centroid of the two examples is the segment's own direction.
        assert!((with.score(&e, Scoring::Examples) - 1.0).abs() < 1e-6);
        assert!(with.score(&e, Scoring::Line).abs() < 1e-6);
        let subjects = with.score(&e, Scoring::Subjects);
        assert!((subjects - 0.25).abs() < 1e-6, "{subjects}");
        let blend = with.score(&e, Scoring::Blend);
        assert!((blend - 0.625).abs() < 1e-6, "{blend}");

        let without = DomainVecs {
            examples: None,
            ..with
        };
        assert_eq!(without.score(&e, Scoring::Examples), subjects);
        assert_eq!(Scoring::default(), Scoring::Examples);
        assert!(centroid(&[]).is_none());
    }
}
