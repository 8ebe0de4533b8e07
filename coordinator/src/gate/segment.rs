//! Splitting a prompt into subtasks, deterministically.
//!
//! The method, in order:
//! 1. **Lists.** Lines that start with a bullet (`-`, `*`, `•`) or a number
//!    (`1.`, `2)`) are one subtask each; text before the first item is a
//!    lead-in and is kept only as context.
//! 2. **Sentences.** Otherwise the prompt splits at `.`, `!`, `?` and `;`.
//! 3. **Clauses.** A serial list ("A, B, and C" with clause-sized items)
//!    splits at every comma. Each piece splits further at clause joiners (`, and`,
//!    `, then`, `, while`, `, but`, ` and then `, ` as well as `) and at a bare
//!    ` and ` when both sides hold at least [`MIN_CLAUSE_WORDS`] words, so
//!    "salt and pepper" stays whole while "a knight fights a dragon and a
//!    robot explores Mars" splits.
//! 4. **Bounds.** Pieces shorter than [`MIN_SEGMENT_WORDS`] join their
//!    neighbour; while there are more than `k` pieces the shortest joins its
//!    shorter neighbour. A single-topic prompt stays one segment.
//!
//! The whole prompt travels with every segment as context.

/// Fewest words a piece must have to stand alone as a segment.
pub const MIN_SEGMENT_WORDS: usize = 3;
/// Fewest words on each side of a bare "and" for it to split clauses.
pub const MIN_CLAUSE_WORDS: usize = 5;
/// Most segments a prompt may be split into.
pub const MAX_SEGMENTS: usize = 8;

const JOINERS: &[&str] = &[
    ", and then ",
    ", and ",
    ", then ",
    ", while ",
    ", but ",
    ", whereas ",
    " and then ",
    " as well as ",
    ", plus ",
];

