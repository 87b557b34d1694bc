//! Circuit faithfulness against AutoCircuit's `run_circuits` + `measure_answer_diff` on the
//! golden tiny model (tree patching, test split), plus the exact ends of the curve: all edges
//! kept is the clean model, no edge kept is the corrupt model. The golden curves are the
//! self-test's checks (`attrib_worker::self_test::faithfulness`).

mod common;

use attrib_worker::job::{load_dataset, run_faithfulness, FaithfulnessJob};
use attrib_worker::self_test::faithfulness::{check_curve, ours_on_golden_scores};
use common::*;

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    zip_eq(a, b, "values").fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

#[test]
fn quickstart_curve_matches_autocircuit() {
    let outcome = check_curve(&self_test(), "quickstart", "golden_faithfulness.json");
    passes("quickstart", outcome);
}

#[test]
fn tokenwise_curve_matches_autocircuit() {
    let outcome = check_curve(
        &self_test(),
        "tokenwise",
        "golden_faithfulness_tokenwise.json",
    );
    passes("tokenwise", outcome);
}

/// The ends of the curve are exact invariants, whatever the scores: every edge kept clean is
/// the unpatched clean run, every edge patched is the corrupt run (the patched inputs sum to
/// the corrupt residual). Checked per prompt against our own unpatched forward passes.
#[test]
fn all_edges_is_clean_and_no_edge_is_corrupt() {
    let st = self_test();
    let (ours, _) = ours_on_golden_scores(&st, "quickstart", "golden_faithfulness.json")
        .unwrap_or_else(|e| panic!("{e}"));
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
