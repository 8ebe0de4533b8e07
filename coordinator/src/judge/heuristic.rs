//! The default judge: general quality signals that a small base model does
//! measure well, combined into a documented 0-10 score.
//!
//! The 270M base model cannot grade a story when asked (ENV.md), but its
//! token probabilities still tell word salad from prose and whether a task
//! makes a text more predictable. The score is a product of factors in
//! `[0, 1]`, each a general property of good text, so any one failure
//! (salad, a loop, a fragment, the wrong subject) pulls the score down:
//!
//! `score = 10 · fluency · repetition · length · ending · relevance`
//!
//! | factor | signal | measured on the judge set |
//! |---|---|---|
//! | fluency | mean ln p per token of the text after the task prompt | prose −2.9…−4.2, shuffled −6.6…−7.5 |
//! | repetition | distinct word-3-gram ratio | prose ≥ 0.99, loops ≤ 0.20 |
//! | length | min(1, words / [`FULL_LENGTH_WORDS`]) | prose 98-111 words, truncated 25-28 |
//! | ending | 1 if it ends a sentence, else [`UNFINISHED_FACTOR`] | |
//! | relevance | ln p(text ∣ task) − ln p(text ∣ generic task) per token (pointwise mutual information) | on-topic 0.10…0.64, off-topic −0.20…0.07 |
//!
//! Relevance was first measured as the embedding cosine of text and task
//! (minus the cosine with a generic task); on the judge set that ranked
//! the right text higher for 25-26 of 30 off-topic pairs, the
//! log-probability PMI for 30 of 30, at a similar cost, so the embedding
//! is not used.
//!
//! Two forward passes per text: the whole text after the task prompt, and
//! its first [`RELEVANCE_WINDOW_WORDS`] words after the generic prompt. On
//! 2 cores that is ~0.8 s for a 100-word text.
//!
//! How well it separates: 150 of 150 pairs of the shipped judge set
//! (`coordinator/data/judge_set.jsonl`, from which the constants below were
//! read), and 40 of 40 pairs of 8 further passages on new topics and in new
//! styles (first person, dialogue) written after the constants were fixed.
//! The result does not hinge on the exact constants: every combination of
//! relevance window 32 tokens…whole text, midpoint −0.05…0.05 and width
//! 0.05…0.15 ranked all shipped pairs right.

use futures::future::BoxFuture;

use super::{Judge, JudgeError, JudgeInput, Verdict};
use crate::analyzer::Analyzer;

/// How the text is presented to the model: as the answer to its task.
/// Both fluency and relevance are read after this prefix.
///
/// ```
/// # use netmoe_coordinator::judge::heuristic::task_prefix;
/// assert_eq!(task_prefix("Tell a tale."), "Story prompt: Tell a tale.\n\nStory: ");
/// ```
pub fn task_prefix(task: &str) -> String {
    format!("Story prompt: {task}\n\nStory: ")
}

/// The task the relevance baseline conditions on: any story at all. The
/// same template as the real task, so formatting effects cancel and the
/// difference is only what the task's words predict.
pub const GENERIC_TASK: &str = "Write a short story.";

/// Words at the start of the text over which relevance is measured. The
/// topic shows early; a window halves the cost of the baseline pass. On
/// the judge set windows of 24-96 words and the whole text all separate
/// on- from off-topic passages; ~48 words (~56 tokens) keeps a margin.
pub const RELEVANCE_WINDOW_WORDS: usize = 48;

/// Mean ln p per token where fluency is 0.5. Hand-written prose scores
/// −2.9…−4.2 after its task prompt and the same words shuffled
/// −6.6…−7.5; the midpoint sits between, a little towards the salad so
/// that merely plain prose keeps its score.
pub const FLUENCY_MID: f64 = -5.5;

/// Width of the fluency logistic (nats per token): prose at −4.2 gets
/// 0.98, salad at −6.6 gets 0.04.
pub const FLUENCY_SCALE: f64 = 0.35;

