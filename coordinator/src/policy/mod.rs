//! Routing: which expert takes each segment. A policy ranks every
//! candidate (edge node or the coordinator's own local expert) for every
//! segment; dispatch takes the first and falls back down the ranking.
//!
//! Candidates carry per-(segment, node) features, so a policy that scores
//! pairs with shared weights works for any number of nodes.

mod baselines;
mod gated;

use netmoe_common::cost::CostModel;

pub use baselines::{CostAware, GreedyRelevance, GreedySnr, LocalOnly, RandomPolicy};
pub use gated::{GATE_COST_SLACK, GATED_SUFFIX, GateTopK};

/// Target name of the coordinator's own expert.
pub const LOCAL_TARGET: &str = "local";
/// Score expected of the least relevant candidate of a segment; the most
/// relevant is expected to reach 10 (a prior, until a learned policy
/// replaces it with what it saw).
pub const SCORE_FLOOR: f64 = 5.0;
/// Bytes on the wire per generated word, both ways, before a node has
/// served anything: the request's share plus the text travelling twice
/// (pieces, then the final message) with per-piece framing. Once a node
/// has answered, its candidates carry the mean the coordinator measured on
/// its own wire ([`crate::registry::NodeEntry::wire_bytes_per_word`]); a
/// learned policy uses what its training data measured per expert. A unit
/// test keeps this within 15% of the shipped dataset's measurement.
pub const DEFAULT_WIRE_BYTES_PER_WORD: f64 = 28.0;
/// Words per generated token of the default model's English text.
pub const WORDS_PER_TOKEN: f64 = 0.75;

/// One option for one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Node id, or [`LOCAL_TARGET`].
    pub target: String,
    /// Expert name.
    pub expert: String,
    /// True for the coordinator's own expert (no radio transfer).
    pub local: bool,
    /// Cosine similarity of segment and expert domain.
    pub relevance: f64,
    /// Gate weight (softmax over this segment's candidates).
    pub gate_weight: f64,
    /// Latest reported SNR, dB (meaningless when `local`).
    pub snr_db: f64,
    /// Latest generation speed.
    pub tokens_per_second: f64,
    /// (active + queued) / slots.
    pub load: f64,
    /// Words the expert is expected to write.
    pub expected_words: f64,
    /// Bytes on the wire (both ways) per word it writes, as measured on
    /// this node's link (0 when local).
    pub wire_bytes_per_word: f64,
    /// The node's link as last probed (None: local, or not probed yet).
    pub link: Option<MeasuredLink>,
}

/// What the latest probe measured of a node's link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeasuredLink {
    /// Payload goodput node → coordinator, bits/s.
    pub goodput_bps: f64,
    /// Echo round trip, seconds.
    pub rtt_s: f64,
}

impl MeasuredLink {
    /// From a successful probe.
    pub fn from_probe(p: &netmoe_proto::v1::LinkProbe) -> Option<Self> {
        (p.ok && p.down_goodput_bps > 0.0).then(|| Self {
            goodput_bps: p.down_goodput_bps,
            rtt_s: p.echo_rtt_ms / 1e3,
        })
    }

    /// Seconds `bits` take on this link: one round trip plus bits over
    /// the goodput.
    pub fn seconds(&self, bits: u64) -> f64 {
        self.rtt_s + bits as f64 / self.goodput_bps
    }
}

/// A segment and its candidates.
#[derive(Debug, Clone)]
pub struct SegmentView {
    /// Position in the prompt.
    pub index: usize,
    /// The segment text.
    pub text: String,
    /// Options, in a stable order.
    pub candidates: Vec<Candidate>,
}

/// What a candidate is expected to bring and cost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// Expected judge score.
    pub score: f64,
    /// Expected κ_c · words.
    pub compute_cost: f64,
    /// Shannon rate at the reported SNR (0 when local).
    pub rate_bps: f64,
    /// Expected simulated transfer seconds.
    pub transfer_s: f64,
    /// Expected reward.
    pub reward: f64,
}

