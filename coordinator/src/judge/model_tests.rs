//! Judges on the real model and the shipped set (skipped, with a message,
//! when the model file is missing). Run with
//! `cargo test --release -p netmoe-coordinator judge::model_tests -- --nocapture`
//! to see the tables.

use super::dataset::shipped_judge_set;
use super::eval::pairwise_accuracy;
use super::local::ScoreTokens;
use super::{HeuristicJudge, Judge, JudgeInput, LocalJudge};

/// One test, so the two judges do not share the analyzer thread at once and
/// the printed times are each judge's own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn judges_on_the_shipped_set() {
    let Some(analyzer) = super::testutil::analyzer() else {
        return;
    };
    let pairs = shipped_judge_set().unwrap();

    let heuristic = HeuristicJudge::new(analyzer.clone());
    let report = pairwise_accuracy(&heuristic, &pairs).await.unwrap();
    println!("\n{}", report.table());
    assert!(
        report.overall.accuracy() >= 0.9,
        "heuristic judge below 90%:\n{}",
        report.table()
    );

    let local = LocalJudge::new(analyzer.clone());
    println!("local judge score tokens: {:?}", local.score_tokens());
    if super::testutil::model_path().ends_with(netmoe_common::fetch::DEFAULT_MODEL_FILE) {
        // Gemma writes " 7" as " ", "7" and "10" as "1", "0".
        assert_eq!(
            local.score_tokens(),
            ScoreTokens {
                space_in_digit: false,
                ten_is_one_token: false
            }
        );
    }
    let v = local
        .score(JudgeInput {
            task: "",
            text: &pairs[0].good,
        })
        .await
        .unwrap();
    println!("local verdict on {}: {:?}", pairs[0].id, v.parts);
    let report = pairwise_accuracy(&local, &pairs).await.unwrap();
    println!("\n{}", report.table());
    for (_, s) in &report.per_kind {
        assert!((0.0..=10.0).contains(&s.mean_good) && (0.0..=10.0).contains(&s.mean_corrupted));
    }
    for (_, _, g, c) in &report.misses {
        assert!((0.0..=10.0).contains(g) && (0.0..=10.0).contains(c));
    }
}