/// Distinct word-3-gram ratio at and below which the repetition factor is
/// 0: half the text is repeated phrases, a loop rather than prose.
pub const REPETITION_FLOOR: f64 = 0.5;

/// Distinct word-3-gram ratio from which the repetition factor is 1.
/// Natural prose of 60-140 words measures 0.99-1.0; 0.9 leaves room for
/// refrains and stock phrases.
pub const REPETITION_FULL: f64 = 0.9;

/// Words from which length no longer counts: a shorter passage is
/// penalised in proportion (an expert's answer of a sentence or two has
/// not told anything).
pub const FULL_LENGTH_WORDS: f64 = 40.0;

/// Factor for a text that does not end a sentence (no final `.`, `!`,
/// `?`, possibly inside closing quotes): it was cut off or ran out of
/// tokens mid-thought.
pub const UNFINISHED_FACTOR: f64 = 0.6;

/// PMI (nats per token) where relevance is 0.5: the task neither helps nor
/// hurts predicting the text, i.e. the text is not about it.
pub const RELEVANCE_MID: f64 = 0.0;

/// Width of the relevance logistic: an on-topic passage at the judge set's
/// median PMI (0.25) gets 0.92, an off-topic one at its median (−0.08)
/// gets 0.31.
pub const RELEVANCE_SCALE: f64 = 0.1;

/// Fraction of the text's word 3-grams that are distinct (case and
/// punctuation ignored); 1 for texts under three words. A loop repeats its
/// 3-grams and collapses the ratio.
///
/// ```
/// # use netmoe_coordinator::judge::heuristic::distinct_trigram_ratio;
/// assert_eq!(distinct_trigram_ratio("the cat sat on the mat"), 1.0);
/// // 6 trigrams, 3 distinct: "a b c", "b c a", "c a b".
/// assert_eq!(distinct_trigram_ratio("a b c a b c a b"), 0.5);
/// ```
pub fn distinct_trigram_ratio(text: &str) -> f64 {
    let words = crate::text::words(text);
    if words.len() < 3 {
        return 1.0;
    }
    let mut grams: Vec<&[String]> = words.windows(3).collect();
    let total = grams.len();
    grams.sort_unstable();
    grams.dedup();
    grams.len() as f64 / total as f64
}

/// Whether the text ends a sentence: `.`, `!`, `?` or `…`, optionally
/// followed by closing quotes or brackets.
///
/// ```
/// # use netmoe_coordinator::judge::heuristic::ends_sentence;
/// assert!(ends_sentence("He left. \"Goodbye!\" "));
/// assert!(!ends_sentence("He left and the"));
/// ```
pub fn ends_sentence(text: &str) -> bool {
    text.trim_end()
        .trim_end_matches(['"', '\'', ')', ']', '\u{201d}', '\u{2019}', '*'])
        .ends_with(['.', '!', '?', '\u{2026}'])
}

/// The first `n` whitespace-separated words of `text`, joined by spaces.
pub fn first_words(text: &str, n: usize) -> String {
    text.split_whitespace()
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The logistic function, shared with the quality judge.
pub(crate) fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Mean of per-token log-probabilities (0 for none), shared with the quality judge.
pub(crate) fn mean(v: &[f32]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().map(|x| *x as f64).sum::<f64>() / v.len() as f64
    }
}

/// What the heuristic judge measured on one text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Signals {
    /// Whitespace-separated words.
    pub words: usize,
    /// [`distinct_trigram_ratio`].
    pub distinct_trigrams: f64,
    /// [`ends_sentence`].
    pub ends_sentence: bool,
    /// Mean ln p per token of the whole text after [`task_prefix`].
    pub mean_logprob: f64,
    /// Mean over the first [`RELEVANCE_WINDOW_WORDS`] words of
    /// ln p(token ∣ task) − ln p(token ∣ [`GENERIC_TASK`]); `None` when there
    /// was no task to be relevant to.
    pub pmi: Option<f64>,
}

