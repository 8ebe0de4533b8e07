//! Every method on one episode: any [`RoutingPolicy`] (the baselines and
//! the SAC policy alike) sees the segment views the live pipeline would
//! build and ranks candidates once; the episode then takes, per segment,
//! the best-ranked node still available (the local device only while it
//! has capacity). Plus a planner on the training priors, the paper's
//! unconstrained no-edge benchmark and the upper bound.

use super::RlError;
use super::env::{Env, Episode, EpisodeState};
use super::features::{ExpertPriors, prior_reward};
use crate::policy::{BASELINES, RouteContext, RoutingPolicy, baseline};

/// Name of the upper bound in tables.
pub const BOUND: &str = "hindsight bound";
/// Name of the non-clairvoyant reference ([`super::env::Env::mean_score_bound`]).
pub const MEAN_SCORE_BOUND: &str = "mean-score bound";
/// Name of the expected-value bound ([`super::env::Env::expected_bound`]).
pub const EXPECTED_BOUND: &str = "expected bound";
/// Name of the cross-fitted expected-value bound
/// ([`super::env::Env::cross_fitted_bound`]).
pub const CROSS_FITTED_BOUND: &str = "cross-fit bound";
/// Name of the paper's "benchmark" run without the local capacity limit:
/// every segment on the local device. It ignores the capacity every other
/// method (and the bound) respects, so it is shown, not competed with.
pub const LOCAL_ALL: &str = "local-all*";

/// Name of [`prior_planner`] in tables.
pub const PRIOR_PLANNER: &str = "prior planner";

/// Exhaustive search (local capacity respected) on each candidate's
/// expected reward from the training priors: what SAC's features know,
/// planned by hand instead of learned. A method like the baselines (it
/// sees nothing a live router could not), so SAC is compared with it.
pub fn prior_planner(env: &Env, ep: &Episode, priors: &ExpertPriors) -> f64 {
    let views = env.views(ep);
    let cost = &env.config().cost;
    let choices = env.best_assignment(ep, |s, j| {
        prior_reward(&views[s].candidates[j], priors, cost)
    });
    env.total(ep, &choices)
}

/// The baselines of the routing trait, by name.
pub fn baselines() -> Vec<(String, Box<dyn RoutingPolicy>)> {
    BASELINES
        .iter()
        .filter_map(|n| baseline(n).map(|p| ((*n).to_owned(), p)))
        .collect()
}

/// Runs `policy` on `ep`: one `route` call over all segment views (as
/// live), then each segment goes to its best-ranked available node.
pub fn policy_episode(
    env: &Env,
    ep: &Episode,
    policy: &dyn RoutingPolicy,
) -> Result<EpisodeState, RlError> {
    let views = env.views(ep);
    let ctx = RouteContext {
        cost: &env.config().cost,
        seed: ep.seed,
    };
    let choices = policy.route(&views, &ctx);
    env.rollout(ep, |st, mask| {
        choices
            .get(st.position)
            .and_then(|c| {
                c.ranking
                    .iter()
                    .copied()
                    .find(|&j| mask.get(j) == Some(&true))
            })
            .unwrap_or_else(|| mask.iter().position(|&m| m).unwrap_or(0))
    })
}

/// Segments of an episode served by their most relevant expert (the
/// gate's top candidate), and segments assigned: how far a method follows
/// the domains.
pub fn on_top_expert(env: &Env, ep: &Episode, st: &EpisodeState) -> (usize, usize) {
    let views = env.views(ep);
    let hits = views
        .iter()
        .zip(&st.choices)
        .filter(|(v, j)| {
            // The first of equally relevant candidates, as the gate keeps.
            let top = v
                .candidates
                .iter()
                .reduce(|best, c| {
                    if c.relevance > best.relevance {
                        c
                    } else {
                        best
                    }
                })
                .map(|c| c.expert.as_str());
            v.candidates.get(**j).map(|c| c.expert.as_str()) == top
        })
        .count();
    (hits, st.choices.len().min(views.len()))
}

/// Every segment on the local device, ignoring its capacity (the paper's
/// no-edge benchmark); `None` without a local device.
pub fn local_all(env: &Env, ep: &Episode) -> Option<f64> {
    let l = env.nodes().iter().position(|n| n.local)?;
    Some((0..env.n_segments(ep)).map(|s| env.reward(ep, s, l)).sum())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rl::dataset::Dataset;
    use crate::rl::env::EnvConfig;

    #[test]
    fn no_method_beats_the_bound_and_all_respect_capacity() {
        let d = Arc::new(Dataset::synthetic(10, 2));
        let mut env = Env::new(d.clone(), (0..10).collect(), EnvConfig::default(), 4).unwrap();
        let bs = baselines();
        let priors = ExpertPriors::from_dataset(&d, &(0..10).collect::<Vec<_>>());
        assert_eq!(bs.len(), BASELINES.len());
        for _ in 0..50 {
            let ep = env.draw();
            let (bound, _) = env.upper_bound(&ep);
            for (name, p) in &bs {
                let st = policy_episode(&env, &ep, p.as_ref()).unwrap();
                assert!(st.total <= bound + 1e-9, "{name} beat the bound");
                let locals = st.choices.iter().filter(|&&j| env.nodes()[j].local).count();
                assert!(locals <= 1, "{name} overused the local device");
            }
            assert!(local_all(&env, &ep).is_some());
            assert!(prior_planner(&env, &ep, &priors) <= bound + 1e-9);
        }
    }
}
