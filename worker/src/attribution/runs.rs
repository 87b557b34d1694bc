//! The gradient runs of one pass: AutoCircuit's mask points (each run with its own
//! `S − P`), or an EAP-IG method's runs against one fixed `S(clean) − P`, in EAP-IG's order.

use attrib_proto::{GraphShape, Method};
use tch::Tensor;

use super::uniform_patcher::Replacement;

/// Which prompts a gradient run reads, and what it changes.
pub(super) struct Run {
    pub corrupt_tokens: bool,
    /// Every mask at this value (AutoCircuit's mask gradient).
    pub alpha: f64,
    /// Sources `first..first+n` whose outputs become `P + α·(S − P)` (EAP-IG's interpolated
    /// nodes), as `(first, n, α)`; the values are made when the run comes, one run's at a time.
    pub interpolate: Option<(usize, usize, f64)>,
}

impl Run {
    pub(super) fn clean(alpha: f64) -> Self {
        Run {
            corrupt_tokens: false,
            alpha,
            interpolate: None,
        }
    }
}

/// `P + α·(S − P)` over sources `first..first+n` as `[n, C, T, d]`, from `p` and
/// `delta` = `S − P`, both batch-major.
pub(super) fn interpolation(
    first: usize,
    n: usize,
    alpha: f64,
    p: &Tensor,
    delta: &Tensor,
) -> Replacement {
    let rows = |t: &Tensor| {
        let s = t.size(); // [n_src, nb, T, B, d]
        t.narrow(0, first as i64, n as i64)
            .permute([0, 1, 3, 2, 4])
            .reshape([n as i64, s[1] * s[3], s[2], s[4]])
    };
    Replacement {
        first,
        values: rows(p) + rows(delta) * alpha,
    }
}

/// The gradient runs of an EAP-IG method, whose Δ is fixed at `S(clean) − P`, in EAP-IG's
/// order.
pub(super) fn eap_ig_runs(method: &Method, graph: &GraphShape) -> Vec<Run> {
    let with = |first: usize, n: usize, alpha: f64| Run {
        corrupt_tokens: false,
        alpha: 0.0,
        interpolate: Some((first, n, alpha)),
    };
    match *method {
        Method::CleanCorrupted => vec![
            Run::clean(0.0),
            Run {
                corrupt_tokens: true,
                ..Run::clean(0.0)
            },
        ],
        // k = 0..steps−1: the corrupt end included, the clean end not (EAP-IG's edge grid).
        Method::EapIgInputs { steps } => (0..steps)
            .map(|k| with(0, 1, k as f64 / steps as f64))
            .collect(),
        // Targets input, then per layer its attention (all heads) and its MLP; k = 1..steps.
        Method::EapIgActivations { steps } => {
            let heads = graph.n_heads;
            let targets = std::iter::once((0, 1)).chain(
                (0..graph.n_layers)
                    .flat_map(|l| [(1 + l * (heads + 1), heads), ((l + 1) * (heads + 1), 1)]),
            );
            targets
                .flat_map(|(first, n)| {
                    (1..=steps).map(move |k| with(first, n, k as f64 / steps as f64))
                })
                .collect()
        }
        Method::MaskGradient | Method::Eap | Method::Exact | Method::Acdc { .. } => {
            unreachable!("not a fixed-Δ method")
        }
    }
}