/// The score and its factors from measured signals (the pure half of the
/// judge). An empty text scores 0; `parts` lists the five factors, then the
/// raw measurements.
///
/// ```
/// # use netmoe_coordinator::judge::heuristic::{Signals, combine};
/// let prose = Signals { words: 100, distinct_trigrams: 1.0, ends_sentence: true, mean_logprob: -3.5, pmi: Some(0.2) };
/// // 10 · fluency 0.9967 · relevance 0.8808
/// assert!((combine(&prose).score - 8.779).abs() < 1e-3);
/// let fragment = Signals { words: 20, ends_sentence: false, ..prose };
/// // · length 0.5 · ending 0.6
/// assert!((combine(&fragment).score - 2.634).abs() < 1e-3);
/// ```
pub fn combine(s: &Signals) -> Verdict {
    if s.words == 0 {
        return Verdict {
            score: 0.0,
            parts: vec![("words", 0.0)],
        };
    }
    let fluency = logistic((s.mean_logprob - FLUENCY_MID) / FLUENCY_SCALE);
    let repetition = ((s.distinct_trigrams - REPETITION_FLOOR)
        / (REPETITION_FULL - REPETITION_FLOOR))
        .clamp(0.0, 1.0);
    let length = (s.words as f64 / FULL_LENGTH_WORDS).min(1.0);
    let ending = if s.ends_sentence {
        1.0
    } else {
        UNFINISHED_FACTOR
    };
    let relevance = s
        .pmi
        .map_or(1.0, |p| logistic((p - RELEVANCE_MID) / RELEVANCE_SCALE));
    let score = (10.0 * fluency * repetition * length * ending * relevance).clamp(0.0, 10.0);
    let mut parts = vec![
        ("fluency", fluency),
        ("repetition", repetition),
        ("length", length),
        ("ending", ending),
        ("relevance", relevance),
        ("mean_logprob", s.mean_logprob),
        ("distinct_trigrams", s.distinct_trigrams),
        ("words", s.words as f64),
    ];
    if let Some(p) = s.pmi {
        parts.push(("pmi", p));
    }
    Verdict { score, parts }
}

/// The default judge (name "heuristic"): see the module docs.
#[derive(Clone)]
pub struct HeuristicJudge {
    analyzer: Analyzer,
}

impl HeuristicJudge {
    /// A judge measuring with `analyzer`'s model.
    pub fn new(analyzer: Analyzer) -> Self {
        Self { analyzer }
    }

    /// Measures the signals of `input` (two forward passes; none for an
    /// empty text, one without a task).
    pub async fn measure(&self, input: JudgeInput<'_>) -> Result<Signals, JudgeError> {
        let text = input.text.trim();
        let words = text.split_whitespace().count();
        let mut s = Signals {
            words,
            distinct_trigrams: distinct_trigram_ratio(text),
            ends_sentence: ends_sentence(text),
            mean_logprob: 0.0,
            pmi: None,
        };
        if words == 0 {
            return Ok(s);
        }
        let task = input.task.trim();
        let with_task = self
            .analyzer
            .token_logprobs(&task_prefix(task), text)
            .await?;
        s.mean_logprob = mean(&with_task);
        if !task.is_empty() {
            let window = first_words(text, RELEVANCE_WINDOW_WORDS);
            let generic = self
                .analyzer
                .token_logprobs(&task_prefix(GENERIC_TASK), &window)
                .await?;
            // The window is a prefix of the text, so (causal model) its
            // tokens are the first tokens of the full pass.
            let n = generic.len().min(with_task.len());
            if n > 0 {
                s.pmi = Some(mean(&with_task[..n]) - mean(&generic[..n]));
            }
        }
        Ok(s)
    }
}

impl Judge for HeuristicJudge {
    fn name(&self) -> &str {
        "heuristic"
    }

