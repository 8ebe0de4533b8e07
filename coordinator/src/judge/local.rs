//! The paper's judging prompt on the coordinator's own GGUF model, with the
//! score read from the logits as an expectation over score tokens.
//!
//! On the 270M base model this judge is close to chance (ENV.md); it is
//! here for the bigger instruct models users run on boards, where it is the
//! paper's judge without a network.

use futures::future::BoxFuture;

use super::digits::digit_expectation;
use super::{Judge, JudgeError, JudgeInput, PAPER_PROMPT, Verdict};
use crate::analyzer::Analyzer;

/// The digits, each one token for Gemma-style tokenizers that split numbers.
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

/// The full prompt the judges send: the paper's instruction, the story, and
/// an answer slot. It ends with a space so the next token is the first
/// digit itself (Gemma tokenizes " 7" as a space, then "7").
///
/// ```
/// # use netmoe_coordinator::judge::local::judge_prompt;
/// assert!(judge_prompt("Once.").ends_with("Story: Once.\n\nScore (0-10): "));
/// ```
pub fn judge_prompt(text: &str) -> String {
    format!("{PAPER_PROMPT}\n\nStory: {text}\n\nScore (0-10): ")
}

/// The paper's prompt on the coordinator's model (name "local-gguf").
///
/// Two forward passes per text: the digits after the prompt, then the
/// digits after prompt + "1" to tell "10" from "1" (see
/// [`super::digits::split_one`]). The score is renormalised over the digit
/// mass; `parts` reports the expectation and that mass.
#[derive(Clone)]
pub struct LocalJudge {
    analyzer: Analyzer,
}

impl LocalJudge {
    /// A judge on `analyzer`'s model.
    pub fn new(analyzer: Analyzer) -> Self {
        Self { analyzer }
    }

    async fn score_text(&self, text: &str) -> Result<Verdict, JudgeError> {
        let prompt = judge_prompt(text);
        let first = to_array(self.analyzer.next_token_probs(&prompt, &DIGITS).await?);
        let after_one = to_array(
            self.analyzer
                .next_token_probs(&format!("{prompt}1"), &DIGITS)
                .await?,
        );
        let (score, mass) = digit_expectation(&first, Some(&after_one)).ok_or_else(|| {
            JudgeError::NoScore("the local model put no probability on a score digit".into())
        })?;
        let score = score.clamp(0.0, 10.0);
        Ok(Verdict {
            score,
            parts: vec![("expected_score", score), ("digit_mass", mass)],
        })
    }
}

fn to_array(p: Vec<f32>) -> [f64; 10] {
    let mut out = [0.0; 10];
    for (o, x) in out.iter_mut().zip(p) {
        *o = x as f64;
    }
    out
}

impl Judge for LocalJudge {
    fn name(&self) -> &str {
        "local-gguf"
    }

    fn score<'a>(&'a self, input: JudgeInput<'a>) -> BoxFuture<'a, Result<Verdict, JudgeError>> {
        Box::pin(self.score_text(input.text))
    }
}
