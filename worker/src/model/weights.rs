//! Loads an HF GPT-2 `model.safetensors` (Conv1D layout, tied unembedding) into
//! TransformerLens's layout and applies the processing AutoCircuit's TL model gets (spec 1.1):
//! fold LayerNorm, centre writing weights, centre the unembedding, fold value biases.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, SafeTensors};
use tch::{Device, Kind, Tensor};

use super::config::ModelConfig;
use crate::{Error, Result};

/// One block's weights, TransformerLens layout (`[head, d_model, d_head]` etc.).
pub struct BlockWeights {
    pub w_q: Tensor, // [H, d, dh]
    pub w_k: Tensor,
    pub w_v: Tensor,
    pub b_q: Tensor, // [H, dh]
    pub b_k: Tensor,
    pub b_v: Tensor,
    pub w_o: Tensor,   // [H, dh, d]
    pub b_o: Tensor,   // [d]
    pub w_in: Tensor,  // [d, d_mlp]
    pub b_in: Tensor,  // [d_mlp]
    pub w_out: Tensor, // [d_mlp, d]
    pub b_out: Tensor, // [d]
}

pub struct Weights {
    pub w_e: Tensor,   // [V, d]
    pub w_pos: Tensor, // [n_ctx, d]
    pub blocks: Vec<BlockWeights>,
    pub w_u: Tensor, // [d, V]
    pub b_u: Tensor, // [V]
}

/// Raw HF tensors by name (without the optional `transformer.` prefix), shape-checked on read.
struct HfTensors {
    path: PathBuf,
    map: HashMap<String, Tensor>,
}

impl HfTensors {
    /// Maps the file and copies each floating-point tensor out of it once (reading the file
    /// into memory first would touch every byte twice). Other tensors (old checkpoints'
    /// boolean attention-mask buffers) are not weights and are skipped.
    fn read(path: &Path) -> Result<Self> {
        if !path.exists() {
            let dir = path.parent().unwrap_or(Path::new(".")).to_path_buf();
            return Err(Error::MissingModelFile {
                dir,
                file: "model.safetensors",
            });
        }
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: a read-only mapping of a weights file; nothing in this process writes it.
        let mmap = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let st = SafeTensors::deserialize(&mmap).map_err(|e| Error::BadWeights {
            path: path.to_path_buf(),
            reason: format!("{e:?}"),
        })?;
        let mut map = HashMap::new();
        for (name, view) in st.tensors() {
            let kind = match view.dtype() {
                Dtype::F32 => Kind::Float,
                Dtype::F16 => Kind::Half,
                Dtype::BF16 => Kind::BFloat16,
                Dtype::F64 => Kind::Double,
                _ => continue,
            };
            let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
            let t = Tensor::f_from_data_size(view.data(), &shape, kind)?;
            map.insert(
                name.strip_prefix("transformer.")
                    .unwrap_or(&name)
                    .to_string(),
                t,
            );
        }
        Ok(HfTensors {
            path: path.to_path_buf(),
            map,
        })
    }

    fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let t = self.map.get(name).ok_or_else(|| Error::MissingTensor {
            path: self.path.clone(),
            name: name.to_string(),
        })?;
        let expected: Vec<i64> = shape.iter().map(|&s| s as i64).collect();
        if t.size() != expected {
            return Err(Error::TensorShape {
                path: self.path.clone(),
                name: name.into(),
                expected,
                got: t.size(),
            });
        }
        Ok(t.to_kind(Kind::Float))
    }
}

/// Reads and processes the weights of an HF GPT-2 folder, then moves them to `device`.
pub fn load_processed(dir: &Path, cfg: &ModelConfig, device: Device) -> Result<Weights> {
    let path = dir.join("model.safetensors");
    if path.exists() {
        // The coordinator's check at start, word for word, before any weight is read.
        attrib_proto::safetensors_check::check_weights_file(&path, cfg)?;
    }
    let hf = HfTensors::read(&path)?;
    let w = tch::no_grad(|| convert_and_process(&hf, cfg))?;
    Ok(w.into_device(device))
}

