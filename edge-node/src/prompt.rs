//! Prompting that fits the model: an instruction-tuned model gets its own chat
//! template from the GGUF metadata (applied by llama.cpp), a base model a narrative
//! opening it continues as prose, and a profile may replace either with its own
//! layout.
//!
//! A rendered prompt is a list of pieces, each marked as template text or as text
//! that came from a peer (the segment, the context). Template pieces are tokenized
//! with control tokens parsed (`<|im_start|>` is one token, as the model was trained),
//! peer text never is: a segment that spells out `<|im_end|>` stays plain characters
//! and cannot close the turn or open a new one.
//!
//! A conversation's earlier turns are peer text too: the chat layout gives each
//! its own user or assistant turn, the other layouts a transcript before the
//! opening. [`fit`] keeps the newest turns that fit the context window.

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

use crate::profile::{ExpertProfile, LayoutChoice};

/// Stands in for peer text while llama.cpp applies the chat template, so the
/// template's own text and the peer's can be told apart afterwards. Private-use
/// code points: no template produces them.
const MARK: char = '\u{E000}';

/// Who said an earlier turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speaker {
    /// The person asking.
    User,
    /// An earlier answer.
    Assistant,
}

/// One earlier turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    /// Who said it.
    pub speaker: Speaker,
    /// What was said (peer text).
    pub text: String,
}

/// What labels a turn in the transcript of the non-chat layouts.
const TRANSCRIPT_LABELS: [(Speaker, &str); 2] =
    [(Speaker::User, "Reader:"), (Speaker::Assistant, "Writer:")];

/// The line that opens a transcript of earlier turns (non-chat layouts).
const TRANSCRIPT_HEADING: &str = "Earlier in this conversation:\n";

fn label(s: Speaker) -> &'static str {
    TRANSCRIPT_LABELS
        .iter()
        .find(|(k, _)| *k == s)
        .map_or("", |(_, l)| l)
}

/// One stretch of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    /// The text.
    pub text: String,
    /// Template text: control-token names in it are parsed as control tokens.
    pub template: bool,
}

/// A rendered prompt, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prompt {
    /// The pieces.
    pub pieces: Vec<Piece>,
}

impl Prompt {
    /// Plain text with no template parts (warm-up, tests).
    pub fn plain(text: impl Into<String>) -> Self {
        Self {
            pieces: vec![Piece {
                text: text.into(),
                template: false,
            }],
        }
    }

    /// The whole prompt as one string (for logs and tests).
    pub fn text(&self) -> String {
        self.pieces.iter().map(|p| p.text.as_str()).collect()
    }
}

/// The layout a node actually uses, resolved once at start from the profile's
/// choice and what the model file offers.
#[derive(Debug)]
pub enum Layout {
    /// The model's chat template: system line from the profile, the segment as the
    /// user's request.
    Chat(LlamaChatTemplate),
    /// A narrative opening for base models.
    Narrative,
    /// The profile's own template.
    Template,
}

/// Why a layout cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// `layout = "chat"` on a model whose GGUF carries no chat template.
    #[error("profile asks for the chat layout but the model has no chat template")]
    NoChatTemplate,
    /// llama.cpp could not apply the template.
    #[error("cannot apply the model's chat template: {0}")]
    Apply(String),
}

impl Layout {
    /// Picks the layout: `auto` is the chat template when the GGUF has one (an
    /// instruction-tuned model) and the narrative opening otherwise (a base model).
    pub fn resolve(model: &LlamaModel, profile: &ExpertProfile) -> Result<Self, PromptError> {
        let template = model.chat_template(None).ok();
        Ok(match (profile.layout, template) {
            (LayoutChoice::Template, _) => Self::Template,
            (LayoutChoice::Narrative, _) => Self::Narrative,
            (LayoutChoice::Chat | LayoutChoice::Auto, Some(t)) => Self::Chat(t),
            (LayoutChoice::Chat, None) => return Err(PromptError::NoChatTemplate),
            (LayoutChoice::Auto, None) => Self::Narrative,
        })
    }

