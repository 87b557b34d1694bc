//! Mask gradients the way AutoCircuit computes them: a real mask tensor on every edge
//! (a leaf in autograd), the general patched forward, `∂loss/∂mask` by backpropagation.
//! Slow and memory-hungry (it materialises `P − S` per destination); it exists to check the
//! fast closed-form path on small models, for any mask values.

use attrib_proto::{AttributionSettings, GraphShape};
use tch::{Kind, Tensor};

use super::metric::{apply_grad_function, BatchAnswers};
use crate::model::{Gpt2, MaskPatcher, TokenBatch};

/// The loss `−A(f(logits))` of one batch with the given masks.
pub fn masked_loss(
    model: &Gpt2,
    graph: &GraphShape,
    masks: &[Tensor],
    patch: &Tensor,
    clean: &TokenBatch,
    answers: &BatchAnswers,
    settings: &AttributionSettings,
) -> Tensor {
    let mut p = MaskPatcher::new(*graph, masks, patch);
    let logits = model.unembed(&model.forward_last(clean, &mut p));
    -answers.value(
        &apply_grad_function(settings.grad_function, &logits),
        settings.answer_function,
    )
}

/// `∂loss/∂m` of every edge at `masks` (flat, graph order).
pub fn mask_autograd_scores(
    model: &Gpt2,
    graph: &GraphShape,
    masks: &[Tensor],
    clean: &TokenBatch,
    corrupt: &TokenBatch,
    answers: &BatchAnswers,
    settings: &AttributionSettings,
) -> Vec<f64> {
    let patch = model.source_outputs(graph.n_src(), corrupt);
    let leaves: Vec<Tensor> = masks
        .iter()
        .map(|m| m.detach().copy().set_requires_grad(true))
        .collect();
    let loss = masked_loss(model, graph, &leaves, &patch, clean, answers, settings);
    let grads = Tensor::run_backward(&[loss], &leaves, false, false);
    let flat = Tensor::cat(
        &grads.iter().map(|g| g.reshape([-1])).collect::<Vec<_>>(),
        0,
    );
    Vec::<f64>::try_from(flat.to_kind(Kind::Double).to_device(tch::Device::Cpu)).expect("f64")
}
