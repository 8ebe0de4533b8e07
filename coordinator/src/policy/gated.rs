//! Top-k gating in front of any policy: a segment goes to an expert the
//! gate ranks among its `k` most relevant whenever the channel allows it,
//! and the wrapped policy chooses among the nodes that host them (channel,
//! load, cost) and orders the fallbacks.
//!
//! "The channel allows it": a kept candidate's expected cost (compute and
//! Shannon transfer at its SNR, the one cost model) exceeds that of the
//! wrapped policy's own first choice by at most [`GATE_COST_SLACK`] reward
//! points. Beyond that (a deep fade, a far node) the segment is routed as
//! the wrapped policy would route it.
//!
//! The mixture-of-experts reading of routing: the gate picks experts by
//! meaning, the router picks where they run. A learned policy left alone
//! maximises the judged reward, and where the judge cannot tell a domain
//! expert's passage from another's it has no reason to respect domains;
//! with `+gate` a user who deployed domain experts gets them, and the cost
//! in reward of that constraint is measured by `coordinator eval` beside the
//! unconstrained policy.

use super::{Choice, RouteContext, RoutingPolicy, SegmentView, estimate};

/// Suffix of a gated policy's name (`sac+gate`).
pub const GATED_SUFFIX: &str = "+gate";

/// Extra expected cost, in reward points (the judge's 0-10 scale), that
/// keeping a segment on its domain expert may take over the wrapped
/// policy's own choice: a tenth of the score range. With the default cost
/// model that is half a second more of simulated transfer for a 48-word
/// passage (against the coordinator's own expert, which has no radio: a
/// node at ~5 dB SNR or better).
pub const GATE_COST_SLACK: f64 = 1.0;

/// A policy restricted to each segment's `k` most relevant experts (`P`:
/// an `Arc<dyn RoutingPolicy>` when serving, a borrowed policy in `eval`).
pub struct GateTopK<P> {
    inner: P,
    k: usize,
    name: String,
}

impl<P: RoutingPolicy> GateTopK<P> {
    /// `inner` restricted to the `k` (at least 1) most relevant experts.
    pub fn new(inner: P, k: usize) -> Self {
        let name = format!("{}{GATED_SUFFIX}", inner.name());
        Self {
            inner,
            k: k.max(1),
            name,
        }
    }

    /// Experts the gate keeps for `v`: the `k` distinct expert names of
    /// highest relevance (ties by candidate order).
    pub fn kept(&self, v: &SegmentView) -> Vec<String> {
        let mut best: Vec<(String, f64)> = Vec::new();
        for c in &v.candidates {
            match best.iter_mut().find(|(e, _)| *e == c.expert) {
                Some((_, r)) => *r = r.max(c.relevance),
                None => best.push((c.expert.clone(), c.relevance)),
            }
        }
        best.sort_by(|a, b| b.1.total_cmp(&a.1));
        best.into_iter().take(self.k).map(|(e, _)| e).collect()
    }

    /// `c` with the kept experts' candidates the channel allows first, each
    /// group in the wrapped policy's order, and the explanation saying what
    /// the gate did.
    fn restrict(&self, v: &SegmentView, mut c: Choice, ctx: &RouteContext<'_>) -> Choice {
        let kept = self.kept(v);
        let cost: Vec<f64> = v
            .candidates
            .iter()
            .map(|x| {
                let e = estimate(x, &v.candidates, ctx.cost);
                e.score - e.reward
            })
            .collect();
        let own_first = c.ranking.first().copied();
        let reference = own_first.map_or(f64::INFINITY, |i| cost[i]);
        let allowed: Vec<bool> = v
            .candidates
            .iter()
            .zip(&cost)
            .map(|(x, &k)| kept.contains(&x.expert) && k - reference <= GATE_COST_SLACK)
            .collect();
        if !allowed.iter().any(|&a| a) {
            let why: Vec<String> = v
                .candidates
                .iter()
                .zip(&cost)
                .filter(|(x, _)| kept.contains(&x.expert))
                .map(|(x, k)| format!("{} at {:.1} dB: {k:.2}", x.target, x.snr_db))
                .collect();
            c.explanation = format!(
                "gate top-{} {:?}: the channel does not allow it (expected cost {}, more than {GATE_COST_SLACK} above {reference:.2}, that of {}'s choice); {}",
                self.k,
                kept,
                why.join(", "),
                self.inner.name(),
                c.explanation
            );
            return c;
        }
        c.ranking.sort_by_key(|&i| !allowed[i]);
        let (Some(first), Some(own)) = (c.ranking.first().copied(), own_first) else {
            return c;
        };
        let f = &v.candidates[first];
        c.explanation = if first == own {
            format!(
                "gate top-{} {:?}: {} kept; {}",
                self.k, kept, f.expert, c.explanation
            )
        } else {
            let o = &v.candidates[own];
            let value = |i: usize| c.values.get(i).copied().unwrap_or(f64::NAN);
            format!(
                "gate top-{} {:?}: {} ({}, relevance {:.3}, value {:.2}) instead of {}'s first choice {} ({}, relevance {:.3}, value {:.2})",
                self.k,
                kept,
                f.target,
                f.expert,
                f.relevance,
                value(first),
                self.inner.name(),
                o.target,
                o.expert,
                o.relevance,
                value(own)
            )
        };
        c
    }
}

