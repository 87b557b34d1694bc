//! GPT-2's HF `config.json`, converted to TransformerLens names. HF names live only in
//! `HfGpt2Config`. Shared because the coordinator (no tch) and the workers read the same
//! folder and must agree on its shape.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why a model config cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("bad model config {path}: {reason}")]
    Bad { path: PathBuf, reason: String },
    #[error("unsupported model: {0}")]
    Unsupported(String),
}

type Result<T, E = ConfigError> = std::result::Result<T, E>;
use ConfigError as Error;

#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct HfGpt2Config {
    pub n_layer: usize,
    pub n_head: usize,
    pub n_embd: usize,
    #[serde(default)]
    pub n_positions: Option<usize>,
    #[serde(default)]
    pub n_ctx: Option<usize>,
    pub vocab_size: usize,
    #[serde(default)]
    pub n_inner: Option<usize>,
    #[serde(default = "default_eps")]
    pub layer_norm_epsilon: f64,
    #[serde(default = "default_act")]
    pub activation_function: String,
    #[serde(default)]
    pub scale_attn_by_inverse_layer_idx: bool,
    #[serde(default)]
    pub reorder_and_upcast_attn: bool,
    #[serde(default)]
    pub model_type: Option<String>,
}

fn default_eps() -> f64 {
    1e-5
}

fn default_act() -> String {
    "gelu_new".into()
}

/// The model's shape in TransformerLens names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_model: usize,
    pub d_head: usize,
    pub d_mlp: usize,
    pub n_ctx: usize,
    pub d_vocab: usize,
    pub eps: f64,
}

impl ModelConfig {
    /// This model's graph for `settings` on prompts `width` tokens wide (`GraphShape::new`).
    pub fn graph(&self, settings: &crate::AttributionSettings, width: usize) -> crate::GraphShape {
        crate::GraphShape::new(self.n_layers, self.n_heads, settings, width)
    }

    /// GPT-2 small's shape (124M parameters), for load tests and estimates.
    pub fn gpt2_small() -> Self {
        ModelConfig {
            n_layers: 12,
            n_heads: 12,
            d_model: 768,
            d_head: 64,
            d_mlp: 3072,
            n_ctx: 1024,
            d_vocab: 50257,
            eps: 1e-5,
        }
    }

    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.into(),
            source,
        })?;
        let hf: HfGpt2Config = serde_json::from_str(&text).map_err(|e| Error::Bad {
            path: path.into(),
            reason: e.to_string(),
        })?;
        Self::from_hf(&hf, path)
    }

    pub fn from_hf(hf: &HfGpt2Config, path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Bad {
            path: path.into(),
            reason,
        };
        if let Some(t) = &hf.model_type {
            if t != "gpt2" {
                return Err(Error::Unsupported(format!(
                    "model_type {t:?}; attrib runs GPT-2 models"
                )));
            }
        }
        if !["gelu_new", "gelu_pytorch_tanh"].contains(&hf.activation_function.as_str()) {
            return Err(Error::Unsupported(format!(
                "activation {:?} (GPT-2 uses gelu_new)",
                hf.activation_function
            )));
        }
        if hf.scale_attn_by_inverse_layer_idx || hf.reorder_and_upcast_attn {
            return Err(Error::Unsupported(
                "scale_attn_by_inverse_layer_idx / reorder_and_upcast_attn".into(),
            ));
        }
        if hf.n_layer == 0
            || hf.n_head == 0
            || hf.n_embd == 0
            || !hf.n_embd.is_multiple_of(hf.n_head)
        {
            return Err(bad(format!(
                "n_embd {} must be a positive multiple of n_head {}",
                hf.n_embd, hf.n_head
            )));
        }
        let n_ctx = hf
            .n_positions
            .or(hf.n_ctx)
            .ok_or_else(|| bad("no n_positions".into()))?;
        Ok(ModelConfig {
            n_layers: hf.n_layer,
            n_heads: hf.n_head,
            d_model: hf.n_embd,
            d_head: hf.n_embd / hf.n_head,
            d_mlp: hf.n_inner.unwrap_or(4 * hf.n_embd),
            n_ctx,
            d_vocab: hf.vocab_size,
            eps: hf.layer_norm_epsilon,
        })
    }

    /// What a worker holding this model (with `fingerprint`) announces to a coordinator.
    pub fn identity(&self, fingerprint: String) -> crate::v1::ModelIdentity {
        crate::v1::ModelIdentity {
            fingerprint,
            n_layers: self.n_layers as u32,
            n_heads: self.n_heads as u32,
            d_model: self.d_model as u32,
            n_ctx: self.n_ctx as u32,
            d_vocab: self.d_vocab as u32,
        }
    }

    /// Back to HF names, for the random-model generator.
    pub fn to_hf(&self) -> serde_json::Value {
        serde_json::json!({
            "architectures": ["GPT2LMHeadModel"],
            "model_type": "gpt2",
            "activation_function": "gelu_new",
            "n_layer": self.n_layers,
            "n_head": self.n_heads,
            "n_embd": self.d_model,
            "n_inner": self.d_mlp,
            "n_positions": self.n_ctx,
            "n_ctx": self.n_ctx,
            "vocab_size": self.d_vocab,
            "layer_norm_epsilon": self.eps,
            "bos_token_id": 50256,
            "eos_token_id": 50256,
            "torch_dtype": "float32",
        })
    }
}
