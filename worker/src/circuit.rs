//! Circuit evaluation (spec 6.2, AutoCircuit's `run_circuits` with `TREE_PATCH` and RESAMPLE
//! ablation): the model runs on the clean prompt; the circuit's edges keep their clean value
//! (mask 0) and every other edge gets the corrupt prompt's source output (mask 1). The answer
//! metric is the per-prompt logit difference at the last position.

use attrib_datasets::Batch;
use attrib_proto::faithfulness::Circuit;
use attrib_proto::units::f32_le_bytes;
use attrib_proto::{v1, GraphShape};
use tch::{Device, Kind, Tensor};

use crate::attribution::{catch_torch, check_unit, pass_input, PassInput};
use crate::model::{Gpt2, TreePatcher};
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
            device_class: String::new(), // the session stamps its engine's
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
    let patch = model.source_outputs(graph.n_src(), &pass.corrupt);
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
