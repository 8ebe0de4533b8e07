//! The graded judge set: for each of 36 story tasks a good passage and five
//! mediocre ones (rambling, repetitive, vague, drifting off topic, echoing
//! the prompt), all hand-written and labelled before any judge constant was
//! set (`coordinator/data/judge/graded.jsonl`); the seeded corruptions of
//! each good passage (word salad, shuffled sentence order, loops, off-topic,
//! truncated, empty); graded passages that our own experts wrote
//! (`coordinator/data/judge/expert.jsonl`); and prompt-injection lines
//! (`coordinator/data/judge/injections.jsonl`).
//!
//! Split by task: `tune` (3 tasks per topic) is the only half any constant
//! was read from; `heldout` (the other 3) is what accuracy is reported on.

use serde::Deserialize;

use super::corrupt::fnv1a;
use super::dataset::{CORRUPTION_SEED, DatasetError, JudgePair, Passage, corruptions};

/// The graded passages, compiled in.
pub const GRADED_SET: &str = include_str!("../../data/judge/graded.jsonl");
/// Graded passages written by the shipped experts, compiled in.
pub const EXPERT_SET: &str = include_str!("../../data/judge/expert.jsonl");
/// Injection lines, compiled in.
pub const INJECTIONS: &str = include_str!("../../data/judge/injections.jsonl");

/// One hand-written passage.
#[derive(Debug, Clone, Deserialize)]
pub struct GradedPassage {
    /// Unique id.
    pub id: String,
    /// The task it answers (shared by the task's six passages).
    pub task_id: String,
    /// The story prompt.
    pub task: String,
    /// Coarse topic.
    pub topic: String,
    /// `good` or a kind of mediocre writing.
    pub kind: String,
    /// `good` or `mediocre`.
    pub grade: String,
    /// `tune` or `heldout`.
    pub split: String,
    /// The passage.
    pub text: String,
}

/// One passage an expert wrote, graded by a reader who did not see any score.
#[derive(Debug, Clone, Deserialize)]
pub struct ExpertPassage {
    /// Unique id.
    pub id: String,
    /// The segment the expert was asked for.
    pub task: String,
    /// Which expert (profile and model) wrote it.
    pub expert: String,
    /// `good`, `mediocre` or `bad`.
    pub grade: String,
    /// `tune` or `heldout`.
    pub split: String,
    /// The passage.
    pub text: String,
}

/// One injection line.
#[derive(Debug, Clone, Deserialize)]
pub struct Injection {
    /// Unique id.
    pub id: String,
    /// The text appended to a passage.
    pub text: String,
}

