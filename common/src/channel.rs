//! Simulated wireless channels: SNR models an edge node samples, seeded so that a run
//! can be replayed draw for draw.
//!
//! A model is written as a short spec (`fixed:20`, `uniform:0:20`, `rayleigh:15`,
//! `trace:/path/to/file`), parsed with [`str::parse`] and sampled by [`SnrSampler`].

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp1};

/// The valid spec forms, quoted in parse errors.
const VALID_KINDS: &str = "fixed:<dB>, uniform:<min dB>:<max dB>, rayleigh:<mean dB>, trace:<file>";

/// Converts decibels to a linear power ratio.
///
/// ```
/// use netmoe_common::channel::db_to_linear;
/// assert!((db_to_linear(20.0) - 100.0).abs() < 1e-9);
/// assert!((db_to_linear(-3.0) - 0.501_187).abs() < 1e-6);
/// ```
pub fn db_to_linear(db: f64) -> f64 {
    10f64.powf(db / 10.0)
}

/// Converts a linear power ratio to decibels.
///
/// ```
/// use netmoe_common::channel::linear_to_db;
/// assert!((linear_to_db(100.0) - 20.0).abs() < 1e-9);
/// assert!((linear_to_db(2.0) - 3.010_3).abs() < 1e-4);
/// ```
pub fn linear_to_db(x: f64) -> f64 {
    10.0 * x.log10()
}

/// Why an SNR model spec or trace file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The spec is empty.
    #[error("SNR model spec is empty; expected one of {VALID_KINDS}")]
    Empty,
    /// The part before the first `:` names no model.
    #[error("unknown SNR model kind `{kind}`; valid kinds: {VALID_KINDS}")]
    UnknownKind {
        /// What was given.
        kind: String,
    },
    /// The kind is right but the number of fields is not.
    #[error("SNR model `{spec}` is malformed; expected {usage}")]
    WrongArity {
        /// The whole spec.
        spec: String,
        /// The form this kind takes.
        usage: &'static str,
    },
    /// A field is not a number.
    #[error("`{value}` in SNR model `{spec}` is not a number")]
    BadNumber {
        /// The whole spec.
        spec: String,
        /// The field.
        value: String,
    },
    /// A field is NaN or infinite.
    #[error("`{value}` in SNR model `{spec}` is not a finite number of dB")]
    NonFinite {
        /// The whole spec.
        spec: String,
        /// The field.
        value: String,
    },
    /// `uniform:min:max` with min above max.
    #[error("uniform SNR range is empty: min {min} dB > max {max} dB")]
    EmptyRange {
        /// Lower bound given.
        min: f64,
        /// Upper bound given.
        max: f64,
    },
    /// The trace file could not be read.
    #[error("cannot read SNR trace {path}: {source}")]
    TraceRead {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A trace line is not a finite number.
    #[error("SNR trace {path} line {line}: `{value}` is not a finite dB value")]
    TraceValue {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// The offending text.
        value: String,
    },
    /// The trace holds no values.
    #[error("SNR trace {path} has no values")]
    TraceEmpty {
        /// The file.
        path: String,
    },
}

/// How the SNR of an edge node's link is drawn for each request.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum SnrModel {
    /// A constant SNR: deterministic experiments.
    Fixed {
        /// The SNR in dB.
        db: f64,
    },
    /// SNR uniform in dB between two bounds: a crude spread of link qualities.
    Uniform {
        /// Lower bound in dB.
        min_db: f64,
        /// Upper bound in dB (inclusive).
        max_db: f64,
    },
    /// Rayleigh fading: the linear SNR is the mean times an Exp(1) power gain.
    Rayleigh {
        /// Mean SNR in dB (the linear mean, expressed in dB).
        mean_db: f64,
    },
    /// Replays recorded SNR values in order, cycling.
    Trace {
        /// Where the values came from (the file path), for messages and the spec.
        source: String,
        /// The values in dB; never empty.
        values_db: Vec<f64>,
    },
}

impl SnrModel {
    /// Loads a trace: one dB value per line; blank lines and `#` comments are ignored.
    pub fn trace_from_file(path: &Path) -> Result<Self, ChannelError> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ChannelError::TraceRead {
            path: source.clone(),
            source: e,
        })?;
        let mut values_db = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let value = line.split('#').next().unwrap_or("").trim();
            if value.is_empty() {
                continue;
            }
            match value.parse::<f64>() {
                Ok(v) if v.is_finite() => values_db.push(v),
                _ => {
                    return Err(ChannelError::TraceValue {
                        path: source,
                        line: i + 1,
                        value: value.to_owned(),
                    });
                }
            }
        }
        if values_db.is_empty() {
            return Err(ChannelError::TraceEmpty { path: source });
        }
        Ok(Self::Trace { source, values_db })
    }

    /// The spec this model parses from, e.g. `uniform:0:20` (a trace re-reads its file).
    pub fn spec(&self) -> String {
        match self {
            Self::Fixed { db } => format!("fixed:{db}"),
            Self::Uniform { min_db, max_db } => format!("uniform:{min_db}:{max_db}"),
            Self::Rayleigh { mean_db } => format!("rayleigh:{mean_db}"),
            Self::Trace { source, .. } => format!("trace:{source}"),
        }
    }
}

