//! Recording source outputs (`Resid Start`, every head, every MLP) of a forward pass into one
//! buffer, detached from autograd: the patch values `P` of a corrupt run, or the current-pass
//! values `S` whose difference `P − S` every edge score contracts with.

use tch::{Device, Kind, Tensor};

use super::gpt2::{Gpt2, HeadInputs, Patcher, TokenBatch};

/// Layout of a source buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceLayout {
    /// `[n_src, B, T, d]`, AutoCircuit's own layout.
    Plain,
    /// `[n_src, n_batches, T, batch_size, d]`: per batch, and per batch and position, the
    /// entries of one source are contiguous, so score contractions need no copies.
    BatchMajor { n_batches: usize },
}

pub struct SourceBuffer {
    pub buf: Tensor,
    layout: SourceLayout,
}

impl SourceBuffer {
    pub fn new(
        n_src: usize,
        batch: usize,
        width: usize,
        d_model: usize,
        layout: SourceLayout,
        device: Device,
    ) -> Self {
        let (n, b, t, d) = (n_src as i64, batch as i64, width as i64, d_model as i64);
        let shape = match layout {
            SourceLayout::Plain => vec![n, b, t, d],
            SourceLayout::BatchMajor { n_batches } => {
                let nb = n_batches as i64;
                vec![n, nb, t, b / nb, d]
            }
        };
        // Every entry is written by the forward pass before it is read.
        SourceBuffer {
            buf: Tensor::empty(shape, (Kind::Float, device)),
            layout,
        }
    }

    /// Stores `outs` `[n, B, T, d]` as sources `first..first+n`.
    pub fn store(&mut self, first: usize, outs: &Tensor) {
        let outs = outs.detach();
        let n = outs.size()[0];
        let dst = self.buf.narrow(0, first as i64, n);
        match self.layout {
            SourceLayout::Plain => {
                let mut dst = dst;
                dst.copy_(&outs);
            }
            SourceLayout::BatchMajor { n_batches } => {
                let s = outs.size();
                let nb = n_batches as i64;
                let v = outs
                    .view([n, nb, s[1] / nb, s[2], s[3]])
                    .permute([0, 1, 3, 2, 4]); // [n, nb, T, B, d]
                let mut dst = dst;
                dst.copy_(&v);
            }
        }
    }
}

impl Patcher for SourceBuffer {
    fn record_sources(&mut self, first: usize, outs: &Tensor) {
        self.store(first, outs);
    }
}

/// An unpatched run, kept to restart the model part-way: every source's output
/// (`[n_src, B, T, d]`) and the residual stream entering each block, then the final one
/// (`n_layers + 1` tensors `[B, T, d]`). Exact patching and ACDC patch one destination at a
/// time and start the model at its block, as AutoCircuit's ACDC does.
pub struct CleanRun {
    pub sources: SourceBuffer,
    pub block_inputs: Vec<Tensor>,
}

impl CleanRun {
    /// Runs `tb` unpatched, without autograd, recording `n_src` sources; also returns the
    /// last-position logits `[B, V]`.
    pub fn record(model: &Gpt2, n_src: usize, tb: &TokenBatch) -> (Self, Tensor) {
        let mut run = CleanRun {
            sources: SourceBuffer::new(
                n_src,
                tb.batch,
                tb.width,
                model.cfg.d_model,
                SourceLayout::Plain,
                model.device,
            ),
            block_inputs: Vec::with_capacity(model.cfg.n_layers + 1),
        };
        let logits = tch::no_grad(|| model.unembed(&model.forward_last(tb, &mut run)));
        (run, logits)
    }
}

impl Patcher for CleanRun {
    fn record_sources(&mut self, first: usize, outs: &Tensor) {
        self.sources.store(first, outs);
    }

    fn attn_input(&mut self, _block: usize, resid: &Tensor) -> HeadInputs {
        self.block_inputs.push(resid.shallow_clone());
        HeadInputs::Shared(resid.shallow_clone())
    }

    fn final_input(&mut self, resid: &Tensor) -> Tensor {
        self.block_inputs.push(resid.shallow_clone());
        resid.shallow_clone()
    }
}

impl Gpt2 {
    /// Every source's output on `tb` without gradients, `[n_src, B, T, d]`: the patch values
    /// of the corrupt prompts.
    pub fn source_outputs(&self, n_src: usize, tb: &TokenBatch) -> Tensor {
        let mut buf = SourceBuffer::new(
            n_src,
            tb.batch,
            tb.width,
            self.cfg.d_model,
            SourceLayout::Plain,
            self.device,
        );
        let _ = tch::no_grad(|| self.forward_last(tb, &mut buf));
        buf.buf
    }
}
