//! Shared helpers of the engine's tests: the golden tiny model and its reference numbers.
#![allow(dead_code)]

use std::path::PathBuf;

use attrib_datasets::DatasetOptions;
use attrib_proto::{AnswerFunction, AttributionSettings, GradFunction, MaskPoints, ScoresFile};
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
        data: DatasetOptions::default(),
        settings,
        batches_per_unit: 2,
    }
}

pub fn run(model: &Gpt2, job: &AttributeJob) -> ScoresFile {
    run_attribute(job, model, &mut |_, _| {}).expect("attribution runs")
}

/// max |a − b| / max |b|: the golden tolerance measure (many scores are ~0, so a relative
/// error per entry is meaningless; this is relative to the variant's scale).
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "same number of scores");
    let scale = b.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    assert!(scale > 0.0, "reference has a non-zero score");
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// The golden file's scores in its (= our) flat edge order, checking names on the way.
pub fn golden_scores_checked(g: &Value, ours: &ScoresFile) -> Vec<f64> {
    let edges = g["edges"].as_array().unwrap();
    assert_eq!(edges.len(), ours.edges.len(), "edge count");
    for (e, o) in edges.iter().zip(&ours.edges) {
        assert_eq!(e["src"].as_str().unwrap(), o.src);
        assert_eq!(e["dest"].as_str().unwrap(), o.dest);
        assert_eq!(e["seq"].as_u64().map(|s| s as usize), o.seq);
    }
    edges.iter().map(|e| e["score"].as_f64().unwrap()).collect()
}

pub fn scores_of(f: &ScoresFile) -> Vec<f64> {
    f.edges.iter().map(|e| e.score).collect()
}
