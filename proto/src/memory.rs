//! How much memory a worker needs for one work unit, from the model's shape, the prompts in
//! the unit (K batches of B) and their width. The coordinator refuses a job whose units no
//! connected worker can hold, and never sends a unit to a worker that declared less; the
//! worker refuses a unit it cannot hold before it starts. The test `memory_estimate` (worker
//! crate) checks the figures against peaks measured on CPU: never under, at most 2.5x over.
//!
//! The terms follow the engine (`worker/src/attribution/mask_gradient.rs`), in f32 elements:
//! per prompt and token, two source buffers of `n_src × d_model` (patch values and clean
//! outputs), the Σ-patch checkpoints of `2L + 1` destinations when a mask value is not 0, and
//! per block what autograd keeps for the backward pass (the residual, LayerNorm, Q/K/V and
//! their taps, attention scores and pattern `H × T`, the MLP's hidden layer twice); per prompt,
//! the last position's logits and their gradient.

use crate::model_config::ModelConfig;
use crate::{GraphShape, MaskPoints};

/// What decides a unit's memory besides the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct UnitShape {
    /// Prompts in the unit: K × batch size.
    pub prompts: usize,
    /// Tokens per prompt.
    pub width: usize,
    /// Some mask value is not 0 (integrated gradients, or `--mask-val`): Σ-patch checkpoints.
    pub nonzero_mask: bool,
}

impl UnitShape {
    /// `prompts` prompts `width` tokens wide, with the mask points of `points`.
    pub fn new(prompts: usize, width: usize, points: MaskPoints) -> Self {
        UnitShape {
            prompts,
            width,
            nonzero_mask: points != MaskPoints::Value(0.0),
        }
    }
}

/// Edges exact patching measures in one forward pass of a unit of `prompts` prompts `width`
/// tokens wide (the prompts repeated once per edge): about 512 rows and 8,192 tokens at most,
/// so a pass of GPT-2 small stays near a gigabyte whatever the width. A power of two, so that
/// the coordinator can make every unit's edge group a multiple of it for every dataset of a
/// job, and a unit's passes measure the same edges together as a one-process run's do (the
/// same shapes, hence the same bits on any device).
pub fn exact_edges_per_pass(prompts: usize, width: usize) -> usize {
    let fits = (512 / prompts.max(1)).min(8192 / (prompts * width).max(1));
    match fits {
        0 | 1 => 1,
        n => 1 << n.ilog2(),
    }
}

/// f32 elements autograd and the contraction keep per block, per prompt and token, in units
/// of `d_model`, `d_mlp` and `H × T` (attention scores, masked scores, pattern).
const BLOCK_D_MODEL: usize = 16;
const BLOCK_D_MLP: usize = 4;
const BLOCK_ATTENTION: usize = 4;
/// Logits, their softmax (prob grad functions) and gradients, per prompt and vocabulary entry.
const LOGITS: usize = 4;

/// Bytes of the model's weights as the worker holds them: the token embedding and the
/// unembedding, positions, and per block the attention (with the fused Q/K/V copy) and MLP
/// weights.
pub fn model_bytes(cfg: &ModelConfig) -> u64 {
    let (d, hd) = (cfg.d_model, cfg.n_heads * cfg.d_head);
    let block = 2 * 3 * d * hd + hd * d + 2 * d * cfg.d_mlp + 4 * d + 3 * hd + cfg.d_mlp;
    let elements = 2 * cfg.d_vocab * d + cfg.n_ctx * d + cfg.n_layers * block + cfg.d_vocab;
    4 * elements as u64
}

/// Peak bytes one unit needs on top of the model's weights.
pub fn unit_bytes(cfg: &ModelConfig, graph: &GraphShape, unit: &UnitShape) -> u64 {
    let (l, t) = (cfg.n_layers, unit.width);
    let checkpoints = if unit.nonzero_mask { 2 * l + 1 } else { 0 };
    let per_token = (2 * graph.n_src() + checkpoints) * cfg.d_model
        + l * (BLOCK_D_MODEL * cfg.d_model
            + BLOCK_D_MLP * cfg.d_mlp
            + BLOCK_ATTENTION * cfg.n_heads * t);
    let per_prompt = per_token * t + LOGITS * cfg.d_vocab;
    // The unit's scores (one f32 per edge, and their sum over mask points).
    let scores = 2 * graph.n_edges();
    let elements = unit.prompts * per_prompt + scores;
    // Peaks measured on CPU run up to 1.52x these terms, and one unit's peak varies by up to
    // 50% between runs (120-186 MiB for a 32-prompt unit of a 4-layer d=256 model); the
    // estimate must not be under the real peak, or a worker runs out of memory.
    4 * (2 * elements) as u64
}

/// `unit_bytes` plus the model: what a worker must have free to run the unit at all.
pub fn worker_bytes(cfg: &ModelConfig, graph: &GraphShape, unit: &UnitShape) -> u64 {
    model_bytes(cfg) + unit_bytes(cfg, graph, unit)
}

/// "1.5 GiB", for messages.
pub fn human_bytes(b: u64) -> String {
    const MIB: f64 = (1u64 << 20) as f64;
    let mib = b as f64 / MIB;
    if mib >= 1024.0 {
        format!("{:.1} GiB", mib / 1024.0)
    } else {
        format!("{mib:.1} MiB")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_passes_hold_about_512_rows_as_a_power_of_two() {
        assert_eq!(exact_edges_per_pass(16, 15), 32);
        assert_eq!(exact_edges_per_pass(32, 15), 16);
        assert_eq!(exact_edges_per_pass(48, 15), 8); // 10 fit: the power of two below
        assert_eq!(exact_edges_per_pass(16, 1024), 1);
        assert_eq!(exact_edges_per_pass(1000, 15), 1);
        assert_eq!(exact_edges_per_pass(1, 1), 512);
    }

    #[test]
    fn gpt2_small_figures_are_what_its_shape_says() {
        let cfg = ModelConfig::gpt2_small();
        // 124M parameters (497 MB), plus the unembedding stored apart and the fused Q/K/V copy.
        let weights = model_bytes(&cfg) as f64 / 1e6;
        assert!((700.0..780.0).contains(&weights), "{weights} MB");
        let graph = GraphShape {
            n_layers: 12,
            n_heads: 12,
            separate_qkv: true,
            seq_len: None,
        };
        let one = |prompts| {
            unit_bytes(
                &cfg,
                &graph,
                &UnitShape {
                    prompts,
                    width: 16,
                    nonzero_mask: false,
                },
            )
        };
        // The quickstart's unit (16 prompts of 16 tokens): about 1 GB, mostly the two
        // source buffers and what autograd keeps; twice the prompts, twice the memory.
        let quickstart = one(16) as f64 / 1e9;
        assert!((0.8..1.2).contains(&quickstart), "{quickstart} GB");
        let ratio = one(32) as f64 / one(16) as f64;
        assert!((1.99..2.0).contains(&ratio), "{ratio}");
        assert_eq!(human_bytes(3 << 29), "1.5 GiB");
    }
}
