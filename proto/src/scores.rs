//! The result of an attribution: the scores file every role writes and reads, and the one
//! reduction of per-batch gradient sums that makes results independent of who computed them.

use serde::{Deserialize, Serialize};

use crate::settings::AttributionSettings;

/// Sums per-batch score vectors in batch order, in f64. Every path that produces final
/// scores (one process or a cluster) reduces through here, so they agree bit for bit.
pub fn sum_in_batch_order<'a>(batches: impl IntoIterator<Item = (usize, &'a [f64])>) -> Vec<f64> {
    let mut sorted: Vec<(usize, &[f64])> = batches.into_iter().collect();
    sorted.sort_by_key(|&(i, _)| i);
    let mut total = vec![0.0; sorted.first().map_or(0, |(_, s)| s.len())];
    for (_, s) in sorted {
        assert_eq!(
            s.len(),
            total.len(),
            "score vectors of one job have one length"
        );
        for (t, x) in total.iter_mut().zip(s) {
            *t += x;
        }
    }
    total
}

/// One edge's prune score, named as AutoCircuit names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeScore {
    pub src: String,
    pub dest: String,
    /// Token position for token-specific graphs, else `null`.
    pub seq: Option<usize>,
    pub score: f64,
}

/// How the prompts were chosen and batched.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataSettings {
    pub files: Vec<String>,
    pub batch_size: usize,
    pub train_size: usize,
    pub test_size: usize,
    pub prepend_bos: bool,
    pub seed: u64,
    /// Token ids per prompt (with BOS and padding).
    pub width: usize,
    pub seq_labels: Option<Vec<String>>,
}

/// `scores.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoresFile {
    pub n_edges: usize,
    /// Mean over the train prompts of logit(answer) − logit(wrong answer), unpatched model.
    pub clean_logit_diff: f64,
    pub settings: AttributionSettings,
    pub data: DataSettings,
    pub model: ModelRecord,
    pub edges: Vec<EdgeScore>,
}

/// Which model produced the scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub path: String,
    pub n_layers: usize,
    pub n_heads: usize,
    pub d_model: usize,
}

impl ScoresFile {
    /// Edges sorted by |score|, largest first (ties keep file order).
    pub fn top(&self, k: usize) -> Vec<&EdgeScore> {
        let mut v: Vec<&EdgeScore> = self.edges.iter().collect();
        v.sort_by(|a, b| b.score.abs().total_cmp(&a.score.abs()));
        v.truncate(k);
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduction_is_independent_of_arrival_order() {
        let a = [0.1, 1e16];
        let b = [0.2, -1e16];
        let c = [0.3, 1.0];
        let one = sum_in_batch_order([(0, &a[..]), (1, &b[..]), (2, &c[..])]);
        let two = sum_in_batch_order([(2, &c[..]), (0, &a[..]), (1, &b[..])]);
        assert_eq!(one, two);
        assert_eq!(one[1], 1.0); // (1e16 − 1e16) + 1, in batch order
    }
}
