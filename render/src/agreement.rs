//! Judges attribution methods against a reference attribution (for example EAP-IG's `exact`
//! patching scores): how well each method *ranks* the edges (Spearman), how well it *finds*
//! the reference's most important edges (ROC AUC against the top k by |reference|), and MIB's
//! normalised faithfulness curve (CPR / CMD) for circuits evaluated at edge fractions.
//!
//! Everything works on plain `f64` slices indexed by edge (every slice of one call must list
//! the edges in the same order), so it needs neither tch nor a model. Conventions, chosen once
//! and used everywhere:
//!
//! * ties get *average ranks* (Spearman) and count 1/2 (ROC AUC), so neither depends on the
//!   order edges happen to be listed in;
//! * the top k of a reference breaks ties at the k-th place by the *lower index first*;
//! * agreement compares magnitudes (|score| against |reference|): a method that finds an
//!   important edge but gets its sign wrong still found it. This is the convention the trained
//!   IOI model's README table used (signed scores do not reproduce it; see the tests);
//! * inputs that would make a number meaningless (different lengths, NaN, infinities where areas are taken,
//!   a constant side for Spearman, no positives or no negatives for AUC) are errors, never NaN.
//!
//! [`agreement_table`], [`format_table`] and [`agreement_svg`] put the per-method numbers
//! together as a table and as a grouped bar chart.

mod chart;
mod faithfulness;

pub use chart::{agreement_svg, aligned_table, format_table, table_cells};
pub use faithfulness::{
    edges_at_fraction, mib_faithfulness, normalised_faithfulness, Faithfulness, MIB_FRACTIONS,
};

/// Why an agreement number could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AgreementError {
    /// Two inputs that must describe the same edges have different lengths.
    #[error("{what} has {got} entries, expected {expected}")]
    LengthMismatch {
        what: String,
        expected: usize,
        got: usize,
    },
    /// An input has no entries at all.
    #[error("{0} is empty")]
    Empty(String),
    /// An input holds NaN (or, where areas are taken, an infinity).
    #[error("{what}[{index}] is {value}, expected a number")]
    NonFinite {
        what: String,
        index: usize,
        value: f64,
    },
    /// Every entry is the same, so a rank correlation is undefined (0/0).
    #[error("{0} is constant, so its rank correlation is undefined")]
    Constant(String),
    /// ROC AUC needs at least one positive.
    #[error("{0}: no positives, so ROC AUC is undefined")]
    NoPositives(String),
    /// ROC AUC needs at least one negative.
    #[error("{0}: no negatives, so ROC AUC is undefined")]
    NoNegatives(String),
    /// More positives asked for than there are entries.
    #[error("top k = {k} asked of {n} entries")]
    KTooLarge { k: usize, n: usize },
    /// MIB's normalisation divides by m(N) - m(∅).
    #[error("full-model metric equals empty-circuit metric ({0}), so faithfulness is 0/0")]
    DegenerateNormalisation(f64),
    /// A curve needs at least two points to have an area.
    #[error("a faithfulness curve needs at least 2 points, got {0}")]
    TooFewPoints(usize),
    /// The trapezoid rule here assumes the x-axis runs left to right.
    #[error("fractions must be strictly ascending: point {index} has {prev} then {next}")]
    NotAscending { index: usize, prev: f64, next: f64 },
}

type Result<T> = std::result::Result<T, AgreementError>;

/// Fails unless `got == expected`.
fn check_len(what: &str, expected: usize, got: usize) -> Result<()> {
    if got == expected {
        Ok(())
    } else {
        Err(AgreementError::LengthMismatch {
            what: what.to_string(),
            expected,
            got,
        })
    }
}

/// Fails on the first NaN (it has no rank). Infinities rank at the ends: ACDC scores an edge
/// no τ removed +∞, above every finite score.
fn check_ranked(what: &str, xs: &[f64]) -> Result<()> {
    match xs.iter().position(|x| x.is_nan()) {
        None => Ok(()),
        Some(index) => Err(AgreementError::NonFinite {
            what: what.to_string(),
            index,
            value: xs[index],
        }),
    }
}

