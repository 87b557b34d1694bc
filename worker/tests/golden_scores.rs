//! Every edge score of every golden AutoCircuit variant on the tiny model, within 1e-5 of the
//! variant's largest |score| (the oracle's own independent port agrees to ~1e-6; float32),
//! and every edge above 1e-3 of it with the golden sign and within `PER_EDGE_REL_TOL` of its
//! own value: the self-test's checks (`attrib_worker::self_test::autocircuit`).

mod common;

use attrib_proto::{AnswerFunction, AttributionSettings, GraphShape};
use attrib_worker::attribution::{eap_batch_scores, pass_input, BatchAnswers};
use attrib_worker::job::load_dataset;
use attrib_worker::self_test::autocircuit;
use common::*;

fn check_variant(name: &str) {
    passes(name, autocircuit::check_variant(&self_test(), name));
}

#[test]
fn quickstart() {
    check_variant("quickstart");
}

#[test]
fn tokenwise() {
    check_variant("tokenwise");
}

#[test]
fn no_separate_qkv() {
    check_variant("no_separate_qkv");
}

#[test]
fn integrated_grads_5() {
    check_variant("integrated_grads_5");
}

#[test]
fn logprob_avg_val() {
    check_variant("logprob_avg_val");
}

#[test]
fn prob_avg_diff() {
    check_variant("prob_avg_diff");
}

#[test]
fn logit_exp_avg_diff() {
    check_variant("logit_exp_avg_diff");
}

#[test]
fn logit_avg_val() {
    check_variant("logit_avg_val");
}

#[test]
fn mask_val_half() {
    check_variant("mask_val_0.5");
}

#[test]
fn batches_per_unit_changes_scores_only_by_f32_rounding() {
    let model = tiny_model();
    let mut job = quickstart_job(AttributionSettings {
        token_positions: true,
        ..Default::default()
    });
    job.data.batches_per_unit = 1;
    let one = scores_of(&run(&model, &job));
    job.data.batches_per_unit = 8;
    let eight = scores_of(&run(&model, &job));
    assert!(
        rel_err(&one, &eight) < 1e-6,
        "{:.2e}",
        rel_err(&one, &eight)
    );
}

/// The slow EAP reference (spec 5.4) against AutoCircuit's `edge_attribution_patching_prune_scores`.
#[test]
fn eap_reference_matches_golden_eap() {
    let g = golden("golden_eap.json");
    let model = tiny_model();
    let job = quickstart_job(AttributionSettings::default());
    let (dataset, tok) = load_dataset(&job, &model).unwrap();
    let graph = GraphShape {
        n_layers: 2,
        n_heads: 4,
        separate_qkv: true,
        seq_len: None,
    };
    let per_batch: Vec<Vec<f64>> = dataset
        .train_batches(16)
        .iter()
        .map(|b| {
            let p = pass_input(&model, std::slice::from_ref(b), tok.bos_id(), true).unwrap();
            let ans = BatchAnswers::new(&b.answers, &b.wrong_answers, model.device);
            eap_batch_scores(
                &model,
                &graph,
                &p.clean,
                &p.corrupt,
                &ans,
                AnswerFunction::AvgDiff,
            )
        })
        .collect();
    // A reference: its batch sums added plainly in f64.
    let mut ours = vec![0.0; per_batch[0].len()];
    for b in &per_batch {
        zip_eq(&mut ours, b, "batch sums").for_each(|(o, x)| *o += x);
    }
    let gold: Vec<f64> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["score"].as_f64().unwrap())
        .collect();
    assert_matches_golden("eap reference", &ours, &gold, SCORES_TOL);
}
