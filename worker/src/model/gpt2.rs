//! GPT-2 as TransformerLens runs it after weight processing (spec 1.2), with a hook at every
//! point AutoCircuit patches: each destination input and each source output goes through a
//! `Patcher`. The residual stream itself is never patched; patched inputs are private copies.

use std::path::Path;

use attrib_proto::DestKind;
use tch::{Device, Kind, Tensor};

use super::config::ModelConfig;
use super::weights::{load_processed, Weights};
use crate::device::upload;
use crate::{Error, Result};

/// The inputs of one block's heads: one tensor shared by every head's Q, K and V
/// (`[B, T, d]`), or a private copy per head for each of Q, K, V (`[B, T, H, d]`).
pub enum HeadInputs {
    Shared(Tensor),
    PerHead { q: Tensor, k: Tensor, v: Tensor },
}

impl HeadInputs {
    /// Private per-head inputs from `input(kind)`: one each for Q, K and V with separate
    /// Q/K/V destinations, else one (`HeadInput`) that all three read.
    pub fn per_head(separate_qkv: bool, mut input: impl FnMut(DestKind) -> Tensor) -> Self {
        if separate_qkv {
            HeadInputs::PerHead {
                q: input(DestKind::Q),
                k: input(DestKind::K),
                v: input(DestKind::V),
            }
        } else {
            let x = input(DestKind::HeadInput);
            HeadInputs::PerHead {
                q: x.shallow_clone(),
                k: x.shallow_clone(),
                v: x,
            }
        }
    }
}

/// Where a forward pass can be patched or observed. Defaults leave the model unpatched.
pub trait Patcher {
    /// May replace source outputs `first..first+n` (`[n, B, T, d]`) before anything reads
    /// them, the residual stream included (EAP-IG's interpolated nodes).
    fn source_values(&mut self, _first: usize, outs: Tensor) -> Tensor {
        outs
    }
    /// Source outputs as they are produced: `outs` is `[n, B, T, d]`, sources `first..first+n`.
    fn record_sources(&mut self, _first: usize, _outs: &Tensor) {}
    /// The (patched) inputs of block `block`'s heads, given the residual stream `[B, T, d]`.
    fn attn_input(&mut self, _block: usize, resid: &Tensor) -> HeadInputs {
        HeadInputs::Shared(resid.shallow_clone())
    }
    /// Observes or taps the projected queries, keys and values (`[B, H, T, d_head]` each).
    fn qkv(&mut self, _block: usize, q: Tensor, k: Tensor, v: Tensor) -> (Tensor, Tensor, Tensor) {
        (q, k, v)
    }
    /// The (patched) input of `MLP block`, given `resid_mid` `[B, T, d]`.
    fn mlp_input(&mut self, _block: usize, resid_mid: &Tensor) -> Tensor {
        resid_mid.shallow_clone()
    }
    /// The (patched) final residual `[B, T, d]` that the unembedding reads.
    fn final_input(&mut self, resid: &Tensor) -> Tensor {
        resid.shallow_clone()
    }
}

/// A `Patcher` that changes nothing.
pub struct Unpatched;
impl Patcher for Unpatched {}

/// Token ids of one pass, with TransformerLens's left-padding mask rebuilt from the ids.
pub struct TokenBatch {
    pub tokens: Tensor, // [B, T] int64
    /// `[B, 1, 1, T]` true where a key may be attended; `None` when nothing is padded.
    key_mask: Option<Tensor>,
    /// `[B, T, 1]` 1.0 where the position is real, 0.0 for padding; `None` when nothing is padded.
    pos_keep: Option<Tensor>,
    pos_ids: Tensor, // [B, T]
    pub batch: usize,
    pub width: usize,
}

impl TokenBatch {
    /// `ids` row-major `[batch, width]`. Leading `pad_id` tokens are padding, except the last
    /// of them when BOS is prepended (the BOS shares the pad id), as TransformerLens decides.
    pub fn new(
        ids: &[i64],
        batch: usize,
        width: usize,
        pad_id: i64,
        prepend_bos: bool,
        cfg: &ModelConfig,
        device: Device,
    ) -> Result<Self> {
        assert_eq!(
            ids.len(),
            batch * width,
            "token buffer does not match its shape"
        );
        if width > cfg.n_ctx {
            return Err(Error::ContextTooLong {
                width,
                n_ctx: cfg.n_ctx,
            });
        }
        if let Some(&id) = ids.iter().find(|&&id| id < 0 || id as usize >= cfg.d_vocab) {
            return Err(Error::TokenOutOfVocab {
                id,
                vocab: cfg.d_vocab,
            });
        }
        let mut keep = vec![true; ids.len()];
        let mut pos = vec![0i64; ids.len()];
        for (row, toks) in ids.chunks(width).enumerate() {
            let lead = toks.iter().take_while(|&&t| t == pad_id).count();
            let n_pad = if prepend_bos {
                lead.saturating_sub(1)
            } else {
                lead
            };
            for p in 0..width {
                keep[row * width + p] = p >= n_pad;
                pos[row * width + p] = p.saturating_sub(n_pad) as i64;
            }
        }
        let padded = keep.iter().any(|k| !k);
        let shape = [batch as i64, width as i64];
        let keep_t = upload(Tensor::from_slice(&keep).reshape(shape), device);
        Ok(TokenBatch {
            tokens: upload(Tensor::from_slice(ids).reshape(shape), device),
            key_mask: padded.then(|| keep_t.view([batch as i64, 1, 1, width as i64])),
            pos_keep: padded.then(|| keep_t.to_kind(Kind::Float).unsqueeze(-1)),
            pos_ids: upload(Tensor::from_slice(&pos).reshape(shape), device),
            batch,
            width,
        })
    }
}