/// Fails on the first NaN or infinity (areas need finite numbers).
fn check_finite(what: &str, xs: &[f64]) -> Result<()> {
    match xs.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(AgreementError::NonFinite {
            what: what.to_string(),
            index,
            value: xs[index],
        }),
    }
}

/// 1-based ranks, ascending, where each group of equal values gets the mean of the ranks it
/// spans (`[10, 20, 20, 5]` -> `[2, 3.5, 3.5, 1]`): the "average" (fractional) ranking of
/// `scipy.stats.rankdata`, which makes Spearman and AUC independent of the order ties are
/// listed in. `-0.0` and `0.0` are one value. Callers must reject NaN first.
pub fn average_ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&i, &j| xs[i].total_cmp(&xs[j]));
    let mut ranks = vec![0.0; xs.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && xs[order[end]] == xs[order[start]] {
            end += 1;
        }
        // Positions start..end hold 1-based ranks start+1..=end; their mean:
        let rank = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        start = end;
    }
    ranks
}

/// Pearson correlation; an error when either side has zero variance.
fn pearson(a: &[f64], b: &[f64], names: (&str, &str)) -> Result<f64> {
    let n = a.len() as f64;
    let mean_a = a.iter().sum::<f64>() / n;
    let mean_b = b.iter().sum::<f64>() / n;
    let (mut cov, mut var_a, mut var_b) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        let (dx, dy) = (x - mean_a, y - mean_b);
        cov += dx * dy;
        var_a += dx * dx;
        var_b += dy * dy;
    }
    if var_a == 0.0 {
        return Err(AgreementError::Constant(names.0.to_string()));
    }
    if var_b == 0.0 {
        return Err(AgreementError::Constant(names.1.to_string()));
    }
    // Rounding can push a perfect correlation a hair past ±1.
    Ok((cov / (var_a * var_b).sqrt()).clamp(-1.0, 1.0))
}

/// Spearman rank correlation: the Pearson correlation of the average ranks (ties share the mean
/// rank). 1 when `b` is any increasing function of `a`.
///
/// Errors when the lengths differ, the input is empty, a value is NaN, or either side
/// is constant (the correlation would be 0/0; an error rather than NaN so a table never shows
/// a silent NaN). A single entry is constant.
pub fn spearman(a: &[f64], b: &[f64]) -> Result<f64> {
    check_len("second input of spearman", a.len(), b.len())?;
    if a.is_empty() {
        return Err(AgreementError::Empty("spearman input".into()));
    }
    check_ranked("first input of spearman", a)?;
    check_ranked("second input of spearman", b)?;
    pearson(
        &average_ranks(a),
        &average_ranks(b),
        ("first input of spearman", "second input of spearman"),
    )
}

/// Area under the ROC curve of `scores` for the labels `positive`: the probability that a
/// random positive scores higher than a random negative, a tie counting 1/2. Computed as
/// Mann-Whitney U / (P·N) with average ranks, U = (sum of the positives' ranks) - P(P+1)/2,
/// which is the pairwise count above in O(n log n). 1 = every positive above every negative,
/// 0 = every positive below, 0.5 = no better than chance (or all tied).
///
/// Errors when the lengths differ, a score is NaN, or there are no positives or no
/// negatives.
pub fn roc_auc(scores: &[f64], positive: &[bool]) -> Result<f64> {
    check_len("labels of roc_auc", scores.len(), positive.len())?;
    check_ranked("scores of roc_auc", scores)?;
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 {
        return Err(AgreementError::NoPositives("roc_auc".into()));
    }
    if n_neg == 0 {
        return Err(AgreementError::NoNegatives("roc_auc".into()));
    }
    let ranks = average_ranks(scores);
    let rank_sum: f64 = ranks
        .iter()
        .zip(positive)
        .filter(|(_, &p)| p)
        .map(|(r, _)| r)
        .sum();
    let (p, n) = (n_pos as f64, n_neg as f64);
    let u = rank_sum - p * (p + 1.0) / 2.0;
    Ok(u / (p * n))
}

