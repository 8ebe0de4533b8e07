//! How well a judge separates good from worse text: the fraction of labelled
//! pairs it ranks the right way round, overall and per kind (a corruption,
//! a kind of mediocre writing, graded expert passages), and the mean scores.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::dataset::JudgePair;
use super::{Judge, JudgeError, JudgeInput};

/// Pairwise accuracy on one group of pairs.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct GroupStats {
    /// Pairs in the group.
    pub pairs: usize,
    /// Pairs where the good text scored strictly higher (ties are wrong:
    /// a judge that cannot tell the texts apart has not ranked them).
    pub correct: usize,
    /// Mean score of the good texts.
    pub mean_good: f64,
    /// Mean score of the corrupted texts.
    pub mean_corrupted: f64,
}

impl GroupStats {
    /// `correct / pairs` (0 for an empty group).
    pub fn accuracy(&self) -> f64 {
        if self.pairs == 0 {
            0.0
        } else {
            self.correct as f64 / self.pairs as f64
        }
    }

    fn from_scores(scores: &[(f64, f64)]) -> Self {
        let n = scores.len();
        let mean = |f: fn(&(f64, f64)) -> f64| {
            if n == 0 {
                0.0
            } else {
                scores.iter().map(f).sum::<f64>() / n as f64
            }
        };
        Self {
            pairs: n,
            correct: scores.iter().filter(|(g, c)| g > c).count(),
            mean_good: mean(|s| s.0),
            mean_corrupted: mean(|s| s.1),
        }
    }
}

/// A judge's pairwise accuracy on a labelled set.
#[derive(Debug, Clone, PartialEq)]
pub struct AccuracyReport {
    /// The judge's name.
    pub judge: String,
    /// All pairs.
    pub overall: GroupStats,
    /// One row per kind present, in order of first appearance.
    pub per_kind: Vec<(String, GroupStats)>,
    /// `(pair id, kind, good score, corrupted score)` of each pair ranked
    /// wrongly, to see what a judge misses.
    pub misses: Vec<(String, String, f64, f64)>,
    /// Every distinct text's verdict: `(task, kind of its first pair, better
    /// side?, verdict)`, for fitting on a tuning split and for dumps.
    pub verdicts: Vec<(String, String, bool, super::Verdict)>,
    /// Distinct texts scored (identical `(task, text)` inputs are scored once).
    pub texts_scored: usize,
    /// Wall time of the scoring.
    pub elapsed: Duration,
}

impl AccuracyReport {
    /// A readable table: one row per kind and an overall row, then the
    /// misses.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<16} {:>5} {:>8} {:>10} {:>10}",
            "kind", "pairs", "accuracy", "mean good", "mean worse"
        );
        let mut row = |name: &str, s: &GroupStats| {
            let _ = writeln!(
                out,
                "{:<16} {:>5} {:>7.1}% {:>10.2} {:>10.2}",
                name,
                s.pairs,
                100.0 * s.accuracy(),
                s.mean_good,
                s.mean_corrupted
            );
        };
        for (kind, s) in &self.per_kind {
            row(kind, s);
        }
        row("overall", &self.overall);
        let _ = writeln!(
            out,
            "judge {}: {} distinct texts in {:.1} s",
            self.judge,
            self.texts_scored,
            self.elapsed.as_secs_f64()
        );
        for (id, kind, g, c) in &self.misses {
            let _ = writeln!(out, "  miss {id} / {kind}: good {g:.2} <= corrupted {c:.2}");
        }
        out
    }
}

