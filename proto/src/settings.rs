//! What an attribution computes: AutoCircuit's `mask_gradient_prune_scores` arguments plus
//! the graph options. Plain data shared by every role; defaults are AutoCircuit's quickstart.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Applied to the last-position logits before the answer function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GradFunction {
    Logit,
    Prob,
    Logprob,
    /// `exp(z) / stopgrad(Σ exp(z))`: the value of `prob`, the gradient of its numerator only.
    LogitExp,
}

/// Reduces the answer tokens' values to the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnswerFunction {
    /// Mean over the batch of (mean answer value − mean wrong-answer value).
    AvgDiff,
    /// Mean over the batch of the mean answer value.
    AvgVal,
}

/// Where the gradient is taken: every mask at one value, or the integrated-gradients points
/// `0, 1/N, …, 1` (N + 1 points, summed, as AutoCircuit does).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaskPoints {
    Value(f64),
    Integrated(usize),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown {what} {got:?}; expected one of {expected}")]
    UnknownName {
        what: &'static str,
        got: String,
        expected: &'static str,
    },
    #[error("give either a mask value or a number of integrated-gradient samples (at least 1), not both")]
    MaskPoints,
}

impl MaskPoints {
    pub fn from_options(
        mask_val: Option<f64>,
        integrated: Option<usize>,
    ) -> Result<Self, SettingsError> {
        match (mask_val, integrated) {
            (Some(v), None) if v.is_finite() => Ok(MaskPoints::Value(v)),
            (None, Some(n)) if n > 0 => Ok(MaskPoints::Integrated(n)),
            (None, None) => Ok(MaskPoints::Value(0.0)),
            _ => Err(SettingsError::MaskPoints),
        }
    }

    pub fn alphas(&self) -> Vec<f64> {
        match *self {
            MaskPoints::Value(v) => vec![v],
            MaskPoints::Integrated(n) => (0..=n).map(|k| k as f64 / n as f64).collect(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttributionSettings {
    pub grad_function: GradFunction,
    pub answer_function: AnswerFunction,
    pub points: MaskPoints,
    pub separate_qkv: bool,
    /// One edge per token position (AutoCircuit's `seq_len`).
    pub token_positions: bool,
}

impl Default for AttributionSettings {
    fn default() -> Self {
        AttributionSettings {
            grad_function: GradFunction::Logit,
            answer_function: AnswerFunction::AvgDiff,
            points: MaskPoints::Value(0.0),
            separate_qkv: true,
            token_positions: false,
        }
    }
}

macro_rules! named_enum {
    ($ty:ident, $what:literal, $($variant:ident = $name:literal),+) => {
        impl $ty {
            pub fn name(self) -> &'static str {
                match self { $($ty::$variant => $name),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
        impl FromStr for $ty {
            type Err = SettingsError;
            fn from_str(s: &str) -> Result<Self, SettingsError> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(SettingsError::UnknownName {
                        what: $what,
                        got: s.to_string(),
                        expected: concat!($($name, " "),+),
                    }),
                }
            }
        }
    };
}

named_enum!(
    GradFunction,
    "grad function",
    Logit = "logit",
    Prob = "prob",
    Logprob = "logprob",
    LogitExp = "logit_exp"
);
named_enum!(
    AnswerFunction,
    "answer function",
    AvgDiff = "avg_diff",
    AvgVal = "avg_val"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_explained() {
        assert_eq!(
            "logit_exp".parse::<GradFunction>().unwrap(),
            GradFunction::LogitExp
        );
        assert_eq!(AnswerFunction::AvgVal.to_string(), "avg_val");
        let e = "mse".parse::<AnswerFunction>().unwrap_err().to_string();
        assert!(e.contains("avg_diff") && e.contains("\"mse\""), "{e}");
    }

    #[test]
    fn integrated_gradient_points_include_both_ends() {
        assert_eq!(
            MaskPoints::Integrated(5).alphas(),
            vec![0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
        );
        assert_eq!(
            MaskPoints::from_options(None, None).unwrap(),
            MaskPoints::Value(0.0)
        );
        assert!(MaskPoints::from_options(Some(0.5), Some(3)).is_err());
        assert!(MaskPoints::from_options(None, Some(0)).is_err());
    }
}
