//! Circuit evaluation (spec 6.2, AutoCircuit's `run_circuits` with `TREE_PATCH` and RESAMPLE
//! ablation): the model runs on the clean prompt; the circuit's edges keep their clean value
//! (mask 0) and every other edge gets the corrupt prompt's source output (mask 1). The answer
//! metric is the per-prompt logit difference at the last position.

use attrib_datasets::Batch;
use attrib_proto::faithfulness::Circuit;
use attrib_proto::units::f32_le_bytes;
use attrib_proto::{v1, DestKind, GraphShape};
use tch::{Device, Kind, Tensor};

use crate::attribution::autograd_reference::corrupt_sources;
use crate::attribution::{catch_torch, check_unit, pass_input, PassInput};
use crate::model::masks::masked_sum;
use crate::model::{Gpt2, HeadInputs, Patcher};
use crate::{Error, Result};

/// Mask tensors of `circuit` (1 = patched, i.e. outside the circuit), one per destination
/// module in graph order, built from the flat score vector; `None` where the whole module is
/// in the circuit (nothing to patch there).
pub fn tree_patch_masks(
    graph: &GraphShape,
    scores: &[f64],
    circuit: &Circuit,
    device: Device,
) -> Vec<Option<Tensor>> {
    graph
        .modules()
        .iter()
        .map(|m| {
            let flat: Vec<f32> = scores[m.offset..m.offset + m.len()]
                .iter()
                .map(|&s| if circuit.keeps(s) { 0.0 } else { 1.0 })
                .collect();
            let shape: Vec<i64> = m.shape.iter().map(|&s| s as i64).collect();
            flat.iter()
                .any(|&x| x != 0.0)
                .then(|| Tensor::from_slice(&flat).reshape(shape).to_device(device))
        })
        .collect()
}

/// The patched forward of spec 4.1 for 0/1 masks, without autograd: each destination input is
/// `x + Σ_s m_s·(P_s − S_s)`. `P − S` is written source by source into one buffer as the pass
/// produces `S`, so a destination reads a prefix of it instead of stacking its inputs anew
/// (`MaskPatcher` does that for autograd; at GPT-2 scale each stack is ~100 MB of fresh
/// memory, and this path is ~3x faster).
pub(crate) struct TreePatcher<'a> {
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
    pub(crate) fn new(
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

/// Per-prompt logit differences of one unit's prompts: unpatched clean and corrupt, and each
/// circuit, as the f32 values the forward passes give.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitCircuits {
    pub clean: Vec<f32>,
    pub corrupt: Vec<f32>,
    /// `[circuit][prompt]`.
    pub circuits: Vec<Vec<f32>>,
}

impl UnitCircuits {
    /// The wire result of unit `unit` of job `job_id` (layout: `UnitResult.values`).
    pub fn to_result(&self, job_id: String, unit: u32, seconds: f64) -> v1::UnitResult {
        let values: Vec<f32> = self
            .circuits
            .iter()
            .flatten()
            .chain(&self.corrupt)
            .copied()
            .collect();
        v1::UnitResult {
            job_id,
            unit,
            values: f32_le_bytes(&values).into(),
            clean_logit_diffs: self.clean.clone(),
            seconds,
        }
    }
}

/// Evaluates `circuits` (chosen from `scores`, flat in `graph` order) on a unit of test
/// batches, all in one pass per circuit.
pub fn evaluate_unit(
    model: &Gpt2,
    graph: &GraphShape,
    scores: &[f64],
    circuits: &[Circuit],
    batches: &[Batch],
    pad_id: i64,
    prepend_bos: bool,
) -> Result<UnitCircuits> {
    if scores.len() != graph.n_edges() {
        return Err(Error::ScoresDoNotFitGraph {
            scores: scores.len(),
            edges: graph.n_edges(),
        });
    }
    check_unit(graph, batches)?;
    let pass = pass_input(model, batches, pad_id, prepend_bos)?;
    catch_torch(|| tch::no_grad(|| evaluate(model, graph, scores, circuits, &pass)))
}

fn evaluate(
    model: &Gpt2,
    graph: &GraphShape,
    scores: &[f64],
    circuits: &[Circuit],
    pass: &PassInput,
) -> UnitCircuits {
    let patch = corrupt_sources(model, graph, &pass.corrupt);
    let buffer = Tensor::empty(patch.size(), (Kind::Float, model.device));
    let mut rows: Vec<Tensor> = circuits
        .iter()
        .map(|c| {
            let masks = tree_patch_masks(graph, scores, c, model.device);
            let mut patcher = TreePatcher::new(*graph, &masks, &patch, &buffer);
            pass.logit_diffs(&model.unembed(&model.forward_last(&pass.clean, &mut patcher)))
        })
        .collect();
    rows.push(pass.logit_diffs(&model.logits(&pass.clean)));
    rows.push(pass.logit_diffs(&model.logits(&pass.corrupt)));
    // One copy to the host for the whole unit.
    let n = pass.clean.batch as i64;
    let host = Tensor::stack(&rows, 0).to_device(Device::Cpu);
    let mut per_row: Vec<Vec<f32>> = (0..rows.len() as i64)
        .map(|r| Vec::<f32>::try_from(host.get(r)).expect("f32 values"))
        .collect();
    debug_assert!(per_row.iter().all(|r| r.len() as i64 == n));
    let corrupt = per_row.pop().expect("corrupt row");
    let clean = per_row.pop().expect("clean row");
    UnitCircuits {
        clean,
        corrupt,
        circuits: per_row,
    }
}
