//! The gate (the paper's gating network, run locally): split the prompt
//! into segments, then score each segment's relevance to each expert from
//! embeddings and turn the scores into gate weights.

mod segment;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use segment::{MAX_SEGMENTS, MIN_CLAUSE_WORDS, MIN_SEGMENT_WORDS, segment};

use crate::analyzer::{Analyzer, AnalyzerError, cosine};

/// Softmax temperature of the gate weights. Cosines of mean-pooled
/// embeddings from a small model sit in a narrow band (~0.6-0.9), so a low
/// temperature is needed for the weights to separate experts.
pub const DEFAULT_GATE_TEMPERATURE: f64 = 0.02;

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
    analyzer: Analyzer,
    temperature: f64,
    domains: Mutex<HashMap<String, Arc<Vec<f32>>>>,
}

impl Gate {
    /// A gate over the coordinator's analyzer.
    pub fn new(analyzer: Analyzer, temperature: f64) -> Self {
        Self {
            analyzer,
            temperature,
            domains: Mutex::new(HashMap::new()),
        }
    }

    async fn domain_embedding(&self, domain: &str) -> Result<Arc<Vec<f32>>, AnalyzerError> {
        if let Some(v) = self.domains.lock().expect("gate cache").get(domain) {
            return Ok(v.clone());
        }
        let v = Arc::new(self.analyzer.embed(domain).await?);
        self.domains
            .lock()
            .expect("gate cache")
            .insert(domain.to_owned(), v.clone());
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
        let mut cos = Vec::with_capacity(segments.len());
        for s in segments {
            let e = self.analyzer.embed(s).await?;
            cos.push(
                experts
                    .iter()
                    .map(|x| f64::from(cosine(&e, x)))
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
