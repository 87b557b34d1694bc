//! Exact invariants of the patched model and its gradients, on the golden tiny model:
//! all masks 0 is the clean run, all masks 1 is the corrupt run, the fast closed-form mask
//! gradient equals autograd through explicit masks (at any mask value, token-wise too), and
//! a finite difference of the loss agrees with one edge's gradient.

mod common;

use attrib_proto::{AttributionSettings, GraphShape, MaskPoints};
use attrib_worker::attribution::autograd_reference::{mask_autograd_scores, masked_loss};
use attrib_worker::attribution::{pass_input, pass_scores, BatchAnswers, PassInput};
use attrib_worker::job::load_dataset;
use attrib_worker::model::{uniform_masks, Gpt2, MaskPatcher};
use common::*;
use tch::Tensor;

fn first_pass(model: &Gpt2, n_batches: usize) -> PassInput {
    let (ds, tok) = load_dataset(&quickstart_job(AttributionSettings::default()), model).unwrap();
    pass_input(
        model,
        &ds.train_batches(16)[..n_batches],
        tok.bos_id(),
        true,
    )
    .unwrap()
}

fn max_abs(t: &Tensor) -> f64 {
    t.abs().max().double_value(&[])
}

fn patched_logits(model: &Gpt2, graph: &GraphShape, value: f64, pass: &PassInput) -> Tensor {
    let patch = model.source_outputs(graph.n_src(), &pass.corrupt);
    let masks = uniform_masks(graph, value, model.device);
    let mut p = MaskPatcher::new(*graph, &masks, &patch);
    tch::no_grad(|| model.unembed(&model.forward_last(&pass.clean, &mut p)))
}

#[test]
fn all_masks_zero_is_the_clean_run_and_all_ones_the_corrupt_run() {
    let model = tiny_model();
    let pass = first_pass(&model, 1);
    for token_positions in [false, true] {
        for separate_qkv in [true, false] {
            let s = AttributionSettings {
                token_positions,
                separate_qkv,
                ..Default::default()
            };
            let graph = model.cfg.graph(&s, 15);
            let clean = model.logits(&pass.clean);
            let corrupt = model.logits(&pass.corrupt);
            let scale = max_abs(&clean);
            let e0 = max_abs(&(patched_logits(&model, &graph, 0.0, &pass) - &clean)) / scale;
            let e1 = max_abs(&(patched_logits(&model, &graph, 1.0, &pass) - &corrupt)) / scale;
            assert!(e0 < 1e-6, "masks 0 vs clean: {e0:.2e} ({s:?})");
            assert!(e1 < 1e-5, "masks 1 vs corrupt: {e1:.2e} ({s:?})");
            // and the two runs differ, so the check has teeth
            assert!(max_abs(&(&clean - &corrupt)) / scale > 1e-2);
        }
    }
}

fn fast_vs_autograd(settings: AttributionSettings, alpha: f64) {
    let model = tiny_model();
    let pass = first_pass(&model, 1);
    let graph = model.cfg.graph(&settings, 15);
    let fast = pass_scores(
        &model,
        &graph,
        &pass,
        &AttributionSettings {
            points: MaskPoints::Value(alpha),
            ..settings.clone()
        },
    )
    .unwrap();
    let masks = uniform_masks(&graph, alpha, model.device);
    let reference = mask_autograd_scores(
        &model,
        &graph,
        &masks,
        &pass.clean,
        &pass.corrupt,
        &pass.answers[0],
        &settings,
    );
    let fast: Vec<f64> = fast.scores.iter().map(|&x| x as f64).collect();
    let err = rel_err(&fast, &reference);
    // Same tolerance as the golden comparisons: float32 sums taken in another order.
    assert!(err < 1e-5, "{settings:?} at {alpha}: {err:.2e}");
}

#[test]
fn closed_form_equals_autograd_on_masks_tokenwise_at_0_4() {
    fast_vs_autograd(
        AttributionSettings {
            token_positions: true,
            ..Default::default()
        },
        0.4,
    );
}

#[test]
fn closed_form_equals_autograd_on_masks_shared_head_input_at_0_7() {
    use attrib_proto::{AnswerFunction, GradFunction};
    let s = AttributionSettings {
        separate_qkv: false,
        grad_function: GradFunction::Logprob,
        answer_function: AnswerFunction::AvgVal,
        ..Default::default()
    };
    fast_vs_autograd(s, 0.7);
}

#[test]
fn closed_form_equals_autograd_on_masks_at_zero_with_prob() {
    use attrib_proto::GradFunction;
    fast_vs_autograd(
        AttributionSettings {
            grad_function: GradFunction::Prob,
            ..Default::default()
        },
        0.0,
    );
}

#[test]
fn finite_difference_agrees_with_the_largest_edge_gradient() {
    let model = tiny_model();
    let pass = first_pass(&model, 1);
    let settings = AttributionSettings::default();
    let graph = model.cfg.graph(&settings, 15);
    let scores: Vec<f64> = pass_scores(&model, &graph, &pass, &settings)
        .unwrap()
        .scores
        .iter()
        .map(|&x| x as f64)
        .collect();
    let patch = model.source_outputs(graph.n_src(), &pass.corrupt);
    let answers: &BatchAnswers = &pass.answers[0];
    // the three largest edges, one in each kind of module where possible
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].abs().total_cmp(&scores[a].abs()));
    let modules = graph.modules();
    for &e in order.iter().take(3) {
        let (mi, m) = modules
            .iter()
            .enumerate()
            .rev()
            .find(|(_, m)| m.offset <= e)
            .unwrap();
        let loss_at = |eps: f64| {
            let masks = uniform_masks(&graph, 0.0, model.device);
            let flat = masks[mi].view([-1]);
            let _ = flat.get((e - m.offset) as i64).fill_(eps);
            tch::no_grad(|| {
                masked_loss(
                    &model,
                    &graph,
                    &masks,
                    &patch,
                    &pass.clean,
                    answers,
                    &settings,
                )
                .double_value(&[])
            })
        };
        let eps = 1e-2;
        let fd = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps);
        // central difference: O(eps²) curvature plus float32 rounding of the loss (~1e-7/eps)
        assert!(
            (fd - scores[e]).abs() < 1e-3 * scores[e].abs() + 1e-4,
            "edge {e}: fd {fd} vs grad {}",
            scores[e]
        );
    }
}

/// Left padding changes nothing: TransformerLens masks the leading pad tokens (keeping the
/// BOS) and counts positions from the BOS, so a padded prompt's logits equal the unpadded ones.
#[test]
fn left_padding_leaves_logits_unchanged() {
    use attrib_worker::model::TokenBatch;
    let model = tiny_model();
    let prompt = [50256i64, 2215, 5335, 290, 1757, 1816, 284];
    let plain = TokenBatch::new(&prompt, 1, 7, 50256, true, &model.cfg, model.device).unwrap();
    let mut padded_ids = vec![50256i64; 3];
    padded_ids.extend(prompt);
    let padded =
        TokenBatch::new(&padded_ids, 1, 10, 50256, true, &model.cfg, model.device).unwrap();
    let (a, b) = (model.logits(&plain), model.logits(&padded));
    let err = max_abs(&(&a - &b)) / max_abs(&a);
    assert!(err < 1e-5, "padded vs unpadded logits: {err:.2e}");
    // without the mask the pads would be attended to: the check has teeth
    let unmasked = TokenBatch::new(&padded_ids, 1, 10, -1, true, &model.cfg, model.device).unwrap();
    assert!(max_abs(&(&a - &model.logits(&unmasked))) / max_abs(&a) > 1e-3);
}
