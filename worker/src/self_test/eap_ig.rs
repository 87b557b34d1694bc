//! EAP-IG's methods against the EAP-IG library's own scores (hannamw/EAP-IG 795f5607,
//! `golden_eapig_*.json`), on the tiny random golden model and on the trained IOI model:
//! the same measure and tolerance as every AutoCircuit golden (float32 on both sides,
//! different summation orders).

use attrib_proto::{AttributionSettings, Method};

use super::golden::quickstart_job;
use super::tolerance::{compare_scores, SCORES_TOL};
use super::{Check, Failure, FixtureModel, Outcome, SelfTest};
use crate::job::run_attribute;

/// Each method with its golden file's name (`golden_eapig_<name>.json`), as the EAP-IG
/// library's golden script ran it (5 integration steps).
pub fn methods() -> Vec<(&'static str, Method)> {
    vec![
        ("eap", Method::Eap),
        ("eap_ig_inputs", Method::EapIgInputs { steps: 5 }),
        ("clean_corrupted", Method::CleanCorrupted),
        ("eap_ig_activations", Method::EapIgActivations { steps: 5 }),
        ("exact", Method::Exact),
    ]
}

pub fn checks() -> Vec<Check> {
    let mut all = vec![];
    for model in [FixtureModel::Tiny, FixtureModel::Ioi] {
        for (name, method) in methods() {
            let label = match model {
                FixtureModel::Tiny => "tiny",
                FixtureModel::Ioi => "ioi",
            };
            all.push(Check {
                name: format!("eap-ig {name} ({label})"),
                model,
                goldens: vec![format!("{}/golden_eapig_{name}.json", model.goldens())],
                run: Box::new(move |st: &SelfTest| check_method(st, model, name, method.clone())),
            });
        }
    }
    all
}

/// Our scores by `method` on `model` against the library's (`golden_eapig_<name>.json`).
pub fn check_method(st: &SelfTest, model: FixtureModel, name: &str, method: Method) -> Outcome {
    let g = st.golden(model, &format!("golden_eapig_{name}.json"))?;
    let settings = AttributionSettings {
        method,
        ..Default::default()
    };
    let job = quickstart_job(st.model_dir(model)?, st.dataset()?, settings);
    let ours = run_attribute(&job, st.model(model)?, &mut |_, _| {})?;
    let gold = g.scores_checked(&ours)?;
    let scores: Vec<f64> = ours.edges.iter().map(|e| e.score).collect();
    let measure = compare_scores(&scores, &gold, SCORES_TOL).map_err(Failure::Differs)?;
    Ok(measure.to_string())
}
