//! Expert profiles: what a node's expert writes about and how it is steered.
//!
//! A profile is a small TOML file. The base model has no instruction tuning,
//! so the `persona` is written as the opening of a document of the right
//! genre; the prompt template then places the segment where such a document
//! would continue with the story.

use std::path::{Path, PathBuf};

use netmoe_proto::v1;
use serde::Deserialize;

use crate::sampling::SamplingSpec;

/// Tokens generated when neither the request nor the profile says.
pub const DEFAULT_MAX_TOKENS: u32 = 96;

/// The template used when a profile gives none. `{persona}`, `{context}`
/// and `{segment}` are replaced; `{context}` lines are dropped when the
/// request carries no context.
pub const DEFAULT_TEMPLATE: &str =
    "{persona}\n\nThe whole tale: {context}\nThis part: {segment}\n\n";

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
    /// Genre-setting prefix that steers a base model toward the domain.
    pub persona: String,
    /// Prompt layout (see [`DEFAULT_TEMPLATE`]).
    pub template: String,
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
    persona: String,
    template: Option<String>,
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
        let template = raw.template.unwrap_or_else(|| DEFAULT_TEMPLATE.to_owned());
        if !template.contains("{segment}") {
            return Err("`template` must contain {segment}".into());
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
            persona: raw.persona.trim_end().to_owned(),
            template,
            sampling,
            default_max_tokens,
        })
    }

    /// A neutral profile for nodes started without one.
    pub fn generic() -> Self {
        Self {
            name: "generalist".into(),
            domain: "short stories on any topic".into(),
            persona: "Here is a short story.".into(),
            template: DEFAULT_TEMPLATE.into(),
            sampling: SamplingSpec::default(),
            default_max_tokens: DEFAULT_MAX_TOKENS,
        }
    }

    /// The prompt the model continues for one segment.
    ///
    /// ```
    /// # use netmoe_edge_node::ExpertProfile;
    /// let p = ExpertProfile::generic();
    /// let prompt = p.render("a dragon wakes", "");
    /// assert!(prompt.contains("This part: a dragon wakes"));
    /// assert!(!prompt.contains("The whole tale"));
    /// ```
    pub fn render(&self, segment: &str, context: &str) -> String {
        let context = context.trim();
        let template: String = if context.is_empty() {
            self.template
                .split_inclusive('\n')
                .filter(|line| !line.contains("{context}"))
                .collect()
        } else {
            self.template.clone()
        };
        template
            .replace("{persona}", &self.persona)
            .replace("{context}", context)
            .replace("{segment}", segment.trim())
    }

    /// The profile as the contract describes it.
    pub fn to_proto(&self) -> v1::ExpertProfile {
        v1::ExpertProfile {
            name: self.name.clone(),
            domain: self.domain.clone(),
            persona: self.persona.clone(),
            sampling: Some(self.sampling.to_proto()),
            default_max_tokens: self.default_max_tokens,
        }
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
            assert!(p.render("x", "y").contains("x"));
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
    }
}