fn convert_and_process(hf: &HfTensors, cfg: &ModelConfig) -> Result<Weights> {
    let (d, h, dh, dm, v) = (cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_mlp, cfg.d_vocab);
    let w_e = hf.get("wte.weight", &[v, d])?;
    let w_pos = hf.get("wpe.weight", &[cfg.n_ctx, d])?;
    let mut blocks = Vec::with_capacity(cfg.n_layers);
    for b in 0..cfg.n_layers {
        let p = |n: &str| format!("h.{b}.{n}");
        let c_attn = hf.get(&p("attn.c_attn.weight"), &[d, 3 * d])?;
        let c_attn_b = hf.get(&p("attn.c_attn.bias"), &[3 * d])?;
        // Column block i of c_attn is Q, K or V; head j owns columns j*dh..(j+1)*dh of it.
        let split_w = |i: i64| {
            c_attn
                .narrow(1, i * d as i64, d as i64)
                .reshape([d as i64, h as i64, dh as i64])
                .permute([1, 0, 2])
        };
        let split_b = |i: i64| {
            c_attn_b
                .narrow(0, i * d as i64, d as i64)
                .reshape([h as i64, dh as i64])
        };
        let (ln1_w, ln1_b) = (
            hf.get(&p("ln_1.weight"), &[d])?,
            hf.get(&p("ln_1.bias"), &[d])?,
        );
        let (ln2_w, ln2_b) = (
            hf.get(&p("ln_2.weight"), &[d])?,
            hf.get(&p("ln_2.bias"), &[d])?,
        );
        let fold_head = |w: Tensor, bias: Tensor| fold_ln(w, bias, &ln1_w, &ln1_b);
        let (w_q, b_q) = fold_head(split_w(0), split_b(0));
        let (w_k, b_k) = fold_head(split_w(1), split_b(1));
        let (w_v, b_v) = fold_head(split_w(2), split_b(2));
        let w_o = hf
            .get(&p("attn.c_proj.weight"), &[d, d])?
            .reshape([h as i64, dh as i64, d as i64]);
        let b_o = hf.get(&p("attn.c_proj.bias"), &[d])?;
        let (w_in, b_in) = fold_ln(
            hf.get(&p("mlp.c_fc.weight"), &[d, dm])?,
            hf.get(&p("mlp.c_fc.bias"), &[dm])?,
            &ln2_w,
            &ln2_b,
        );
        let w_out = hf.get(&p("mlp.c_proj.weight"), &[dm, d])?;
        let b_out = hf.get(&p("mlp.c_proj.bias"), &[d])?;
        // center_writing_weights: every write into the residual stream loses its mean over d.
        let (w_o, b_o) = (center_last(w_o), &b_o - b_o.mean(Kind::Float));
        let (w_out, b_out) = (center_last(w_out), &b_out - b_out.mean(Kind::Float));
        // fold_value_biases: b_V's contribution is the same for every position; move it to b_O.
        let b_o = b_o + Tensor::einsum("hk,hkd->d", &[&b_v, &w_o], None::<i64>);
        let b_v = b_v.zeros_like();
        blocks.push(BlockWeights {
            w_q,
            w_k,
            w_v,
            b_q,
            b_k,
            b_v,
            w_o,
            b_o,
            w_in,
            b_in,
            w_out,
            b_out,
        });
    }
    let (lnf_w, lnf_b) = (hf.get("ln_f.weight", &[d])?, hf.get("ln_f.bias", &[d])?);
    let b_u = Tensor::zeros([v as i64], (Kind::Float, Device::Cpu));
    let w_u = w_e.tr().contiguous(); // tied unembedding [d, V], copied before W_E is centred
    let (w_u, b_u) = fold_ln(w_u, b_u, &lnf_w, &lnf_b);
    let (w_e, w_pos) = (center_last(w_e), center_last(w_pos));
    // center_unembed: logits move by a per-position constant; differences are unchanged.
    let w_u = center_last(w_u);
    let b_u = &b_u - b_u.mean(Kind::Float);
    Ok(Weights {
        w_e,
        w_pos,
        blocks,
        w_u,
        b_u,
    })
}

/// Folds a LayerNorm (gain `g`, bias `beta`) into the linear map `x·W + c` that reads it:
/// `c += beta·W`, `W = diag(g)·W`, then each output column is centred over the d input rows.
/// `w` is `[.., d, out]`, `c` is `[.., out]`. In place where it can be: W_U is 150 MB.
fn fold_ln(mut w: Tensor, c: Tensor, g: &Tensor, beta: &Tensor) -> (Tensor, Tensor) {
    let c = c + beta.matmul(&w); // [d]·[.., d, out] → [.., out]
    w *= g.unsqueeze(-1);
    w -= w.mean_dim(-2, true, Kind::Float);
    (w.contiguous(), c.contiguous())
}

fn center_last(mut t: Tensor) -> Tensor {
    t -= t.mean_dim(-1, true, Kind::Float);
    t.contiguous()
}

impl Weights {
    fn into_device(self, device: Device) -> Self {
        self.map(&mut |t: &Tensor| t.to_device(device))
    }

    /// A copy with `f` applied to every tensor.
    pub fn map(&self, f: &mut dyn FnMut(&Tensor) -> Tensor) -> Self {
        Weights {
            w_e: f(&self.w_e),
            w_pos: f(&self.w_pos),
            blocks: self
                .blocks
                .iter()
                .map(|b| BlockWeights {
                    w_q: f(&b.w_q),
                    w_k: f(&b.w_k),
                    w_v: f(&b.w_v),
                    b_q: f(&b.b_q),
                    b_k: f(&b.b_k),
                    b_v: f(&b.b_v),
                    w_o: f(&b.w_o),
                    b_o: f(&b.b_o),
                    w_in: f(&b.w_in),
                    b_in: f(&b.b_in),
                    w_out: f(&b.w_out),
                    b_out: f(&b.b_out),
                })
                .collect(),
            w_u: f(&self.w_u),
            b_u: f(&self.b_u),
        }
    }

    /// Every tensor, in `map`'s order (a group's members broadcast them in this order).
    pub fn tensors_mut(&mut self) -> Vec<&mut Tensor> {
        let mut out = vec![&mut self.w_e, &mut self.w_pos];
        for b in &mut self.blocks {
            out.extend([
                &mut b.w_q,
                &mut b.w_k,
                &mut b.w_v,
                &mut b.b_q,
                &mut b.b_k,
                &mut b.b_v,
                &mut b.w_o,
                &mut b.b_o,
                &mut b.w_in,
                &mut b.b_in,
                &mut b.w_out,
                &mut b.b_out,
            ]);
        }
        out.extend([&mut self.w_u, &mut self.b_u]);
        out
    }
}
