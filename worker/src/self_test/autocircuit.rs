//! AutoCircuit's golden variants on the tiny model (`golden_<variant>.json`, made by
//! AutoCircuit 1.0.1's `mask_gradient_prune_scores`): every edge's score within
//! `SCORES_TOL` of the largest and the large edges one by one (`compare_scores`), and the
//! clean logit difference.

use super::golden::quickstart_job;
use super::tolerance::{compare_scores, SCORES_TOL};
use super::{Check, Failure, FixtureModel, Outcome, SelfTest};
use crate::job::run_attribute;

/// Every golden variant: the quickstart, token-wise, and one change of setting each.
pub const VARIANTS: [&str; 9] = [
    "quickstart",
    "tokenwise",
    "no_separate_qkv",
    "integrated_grads_5",
    "logprob_avg_val",
    "prob_avg_diff",
    "logit_exp_avg_diff",
    "logit_avg_val",
    "mask_val_0.5",
];

pub fn checks() -> Vec<Check> {
    VARIANTS
        .iter()
        .map(|&v| Check {
            name: v.to_string(),
            model: FixtureModel::Tiny,
            goldens: vec![format!("{}/golden_{v}.json", FixtureModel::Tiny.goldens())],
            run: Box::new(move |st: &SelfTest| check_variant(st, v)),
        })
        .collect()
}

/// Our scores for `variant`'s settings against its golden file.
pub fn check_variant(st: &SelfTest, variant: &str) -> Outcome {
    let g = st.golden(FixtureModel::Tiny, &format!("golden_{variant}.json"))?;
    let model = st.model(FixtureModel::Tiny)?;
    let job = quickstart_job(
        st.model_dir(FixtureModel::Tiny)?,
        st.dataset()?,
        g.settings()?,
    );
    let ours = run_attribute(&job, model, &mut |_, _| {})?;
    let gold = g.scores_checked(&ours)?;
    let scores: Vec<f64> = ours.edges.iter().map(|e| e.score).collect();
    let measure = compare_scores(&scores, &gold, SCORES_TOL).map_err(Failure::Differs)?;
    let ld = g.f64_at("/clean_logit_diff")?;
    // The unpatched metric: float32 forward passes of order-1 values.
    if (ours.clean_logit_diff - ld).abs() >= 1e-5 * ld.abs().max(1.0) {
        return Err(Failure::Differs(format!(
            "clean logit diff {} vs golden {ld}",
            ours.clean_logit_diff
        )));
    }
    Ok(measure.to_string())
}
