//! The default judge: general quality signals a small base model measures
//! well, combined into a documented 0-10 score.
//!
//! placeholder

use futures::future::BoxFuture;

use super::{Judge, JudgeError, JudgeInput, Verdict};
use crate::analyzer::Analyzer;

/// Stub.
#[derive(Clone)]
pub struct HeuristicJudge {
    #[allow(dead_code)]
    analyzer: Analyzer,
}

impl HeuristicJudge {
    /// Stub.
    pub fn new(analyzer: Analyzer) -> Self {
        Self { analyzer }
    }
}

impl Judge for HeuristicJudge {
    fn name(&self) -> &str {
        "heuristic"
    }
    fn score<'a>(&'a self, _input: JudgeInput<'a>) -> BoxFuture<'a, Result<Verdict, JudgeError>> {
        Box::pin(async {
            Ok(Verdict {
                score: 0.0,
                parts: vec![],
            })
        })
    }
}
