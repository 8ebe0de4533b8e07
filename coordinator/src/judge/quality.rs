//! The quality judge (the default, name "quality"): ranks how well a passage
//! is written, not only whether it is broken.
//!
//! It measures fifteen signals of a passage, general properties of good
//! writing that a small model and plain counting can see:
//!
//! | signal | what it catches |
//! |---|---|
//! | fluency: mean ln p per token after the task prompt | word salad |
//! | order: ln p of the given sentence order minus that of a seeded re-ordering, per token | incoherent sentence order |
//! | order cues: an opening that refers back, a pronoun before any name, "a fox" after "the fox" | incoherent sentence order |
//! | early and late relevance: PMI with the task of the first and the last ~64 tokens | off-topic text, drifting away |
//! | distinct word 3-grams | loops |
//! | content-word repetition, repeated sentence openings | repetitive writing |
//! | vague words, filler phrases, words per sentence | vague and rambling writing |
//! | meta phrases, 3-grams copied from the task | echoing the prompt, talking about the story |
//! | names and numbers per word | concreteness |
//! | length, a finished last sentence | truncation |
//!
//! and maps them to a score with a logistic model, `score = 10 · σ(b + Σ wᵢ zᵢ)`
//! over standardised signals `zᵢ`. The weights were fitted (pairwise logistic
//! regression: the better text of a pair should score higher) on the tuning
//! half of the graded judge set only ([`super::graded`]); the held-out half
//! is what `coordinator judge-eval` reports. An empty text scores 0 and a
//! loop (distinct 3-grams under half) at most [`LOOP_CAP`].
//!
//! Cost: three forward passes of the coordinator's model over the passage
//! (after its task, after a generic task, and re-ordered).

use futures::future::BoxFuture;

use super::fit::Model;
use super::heuristic::{
    GENERIC_TASK, RELEVANCE_WINDOW_WORDS, distinct_trigram_ratio, ends_sentence, logistic, mean,
    task_prefix,
};
use super::style::{self, Style};
use super::{Judge, JudgeError, JudgeInput, Verdict};
use crate::analyzer::Analyzer;
use crate::judge::corrupt::{SplitMix64, fnv1a};
use crate::text::sentences;

/// Re-orderings the order signal compares the given order with.
pub const ORDER_SAMPLES: usize = 1;

/// Highest score of a text that is mostly a loop.
pub const LOOP_CAP: f64 = 1.0;

/// Number of signals.
pub const N_FEATURES: usize = 15;

/// The signals, in the order of [`FEATURES`].
pub type Features = [f64; N_FEATURES];

/// Signal names, as they appear in a verdict's parts.
pub const FEATURES: [&str; N_FEATURES] = [
    "fluency_logprob",
    "order_margin",
    "early_pmi",
    "late_pmi",
    "distinct_trigrams",
    "content_repeat",
    "opening_repeat",
    "vague",
    "filler",
    "sentence_words",
    "meta",
    "task_copy",
    "names",
    "length_ending",
    "order_cues",
];

/// The fitted model: per signal, (mean, standard deviation, weight), then
/// the intercept. The signals were measured with SmolLM2 135M Instruct as the
/// coordinator's model (the default); another model shifts their scale, so
/// refit for it. Fitted on the tuning half of the graded set by
/// `coordinator judge-eval --judges quality --split tune --model smollm2-135m-instruct --dump tune.jsonl`
/// then `coordinator judge-fit tune.jsonl` (see [`super::fit`]).
pub const MODEL: Model = (
    [
        (-3.821563, 1.230501, -0.517516),  // fluency_logprob
        (0.135551, 0.131939, 0.116839),    // order_margin
        (0.205362, 0.152118, 1.174668),    // early_pmi
        (0.043810, 0.084897, 0.285882),    // late_pmi
        (0.933602, 0.199779, 0.507840),    // distinct_trigrams
        (0.175940, 0.245773, -0.998449),   // content_repeat
        (0.079860, 0.201373, -0.172451),   // opening_repeat
        (0.012589, 0.032111, -0.730694),   // vague
        (0.004198, 0.012130, -0.333710),   // filler
        (22.519053, 27.032083, -0.221187), // sentence_words
        (0.048989, 0.216223, -0.101696),   // meta
        (0.016021, 0.062241, -0.319273),   // task_copy
        (0.051488, 0.048025, 0.267760),    // names
        (0.929028, 0.184253, 1.879698),    // length_ending
        (0.405556, 0.821227, -0.835386),   // order_cues
    ],
    -0.892494,
);

/// Seeded re-orderings of `text`'s sentences that differ from the original
/// (none for a single sentence).
pub fn reorderings(text: &str, k: usize) -> Vec<String> {
    let s = sentences(text);
    if s.len() < 2 {
        return Vec::new();
    }
    let mut rng = SplitMix64::new(fnv1a(text));
    let mut out = Vec::with_capacity(k);
    let mut tries = 0;
    while out.len() < k && tries < 20 {
        tries += 1;
        let mut order: Vec<usize> = (0..s.len()).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        if order.iter().enumerate().all(|(i, &j)| i == j) {
            continue;
        }
        out.push(
            order
                .iter()
                .map(|&i| s[i].as_str())
                .collect::<Vec<_>>()
                .join(" "),
        );
    }
    out
}

