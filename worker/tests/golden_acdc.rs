//! ACDC against AutoCircuit 1.0.1's `acdc_prune_scores` (golden files made with a fixed
//! visit order and a trace of every step, `tests/fixtures/*/golden_acdc*.json`): the visit
//! order, every step's decision at every τ, every step's KL divergence within `kl_tol`, and
//! the final scores (the smallest τ that removed each edge, +∞ if none): the self-test's
//! checks (`attrib_worker::self_test::acdc`, which explains the KL tolerances).

mod common;

use attrib_worker::self_test::acdc::check_acdc;
use common::*;

#[test]
fn tiny_model_registered_taus() {
    let outcome = check_acdc(&self_test(), FixtureModel::Tiny, "golden_acdc.json", 3e-6);
    passes("tiny, registered taus", outcome);
}

#[test]
fn tiny_model_spread_taus() {
    let outcome = check_acdc(
        &self_test(),
        FixtureModel::Tiny,
        "golden_acdc_spread.json",
        3e-6,
    );
    passes("tiny, spread taus", outcome);
}

#[test]
fn ioi_model_spread_taus() {
    let outcome = check_acdc(
        &self_test(),
        FixtureModel::Ioi,
        "golden_acdc_spread.json",
        3e-5,
    );
    passes("IOI, spread taus", outcome);
}
