//! Models for simulated clusters: a coordinator reads a model's shape, tokenizes prompts and
//! fingerprints the weights file and checks its header, but never loads weights, so a GPT-2
//! folder with a real config and tokenizer and a weights file of zeros (sparse: it takes no
//! disk) is all a load test needs.

use std::path::Path;

use anyhow::Context;
use attrib_proto::fingerprint::model_fingerprint;
use attrib_proto::model_config::ModelConfig;
use attrib_proto::safetensors_check::{check_weights_file, expected_tensors};
use attrib_proto::v1;

/// Writes a GPT-2-small-shaped folder (12 layers, 12 heads, d_model 768) with the tokenizer
/// at `tokenizer` and a `model.safetensors` of zeros.
pub fn gpt2_small_shape(dir: &Path, tokenizer: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let config = ModelConfig::gpt2_small();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&config.to_hf())?,
    )?;
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))
        .with_context(|| format!("copying {}", tokenizer.display()))?;
    zero_weights(&dir.join("model.safetensors"), &config)
}

/// A safetensors file whose header lists every tensor `config` needs, in F16 (half the bytes
/// for the fingerprint to hash), and whose data are zeros in a sparse file.
fn zero_weights(path: &Path, config: &ModelConfig) -> anyhow::Result<()> {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, shape) in expected_tensors(config) {
        let end = offset + 2 * shape.iter().product::<usize>();
        let entry =
            serde_json::json!({"dtype": "F16", "shape": shape, "data_offsets": [offset, end]});
        header.insert(name, entry);
        offset = end;
    }
    let header = serde_json::to_vec(&header)?;
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend(header);
    std::fs::write(path, &bytes)?;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len((bytes.len() + offset) as u64)?;
    check_weights_file(path, config)?;
    Ok(())
}

/// The identity a worker holding the model in `dir` announces.
pub fn identity(dir: &Path) -> anyhow::Result<v1::ModelIdentity> {
    let config = ModelConfig::read(&dir.join("config.json"))?;
    Ok(config.identity(model_fingerprint(dir)?))
}
