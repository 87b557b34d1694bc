//! Exact invariants of the EAP-IG methods and exact patching on the golden tiny model, for
//! what no library golden covers: exact patching (token-wise too, where it patches one
//! position) equals the loss difference of the general patched forward with one mask set,
//! and the gradient methods' token-wise scores sum over positions to their position-free
//! scores (their contraction is linear in the per-position terms).

mod common;

use attrib_proto::{AttributionSettings, Method};
use attrib_worker::attribution::autograd_reference::masked_loss;
use attrib_worker::attribution::exact::exact_scores;
use attrib_worker::attribution::{pass_input, pass_scores, PassInput};
use attrib_worker::job::load_dataset;
use attrib_worker::model::{uniform_masks, Gpt2};
use common::*;

fn first_batch(model: &Gpt2) -> PassInput {
    let (ds, tok) = load_dataset(&quickstart_job(AttributionSettings::default()), model).unwrap();
    pass_input(model, &ds.train_batches(16)[..1], tok.bos_id(), true).unwrap()
}

#[test]
fn exact_patching_is_the_loss_change_of_one_patched_edge() {
    let model = tiny_model();
    let pass = first_batch(&model);
    for (token_positions, separate_qkv) in [(false, true), (false, false), (true, true)] {
        let settings = AttributionSettings {
            method: Method::Exact,
            token_positions,
            separate_qkv,
            ..Default::default()
        };
        let graph = model.cfg.graph(&settings, 15);
        let n = graph.n_edges();
        let ours = exact_scores(&model, &graph, &pass, &settings, 0..n, &|| Ok(())).unwrap();
        let patch = model.source_outputs(graph.n_src(), &pass.corrupt);
        let loss = |masks: &[tch::Tensor]| {
            let l = tch::no_grad(|| {
                masked_loss(
                    &model,
                    &graph,
                    masks,
                    &patch,
                    &pass.clean,
                    &pass.answers[0],
                    &settings,
                )
            });
            l.double_value(&[])
        };
        let none = uniform_masks(&graph, 0.0, model.device);
        let clean_loss = loss(&none);
        let modules = graph.modules();
        let mut worst = 0.0f64;
        let scale = ours.scores.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64;
        // Every 7th edge: each destination kind, heads and positions.
        for (i, e) in graph.edges().iter().enumerate().step_by(7) {
            let masks = uniform_masks(&graph, 0.0, model.device);
            let local = (i - modules[e.module].offset) as i64;
            let _ = masks[e.module].view([-1]).get(local).fill_(1.0);
            // Σ over the batch of metric(clean) − metric(patched) = 16 · (loss(e) − loss(clean)).
            let want = 16.0 * (loss(&masks) - clean_loss);
            worst = worst.max((ours.scores[i] as f64 - want).abs() / scale);
        }
        eprintln!("exact, token positions {token_positions}, separate qkv {separate_qkv}: {n} edges, worst {worst:.2e}");
        assert!(scale > 0.1, "the effects are not all ~0");
        assert!(worst < 1e-5, "{worst:.2e}");
    }
}

#[test]
fn token_wise_scores_sum_to_position_free_ones() {
    let model = tiny_model();
    let pass = first_batch(&model);
    for method in [
        Method::Eap,
        Method::EapIgInputs { steps: 3 },
        Method::CleanCorrupted,
        Method::EapIgActivations { steps: 2 },
    ] {
        let scores = |token_positions| {
            let s = AttributionSettings {
                method: method.clone(),
                token_positions,
                ..Default::default()
            };
            let graph = model.cfg.graph(&s, 15);
            pass_scores(&model, &graph, &pass, &s).unwrap().scores
        };
        let (free, per_position) = (scores(false), scores(true));
        // Token-wise modules are [seq, (head), src]: position t of module m is a slab.
        let graph = model.cfg.graph(&AttributionSettings::default(), 15);
        let wise = model.cfg.graph(
            &AttributionSettings {
                token_positions: true,
                ..Default::default()
            },
            15,
        );
        let mut summed = vec![0f64; free.len()];
        for (m, mw) in graph.modules().iter().zip(wise.modules()) {
            for t in 0..15 {
                for j in 0..m.len() {
                    summed[m.offset + j] += per_position[mw.offset + t * m.len() + j] as f64;
                }
            }
        }
        let free: Vec<f64> = free.iter().map(|&x| x as f64).collect();
        let err = rel_err(&summed, &free);
        eprintln!("{method}: Σ over positions vs position-free {err:.2e}");
        assert!(err < 1e-5, "{method}: {err:.2e}");
    }
}
