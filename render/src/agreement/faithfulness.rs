//! MIB's normalised faithfulness of circuits at edge fractions, and the two areas under its
//! curve (CPR and CMD).

use super::{check_finite, AgreementError, Result};

/// The edge fractions MIB's circuit track evaluates circuits at
/// (`evaluate_area_under_curve`'s `percentages`).
pub const MIB_FRACTIONS: [f64; 10] = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0];

/// How many edges a circuit at `fraction` of `n_edges` keeps, exactly as MIB counts them:
/// `int(pct * n_scored_items)`, i.e. the f64 product truncated towards zero (floor). Not
/// rounded to nearest: MIB's 0.1% of 110 edges is 0 edges, and float products are taken as
/// they come (0.29 × 100 is 28.999… so 28), matching Python bit for bit.
///
/// # Panics
/// When `fraction` is NaN or outside [0, 1].
pub fn edges_at_fraction(n_edges: usize, fraction: f64) -> usize {
    assert!(
        (0.0..=1.0).contains(&fraction),
        "edge fraction {fraction} is not in [0, 1]"
    );
    (fraction * n_edges as f64) as usize
}

/// MIB's normalised faithfulness of one circuit: (m(C) - m(∅)) / (m(N) - m(∅)). 0 = no better
/// than the empty circuit, 1 = recovers the full model; can leave [0, 1] either way.
///
/// Errors when `full == empty` (0/0) or a value is not finite.
pub fn normalised_faithfulness(circuit: f64, full: f64, empty: f64) -> Result<f64> {
    check_finite(
        "metrics of normalised_faithfulness",
        &[circuit, full, empty],
    )?;
    if full == empty {
        return Err(AgreementError::DegenerateNormalisation(full));
    }
    Ok((circuit - empty) / (full - empty))
}

/// A faithfulness curve and MIB's two areas under it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Faithfulness {
    /// f_i = (m(C_i) - m(∅)) / (m(N) - m(∅)), one per input point, in input order.
    pub per_point: Vec<f64>,
    /// Circuit performance ratio: trapezoid area under (x_i, f_i), linear x. Higher is better.
    pub cpr: f64,
    /// Circuit-model difference: trapezoid area under (x_i, |1 - f_i|), linear x. Lower is
    /// better (0 = every circuit matches the full model).
    pub cmd: f64,
}

/// MIB's faithfulness summary (`evaluate_area_under_curve` with its default linear x-axis,
/// `log_scale=False`) from `points` = (edge fraction x_i, metric of the circuit at x_i), the
/// full model's metric `full` = m(N) and the empty circuit's `empty` = m(∅). The areas span
/// only the given points (MIB's run from 0.001 to 1, not from 0), and are not divided by the
/// x range.
///
/// Errors with fewer than 2 points, fractions not strictly ascending, non-finite values, or
/// `full == empty`.
pub fn mib_faithfulness(points: &[(f64, f64)], full: f64, empty: f64) -> Result<Faithfulness> {
    if points.len() < 2 {
        return Err(AgreementError::TooFewPoints(points.len()));
    }
    let xs: Vec<f64> = points.iter().map(|p| p.0).collect();
    check_finite("fractions of mib_faithfulness", &xs)?;
    for (index, w) in xs.windows(2).enumerate() {
        if w[0] >= w[1] {
            return Err(AgreementError::NotAscending {
                index: index + 1,
                prev: w[0],
                next: w[1],
            });
        }
    }
    let per_point = points
        .iter()
        .map(|&(_, m)| normalised_faithfulness(m, full, empty))
        .collect::<Result<Vec<f64>>>()?;
    let distance: Vec<f64> = per_point.iter().map(|f| (1.0 - f).abs()).collect();
    Ok(Faithfulness {
        cpr: trapezoid(&xs, &per_point),
        cmd: trapezoid(&xs, &distance),
        per_point,
    })
}

/// Trapezoid-rule area under (xs[i], ys[i]); same lengths assumed.
fn trapezoid(xs: &[f64], ys: &[f64]) -> f64 {
    xs.windows(2)
        .zip(ys.windows(2))
        .map(|(x, y)| (x[1] - x[0]) * (y[0] + y[1]) / 2.0)
        .sum()
}