/// `x` `times` times over along its first axis, row blocks in order.
pub fn repeat_rows(x: &Tensor, times: usize) -> Tensor {
    let mut reps = vec![1i64; x.dim()];
    reps[0] = times as i64;
    x.repeat(reps.as_slice())
}

impl TokenBatch {
    /// The batch `times` times over, row blocks in order: one copy per patched edge.
    pub fn repeat(&self, times: usize) -> TokenBatch {
        let rows = |t: &Tensor| repeat_rows(t, times);
        TokenBatch {
            tokens: rows(&self.tokens),
            key_mask: self.key_mask.as_ref().map(rows),
            pos_keep: self.pos_keep.as_ref().map(rows),
            pos_ids: rows(&self.pos_ids),
            batch: self.batch * times,
            width: self.width,
        }
    }
}

pub struct Gpt2 {
    pub cfg: ModelConfig,
    pub w: Weights,
    pub device: Device,
    /// Per block `[d, 3·H·d_head]`: W_Q, W_K, W_V side by side, for one matmul when heads share input.
    w_qkv: Vec<Tensor>,
    b_qkv: Vec<Tensor>,
}

/// LayerNorm without affine part (TransformerLens "LNPre"): `(x − mean) / sqrt(var + eps)`.
pub fn ln_pre(x: &Tensor, eps: f64) -> Tensor {
    let d = *x.size().last().expect("LayerNorm of a scalar");
    x.layer_norm([d], None::<Tensor>, None::<Tensor>, eps, false)
}

impl Gpt2 {
    pub fn load(dir: &Path, device: Device) -> Result<Self> {
        crate::host_tuning::tune_host();
        let cfg_path = dir.join("config.json");
        if !cfg_path.exists() {
            return Err(Error::MissingModelFile {
                dir: dir.into(),
                file: "config.json",
            });
        }
        let cfg = ModelConfig::read(&cfg_path)?;
        let w = load_processed(dir, &cfg, device)?;
        Ok(Self::from_weights(cfg, w, device))
    }

    pub fn from_weights(cfg: ModelConfig, w: Weights, device: Device) -> Self {
        let (d, hd) = (cfg.d_model as i64, (cfg.n_heads * cfg.d_head) as i64);
        let flat = |t: &Tensor| t.permute([1, 0, 2]).reshape([d, hd]); // [H, d, dh] -> [d, H·dh]
        let w_qkv = w
            .blocks
            .iter()
            .map(|b| Tensor::cat(&[flat(&b.w_q), flat(&b.w_k), flat(&b.w_v)], 1))
            .collect();
        let b_qkv = w
            .blocks
            .iter()
            .map(|b| {
                Tensor::cat(
                    &[
                        b.b_q.reshape([hd]),
                        b.b_k.reshape([hd]),
                        b.b_v.reshape([hd]),
                    ],
                    0,
                )
            })
            .collect();
        Gpt2 {
            cfg,
            w,
            device,
            w_qkv,
            b_qkv,
        }
    }

    /// `Resid Start`: token plus position embeddings `[B, T, d]`.
    fn embed(&self, tb: &TokenBatch) -> Tensor {
        let tok = Tensor::embedding(&self.w.w_e, &tb.tokens, -1, false, false);
        let pos = Tensor::embedding(&self.w.w_pos, &tb.pos_ids, -1, false, false);
        match &tb.pos_keep {
            Some(keep) => tok + pos * keep,
            None => tok + pos,
        }
    }

    /// Runs the model on `tb`, letting `patcher` patch and observe. Returns the final residual
    /// at the last position `[B, d]` (AutoCircuit's `slice_output="last_seq"`).
    pub fn forward_last(&self, tb: &TokenBatch, patcher: &mut impl Patcher) -> Tensor {
        let resid = patcher
            .source_values(0, self.embed(tb).unsqueeze(0))
            .squeeze_dim(0); // [B, T, d]
        patcher.record_sources(0, &resid.unsqueeze(0));
        self.forward_last_from(tb, 0, resid, patcher)
    }

