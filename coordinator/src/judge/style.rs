//! Cheap lexical signals of how a passage is written, computed from the text
//! alone: redundancy, vague and filler wording, talk about the story instead
//! of telling it, copying of the task, and concreteness (names, numbers).
//! The quality judge ([`super::quality`]) weighs them with the model's
//! signals.

use crate::text::{sentences, words};

/// Function words left out of content-word counts.
const STOPWORDS: &[&str] = &[
    "the", "a", "an", "and", "or", "but", "so", "of", "to", "in", "on", "at", "for", "with",
    "from", "by", "as", "is", "was", "were", "are", "be", "been", "it", "its", "he", "she", "they",
    "his", "her", "their", "him", "them", "i", "you", "we", "my", "me", "our", "that", "this",
    "these", "those", "there", "then", "had", "has", "have", "not", "no", "into", "out", "up",
    "down", "over", "all", "one", "would", "could", "will", "did", "do", "what", "when", "who",
    "which", "where", "if", "just", "than", "very", "more",
];

/// Words that say little: generic nouns, intensifiers, hedges.
const VAGUE: &[&str] = &[
    "thing",
    "things",
    "something",
    "somehow",
    "someone",
    "somewhere",
    "stuff",
    "very",
    "really",
    "nice",
    "interesting",
    "good",
    "bad",
    "great",
    "lot",
    "lots",
    "kind",
    "sort",
    "way",
    "certain",
    "various",
    "many",
    "some",
    "quite",
    "pretty",
    "special",
    "important",
    "different",
    "whatever",
    "everything",
    "anything",
    "feeling",
    "feelings",
    "situation",
];

/// Filler phrases of rambling speech (matched on lower-cased text with
/// single spaces).
const FILLERS: &[&str] = &[
    "you know",
    "i mean",
    "sort of",
    "kind of",
    "or something",
    "anyway",
    "basically",
    "like,",
    "and so",
    "and then",
    "or whatever",
    "i guess",
    "so yeah",
    "well,",
    "actually",
    "to be honest",
    "if you think about it",
];

/// Phrases that talk about the text rather than tell it, and prompt-template
/// labels.
const META: &[&str] = &[
    "this story",
    "the story",
    "in this story",
    "story is about",
    "the tale",
    "this tale",
    "this part",
    "the whole tale",
    "the task",
    "the prompt",
    "this passage",
    "the passage",
    "the following",
    "the chapter",
    "this chapter",
];

/// What [`measure`] reads off a text.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Style {
    /// Share of content words that repeat an earlier content word.
    pub content_repeat: f64,
    /// Share of sentences whose first two words open another sentence too.
    pub opening_repeat: f64,
    /// Vague words per word.
    pub vague: f64,
    /// Filler phrases per word.
    pub filler: f64,
    /// Meta phrases per sentence.
    pub meta: f64,
    /// Share of the text's word 3-grams that occur in the task.
    pub task_copy: f64,
    /// Capitalised words inside sentences and numbers, per word.
    pub names: f64,
    /// Mean words per sentence.
    pub sentence_words: f64,
    /// Signs that the sentences are out of order (see [`order_cues`]).
    pub order_cues: f64,
}

/// Words that refer back to something already told; a story does not open
/// with them.
const BACK_REFERENCES: &[&str] = &[
    "he",
    "she",
    "they",
    "it",
    "his",
    "her",
    "their",
    "its",
    "him",
    "them",
    "then",
    "but",
    "and",
    "so",
    "finally",
    "later",
    "afterwards",
    "instead",
    "still",
    "yet",
    "meanwhile",
    "eventually",
    "again",
    "also",
    "too",
    "until",
    "now",
    "soon",
    "this",
    "that",
    "these",
    "those",
];

/// Personal pronouns that stand for a named character.
const PERSONAL: &[&str] = &["he", "she", "they", "his", "her", "their", "him", "them"];

/// Signs that a text's sentences are out of order, from the way stories
/// introduce what they tell (each counts 1): the first sentence opens with
/// a word that refers back (a pronoun, "then", "but", "finally"); a personal
/// pronoun comes before the first mention of any name the text uses (a
/// capitalised word inside a sentence); a
/// noun is introduced with "a"/"an" after the text already called it "the"
/// (at most 2 such nouns count). Reordering a story's sentences moves these
/// out of place; a text's words alone do not change them.
///
/// ```
/// # use netmoe_coordinator::judge::style::order_cues;
/// let told = "At dawn Mira found a fox by the river. The fox was hurt. She carried it home.";
/// let shuffled = "She carried it home. The fox was hurt. At dawn Mira found a fox by the river.";
/// assert_eq!(order_cues(told), 0.0);
/// assert_eq!(order_cues(shuffled), 3.0);
/// ```
pub fn order_cues(text: &str) -> f64 {
    order_cues_of(&sentences(text), &words(text))
}

/// [`order_cues`] on a text already split into sentences and words (as
/// [`measure`] has it).
fn order_cues_of(sents: &[String], w: &[String]) -> f64 {
    let Some(first) = sents.first() else {
        return 0.0;
    };
    let lead = words(first)
        .first()
        .is_some_and(|w| BACK_REFERENCES.contains(&w.as_str()));
    let names: Vec<String> = sents
        .iter()
        .flat_map(|s| inner_capitals(s))
        .map(str::to_lowercase)
        .collect();
    let pronoun_first = !names.is_empty()
        && w.iter()
            .find(|x| names.contains(x) || PERSONAL.contains(&x.as_str()))
            .is_some_and(|x| PERSONAL.contains(&x.as_str()));
    let mut definite: Vec<&str> = Vec::new();
    let mut late_indefinite = 0usize;
    for pair in w.windows(2) {
        match pair[0].as_str() {
            "the" => definite.push(&pair[1]),
            "a" | "an" if definite.contains(&pair[1].as_str()) => late_indefinite += 1,
            _ => {}
        }
    }
    f64::from(u8::from(lead)) + f64::from(u8::from(pronoun_first)) + late_indefinite.min(2) as f64
}

