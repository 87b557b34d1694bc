//! Models for simulated clusters: a coordinator reads a model's shape, tokenizes prompts and
//! fingerprints the weights file, but never loads weights, so a GPT-2 folder with a real
//! config and tokenizer and a placeholder weights file is all a load test needs.

use std::path::Path;

use anyhow::Context;
use attrib_proto::fingerprint::model_fingerprint;
use attrib_proto::model_config::ModelConfig;
use attrib_proto::v1;

/// Writes a GPT-2-small-shaped folder (12 layers, 12 heads, d_model 768) with the tokenizer
/// at `tokenizer` and a placeholder `model.safetensors`.
pub fn gpt2_small_shape(dir: &Path, tokenizer: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let config = ModelConfig::gpt2_small();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config.to_hf())?,
    )?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))
        .with_context(|| format!("copying {}", tokenizer.display()))?;
    std::fs::write(
        dir.join("model.safetensors"),
        b"no weights: a shape-only model for simulated workers",
    )?;
    Ok(())
}

/// The identity a worker holding the model in `dir` announces.
pub fn identity(dir: &Path) -> anyhow::Result<v1::ModelIdentity> {
    let config = ModelConfig::read(&dir.join("config.json"))?;
    Ok(config.identity(model_fingerprint(dir)?))
}
