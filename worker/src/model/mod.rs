//! GPT-2 in libtorch: config, weights (with TransformerLens processing), patchable forward.

pub mod config;
pub mod gpt2;
pub mod masks;
pub mod sources;
pub mod tree_patcher;
pub mod weights;

pub use config::ModelConfig;
pub use gpt2::{ln_pre, Gpt2, HeadInputs, Patcher, TokenBatch, Unpatched};
pub use masks::{uniform_masks, MaskPatcher};
pub use sources::{CleanRun, SourceBuffer, SourceLayout};
pub use tree_patcher::TreePatcher;
pub use weights::{BlockWeights, Weights};