/// Expected score and costs of `c` among `all` candidates of its segment.
pub fn estimate(c: &Candidate, all: &[Candidate], cost: &CostModel) -> Estimate {
    let (lo, hi) = all
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), x| {
            (lo.min(x.relevance), hi.max(x.relevance))
        });
    let norm = if hi > lo {
        (c.relevance - lo) / (hi - lo)
    } else {
        1.0
    };
    let score = SCORE_FLOOR + (10.0 - SCORE_FLOOR) * norm;
    let words = c.expected_words.max(0.0).round() as u32;
    let bits = if c.local {
        0
    } else {
        (c.expected_words * c.wire_bytes_per_word * 8.0) as u64
    };
    let r = cost.reward(score, words, bits, c.snr_db);
    // The router sees the worse of the channel model and the measured
    // wire: a link slower than its SNR promises (congestion, a bad cable,
    // netem) costs what it really costs.
    let extra = match (c.local, c.link) {
        (false, Some(l)) => (l.seconds(bits) - r.transfer.seconds).max(0.0),
        _ => 0.0,
    };
    Estimate {
        score,
        compute_cost: r.compute_cost,
        rate_bps: if c.local { 0.0 } else { r.transfer.rate_bps },
        transfer_s: r.transfer.seconds + extra,
        reward: r.reward - cost.lambda_transfer * extra,
    }
}

/// A policy's ranking for one segment.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    /// Candidate indices, best first; dispatch falls back in this order.
    pub ranking: Vec<usize>,
    /// The policy's value of each candidate (by candidate index).
    pub values: Vec<f64>,
    /// Why the first candidate won, in words.
    pub explanation: String,
}

/// Inputs every policy may use beyond the segments.
#[derive(Debug, Clone, Copy)]
pub struct RouteContext<'a> {
    /// The cost model.
    pub cost: &'a CostModel,
    /// Seed for policies that draw.
    pub seed: u64,
}

/// A routing policy.
pub trait RoutingPolicy: Send + Sync {
    /// Short name (`random`, `local`, `relevance`, `snr`, `cost`, ...).
    fn name(&self) -> &str;
    /// Ranks the candidates of every segment.
    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice>;
    /// Ranks as [`route`](Self::route) does and names the policy that
    /// really decided: one that fell back to another says which, so an
    /// answer never claims a decision its policy did not make.
    fn route_decided(
        &self,
        segments: &[SegmentView],
        ctx: &RouteContext<'_>,
    ) -> (Vec<Choice>, String) {
        (self.route(segments, ctx), self.name().to_owned())
    }
}

/// A shared policy routes as the policy it holds.
impl<T: RoutingPolicy + ?Sized> RoutingPolicy for std::sync::Arc<T> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice> {
        (**self).route(segments, ctx)
    }
    fn route_decided(
        &self,
        segments: &[SegmentView],
        ctx: &RouteContext<'_>,
    ) -> (Vec<Choice>, String) {
        (**self).route_decided(segments, ctx)
    }
}

/// A borrowed policy routes as the policy it borrows.
impl<T: RoutingPolicy + ?Sized> RoutingPolicy for &T {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice> {
        (**self).route(segments, ctx)
    }
    fn route_decided(
        &self,
        segments: &[SegmentView],
        ctx: &RouteContext<'_>,
    ) -> (Vec<Choice>, String) {
        (**self).route_decided(segments, ctx)
    }
}

/// Names of the built-in policies.
pub const BASELINES: &[&str] = &["random", "local", "relevance", "snr", "cost"];

/// A built-in policy by name.
pub fn baseline(name: &str) -> Option<Box<dyn RoutingPolicy>> {
    Some(match name {
        "random" => Box::new(RandomPolicy),
        "local" => Box::new(LocalOnly),
        "relevance" => Box::new(GreedyRelevance),
        "snr" => Box::new(GreedySnr),
        "cost" => Box::new(CostAware),
        _ => return None,
    })
}

/// Ranks candidate indices by `values`, highest first (ties by index).
pub fn rank_by(values: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx
}

/// The standard explanation: the terms that made the decision.
pub fn explain(policy: &str, c: &Candidate, e: &Estimate, value: f64) -> String {
    let radio = if c.local {
        "on the coordinator itself (no radio)".to_owned()
    } else {
        format!(
            "SNR {:.1} dB (Shannon {:.1} kbit/s), expected transfer {:.3} s",
            c.snr_db,
            e.rate_bps / 1000.0,
            e.transfer_s
        )
    };
    format!(
        "{policy}: {} ({}) with relevance {:.3} (gate weight {:.2}), {radio}, expected compute {:.2}; value {:.2}",
        c.target, c.expert, c.relevance, c.gate_weight, e.compute_cost, value
    )
}
