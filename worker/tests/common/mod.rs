//! Shared helpers of the engine's tests: the golden tiny model and its reference numbers.
#![allow(dead_code)]

use std::path::PathBuf;

use attrib_proto::job_spec::quickstart_data_options;
use attrib_proto::{v1, AnswerFunction, AttributionSettings, GradFunction, MaskPoints, ScoresFile};
use attrib_worker::job::{run_attribute, AttributeJob};
use attrib_worker::model::Gpt2;
use serde_json::Value;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The tiny random GPT-2 the golden AutoCircuit numbers were made on (HF folder).
pub fn tiny_dir() -> PathBuf {
    repo().join("tests/fixtures/golden-tiny")
}

pub fn ioi_vanilla() -> PathBuf {
    repo().join("datasets/ioi/ioi_vanilla_template_prompts.json")
}

pub fn golden(name: &str) -> Value {
    let path = tiny_dir().join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The device the engine's tests run on: `ATTRIB_TEST_DEVICE` (cpu, cuda:0, ...; the GPU
/// check sets it), else the CPU.
pub fn test_device() -> tch::Device {
    let spec = std::env::var("ATTRIB_TEST_DEVICE").unwrap_or_else(|_| "cpu".into());
    attrib_worker::device::parse_device(&spec).expect("ATTRIB_TEST_DEVICE is a usable device")
}

pub fn tiny_model() -> Gpt2 {
    Gpt2::load(&tiny_dir(), test_device()).expect("golden tiny model loads")
}

/// The golden file's settings as ours.
pub fn settings_of(g: &Value) -> AttributionSettings {
    let s = &g["settings"];
    AttributionSettings {
        method: Default::default(),
        grad_function: s["grad_function"]
            .as_str()
            .unwrap_or("logit")
            .parse::<GradFunction>()
            .unwrap(),
        answer_function: s["answer_function"]
            .as_str()
            .unwrap_or("avg_diff")
            .parse::<AnswerFunction>()
            .unwrap(),
        points: MaskPoints::from_options(
            s["mask_val"].as_f64(),
            s["integrated_grad_samples"].as_u64().map(|n| n as usize),
        )
        .unwrap(),
        separate_qkv: s["separate_qkv"].as_bool().unwrap(),
        token_positions: s["tokenwise"].as_bool().unwrap(),
    }
}

pub fn quickstart_job(settings: AttributionSettings) -> AttributeJob {
    AttributeJob {
        model_dir: tiny_dir(),
        datasets: vec![ioi_vanilla()],
        data: v1::DataOptions {
            batches_per_unit: 2,
            ..quickstart_data_options()
        },
        settings,
    }
}

pub fn run(model: &Gpt2, job: &AttributeJob) -> ScoresFile {
    run_attribute(job, model, &mut |_, _| {}).expect("attribution runs")
}

/// max |a − b| / max |b|: the golden tolerance measure (many scores are ~0, so a relative
/// error on every entry is meaningless; this is relative to the variant's scale, and
/// `assert_matches_golden` adds one per edge for the edges that are not small).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "same number of scores");
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "reference has a non-zero score");
    zip_eq(a, b, "scores").fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}

pub use attrib_fuzz::zip_eq;

/// Edges compared one by one: those whose golden |score| is at least this fraction of the
/// variant's largest. (`rel_err`'s bound, a fraction of the largest |score|, says little
/// about edges far below it: on the IOI model 14-26 of 110 edges per method sit under 1e-4
/// of the largest.)
pub const PER_EDGE_FROM: f64 = 1e-3;

/// Relative error allowed on each edge above `PER_EDGE_FROM`. Observed on CPU (every golden
/// of golden_scores.rs and golden_eap_ig.rs, 2026-12-07): worst 2.3e-4 (clean-corrupted on the
/// tiny model, an edge at 1.5e-3 of the largest); the AutoCircuit variants at most 1.3e-4
/// (logprob_avg_val), the IOI model's EAP-IG goldens at most 1.0e-4 (exact). Float32 on both
/// sides: an edge's absolute error is up to ~1e-6 of the largest |score|, so its relative
/// error grows as the edge gets smaller; 1e-3 is four times the worst seen.
pub const PER_EDGE_REL_TOL: f64 = 1e-3;

/// The worst |a − b| / |b| over the edges whose |b| is at least `PER_EDGE_FROM` of max |b|,
/// with its index, and how many edges that is.
pub fn per_edge_rel_err(a: &[f64], b: &[f64]) -> (f64, usize, usize) {
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let mut worst = (0.0f64, 0usize, 0usize);
    for (i, (x, y)) in zip_eq(a, b, "scores").enumerate() {
        if y.abs() >= PER_EDGE_FROM * scale && y.abs() > 0.0 {
            worst.2 += 1;
            let e = (x - y).abs() / y.abs();
            if e >= worst.0 {
                (worst.0, worst.1) = (e, i);
            }
        }
    }
    worst
}

/// `ours` against the golden scores: every edge within `tol` of the largest golden |score|
/// (`rel_err`), and every edge above `PER_EDGE_FROM` of it with the golden sign and within
/// `PER_EDGE_REL_TOL` of its own golden value.
pub fn assert_matches_golden(what: &str, ours: &[f64], gold: &[f64], tol: f64) {
    let err = rel_err(ours, gold);
    let (worst, at, checked) = per_edge_rel_err(ours, gold);
    eprintln!(
        "{what}: {} edges, max|diff|/max|score| = {err:.2e}; {checked} edges over {PER_EDGE_FROM:e} of max|score|, worst |diff|/|score| = {worst:.2e} (edge {at})",
        gold.len()
    );
    assert!(err < tol, "{what}: max|diff|/max|score| = {err:.2e}");
    let scale = gold.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    for (i, (x, y)) in zip_eq(ours, gold, what).enumerate() {
        if y.abs() >= PER_EDGE_FROM * scale && y.abs() > 0.0 {
            assert_eq!(
                x.signum(),
                y.signum(),
                "{what}: edge {i} has the wrong sign: {x} vs golden {y}"
            );
            let e = (x - y).abs() / y.abs();
            assert!(
                e <= PER_EDGE_REL_TOL,
                "{what}: edge {i}: {x} vs golden {y}, |diff|/|score| = {e:.2e} > {PER_EDGE_REL_TOL:e}"
            );
        }
    }
}

/// The golden file's scores in its (= our) flat edge order, checking names on the way.
pub fn golden_scores_checked(g: &Value, ours: &ScoresFile) -> Vec<f64> {
    let edges = g["edges"].as_array().unwrap();
    assert_eq!(edges.len(), ours.edges.len(), "edge count");
    for (e, o) in zip_eq(edges, &ours.edges, "golden and our edges") {
        assert_eq!(e["src"].as_str().unwrap(), o.src);
        assert_eq!(e["dest"].as_str().unwrap(), o.dest);
        assert_eq!(e["seq"].as_u64().map(|s| s as usize), o.seq);
    }
    edges.iter().map(|e| e["score"].as_f64().unwrap()).collect()
}

pub fn scores_of(f: &ScoresFile) -> Vec<f64> {
    f.edges.iter().map(|e| e.score).collect()
}
