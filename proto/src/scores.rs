//! The result of an attribution: the scores file every role writes and reads. The reduction
//! that produces the scores is `units::Accumulator`.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model_config::ModelConfig;
use crate::settings::AttributionSettings;
use crate::topology::GraphShape;
use crate::v1;

/// Final scores and the mean clean logit difference of the summed units.
#[derive(Debug, Clone, PartialEq)]
pub struct Reduced {
    pub scores: Vec<f64>,
    pub clean_logit_diff: f64,
    pub n_prompts: usize,
}

impl Reduced {
    /// The scores as `settings.method` reports them: AutoCircuit's sums as they are, EAP-IG's
    /// divided by the prompt count and its per-prompt divisor (steps, runs). One division of
    /// the exactly rounded sum, so still the same bits for any worker count.
    ///
    /// ACDC's sums hold, per τ and edge, 1 where that τ removed the edge: each edge's score
    /// becomes the smallest τ that removed it, +∞ if none did (AutoCircuit's scores).
    pub fn normalised(mut self, settings: &AttributionSettings, n_layers: usize) -> Self {
        if let Some(per_prompt) = settings.method.per_prompt_divisor(n_layers) {
            let divisor = per_prompt * self.n_prompts.max(1) as f64;
            self.scores.iter_mut().for_each(|s| *s /= divisor);
        }
        let taus = settings.method.taus();
        if !taus.is_empty() {
            let n_edges = self.scores.len() / taus.len();
            let removed_at = |e: usize| {
                taus.iter()
                    .enumerate()
                    .filter(|&(t, _)| self.scores[t * n_edges + e] != 0.0)
                    .map(|(_, &tau)| tau)
                    .fold(f64::INFINITY, f64::min)
            };
            self.scores = (0..n_edges).map(removed_at).collect();
        }
        self
    }
}

/// One edge's prune score, named as AutoCircuit names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EdgeScore {
    pub src: String,
    pub dest: String,
    /// Token position for token-specific graphs, else `null`.
    pub seq: Option<usize>,
    /// Finite, except ACDC's `"Infinity"` for an edge no τ removed.
    #[serde(with = "score_json")]
    pub score: f64,
}

/// JSON has no infinity (serde_json would write `null`), so a non-finite score is written as
/// the string `"Infinity"`, `"-Infinity"` or `"NaN"` and read back from it
/// (`#[serde(with = "attrib_proto::scores::score_json")]`).
pub mod score_json {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        match *x {
            x if x.is_finite() => s.serialize_f64(x),
            x if x.is_nan() => s.serialize_str("NaN"),
            x if x > 0.0 => s.serialize_str("Infinity"),
            _ => s.serialize_str("-Infinity"),
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Score {
        Number(f64),
        Text(String),
    }