impl<P: RoutingPolicy> RoutingPolicy for GateTopK<P> {
    fn name(&self) -> &str {
        &self.name
    }

    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice> {
        self.route_decided(segments, ctx).0
    }

    fn route_decided(
        &self,
        segments: &[SegmentView],
        ctx: &RouteContext<'_>,
    ) -> (Vec<Choice>, String) {
        let (choices, by) = self.inner.route_decided(segments, ctx);
        let choices = segments
            .iter()
            .zip(choices)
            .map(|(v, c)| self.restrict(v, c, ctx))
            .collect();
        (choices, format!("{by}{GATED_SUFFIX}"))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::policy::{Candidate, baseline};
    use netmoe_common::cost::CostModel;

    fn cand(target: &str, expert: &str, relevance: f64, snr_db: f64) -> Candidate {
        Candidate {
            target: target.into(),
            expert: expert.into(),
            local: false,
            relevance,
            gate_weight: 0.0,
            snr_db,
            tokens_per_second: 20.0,
            load: 0.0,
            expected_words: 48.0,
            wire_bytes_per_word: 28.0,
            link: None,
        }
    }

    #[test]
    fn the_gated_policy_keeps_the_most_relevant_experts_first_in_the_inner_order() {
        // The SNR baseline prefers the scifi node; the gate keeps fantasy
        // (two nodes, the better channel first) and falls back to the rest.
        let view = SegmentView {
            index: 0,
            text: "a knight rides out to face a dragon".into(),
            candidates: vec![
                cand("a", "fantasy", 0.55, 5.0),
                cand("b", "scifi", 0.20, 30.0),
                cand("c", "fantasy", 0.55, 15.0),
                cand("d", "nature", 0.10, 25.0),
            ],
        };
        let cost = CostModel::default();
        let ctx = RouteContext {
            cost: &cost,
            seed: 1,
        };
        let snr: Arc<dyn RoutingPolicy> = Arc::from(baseline("snr").unwrap());
        let plain = snr.route(std::slice::from_ref(&view), &ctx);
        assert_eq!(plain[0].ranking, [1, 3, 2, 0]);

        let gated = GateTopK::new(snr.clone(), 1);
        let (c, by) = gated.route_decided(std::slice::from_ref(&view), &ctx);
        assert_eq!(by, "snr+gate");
        assert_eq!(gated.name(), "snr+gate");
        assert_eq!(c[0].ranking, [2, 0, 1, 3]);
        assert!(
            c[0].explanation.contains("instead of snr's first choice b"),
            "{}",
            c[0].explanation
        );

        let two = GateTopK::new(snr.clone(), 2);
        assert_eq!(two.kept(&view), ["fantasy", "scifi"]);
        assert_eq!(
            two.route(std::slice::from_ref(&view), &ctx)[0].ranking,
            [1, 2, 0, 3]
        );

        // In a deep fade (-10 dB: ~8 s of simulated transfer) the channel
        // does not allow the domain expert: the inner ranking stands.
        let mut faded = view.clone();
        faded.candidates[0].snr_db = -10.0;
        faded.candidates[2].snr_db = -10.0;
        let c = gated.route(std::slice::from_ref(&faded), &ctx);
        assert_eq!(
            c[0].ranking,
            snr.route(std::slice::from_ref(&faded), &ctx)[0].ranking
        );
        assert!(
            c[0].explanation.contains("does not allow"),
            "{}",
            c[0].explanation
        );
    }
}
