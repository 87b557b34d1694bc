//! Circuit faithfulness against AutoCircuit's `run_circuits` + `measure_answer_diff` on the
//! golden tiny model (tree patching, test split), plus the exact ends of the curve: all edges
//! kept is the clean model, no edge kept is the corrupt model.

mod common;

use attrib_worker::job::{load_dataset, run_faithfulness, Faithfulness, FaithfulnessJob};
use common::*;
use serde_json::Value;

/// Float32 forward passes in a different order: per-prompt logit differences of order 1 agree
/// to a few 1e-6 (the golden file's own k=0 vs corrupt check differs by 1.9e-6).
const TOL: f64 = 2e-5;

/// Runs our faithfulness on the golden variant's own scores (AutoCircuit's prune scores, so
/// both sides choose the same circuits, ties included) with the golden edge counts.
fn ours_on_golden_scores(variant: &str, golden_file: &str) -> (Faithfulness, Value) {
    let g = golden(golden_file);
    let scores_g = golden(&format!("golden_{variant}.json"));
    let model = tiny_model();
    let mut scores = run(&model, &quickstart_job(settings_of(&scores_g)));
    let gold = golden_scores_checked(&scores_g, &scores);
    for (e, s) in zip_eq(&mut scores.edges, gold, "edges and golden scores") {
        e.score = s;
    }
    let requested: Vec<usize> = g["settings"]["requested_test_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    let job = FaithfulnessJob {
        model_dir: tiny_dir(),
        scores,
        scores_from: variant.into(),
        datasets: vec![ioi_vanilla()],
        edge_counts: requested,
    };
    let out = run_faithfulness(&job, &model, &mut |_, _| {}).expect("faithfulness runs");
    (out, g)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    zip_eq(a, b, "values").fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

fn check_against_golden(variant: &str, golden_file: &str) {
    let (ours, g) = ours_on_golden_scores(variant, golden_file);
    let curve = &ours.curve;
    assert_eq!(curve.total_edges as u64, g["total_edges"].as_u64().unwrap());
    assert_eq!(curve.n_prompts, 128);
    let circuits = g["circuits"].as_array().unwrap();
    let points = zip_eq(&curve.points, circuits, "edge counts evaluated");
    for (i, (p, c)) in points.enumerate() {
        assert_eq!(
            p.requested_edges as u64,
            c["requested_edge_count"].as_u64().unwrap()
        );
        assert_eq!(
            p.n_edges as u64,
            c["n_edges"].as_u64().unwrap(),
            "kept edges at k={}",
            p.requested_edges
        );
        assert_eq!(p.threshold, c["threshold_abs_score"].as_f64());
        let gold_mean = c["mean_logit_diff"].as_f64().unwrap();
        assert!(
            (p.mean_logit_diff - gold_mean).abs() < TOL,
            "{variant} k={}: mean {} vs AutoCircuit {gold_mean}",
            p.requested_edges,
            p.mean_logit_diff
        );
        let per_prompt: Vec<f64> = ours
            .units
            .iter()
            .flat_map(|u| u.circuits[i].iter().map(|&x| x as f64))
            .collect();
        let d = max_diff(&per_prompt, &floats(&c["per_prompt_logit_diff"]));
        assert!(
            d < TOL,
            "{variant} k={}: per-prompt max|diff| {d:.2e}",
            p.requested_edges
        );
    }
    let stats = &g["test_logit_stats"];
    assert!(
        (curve.clean_logit_diff - stats["clean_logit_diff_mean"].as_f64().unwrap()).abs() < TOL
    );
    assert!(
        (curve.corrupt_logit_diff - stats["corrupt_logit_diff_mean"].as_f64().unwrap()).abs() < TOL
    );
}

#[test]
fn quickstart_curve_matches_autocircuit() {
    check_against_golden("quickstart", "golden_faithfulness.json");
}

#[test]
fn tokenwise_curve_matches_autocircuit() {
    check_against_golden("tokenwise", "golden_faithfulness_tokenwise.json");
}

/// The ends of the curve are exact invariants, whatever the scores: every edge kept clean is
/// the unpatched clean run, every edge patched is the corrupt run (the patched inputs sum to
/// the corrupt residual). Checked per prompt against our own unpatched forward passes.
#[test]
fn all_edges_is_clean_and_no_edge_is_corrupt() {
    let (ours, _) = ours_on_golden_scores("quickstart", "golden_faithfulness.json");
    let all = ours.curve.points.len() - 1;
    let f64s = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<_>>();
    for u in &ours.units {
        assert!(
            max_diff(&f64s(&u.circuits[all]), &f64s(&u.clean)) < 1e-5,
            "k = all edges is the clean run"
        );
        assert!(
            max_diff(&f64s(&u.circuits[0]), &f64s(&u.corrupt)) < 1e-5,
            "k = 0 is the corrupt run"
        );
    }
    // Means within 1e-5 put the fractions within 1e-5 / gap of 1 and 0 (the gap is ~0.05 here).
    let c = &ours.curve;
    let tol = 1e-5 / (c.clean_logit_diff - c.corrupt_logit_diff).abs();
    assert!((c.points[all].fraction_of_gap - 1.0).abs() < tol);
    assert!(c.points[0].fraction_of_gap.abs() < tol);
}

#[test]
fn test_split_tokens_match_autocircuit() {
    let g = golden("golden_faithfulness.json");
    let model = tiny_model();
    let (ds, _) = load_dataset(&quickstart_job(Default::default()), &model).unwrap();
    let rows = |k: &str| -> Vec<Vec<i64>> {
        g["test_tokens"][k]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_i64().unwrap())
                    .collect()
            })
            .collect()
    };
    assert_eq!(ds.test.clean, rows("clean"));
    assert_eq!(ds.test.corrupt, rows("corrupt"));
    assert_eq!(ds.test.answers, rows("answers"));
    assert_eq!(ds.test.wrong_answers, rows("wrong_answers"));
}

#[test]
fn scores_of_another_graph_are_refused() {
    let model = tiny_model();
    let mut scores = run(&model, &quickstart_job(Default::default()));
    scores.edges.pop();
    let job = FaithfulnessJob {
        model_dir: tiny_dir(),
        scores,
        scores_from: "x".into(),
        datasets: vec![ioi_vanilla()],
        edge_counts: vec![1],
    };
    let err = run_faithfulness(&job, &model, &mut |_, _| {})
        .err()
        .expect("refused");
    assert!(err.to_string().contains("109 edges"), "{err}");
}
