//! ACDC against AutoCircuit 1.0.1's `acdc_prune_scores` (golden files made with a fixed
//! visit order and a trace of every step, `tests/fixtures/*/golden_acdc*.json`): the visit
//! order, every step's decision at every τ, every step's KL divergence within `kl_tol`, and
//! the final scores (the smallest τ that removed each edge, +∞ if none).

mod common;

use std::path::{Path, PathBuf};

use attrib_proto::{AttributionSettings, Method};
use attrib_worker::attribution::acdc::{acdc_steps, visit_order};
use attrib_worker::attribution::pass_input;
use attrib_worker::job::load_dataset;
use attrib_worker::model::Gpt2;
use common::*;
use serde_json::Value;

/// KL values (up to ~4 on the IOI model) are sums over 16 × 50,257 float32 terms, whose
/// rounding depends on the vector kernels libtorch and MKL pick for the CPU. On the AVX-512
/// machines this project ran on until 2026-12, attrib and the golden agree to a few 1e-7
/// relative (measured: 2.8e-7 at KL 4.18), so there 1e-6 of max(KL, 1) is allowed. With
/// AVX2 kernels (no AVX-512, or `ATEN_CPU_CAPABILITY` below it) the log-sum-exp over the
/// vocabulary rounds differently, a systematic offset rather than noise: measured 2026-12-07
/// on an AMD EPYC with AVX2 (the same at the commit before this tolerance), the tiny model's
/// KLs differ by at most 1.67e-6 and the trained IOI model's, whose logits are sharper, sit
/// below the golden's by about 1e-5, at most 2.17e-5; allowed there: 3e-6 and 3e-5
/// (`avx2_tol`). Decisions are compared exactly, step by step, on every CPU: the closest
/// calls in the golden files are 1e-6 (tiny, an edge with no effect at τ = 1e-6, where both
/// KLs are exactly equal) and 2.1e-5 (IOI).
fn kl_tol(avx2_tol: f64) -> f64 {
    #[cfg(target_arch = "x86_64")]
    {
        let capability = std::env::var("ATEN_CPU_CAPABILITY").unwrap_or_default();
        let avx512 = matches!(capability.as_str(), "" | "avx512");
        if avx512 && std::is_x86_feature_detected!("avx512f") {
            return 1e-6;
        }
    }
    avx2_tol
}

/// Python's json writes bare `Infinity`, which serde_json does not read.
fn read_golden(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text.replace(": Infinity", ": \"Infinity\"")).unwrap()
}

fn check(model_dir: &Path, golden_file: &Path, avx2_tol: f64) {
    let g = read_golden(golden_file);
    let model = Gpt2::load(model_dir, test_device()).unwrap();
    let taus: Vec<f64> = g["settings"]["taus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_f64().unwrap())
        .collect();
    let settings = AttributionSettings {
        method: Method::Acdc { taus: taus.clone() },
        ..Default::default()
    };
    let mut job = quickstart_job(settings.clone());
    job.model_dir = model_dir.to_path_buf();
    let (dataset, tok) = load_dataset(&job, &model).unwrap();
    let graph = model.cfg.graph(&settings, dataset.width);
    let names: Vec<String> = graph
        .named_edges()
        .iter()
        .map(|e| format!("{}->{}", e.src, e.dest))
        .collect();
    let order: Vec<&str> = visit_order(&graph)
        .iter()
        .map(|&i| names[i].as_str())
        .collect();
    let golden_order: Vec<&str> = g["visit_order"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(order, golden_order, "visit order");

    let first = &dataset.train_batches(16)[..1];
    let pass = pass_input(&model, first, tok.bos_id(), true).unwrap();
    let mut worst = 0.0f64;
    let traces = g["per_tau"].as_array().unwrap();
    for (tau, per_tau) in zip_eq(&taus, traces, "τ values and golden per-τ traces") {
        assert_eq!(per_tau["tau"].as_f64().unwrap(), *tau);
        let steps = acdc_steps(&model, &graph, &pass, *tau, &|| Ok(())).unwrap();
        let golden_steps = per_tau["steps"].as_array().unwrap();
        let steps = zip_eq(&steps, golden_steps, "our and golden ACDC steps");
        for (i, (ours, gold)) in steps.enumerate() {
            let at = format!("τ = {tau}, step {i} ({})", names[ours.edge]);
            assert_eq!(names[ours.edge], gold["edge"].as_str().unwrap(), "{at}");
            let diff = (ours.kl - gold["faith"].as_f64().unwrap()).abs() / ours.kl.max(1.0);
            worst = worst.max(diff);
            assert!(
                diff < kl_tol(avx2_tol),
                "{at}: KL {} vs {}",
                ours.kl,
                gold["faith"]
            );
            assert_eq!(ours.removed, gold["removed"].as_bool().unwrap(), "{at}");
        }
    }
    eprintln!(
        "{}: {} taus x {} steps, worst |KL - golden| / max(KL, 1) = {worst:.2e} (closest call in the golden: {:.2e})",
        golden_file.display(),
        taus.len(),
        order.len(),
        g["min_abs_delta_minus_tau"].as_f64().unwrap()
    );

    // The job's scores: the smallest τ that removed each edge.
    let ours = run(&model, &job);
    let gold = g["edges"].as_array().unwrap();
    for (o, e) in zip_eq(&ours.edges, gold, "our and golden final scores") {
        let want = match &e["score"] {
            Value::String(s) if s == "Infinity" => f64::INFINITY,
            v => v.as_f64().unwrap(),
        };
        assert_eq!(
            (o.src.as_str(), o.dest.as_str()),
            (e["src"].as_str().unwrap(), e["dest"].as_str().unwrap())
        );
        // AutoCircuit keeps τ in float32.
        assert_eq!(o.score as f32, want as f32, "{} -> {}", o.src, o.dest);
    }
}

fn ioi_fixtures() -> PathBuf {
    repo().join("tests/fixtures/ioi-2l4h64")
}

#[test]
fn tiny_model_registered_taus() {
    check(&tiny_dir(), &tiny_dir().join("golden_acdc.json"), 3e-6);
}

#[test]
fn tiny_model_spread_taus() {
    check(
        &tiny_dir(),
        &tiny_dir().join("golden_acdc_spread.json"),
        3e-6,
    );
}

#[test]
fn ioi_model_spread_taus() {
    check(
        &repo().join("assets/ioi-2l4h64"),
        &ioi_fixtures().join("golden_acdc_spread.json"),
        3e-5,
    );
}
