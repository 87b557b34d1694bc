//! The general patched forward (spec 4.1): an explicit mask value on every edge. Each
//! destination input becomes `x + Σ_s m[(p),(h),s]·(P[s] − S[s])`, with `S` the current pass's
//! source outputs (inside autograd) and `P` the patch values. Used for circuits (0/1 masks),
//! for the invariants, and as the direct autograd reference for mask gradients.

use attrib_proto::{DestKind, GraphShape};
use tch::{Kind, Tensor};

use super::gpt2::{HeadInputs, Patcher};

pub struct MaskPatcher<'a> {
    graph: GraphShape,
    /// One tensor per destination module, in the graph's module order, of the module's shape.
    masks: &'a [Tensor],
    /// Patch values `[n_src, B, T, d]`.
    patch: &'a Tensor,
    /// Current-pass source outputs so far, each `[B, T, d]`.
    current: Vec<Tensor>,
    module_of: Vec<(DestKind, usize)>,
}

impl<'a> MaskPatcher<'a> {
    pub fn new(graph: GraphShape, masks: &'a [Tensor], patch: &'a Tensor) -> Self {
        let module_of = graph.modules().iter().map(|m| (m.kind, m.block)).collect();
        MaskPatcher {
            graph,
            masks,
            patch,
            current: Vec::new(),
            module_of,
        }
    }

    fn mask(&self, kind: DestKind, block: usize) -> &Tensor {
        let i = self
            .module_of
            .iter()
            .position(|&m| m == (kind, block))
            .expect("graph has this module");
        &self.masks[i]
    }

    /// `Σ_s m·(P[s] − S[s])` for a module reading `n_in` sources.
    fn delta(&self, mask: &Tensor, n_in: usize, heads: bool) -> Tensor {
        let s = Tensor::stack(&self.current[..n_in], 0); // [n_in, B, T, d]
        let diff = self.patch.narrow(0, 0, n_in as i64) - s;
        masked_sum(mask, &diff, self.graph.seq_len.is_some(), heads)
    }

    fn head_input(&self, kind: DestKind, block: usize, resid: &Tensor) -> Tensor {
        let n_in = self.graph.attn_n_in(block);
        resid.unsqueeze(2) + self.delta(self.mask(kind, block), n_in, true) // [B, T, H, d]
    }
}

impl Patcher for MaskPatcher<'_> {
    fn record_sources(&mut self, _first: usize, outs: &Tensor) {
        for i in 0..outs.size()[0] {
            self.current.push(outs.get(i));
        }
    }

    fn attn_input(&mut self, block: usize, resid: &Tensor) -> HeadInputs {
        HeadInputs::per_head(self.graph.separate_qkv, |kind| {
            self.head_input(kind, block, resid)
        })
    }

    fn mlp_input(&mut self, block: usize, resid_mid: &Tensor) -> Tensor {
        resid_mid
            + self.delta(
                self.mask(DestKind::Mlp, block),
                self.graph.mlp_n_in(block),
                false,
            )
    }

    fn final_input(&mut self, resid: &Tensor) -> Tensor {
        let end = self.graph.n_layers - 1;
        resid
            + self.delta(
                self.mask(DestKind::ResidEnd, end),
                self.graph.n_src(),
                false,
            )
    }
}

/// `Σ_s m[(t),(h),s]·diff[s]` for `diff` `[n_in, B, T, d]`: `[B, T, H, d]` for a head module
/// (mask `[(T), H, n_in]`), else `[B, T, d]`.
pub fn masked_sum(mask: &Tensor, diff: &Tensor, per_position: bool, heads: bool) -> Tensor {
    let eq = match (per_position, heads) {
        (false, true) => "hs,sbtd->bthd",
        (true, true) => "ths,sbtd->bthd",
        (false, false) => "s,sbtd->btd",
        (true, false) => "ts,sbtd->btd",
    };
    Tensor::einsum(eq, &[mask, diff], None::<i64>)
}

/// Masks of `graph` all set to `value`, on `device`.
pub fn uniform_masks(graph: &GraphShape, value: f64, device: tch::Device) -> Vec<Tensor> {
    graph
        .modules()
        .iter()
        .map(|m| {
            let shape: Vec<i64> = m.shape.iter().map(|&s| s as i64).collect();
            Tensor::full(shape, value, (Kind::Float, device))
        })
        .collect()
}
