//! Pair features: the one function that turns a segment's candidates into
//! one feature row per (segment, node) pair. The environment builds
//! [`Candidate`]s from the dataset and calls it; the live policy calls it on
//! the candidates the pipeline built; so training and serving cannot drift.

use netmoe_common::cost::CostModel;
use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use crate::gate::MAX_SEGMENTS;
use crate::policy::{Candidate, estimate};

/// Features per (segment, node) pair.
pub const N_FEATURES: usize = 19;

/// Name of every feature, in order (for the policy JSON and for humans).
pub const FEATURE_NAMES: [&str; N_FEATURES] = [
    "relevance",
    "gate_weight_x_n",
    "relevance_minus_mean",
    "relevance_minus_max",
    "relevance_rank_fraction",
    "snr_db_over_10",
    "log10_rate_minus_4",
    "expected_compute_penalty",
    "expected_transfer_penalty_clipped",
    "log1p_expected_transfer_penalty",
    "prior_score_over_10",
    "local",
    "assigned_share",
    "position_share",
    "segments_left_share",
    "local_capacity_left",
    "cost_estimate_reward",
    "cost_estimate_reward_minus_best",
    "prior_reward_minus_best",
];

/// Transfer penalties above this are clipped in the linear feature (the
/// log feature keeps their order); reward estimates are clipped below at
/// its negative.
const TRANSFER_CLIP: f64 = 20.0;

/// What the training data says about one expert on average.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpertPrior {
    /// Expert name.
    pub name: String,
    /// True for the coordinator's own expert.
    pub local: bool,
    /// Mean judge score over the training segments.
    pub mean_score: f64,
    /// Mean words written.
    pub mean_words: f64,
    /// Mean bits on the wire (0 when local).
    pub mean_bits: f64,
}

/// Priors of every expert seen in training, with fallbacks for new ones.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExpertPriors {
    /// One per expert.
    pub experts: Vec<ExpertPrior>,
}

impl ExpertPriors {
    /// Means over the segments of `prompts` (the training split).
    pub fn from_dataset(d: &Dataset, prompts: &[usize]) -> Self {
        let experts = d
            .experts
            .iter()
            .enumerate()
            .map(|(e, info)| {
                let (mut n, mut score, mut words, mut bits) = (0.0, 0.0, 0.0, 0.0);
                for &p in prompts {
                    for s in &d.prompts[p].segments {
                        let o = &s.outcomes[e];
                        n += 1.0;
                        score += o.score;
                        words += f64::from(o.words);
                        bits += o.bits as f64;
                    }
                }
                let n = f64::max(n, 1.0);
                ExpertPrior {
                    name: info.name.clone(),
                    local: info.local,
                    mean_score: score / n,
                    mean_words: words / n,
                    mean_bits: bits / n,
                }
            })
            .collect();
        Self { experts }
    }

    /// The prior of `expert`; for an expert never seen, the mean over the
    /// seen experts of the same kind (edge or local), with `words` words at
    /// the default wire size.
    pub fn get(&self, expert: &str, local: bool, words: f64) -> ExpertPrior {
        self.get_with_wire(
            expert,
            local,
            words,
            crate::policy::DEFAULT_WIRE_BYTES_PER_WORD,
        )
    }

    /// [`Self::get`], an unseen expert's passage costing
    /// `wire_bytes_per_word` bytes per word on the wire.
    pub fn get_with_wire(
        &self,
        expert: &str,
        local: bool,
        words: f64,
        wire_bytes_per_word: f64,
    ) -> ExpertPrior {
        if let Some(p) = self.experts.iter().find(|p| p.name == expert) {
            return p.clone();
        }
        let same: Vec<&ExpertPrior> = self.experts.iter().filter(|p| p.local == local).collect();
        let mean_score = if same.is_empty() {
            5.0
        } else {
            same.iter().map(|p| p.mean_score).sum::<f64>() / same.len() as f64
        };
        ExpertPrior {
            name: expert.to_owned(),
            local,
            mean_score,
            mean_words: words,
            mean_bits: if local {
                0.0
            } else {
                words * wire_bytes_per_word * 8.0
            },
        }
    }

    /// Moves `expert`'s mean score a step `weight` (0..=1) toward `score`,
    /// an answer the judge just scored; an expert never seen joins from its
    /// fallback prior. Online learning calls this, so a node whose
    /// quality changed without any feature showing it (a swapped model)
    /// stops looking like its training record within a few answers.
    pub fn observe_score(
        &mut self,
        expert: &str,
        local: bool,
        words: f64,
        score: f64,
        weight: f64,
    ) {
        let weight = weight.clamp(0.0, 1.0);
        let score = score.clamp(0.0, 10.0);
        let i = match self.experts.iter().position(|p| p.name == expert) {
            Some(i) => i,
            None => {
                let fallback = self.get(expert, local, words);
                self.experts.push(fallback);
                self.experts.len() - 1
            }
        };
        let p = &mut self.experts[i];
        p.mean_score += weight * (score - p.mean_score);
    }