    /// `forward_last` from block `start` on, given the residual stream entering it `[B, T, d]`:
    /// the sources of earlier blocks are neither computed nor shown to `patcher` (ACDC and
    /// exact patching start where their patch is, as AutoCircuit's ACDC does).
    pub fn forward_last_from(
        &self,
        tb: &TokenBatch,
        start: usize,
        mut resid: Tensor,
        patcher: &mut impl Patcher,
    ) -> Tensor {
        let (b, t) = (tb.batch as i64, tb.width as i64);
        let (h, dh) = (self.cfg.n_heads as i64, self.cfg.d_head as i64);
        let eps = self.cfg.eps;
        let causal = Tensor::ones([t, t], (Kind::Bool, self.device)).tril(0); // [T(query), T(key)]
        let allowed = match &tb.key_mask {
            Some(k) => causal.logical_and(k), // [B, 1, T, T]
            None => causal,
        };
        for (bi, w) in self.w.blocks.iter().enumerate().skip(start) {
            let (q, k, v) = match patcher.attn_input(bi, &resid) {
                HeadInputs::Shared(x) => {
                    let qkv = ln_pre(&x, eps).matmul(&self.w_qkv[bi]) + &self.b_qkv[bi]; // [B, T, 3·H·dh]
                    let qkv = qkv.view([b, t, 3, h, dh]).permute([2, 0, 3, 1, 4]); // [3, B, H, T, dh]
                    (qkv.get(0), qkv.get(1), qkv.get(2))
                }
                HeadInputs::PerHead { q, k, v } => {
                    let proj = |x: &Tensor, wm: &Tensor, bias: &Tensor| {
                        let y = ln_pre(x, eps).permute([2, 0, 1, 3]).reshape([h, b * t, -1]); // [H, B·T, d]
                        (y.bmm(wm).view([h, b, t, dh]) + bias.view([h, 1, 1, dh]))
                            .permute([1, 0, 2, 3]) // [B, H, T, dh]
                    };
                    (
                        proj(&q, &w.w_q, &w.b_q),
                        proj(&k, &w.w_k, &w.b_k),
                        proj(&v, &w.w_v, &w.b_v),
                    )
                }
            };
            let (q, k, v) = patcher.qkv(bi, q, k, v);
            let scores = q.matmul(&k.transpose(-1, -2)) / (dh as f64).sqrt(); // [B, H, T, T]
            let scores = scores.masked_fill(&allowed.logical_not(), f64::NEG_INFINITY);
            let mut pattern = scores.softmax(-1, Kind::Float);
            if tb.key_mask.is_some() {
                // A padded query sees no key: softmax gives NaN, TransformerLens uses 0.
                pattern = pattern.masked_fill(&pattern.isnan(), 0.0);
            }
            let z = pattern.matmul(&v); // [B, H, T, dh]
            let z = z.permute([1, 0, 2, 3]).reshape([h, b * t, dh]); // [H, B·T, dh]
            let first = 1 + bi * (self.cfg.n_heads + 1);
            let result = z.bmm(&w.w_o).view([h, b, t, -1]); // [H, B, T, d]: one source per head
            let result = patcher.source_values(first, result);
            patcher.record_sources(first, &result);
            let resid_mid = &resid + result.sum_dim_intlist(0, false, Kind::Float) + &w.b_o;
            let mlp_in = patcher.mlp_input(bi, &resid_mid);
            let hidden = (ln_pre(&mlp_in, eps).matmul(&w.w_in) + &w.b_in).gelu("tanh"); // [B, T, d_mlp]
            let first = (bi + 1) * (self.cfg.n_heads + 1);
            let mlp_out = patcher
                .source_values(first, (hidden.matmul(&w.w_out) + &w.b_out).unsqueeze(0))
                .squeeze_dim(0); // [B, T, d]
            patcher.record_sources(first, &mlp_out.unsqueeze(0));
            resid = resid_mid + mlp_out;
        }
        patcher.final_input(&resid).select(1, t - 1) // [B, d]
    }

    /// Logits from the final residual at one position: `LN(x)·W_U + b_U` `[B, V]`.
    pub fn unembed(&self, final_last: &Tensor) -> Tensor {
        ln_pre(final_last, self.cfg.eps).matmul(&self.w.w_u) + &self.w.b_u
    }

    /// Unpatched last-position logits `[B, V]`.
    pub fn logits(&self, tb: &TokenBatch) -> Tensor {
        tch::no_grad(|| self.unembed(&self.forward_last(tb, &mut Unpatched)))
    }
}
