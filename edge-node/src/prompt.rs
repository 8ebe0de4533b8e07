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

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};

use crate::profile::{ExpertProfile, LayoutChoice};

/// Stands in for peer text while llama.cpp applies the chat template, so the
/// template's own text and the peer's can be told apart afterwards. Private-use
/// code points: no template produces them.
const MARK: char = '\u{E000}';

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
    /// model that starts writing its own prompt again has left the story).
    pub fn stops(&self, profile: &ExpertProfile) -> Vec<String> {
        let mut stops: Vec<String> = TURN_MARKERS.iter().map(|s| (*s).to_owned()).collect();
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

    /// The prompt for one segment.
    pub fn render(
        &self,
        model: &LlamaModel,
        profile: &ExpertProfile,
        segment: &str,
        context: &str,
    ) -> Result<Prompt, PromptError> {
        let subject = story_subject(segment);
        match self {
            Self::Chat(t) => chat(model, t, profile, &subject, context),
            Self::Narrative => Ok(split_marked(
                &profile.render_narrative(&marker(0), &marker(1)),
                &[&subject, context.trim()],
            )),
            Self::Template => Ok(split_marked(
                &profile.render_template(&marker(0), &marker(1), !context.trim().is_empty()),
                &[segment.trim(), context.trim()],
            )),
        }
    }
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
    let mut cleaned = segment.to_owned();
    for m in TURN_MARKERS {
        cleaned = cleaned.replace(m, " ");
    }
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

fn chat(
    model: &LlamaModel,
    template: &LlamaChatTemplate,
    profile: &ExpertProfile,
    segment: &str,
    context: &str,
) -> Result<Prompt, PromptError> {
    let apply = |e: &dyn std::fmt::Display| PromptError::Apply(e.to_string());
    let user = profile.render_instruction(&marker(0), &marker(1), !context.trim().is_empty());
    let messages = [
        LlamaChatMessage::new("system".into(), profile.system_prompt()).map_err(|e| apply(&e))?,
        LlamaChatMessage::new("user".into(), user).map_err(|e| apply(&e))?,
    ];
    let rendered = model
        .apply_chat_template(template, &messages, true)
        .map_err(|e| apply(&e))?;
    Ok(split_marked(&rendered, &[segment.trim(), context.trim()]))
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
