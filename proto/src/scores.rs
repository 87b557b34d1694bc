//! The result of an attribution: the scores file every role writes and reads, and the one
//! reduction of per-batch gradient sums that makes results independent of who computed them.

use serde::{Deserialize, Serialize};

use crate::settings::AttributionSettings;
use crate::topology::GraphShape;

/// Sums per-batch score vectors in batch order, in f64. Every path that produces final
/// scores (one process or a cluster) reduces through `BatchOrderSum`, so they agree bit for bit.
pub fn sum_in_batch_order<'a>(batches: impl IntoIterator<Item = (usize, &'a [f64])>) -> Vec<f64> {
    let mut sorted: Vec<(usize, &[f64])> = batches.into_iter().collect();
    sorted.sort_by_key(|&(i, _)| i);
    let mut sum = BatchOrderSum::default();
    for (i, s) in sorted {
        sum.add(i, s, 0.0, 0);
    }
    sum.finish().scores
}

/// Final scores and the mean clean logit difference of the summed batches.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduced {
    pub scores: Vec<f64>,
    pub clean_logit_diff: f64,
    pub n_prompts: usize,
}

/// The one reduction, fed one batch at a time so results too large to hold at once can be
/// streamed from a store: batches must arrive in increasing batch order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchOrderSum {
    scores: Vec<f64>,
    clean_logit_diff_sum: f64,
    n_prompts: usize,
    last: Option<usize>,
}

impl BatchOrderSum {
    /// Adds batch `index`: its per-edge gradient sums, the sum of its prompts' clean logit
    /// differences, and its prompt count.
    pub fn add(
        &mut self,
        index: usize,
        scores: &[f64],
        clean_logit_diff_sum: f64,
        n_prompts: usize,
    ) {
        assert!(
            self.last.is_none_or(|l| l < index),
            "batches are added in increasing order"
        );
        if self.last.is_none() {
            self.scores = vec![0.0; scores.len()];
        }
        assert_eq!(
            scores.len(),
            self.scores.len(),
            "score vectors of one job have one length"
        );
        for (t, x) in self.scores.iter_mut().zip(scores) {
            *t += x;
        }
        self.clean_logit_diff_sum += clean_logit_diff_sum;
        self.n_prompts += n_prompts;
        self.last = Some(index);
    }

    pub fn finish(self) -> Reduced {
        Reduced {
            scores: self.scores,
            clean_logit_diff: self.clean_logit_diff_sum / self.n_prompts.max(1) as f64,
            n_prompts: self.n_prompts,
        }
    }
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

/// `scores.json` without its edges: what the cluster sends ahead of the score vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoresMetadata {
    pub n_edges: usize,
    /// Mean over the train prompts of logit(answer) − logit(wrong answer), unpatched model.
    pub clean_logit_diff: f64,
    pub settings: AttributionSettings,
    pub data: DataSettings,
    pub model: ModelRecord,
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
    /// Names a flat score vector (in `graph`'s edge order) and joins it to its metadata.
    pub fn from_parts(meta: ScoresMetadata, graph: &GraphShape, scores: &[f64]) -> Self {
        let edges = graph
            .named_edges()
            .into_iter()
            .zip(scores)
            .map(|(e, &score)| EdgeScore {
                src: e.src,
                dest: e.dest,
                seq: e.seq,
                score,
            })
            .collect::<Vec<_>>();
        ScoresFile {
            n_edges: edges.len(),
            clean_logit_diff: meta.clean_logit_diff,
            settings: meta.settings,
            data: meta.data,
            model: meta.model,
            edges,
        }
    }

    /// The graph these scores belong to.
    pub fn graph(&self) -> GraphShape {
        GraphShape {
            n_layers: self.model.n_layers,
            n_heads: self.model.n_heads,
            separate_qkv: self.settings.separate_qkv,
            seq_len: self.settings.token_positions.then_some(self.data.width),
        }
    }

    /// The flat score vector in graph order, after checking that every edge is where the
    /// graph puts it (a file edited or produced elsewhere must not be silently misread).
    pub fn flat_scores(&self) -> Result<Vec<f64>, String> {
        let graph = self.graph();
        let names = graph.named_edges();
        if names.len() != self.edges.len() {
            return Err(format!(
                "the scores file has {} edges but its graph ({} layers, {} heads{}) has {}",
                self.edges.len(),
                graph.n_layers,
                graph.n_heads,
                graph
                    .seq_len
                    .map(|t| format!(", {t} positions"))
                    .unwrap_or_default(),
                names.len()
            ));
        }
        for (i, (n, e)) in names.iter().zip(&self.edges).enumerate() {
            if n.src != e.src || n.dest != e.dest || n.seq != e.seq {
                return Err(format!(
                    "edge {i} of the scores file is {}->{} but the graph expects {}->{}",
                    e.src, e.dest, n.src, n.dest
                ));
            }
        }
        Ok(self.edges.iter().map(|e| e.score).collect())
    }

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
        let mut streamed = BatchOrderSum::default();
        for (i, s) in [(0, &a), (1, &b), (2, &c)] {
            streamed.add(i, s, 1.0, 2);
        }
        let r = streamed.finish();
        assert_eq!(r.scores, one);
        assert_eq!((r.clean_logit_diff, r.n_prompts), (0.5, 6));
    }
}