/// Splits `prompt` into at most `k` segments (k >= 1), in prompt order.
///
/// ```
/// # use netmoe_coordinator::gate::segment;
/// let s = segment("Write about a knight who fights a dragon, and a robot that explores Mars.", 4);
/// assert_eq!(s, ["Write about a knight who fights a dragon", "a robot that explores Mars"]);
/// assert_eq!(segment("A quiet morning by the lake.", 4).len(), 1);
/// ```
pub fn segment(prompt: &str, k: usize) -> Vec<String> {
    let k = k.clamp(1, MAX_SEGMENTS);
    let mut pieces = list_items(prompt).unwrap_or_else(|| {
        sentences(prompt)
            .into_iter()
            .flat_map(|s| clauses(&s))
            .collect()
    });
    pieces.retain(|p| !p.is_empty());
    if pieces.is_empty() {
        let whole = prompt.trim();
        return if whole.is_empty() {
            Vec::new()
        } else {
            vec![whole.to_owned()]
        };
    }
    merge_short(&mut pieces);
    while pieces.len() > k {
        merge_smallest(&mut pieces);
    }
    pieces
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

fn clean(s: &str) -> String {
    s.trim()
        .trim_matches(|c: char| c == ',' || c == ';' || c == ':' || c.is_whitespace())
        .trim_end_matches(['.', '!', '?'])
        .trim()
        .to_owned()
}

/// List items, when the prompt has at least two.
fn list_items(prompt: &str) -> Option<Vec<String>> {
    let items: Vec<String> = prompt
        .lines()
        .filter_map(|l| {
            let t = l.trim_start();
            let rest = if let Some(r) = t.strip_prefix(['-', '*', '•']) {
                r
            } else {
                let digits = t.chars().take_while(char::is_ascii_digit).count();
                if digits == 0 {
                    return None;
                }
                t[digits..].strip_prefix(['.', ')'])?
            };
            Some(clean(rest))
        })
        .filter(|s| !s.is_empty())
        .collect();
    (items.len() >= 2).then_some(items)
}

fn sentences(prompt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in prompt.chars() {
        cur.push(ch);
        if matches!(ch, '.' | '!' | '?' | ';' | '\n') {
            out.push(clean(&cur));
            cur.clear();
        }
    }
    out.push(clean(&cur));
    out.retain(|s| !s.is_empty());
    out
}

/// Items of a serial list ("A, B, and C"): split at every comma when the
/// sentence ends its list with ", and" / ", or" and every item is
/// clause-sized; otherwise `None`.
fn serial_list(sentence: &str) -> Option<Vec<String>> {
    if !(sentence.contains(", and ") || sentence.contains(", or ")) {
        return None;
    }
    let items: Vec<String> = sentence
        .split(", ")
        .map(|p| {
            let p = p.trim();
            let p = p
                .strip_prefix("and ")
                .or_else(|| p.strip_prefix("or "))
                .unwrap_or(p);
            clean(p)
        })
        .collect();
    (items.len() >= 3 && items.iter().all(|i| words(i) >= MIN_SEGMENT_WORDS)).then_some(items)
}

fn clauses(sentence: &str) -> Vec<String> {
    let mut parts = serial_list(sentence).unwrap_or_else(|| vec![sentence.to_owned()]);
    for j in JOINERS {
        parts = parts
            .into_iter()
            .flat_map(|p| p.split(j).map(clean).collect::<Vec<_>>())
            .collect();
    }
    parts
        .into_iter()
        .flat_map(|p| split_bare_and(&p))
        .filter(|p| !p.is_empty())
        .collect()
}

/// Splits at " and " only where both sides are clause-sized.
fn split_bare_and(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = p;
    let mut start = 0;
    while let Some(pos) = rest[start..].find(" and ") {
        let at = start + pos;
        let (left, right) = (&rest[..at], &rest[at + 5..]);
        if words(left) >= MIN_CLAUSE_WORDS && words(right) >= MIN_CLAUSE_WORDS {
            out.push(clean(left));
            rest = right;
            start = 0;
        } else {
            start = at + 5;
        }
    }
    out.push(clean(rest));
    out
}

fn merge_short(pieces: &mut Vec<String>) {
    let mut i = 0;
    while pieces.len() > 1 && i < pieces.len() {
        if words(&pieces[i]) < MIN_SEGMENT_WORDS {
            join(pieces, i);
            i = 0;
        } else {
            i += 1;
        }
    }
}

fn merge_smallest(pieces: &mut Vec<String>) {
    let i = (0..pieces.len())
        .min_by_key(|&i| (words(&pieces[i]), i))
        .expect("non-empty");
    join(pieces, i);
}

/// Joins piece `i` into its shorter neighbour, keeping prompt order.
fn join(pieces: &mut Vec<String>, i: usize) {
    let left = i.checked_sub(1).map(|l| words(&pieces[l]));
    let right = pieces.get(i + 1).map(|r| words(r));
    let into_left = match (left, right) {
        (Some(l), Some(r)) => l <= r,
        (Some(_), None) => true,
        _ => false,
    };
    if into_left {
        let p = pieces.remove(i);
        pieces[i - 1] = format!("{}, {}", pieces[i - 1], p);
    } else if right.is_some() {
        let p = pieces.remove(i);
        pieces[i] = format!("{}, {}", p, pieces[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_become_one_segment_per_item() {
        let p = "Write a story with three parts:\n1. a dragon guards gold\n2. a robot repairs a ship\n- an otter builds a dam";
        assert_eq!(
            segment(p, 8),
            [
                "a dragon guards gold",
                "a robot repairs a ship",
                "an otter builds a dam"
            ]
        );
    }

    #[test]
    fn sentences_and_clauses_split_but_short_pairs_stay() {
        let p = "A knight rides to the castle. Then a wizard casts a storm spell, while wolves howl in the forest.";
        assert_eq!(
            segment(p, 8),
            [
                "A knight rides to the castle",
                "Then a wizard casts a storm spell",
                "wolves howl in the forest"
            ]
        );
        assert_eq!(
            segment("A tale of salt and pepper in a small kitchen.", 8).len(),
            1
        );
        let bare = segment(
            "A brave knight fights a dragon and a curious robot explores Mars",
            8,
        );
        assert_eq!(bare.len(), 2, "{bare:?}");
    }

    #[test]
    fn k_bounds_the_count_and_keeps_order_and_words() {
        let p = "A fox hunts at dawn. A ship sails north. A robot paints a wall. A king loses his crown. A child finds a shell.";
        for k in 1..=5 {
            let s = segment(p, k);
            assert_eq!(s.len(), k);
            let joined: Vec<&str> = s.iter().flat_map(|x| x.split_whitespace()).collect();
            let original: Vec<String> = p
                .split_whitespace()
                .map(|w| w.trim_end_matches('.').to_owned())
                .collect();
            let joined: Vec<String> = joined
                .iter()
                .map(|w| w.trim_end_matches(',').to_owned())
                .collect();
            assert_eq!(joined, original, "k={k}");
        }
    }

    #[test]
    fn serial_lists_split_at_every_comma() {
        let p = "Write a story in which a young knight faces a dragon, a robot scientist repairs a starship, and a family of otters survives the winter.";
        assert_eq!(
            segment(p, 4),
            [
                "Write a story in which a young knight faces a dragon",
                "a robot scientist repairs a starship",
                "a family of otters survives the winter"
            ]
        );
        // Short items are not clauses: "red, green, and blue" stays whole.
        assert_eq!(segment("Paint the barn red, green, and blue.", 4).len(), 1);
    }

    #[test]
    fn empty_and_whitespace_prompts_give_nothing() {
        assert!(segment("   ", 3).is_empty());
        assert_eq!(segment("Dragons.", 3), ["Dragons"]);
    }

    #[test]
    fn deterministic() {
        let p = "Explore a haunted lighthouse, and a spaceship lands on the beach, then the tide rises.";
        assert_eq!(segment(p, 4), segment(p, 4));
    }
}
