//! Judges: score a text 0-10, as the paper's GPT judge did. Pluggable:
//! a heuristic default that works with a small base model, a local GGUF
//! judge reading the score distribution from logits, and any
//! OpenAI-compatible chat endpoint.
//!
//! - [`quality`]: the default judge: model and lexical signals of good
//!   writing, weighed by a logistic model fitted on the tuning half of the
//!   graded set.
//! - [`fit`]: fitting the quality judge's weights on the tuning half.
//! - [`style`]: the lexical signals (redundancy, vagueness, fillers, echo).
//! - [`heuristic`]: the earlier judge (fluency, repetition, length, ending,
//!   relevance), kept for comparison.
//! - [`local`]: the paper's prompt on the coordinator's GGUF, score read from logits.
//! - [`openai`]: the paper's prompt on an OpenAI-compatible `/chat/completions`.
//! - [`digits`]: the expected score over score tokens, shared by the two above.
//! - [`dataset`] and [`corrupt`]: good passages and their seeded corruptions.
//! - [`graded`]: the graded set (good, mediocre, expert-written; tune and
//!   held-out halves) and injection lines.
//! - [`eval`]: pairwise accuracy of a judge on that set.
//! - [`guard`]: sentences addressed to the judge cut before any judge reads
//!   a passage, which pays for them.

use futures::future::BoxFuture;

pub mod corrupt;
pub mod dataset;
pub mod digits;
pub mod eval;
pub mod fit;
pub mod graded;
pub mod guard;
pub mod heuristic;
pub mod local;
pub mod openai;
pub mod quality;
pub mod style;

pub use corrupt::CorruptionKind;
pub use dataset::{DatasetError, JudgePair, load_judge_set, shipped_judge_set};
pub use eval::{AccuracyReport, pairwise_accuracy};
pub use heuristic::HeuristicJudge;
pub use local::LocalJudge;
pub use openai::OpenAiJudge;
pub use quality::QualityJudge;

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

/// Longest input line `coordinator score` accepts, in bytes.
pub const MAX_SCORE_LINE_BYTES: usize = 64 * 1024;

/// One line of `coordinator score` input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreRequest {
    /// What the text was asked to be about (may be empty).
    #[serde(default)]
    pub task: String,
    /// The text to score.
    pub text: String,
    /// True when a token budget cut the text: it is judged on its complete
    /// sentences, as a request judges a passage that hit `max_tokens`.
    #[serde(default)]
    pub budget_cut: bool,
}

impl ScoreRequest {
    /// The text the judge sees.
    pub fn judged_text(&self) -> &str {
        if self.budget_cut {
            crate::text::complete_sentences(&self.text)
        } else {
            &self.text
        }
    }
}

impl ScoreRequest {
    /// Parses one JSON line; the error says what is wrong.
    ///
    /// ```
    /// # use netmoe_coordinator::judge::ScoreRequest;
    /// assert_eq!(ScoreRequest::parse(r#"{"text": "Hi."}"#).unwrap().task, "");
    /// assert!(ScoreRequest::parse(r#"{"task": "x"}"#).unwrap_err().contains("text"));
    /// ```
    pub fn parse(line: &str) -> Result<Self, String> {
        if line.len() > MAX_SCORE_LINE_BYTES {
            return Err(format!(
                "line is {} bytes; the limit is {MAX_SCORE_LINE_BYTES}",
                line.len()
            ));
        }
        serde_json::from_str(line).map_err(|e| format!("not a {{\"task\", \"text\"}} object: {e}"))
    }
}

/// A verdict as one JSON object: judge, score and every named part.
pub fn verdict_json(judge: &str, v: &Verdict) -> serde_json::Value {
    let parts: serde_json::Map<String, serde_json::Value> = v
        .parts
        .iter()
        .map(|(k, x)| ((*k).to_owned(), (*x).into()))
        .collect();
    serde_json::json!({"judge": judge, "score": v.score, "parts": parts})
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