    /// Short name for `Info` and logs.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Chat(_) => "chat",
            Self::Narrative => "narrative",
            Self::Template => "template",
        }
    }

    /// Text that ends a passage: turn markers of the common chat formats
    /// spelled as plain characters, and the opening lines of this layout (a
    /// model that starts writing its own prompt again has left the story);
    /// with a transcript of earlier turns, its speaker labels too.
    pub fn stops(&self, profile: &ExpertProfile, with_history: bool) -> Vec<String> {
        let mut stops: Vec<String> = TURN_MARKERS.iter().map(|s| (*s).to_owned()).collect();
        if with_history && !matches!(self, Self::Chat(_)) {
            stops.extend(TRANSCRIPT_LABELS.iter().map(|(_, l)| format!("\n{l}")));
        }
        let opening = match self {
            Self::Chat(_) => profile.system_prompt(),
            Self::Narrative => profile.render_narrative("", ""),
            Self::Template => profile.render_template("", "", false),
        };
        for line in opening.lines() {
            let words: Vec<&str> = line.split_whitespace().take(STOP_WORDS).collect();
            if words.len() >= 3 {
                stops.push(words.join(" "));
            }
        }
        stops.sort();
        stops.dedup();
        stops
    }

    /// The prompt for one segment after the conversation's earlier turns
    /// (`history`, oldest first; empty for a single question).
    pub fn render(
        &self,
        model: &LlamaModel,
        profile: &ExpertProfile,
        segment: &str,
        context: &str,
        history: &[Turn],
    ) -> Result<Prompt, PromptError> {
        let subject = story_subject(segment);
        let turns: Vec<String> = history.iter().map(|t| without_markers(&t.text)).collect();
        let mut values: Vec<&str> = vec![&subject, context.trim()];
        values.extend(turns.iter().map(|t| t.trim()));
        match self {
            Self::Chat(t) => chat(model, t, profile, context, history, &values),
            Self::Narrative => Ok(split_marked(
                &(transcript(history) + &profile.render_narrative(&marker(0), &marker(1))),
                &values,
            )),
            Self::Template => {
                values[0] = segment.trim();
                let has_context = !context.trim().is_empty();
                Ok(split_marked(
                    &(transcript(history)
                        + &profile.render_template(&marker(0), &marker(1), has_context)),
                    &values,
                ))
            }
        }
    }
}

/// The transcript of earlier turns that opens a non-chat prompt: a heading,
/// then one labelled line per turn whose text is marker `2 + i`.
///
/// ```
/// # use netmoe_edge_node::prompt::{Speaker, Turn, split_marked, transcript};
/// let turns = [
///     Turn { speaker: Speaker::User, text: "a fox".into() },
///     Turn { speaker: Speaker::Assistant, text: "The fox ran.".into() },
/// ];
/// let p = split_marked(&transcript(&turns), &["", "", "a fox", "The fox ran."]);
/// assert_eq!(p.text(), "Earlier in this conversation:\nReader: a fox\nWriter: The fox ran.\n\n");
/// assert!(!p.pieces[1].template && !p.pieces[3].template);
/// ```
pub fn transcript(history: &[Turn]) -> String {
    if history.is_empty() {
        return String::new();
    }
    let mut out = TRANSCRIPT_HEADING.to_owned();
    for (i, t) in history.iter().enumerate() {
        out.push_str(label(t.speaker));
        out.push(' ');
        out.push_str(&marker(2 + i));
        out.push('\n');
    }
    out.push('\n');
    out
}

/// Peer text with the turn markers of the common chat formats blanked out:
/// plain characters either way, but a model reading them as text may still
/// take them for a turn boundary.
fn without_markers(text: &str) -> String {
    let mut cleaned = text.to_owned();
    for m in TURN_MARKERS {
        cleaned = cleaned.replace(m, " ");
    }
    cleaned
}