    /// `c` as the priors expect it: words and wire bytes per word of its
    /// expert's training mean when the expert is known, else the
    /// candidate's own (the live node's measured wire). Every feature reads
    /// sizes through this, so a collected row and a live request for the
    /// same segment give the same features whatever `max_tokens` was.
    pub fn informed(&self, c: &Candidate) -> Candidate {
        let p = self.get_with_wire(&c.expert, c.local, c.expected_words, c.wire_bytes_per_word);
        Candidate {
            expected_words: p.mean_words,
            wire_bytes_per_word: if c.local || p.mean_words <= 0.0 {
                c.wire_bytes_per_word
            } else {
                p.mean_bits / 8.0 / p.mean_words
            },
            ..c.clone()
        }
    }
}

/// Where in the episode (request) a segment is being assigned.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepContext {
    /// Position of this segment.
    pub position: usize,
    /// Segments of the prompt.
    pub n_segments: usize,
    /// Segments the local device can still take.
    pub local_left: usize,
}

/// Which candidates may be chosen: local ones only while the device has capacity.
pub fn available(cands: &[Candidate], local_left: usize) -> Vec<bool> {
    cands.iter().map(|c| !c.local || local_left > 0).collect()
}

/// One feature row per candidate of a segment.
///
/// `assigned[j]` is how many earlier segments of this request went to
/// candidate `j`. Expected words and bits come from the training priors for
/// known experts, else from the candidate; the transfer penalty is the one
/// cost model's λ_t · bits / Shannon rate at the candidate's SNR.
pub fn pair_features(
    cands: &[Candidate],
    assigned: &[u32],
    step: &StepContext,
    priors: &ExpertPriors,
    cost: &CostModel,
) -> Vec<[f32; N_FEATURES]> {
    let n = cands.len().max(1) as f64;
    let mean_rel = cands.iter().map(|c| c.relevance).sum::<f64>() / n;
    let max_rel = cands
        .iter()
        .map(|c| c.relevance)
        .fold(f64::NEG_INFINITY, f64::max);
    let mut order: Vec<usize> = (0..cands.len()).collect();
    order.sort_by(|&a, &b| cands[b].relevance.total_cmp(&cands[a].relevance));
    let mut rank = vec![0.0; cands.len()];
    for (r, &j) in order.iter().enumerate() {
        // Ties share the better rank.
        rank[j] = if r > 0 && cands[order[r - 1]].relevance == cands[j].relevance {
            rank[order[r - 1]]
        } else {
            r as f64
        };
    }
    let segs = step.n_segments.max(1) as f64;
    let informed: Vec<Candidate> = cands.iter().map(|c| priors.informed(c)).collect();
    // Expected reward two ways, each also relative to the segment's best
    // (so the signal does not drift with the number of candidates): the
    // routing module's `estimate` (score from relevance, the cost-aware
    // baseline's view) and the training priors (each expert's mean score).
    // `estimate` reads only the segment's lowest and highest relevance from
    // its `all` argument; passing just those two keeps this O(N), not O(N²).
    let extremes: Vec<Candidate> = [order.last(), order.first()]
        .into_iter()
        .flatten()
        .map(|&j| informed[j].clone())
        .collect();
    let est: Vec<f64> = informed
        .iter()
        .map(|c| estimate(c, &extremes, cost).reward.max(-TRANSFER_CLIP))
        .collect();
    let terms: Vec<PriorTerms> = informed
        .iter()
        .map(|c| prior_terms(c, priors, cost))
        .collect();
    let prior_reward: Vec<f64> = terms.iter().map(PriorTerms::reward).collect();
    let best = |v: &[f64]| v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (best_est, best_prior) = (best(&est), best(&prior_reward));
    cands
        .iter()
        .zip(&terms)
        .enumerate()
        .map(|(j, (c, t))| {
            let PriorTerms {
                prior,
                compute,
                snr,
                log_rate,
                transfer,
            } = t;
            let f = [
                c.relevance,
                c.gate_weight * n,
                c.relevance - mean_rel,
                c.relevance - max_rel,
                rank[j] / (n - 1.0).max(1.0),
                *snr,
                *log_rate,
                *compute,
                transfer.min(TRANSFER_CLIP),
                transfer.ln_1p(),
                prior.mean_score / 10.0,
                f64::from(u8::from(c.local)),
                f64::from(assigned.get(j).copied().unwrap_or(0)) / segs,
                step.position as f64 / segs,
                (step.n_segments.saturating_sub(step.position + 1)) as f64 / MAX_SEGMENTS as f64,
                step.local_left as f64,
                est[j],
                est[j] - best_est,
                prior_reward[j] - best_prior,
            ];
            f.map(|x| x as f32)
        })
        .collect()
}

/// What the training priors say of one candidate: its expert's prior and
/// the expected costs of a typical passage from it at the current SNR.
struct PriorTerms {
    prior: ExpertPrior,
    /// λ_c · compute cost of the prior's mean words.
    compute: f64,
    /// SNR / 10 (0 when local).
    snr: f64,
    /// log10 of the Shannon rate − 4 (0 when local).
    log_rate: f64,
    /// λ_t · seconds to send the prior's mean bits (0 when local).
    transfer: f64,
}

