//! The SAC policy behind the routing trait: any number of nodes, the same
//! decisions as the training environment's greedy rollout, a lossless
//! save/load round trip, and online learning behind the freeze switch.

use std::sync::Arc;

use netmoe_common::cost::CostModel;

use super::*;
use crate::rl::dataset::Dataset;
use crate::rl::env::{DEFAULT_SCORE_NOISE, DEFAULT_WORDS_NOISE, Env, EnvConfig, NodeLayout};
use crate::rl::features::ExpertPriors;
use crate::rl::methods::policy_episode;
use crate::rl::train::{fit_norm, greedy_episode};

fn setup(layout: NodeLayout) -> (SacPolicy, Env) {
    let d = Arc::new(Dataset::synthetic(12, 3));
    let prompts: Vec<usize> = (0..d.prompts.len()).collect();
    let env = Env::new(
        d.clone(),
        prompts.clone(),
        EnvConfig {
            nodes: layout,
            ..EnvConfig::default()
        },
        5,
    )
    .unwrap();
    let priors = ExpertPriors::from_dataset(&d, &prompts);
    let norm = fit_norm(&env, &priors, 20, 1).unwrap();
    let config = SacConfig {
        hidden: vec![16, 16],
        batch_size: 8,
        ..SacConfig::default()
    };
    let mut info = untrained_info(config.clone());
    info.norm = norm;
    info.priors = priors;
    (SacPolicy::new(Sac::new(config, 11).unwrap(), info), env)
}

fn simulated(n: usize) -> NodeLayout {
    NodeLayout::Simulated {
        edge_nodes: n,
        score_noise: DEFAULT_SCORE_NOISE,
        words_noise: DEFAULT_WORDS_NOISE,
    }
}

#[test]
fn routes_any_number_of_nodes_and_respects_the_local_capacity() {
    for n in [3, 5, 8, 100] {
        let (policy, mut env) = setup(simulated(n));
        for _ in 0..5 {
            let ep = env.draw();
            let views = env.views(&ep);
            let cost = CostModel::default();
            let ctx = RouteContext {
                cost: &cost,
                seed: 1,
            };
            let choices = policy.route(&views, &ctx);
            assert_eq!(choices.len(), views.len());
            let mut locals = 0;
            for (c, v) in choices.iter().zip(&views) {
                assert_eq!(c.ranking.len(), n + 1);
                assert_eq!(c.values.len(), n + 1);
                assert!((c.values.iter().sum::<f64>() - 1.0).abs() < 1e-4);
                assert!(c.explanation.starts_with("sac: "), "{}", c.explanation);
                assert!(c.explanation.contains("probability"));
                locals += usize::from(v.candidates[c.ranking[0]].local);
            }
            assert!(locals <= 1, "{n} nodes: local device used {locals} times");
        }
    }
}

#[test]
fn live_routing_decides_like_the_training_rollout() {
    let (policy, mut env) = setup(NodeLayout::Dataset);
    let info = policy.info().clone();
    for _ in 0..20 {
        let ep = env.draw();
        let live = policy_episode(&env, &ep, &policy).unwrap().total;
        let inner = policy.lock();
        let trained = greedy_episode(&env, &ep, &inner.agent, &info.priors, &info.norm).unwrap();
        assert!((live - trained).abs() < 1e-9, "{live} vs {trained}");
    }
}

#[test]
fn save_and_load_round_trip() {
    let (policy, mut env) = setup(NodeLayout::Dataset);
    let dir = tempfile::tempdir().unwrap();
    let json = policy.save(&dir.path().join("p")).unwrap();
    assert!(dir.path().join("p.safetensors").exists());
    let again = load_policy(&dir.path().join("p.safetensors")).unwrap();
    assert_eq!(again.info().norm, policy.info().norm);
    assert_eq!(again.info().weights, "p.safetensors");
    let cost = CostModel::default();
    let ctx = RouteContext {
        cost: &cost,
        seed: 1,
    };
    for _ in 0..5 {
        let ep = env.draw();
        let views = env.views(&ep);
        assert_eq!(again.route(&views, &ctx), policy.route(&views, &ctx));
    }
    let text = std::fs::read_to_string(&json)
        .unwrap()
        .replace("\"format\": 1", "\"format\": 99");
    std::fs::write(&json, text).unwrap();
    assert!(matches!(
        load_policy(&json),
        Err(RlError::PolicyFile { .. })
    ));
    assert!(matches!(
        load_policy(&dir.path().join("nope.json")),
        Err(RlError::Io { .. })
    ));
}

#[test]
fn online_learning_waits_for_the_switch_and_a_full_batch() {
    let (policy, mut env) = setup(NodeLayout::Dataset);
    let mut learned = None;
    for round in 0..12 {
        if round == 6 {
            policy.set_frozen(false);
        }
        let ep = env.draw();
        let views = env.views(&ep);
        let st = policy_episode(&env, &ep, &policy).unwrap();
        let rewards: Vec<f64> = st
            .choices
            .iter()
            .enumerate()
            .map(|(s, &j)| env.reward(&ep, s, j))
            .collect();
        let scores = vec![5.0; rewards.len()];
        let r = policy
            .learn_from_request(&views, &st.choices, &scores, &rewards)
            .unwrap();
        if round < 6 {
            assert!(r.is_none(), "frozen policies do not learn");
        }
        learned = learned.or(r);
    }
    assert!(learned.is_some(), "a batch of 8 fills within 6 requests");
    assert!(policy.learn_from_request(&[], &[0], &[], &[]).is_err());
}

#[test]
fn online_learning_moves_a_failing_experts_prior_and_a_frozen_policy_keeps_it() {
    let (policy, mut env) = setup(NodeLayout::Dataset);
    let ep = env.draw();
    let views = env.views(&ep);
    let st = policy_episode(&env, &ep, &policy).unwrap();
    let c = &views[0].candidates[st.choices[0]];
    let before = policy.priors().get(&c.expert, c.local, 0.0).mean_score;
    let zeros = vec![0.0; st.choices.len()];
    // Frozen: the answers are ignored.
    policy
        .learn_from_request(&views, &st.choices, &zeros, &zeros)
        .unwrap();
    assert_eq!(policy.priors(), policy.info().priors);
    policy.set_frozen(false);
    for n in 1..=4 {
        policy
            .learn_from_request(&views, &st.choices, &zeros, &zeros)
            .unwrap();
        let now = policy.priors().get(&c.expert, c.local, 0.0).mean_score;
        let expected = before * (1.0 - ONLINE_PRIOR_WEIGHT).powi(n);
        // Segments of one request may share the expert: at least n steps.
        assert!(now <= expected + 1e-9, "after {n}: {now} > {expected}");
    }
    // A bad index is refused, not a panic.
    assert!(
        policy
            .learn_from_request(&views[..1], &[99], &[1.0], &[1.0])
            .is_err()
    );
}