/// Scores every pair's two texts with `judge` and counts the pairs where the
/// good text scored strictly higher. Texts are scored one at a time, each
/// distinct `(task, text)` once (a good passage appears in one pair per
/// corruption kind).
pub async fn pairwise_accuracy(
    judge: &dyn Judge,
    pairs: &[JudgePair],
) -> Result<AccuracyReport, JudgeError> {
    let started = Instant::now();
    let mut cache: HashMap<(&str, &str), f64> = HashMap::new();
    let mut scored: Vec<(&str, f64, f64)> = Vec::with_capacity(pairs.len());
    let mut misses = Vec::new();
    let mut verdicts = Vec::new();
    // A half of the graded set takes minutes to score; show where it is
    // (on stderr, drawn only when that is a terminal).
    let bar = indicatif::ProgressBar::new(pairs.len() as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} pairs  {elapsed_precise} (eta {eta})  {msg}",
        )
        .expect("valid template"),
    );
    bar.set_message(judge.name().to_owned());
    for p in pairs {
        bar.inc(1);
        let mut pair_scores = [0.0; 2];
        for (slot, text) in [p.good.as_str(), p.corrupted.as_str()]
            .into_iter()
            .enumerate()
        {
            let key = (p.task.as_str(), text);
            pair_scores[slot] = match cache.get(&key) {
                Some(s) => *s,
                None => {
                    let v = judge
                        .score(JudgeInput {
                            task: &p.task,
                            text,
                        })
                        .await?;
                    let s = v.score;
                    verdicts.push((p.task.clone(), p.kind.clone(), slot == 0, v));
                    cache.insert(key, s);
                    s
                }
            };
        }
        let [g, c] = pair_scores;
        if g <= c {
            misses.push((p.id.clone(), p.kind.clone(), g, c));
        }
        scored.push((p.kind.as_str(), g, c));
    }
    bar.finish_and_clear();
    let all: Vec<(f64, f64)> = scored.iter().map(|(_, g, c)| (*g, *c)).collect();
    let mut kinds: Vec<&str> = Vec::new();
    for (k, ..) in &scored {
        if !kinds.contains(k) {
            kinds.push(k);
        }
    }
    let per_kind = kinds
        .into_iter()
        .map(|k| {
            let s: Vec<(f64, f64)> = scored
                .iter()
                .filter(|(kk, ..)| *kk == k)
                .map(|(_, g, c)| (*g, *c))
                .collect();
            (k.to_owned(), GroupStats::from_scores(&s))
        })
        .collect();
    Ok(AccuracyReport {
        judge: judge.name().to_owned(),
        overall: GroupStats::from_scores(&all),
        per_kind,
        misses,
        verdicts,
        texts_scored: cache.len(),
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use futures::future::BoxFuture;

    use super::*;
    use crate::judge::{CorruptionKind, Verdict};

    /// Scores a text by its length in words, capped at 10.
    struct WordCount;

    impl Judge for WordCount {
        fn name(&self) -> &str {
            "words"
        }
        fn score<'a>(
            &'a self,
            input: JudgeInput<'a>,
        ) -> BoxFuture<'a, Result<Verdict, JudgeError>> {
            let n = input.text.split_whitespace().count().min(10) as f64;
            Box::pin(async move {
                Ok(Verdict {
                    score: n,
                    parts: vec![],
                })
            })
        }
    }

    fn pair(good: &str, bad: &str, kind: CorruptionKind) -> JudgePair {
        JudgePair {
            id: good.into(),
            task: "t".into(),
            good: good.into(),
            corrupted: bad.into(),
            kind: kind.as_str().into(),
        }
    }

    #[tokio::test]
    async fn counts_ties_as_wrong_and_groups_by_kind() {
        let pairs = [
            pair("a b c", "a", CorruptionKind::Truncated),
            pair("a b", "c d", CorruptionKind::Shuffled),
            pair("a b c d", "", CorruptionKind::Empty),
            pair("a", "a b", CorruptionKind::Truncated),
        ];
        let r = pairwise_accuracy(&WordCount, &pairs).await.unwrap();
        assert_eq!(r.overall.pairs, 4);
        assert_eq!(r.overall.correct, 2);
        assert_eq!(r.overall.accuracy(), 0.5);
        assert_eq!(r.per_kind.len(), 3);
        let trunc = r.per_kind.iter().find(|(k, _)| k == "truncated").unwrap().1;
        assert_eq!((trunc.pairs, trunc.correct), (2, 1));
        assert_eq!(trunc.mean_good, 2.0);
        assert_eq!(r.misses.len(), 2);
        // "a" and "a b" are scored once though each appears twice.
        assert_eq!(r.texts_scored, 6);
        let t = r.table();
        assert!(t.contains("overall") && t.contains("50.0%"), "{t}");
    }
}
