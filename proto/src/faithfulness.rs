//! Circuit faithfulness (spec 6, AutoCircuit's `edge_counts_util` + `run_circuits` with tree
//! patching): which circuits to evaluate for a score vector, and the curve file every role
//! writes and reads. Pure arithmetic on scores; the forward passes live in the worker.

use serde::{Deserialize, Serialize};

/// The edge counts evaluated: the requested ones capped at `n_edges`, plus 0 and `n_edges`
/// (AutoCircuit adds both when the list has more than two entries; attrib always adds them,
/// because they anchor the fraction of the gap), sorted and deduplicated.
pub fn edge_counts(requested: &[usize], n_edges: usize) -> Vec<usize> {
    let mut counts: Vec<usize> = requested.iter().map(|&k| k.min(n_edges)).collect();
    counts.push(0);
    counts.push(n_edges);
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// AutoCircuit's default LOGARITHMIC counts: every `n` in `1..n_edges−1` that is a multiple of
/// its own power of ten (1..9, 10, 20, …, 90, 100, 200, …).
pub fn logarithmic_counts(n_edges: usize) -> Vec<usize> {
    (1..n_edges.saturating_sub(1))
        .filter(|&n| n % 10usize.pow(n.ilog10()) == 0)
        .collect()
}

/// One circuit: the edges with `|score| ≥ threshold`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circuit {
    /// The edge count asked for.
    pub requested: usize,
    /// `None` for the empty circuit (AutoCircuit's `+∞`).
    pub threshold: Option<f64>,
    /// Edges actually kept: more than `requested` when scores tie at the threshold.
    pub n_edges: usize,
}

impl Circuit {
    /// Whether an edge of this score is in the circuit (kept clean, mask 0).
    pub fn keeps(&self, score: f64) -> bool {
        self.threshold.is_some_and(|t| score.abs() >= t)
    }
}

/// Spec 6.1: the threshold of `k` is the k-th largest |score|; the circuit is every edge at or
/// above it, ties included.
pub fn circuits(scores: &[f64], counts: &[usize]) -> Vec<Circuit> {
    let mut desc: Vec<f64> = scores.iter().map(|s| s.abs()).collect();
    desc.sort_by(|a, b| b.total_cmp(a));
    counts
        .iter()
        .map(|&k| {
            if k == 0 {
                return Circuit {
                    requested: 0,
                    threshold: None,
                    n_edges: 0,
                };
            }
            let t = desc[k.min(desc.len()) - 1];
            Circuit {
                requested: k,
                threshold: Some(t),
                n_edges: desc.partition_point(|&x| x >= t),
            }
        })
        .collect()
}

/// One point of the curve.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub requested_edges: usize,
    /// Edges kept (ties at the threshold included).
    pub n_edges: usize,
    /// Smallest kept |score|; `null` for the empty circuit.
    #[serde(default, with = "crate::scores::score_json::option")]
    pub threshold: Option<f64>,
    /// Mean over the test prompts of the logit difference, the circuit kept clean and every
    /// other edge patched with the corrupt prompt's activations (AutoCircuit's mean of batch
    /// means: test batches are all full).
    pub mean_logit_diff: f64,
    /// `(mean − corrupt) / (clean − corrupt)`: 1 keeps the whole clean behaviour, 0 none.
    pub fraction_of_gap: f64,
}

/// `curve.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaithfulnessCurve {
    /// The attribution job or file whose scores chose the circuits.
    pub scores_from: String,
    /// Always `"test"`: circuits are chosen on train prompts and judged on held-out ones.
    pub split: String,
    pub patch: String,
    pub n_prompts: usize,
    pub total_edges: usize,
    /// Unpatched model on the clean test prompts.
    pub clean_logit_diff: f64,
    /// Unpatched model on the corrupt test prompts.
    pub corrupt_logit_diff: f64,
    pub points: Vec<CurvePoint>,
}

impl std::fmt::Display for FaithfulnessCurve {
    /// The table `attrib faithfulness` and `attrib-worker faithfulness` print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "circuits of {} on {} test prompts: clean logit diff {:.4}, corrupt {:.4}",
            self.scores_from, self.n_prompts, self.clean_logit_diff, self.corrupt_logit_diff
        )?;
        writeln!(
            f,
            "{:>8} {:>8} {:>12} {:>9}",
            "edges", "kept", "logit diff", "of gap"
        )?;
        for p in &self.points {
            writeln!(
                f,
                "{:>8} {:>8} {:>12.5} {:>8.1}%",
                p.requested_edges,
                p.n_edges,
                p.mean_logit_diff,
                100.0 * p.fraction_of_gap
            )?;
        }
        Ok(())
    }
}

/// Parses `10,100,1000` into edge counts.
pub fn parse_edge_counts(text: &str) -> Result<Vec<usize>, String> {
    text.split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("edge count {s:?} is not a non-negative integer"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_add_both_ends_and_cap() {
        assert_eq!(edge_counts(&[5, 1, 500], 110), vec![0, 1, 5, 110]);
        assert_eq!(edge_counts(&[], 3), vec![0, 3]);
    }

    #[test]
    fn logarithmic_counts_follow_autocircuit() {
        let c = logarithmic_counts(110);
        assert_eq!(&c[..11], &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 20]);
        assert_eq!(&c[c.len() - 2..], &[90, 100]);
        assert_eq!(logarithmic_counts(32_491).len(), 39);
    }

    #[test]
    fn ties_at_the_threshold_are_all_kept() {
        let s = [0.5, -0.2, 0.2, 0.0, -0.9];
        let c = circuits(&s, &[0, 1, 2, 4, 5]);
        assert_eq!(c[0].threshold, None);
        assert_eq!((c[1].threshold, c[1].n_edges), (Some(0.9), 1));
        assert_eq!((c[2].threshold, c[2].n_edges), (Some(0.5), 2));
        assert_eq!((c[3].threshold, c[3].n_edges), (Some(0.2), 4)); // two tie at 0.2
        assert_eq!((c[4].threshold, c[4].n_edges), (Some(0.0), 5));
        assert!(c[4].keeps(0.0) && !c[0].keeps(1e9) && !c[2].keeps(0.2));
    }

    #[test]
    fn edge_count_lists_parse_or_explain() {
        assert_eq!(
            parse_edge_counts("10, 100,1000").unwrap(),
            vec![10, 100, 1000]
        );
        assert!(parse_edge_counts("10,x").unwrap_err().contains("\"x\""));
    }
}