/// The newest turns of `history` whose prompt leaves room for `max_tokens`
/// in a `ctx` window: the whole history when it fits, else the longest
/// newest suffix that does (found by bisection, as fewer turns never make
/// a longer prompt). `render` lays out a suffix, `count` tokenizes it.
/// Returns the prompt and the turns it carries; a prompt that does not fit
/// even without history is returned as is, for the engine to refuse.
pub fn fit<E>(
    history: &[Turn],
    max_tokens: u32,
    ctx: u32,
    mut render: impl FnMut(&[Turn]) -> Result<Prompt, E>,
    mut count: impl FnMut(&Prompt) -> u32,
) -> Result<(Prompt, usize), E> {
    let fits = |p: &Prompt, count: &mut dyn FnMut(&Prompt) -> u32| {
        count(p).saturating_add(max_tokens) <= ctx
    };
    let all = render(history)?;
    if history.is_empty() || fits(&all, &mut count) {
        return Ok((all, history.len()));
    }
    // Invariant: keeping `lo` turns fits (or lo == 0), keeping `hi` does not.
    let (mut lo, mut hi) = (0, history.len());
    let mut best = render(&[])?;
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let p = render(&history[history.len() - mid..])?;
        if fits(&p, &mut count) {
            lo = mid;
            best = p;
        } else {
            hi = mid;
        }
    }
    Ok((best, lo))
}

/// Turn markers of the chat formats in common use (ChatML, Gemma, Llama 3,
/// Phi), stopped at when a model writes them as text.
pub const TURN_MARKERS: &[&str] = &[
    "<|im_start|>",
    "<|im_end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<|start_header_id|>",
    "<|eot_id|>",
    "<|end|>",
    "<|user|>",
    "<|assistant|>",
];

/// Words of each template line used as a stop sequence: enough to be
/// unmistakable, few enough to catch a paraphrased restart.
const STOP_WORDS: usize = 5;

/// Leading words that ask for a story rather than say what it is about.
const REQUEST_OPENERS: &[&str] = &[
    "write a short story about ",
    "write a story about ",
    "write a story in which ",
    "write a story where ",
    "write a story of ",
    "tell a story about ",
    "tell a story in which ",
    "tell a story of ",
    "tell me about ",
    "write about ",
    "describe how ",
    "describe ",
    "imagine ",
    "tell how ",
    "write how ",
    "a story about ",
    "a story in which ",
    "then ",
    "and ",
];

/// What a segment is about, as a phrase that fits "a story about ...": request
/// words ("Write a story about", "Tell how") are dropped, the first letter is
/// lowered unless it starts a name, and the final stop is removed.
///
/// ```
/// # use netmoe_edge_node::prompt::story_subject;
/// assert_eq!(story_subject("Write a story about a young knight."), "a young knight");
/// assert_eq!(story_subject("then A robot repairs a starship"), "a robot repairs a starship");
/// assert_eq!(story_subject("Mira finds a map"), "Mira finds a map");
/// ```
pub fn story_subject(segment: &str) -> String {
    // Peer text never carries turn markers into a prompt, even as plain text.
    let cleaned = without_markers(segment);
    let mut s = cleaned
        .trim()
        .trim_end_matches(['.', '!', '?', ';', ','])
        .trim();
    loop {
        let lower = s.to_lowercase();
        match REQUEST_OPENERS.iter().find(|o| lower.starts_with(**o)) {
            Some(o) if s.len() > o.len() => s = s[o.len()..].trim_start(),
            _ => break,
        }
    }
    let mut words = s.splitn(2, ' ');
    let first = words.next().unwrap_or_default();
    let lower_first = matches!(
        first,
        "A" | "An"
            | "The"
            | "Some"
            | "Two"
            | "Three"
            | "One"
            | "Her"
            | "His"
            | "Their"
            | "Our"
            | "My"
    );
    if lower_first {
        let mut out = first.to_lowercase();
        if let Some(rest) = words.next() {
            out.push(' ');
            out.push_str(rest);
        }
        out
    } else {
        s.to_owned()
    }
}

/// The placeholder of peer text number `i`.
fn marker(i: usize) -> String {
    format!("{MARK}{i}{MARK}")
}

/// The chat layout: the profile's system line, one turn per earlier turn of
/// the conversation (marker `2 + i`), then the instruction for the segment.
fn chat(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    profile: &ExpertProfile,
    context: &str,
    history: &[Turn],
    values: &[&str],
) -> Result<Prompt, PromptError> {
    let apply = |e: &dyn std::fmt::Display| PromptError::Apply(e.to_string());
    let message =
        |role: &str, text: String| LlamaChatMessage::new(role.into(), text).map_err(|e| apply(&e));
    let user = profile.render_instruction(&marker(0), &marker(1), !context.trim().is_empty());
    let mut messages = vec![message("system", profile.system_prompt())?];
    for (i, t) in history.iter().enumerate() {
        let role = match t.speaker {
            Speaker::User => "user",
            Speaker::Assistant => "assistant",
        };
        messages.push(message(role, marker(2 + i))?);
    }
    messages.push(message("user", user)?);
    let rendered = model
        .apply_chat_template(template, &messages, true)
        .map_err(|e| apply(&e))?;
    Ok(split_marked(&rendered, values))
}

