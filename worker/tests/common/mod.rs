//! Shared helpers of the engine's tests: the golden tiny model and its reference numbers.
// Each test binary compiles this module and uses a part of it.
#![allow(dead_code, unused_imports)]

use std::path::PathBuf;

use attrib_proto::{AttributionSettings, ScoresFile};
use attrib_worker::job::{run_attribute, AttributeJob};
use attrib_worker::model::Gpt2;
use attrib_worker::self_test::golden::{self, Golden};
pub use attrib_worker::self_test::tolerance::{compare_scores, rel_err, SCORES_TOL};
pub use attrib_worker::self_test::{Failure, FixtureModel, Outcome, SelfTest};
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
    Golden::read(&tiny_dir().join(name))
        .unwrap_or_else(|e| panic!("{e}"))
        .value
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

pub fn quickstart_job(settings: AttributionSettings) -> AttributeJob {
    golden::quickstart_job(tiny_dir(), ioi_vanilla(), settings)
}

/// The self-test's context on the repository's fixtures and the test device: the golden
/// checks the tests share with `attrib-worker self-test`.
pub fn self_test() -> SelfTest {
    SelfTest::new(repo(), test_device())
}

/// A shared golden check's outcome as a test's: its measure printed, or a panic saying
/// what differed.
pub fn passes(what: &str, outcome: Outcome) {
    match outcome {
        Ok(measure) => eprintln!("{what}: {measure}"),
        Err(why) => panic!("{what}: {why}"),
    }
}

pub fn run(model: &Gpt2, job: &AttributeJob) -> ScoresFile {
    run_attribute(job, model, &mut |_, _| {}).expect("attribution runs")
}

pub use attrib_fuzz::zip_eq;

/// `ours` against the golden scores by the self-test's measure (`compare_scores`): every
/// edge within `tol` of the largest golden |score|, and every edge above `PER_EDGE_FROM` of it
/// with the golden sign and within `PER_EDGE_REL_TOL` of its own golden value.
pub fn assert_matches_golden(what: &str, ours: &[f64], gold: &[f64], tol: f64) {
    passes(
        what,
        compare_scores(ours, gold, tol)
            .map(|m| m.to_string())
            .map_err(Failure::Differs),
    );
}

pub fn scores_of(f: &ScoresFile) -> Vec<f64> {
    f.edges.iter().map(|e| e.score).collect()
}
