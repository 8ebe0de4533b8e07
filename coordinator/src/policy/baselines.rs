//! The baseline policies the learned one must beat: random, no-edge
//! "benchmark" (everything local), greedy by relevance, greedy by SNR, and
//! greedy by expected reward.

use rand::SeedableRng;
use rand::seq::SliceRandom;

use super::{
    Candidate, Choice, RouteContext, RoutingPolicy, SegmentView, estimate, explain, rank_by,
};

/// Ranks every segment with `value(candidate, all)` and explains the winner.
fn by_value(
    name: &str,
    segments: &[SegmentView],
    ctx: &RouteContext<'_>,
    value: impl Fn(&Candidate, &[Candidate]) -> f64,
) -> Vec<Choice> {
    segments
        .iter()
        .map(|s| {
            let values: Vec<f64> = s
                .candidates
                .iter()
                .map(|c| value(c, &s.candidates))
                .collect();
            let ranking = rank_by(&values);
            let explanation = ranking.first().map_or_else(String::new, |&b| {
                let c = &s.candidates[b];
                explain(name, c, &estimate(c, &s.candidates, ctx.cost), values[b])
            });
            Choice {
                ranking,
                values,
                explanation,
            }
        })
        .collect()
}

/// Uniformly random among edge nodes (local expert last).
#[derive(Debug, Clone, Copy, Default)]
pub struct RandomPolicy;

impl RoutingPolicy for RandomPolicy {
    fn name(&self) -> &str {
        "random"
    }
    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(ctx.seed);
        segments
            .iter()
            .map(|s| {
                let mut remote: Vec<usize> = (0..s.candidates.len())
                    .filter(|&i| !s.candidates[i].local)
                    .collect();
                remote.shuffle(&mut rng);
                let mut values = vec![0.0; s.candidates.len()];
                for (rank, &i) in remote.iter().enumerate() {
                    values[i] = (remote.len() - rank) as f64;
                }
                let ranking = rank_by(&values);
                let explanation = ranking.first().map_or_else(String::new, |&b| {
                    let c = &s.candidates[b];
                    explain(
                        "random draw",
                        c,
                        &estimate(c, &s.candidates, ctx.cost),
                        values[b],
                    )
                });
                Choice {
                    ranking,
                    values,
                    explanation,
                }
            })
            .collect()
    }
}

/// The paper's "benchmark": no edge support, everything on the local
/// expert; edge nodes by relevance only as fallback.
#[derive(Debug, Clone, Copy, Default)]
pub struct LocalOnly;

impl RoutingPolicy for LocalOnly {
    fn name(&self) -> &str {
        "local"
    }
    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice> {
        by_value("no-edge benchmark", segments, ctx, |c, _| {
            if c.local { 10.0 } else { c.gate_weight }
        })
    }
}

/// Highest gate weight.
#[derive(Debug, Clone, Copy, Default)]
pub struct GreedyRelevance;

impl RoutingPolicy for GreedyRelevance {
    fn name(&self) -> &str {
        "relevance"
    }
    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice> {
        by_value("greedy by relevance", segments, ctx, |c, _| c.gate_weight)
    }
}

/// Best channel among edge nodes (local expert last).
#[derive(Debug, Clone, Copy, Default)]
pub struct GreedySnr;

impl RoutingPolicy for GreedySnr {
    fn name(&self) -> &str {
        "snr"
    }
    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice> {
        by_value("greedy by SNR", segments, ctx, |c, _| {
            if c.local { f64::NEG_INFINITY } else { c.snr_db }
        })
    }
}

/// Highest expected reward: expected score from relevance, minus expected
/// compute and Shannon transfer cost, with a penalty for busy nodes.
#[derive(Debug, Clone, Copy, Default)]
pub struct CostAware;

/// Reward lost per unit of load (a full node's queue costs one point).
pub(crate) const LOAD_PENALTY: f64 = 1.0;

impl RoutingPolicy for CostAware {
    fn name(&self) -> &str {
        "cost"
    }
    fn route(&self, segments: &[SegmentView], ctx: &RouteContext<'_>) -> Vec<Choice> {
        by_value("cost-aware greedy", segments, ctx, |c, all| {
            estimate(c, all, ctx.cost).reward - LOAD_PENALTY * c.load
        })
    }
}

#[cfg(test)]
mod tests {
    use netmoe_common::cost::CostModel;

    use super::super::{LOCAL_TARGET, baseline};
    use super::*;

    fn cand(target: &str, relevance: f64, snr_db: f64) -> Candidate {
        Candidate {
            link: None,
            target: target.into(),
            expert: target.into(),
            local: target == LOCAL_TARGET,
            relevance,
            gate_weight: relevance,
            snr_db,
            tokens_per_second: 40.0,
            load: 0.0,
            expected_words: 70.0,
            wire_bytes_per_word: 28.0,
        }
    }

    fn view() -> Vec<SegmentView> {
        vec![SegmentView {
            index: 0,
            text: "a dragon".into(),
            candidates: vec![
                cand("fantasy", 0.9, 0.0),
                cand("scifi", 0.7, 25.0),
                cand(LOCAL_TARGET, 0.75, 0.0),
            ],
        }]
    }

    #[test]
    fn baselines_rank_as_their_names_say() {
        let cost = CostModel::default();
        let ctx = RouteContext {
            cost: &cost,
            seed: 1,
        };
        let first = |name: &str| {
            let p = baseline(name).unwrap();
            let choice = &p.route(&view(), &ctx)[0];
            assert!(!choice.explanation.is_empty());
            assert_eq!(choice.ranking.len(), 3);
            view()[0].candidates[choice.ranking[0]].target.clone()
        };
        assert_eq!(first("relevance"), "fantasy");
        assert_eq!(first("snr"), "scifi");
        assert_eq!(first("local"), LOCAL_TARGET);
        assert_eq!(first("cost"), "fantasy");
        assert_ne!(first("random"), LOCAL_TARGET);
        assert!(baseline("nope").is_none());
    }

    #[test]
    fn cost_aware_trades_relevance_against_a_bad_channel() {
        let cost = CostModel::default();
        let ctx = RouteContext {
            cost: &cost,
            seed: 1,
        };
        let mut v = view();
        // Nearly tied relevance: the far better channel wins.
        v[0].candidates = vec![cand("a", 0.80, -10.0), cand("b", 0.799, 30.0)];
        let c = &CostAware.route(&v, &ctx)[0];
        assert_eq!(v[0].candidates[c.ranking[0]].target, "b", "{c:?}");
    }

    #[test]
    fn random_is_seeded() {
        let cost = CostModel::default();
        let a = RandomPolicy.route(
            &view(),
            &RouteContext {
                cost: &cost,
                seed: 5,
            },
        );
        let b = RandomPolicy.route(
            &view(),
            &RouteContext {
                cost: &cost,
                seed: 5,
            },
        );
        assert_eq!(a, b);
    }
}