/// Splits `rendered` at the markers: text between them is template, each marker is
/// replaced by its peer text.
///
/// ```
/// # use netmoe_edge_node::prompt::split_marked;
/// let p = split_marked("<s>A \u{E000}0\u{E000}.\n", &["<s>dragon"]);
/// assert_eq!(p.text(), "<s>A <s>dragon.\n");
/// assert!(p.pieces[0].template && !p.pieces[1].template && p.pieces[2].template);
/// ```
pub fn split_marked(rendered: &str, values: &[&str]) -> Prompt {
    let mut pieces = Vec::new();
    let mut rest = rendered;
    while let Some(start) = rest.find(MARK) {
        let after = &rest[start + MARK.len_utf8()..];
        let Some(end) = after.find(MARK) else { break };
        let Ok(i) = after[..end].parse::<usize>() else {
            break;
        };
        if start > 0 {
            pieces.push(Piece {
                text: rest[..start].to_owned(),
                template: true,
            });
        }
        if let Some(v) = values.get(i).filter(|v| !v.is_empty()) {
            pieces.push(Piece {
                text: (*v).to_owned(),
                template: false,
            });
        }
        rest = &after[end + MARK.len_utf8()..];
    }
    if !rest.is_empty() {
        pieces.push(Piece {
            text: rest.to_owned(),
            template: true,
        });
    }
    Prompt { pieces }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn turns(lengths: &[usize]) -> Vec<Turn> {
        lengths
            .iter()
            .enumerate()
            .map(|(i, &n)| Turn {
                speaker: if i % 2 == 0 {
                    Speaker::User
                } else {
                    Speaker::Assistant
                },
                text: "x".repeat(n),
            })
            .collect()
    }

    /// A prompt of a 10-character opening and the turns; a token per character.
    fn render(t: &[Turn]) -> Result<Prompt, std::convert::Infallible> {
        let mut p = Prompt::plain("0123456789");
        p.pieces.extend(t.iter().map(|t| Piece {
            text: t.text.clone(),
            template: false,
        }));
        Ok(p)
    }

    fn count(p: &Prompt) -> u32 {
        p.text().len() as u32
    }

    #[test]
    fn a_history_that_fits_is_kept_whole() {
        let h = turns(&[5, 5, 5]);
        let (p, kept) = fit(&h, 10, 100, render, count).expect("fit");
        assert_eq!((kept, count(&p)), (3, 25));
    }

    #[test]
    fn the_oldest_turns_go_first_and_none_when_even_the_newest_is_too_long() {
        let h = turns(&[40, 30, 20, 10]);
        // 10 opening + 10 + 20 = 40, with 50 to generate: 90 <= 100; adding 30 would not fit.
        let (p, kept) = fit(&h, 50, 100, render, count).expect("fit");
        assert_eq!(kept, 2);
        assert_eq!(
            p.pieces[1].text.len(),
            20,
            "the newest turns are the ones kept"
        );
        let (p, kept) = fit(&turns(&[200]), 50, 100, render, count).expect("fit");
        assert_eq!((kept, count(&p)), (0, 10));
    }

    proptest! {
        /// The kept suffix fits, and one more turn would not.
        #[test]
        fn fit_keeps_the_longest_newest_suffix_that_fits(
            lengths in proptest::collection::vec(0usize..60, 0..12),
            max_tokens in 1u32..80,
            ctx in 20u32..300,
        ) {
            let h = turns(&lengths);
            let (p, kept) = fit(&h, max_tokens, ctx, render, count).expect("fit");
            let suffix = |k: usize| render(&h[h.len() - k..]).map(|p| count(&p)).unwrap_or(0);
            prop_assert_eq!(count(&p), suffix(kept));
            if kept > 0 {
                prop_assert!(suffix(kept) + max_tokens <= ctx);
            }
            if kept < h.len() {
                prop_assert!(suffix(kept + 1) + max_tokens > ctx);
            }
        }
    }
}
