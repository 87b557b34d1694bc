//! Circuit evaluation (spec 6.2, AutoCircuit's `run_circuits` with `TREE_PATCH` and RESAMPLE
//! ablation): the model runs on the clean prompt; the circuit's edges keep their clean value
//! (mask 0) and every other edge gets the corrupt prompt's source output (mask 1). The answer
//! metric is the per-prompt logit difference at the last position.

use attrib_datasets::Batch;
use attrib_proto::faithfulness::{Circuit, CircuitBatchSums};
use attrib_proto::GraphShape;
use tch::{Device, Kind, Tensor};

use crate::attribution::autograd_reference::corrupt_sources;
use crate::attribution::{catch_torch, pass_input, BatchAnswers};
use crate::model::{Gpt2, MaskPatcher, TokenBatch};
use crate::{Error, Result};

/// Mask tensors of `circuit` (1 = patched, i.e. outside the circuit), one per destination
/// module in graph order, built from the flat score vector.
pub fn tree_patch_masks(
    graph: &GraphShape,
    scores: &[f64],
    circuit: &Circuit,
    device: Device,
) -> Vec<Tensor> {
    graph
        .modules()
        .iter()
        .map(|m| {
            let flat: Vec<f32> = scores[m.offset..m.offset + m.len()]
                .iter()
                .map(|&s| if circuit.keeps(s) { 0.0 } else { 1.0 })
                .collect();
            let shape: Vec<i64> = m.shape.iter().map(|&s| s as i64).collect();
            Tensor::from_slice(&flat).reshape(shape).to_device(device)
        })
        .collect()
}

/// Per-prompt logit differences of one batch: unpatched clean and corrupt, and each circuit.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchCircuits {
    pub clean: Vec<f64>,
    pub corrupt: Vec<f64>,
    /// `[circuit][prompt]`.
    pub circuits: Vec<Vec<f64>>,
}

impl BatchCircuits {
    /// The sums the cluster reduces.
    pub fn sums(&self) -> CircuitBatchSums {
        CircuitBatchSums {
            circuit: self.circuits.iter().map(|c| c.iter().sum()).collect(),
            clean: self.clean.iter().sum(),
            corrupt: self.corrupt.iter().sum(),
            n_prompts: self.clean.len(),
        }
    }
}

fn to_f64(t: &Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(Kind::Double).to_device(Device::Cpu)).expect("f64 vector")
}

/// Evaluates `circuits` (chosen from `scores`, flat in `graph` order) on one test batch.
pub fn evaluate_batch(
    model: &Gpt2,
    graph: &GraphShape,
    scores: &[f64],
    circuits: &[Circuit],
    batch: &Batch,
    pad_id: i64,
    prepend_bos: bool,
) -> Result<BatchCircuits> {
    if scores.len() != graph.n_edges() {
        return Err(Error::ScoresDoNotFitGraph {
            scores: scores.len(),
            edges: graph.n_edges(),
        });
    }
    if let Some(t) = graph.seq_len {
        if t != batch.width {
            return Err(Error::SeqLenMismatch {
                width: batch.width,
                seq_len: t,
            });
        }
    }
    let pass = pass_input(model, std::slice::from_ref(batch), pad_id, prepend_bos)?;
    let answers = &pass.answers[0];
    catch_torch(|| {
        tch::no_grad(|| {
            evaluate(
                model,
                graph,
                scores,
                circuits,
                &pass.clean,
                &pass.corrupt,
                answers,
            )
        })
    })
}

fn evaluate(
    model: &Gpt2,
    graph: &GraphShape,
    scores: &[f64],
    circuits: &[Circuit],
    clean: &TokenBatch,
    corrupt: &TokenBatch,
    answers: &BatchAnswers,
) -> BatchCircuits {
    let patch = corrupt_sources(model, graph, corrupt);
    let diff = |logits: Tensor| to_f64(&answers.logit_diff(&logits));
    let circuits = circuits
        .iter()
        .map(|c| {
            let masks = tree_patch_masks(graph, scores, c, model.device);
            let mut patcher = MaskPatcher::new(*graph, &masks, &patch);
            diff(model.unembed(&model.forward_last(clean, &mut patcher)))
        })
        .collect();
    BatchCircuits {
        clean: diff(model.logits(clean)),
        corrupt: diff(model.logits(corrupt)),
        circuits,
    }
}
