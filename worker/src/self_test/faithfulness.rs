//! Circuit faithfulness against AutoCircuit's `run_circuits` + `measure_answer_diff` on the
//! golden tiny model (tree patching, test split; `golden_faithfulness*.json`): the kept edge
//! counts, thresholds, and every circuit's mean and per-prompt logit differences.

use super::golden::{quickstart_job, Golden};
use super::{Check, Failure, FixtureModel, Outcome, SelfTest};
use crate::job::{run_attribute, run_faithfulness, Faithfulness, FaithfulnessJob};

/// Float32 forward passes in a different order: per-prompt logit differences of order 1 agree
/// to a few 1e-6 (the golden file's own k=0 vs corrupt check differs by 1.9e-6).
pub const TOL: f64 = 2e-5;

/// The scores variants with their golden curves.
const CURVES: [(&str, &str); 2] = [
    ("quickstart", "golden_faithfulness.json"),
    ("tokenwise", "golden_faithfulness_tokenwise.json"),
];

pub fn checks() -> Vec<Check> {
    let dir = FixtureModel::Tiny.goldens();
    CURVES
        .iter()
        .map(|&(variant, file)| Check {
            name: format!("faithfulness {variant}"),
            model: FixtureModel::Tiny,
            goldens: vec![
                format!("{dir}/golden_{variant}.json"),
                format!("{dir}/{file}"),
            ],
            run: Box::new(move |st: &SelfTest| check_curve(st, variant, file)),
        })
        .collect()
}

/// Runs our faithfulness on the golden variant's own scores (AutoCircuit's prune scores, so
/// both sides choose the same circuits, ties included) with the golden edge counts.
pub fn ours_on_golden_scores(
    st: &SelfTest,
    variant: &str,
    golden_file: &str,
) -> Result<(Faithfulness, Golden), Failure> {
    let g = st.golden(FixtureModel::Tiny, golden_file)?;
    let scores_g = st.golden(FixtureModel::Tiny, &format!("golden_{variant}.json"))?;
    let model = st.model(FixtureModel::Tiny)?;
    let (model_dir, dataset) = (st.model_dir(FixtureModel::Tiny)?, st.dataset()?);
    let job = quickstart_job(model_dir.clone(), dataset.clone(), scores_g.settings()?);
    let mut scores = run_attribute(&job, model, &mut |_, _| {})?;
    let gold = scores_g.scores_checked(&scores)?;
    for (e, s) in scores.edges.iter_mut().zip(gold) {
        e.score = s;
    }
    let requested: Vec<usize> = g
        .f64s_at("/settings/requested_test_counts")?
        .iter()
        .map(|&k| k as usize)
        .collect();
    let job = FaithfulnessJob {
        model_dir,
        scores,
        scores_from: variant.into(),
        datasets: vec![dataset],
        edge_counts: requested,
    };
    Ok((run_faithfulness(&job, model, &mut |_, _| {})?, g))
}

fn max_diff(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
}

/// `variant`'s curve against AutoCircuit's.
pub fn check_curve(st: &SelfTest, variant: &str, golden_file: &str) -> Outcome {
    let (ours, g) = ours_on_golden_scores(st, variant, golden_file)?;
    let differs = |what: String| Err(Failure::Differs(what));
    let curve = &ours.curve;
    let total = g.f64_at("/total_edges")? as usize;
    if curve.total_edges != total || curve.n_prompts != 128 {
        return differs(format!(
            "{} edges and {} prompts, golden {total} and 128",
            curve.total_edges, curve.n_prompts
        ));
    }
    let circuits = g.array_at("/circuits")?;
    if circuits.len() != curve.points.len() {
        return differs(format!(
            "{} circuits, golden {}",
            curve.points.len(),
            circuits.len()
        ));
    }
    let mut worst = 0.0f64;
    for (i, p) in curve.points.iter().enumerate() {
        let at = |f: &str| format!("/circuits/{i}/{f}");
        let k = p.requested_edges;
        if g.f64_at(&at("requested_edge_count"))? as usize != k
            || g.f64_at(&at("n_edges"))? as usize != p.n_edges
        {
            return differs(format!(
                "circuit {i}: k = {k} keeps {} edges, golden {}",
                p.n_edges,
                g.at(&at("n_edges"))?
            ));
        }
        if p.threshold != g.at(&at("threshold_abs_score"))?.as_f64() {
            return differs(format!(
                "k = {k}: threshold {:?}, golden {}",
                p.threshold,
                g.at(&at("threshold_abs_score"))?
            ));
        }
        let gold_mean = g.f64_at(&at("mean_logit_diff"))?;
        let per_prompt: Vec<f64> = ours
            .units
            .iter()
            .flat_map(|u| u.circuits[i].iter().map(|&x| x as f64))
            .collect();
        let gold_prompts = g.f64s_at(&at("per_prompt_logit_diff"))?;
        if gold_prompts.len() != per_prompt.len() {
            return differs(format!(
                "k = {k}: {} prompts, golden {}",
                per_prompt.len(),
                gold_prompts.len()
            ));
        }
        let d = max_diff(&per_prompt, &gold_prompts).max((p.mean_logit_diff - gold_mean).abs());
        worst = worst.max(d);
        if d.is_nan() || d >= TOL {
            return differs(format!(
                "k = {k}: per-prompt or mean logit diff off by {d:.2e} (mean {} vs {gold_mean})",
                p.mean_logit_diff
            ));
        }
    }
    for (ours, key) in [
        (curve.clean_logit_diff, "clean_logit_diff_mean"),
        (curve.corrupt_logit_diff, "corrupt_logit_diff_mean"),
    ] {
        let gold = g.f64_at(&format!("/test_logit_stats/{key}"))?;
        if (ours - gold).abs() >= TOL {
            return differs(format!("{key}: {ours} vs golden {gold}"));
        }
    }
    Ok(format!(
        "{} circuits x 128 prompts, kept edges and thresholds exact, max|diff| of logit diffs {worst:.1e} (tol {TOL:.0e})",
        curve.points.len()
    ))
}