impl PriorTerms {
    /// Expected reward: mean score minus expected costs, clipped below.
    fn reward(&self) -> f64 {
        (self.prior.mean_score - self.compute - self.transfer).max(-TRANSFER_CLIP)
    }
}

fn prior_terms(c: &Candidate, priors: &ExpertPriors, cost: &CostModel) -> PriorTerms {
    let prior = priors.get_with_wire(&c.expert, c.local, c.expected_words, c.wire_bytes_per_word);
    let compute = cost.lambda_compute * cost.compute_cost(prior.mean_words.round() as u32);
    let (snr, log_rate, transfer) = if c.local {
        (0.0, 0.0, 0.0)
    } else {
        let t = cost.transfer(prior.mean_bits.round() as u64, c.snr_db);
        (
            c.snr_db / 10.0,
            t.rate_bps.max(1.0).log10() - 4.0,
            cost.lambda_transfer * t.seconds,
        )
    };
    PriorTerms {
        prior,
        compute,
        snr,
        log_rate,
        transfer,
    }
}

/// The expected reward of candidate `c` from the training priors alone
/// (its expert's mean score and typical passage size, the current SNR):
/// the `prior_reward` feature before it is made relative to the best.
pub fn prior_reward(c: &Candidate, priors: &ExpertPriors, cost: &CostModel) -> f64 {
    prior_terms(c, priors, cost).reward()
}

/// Per-feature standardisation fitted on training rollouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureNorm {
    /// Mean of each feature.
    pub mean: Vec<f32>,
    /// Standard deviation of each feature (floored so constants stay finite).
    pub std: Vec<f32>,
}

/// Smallest standard deviation a feature is divided by.
const MIN_STD: f64 = 1e-3;

impl FeatureNorm {
    /// The identity (mean 0, std 1).
    pub fn identity() -> Self {
        Self {
            mean: vec![0.0; N_FEATURES],
            std: vec![1.0; N_FEATURES],
        }
    }

    /// Fits mean and standard deviation of `rows`.
    pub fn fit(rows: &[[f32; N_FEATURES]]) -> Self {
        let n = rows.len().max(1) as f64;
        let mut mean = [0.0f64; N_FEATURES];
        for r in rows {
            for (m, x) in mean.iter_mut().zip(r) {
                *m += f64::from(*x) / n;
            }
        }
        let mut var = [0.0f64; N_FEATURES];
        for r in rows {
            for ((v, x), m) in var.iter_mut().zip(r).zip(&mean) {
                *v += (f64::from(*x) - m).powi(2) / n;
            }
        }
        Self {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std: var.iter().map(|&v| v.sqrt().max(MIN_STD) as f32).collect(),
        }
    }

    /// Standardises a row in place.
    pub fn apply(&self, row: &mut [f32; N_FEATURES]) {
        for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
            *x = (*x - m) / s;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cand(expert: &str, local: bool, relevance: f64, snr_db: f64) -> Candidate {
        Candidate {
            link: None,
            target: expert.into(),
            expert: expert.into(),
            local,
            relevance,
            gate_weight: relevance,
            snr_db,
            tokens_per_second: 30.0,
            load: 0.0,
            expected_words: 70.0,
            wire_bytes_per_word: if local { 0.0 } else { 14.0 },
        }
    }

    #[test]
    fn features_follow_the_cost_model_and_ranks() {
        let cost = CostModel::default();
        let priors = ExpertPriors { experts: vec![] };
        let c = [
            cand("a", false, 0.6, 0.0),
            cand("b", false, 0.4, 10.0),
            cand("local", true, 0.4, 0.0),
        ];
        let step = StepContext {
            position: 1,
            n_segments: 3,
            local_left: 1,
        };
        let f = pair_features(&c, &[1, 0, 0], &step, &priors, &cost);
        assert_eq!(f.len(), 3);
        assert_eq!(f[0][4], 0.0);
        assert_eq!(f[1][4], 0.5);
        assert_eq!(f[2][4], 0.5, "ties share a rank");
        // 70 words at 14 B/word = 7 840 bits over 10 kbit/s at 0 dB: 0.784 s, × λ_t 2.
        assert!((f[0][8] - 1.568).abs() < 1e-4, "{}", f[0][8]);
        assert_eq!(f[2][8], 0.0);
        assert!((f[0][7] - 0.7).abs() < 1e-6);
        assert!((f[0][12] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(f[2][11], 1.0);
        assert_eq!(available(&c, 0), [true, true, false]);
    }

    #[test]
    fn norm_standardises() {
        let rows = [[1.0f32; N_FEATURES], [3.0; N_FEATURES]];
        let n = FeatureNorm::fit(&rows);
        let mut r = rows[1];
        n.apply(&mut r);
        assert!((r[0] - 1.0).abs() < 1e-6);
    }
}