fn parse<T: for<'de> Deserialize<'de>>(jsonl: &str) -> Result<Vec<T>, DatasetError> {
    jsonl
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| DatasetError::Parse {
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// The compiled-in graded passages.
pub fn graded_passages() -> Result<Vec<GradedPassage>, DatasetError> {
    parse(GRADED_SET)
}

/// The compiled-in expert passages.
pub fn expert_passages() -> Result<Vec<ExpertPassage>, DatasetError> {
    parse(EXPERT_SET)
}

/// The compiled-in injection lines.
pub fn injections() -> Result<Vec<Injection>, DatasetError> {
    parse(INJECTIONS)
}

/// Grade order: a higher rank is better.
fn rank(grade: &str) -> u8 {
    match grade {
        "good" => 2,
        "mediocre" => 1,
        _ => 0,
    }
}

/// The pairs of one split (`tune`, `heldout`, or `all`): for every task, its
/// good passage against each mediocre one (kind = the mediocre kind) and
/// against each corruption of itself (kind = the corruption); for every
/// segment our experts wrote on, each better-graded passage against each
/// worse one (kind `expert`).
pub fn graded_pairs(split: &str) -> Result<Vec<JudgePair>, DatasetError> {
    let keep = |s: &str| split == "all" || s == split;
    let passages: Vec<GradedPassage> = graded_passages()?
        .into_iter()
        .filter(|p| keep(&p.split))
        .collect();
    let goods: Vec<Passage> = passages
        .iter()
        .filter(|p| p.grade == "good")
        .map(|p| Passage {
            id: p.id.clone(),
            task: p.task.clone(),
            text: p.text.clone(),
            topic: p.topic.clone(),
        })
        .collect();
    let mut pairs = Vec::new();
    for g in &goods {
        let task_id = passages
            .iter()
            .find(|p| p.id == g.id)
            .map(|p| p.task_id.clone());
        for m in passages
            .iter()
            .filter(|p| p.grade != "good" && Some(&p.task_id) == task_id.as_ref())
        {
            pairs.push(JudgePair {
                id: m.id.clone(),
                task: g.task.clone(),
                good: g.text.clone(),
                corrupted: m.text.clone(),
                kind: m.kind.clone(),
            });
        }
        let others: Vec<&Passage> = goods.iter().filter(|q| q.topic != g.topic).collect();
        if others.is_empty() {
            return Err(DatasetError::Invalid(
                "graded split has a single topic".into(),
            ));
        }
        for (kind, text) in corruptions(&g.text, &others, CORRUPTION_SEED ^ fnv1a(&g.id)) {
            pairs.push(JudgePair {
                id: g.id.clone(),
                task: g.task.clone(),
                good: g.text.clone(),
                corrupted: text,
                kind: kind.as_str().into(),
            });
        }
    }
    let experts: Vec<ExpertPassage> = expert_passages()?
        .into_iter()
        .filter(|p| keep(&p.split))
        .collect();
    for a in &experts {
        for b in experts
            .iter()
            .filter(|b| b.task == a.task && rank(&a.grade) > rank(&b.grade))
        {
            pairs.push(JudgePair {
                id: format!("{}>{}", a.id, b.id),
                task: a.task.clone(),
                good: a.text.clone(),
                corrupted: b.text.clone(),
                kind: "expert".into(),
            });
        }
    }
    Ok(pairs)
}

/// Mean scores by grade and the good-minus-mediocre gap, from a report on
/// graded pairs (a line per statistic; empty when the report has no
/// mediocre rows).
pub fn grade_summary(report: &super::AccuracyReport) -> String {
    let better: Vec<f64> = report
        .verdicts
        .iter()
        .filter(|(_, k, b, _)| *b && MEDIOCRE_KINDS.contains(&k.as_str()))
        .map(|(_, _, _, v)| v.score)
        .collect();
    let mediocre: Vec<f64> = report
        .verdicts
        .iter()
        .filter(|(_, k, b, _)| !*b && MEDIOCRE_KINDS.contains(&k.as_str()))
        .map(|(_, _, _, v)| v.score)
        .collect();
    if mediocre.is_empty() {
        return String::new();
    }
    let m = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    format!(
        "mean score: good {:.2} ({} passages), mediocre {:.2} ({} passages), gap {:.2}\n",
        m(&better),
        better.len(),
        m(&mediocre),
        mediocre.len(),
        m(&better) - m(&mediocre)
    )
}

/// Score shifts when an injection line is appended to good passages of
/// `split` (one line per passage, cycling through the lines): a judge that
/// obeys the text it judges would move up.
pub async fn injection_shift(
    judge: &dyn super::Judge,
    split: &str,
) -> Result<Vec<f64>, super::JudgeError> {
    let lines = injections().map_err(|e| super::JudgeError::NoScore(e.to_string()))?;
    let goods: Vec<GradedPassage> = graded_passages()
        .map_err(|e| super::JudgeError::NoScore(e.to_string()))?
        .into_iter()
        .filter(|p| p.grade == "good" && (split == "all" || p.split == split))
        .take(lines.len())
        .collect();
    let mut out = Vec::with_capacity(goods.len());
    for (p, inj) in goods.iter().zip(lines.iter()) {
        let before = judge
            .score(super::JudgeInput {
                task: &p.task,
                text: &p.text,
            })
            .await?
            .score;
        let injected = format!("{} {}", p.text, inj.text);
        let after = judge
            .score(super::JudgeInput {
                task: &p.task,
                text: &injected,
            })
            .await?
            .score;
        out.push(after - before);
    }
    Ok(out)
}

/// The mediocre kinds, for grouping report rows.
pub const MEDIOCRE_KINDS: &[&str] = &["rambling", "repetitive", "vague", "drift", "echo"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_graded_set_is_complete_and_split_by_task() {
        let all = graded_passages().unwrap();
        assert_eq!(all.len(), 216);
        let mut tasks: Vec<(&str, &str)> = all
            .iter()
            .map(|p| (p.task_id.as_str(), p.split.as_str()))
            .collect();
        tasks.sort();
        tasks.dedup();
        assert_eq!(tasks.len(), 36, "each task sits in one split");
        let tune = graded_pairs("tune").unwrap();
        let held = graded_pairs("heldout").unwrap();
        for pairs in [&tune, &held] {
            for kind in MEDIOCRE_KINDS
                .iter()
                .chain(&["sentence_order", "off_topic"])
            {
                assert_eq!(
                    pairs.iter().filter(|p| p.kind == *kind).count(),
                    18,
                    "{kind}"
                );
            }
        }
        // No text of one split appears in the other.
        for p in &held {
            assert!(!tune.iter().any(|q| q.good == p.good), "{}", p.id);
        }
        assert!(injections().unwrap().len() >= 4);
    }
}
