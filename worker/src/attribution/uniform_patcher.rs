//! The patcher of the uniform-mask forward (every mask at one value α): each destination
//! reads `S + α·(P − S)` through a leaf whose gradient is the mask gradient, and keeps what
//! the score contraction needs.

use tch::{Kind, Tensor};

use crate::model::{HeadInputs, Patcher, SourceBuffer};

/// Patcher for the uniform-mask forward, keeping what the score contraction needs.
pub(super) struct UniformPatcher<'a> {
    alpha: f64,
    /// Σ P over the first n_in sources at each destination (attn b → 2b, MLP b → 2b+1, end → 2L).
    cum_p: &'a [Tensor],
    /// Σ S of the current pass so far (inside autograd), only when α ≠ 0.
    cum_s: Option<Tensor>,
    /// Where the pass's source outputs go when they make the contraction's Δ.
    s_rec: Option<&'a mut SourceBuffer>,
    /// Sources whose outputs this pass replaces by constants.
    pub(super) replacement: Option<Replacement>,
    pub(super) attn_inputs: Vec<Tensor>,
    qkv_taps: Vec<[Tensor; 3]>,
    mlp_taps: Vec<Tensor>,
    end_tap: Option<Tensor>,
}

/// Constant outputs `[n, C, T, d]` for sources `first..first+n` (EAP-IG's interpolations).
pub(super) struct Replacement {
    pub(super) first: usize,
    pub(super) values: Tensor,
}

/// `x + 0` through a fresh leaf: the leaf's gradient is `∂loss/∂x`. Returns `(x + leaf, leaf)`.
pub(crate) fn tap(x: Tensor) -> (Tensor, Tensor) {
    let leaf = x.zeros_like().set_requires_grad(true);
    (x + &leaf, leaf)
}

impl<'a> UniformPatcher<'a> {
    pub(super) fn new(
        alpha: f64,
        cum_p: &'a [Tensor],
        s_rec: Option<&'a mut SourceBuffer>,
    ) -> Self {
        UniformPatcher {
            alpha,
            cum_p,
            cum_s: None,
            s_rec,
            replacement: None,
            attn_inputs: Vec::new(),
            qkv_taps: Vec::new(),
            mlp_taps: Vec::new(),
            end_tap: None,
        }
    }

    fn mix(&self, x: &Tensor, checkpoint: usize) -> Tensor {
        match &self.cum_s {
            Some(cum_s) => x + (&self.cum_p[checkpoint] - cum_s) * self.alpha,
            None => x.shallow_clone(),
        }
    }

    /// The destination-input leaves in the order `Contraction` reads their gradients.
    pub(super) fn leaves(&self) -> Vec<Tensor> {
        let mut leaves: Vec<Tensor> = self
            .qkv_taps
            .iter()
            .flat_map(|t| t.iter().map(Tensor::shallow_clone))
            .collect();
        leaves.extend(self.mlp_taps.iter().map(Tensor::shallow_clone));
        leaves.push(
            self.end_tap
                .as_ref()
                .expect("forward reached the end")
                .shallow_clone(),
        );
        leaves
    }
}

impl Patcher for UniformPatcher<'_> {
    fn source_values(&mut self, first: usize, outs: Tensor) -> Tensor {
        match &self.replacement {
            // `0·outs` keeps the replaced node in the graph with a zero gradient, so no
            // gradient flows through it (EAP-IG's hook returns a detached constant) and every
            // tap still gets a (zero) gradient.
            Some(r) if r.first == first => outs * 0.0 + &r.values,
            _ => outs,
        }
    }

    fn record_sources(&mut self, first: usize, outs: &Tensor) {
        if let Some(s_rec) = self.s_rec.as_mut() {
            s_rec.store(first, outs);
        }
        if self.alpha != 0.0 {
            let sum = outs.sum_dim_intlist(0, false, Kind::Float);
            self.cum_s = Some(match self.cum_s.take() {
                Some(c) => c + sum,
                None => sum,
            });
        }
    }

    fn attn_input(&mut self, block: usize, resid: &Tensor) -> HeadInputs {
        let x = self.mix(resid, 2 * block);
        self.attn_inputs.push(x.detach());
        HeadInputs::Shared(x)
    }

    fn qkv(&mut self, _block: usize, q: Tensor, k: Tensor, v: Tensor) -> (Tensor, Tensor, Tensor) {
        let ((q, tq), (k, tk), (v, tv)) = (tap(q), tap(k), tap(v));
        self.qkv_taps.push([tq, tk, tv]);
        (q, k, v)
    }

    fn mlp_input(&mut self, block: usize, resid_mid: &Tensor) -> Tensor {
        let (x, t) = tap(self.mix(resid_mid, 2 * block + 1));
        self.mlp_taps.push(t);
        x
    }

    fn final_input(&mut self, resid: &Tensor) -> Tensor {
        let (x, t) = tap(self.mix(resid, 2 * self.mlp_taps.len()));
        self.end_tap = Some(t);
        x
    }
}