    fn score<'a>(&'a self, input: JudgeInput<'a>) -> BoxFuture<'a, Result<Verdict, JudgeError>> {
        Box::pin(async move { Ok(combine(&self.measure(input).await?)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prose() -> Signals {
        Signals {
            words: 100,
            distinct_trigrams: 1.0,
            ends_sentence: true,
            mean_logprob: -3.5,
            pmi: Some(0.25),
        }
    }

    fn part(v: &Verdict, name: &str) -> f64 {
        v.parts.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn trigram_ratio_collapses_for_loops() {
        let story =
            "The fox ran home through the snow and slept under an old oak until spring came.";
        assert_eq!(distinct_trigram_ratio(story), 1.0);
        let looped = "The fox ran home. ".repeat(10);
        assert!(distinct_trigram_ratio(&looped) < 0.15);
        // Case and punctuation do not hide a repeat.
        assert_eq!(distinct_trigram_ratio("A b c. a B c"), 0.75);
        assert_eq!(distinct_trigram_ratio("two words"), 1.0);
        assert_eq!(distinct_trigram_ratio(""), 1.0);
    }

    #[test]
    fn sentence_endings() {
        assert!(ends_sentence("It rained."));
        assert!(ends_sentence("\u{201c}Run!\u{201d}"));
        assert!(ends_sentence("Why? "));
        assert!(!ends_sentence("It rained and"));
        assert!(!ends_sentence("It rained,"));
        assert!(!ends_sentence(""));
    }

    #[test]
    fn window_takes_first_words() {
        assert_eq!(first_words("a  b\nc d", 3), "a b c");
        assert_eq!(first_words("a b", 5), "a b");
    }

    #[test]
    fn empty_text_scores_zero() {
        let v = combine(&Signals {
            words: 0,
            ..prose()
        });
        assert_eq!(v.score, 0.0);
    }

    #[test]
    fn good_prose_scores_high_and_lists_its_parts() {
        let v = combine(&prose());
        assert!(v.score > 8.5 && v.score <= 10.0, "{v:?}");
        for name in [
            "fluency",
            "repetition",
            "length",
            "ending",
            "relevance",
            "pmi",
        ] {
            assert!(v.parts.iter().any(|(n, _)| *n == name), "{name} missing");
        }
        assert_eq!(part(&v, "repetition"), 1.0);
    }

    #[test]
    fn each_failure_pulls_the_score_down() {
        let good = combine(&prose()).score;
        let salad = combine(&Signals {
            mean_logprob: -7.0,
            ..prose()
        })
        .score;
        let looping = combine(&Signals {
            distinct_trigrams: 0.2,
            mean_logprob: -0.8,
            ..prose()
        })
        .score;
        let fragment = combine(&Signals {
            words: 25,
            ends_sentence: false,
            ..prose()
        })
        .score;
        let off_topic = combine(&Signals {
            pmi: Some(-0.1),
            ..prose()
        })
        .score;
        assert!(salad < 1.0, "{salad}");
        assert_eq!(looping, 0.0);
        assert!(fragment < 0.4 * good, "{fragment}");
        assert!(off_topic < 0.4 * good, "{off_topic}");
    }

    #[test]
    fn no_task_means_no_relevance_penalty() {
        let v = combine(&Signals {
            pmi: None,
            ..prose()
        });
        assert_eq!(part(&v, "relevance"), 1.0);
        assert!(v.score > combine(&prose()).score);
    }

    #[test]
    fn factors_are_monotone_and_bounded() {
        let mut last = 0.0;
        for i in 0..=40 {
            let lp = -9.0 + 0.2 * i as f64;
            let s = combine(&Signals {
                mean_logprob: lp,
                ..prose()
            })
            .score;
            assert!(s >= last && (0.0..=10.0).contains(&s));
            last = s;
        }
        let long = combine(&Signals {
            words: 10_000,
            ..prose()
        })
        .score;
        assert_eq!(long, combine(&prose()).score);
    }
}
