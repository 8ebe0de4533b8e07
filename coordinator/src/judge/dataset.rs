//! The labelled judge set: hand-written good passages (one JSON object a
//! line: `{"id","task","text","topic"}`), each paired at load time with its
//! deterministic corruptions (see [`super::corrupt`]).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::corrupt::{self, CorruptionKind, SplitMix64};

/// The set shipped with the coordinator (`coordinator/data/judge_set.jsonl`),
/// compiled in so `judge-eval` works from any directory.
pub const SHIPPED_JUDGE_SET: &str = include_str!("../../data/judge_set.jsonl");

/// Path of the shipped set in the source tree.
pub const SHIPPED_JUDGE_SET_PATH: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/data/judge_set.jsonl");

/// Seed of the corruptions; change it and every corrupted text changes.
pub const CORRUPTION_SEED: u64 = 20_240_401;

/// One good passage as stored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Passage {
    /// Unique, stable name (seeds its corruptions).
    pub id: String,
    /// The one-line story prompt the passage answers.
    pub task: String,
    /// The passage itself.
    pub text: String,
    /// Coarse topic; off-topic corruptions borrow a passage of another topic.
    pub topic: String,
}

/// A good text and a corrupted one for the same task: a judge should score
/// the good one higher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JudgePair {
    /// Id of the good passage.
    pub id: String,
    /// The task both texts are scored against.
    pub task: String,
    /// The good passage.
    pub good: String,
    /// The worse text (corrupted, mediocre, or a worse-graded passage).
    pub corrupted: String,
    /// What makes it worse: a [`CorruptionKind`] name, a kind of mediocre
    /// writing, or `expert`.
    pub kind: String,
}

/// Why the set could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file could not be read.
    #[error("cannot read judge set {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not a passage object.
    #[error("judge set line {line}: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The cause.
        source: serde_json::Error,
    },
    /// The set is unusable (empty, duplicate ids, a single topic...).
    #[error("judge set: {0}")]
    Invalid(String),
}

/// Reads passages from JSONL text (blank lines are skipped).
pub fn parse_passages(jsonl: &str) -> Result<Vec<Passage>, DatasetError> {
    let mut out: Vec<Passage> = Vec::new();
    for (i, line) in jsonl.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let p: Passage = serde_json::from_str(line).map_err(|source| DatasetError::Parse {
            line: i + 1,
            source,
        })?;
        if p.text.trim().is_empty() || p.task.trim().is_empty() {
            return Err(DatasetError::Invalid(format!(
                "passage {:?} has an empty task or text",
                p.id
            )));
        }
        if out.iter().any(|q| q.id == p.id) {
            return Err(DatasetError::Invalid(format!("duplicate id {:?}", p.id)));
        }
        out.push(p);
    }
    Ok(out)
}

/// Every passage paired with each [`CorruptionKind`], in file order then
/// [`CorruptionKind::ALL`] order; the same `seed` gives the same pairs.
///
/// Needs at least two topics (off-topic texts come from another topic).
pub fn make_pairs(passages: &[Passage], seed: u64) -> Result<Vec<JudgePair>, DatasetError> {
    if passages.is_empty() {
        return Err(DatasetError::Invalid("no passages".into()));
    }
    let mut pairs = Vec::with_capacity(passages.len() * CorruptionKind::ALL.len());
    for p in passages {
        let s = seed ^ corrupt::fnv1a(&p.id);
        let others: Vec<&Passage> = passages.iter().filter(|q| q.topic != p.topic).collect();
        if others.is_empty() {
            return Err(DatasetError::Invalid(format!(
                "no passage with a topic other than {:?}",
                p.topic
            )));
        }
        for (kind, corrupted) in corruptions(&p.text, &others, s) {
            pairs.push(JudgePair {
                id: p.id.clone(),
                task: p.task.clone(),
                good: p.text.clone(),
                corrupted,
                kind: kind.as_str().into(),
            });
        }
    }
    Ok(pairs)
}

