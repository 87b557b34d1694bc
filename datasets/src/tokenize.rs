//! GPT-2 tokenization as AutoCircuit does it: the model folder's `tokenizer.json`, no special
//! tokens added by the tokenizer, BOS as the literal text `<|endoftext|>`.

use std::path::Path;

use crate::{Error, Result};

/// The BOS/EOS/pad text of GPT-2 tokenizers (TransformerLens uses it for all three).
pub const BOS_TEXT: &str = "<|endoftext|>";

pub struct PromptTokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: i64,
}

impl PromptTokenizer {
    /// Loads `tokenizer.json` from a model folder.
    pub fn from_model_dir(dir: &Path) -> Result<Self> {
        Self::from_file(&dir.join("tokenizer.json"))
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let bos_id = inner
            .token_to_id(BOS_TEXT)
            .ok_or_else(|| Error::Tokenizer {
                path: path.to_path_buf(),
                reason: format!("it has no {BOS_TEXT} token"),
            })? as i64;
        Ok(PromptTokenizer { inner, bos_id })
    }

    pub fn bos_id(&self) -> i64 {
        self.bos_id
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of `text`, no special tokens added.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let enc = self.inner.encode(text, false).map_err(|e| Error::Encode {
            text: text.to_string(),
            reason: e.to_string(),
        })?;
        Ok(enc.get_ids().iter().map(|&i| i as i64).collect())
    }

    /// Text of token ids (for labels and messages).
    pub fn decode(&self, ids: &[i64]) -> String {
        let ids: Vec<u32> = ids.iter().map(|&i| i as u32).collect();
        self.inner.decode(&ids, false).unwrap_or_default()
    }
}