/// Marks the `k` entries of largest |reference| as positive (the "important edges" a method
/// should find). Ties at the k-th place go to the *lower index first*, so the set is
/// deterministic and the same for every method judged against it. `k = 0` marks nothing.
///
/// Errors when `k` exceeds the number of entries or a value is NaN.
pub fn top_k_by_abs(reference: &[f64], k: usize) -> Result<Vec<bool>> {
    check_ranked("reference of top_k_by_abs", reference)?;
    if k > reference.len() {
        return Err(AgreementError::KTooLarge {
            k,
            n: reference.len(),
        });
    }
    let mut order: Vec<usize> = (0..reference.len()).collect();
    // Stable sort by descending |x|: equal magnitudes keep ascending index order.
    order.sort_by(|&i, &j| reference[j].abs().total_cmp(&reference[i].abs()));
    let mut positive = vec![false; reference.len()];
    for &i in &order[..k] {
        positive[i] = true;
    }
    Ok(positive)
}

/// How one method agrees with the reference.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AgreementRow {
    /// The method's name, as given to [`agreement_table`].
    pub method: String,
    /// The reference's name (the same in every row of one table).
    pub reference: String,
    /// Spearman of |score| vs |reference|.
    pub spearman: f64,
    /// ROC AUC of |score| with positives = top k by |reference|, one per k in the `ks` the
    /// table was built with, in that order.
    pub auc: Vec<f64>,
}

/// One [`AgreementRow`] per method, in the order given: Spearman of |score| vs |reference|,
/// and for each k in `ks` the ROC AUC of |score| with positives = [`top_k_by_abs`]`(reference,
/// k)`. Magnitudes throughout: an edge matters whichever way it pushes the metric.
///
/// Errors (naming the method) when a method's length differs from the reference's, a value is
/// NaN, a side is constant, or some k is 0 or not below the edge count (no positives or
/// no negatives).
pub fn agreement_table(
    reference_name: &str,
    reference: &[f64],
    methods: &[(String, Vec<f64>)],
    ks: &[usize],
) -> Result<Vec<AgreementRow>> {
    if reference.is_empty() {
        return Err(AgreementError::Empty(format!("reference {reference_name}")));
    }
    check_ranked(&format!("reference {reference_name}"), reference)?;
    let ref_abs: Vec<f64> = reference.iter().map(|x| x.abs()).collect();
    let positives = ks
        .iter()
        .map(|&k| top_k_by_abs(reference, k))
        .collect::<Result<Vec<_>>>()?;
    methods
        .iter()
        .map(|(method, scores)| {
            check_len(&format!("method {method}"), reference.len(), scores.len())?;
            check_ranked(&format!("method {method}"), scores)?;
            let abs: Vec<f64> = scores.iter().map(|x| x.abs()).collect();
            let spearman = pearson(
                &average_ranks(&abs),
                &average_ranks(&ref_abs),
                (
                    &format!("|method {method}|"),
                    &format!("|reference {reference_name}|"),
                ),
            )?;
            let auc = positives
                .iter()
                .map(|pos| roc_auc(&abs, pos))
                .collect::<Result<Vec<f64>>>()
                .map_err(|e| name_method(e, method))?;
            Ok(AgreementRow {
                method: method.clone(),
                reference: reference_name.to_string(),
                spearman,
                auc,
            })
        })
        .collect()
}

