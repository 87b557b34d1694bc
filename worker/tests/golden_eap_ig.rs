//! EAP-IG's methods against the EAP-IG library's own scores (hannamw/EAP-IG 795f5607, see
//! `tests/fixtures/*/golden_eapig_*.json`), on the tiny random golden model and on the IOI
//! model, within 1e-5 of the method's largest |score|: the tolerance of every AutoCircuit
//! golden (float32 on both sides, different summation orders); and every edge above 1e-3 of
//! it with the golden sign and within `PER_EDGE_REL_TOL` of its own value.

mod common;

use std::path::{Path, PathBuf};

use attrib_proto::{AttributionSettings, Method};
use attrib_worker::model::Gpt2;
use common::*;

const TOL: f64 = 1e-5;

fn ioi_model_dir() -> PathBuf {
    repo().join("assets/ioi-2l4h64")
}

fn check(model_dir: &Path, golden_dir: &Path, file: &str, method: Method) {
    let path = golden_dir.join(file);
    let g: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let model = Gpt2::load(model_dir, test_device()).unwrap();
    let mut job = quickstart_job(AttributionSettings {
        method: method.clone(),
        ..Default::default()
    });
    job.model_dir = model_dir.to_path_buf();
    let ours = run(&model, &job);
    let gold = golden_scores_checked(&g, &ours);
    let what = format!("{method} on {}", model_dir.display());
    assert_matches_golden(&what, &scores_of(&ours), &gold, TOL);
}

fn both_models(file: &str, method: Method) {
    check(&tiny_dir(), &tiny_dir(), file, method.clone());
    check(
        &ioi_model_dir(),
        &repo().join("tests/fixtures/ioi-2l4h64"),
        file,
        method,
    );
}

#[test]
fn eap() {
    both_models("golden_eapig_eap.json", Method::Eap);
}

#[test]
fn eap_ig_inputs() {
    both_models(
        "golden_eapig_eap_ig_inputs.json",
        Method::EapIgInputs { steps: 5 },
    );
}

#[test]
fn clean_corrupted() {
    both_models("golden_eapig_clean_corrupted.json", Method::CleanCorrupted);
}

#[test]
fn eap_ig_activations() {
    both_models(
        "golden_eapig_eap_ig_activations.json",
        Method::EapIgActivations { steps: 5 },
    );
}

#[test]
fn exact() {
    both_models("golden_eapig_exact.json", Method::Exact);
}
