//! Judges: score a text 0-10, as the paper's GPT judge did. Pluggable:
//! a heuristic default that works with a small base model, a local GGUF
//! judge reading the score distribution from logits, and any
//! OpenAI-compatible chat endpoint.
//!
//! - [`heuristic`]: the default judge (fluency, repetition, length, ending,
//!   relevance from the coordinator's model).
//! - [`local`]: the paper's prompt on the coordinator's GGUF, score read from logits.
//! - [`openai`]: the paper's prompt on an OpenAI-compatible `/chat/completions`.
//! - [`digits`]: the expected score over score tokens, shared by the two above.
//! - [`dataset`] and [`corrupt`]: the labelled set, good passages and their
//!   seeded corruptions.
//! - [`eval`]: pairwise accuracy of a judge on that set.

use futures::future::BoxFuture;

pub mod corrupt;
pub mod dataset;
pub mod digits;
pub mod eval;
pub mod heuristic;
pub mod local;
pub mod openai;

pub use corrupt::CorruptionKind;
pub use dataset::{DatasetError, JudgePair, load_judge_set, shipped_judge_set};
pub use eval::{AccuracyReport, pairwise_accuracy};
pub use heuristic::HeuristicJudge;
pub use local::LocalJudge;
pub use openai::OpenAiJudge;

/// The paper's judging prompt (after Chen et al., arXiv 2304.00723).
pub const PAPER_PROMPT: &str = "Score the following story on a continual scale from 0 (worst) to 10 (best), where a score of 0 means \"The story makes no sense and is totally not understandable\" and a score of 10 means \"The story is perfect-written and highly consistent\".";

/// What a judge scores.
#[derive(Debug, Clone, Copy)]
pub struct JudgeInput<'a> {
    /// What the text was asked to be about (segment or whole prompt).
    pub task: &'a str,
    /// The text to score.
    pub text: &'a str,
}

/// A judge's verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// 0-10.
    pub score: f64,
    /// Named components behind the score, for explanations.
    pub parts: Vec<(&'static str, f64)>,
}

/// Why a judge could not score.
#[derive(Debug, thiserror::Error)]
pub enum JudgeError {
    /// The coordinator's model failed.
    #[error(transparent)]
    Analyzer(#[from] crate::analyzer::AnalyzerError),
    /// The remote endpoint failed or answered nonsense.
    #[error("judge endpoint: {0}")]
    Remote(String),
    /// A local judge produced no usable score.
    #[error("judge gave no score: {0}")]
    NoScore(String),
}

/// A text judge.
pub trait Judge: Send + Sync {
    /// Short name for tables.
    fn name(&self) -> &str;
    /// Scores one text.
    fn score<'a>(&'a self, input: JudgeInput<'a>) -> BoxFuture<'a, Result<Verdict, JudgeError>>;
}

#[cfg(test)]
mod model_tests;

#[cfg(test)]
pub(crate) mod testutil {
    //! The real model for tests that need it, loaded once per test binary.

    use std::path::PathBuf;
    use std::sync::OnceLock;

    use crate::analyzer::Analyzer;

    /// The test model: `NETMOE_TEST_MODEL`, else the default model in the cache.
    pub(crate) fn model_path() -> PathBuf {
        std::env::var_os("NETMOE_TEST_MODEL")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                netmoe_common::fetch::cache_dir()
                    .join("models")
                    .join(netmoe_common::fetch::DEFAULT_MODEL_FILE)
            })
    }

    /// An analyzer on the test model, or `None` (with a message) if the
    /// model file is missing.
    pub(crate) fn analyzer() -> Option<Analyzer> {
        static A: OnceLock<Option<Analyzer>> = OnceLock::new();
        A.get_or_init(|| {
            let path = model_path();
            if !path.exists() {
                eprintln!(
                    "SKIPPED: model {} not found; run `edge-node fetch-model` or set NETMOE_TEST_MODEL",
                    path.display()
                );
                return None;
            }
            let model = netmoe_edge_node::engine::LoadedModel::load(&path, 0).expect("test model loads").model;
            Some(Analyzer::start(model, 2).expect("analyzer starts"))
        })
        .clone()
    }
}