/// Puts the method's name into the AUC errors (which only know "roc_auc").
fn name_method(e: AgreementError, method: &str) -> AgreementError {
    match e {
        AgreementError::NoPositives(_) => AgreementError::NoPositives(format!("method {method}")),
        AgreementError::NoNegatives(_) => AgreementError::NoNegatives(format!("method {method}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::chart::PLOT_HEIGHT;
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn average_ranks_share_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 20.0, 5.0]),
            [2.0, 3.5, 3.5, 1.0]
        );
        assert_eq!(average_ranks(&[7.0, 7.0, 7.0]), [2.0, 2.0, 2.0]);
        assert_eq!(average_ranks(&[-0.0, 0.0, 1.0]), [1.5, 1.5, 3.0]);
        assert!(average_ranks(&[]).is_empty());
    }

    #[test]
    fn spearman_hand_checked() {
        // Any increasing function gives 1, any decreasing one -1.
        let a = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(spearman(&a, &[1.0, 4.0, 9.0, 16.0]).unwrap(), 1.0);
        assert_eq!(spearman(&a, &[0.0, -1.0, -5.0, -50.0]).unwrap(), -1.0);
        // Ties: ranks [1, 2.5, 2.5, 4] vs [1, 2, 3, 4]; cov 4.5, vars 4.5 and 5 -> 3/sqrt(10).
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &a).unwrap();
        assert!(close(r, 3.0 / 10f64.sqrt(), 1e-12), "{r}");
        // Symmetric.
        assert_eq!(r, spearman(&a, &[1.0, 2.0, 2.0, 3.0]).unwrap());
    }

    #[test]
    fn spearman_errors() {
        assert!(matches!(
            spearman(&[1.0, 1.0], &[1.0, 2.0]),
            Err(AgreementError::Constant(_))
        ));
        assert!(matches!(
            spearman(&[1.0, 2.0], &[3.0, 3.0]),
            Err(AgreementError::Constant(_))
        ));
        assert!(matches!(
            spearman(&[1.0], &[1.0, 2.0]),
            Err(AgreementError::LengthMismatch { .. })
        ));
        assert!(matches!(spearman(&[], &[]), Err(AgreementError::Empty(_))));
        assert!(matches!(
            spearman(&[1.0, f64::NAN], &[1.0, 2.0]),
            Err(AgreementError::NonFinite { index: 1, .. })
        ));
    }

    #[test]
    fn roc_auc_hand_checked() {
        let pos = [true, true, false, false];
        assert_eq!(roc_auc(&[0.9, 0.8, 0.1, 0.2], &pos).unwrap(), 1.0);
        assert_eq!(roc_auc(&[0.1, 0.2, 0.9, 0.8], &pos).unwrap(), 0.0);
        // One positive at 1 vs negatives at 1 (tie: 1/2) and 0 (win: 1): 1.5 / 2.
        assert_eq!(
            roc_auc(&[1.0, 1.0, 0.0], &[true, false, false]).unwrap(),
            0.75
        );
        // Everything tied: chance.
        assert_eq!(
            roc_auc(&[3.0; 5], &[true, false, true, false, false]).unwrap(),
            0.5
        );
        // Positives 0.5 and 0.3 against negatives 0.4 and 0.1: 3 wins of 4 pairs.
        assert_eq!(
            roc_auc(&[0.5, 0.4, 0.3, 0.1], &[true, false, true, false]).unwrap(),
            0.75
        );
    }

    #[test]
    fn roc_auc_matches_pairwise_count_with_ties() {
        // Deterministic pseudo-random scores on a coarse grid (many ties).
        let mut state = 12345u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as usize
        };
        let scores: Vec<f64> = (0..200).map(|_| (next() % 13) as f64 * 0.5).collect();
        let positive: Vec<bool> = (0..200).map(|_| next() % 3 == 0).collect();
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &pi) in positive.iter().enumerate() {
            for (j, &pj) in positive.iter().enumerate() {
                if pi && !pj {
                    pairs += 1.0;
                    wins += match scores[i].total_cmp(&scores[j]) {
                        std::cmp::Ordering::Greater => 1.0,
                        std::cmp::Ordering::Equal => 0.5,
                        std::cmp::Ordering::Less => 0.0,
                    };
                }
            }
        }
        let auc = roc_auc(&scores, &positive).unwrap();
        assert!(close(auc, wins / pairs, 1e-12), "{auc} vs {}", wins / pairs);
    }

    #[test]
    fn roc_auc_errors() {
        assert!(matches!(
            roc_auc(&[1.0, 2.0], &[false, false]),
            Err(AgreementError::NoPositives(_))
        ));
        assert!(matches!(
            roc_auc(&[1.0, 2.0], &[true, true]),
            Err(AgreementError::NoNegatives(_))
        ));
        assert!(matches!(
            roc_auc(&[1.0, 2.0], &[true]),
            Err(AgreementError::LengthMismatch { .. })
        ));
        assert!(matches!(
            roc_auc(&[f64::NAN, 2.0], &[true, false]),
            Err(AgreementError::NonFinite { .. })
        ));
        // ACDC's +∞ ranks above every finite score.
        assert_eq!(roc_auc(&[f64::INFINITY, 2.0], &[true, false]), Ok(1.0));
    }

    #[test]
    fn top_k_breaks_ties_by_lower_index() {
        let r = [0.5, -3.0, 3.0, 1.0, -1.0];
        let idx = |k| -> Vec<usize> {
            let v = top_k_by_abs(&r, k).unwrap();
            (0..v.len()).filter(|&i| v[i]).collect()
        };
        assert_eq!(idx(0), Vec::<usize>::new());
        assert_eq!(idx(1), [1]); // |-3| = |3|: index 1 first
        assert_eq!(idx(2), [1, 2]);
        assert_eq!(idx(3), [1, 2, 3]); // |1| = |-1|: index 3 first
        assert_eq!(idx(4), [1, 2, 3, 4]);
        assert_eq!(idx(5), [0, 1, 2, 3, 4]);
        assert_eq!(
            top_k_by_abs(&r, 6),
            Err(AgreementError::KTooLarge { k: 6, n: 5 })
        );
    }

    #[test]
    fn edges_at_fraction_truncates_like_mib() {
        let gpt2: Vec<usize> = MIB_FRACTIONS
            .iter()
            .map(|&f| edges_at_fraction(32491, f))
            .collect();
        // Python: [int(p * 32491) for p in (.001, ..., 1)]
        assert_eq!(
            gpt2,
            [32, 64, 162, 324, 649, 1624, 3249, 6498, 16245, 32491]
        );
        let small: Vec<usize> = MIB_FRACTIONS
            .iter()
            .map(|&f| edges_at_fraction(110, f))
            .collect();
        assert_eq!(small, [0, 0, 0, 1, 2, 5, 11, 22, 55, 110]);
        // The float product as Python has it: 0.29 * 100 = 28.999999999999996.
        assert_eq!(edges_at_fraction(100, 0.29), 28);
    }

    #[test]
    #[should_panic(expected = "not in [0, 1]")]
    fn edges_at_fraction_rejects_out_of_range() {
        edges_at_fraction(10, 1.5);
    }

    #[test]
    fn cpr_cmd_hand_computed() {
        // m(N) = 2, m(∅) = 1, so m = 1.2, 1.8, 2.0 give f = 0.2, 0.8, 1.0.
        let f = mib_faithfulness(&[(0.1, 1.2), (0.5, 1.8), (1.0, 2.0)], 2.0, 1.0).unwrap();
        for (got, want) in f.per_point.iter().zip([0.2, 0.8, 1.0]) {
            assert!(close(*got, want, 1e-12));
        }
        // CPR = 0.4·(0.2+0.8)/2 + 0.5·(0.8+1.0)/2 = 0.2 + 0.45.
        assert!(close(f.cpr, 0.65, 1e-12), "{}", f.cpr);
        // CMD = 0.4·(0.8+0.2)/2 + 0.5·(0.2+0)/2 = 0.2 + 0.05.
        assert!(close(f.cmd, 0.25, 1e-12), "{}", f.cmd);
    }

    #[test]
    fn cpr_cmd_overshoot_and_decreasing_metric() {
        // A metric that falls as the circuit improves (m(N) < m(∅)); the last circuit
        // overshoots the full model: f = (m - 1) / (0 - 1) = 0, then 2.
        let f = mib_faithfulness(&[(0.0, 1.0), (1.0, -1.0)], 0.0, 1.0).unwrap();
        assert_eq!(f.per_point, [0.0, 2.0]);
        assert_eq!(f.cpr, 1.0); // 1 · (0 + 2) / 2
        assert_eq!(f.cmd, 1.0); // 1 · (|1 - 0| + |1 - 2|) / 2
    }

    #[test]
    fn mib_faithfulness_errors() {
        let pts = [(0.1, 1.0), (0.2, 2.0)];
        assert_eq!(
            mib_faithfulness(&pts, 3.0, 3.0),
            Err(AgreementError::DegenerateNormalisation(3.0))
        );
        assert_eq!(
            mib_faithfulness(&pts[..1], 2.0, 1.0),
            Err(AgreementError::TooFewPoints(1))
        );
        assert!(matches!(
            mib_faithfulness(&[(0.2, 1.0), (0.2, 2.0)], 2.0, 1.0),
            Err(AgreementError::NotAscending { index: 1, .. })
        ));
        assert!(matches!(
            mib_faithfulness(&[(0.1, 1.0), (0.2, f64::NAN)], 2.0, 1.0),
            Err(AgreementError::NonFinite { .. })
        ));
    }

    /// The golden scores of the trained 2-layer IOI model, in fixture edge order.
    fn golden(variant: &str) -> (Vec<(String, String)>, Vec<f64>) {
        let path = format!(
            "{}/../tests/fixtures/ioi-2l4h64/golden_eapig_{variant}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        let edges = json["edges"].as_array().expect("edges array");
        let names = edges
            .iter()
            .map(|e| {
                let s = |k: &str| e[k].as_str().expect("edge name").to_string();
                (s("src"), s("dest"))
            })
            .collect();
        let scores = edges
            .iter()
            .map(|e| e["score"].as_f64().expect("edge score"))
            .collect();
        (names, scores)
    }

    const KS: [usize; 3] = [5, 10, 20];

    /// The trained IOI model's agreement table against `exact`.
    fn ioi_rows() -> Vec<AgreementRow> {
        let (ref_names, exact) = golden("exact");
        assert_eq!(exact.len(), 110);
        let methods: Vec<(String, Vec<f64>)> = [
            ("EAP", "eap"),
            ("clean-corrupted", "clean_corrupted"),
            ("EAP-IG-inputs", "eap_ig_inputs"),
            ("EAP-IG-activations", "eap_ig_activations"),
        ]
        .iter()
        .map(|&(name, variant)| {
            let (names, scores) = golden(variant);
            assert_eq!(
                names, ref_names,
                "{variant} lists the edges in another order"
            );
            (name.to_string(), scores)
        })
        .collect();
        agreement_table("exact", &exact, &methods, &KS).unwrap()
    }

    #[test]
    fn reproduces_ioi_readme_table() {
        let rows = ioi_rows();
        println!("{}", format_table(&rows, &KS));
        // method, Spearman, AUC@5/10/20 as printed in the model's README.
        let want: [(&str, f64, [f64; 3]); 4] = [
            ("EAP", 0.878, [0.714, 0.756, 0.873]),
            ("clean-corrupted", 0.916, [0.886, 0.926, 0.952]),
            ("EAP-IG-inputs", 0.949, [1.000, 0.975, 0.978]),
            ("EAP-IG-activations", 0.955, [0.975, 0.949, 0.964]),
        ];
        assert_eq!(rows.len(), want.len());
        for (row, (method, spearman, aucs)) in rows.iter().zip(want) {
            assert_eq!(row.method, method);
            assert_eq!(row.reference, "exact");
            assert!(
                close(row.spearman, spearman, 0.0005),
                "{method} Spearman {} vs README {spearman}",
                row.spearman
            );
            for ((got, want), k) in row.auc.iter().zip(aucs).zip(KS) {
                assert!(
                    close(*got, want, 0.0005),
                    "{method} AUC@{k} {got} vs README {want}"
                );
            }
        }
    }

    #[test]
    fn ig_variants_rank_better_than_eap() {
        let rows = ioi_rows();
        let spearman = |m: &str| rows.iter().find(|r| r.method == m).unwrap().spearman;
        assert!(spearman("EAP-IG-inputs") > spearman("EAP"));
        assert!(spearman("EAP-IG-activations") > spearman("EAP"));
    }

    #[test]
    fn readme_table_is_about_magnitudes_not_signs() {
        // The README's AUC@10 for EAP-IG-inputs (0.975) is not what signed scores give: a
        // signed score ranks large negative (important) edges below everything.
        let (_, exact) = golden("exact");
        let (_, ig) = golden("eap_ig_inputs");
        let pos = top_k_by_abs(&exact, 10).unwrap();
        let signed = roc_auc(&ig, &pos).unwrap();
        assert!(!close(signed, 0.975, 0.0005), "signed AUC@10 {signed}");
    }

    #[test]
    fn agreement_table_errors_name_the_method() {
        let reference = [1.0, 2.0, 3.0];
        let bad = vec![("short".to_string(), vec![1.0, 2.0])];
        assert_eq!(
            agreement_table("ref", &reference, &bad, &[1]),
            Err(AgreementError::LengthMismatch {
                what: "method short".into(),
                expected: 3,
                got: 2
            })
        );
        let ok = vec![("m".to_string(), vec![1.0, 3.0, 2.0])];
        assert!(matches!(
            agreement_table("ref", &reference, &ok, &[3]),
            Err(AgreementError::NoNegatives(m)) if m == "method m"
        ));
        assert!(matches!(
            agreement_table("ref", &reference, &ok, &[4]),
            Err(AgreementError::KTooLarge { k: 4, n: 3 })
        ));
    }

    #[test]
    fn format_table_aligns_three_decimals() {
        let rows = ioi_rows();
        let text = format_table(&rows, &KS);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3 + rows.len(), "{text}");
        assert!(lines[0].contains("|exact|"));
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["method", "Spearman", "AUC@5", "AUC@10", "AUC@20"]
        );
        assert_eq!(
            lines[3].split_whitespace().collect::<Vec<_>>(),
            ["EAP", "0.878", "0.714", "0.756", "0.873"]
        );
        // Right-aligned numbers: every row ends at the same column.
        let ends: Vec<usize> = lines[1..].iter().map(|l| l.chars().count()).collect();
        assert!(ends.iter().all(|&e| e == ends[0]), "{text}");
    }

    #[test]
    fn svg_bars_carry_their_numbers() {
        let rows = ioi_rows();
        let svg = agreement_svg(&rows, &KS);
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let bars: Vec<_> = doc
            .descendants()
            .filter(|n| n.attribute("class") == Some("bar"))
            .collect();
        assert_eq!(bars.len(), rows.len() * (1 + KS.len()));
        for row in &rows {
            let value = |metric: &str| -> f64 {
                bars.iter()
                    .find(|b| {
                        b.attribute("data-method") == Some(&row.method)
                            && b.attribute("data-metric") == Some(metric)
                    })
                    .and_then(|b| b.attribute("data-value"))
                    .expect("bar")
                    .parse()
                    .unwrap()
            };
            assert_eq!(value("spearman"), row.spearman);
            for (k, auc) in KS.iter().zip(&row.auc) {
                assert_eq!(value(&format!("auc@{k}")), *auc);
            }
        }
        // Bar heights are proportional to the value on a 0..1 axis.
        let h = |b: &roxmltree::Node| -> f64 { b.attribute("height").unwrap().parse().unwrap() };
        let v =
            |b: &roxmltree::Node| -> f64 { b.attribute("data-value").unwrap().parse().unwrap() };
        for b in &bars {
            assert!(close(h(b), v(b) * PLOT_HEIGHT, 0.051));
        }
        assert!(svg.contains(r#"font-family="DejaVu Sans, sans-serif""#));
        assert!(!svg.contains("href"), "self-contained");
    }

    #[test]
    fn svg_escapes_names_and_clamps_negative_values() {
        let rows = vec![AgreementRow {
            method: "a<b & \"c\"".into(),
            reference: "ex<act".into(),
            spearman: -0.25,
            auc: vec![0.5],
        }];
        let svg = agreement_svg(&rows, &[3]);
        let doc = roxmltree::Document::parse(&svg).expect("well-formed SVG");
        let bar = doc
            .descendants()
            .find(|n| n.attribute("data-metric") == Some("spearman"))
            .unwrap();
        assert_eq!(bar.attribute("data-method"), Some("a<b & \"c\""));
        assert_eq!(bar.attribute("data-value"), Some("-0.25"));
        assert_eq!(bar.attribute("height"), Some("0"));
        // An empty table is still a valid picture.
        roxmltree::Document::parse(&agreement_svg(&[], &[5])).unwrap();
    }
}
