//! Patching for 0/1 masks without autograd, as circuit evaluation (`crate::circuit`) and
//! ACDC need it: every masked edge takes the corrupt prompt's source output.

use attrib_proto::{DestKind, GraphShape};
use tch::Tensor;

use super::gpt2::{HeadInputs, Patcher};
use super::masks::masked_sum;

/// The patched forward of spec 4.1 for 0/1 masks, without autograd: each destination input is
/// `x + Σ_s m_s·(P_s − S_s)`. `P − S` is written source by source into one buffer as the pass
/// produces `S`, so a destination reads a prefix of it instead of stacking its inputs anew
/// (`MaskPatcher` does that for autograd; at GPT-2 scale each stack is ~100 MB of fresh
/// memory, and this path is ~3x faster).
pub struct TreePatcher<'a> {
    graph: GraphShape,
    masks: &'a [Option<Tensor>],
    kinds: Vec<(DestKind, usize)>,
    patch: &'a Tensor,
    /// `[n_src, B, T, d]`, reused by every circuit of a batch.
    diff: &'a Tensor,
}

impl<'a> TreePatcher<'a> {
    /// Patches with `masks` (per module, `None`: nothing patched there) towards `patch`
    /// `[n_src, B, T, d]`, using `diff` (same shape) as scratch.
    pub fn new(
        graph: GraphShape,
        masks: &'a [Option<Tensor>],
        patch: &'a Tensor,
        diff: &'a Tensor,
    ) -> Self {
        TreePatcher {
            graph,
            masks,
            kinds: graph.modules().iter().map(|m| (m.kind, m.block)).collect(),
            patch,
            diff,
        }
    }

    fn mask(&self, kind: DestKind, block: usize) -> Option<&Tensor> {
        let i = self
            .kinds
            .iter()
            .position(|&k| k == (kind, block))
            .expect("graph has this module");
        self.masks[i].as_ref()
    }

    /// `Σ_s m·(P[s] − S[s])` over the first `n_in` sources.
    fn delta(&self, mask: &Tensor, n_in: usize, heads: bool) -> Tensor {
        let diff = self.diff.narrow(0, 0, n_in as i64);
        masked_sum(mask, &diff, self.graph.seq_len.is_some(), heads)
    }

    fn head_input(&self, kind: DestKind, block: usize, resid: &Tensor) -> Tensor {
        let s = resid.size();
        match self.mask(kind, block) {
            Some(m) => resid.unsqueeze(2) + self.delta(m, self.graph.attn_n_in(block), true),
            None => resid
                .unsqueeze(2)
                .expand([s[0], s[1], self.graph.n_heads as i64, s[2]], false),
        }
    }

    fn plain_input(&self, kind: DestKind, block: usize, n_in: usize, x: &Tensor) -> Tensor {
        match self.mask(kind, block) {
            Some(m) => x + self.delta(m, n_in, false),
            None => x.shallow_clone(),
        }
    }
}

impl Patcher for TreePatcher<'_> {
    fn record_sources(&mut self, first: usize, outs: &Tensor) {
        let n = outs.size()[0];
        let mut d = self.diff.narrow(0, first as i64, n);
        d.copy_(&self.patch.narrow(0, first as i64, n));
        let _ = d.f_sub_(outs).expect("P − S in place");
    }

    fn attn_input(&mut self, block: usize, resid: &Tensor) -> HeadInputs {
        HeadInputs::per_head(self.graph.separate_qkv, |kind| {
            self.head_input(kind, block, resid)
        })
    }

    fn mlp_input(&mut self, block: usize, resid_mid: &Tensor) -> Tensor {
        self.plain_input(DestKind::Mlp, block, self.graph.mlp_n_in(block), resid_mid)
    }

    fn final_input(&mut self, resid: &Tensor) -> Tensor {
        let end = self.graph.n_layers - 1;
        self.plain_input(DestKind::ResidEnd, end, self.graph.n_src(), resid)
    }
}