/// Every [`CorruptionKind`] of `text`, seeded by `seed`; off-topic texts
/// come from `others` (passages of other topics, at least one).
pub fn corruptions(text: &str, others: &[&Passage], seed: u64) -> Vec<(CorruptionKind, String)> {
    CorruptionKind::ALL
        .into_iter()
        .map(|kind| {
            let t = match kind {
                CorruptionKind::Shuffled => corrupt::shuffled(text, seed),
                CorruptionKind::SentenceOrder => corrupt::sentence_order(text, seed),
                CorruptionKind::Looping => corrupt::looping(text, seed),
                CorruptionKind::OffTopic => others[SplitMix64::new(seed).below(others.len())]
                    .text
                    .clone(),
                CorruptionKind::Truncated => corrupt::truncated(text),
                CorruptionKind::Empty => String::new(),
            };
            (kind, t)
        })
        .collect()
}

/// Loads a JSONL set from `path` and derives its pairs with
/// [`CORRUPTION_SEED`].
pub fn load_judge_set(path: &Path) -> Result<Vec<JudgePair>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.to_owned(),
        source,
    })?;
    make_pairs(&parse_passages(&text)?, CORRUPTION_SEED)
}

/// The pairs of the compiled-in [`SHIPPED_JUDGE_SET`].
pub fn shipped_judge_set() -> Result<Vec<JudgePair>, DatasetError> {
    make_pairs(&parse_passages(SHIPPED_JUDGE_SET)?, CORRUPTION_SEED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_set_is_well_formed() {
        let passages = parse_passages(SHIPPED_JUDGE_SET).unwrap();
        assert!(passages.len() >= 24, "{} passages", passages.len());
        for p in &passages {
            let n = p.text.split_whitespace().count();
            assert!((60..=140).contains(&n), "{}: {n} words", p.id);
            assert!(!p.task.contains('\n'));
        }
        let mut topics: Vec<&str> = passages.iter().map(|p| p.topic.as_str()).collect();
        topics.sort();
        topics.dedup();
        assert!(topics.len() >= 5, "{topics:?}");
    }

    #[test]
    fn pairs_are_reproducible_and_complete() {
        let a = shipped_judge_set().unwrap();
        let b = load_judge_set(Path::new(SHIPPED_JUDGE_SET_PATH)).unwrap();
        assert_eq!(a, b);
        let passages = parse_passages(SHIPPED_JUDGE_SET).unwrap();
        assert_eq!(a.len(), passages.len() * CorruptionKind::ALL.len());
        for pair in &a {
            assert_ne!(pair.good, pair.corrupted, "{} {}", pair.id, pair.kind);
            if pair.kind == CorruptionKind::OffTopic.as_str() {
                let own = passages.iter().find(|p| p.id == pair.id).unwrap();
                let other = passages.iter().find(|p| p.text == pair.corrupted).unwrap();
                assert_ne!(own.topic, other.topic);
            }
        }
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let err = parse_passages("\n{\"id\":\"a\"}\n").unwrap_err();
        assert!(matches!(err, DatasetError::Parse { line: 2, .. }), "{err}");
        let one = r#"{"id":"a","task":"t","text":"x","topic":"p"}"#;
        let err = make_pairs(&parse_passages(one).unwrap(), 1).unwrap_err();
        assert!(matches!(err, DatasetError::Invalid(_)));
    }
}

/// Arbitrary and mutated judge sets: passages or a named error.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const SHIPPED: &str = include_str!("../../data/judge_set.jsonl");

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn any_text_is_passages_or_an_error(text in "(\\{.{0,200}\\}\n){0,4}") {
            if let Ok(p) = parse_passages(&text) {
                let _ = make_pairs(&p, 1);
            }
        }

        #[test]
        fn mutated_sets_are_passages_or_an_error(
            lines in 1usize..30,
            at in 0usize..4000,
            junk in "[ -~]{0,12}",
        ) {
            let mut s: String = SHIPPED.lines().take(lines).collect::<Vec<_>>().join("\n");
            let at = at.min(s.len());
            if s.is_char_boundary(at) {
                s.insert_str(at, &junk);
            }
            if let Ok(p) = parse_passages(&s) {
                let _ = make_pairs(&p, 1);
            }
        }
    }
}
