//! Writes a GPT-2 HF model folder with random weights (`config.json`, `model.safetensors`,
//! the GPT-2 tokenizer), so demos, tests and benchmarks run at any size without downloads.
//! Scales follow the golden tiny model's recipe, so activations and attention are not
//! degenerate: embeddings std 0.5, W_QKV std 1.5/√d, W_O and W_in 1/√d, W_out 1/√(4d),
//! LayerNorm gains 1 + 0.2·N, every bias 0.1·N.

use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::model::ModelConfig;
use crate::{Error, Result};

/// The GPT-2 tokenizer, shipped with the binary so generated folders are complete.
pub const GPT2_TOKENIZER_JSON: &[u8] = include_bytes!("../../assets/gpt2/tokenizer.json");
const TOKENIZER_CONFIG_JSON: &[u8] = include_bytes!("../../assets/gpt2/tokenizer_config.json");
const SPECIAL_TOKENS_MAP_JSON: &[u8] = include_bytes!("../../assets/gpt2/special_tokens_map.json");

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InitOptions {
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_model: usize,
    pub n_ctx: usize,
    pub seed: u64,
}

impl Default for InitOptions {
    /// GPT-2 small's shape.
    fn default() -> Self {
        InitOptions {
            n_layers: 12,
            n_heads: 12,
            d_model: 768,
            n_ctx: 1024,
            seed: 0,
        }
    }
}

pub fn write_random_model(opts: &InitOptions, out: &Path) -> Result<ModelConfig> {
    if opts.n_heads == 0 || !opts.d_model.is_multiple_of(opts.n_heads) || opts.n_layers == 0 {
        return Err(Error::Unsupported(format!(
            "d_model {} must be a positive multiple of n_heads {}",
            opts.d_model, opts.n_heads
        )));
    }
    let cfg = ModelConfig {
        n_layers: opts.n_layers,
        n_heads: opts.n_heads,
        d_model: opts.d_model,
        d_head: opts.d_model / opts.n_heads,
        d_mlp: 4 * opts.d_model,
        n_ctx: opts.n_ctx,
        d_vocab: 50257,
        eps: 1e-5,
    };
    let write = |name: &str, bytes: &[u8]| {
        let path = out.join(name);
        std::fs::write(&path, bytes).map_err(|source| Error::Write { path, source })
    };
    std::fs::create_dir_all(out).map_err(|source| Error::Write {
        path: out.into(),
        source,
    })?;
    let tensors = tch::no_grad(|| random_tensors(&cfg, opts.seed));
    Tensor::write_safetensors(&tensors, out.join("model.safetensors"))?;
    write(
        "config.json",
        serde_json::to_string_pretty(&cfg.to_hf())
            .expect("json")
            .as_bytes(),
    )?;
    write("tokenizer.json", GPT2_TOKENIZER_JSON)?;
    write("tokenizer_config.json", TOKENIZER_CONFIG_JSON)?;
    write("special_tokens_map.json", SPECIAL_TOKENS_MAP_JSON)?;
    Ok(cfg)
}

fn random_tensors(cfg: &ModelConfig, seed: u64) -> Vec<(String, Tensor)> {
    tch::manual_seed(seed as i64);
    let (d, dm, v, n) = (
        cfg.d_model as i64,
        cfg.d_mlp as i64,
        cfg.d_vocab as i64,
        cfg.n_ctx as i64,
    );
    let normal = |shape: &[i64], std: f64| Tensor::randn(shape, (Kind::Float, Device::Cpu)) * std;
    let gain = |shape: &[i64]| normal(shape, 0.2) + 1.0;
    let bias = |shape: &[i64]| normal(shape, 0.1);
    let inv_sqrt_d = 1.0 / (d as f64).sqrt();
    let mut t = vec![
        ("transformer.wte.weight".to_string(), normal(&[v, d], 0.5)),
        ("transformer.wpe.weight".to_string(), normal(&[n, d], 0.5)),
    ];
    for b in 0..cfg.n_layers {
        let p = |s: &str| format!("transformer.h.{b}.{s}");
        t.push((p("ln_1.weight"), gain(&[d])));
        t.push((p("ln_1.bias"), bias(&[d])));
        t.push((
            p("attn.c_attn.weight"),
            normal(&[d, 3 * d], 1.5 * inv_sqrt_d),
        ));
        t.push((p("attn.c_attn.bias"), bias(&[3 * d])));
        t.push((p("attn.c_proj.weight"), normal(&[d, d], inv_sqrt_d)));
        t.push((p("attn.c_proj.bias"), bias(&[d])));
        t.push((p("ln_2.weight"), gain(&[d])));
        t.push((p("ln_2.bias"), bias(&[d])));
        t.push((p("mlp.c_fc.weight"), normal(&[d, dm], inv_sqrt_d)));
        t.push((p("mlp.c_fc.bias"), bias(&[dm])));
        t.push((p("mlp.c_proj.weight"), normal(&[dm, d], 0.5 * inv_sqrt_d)));
        t.push((p("mlp.c_proj.bias"), bias(&[d])));
    }
    t.push(("transformer.ln_f.weight".to_string(), gain(&[d])));
    t.push(("transformer.ln_f.bias".to_string(), bias(&[d])));
    t
}
