//! Expert profiles: what a node's expert writes about and how it is steered.
//!
//! A profile is a small TOML file. How the segment reaches the model depends
//! on the model (see [`crate::prompt`]): an instruction-tuned model is asked
//! in its own chat format (`system` line, `instruction` as the user's turn);
//! a base model gets a narrative opening (`persona`, written as the start of
//! a document of the right genre, then a line that introduces the story); a
//! profile may set its own `template` instead. A profile may also name the
//! model it is written for (`model = "smollm2-135m-instruct"`), used when the
//! node is started without `--model`.

use std::path::{Path, PathBuf};

use netmoe_proto::v1;
use serde::Deserialize;

use crate::sampling::SamplingSpec;

/// Tokens generated when neither the request nor the profile says: 128,
/// long enough for a passage's judged score to repeat between two
/// generations (README, Judges: "Do the scores repeat?"); the routing
/// dataset is collected at this length.
pub const DEFAULT_MAX_TOKENS: u32 = 128;

/// Example premises a profile may list at most: enough to outline a domain
/// for the gate, few enough that embedding them all stays cheap.
pub const MAX_EXAMPLES: usize = 32;

/// Bytes of one example premise at most (a premise is one clause).
pub const MAX_EXAMPLE_BYTES: usize = 256;

/// The narrative opening for base models: the persona sets the genre, the
/// next line introduces a story about the segment, and the model continues
/// with the story itself. Base models asked with instructions or labelled
/// fields ("This part: ...") echo them instead of writing prose, so neither
/// the whole prompt nor any field name appears.
///
/// The persona is not part of it: measured on the 270M base model, genre
/// prefaces ("From a book of fantasy tales...") turned passages into talk
/// about books and chapters; `{persona}` stays available to own templates.
pub const NARRATIVE_TEMPLATE: &str = "The following is a short story about {segment}.\n\n";

/// The system line for chat models when a profile gives none; `{domain}` is
/// replaced.
pub const DEFAULT_SYSTEM: &str = "You are a storyteller who writes {domain}. You write vivid, concrete prose with named characters and a clear sequence of events.";

/// The user's turn for chat models when a profile gives none. `{segment}`
/// and `{context}` are replaced; `{context}` lines are dropped when the
/// request carries no context.
pub const DEFAULT_INSTRUCTION: &str =
    "Write a short paragraph of about 60 words: a story about {segment}. Write only the story.";

/// How a profile wants its prompts laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LayoutChoice {
    /// The model's chat template if its GGUF has one, else the narrative opening.
    #[default]
    Auto,
    /// The model's chat template (an error if it has none).
    Chat,
    /// The narrative opening, whatever the model.
    Narrative,
    /// The profile's own `template` (set by giving one).
    Template,
}

/// The shipped profiles, compiled in so `--profile fantasy` works on a
/// board without the repository.
pub const BUILTIN: &[(&str, &str)] = &[
    ("fantasy", include_str!("../profiles/fantasy.toml")),
    ("scifi", include_str!("../profiles/scifi.toml")),
    ("nature", include_str!("../profiles/nature.toml")),
];

/// A loaded expert profile.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpertProfile {
    /// Short name, shown in tables and logs.
    pub name: String,
    /// Plain-words description of the domain; the coordinator's gate embeds
    /// it to match segments to this expert.
    pub domain: String,
    /// Example premises of the domain: a line of subjects says what a
    /// domain is about, examples show what a segment of it looks like (a
    /// history story has no keyword a subject list could name).
    pub examples: Vec<String>,
    /// Genre-setting prefix that steers a base model toward the domain.
    pub persona: String,
    /// Which layout the profile asks for.
    pub layout: LayoutChoice,
    /// The profile's own layout (with [`LayoutChoice::Template`]); `{persona}`,
    /// `{segment}` and `{context}` are replaced.
    pub template: Option<String>,
    /// System line for chat models (see [`DEFAULT_SYSTEM`]).
    pub system: Option<String>,
    /// User's turn for chat models (see [`DEFAULT_INSTRUCTION`]).
    pub instruction: Option<String>,
    /// The model this profile is written for (a catalog name, path or URL);
    /// used when the node is given no `--model`.
    pub model: Option<String>,
    /// Sampling used unless a request overrides it.
    pub sampling: SamplingSpec,
    /// Generation length when a request sets none.
    pub default_max_tokens: u32,
}

