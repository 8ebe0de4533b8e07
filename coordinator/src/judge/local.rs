//! The paper's judging prompt on the coordinator's own GGUF model, with the
//! score read from the logits as an expectation over score tokens.
//!
//! On the 270M base model this judge is close to chance (ENV.md); it is
//! here for the bigger instruct models users run on boards, where it is the
//! paper's judge without a network.

use futures::future::BoxFuture;

use super::digits::{expectation, split_one};
use super::{Judge, JudgeError, JudgeInput, PAPER_PROMPT, Verdict};
use crate::analyzer::Analyzer;

/// The full prompt the judges send: the paper's instruction, the story, and
/// an answer slot ending in a space.
///
/// ```
/// # use netmoe_coordinator::judge::local::judge_prompt;
/// assert!(judge_prompt("Once.").ends_with("Story: Once.\n\nScore (0-10): "));
/// ```
pub fn judge_prompt(text: &str) -> String {
    format!("{PAPER_PROMPT}\n\nStory: {text}\n\nScore (0-10): ")
}

/// How a tokenizer writes the scores, probed once from the vocabulary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScoreTokens {
    /// The space before a number is part of the number's token (" 7" is
    /// one token): the prompt then ends before the space and candidates
    /// carry it. Gemma, Llama 2, Mistral, Qwen write the space apart.
    pub space_in_digit: bool,
    /// "10" is one token (tokenizers grouping digits, e.g. Llama 3); else
    /// it is "1" then "0" and a second pass splits the mass of "1".
    pub ten_is_one_token: bool,
}

impl ScoreTokens {
    /// Probes `analyzer`'s vocabulary.
    pub fn probe(analyzer: &Analyzer) -> Self {
        let space_in_digit = analyzer.count_tokens(" 7") == 1;
        let lead = if space_in_digit { " " } else { "" };
        Self {
            space_in_digit,
            ten_is_one_token: analyzer.count_tokens(&format!("{lead}10")) == 1,
        }
    }

    fn lead(self) -> &'static str {
        if self.space_in_digit { " " } else { "" }
    }

    /// The prompt whose next token is the first score token.
    fn prompt(self, text: &str) -> String {
        let mut p = judge_prompt(text);
        if self.space_in_digit {
            p.pop();
        }
        p
    }

    /// Candidate first tokens: "0".."9" (with the lead space if it belongs
    /// to the digit), then "10" if that is one token.
    fn candidates(self) -> Vec<String> {
        let mut c: Vec<String> = (0..10).map(|d| format!("{}{d}", self.lead())).collect();
        if self.ten_is_one_token {
            c.push(format!("{}10", self.lead()));
        }
        c
    }
}

/// The paper's prompt on the coordinator's model (name "local-gguf").
///
/// The score is the expectation over the score tokens after the prompt,
/// renormalised over their mass. Where "10" is written "1", "0" a second
/// pass after prompt + "1" splits the mass of "1" (see
/// [`super::digits::split_one`]). `parts` reports the expectation and the
/// raw score-token mass (how sure the model was a number comes next).
#[derive(Clone)]
pub struct LocalJudge {
    analyzer: Analyzer,
    tokens: ScoreTokens,
}

impl LocalJudge {
    /// A judge on `analyzer`'s model.
    pub fn new(analyzer: Analyzer) -> Self {
        let tokens = ScoreTokens::probe(&analyzer);
        Self { analyzer, tokens }
    }

    /// How this model's tokenizer writes scores.
    pub fn score_tokens(&self) -> ScoreTokens {
        self.tokens
    }

    async fn score_text(&self, text: &str) -> Result<Verdict, JudgeError> {
        let prompt = self.tokens.prompt(text);
        let cands = self.tokens.candidates();
        let refs: Vec<&str> = cands.iter().map(String::as_str).collect();
        let first = self.analyzer.next_token_probs(&prompt, &refs).await?;
        let mut mass: Vec<(f64, f64)> = Vec::with_capacity(12);
        for (d, &p) in first.iter().enumerate().take(10) {
            if d == 1 && !self.tokens.ten_is_one_token {
                let after = self
                    .analyzer
                    .next_token_probs(&format!("{prompt}{}1", self.tokens.lead()), &DIGITS)
                    .await?;
                let mut a = [0.0; 10];
                for (slot, x) in a.iter_mut().zip(after) {
                    *slot = x as f64;
                }
                mass.extend(split_one(p as f64, &a));
            } else {
                mass.push((d as f64, p as f64));
            }
        }
        if let Some(&p10) = first.get(10) {
            mass.push((10.0, p10 as f64));
        }
        let raw: f64 = first.iter().map(|p| *p as f64).sum();
        let score = expectation(&mass)
            .ok_or_else(|| {
                JudgeError::NoScore("the local model put no probability on a score token".into())
            })?
            .clamp(0.0, 10.0);
        Ok(Verdict {
            score,
            parts: vec![("expected_score", score), ("digit_mass", raw)],
        })
    }
}

/// The digits, as continuations right after a "1".
const DIGITS: [&str; 10] = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"];

impl Judge for LocalJudge {
    fn name(&self) -> &str {
        "local-gguf"
    }

    fn score<'a>(&'a self, input: JudgeInput<'a>) -> BoxFuture<'a, Result<Verdict, JudgeError>> {
        Box::pin(self.score_text(input.text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_and_candidates_follow_the_tokenizer() {
        let gemma = ScoreTokens {
            space_in_digit: false,
            ten_is_one_token: false,
        };
        assert!(gemma.prompt("x").ends_with("(0-10): "));
        assert_eq!(gemma.candidates().len(), 10);
        assert_eq!(gemma.candidates()[7], "7");
        let llama3 = ScoreTokens {
            space_in_digit: true,
            ten_is_one_token: true,
        };
        assert!(llama3.prompt("x").ends_with("(0-10):"));
        assert_eq!(llama3.candidates()[10], " 10");
    }
}