/// Parses one numeric field of `spec`, rejecting NaN and infinities.
fn number(spec: &str, field: &str) -> Result<f64, ChannelError> {
    let value = field.trim();
    let parsed = value.parse::<f64>().map_err(|_| ChannelError::BadNumber {
        spec: spec.to_owned(),
        value: value.to_owned(),
    })?;
    if !parsed.is_finite() {
        return Err(ChannelError::NonFinite {
            spec: spec.to_owned(),
            value: value.to_owned(),
        });
    }
    Ok(parsed)
}

impl FromStr for SnrModel {
    type Err = ChannelError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec = spec.trim();
        if spec.is_empty() {
            return Err(ChannelError::Empty);
        }
        let (kind, rest) = spec.split_once(':').unwrap_or((spec, ""));
        let kind = kind.trim().to_ascii_lowercase();
        let fields: Vec<&str> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split(':').collect()
        };
        let arity = |usage| ChannelError::WrongArity {
            spec: spec.to_owned(),
            usage,
        };
        match kind.as_str() {
            "fixed" => match fields[..] {
                [db] => Ok(Self::Fixed {
                    db: number(spec, db)?,
                }),
                _ => Err(arity("fixed:<dB>, e.g. fixed:20")),
            },
            "uniform" => match fields[..] {
                [min, max] => {
                    let (min_db, max_db) = (number(spec, min)?, number(spec, max)?);
                    if min_db > max_db {
                        return Err(ChannelError::EmptyRange {
                            min: min_db,
                            max: max_db,
                        });
                    }
                    Ok(Self::Uniform { min_db, max_db })
                }
                _ => Err(arity("uniform:<min dB>:<max dB>, e.g. uniform:0:20")),
            },
            "rayleigh" => match fields[..] {
                [mean] => Ok(Self::Rayleigh {
                    mean_db: number(spec, mean)?,
                }),
                _ => Err(arity("rayleigh:<mean dB>, e.g. rayleigh:15")),
            },
            // The path may itself contain ':', so take everything after the kind.
            "trace" if !rest.trim().is_empty() => Self::trace_from_file(Path::new(rest.trim())),
            "trace" => Err(arity("trace:<file>, e.g. trace:/data/snr.txt")),
            _ => Err(ChannelError::UnknownKind { kind }),
        }
    }
}

impl TryFrom<String> for SnrModel {
    type Error = ChannelError;

    fn try_from(spec: String) -> Result<Self, Self::Error> {
        spec.parse()
    }
}

impl From<SnrModel> for String {
    fn from(model: SnrModel) -> Self {
        model.spec()
    }
}

impl fmt::Display for SnrModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Fixed { db } => write!(f, "fixed({db} dB)"),
            Self::Uniform { min_db, max_db } => write!(f, "uniform({min_db}..{max_db} dB)"),
            Self::Rayleigh { mean_db } => write!(f, "rayleigh(mean={mean_db} dB)"),
            Self::Trace { source, values_db } => {
                write!(f, "trace({source}, {} values)", values_db.len())
            }
        }
    }
}

/// One sampled SNR.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SnrDraw {
    /// The SNR in dB.
    pub snr_db: f64,
    /// Index of this draw in the sampler's sequence (0 for the first), so logs and
    /// replies can say which draw a decision used.
    pub draw: u64,
}

/// Draws SNRs from a model with a seeded RNG: the same model and seed always give the
/// same sequence.
#[derive(Debug, Clone)]
pub struct SnrSampler {
    model: SnrModel,
    rng: StdRng,
    next: u64,
    last: Option<SnrDraw>,
}

impl SnrSampler {
    /// A sampler for `model` whose RNG is seeded with `seed`.
    pub fn new(model: SnrModel, seed: u64) -> Self {
        Self {
            model,
            rng: StdRng::seed_from_u64(seed),
            next: 0,
            last: None,
        }
    }

    /// Draws the next SNR.
    pub fn draw(&mut self) -> SnrDraw {
        let snr_db = match &self.model {
            SnrModel::Fixed { db } => *db,
            SnrModel::Uniform { min_db, max_db } => self.rng.random_range(*min_db..=*max_db),
            SnrModel::Rayleigh { mean_db } => {
                // Power gain of a Rayleigh-faded channel; floored so dB stays finite.
                let gain: f64 = Exp1.sample(&mut self.rng);
                linear_to_db(db_to_linear(*mean_db) * gain.max(f64::MIN_POSITIVE))
            }
            // Parsing guarantees a value; a hand-built empty trace gives NaN, not a panic.
            SnrModel::Trace { values_db, .. } => self
                .next
                .checked_rem(values_db.len() as u64)
                .map_or(f64::NAN, |i| values_db[i as usize]),
        };
        let draw = SnrDraw {
            snr_db,
            draw: self.next,
        };
        self.next += 1;
        self.last = Some(draw);
        draw
    }

    /// The most recent draw, if any.
    pub fn last(&self) -> Option<SnrDraw> {
        self.last
    }

    /// The model being sampled.
    pub fn model(&self) -> &SnrModel {
        &self.model
    }
}

#[cfg(test)]
mod tests;
