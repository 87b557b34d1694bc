//! EAP-IG's methods against the EAP-IG library's own scores (hannamw/EAP-IG 795f5607, see
//! `tests/fixtures/*/golden_eapig_*.json`; the self-test's checks, `attrib_worker::self_test::eap_ig`), on the tiny random golden model and on the IOI
//! model, within 1e-5 of the method's largest |score|: the tolerance of every AutoCircuit
//! golden (float32 on both sides, different summation orders); and every edge above 1e-3 of
//! it with the golden sign and within `PER_EDGE_REL_TOL` of its own value.

mod common;

use attrib_proto::Method;
use attrib_worker::self_test::eap_ig::check_method;
use common::*;

fn both_models(name: &str, method: Method) {
    let st = self_test();
    for model in [FixtureModel::Tiny, FixtureModel::Ioi] {
        let what = format!("{method} on {model:?}");
        passes(&what, check_method(&st, model, name, method.clone()));
    }
}

#[test]
fn eap() {
    both_models("eap", Method::Eap);
}

#[test]
fn eap_ig_inputs() {
    both_models("eap_ig_inputs", Method::EapIgInputs { steps: 5 });
}

#[test]
fn clean_corrupted() {
    both_models("clean_corrupted", Method::CleanCorrupted);
}

#[test]
fn eap_ig_activations() {
    both_models("eap_ig_activations", Method::EapIgActivations { steps: 5 });
}

#[test]
fn exact() {
    both_models("exact", Method::Exact);
}