    /// For `Option<f64>` fields: `null` stays `None`.
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(x: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
            match x {
                Some(x) => super::serialize(x, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
            #[derive(Deserialize)]
            struct Wrapped(#[serde(with = "super")] f64);
            Ok(Option::<Wrapped>::deserialize(d)?.map(|Wrapped(x)| x))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        match Score::deserialize(d)? {
            Score::Number(x) => Ok(x),
            Score::Text(t) => match t.as_str() {
                "Infinity" => Ok(f64::INFINITY),
                "-Infinity" => Ok(f64::NEG_INFINITY),
                "NaN" => Ok(f64::NAN),
                _ => Err(serde::de::Error::custom(format!(
                    "score {t:?} is not a number, \"Infinity\", \"-Infinity\" or \"NaN\""
                ))),
            },
        }
    }
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
    /// K: batches per work unit (one pass, one f32 sum). Scores are the same bits for the
    /// same K anywhere; files from before units existed read as 1.
    #[serde(default = "one")]
    pub batches_per_unit: usize,
}

fn one() -> usize {
    1
}

impl DataSettings {
    /// The record of a job's data options, for the prompt `files` it read, prompts `width`
    /// tokens wide and (token-specific edges) their position labels.
    pub fn new(
        data: &v1::DataOptions,
        files: Vec<String>,
        width: usize,
        seq_labels: Option<Vec<String>>,
    ) -> Self {
        DataSettings {
            files,
            batch_size: data.batch_size as usize,
            train_size: data.train_size as usize,
            test_size: data.test_size as usize,
            prepend_bos: data.prepend_bos,
            seed: data.seed,
            width,
            seq_labels,
            batches_per_unit: data.batches_per_unit.max(1) as usize,
        }
    }

    /// The data options these scores were made with (to choose the same prompts again).
    /// Sizes beyond the wire's u32 saturate, so an absurd file is refused for wanting more
    /// prompts than there are, not read as a small one.
    pub fn data_options(&self) -> v1::DataOptions {
        let wire = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        v1::DataOptions {
            batch_size: wire(self.batch_size),
            train_size: wire(self.train_size),
            test_size: wire(self.test_size),
            prepend_bos: self.prepend_bos,
            seed: self.seed,
            batches_per_unit: wire(self.batches_per_unit),
            edges_per_unit: 0,
        }
    }
}

impl ModelRecord {
    pub fn new(path: &Path, cfg: &ModelConfig) -> Self {
        ModelRecord {
            path: path.display().to_string(),
            n_layers: cfg.n_layers,
            n_heads: cfg.n_heads,
            d_model: cfg.d_model,
        }
    }
}

impl ScoresMetadata {
    /// The one place a scores file's header is made: by `attrib-worker attribute` and by the
    /// coordinator for each dataset and the combination.
    pub fn new(
        graph: &GraphShape,
        reduced: &Reduced,
        settings: &AttributionSettings,
        data: DataSettings,
        model: ModelRecord,
    ) -> Self {
        ScoresMetadata {
            n_edges: graph.n_edges(),
            clean_logit_diff: reduced.clean_logit_diff,
            settings: settings.clone(),
            data,
            model,
            device_class: String::new(),
        }
    }
}

/// `scores.json` without its edges: what the cluster sends ahead of the score vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoresMetadata {
    pub n_edges: usize,
    /// Mean over the prompts attributed (the train prompts; ACDC's first batch) of
    /// logit(answer) − logit(wrong answer), unpatched model.
    pub clean_logit_diff: f64,
    pub settings: AttributionSettings,
    pub data: DataSettings,
    pub model: ModelRecord,
    /// The device class that computed every unit (`WorkerHello.device_class`): scores of one
    /// job on one class are the same bits on any cluster. Absent from files made before
    /// classes existed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_class: String,
}

/// `scores.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoresFile {
    pub n_edges: usize,
    /// Mean over the prompts attributed (the train prompts; ACDC's first batch) of
    /// logit(answer) − logit(wrong answer), unpatched model.
    pub clean_logit_diff: f64,
    pub settings: AttributionSettings,
    pub data: DataSettings,
    pub model: ModelRecord,
    /// See `ScoresMetadata::device_class`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub device_class: String,
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
            device_class: meta.device_class,
            edges,
        }
    }

    /// The graph these scores belong to.
    pub fn graph(&self) -> GraphShape {
        GraphShape::new(
            self.model.n_layers,
            self.model.n_heads,
            &self.settings,
            self.data.width,
        )
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

    /// What `attrib scores` and `attrib-worker attribute` print: the edge count, the clean
    /// logit difference and the `top` edges by |score|.
    pub fn summary(&self, top: usize) -> String {
        let mut text = format!(
            "{} edges, clean logit diff {:.4}\ntop {} edges by |score|:\n",
            self.n_edges,
            self.clean_logit_diff,
            top.min(self.n_edges)
        );
        for e in self.top(top) {
            let seq = e.seq.map(|s| format!(" @{s}")).unwrap_or_default();
            text += &format!("  {:>12.5}  {} -> {}{}\n", e.score, e.src, e.dest, seq);
        }
        text
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
mod infinity_tests {
    use super::*;
    use crate::faithfulness::CurvePoint;

    #[test]
    fn acdc_infinities_survive_json() {
        let e = EdgeScore {
            src: "A0.2".into(),
            dest: "Resid End".into(),
            seq: None,
            score: f64::INFINITY,
        };
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains(r#""score":"Infinity""#), "{text}");
        assert_eq!(serde_json::from_str::<EdgeScore>(&text).unwrap(), e);
        let finite = r#"{"src":"a","dest":"b","seq":null,"score":0.5}"#;
        assert_eq!(
            serde_json::from_str::<EdgeScore>(finite).unwrap().score,
            0.5
        );
        let bad = r#"{"src":"a","dest":"b","seq":null,"score":"lots"}"#;
        let err = serde_json::from_str::<EdgeScore>(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"lots\""), "{err}");
        for threshold in [Some(f64::INFINITY), Some(0.25), None] {
            let p = CurvePoint {
                requested_edges: 12,
                n_edges: 12,
                threshold,
                mean_logit_diff: 1.0,
                fraction_of_gap: 0.5,
            };
            let text = serde_json::to_string(&p).unwrap();
            assert_eq!(
                serde_json::from_str::<CurvePoint>(&text).unwrap(),
                p,
                "{text}"
            );
        }
    }
}
