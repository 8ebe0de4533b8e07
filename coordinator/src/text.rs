//! Plain-text helpers shared by fusion and the judges: sentences and
//! normalised words, one implementation each.

/// Closing marks that belong to the sentence they follow.
const CLOSERS: &[char] = &['"', '\'', ')', ']', '\u{201d}', '\u{2019}', '*'];

/// Sentences of `text`, split after `.`, `!`, `?` or `…` (with any closing
/// quotes or brackets kept on the sentence they end); a trailing fragment is
/// a sentence too.
///
/// ```
/// # use netmoe_coordinator::text::sentences;
/// assert_eq!(
///     sentences("\"Run!\" he said. The fox ran... and hid"),
///     ["\"Run!\"", "he said.", "The fox ran...", "and hid"]
/// );
/// ```
pub fn sentences(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        cur.push(ch);
        if matches!(ch, '.' | '!' | '?' | '\u{2026}') {
            while let Some(&next) = chars.peek() {
                if matches!(next, '.' | '!' | '?' | '\u{2026}') || CLOSERS.contains(&next) {
                    cur.push(next);
                    chars.next();
                } else {
                    break;
                }
            }
            let t = cur.trim();
            if !t.is_empty() {
                out.push(t.to_owned());
            }
            cur.clear();
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

/// `text` up to the end of its last complete sentence (a `.`, `!`, `?` or
/// `…` with any closing marks), or all of it when no sentence ends: what a
/// passage cut by its token budget says whole.
///
/// ```
/// # use netmoe_coordinator::text::complete_sentences;
/// assert_eq!(complete_sentences("He ran. \"Stop!\" she cried. The fox"), "He ran. \"Stop!\" she cried.");
/// assert_eq!(complete_sentences("no end at all"), "no end at all");
/// ```
pub fn complete_sentences(text: &str) -> &str {
    let mut end = None;
    let mut chars = text.char_indices().peekable();
    while let Some((_, ch)) = chars.next() {
        if matches!(ch, '.' | '!' | '?' | '\u{2026}') {
            let mut stop = None;
            while let Some(&(i, next)) = chars.peek() {
                if matches!(next, '.' | '!' | '?' | '\u{2026}') || CLOSERS.contains(&next) {
                    chars.next();
                } else {
                    stop = Some(i);
                    break;
                }
            }
            end = Some(stop.unwrap_or(text.len()));
        }
    }
    match end {
        Some(e) if !text[..e].trim().is_empty() => text[..e].trim_end(),
        _ => text,
    }
}

/// Lower-cased words with surrounding punctuation removed (empty tokens,
/// such as a lone dash, are dropped).
///
/// ```
/// # use netmoe_coordinator::text::words;
/// assert_eq!(words("The fox -- \"ran!\""), ["the", "fox", "ran"]);
/// ```
pub fn words(text: &str) -> Vec<String> {
    text.split_whitespace()
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric())
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
        .collect()
}