/// Errors reading a profile file.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be read.
    #[error("cannot read expert profile {path}: {source}")]
    Read {
        /// The profile file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for a profile.
    #[error("invalid expert profile {path}: {message}")]
    Invalid {
        /// The profile file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The profile file as written: every sampling field optional.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: String,
    domain: String,
    #[serde(default)]
    examples: Vec<String>,
    persona: String,
    layout: Option<LayoutChoice>,
    template: Option<String>,
    system: Option<String>,
    instruction: Option<String>,
    model: Option<String>,
    max_tokens: Option<u32>,
    #[serde(default)]
    sampling: RawSampling,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSampling {
    temperature: Option<f32>,
    top_k: Option<u32>,
    top_p: Option<f32>,
    repeat_penalty: Option<f32>,
    seed: Option<u32>,
}

impl ExpertProfile {
    /// Reads and validates a profile file.
    pub fn load(path: &Path) -> Result<Self, ProfileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProfileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|message| ProfileError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// A profile file, or the name of a shipped one (`fantasy`, `scifi`,
    /// `nature`) when no such file exists.
    pub fn resolve(spec: &Path) -> Result<Self, ProfileError> {
        if let Some((_, text)) = BUILTIN
            .iter()
            .find(|(n, _)| !spec.exists() && Path::new(n) == spec)
        {
            return Self::parse(text).map_err(|message| ProfileError::Invalid {
                path: spec.to_owned(),
                message,
            });
        }
        Self::load(spec)
    }

    /// Parses profile TOML; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let raw: RawProfile = toml::from_str(text).map_err(|e| e.message().to_owned())?;
        if raw.name.trim().is_empty() {
            return Err("`name` must not be empty".into());
        }
        if raw.domain.trim().is_empty() {
            return Err("`domain` must not be empty".into());
        }
        let examples = examples(&raw.examples)?;
        let layout = match (raw.layout, &raw.template) {
            (None | Some(LayoutChoice::Template), Some(_)) => LayoutChoice::Template,
            (Some(LayoutChoice::Template), None) => {
                return Err("`layout = \"template\"` needs a `template`".into());
            }
            (Some(l), Some(_)) => {
                return Err(format!(
                    "`template` is set, so `layout` must be \"template\", not {l:?}"
                ));
            }
            (l, None) => l.unwrap_or_default(),
        };
        for (key, text) in [
            ("template", &raw.template),
            ("instruction", &raw.instruction),
        ] {
            if text.as_ref().is_some_and(|t| !t.contains("{segment}")) {
                return Err(format!("`{key}` must contain {{segment}}"));
            }
        }
        let overrides = v1::SamplingParams {
            temperature: raw.sampling.temperature,
            top_k: raw.sampling.top_k,
            top_p: raw.sampling.top_p,
            seed: raw.sampling.seed,
            repeat_penalty: raw.sampling.repeat_penalty,
        };
        let sampling = SamplingSpec::default()
            .with_overrides(&overrides)
            .map_err(|e| format!("sampling: {e}"))?;
        let default_max_tokens = raw.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS);
        if default_max_tokens == 0 {
            return Err("`max_tokens` must be at least 1".into());
        }
        Ok(Self {
            name: raw.name.trim().to_owned(),
            domain: raw.domain.trim().to_owned(),
            examples,
            persona: raw.persona.trim_end().to_owned(),
            layout,
            template: raw.template,
            system: raw.system.map(|s| s.trim().to_owned()),
            instruction: raw.instruction,
            model: raw
                .model
                .map(|m| m.trim().to_owned())
                .filter(|m| !m.is_empty()),
            sampling,
            default_max_tokens,
        })
    }

    /// A neutral profile for nodes started without one.
    pub fn generic() -> Self {
        Self {
            name: "generalist".into(),
            domain: "short stories on any topic".into(),
            examples: Vec::new(),
            persona: "From a collection of short stories.".into(),
            layout: LayoutChoice::Auto,
            template: None,
            system: None,
            instruction: None,
            model: None,
            sampling: SamplingSpec::default(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }

    /// The narrative opening for one segment (see [`NARRATIVE_TEMPLATE`]).
    ///
    /// ```
    /// # use netmoe_edge_node::ExpertProfile;
    /// let p = ExpertProfile::generic();
    /// let prompt = p.render_narrative("a dragon wakes", "");
    /// assert!(prompt.ends_with("a short story about a dragon wakes.\n\n"));
    /// ```
    pub fn render_narrative(&self, segment: &str, _context: &str) -> String {
        NARRATIVE_TEMPLATE.replace("{segment}", segment)
    }

    /// The profile's own template for one segment; `{context}` lines are
    /// dropped when there is no context.
    pub fn render_template(&self, segment: &str, context: &str, has_context: bool) -> String {
        let template = self.template.as_deref().unwrap_or(NARRATIVE_TEMPLATE);
        fill(template, has_context)
            .replace("{persona}", &self.persona)
            .replace("{context}", context)
            .replace("{segment}", segment)
    }

    /// The system line for chat models.
    pub fn system_prompt(&self) -> String {
        self.system
            .clone()
            .unwrap_or_else(|| DEFAULT_SYSTEM.replace("{domain}", &self.domain))
    }

    /// The user's turn for chat models.
    pub fn render_instruction(&self, segment: &str, context: &str, has_context: bool) -> String {
        let instruction = self.instruction.as_deref().unwrap_or(DEFAULT_INSTRUCTION);
        fill(instruction, has_context)
            .replace("{context}", context)
            .replace("{segment}", segment)
    }

    /// The profile as the contract describes it.
    pub fn to_proto(&self) -> v1::ExpertProfile {
        v1::ExpertProfile {
            name: self.name.clone(),
            domain: self.domain.clone(),
            persona: self.persona.clone(),
            sampling: Some(self.sampling.to_proto()),
            default_max_tokens: self.default_max_tokens,
            examples: self.examples.clone(),
        }
    }
}

/// A profile's example premises, trimmed, within [`MAX_EXAMPLES`] and
/// [`MAX_EXAMPLE_BYTES`].
fn examples(raw: &[String]) -> Result<Vec<String>, String> {
    if raw.len() > MAX_EXAMPLES {
        return Err(format!(
            "`examples` has {} entries, at most {MAX_EXAMPLES} are allowed",
            raw.len()
        ));
    }
    raw.iter()
        .enumerate()
        .map(|(i, e)| {
            let e = e.trim();
            if e.is_empty() {
                Err(format!("`examples` entry {i} is empty"))
            } else if e.len() > MAX_EXAMPLE_BYTES {
                Err(format!(
                    "`examples` entry {i} is {} bytes, at most {MAX_EXAMPLE_BYTES} are allowed",
                    e.len()
                ))
            } else {
                Ok(e.to_owned())
            }
        })
        .collect()
}

/// `template` without its `{context}` lines when there is no context.
fn fill(template: &str, has_context: bool) -> String {
    if has_context {
        template.to_owned()
    } else {
        template
            .split_inclusive('\n')
            .filter(|line| !line.contains("{context}"))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_profiles_parse_and_differ() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = ExpertProfile::load(&entry.unwrap().path()).unwrap();
            assert!(p.render_narrative("x", "y").contains("x"));
            names.push(p.name);
        }
        names.sort();
        names.dedup();
        assert!(names.len() >= 3, "{names:?}");
    }

    #[test]
    fn builtin_names_resolve_and_match_the_files() {
        for (name, _) in BUILTIN {
            let p = ExpertProfile::resolve(Path::new(name)).unwrap();
            assert_eq!(&p.name, name);
        }
        let err = ExpertProfile::resolve(Path::new("no-such-expert")).unwrap_err();
        assert!(err.to_string().contains("no-such-expert"), "{err}");
    }

    #[test]
    fn rejects_bad_profiles() {
        let base = "name = \"a\"\ndomain = \"b\"\npersona = \"c\"\n";
        assert!(ExpertProfile::parse(base).is_ok());
        let err =
            ExpertProfile::parse(&format!("{base}[sampling]\ntemperature = -1.0\n")).unwrap_err();
        assert!(err.contains("temperature"), "{err}");
        let err = ExpertProfile::parse(&format!("{base}colour = 1\n")).unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = ExpertProfile::parse(&format!("{base}template = \"no slot\"\n")).unwrap_err();
        assert!(err.contains("{segment}"), "{err}");
        let err = ExpertProfile::parse(&format!("{base}instruction = \"no slot\"\n")).unwrap_err();
        assert!(err.contains("{segment}"), "{err}");
        let err = ExpertProfile::parse(&format!("{base}layout = \"template\"\n")).unwrap_err();
        assert!(err.contains("needs a `template`"), "{err}");
        let err = ExpertProfile::parse(&format!("{base}layout = \"sonnet\"\n")).unwrap_err();
        assert!(err.contains("sonnet"), "{err}");
        let err = ExpertProfile::parse(&format!(
            "{base}layout = \"chat\"\ntemplate = \"{{segment}}\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("must be \"template\""), "{err}");
    }

    #[test]
    fn examples_are_trimmed_and_bounded() {
        let base = "name = \"a\"\ndomain = \"b\"\npersona = \"c\"\n";
        let p = ExpertProfile::parse(&format!("{base}examples = [\" a fox hunts \", \"rain\"]\n"))
            .unwrap();
        assert_eq!(p.examples, ["a fox hunts", "rain"]);
        assert_eq!(p.to_proto().examples, p.examples);
        let many = vec!["\"x\""; MAX_EXAMPLES + 1].join(", ");
        let err = ExpertProfile::parse(&format!("{base}examples = [{many}]\n")).unwrap_err();
        assert!(err.contains("at most 32"), "{err}");
        let err = ExpertProfile::parse(&format!("{base}examples = [\"x\", \" \"]\n")).unwrap_err();
        assert!(err.contains("entry 1 is empty"), "{err}");
        let long = "y".repeat(MAX_EXAMPLE_BYTES + 1);
        let err = ExpertProfile::parse(&format!("{base}examples = [\"{long}\"]\n")).unwrap_err();
        assert!(err.contains("257 bytes"), "{err}");
    }

    #[test]
    fn layouts_models_and_overrides_parse() {
        let base = "name = \"a\"\ndomain = \"old ships\"\npersona = \"c\"\n";
        let p = ExpertProfile::parse(base).unwrap();
        assert_eq!(p.layout, LayoutChoice::Auto);
        assert_eq!(p.model, None);
        assert!(p.system_prompt().contains("old ships"));
        assert!(
            p.render_instruction("a wreck", "", false)
                .contains("about a wreck.")
        );
        let p = ExpertProfile::parse(&format!(
            "{base}model = \"smollm2-135m-instruct\"\nlayout = \"narrative\"\n"
        ))
        .unwrap();
        assert_eq!(p.model.as_deref(), Some("smollm2-135m-instruct"));
        assert_eq!(p.layout, LayoutChoice::Narrative);
        let p = ExpertProfile::parse(&format!(
            "{base}template = \"{{persona}}|{{segment}}\\nAll: {{context}}\\n\"\n"
        ))
        .unwrap();
        assert_eq!(p.layout, LayoutChoice::Template);
        assert_eq!(p.render_template("s", "", false), "c|s\n");
        assert_eq!(p.render_template("s", "k", true), "c|s\nAll: k\n");
    }
}

/// Arbitrary and mutated profile files: a profile or a named error.
#[cfg(test)]
mod fuzz {
    use super::*;
    use proptest::prelude::*;

    fn shipped() -> &'static str {
        BUILTIN[0].1
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn any_text_is_a_profile_or_an_error(text in ".{0,600}") {
            let _ = ExpertProfile::parse(&text);
        }

        #[test]
        fn mutated_profiles_are_a_profile_or_an_error(
            cut in 0usize..2000,
            at in 0usize..2000,
            junk in "[ -~\n]{0,40}",
        ) {
            let mut s = shipped().to_owned();
            let cut = cut.min(s.len());
            s.truncate(cut.max(at.min(s.len())));
            let at = at.min(s.len());
            if s.is_char_boundary(at) {
                s.insert_str(at, &junk);
            }
            if let Ok(p) = ExpertProfile::parse(&s) {
                prop_assert!(!p.name.is_empty());
            }
        }
    }
}
