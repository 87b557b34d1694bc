//! Recording source outputs (`Resid Start`, every head, every MLP) of a forward pass into one
//! buffer, detached from autograd: the patch values `P` of a corrupt run, or the current-pass
//! values `S` whose difference `P − S` every edge score contracts with.

use tch::{Device, Kind, Tensor};

use super::gpt2::Patcher;

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
