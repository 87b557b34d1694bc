//! The coordinator's view of its model: shape, fingerprint and tokenizer. It never loads the
//! weights; it tokenizes prompts and checks that every worker holds the same model. At start
//! it reads the weights file's header, so a folder no worker could run is refused at once
//! rather than leaving jobs queued forever.

use std::path::{Path, PathBuf};

use attrib_datasets::PromptTokenizer;
use attrib_proto::fingerprint::model_fingerprint;
use attrib_proto::model_config::ModelConfig;
use attrib_proto::safetensors_check::check_weights_file;
use attrib_proto::v1;

use crate::{Error, Result};

pub struct ModelInfo {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub fingerprint: String,
    pub tokenizer: PromptTokenizer,
}

impl ModelInfo {
    pub fn load(dir: &Path) -> Result<Self> {
        let config = ModelConfig::read(&dir.join("config.json"))?;
        check_weights_file(&dir.join("model.safetensors"), &config)?;
        let fingerprint = model_fingerprint(dir).map_err(Error::Fingerprint)?;
        let tokenizer = PromptTokenizer::from_model_dir(dir).map_err(Error::Tokenizer)?;
        Ok(ModelInfo {
            dir: dir.to_path_buf(),
            config,
            fingerprint,
            tokenizer,
        })
    }

    /// Refuses a worker whose model is not this one, naming the first difference.
    pub fn check_worker(&self, w: &v1::ModelIdentity) -> Result<()> {
        let c = &self.config;
        let shape = [
            ("n_layers", c.n_layers, w.n_layers),
            ("n_heads", c.n_heads, w.n_heads),
            ("d_model", c.d_model, w.d_model),
            ("n_ctx", c.n_ctx, w.n_ctx),
            ("d_vocab", c.d_vocab, w.d_vocab),
        ];
        for (what, ours, theirs) in shape {
            if ours != theirs as usize {
                return Err(Error::ModelMismatch {
                    what,
                    worker: theirs.to_string(),
                    coordinator: ours.to_string(),
                });
            }
        }
        if w.fingerprint != self.fingerprint {
            return Err(Error::ModelMismatch {
                what: "model fingerprint (SHA-256 of config.json and model.safetensors)",
                worker: w.fingerprint.clone(),
                coordinator: format!("{} ({})", self.fingerprint, self.dir.display()),
            });
        }
        Ok(())
    }
}