/// The score and its parts from measured signals (the pure half).
pub fn combine(f: &Features) -> Verdict {
    let (params, bias) = MODEL;
    let mut z = bias;
    let mut parts = Vec::with_capacity(2 * FEATURES.len() + 1);
    for ((name, x), (m, sd, w)) in FEATURES.iter().zip(f).zip(params) {
        let c = w * (x - m) / sd;
        z += c;
        parts.push((*name, *x));
        parts.push((contribution_name(name), c));
    }
    let mut score = 10.0 * logistic(z);
    if f[4] < 0.5 {
        score = score.min(LOOP_CAP);
    }
    parts.push(("logit", z));
    Verdict { score, parts }
}

/// `"<signal>_contribution"` as a static name.
fn contribution_name(name: &str) -> &'static str {
    match name {
        "fluency_logprob" => "fluency_logprob_contribution",
        "order_margin" => "order_margin_contribution",
        "early_pmi" => "early_pmi_contribution",
        "late_pmi" => "late_pmi_contribution",
        "distinct_trigrams" => "distinct_trigrams_contribution",
        "content_repeat" => "content_repeat_contribution",
        "opening_repeat" => "opening_repeat_contribution",
        "vague" => "vague_contribution",
        "filler" => "filler_contribution",
        "sentence_words" => "sentence_words_contribution",
        "meta" => "meta_contribution",
        "task_copy" => "task_copy_contribution",
        "names" => "names_contribution",
        "length_ending" => "length_ending_contribution",
        _ => "order_cues_contribution",
    }
}

/// The quality judge: see the module docs.
#[derive(Clone)]
pub struct QualityJudge {
    analyzer: Analyzer,
}

impl QualityJudge {
    /// A judge measuring with `analyzer`'s model.
    pub fn new(analyzer: Analyzer) -> Self {
        Self { analyzer }
    }

    /// Measures every signal of `input` (`None` for an empty text).
    pub async fn measure(&self, input: JudgeInput<'_>) -> Result<Option<Features>, JudgeError> {
        let text = input.text.trim();
        let n_words = text.split_whitespace().count();
        if n_words == 0 {
            return Ok(None);
        }
        let task = if input.task.trim().is_empty() {
            GENERIC_TASK
        } else {
            input.task.trim()
        };
        let prefix = task_prefix(task);
        let a = &self.analyzer;
        // Three passes: the text after its task, after a generic task (the
        // difference, token by token, is how much the task predicts the
        // text: early and late windows of it tell on-topic from drifting),
        // and a re-ordering of its sentences after the task.
        let given = a.token_logprobs(&prefix, text).await?;
        let base = a.token_logprobs(&task_prefix(GENERIC_TASK), text).await?;
        let n = given.len().min(base.len());
        let pmi: Vec<f32> = (0..n).map(|i| given[i] - base[i]).collect();
        let window = (RELEVANCE_WINDOW_WORDS * 4 / 3).min(n.max(1));
        let early_pmi = mean(&pmi[..window.min(n)]);
        let late_pmi = mean(&pmi[n.saturating_sub(window)..]);
        let given_sum: f64 = given.iter().map(|x| f64::from(*x)).sum();
        let mut order_margin = 0.0;
        let shuffles = reorderings(text, ORDER_SAMPLES);
        for r in &shuffles {
            let lp = a.token_logprobs(&prefix, r).await?;
            let sum: f64 = lp.iter().map(|x| f64::from(*x)).sum();
            order_margin += (given_sum - sum) / given.len().max(1) as f64;
        }
        if !shuffles.is_empty() {
            order_margin /= shuffles.len() as f64;
        }
        let st: Style = style::measure(task, text);
        let length = (n_words as f64 / super::heuristic::FULL_LENGTH_WORDS).min(1.0);
        let ending = if ends_sentence(text) { 1.0 } else { 0.5 };
        Ok(Some([
            mean(&given),
            order_margin,
            early_pmi,
            late_pmi,
            distinct_trigram_ratio(text),
            st.content_repeat,
            st.opening_repeat,
            st.vague,
            st.filler,
            st.sentence_words,
            st.meta,
            st.task_copy,
            st.names,
            length * ending,
            st.order_cues,
        ]))
    }
}

impl Judge for QualityJudge {
    fn name(&self) -> &str {
        "quality"
    }

    fn score<'a>(&'a self, input: JudgeInput<'a>) -> BoxFuture<'a, Result<Verdict, JudgeError>> {
        Box::pin(async move {
            Ok(match self.measure(input).await? {
                Some(f) => combine(&f),
                None => Verdict {
                    score: 0.0,
                    parts: vec![("words", 0.0)],
                },
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reorderings_differ_and_keep_sentences() {
        let t = "A b. C d. E f. G h.";
        let r = reorderings(t, 2);
        assert_eq!(r.len(), 2);
        assert_eq!(reorderings(t, ORDER_SAMPLES).len(), ORDER_SAMPLES);
        for x in &r {
            assert_ne!(x, t);
            assert_eq!(sentences(x).len(), 4);
        }
        assert_eq!(reorderings(t, 2), r, "seeded by the text");
        assert!(reorderings("One sentence only.", 2).is_empty());
    }

    #[test]
    fn loops_are_capped_and_parts_name_every_signal() {
        let mut f: Features = MODEL.0.map(|(m, _, _)| m);
        let v = combine(&f);
        assert!(v.score > 0.0 && v.score <= 10.0);
        for name in FEATURES {
            assert!(v.parts.iter().any(|(n, _)| *n == name), "{name}");
        }
        f[4] = 0.2;
        assert!(combine(&f).score <= LOOP_CAP);
    }
}
