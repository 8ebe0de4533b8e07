//! Deterministic corruptions of good passages: the bad halves of the judge
//! set's (good, corrupted) pairs.
//!
//! Only the good passages are stored; the corrupted texts are derived here
//! from a seed, so the set is reproducible and a new corruption is one
//! function, not a re-labelled file.

use std::fmt;

/// How a good passage was damaged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CorruptionKind {
    /// The words of the passage in random order.
    Shuffled,
    /// The passage's sentences in another order (each sentence intact): it
    /// reads fluently line by line but no longer tells a story in order.
    SentenceOrder,
    /// The first sentence, or a short phrase of the passage, repeated to
    /// about the passage's length: the loop a small greedy decoder falls into.
    Looping,
    /// A fluent passage about a different topic, paired with this task.
    OffTopic,
    /// The first ~25% of the words, cut mid-sentence.
    Truncated,
    /// Nothing at all.
    Empty,
}

impl CorruptionKind {
    /// Every kind, in table order.
    pub const ALL: [CorruptionKind; 6] = [
        CorruptionKind::Shuffled,
        CorruptionKind::SentenceOrder,
        CorruptionKind::Looping,
        CorruptionKind::OffTopic,
        CorruptionKind::Truncated,
        CorruptionKind::Empty,
    ];

    /// Short snake_case name, as in tables and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            CorruptionKind::Shuffled => "shuffled",
            CorruptionKind::SentenceOrder => "sentence_order",
            CorruptionKind::Looping => "looping",
            CorruptionKind::OffTopic => "off_topic",
            CorruptionKind::Truncated => "truncated",
            CorruptionKind::Empty => "empty",
        }
    }
}

impl fmt::Display for CorruptionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Fraction of a passage's words a truncated version keeps.
pub const TRUNCATE_FRACTION: f64 = 0.25;
/// Words in the phrase a phrase-loop repeats.
pub const LOOP_PHRASE_WORDS: usize = 6;

/// SplitMix64: a tiny generator whose output is fixed by its seed forever
/// (unlike `rand`'s `StdRng`, whose algorithm may change between releases),
/// so the corrupted set never drifts.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant at these sizes.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// A stable 64-bit hash of a string (FNV-1a), to derive per-passage seeds
/// that do not depend on the passage's position in the file.
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn ends_sentence(word: &str) -> bool {
    let w = word.trim_end_matches(['"', '\'', ')', '\u{201d}', '\u{2019}']);
    w.ends_with(['.', '!', '?'])
}

/// The passage's words in a seeded random order (Fisher-Yates).
///
/// ```
/// # use netmoe_coordinator::judge::corrupt::shuffled;
/// let s = shuffled("a b c d e f", 1);
/// let mut w: Vec<&str> = s.split(' ').collect();
/// w.sort();
/// assert_eq!(w, ["a", "b", "c", "d", "e", "f"]);
/// ```
pub fn shuffled(text: &str, seed: u64) -> String {
    let mut words: Vec<&str> = text.split_whitespace().collect();
    let mut rng = SplitMix64::new(seed);
    for i in (1..words.len()).rev() {
        words.swap(i, rng.below(i + 1));
    }
    words.join(" ")
}

/// The passage's sentences in a seeded order that differs from the
/// original (the first sentence never stays first, so the opening moves);
/// a passage of one sentence is returned as it is.
///
/// ```
/// # use netmoe_coordinator::judge::corrupt::sentence_order;
/// let s = sentence_order("A b. C d. E f.", 3);
/// assert_ne!(s, "A b. C d. E f.");
/// assert!(s.contains("A b.") && s.contains("C d.") && s.contains("E f."));
/// ```
pub fn sentence_order(text: &str, seed: u64) -> String {
    let sentences = crate::text::sentences(text);
    if sentences.len() < 2 {
        return text.to_owned();
    }
    let mut order: Vec<usize> = (0..sentences.len()).collect();
    let mut rng = SplitMix64::new(seed);
    while order[0] == 0 {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
    }
    order
        .iter()
        .map(|&i| sentences[i].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A loop about as long as the passage: with even seeds its first sentence
/// repeated, with odd seeds a [`LOOP_PHRASE_WORDS`]-word phrase from a
/// seeded position repeated. Whole repetitions only, at least two.
pub fn looping(text: &str, seed: u64) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    if words.is_empty() {
        return String::new();
    }
    let unit: Vec<&str> = if seed.is_multiple_of(2) {
        let end = words
            .iter()
            .position(|w| ends_sentence(w))
            .map_or(words.len(), |i| i + 1);
        words[..end].to_vec()
    } else {
        let n = LOOP_PHRASE_WORDS.min(words.len());
        let start = SplitMix64::new(seed).below(words.len() - n + 1);
        words[start..start + n].to_vec()
    };
    let reps = (words.len() / unit.len()).max(2);
    let mut out = Vec::with_capacity(reps * unit.len());
    for _ in 0..reps {
        out.extend_from_slice(&unit);
    }
    out.join(" ")
}

/// The first [`TRUNCATE_FRACTION`] of the words (at least one), extended
/// word by word if the cut would land on a sentence end, so the result
/// always stops mid-sentence (unless the passage runs out first).
///
/// ```
/// # use netmoe_coordinator::judge::corrupt::truncated;
/// assert_eq!(truncated("One two. Three four five six seven eight."), "One two. Three");
/// ```
pub fn truncated(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    let mut n = ((words.len() as f64 * TRUNCATE_FRACTION).ceil() as usize).max(1);
    while n < words.len() && ends_sentence(words[n - 1]) {
        n += 1;
    }
    words[..n.min(words.len())].join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "The fox ran home. It was cold and the snow fell on the hills. She slept.";

    #[test]
    fn shuffle_is_seeded_and_keeps_words() {
        assert_eq!(shuffled(TEXT, 7), shuffled(TEXT, 7));
        assert_ne!(shuffled(TEXT, 7), shuffled(TEXT, 8));
        let mut a: Vec<&str> = TEXT.split_whitespace().collect();
        let s = shuffled(TEXT, 7);
        let mut b: Vec<&str> = s.split_whitespace().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn sentence_loop_repeats_first_sentence() {
        let l = looping(TEXT, 2);
        assert!(l.starts_with("The fox ran home. The fox ran home."));
        let n = l.split_whitespace().count();
        assert!(n <= TEXT.split_whitespace().count() && n >= 8);
    }

    #[test]
    fn phrase_loop_repeats_a_phrase() {
        let l = looping(TEXT, 3);
        let w: Vec<&str> = l.split_whitespace().collect();
        assert_eq!(w.len() % LOOP_PHRASE_WORDS, 0);
        assert_eq!(
            w[..LOOP_PHRASE_WORDS],
            w[LOOP_PHRASE_WORDS..2 * LOOP_PHRASE_WORDS]
        );
    }

    #[test]
    fn truncation_stops_mid_sentence() {
        let t = truncated(TEXT);
        assert!(!ends_sentence(t.split_whitespace().last().unwrap()));
        assert!(t.split_whitespace().count() >= 4);
        assert_eq!(truncated(""), "");
    }
}