/// The capitalised words inside a sentence (not its first word, not "I"):
/// the names it uses.
fn inner_capitals(sentence: &str) -> impl Iterator<Item = &str> {
    tokens(sentence)
        .enumerate()
        .filter(|(i, t)| is_inner_capital(*i, t))
        .map(|(_, t)| t)
}

/// A sentence's whitespace-separated tokens, trimmed of punctuation.
fn tokens(sentence: &str) -> impl Iterator<Item = &str> {
    sentence
        .split_whitespace()
        .map(|tok| tok.trim_matches(|c: char| !c.is_alphanumeric()))
}

/// Whether the `i`-th token `t` of a sentence reads as a name: capitalised,
/// not the sentence's first word, not "I".
fn is_inner_capital(i: usize, t: &str) -> bool {
    i > 0 && t != "I" && t.chars().next().is_some_and(char::is_uppercase)
}

/// Counts non-overlapping occurrences of `phrase` in `hay`.
fn count(hay: &str, phrase: &str) -> usize {
    hay.matches(phrase).count()
}

/// The lexical signals of `text` written for `task`.
///
/// ```
/// # use netmoe_coordinator::judge::style::measure;
/// let s = measure("Write about a fox.", "This story is about a fox. The story is very nice. Things happen.");
/// assert!(s.meta > 0.5 && s.vague > 0.1 && s.names == 0.0);
/// let t = measure("Write about a fox.", "Mira found the fox at dawn near Elm Creek.");
/// assert!(t.names > 0.1 && t.meta == 0.0);
/// ```
pub fn measure(task: &str, text: &str) -> Style {
    let w = words(text);
    let n = w.len().max(1) as f64;
    let content: Vec<&String> = w
        .iter()
        .filter(|x| x.len() >= 3 && !STOPWORDS.contains(&x.as_str()))
        .collect();
    let mut seen: Vec<&str> = Vec::new();
    let mut repeats = 0usize;
    for c in &content {
        // A crude stem: plural and -ed/-ing forms count as the same word.
        let stem = c
            .trim_end_matches("ing")
            .trim_end_matches("ed")
            .trim_end_matches('s');
        if seen.contains(&stem) {
            repeats += 1;
        } else {
            seen.push(stem);
        }
    }
    let sents = sentences(text);
    let openings: Vec<String> = sents
        .iter()
        .map(|s| words(s).into_iter().take(2).collect::<Vec<_>>().join(" "))
        .collect();
    let opening_repeat = if sents.len() < 2 {
        0.0
    } else {
        openings
            .iter()
            .enumerate()
            .filter(|(i, o)| {
                !o.is_empty() && openings.iter().enumerate().any(|(j, p)| j != *i && p == *o)
            })
            .count() as f64
            / sents.len() as f64
    };
    let lower = w.join(" ");
    let raw_lower = text
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let filler = FILLERS.iter().map(|f| count(&raw_lower, f)).sum::<usize>() as f64 / n;
    let meta =
        META.iter().map(|m| count(&lower, m)).sum::<usize>() as f64 / sents.len().max(1) as f64;
    let vague = w.iter().filter(|x| VAGUE.contains(&x.as_str())).count() as f64 / n;
    let tw = words(task);
    let task_grams: Vec<&[String]> = tw.windows(3).collect();
    let grams: Vec<&[String]> = w.windows(3).collect();
    let task_copy = if grams.is_empty() {
        0.0
    } else {
        grams.iter().filter(|g| task_grams.contains(g)).count() as f64 / grams.len() as f64
    };
    let mut names = 0usize;
    for s in &sents {
        for (i, t) in tokens(s).enumerate() {
            if is_inner_capital(i, t) || t.chars().any(|c| c.is_ascii_digit()) {
                names += 1;
            }
        }
    }
    Style {
        content_repeat: repeats as f64 / content.len().max(1) as f64,
        opening_repeat,
        vague,
        filler,
        meta,
        task_copy,
        names: names as f64 / n,
        sentence_words: n / sents.len().max(1) as f64,
        order_cues: order_cues_of(&sents, &w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repetition_and_openings_are_seen() {
        let rep = measure(
            "",
            "The house was old. The house was dark. The house was old and dark and the house was quiet.",
        );
        let fresh = measure(
            "",
            "Mira pushed the gate open. Rain had softened the path, and a heron lifted off the pond.",
        );
        assert!(
            rep.content_repeat > fresh.content_repeat + 0.3,
            "{rep:?} {fresh:?}"
        );
        assert!(rep.opening_repeat == 1.0 && fresh.opening_repeat == 0.0);
    }

    #[test]
    fn task_copying_and_fillers_are_seen() {
        let task = "Write a story about a young knight who must face a dragon.";
        let echo = measure(
            task,
            "A young knight who must face a dragon. The knight who must face a dragon is young.",
        );
        assert!(echo.task_copy > 0.4, "{echo:?}");
        let ramble = measure(
            task,
            "So, you know, the knight, I mean, he sort of went, anyway, and then he kind of left.",
        );
        assert!(ramble.filler > 0.2, "{ramble:?}");
        assert_eq!(measure(task, "").task_copy, 0.0);
    }
}
