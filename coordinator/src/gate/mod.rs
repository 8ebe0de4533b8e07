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
    domains: Mutex<HashMap<String, Arc<DomainVecs>>>,
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
    #[default]
    Subjects,
}

/// The embeddings of one domain line.
#[derive(Debug)]
struct DomainVecs {
    line: Vec<f32>,
    subjects: Vec<Vec<f32>>,
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

    async fn domain_embedding(&self, domain: &str) -> Result<Arc<DomainVecs>, AnalyzerError> {
        if let Some(v) = self.domains.lock().expect("gate cache").get(domain) {
            return Ok(v.clone());
        }
        let mut texts = vec![domain.to_owned()];
        if self.scoring != Scoring::Line {
            texts.extend(
                domain_subjects(domain)
                    .iter()
                    .map(|s| format!("a story about {s}")),
            );
        }
        let mut vecs = self.embedder.embed(&texts).await?.into_iter();
        let v = Arc::new(DomainVecs {
            line: vecs.next().unwrap_or_default(),
            subjects: vecs.collect(),
        });
        let mut cache = self.domains.lock().expect("gate cache");
        // Domains come from registered nodes (at most the registry's bound);
        // a cache that somehow outgrows it starts over rather than grow.
        if cache.len() >= MAX_CACHED_DOMAINS {
            cache.clear();
        }
        cache.insert(domain.to_owned(), v.clone());
        Ok(v)
    }

    /// Scores `segments` against the experts' `domains`.
    pub async fn relevance(
        &self,
        segments: &[String],
        domains: &[&str],
    ) -> Result<Relevance, AnalyzerError> {
        let mut experts = Vec::with_capacity(domains.len());
        for d in domains {
            experts.push(self.domain_embedding(d).await?);
        }
        let score = |e: &[f32], x: &DomainVecs| {
            let line = f64::from(cosine(e, &x.line));
            let best = x
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
        let mut cos = Vec::with_capacity(segments.len());
        for e in self.embedder.embed(segments).await? {
            cos.push(experts.iter().map(|x| score(&e, x)).collect::<Vec<_>>());
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
