//! Reading the golden JSON files the oracle scripts wrote (`tests/fixtures/oracle/`): fields
//! by JSON pointer with errors naming the file and the field, the golden settings as ours,
//! and the quickstart job they were all made with. No tensors, no comparisons.

use std::path::{Path, PathBuf};

use attrib_proto::job_spec::quickstart_data_options;
use attrib_proto::{v1, AnswerFunction, AttributionSettings, GradFunction, MaskPoints, ScoresFile};
use serde_json::Value;

use super::Failure;
use crate::job::AttributeJob;

/// One golden file, read.
pub struct Golden {
    pub path: PathBuf,
    pub value: Value,
}

impl Golden {
    pub fn read(path: &Path) -> Result<Golden, Failure> {
        let bad = |reason: String| Failure::BadGolden {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        // Python's json writes bare `Infinity` (ACDC's never-removed edges), which serde_json
        // does not read.
        let text = text.replace(": Infinity", ": \"Infinity\"");
        let value = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
        Ok(Golden {
            path: path.to_path_buf(),
            value,
        })
    }

    /// A field that must be there, by JSON pointer (`/settings/taus`).
    pub fn at(&self, pointer: &str) -> Result<&Value, Failure> {
        self.value
            .pointer(pointer)
            .ok_or_else(|| self.bad(format!("no field {pointer}")))
    }

    pub fn bad(&self, reason: String) -> Failure {
        Failure::BadGolden {
            path: self.path.clone(),
            reason,
        }
    }

    pub fn f64_at(&self, pointer: &str) -> Result<f64, Failure> {
        as_f64(self.at(pointer)?).ok_or_else(|| self.bad(format!("{pointer} is not a number")))
    }

    pub fn array_at(&self, pointer: &str) -> Result<&Vec<Value>, Failure> {
        self.at(pointer)?
            .as_array()
            .ok_or_else(|| self.bad(format!("{pointer} is not a list")))
    }

    pub fn f64s_at(&self, pointer: &str) -> Result<Vec<f64>, Failure> {
        self.array_at(pointer)?
            .iter()
            .map(|v| as_f64(v).ok_or_else(|| self.bad(format!("{pointer} holds a non-number"))))
            .collect()
    }

    /// The golden settings as ours (absent fields: AutoCircuit's defaults).
    pub fn settings(&self) -> Result<AttributionSettings, Failure> {
        let s = self.at("/settings")?;
        let bad = |what: &str| self.bad(format!("settings: bad {what}"));
        Ok(AttributionSettings {
            method: Default::default(),
            grad_function: s["grad_function"]
                .as_str()
                .unwrap_or("logit")
                .parse::<GradFunction>()
                .map_err(|_| bad("grad_function"))?,
            answer_function: s["answer_function"]
                .as_str()
                .unwrap_or("avg_diff")
                .parse::<AnswerFunction>()
                .map_err(|_| bad("answer_function"))?,
            points: MaskPoints::from_options(
                s["mask_val"].as_f64(),
                s["integrated_grad_samples"].as_u64().map(|n| n as usize),
            )
            .map_err(|_| bad("mask_val / integrated_grad_samples"))?,
            separate_qkv: s["separate_qkv"]
                .as_bool()
                .ok_or_else(|| bad("separate_qkv"))?,
            token_positions: s["tokenwise"].as_bool().ok_or_else(|| bad("tokenwise"))?,
        })
    }

    /// The golden file's edge scores in its (= our) flat edge order, checking every edge's
    /// name on the way.
    pub fn scores_checked(&self, ours: &ScoresFile) -> Result<Vec<f64>, Failure> {
        let edges = self.array_at("/edges")?;
        if edges.len() != ours.edges.len() {
            return Err(Failure::Differs(format!(
                "{} edges, the golden has {}",
                ours.edges.len(),
                edges.len()
            )));
        }
        let mut scores = Vec::with_capacity(edges.len());
        for (i, (e, o)) in edges.iter().zip(&ours.edges).enumerate() {
            let seq = e["seq"].as_u64().map(|s| s as usize);
            if e["src"].as_str() != Some(&o.src) || e["dest"].as_str() != Some(&o.dest) {
                return Err(Failure::Differs(format!(
                    "edge {i} is {} -> {}, the golden's is {} -> {}",
                    o.src, o.dest, e["src"], e["dest"]
                )));
            }
            if seq != o.seq {
                return Err(Failure::Differs(format!(
                    "edge {i} ({} -> {}) is at position {:?}, the golden's at {seq:?}",
                    o.src, o.dest, o.seq
                )));
            }
            scores
                .push(as_f64(&e["score"]).ok_or_else(|| self.bad(format!("edge {i}: no score")))?);
        }
        Ok(scores)
    }
}

/// A number, reading the `"Infinity"` that `Golden::read` put for Python's bare one.
pub fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::String(s) if s == "Infinity" => Some(f64::INFINITY),
        v => v.as_f64(),
    }
}

/// The AutoCircuit quickstart job the goldens were made with, on `model_dir`: two batches
/// per unit so that the unit sums are exercised too.
pub fn quickstart_job(
    model_dir: PathBuf,
    dataset: PathBuf,
    settings: AttributionSettings,
) -> AttributeJob {
    AttributeJob {
        model_dir,
        datasets: vec![dataset],
        data: v1::DataOptions {
            batches_per_unit: 2,
            ..quickstart_data_options()
        },
        settings,
    }
}
