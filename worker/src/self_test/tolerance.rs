//! The golden tolerance measures, shared by `attrib-worker self-test` and the golden tests so
//! that both judge a run by the same code and the same bounds. Pure arithmetic on score
//! vectors: no tensors, no files.

/// Edges compared one by one: those whose golden |score| is at least this fraction of the
/// variant's largest. (`rel_err`'s bound, a fraction of the largest |score|, says little
/// about edges far below it: on the IOI model 14-26 of 110 edges per method sit under 1e-4
/// of the largest.)
pub const PER_EDGE_FROM: f64 = 1e-3;

/// Relative error allowed on each edge above `PER_EDGE_FROM`. Observed on CPU (every golden
/// of golden_scores.rs and golden_eap_ig.rs, 2026-12-07): worst 2.3e-4 (clean-corrupted on the
/// tiny model, an edge at 1.5e-3 of the largest); the AutoCircuit variants at most 1.3e-4
/// (logprob_avg_val), the IOI model's EAP-IG goldens at most 1.0e-4 (exact). Float32 on both
/// sides: an edge's absolute error is up to ~1e-6 of the largest |score|, so its relative
/// error grows as the edge gets smaller; 1e-3 is four times the worst seen.
pub const PER_EDGE_REL_TOL: f64 = 1e-3;

/// Every golden edge score within this fraction of the variant's largest |score|: the
/// AutoCircuit oracle's own independent port agrees to ~1e-6 (float32 on both sides,
/// different summation orders).
pub const SCORES_TOL: f64 = 1e-5;

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0f64, |m, x| m.max(x.abs()))
}

/// max |a − b| / max |b|: the golden tolerance measure (many scores are ~0, so a relative
/// error on every entry is meaningless; this is relative to the variant's scale, and
/// `compare_scores` adds one per edge for the edges that are not small). Panics on vectors
/// of different lengths or an all-zero reference: callers check both first.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "same number of scores");
    let scale = max_abs(b);
    assert!(scale > 0.0, "reference has a non-zero score");
    a.iter()
        .zip(b)
        .fold(0.0f64, |m, (x, y)| m.max((x - y).abs()))
        / scale
}

/// The worst |a − b| / |b| over the edges whose |b| is at least `PER_EDGE_FROM` of max |b|,
/// with its index, and how many edges that is.
pub fn per_edge_rel_err(a: &[f64], b: &[f64]) -> (f64, usize, usize) {
    assert_eq!(a.len(), b.len(), "same number of scores");
    let scale = max_abs(b);
    let mut worst = (0.0f64, 0usize, 0usize);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        if y.abs() >= PER_EDGE_FROM * scale && y.abs() > 0.0 {
            worst.2 += 1;
            let e = (x - y).abs() / y.abs();
            if e >= worst.0 {
                (worst.0, worst.1) = (e, i);
            }
        }
    }
    worst
}

/// How far a score vector is from its golden one (`compare_scores`'s result).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoresMeasure {
    pub edges: usize,
    /// max |diff| / max |golden|.
    pub rel_err: f64,
    /// The worst per-edge |diff| / |golden| over the edges checked one by one, and its edge.
    pub worst_edge: f64,
    pub worst_at: usize,
    /// Edges over `PER_EDGE_FROM` of the largest |golden|.
    pub checked: usize,
    pub tol: f64,
}

impl std::fmt::Display for ScoresMeasure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "max|diff|/max|score| {:.1e}, worst of {} edges {:.1e} (edge {}) (tol {:.0e} / {:.0e})",
            self.rel_err, self.checked, self.worst_edge, self.worst_at, self.tol, PER_EDGE_REL_TOL
        )
    }
}

/// `ours` against the golden scores: every edge within `tol` of the largest golden |score|
/// (`rel_err`), and every edge above `PER_EDGE_FROM` of it with the golden sign and within
/// `PER_EDGE_REL_TOL` of its own golden value. `Err` says what differed.
pub fn compare_scores(ours: &[f64], gold: &[f64], tol: f64) -> Result<ScoresMeasure, String> {
    if ours.len() != gold.len() {
        return Err(format!(
            "{} scores but the golden has {}",
            ours.len(),
            gold.len()
        ));
    }
    let scale = max_abs(gold);
    if scale.is_nan() || scale <= 0.0 {
        return Err("the golden scores are all zero (or not numbers)".into());
    }
    if let Some(i) = ours.iter().position(|x| !x.is_finite()) {
        return Err(format!("edge {i} scored {}", ours[i]));
    }
    let (worst_edge, worst_at, checked) = per_edge_rel_err(ours, gold);
    let m = ScoresMeasure {
        edges: gold.len(),
        rel_err: rel_err(ours, gold),
        worst_edge,
        worst_at,
        checked,
        tol,
    };
    if m.rel_err >= tol {
        return Err(format!(
            "max|diff|/max|score| = {:.2e} > {tol:e}",
            m.rel_err
        ));
    }
    for (i, (x, y)) in ours.iter().zip(gold).enumerate() {
        if y.abs() >= PER_EDGE_FROM * scale && y.abs() > 0.0 {
            if x.signum() != y.signum() {
                return Err(format!("edge {i} has the wrong sign: {x} vs golden {y}"));
            }
            let e = (x - y).abs() / y.abs();
            if e > PER_EDGE_REL_TOL {
                return Err(format!(
                    "edge {i}: {x} vs golden {y}, |diff|/|score| = {e:.2e} > {PER_EDGE_REL_TOL:e}"
                ));
            }
        }
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_perturbed_edge_fails_and_names_itself() {
        let gold = [1.0, -0.5, 1e-6, 0.25];
        assert!(compare_scores(&gold, &gold, SCORES_TOL).is_ok());
        let mut ours = gold;
        ours[3] *= 1.0 + 2e-5; // 5e-6 of the largest: within SCORES_TOL, but 2e-5 of itself
        let m = compare_scores(&ours, &gold, SCORES_TOL).unwrap();
        assert_eq!(m.worst_at, 3);
        ours[1] = 0.5;
        let e = compare_scores(&ours, &gold, SCORES_TOL).unwrap_err();
        assert!(e.contains("max|diff|"), "{e}");
        let e = compare_scores(&ours, &gold, 10.0).unwrap_err();
        assert!(e.contains("edge 1 has the wrong sign"), "{e}");
        assert!(compare_scores(&[f64::NAN; 4], &gold, SCORES_TOL).is_err());
        assert!(compare_scores(&gold[..3], &gold, SCORES_TOL).is_err());
    }
}
