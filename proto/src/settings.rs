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

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettingsError {
    #[error("unknown {what} {got:?}; expected one of {expected}")]
    UnknownName {
        what: &'static str,
        got: String,
        expected: &'static str,
    },
    #[error("give either a mask value or a number of integrated-gradient samples (at least 1), not both")]
    MaskPoints,
    #[error("method {method} needs --steps of at least 1 (EAP-IG's notebooks use 5)")]
    Steps { method: String },
    #[error("method {method} takes no {what}")]
    NotTaken { method: String, what: &'static str },
    #[error("ACDC needs 1 to {MAX_ACDC_TAUS} taus, each finite and above 0, not {got}")]
    Taus { got: String },
    #[error("--mask-val {got} is outside the accepted range: a finite number from 0 (clean) to 1 (corrupt)")]
    MaskVal { got: f64 },
    #[error("method {method} takes no mask value or integrated-gradient samples: its own points are fixed by the method (use --steps for the IG variants)")]
    PointsNotTaken { method: String },
}

/// Masks mix each edge's clean (0) and corrupt (1) activation; a value outside 0..=1
/// extrapolates past both runs, which no method means, and NaN or ±∞ poison every score.
pub const MASK_VAL_RANGE: std::ops::RangeInclusive<f64> = 0.0..=1.0;

/// `v` when it is a mask value a job may take the gradient at.
pub fn check_mask_val(v: f64) -> Result<f64, SettingsError> {
    match MASK_VAL_RANGE.contains(&v) {
        true => Ok(v),
        false => Err(SettingsError::MaskVal { got: v }),
    }
}

impl MaskPoints {
    pub fn from_options(
        mask_val: Option<f64>,
        integrated: Option<usize>,
    ) -> Result<Self, SettingsError> {
        match (mask_val, integrated) {
            (Some(v), None) => Ok(MaskPoints::Value(check_mask_val(v)?)),
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

/// Which attribution method computes the scores. `MaskGradient` is AutoCircuit's
/// `mask_gradient_prune_scores` (summed over prompts); the others are the EAP-IG library's
/// `attribute(method=...)` (hannamw/EAP-IG 795f5607), with its normalisation: a mean over
/// prompts, and over steps or runs where the library divides by them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    #[default]
    MaskGradient,
    /// EAP-IG's `EAP`: the mask gradient at 0, divided by the prompt count.
    Eap,
    /// EAP-IG's `EAP-IG-inputs`: gradients at token embeddings interpolated from corrupt
    /// (k = 0) towards clean (k = steps − 1 of steps), Δ fixed.
    EapIgInputs { steps: usize },
    /// EAP-IG's `clean-corrupted`: gradients on the clean and on the corrupt prompts, Δ fixed.
    CleanCorrupted,
    /// EAP-IG's `EAP-IG-activations`: one node's output at a time (input, each attention
    /// layer, each MLP) set to `k/steps · clean + (1 − k/steps) · corrupt`, k = 1..steps.
    EapIgActivations { steps: usize },
    /// EAP-IG's `exact`: each edge patched alone (forward passes only), the mean over
    /// prompts of metric(clean) − metric(patched).
    Exact,
    /// AutoCircuit's `acdc_prune_scores` (KL divergence, the first train batch): at each τ,
    /// edges are visited by destination layer, last first, and stay patched while the KL
    /// grows by less than τ. An edge's score is the smallest τ that removed it, +∞ if none.
    Acdc { taus: Vec<f64> },
}

/// Most τ values one ACDC job runs (each is a work unit).
pub const MAX_ACDC_TAUS: usize = 64;

impl Method {
    /// Every method, by name.
    pub const NAMES: &'static str =
        "mask-gradient eap eap-ig-inputs clean-corrupted eap-ig-activations exact acdc";

    pub fn name(&self) -> &'static str {
        match self {
            Method::MaskGradient => "mask-gradient",
            Method::Eap => "eap",
            Method::EapIgInputs { .. } => "eap-ig-inputs",
            Method::CleanCorrupted => "clean-corrupted",
            Method::EapIgActivations { .. } => "eap-ig-activations",
            Method::Exact => "exact",
            Method::Acdc { .. } => "acdc",
        }
    }

    /// AutoCircuit's default τ grid of `acdc_prune_scores`: `a · 10^b` for a in
    /// [1, 3, 5, 7, 9] and b in −5..−2, in its `product(tao_bases, tao_exps)` order.
    pub fn default_taus() -> Vec<f64> {
        [1.0, 3.0, 5.0, 7.0, 9.0]
            .iter()
            .flat_map(|a| (-5..=-2).map(move |b| a * 10f64.powi(b)))
            .collect()
    }

    /// The method called `name`, with `steps` for the integrated-gradient ones (at least 1)
    /// and `taus` for ACDC (default: AutoCircuit's); the others take neither.
    pub fn from_name(
        name: &str,
        steps: Option<usize>,
        taus: Option<Vec<f64>>,
    ) -> Result<Self, SettingsError> {
        let refuse = |what: &'static str| SettingsError::NotTaken {
            method: name.to_string(),
            what,
        };
        if taus.is_some() && name != "acdc" {
            return Err(refuse("--taus"));
        }
        let need_steps = |make: fn(usize) -> Method| match steps {
            Some(s) if s >= 1 => Ok(make(s)),
            _ => Err(SettingsError::Steps {
                method: name.to_string(),
            }),
        };
        let no_steps = |m: Method| match steps {
            None => Ok(m),
            Some(_) => Err(refuse("--steps")),
        };
        match name {
            "mask-gradient" => no_steps(Method::MaskGradient),
            "eap" => no_steps(Method::Eap),
            "eap-ig-inputs" => need_steps(|steps| Method::EapIgInputs { steps }),
            "clean-corrupted" => no_steps(Method::CleanCorrupted),
            "eap-ig-activations" => need_steps(|steps| Method::EapIgActivations { steps }),
            "exact" => no_steps(Method::Exact),
            "acdc" => {
                let taus = taus.unwrap_or_else(Method::default_taus);
                if taus.is_empty()
                    || taus.len() > MAX_ACDC_TAUS
                    || taus.iter().any(|t| !(t.is_finite() && *t > 0.0))
                {
                    let shown: Vec<String> = taus.iter().take(5).map(f64::to_string).collect();
                    let more = taus.len().saturating_sub(5);
                    let got = match more {
                        0 => format!("[{}]", shown.join(", ")),
                        _ => format!(
                            "[{}, … {more} more] ({} values)",
                            shown.join(", "),
                            taus.len()
                        ),
                    };
                    return Err(SettingsError::Taus { got });
                }
                no_steps(Method::Acdc { taus })
            }
            _ => Err(SettingsError::UnknownName {
                what: "method",
                got: name.to_string(),
                expected: Method::NAMES,
            }),
        }
    }

    pub fn steps(&self) -> Option<usize> {
        match self {
            Method::EapIgInputs { steps } | Method::EapIgActivations { steps } => Some(*steps),
            _ => None,
        }
    }

    /// ACDC's τ values; none for the other methods.
    pub fn taus(&self) -> &[f64] {
        match self {
            Method::Acdc { taus } => taus,
            _ => &[],
        }
    }

    /// Values a unit result carries per edge: one per τ for ACDC (1 where that τ removed
    /// the edge), else one.
    pub fn slots_per_edge(&self) -> usize {
        self.taus().len().max(1)
    }

    /// What EAP-IG divides a sum over prompts by, per prompt: 1 for a plain mean, the steps,
    /// 2 for clean-corrupted's two runs, steps × (2L + 1) for the activation runs. `None` for
    /// AutoCircuit's mask gradient, which sums, and for ACDC.
    pub fn per_prompt_divisor(&self, n_layers: usize) -> Option<f64> {
        match self {
            Method::MaskGradient | Method::Acdc { .. } => None,
            Method::Eap | Method::Exact => Some(1.0),
            Method::EapIgInputs { steps } => Some(*steps as f64),
            Method::CleanCorrupted => Some(2.0),
            Method::EapIgActivations { steps } => Some((steps * (2 * n_layers + 1)) as f64),
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.steps(), self.taus()) {
            (Some(s), _) => write!(f, "{} ({s} steps)", self.name()),
            (None, []) => f.write_str(self.name()),
            (None, taus) => write!(f, "{} ({} taus)", self.name(), taus.len()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttributionSettings {
    /// Scores files from before methods existed read as AutoCircuit's mask gradient.
    #[serde(default)]
    pub method: Method,
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
            method: Method::MaskGradient,
            grad_function: GradFunction::Logit,
            answer_function: AnswerFunction::AvgDiff,
            points: MaskPoints::Value(0.0),
            separate_qkv: true,
            token_positions: false,
        }
    }
}

impl AttributionSettings {
    /// One line for listings, e.g. `mask-gradient, mask 0, logit avg_diff`: the method and
    /// the settings that tell two jobs of it apart.
    pub fn summary(&self) -> String {
        let mut parts = vec![self.method.to_string()];
        if self.method == Method::MaskGradient {
            parts.push(match self.points {
                MaskPoints::Value(v) => format!("mask {v}"),
                MaskPoints::Integrated(n) => format!("IG {n} samples"),
            });
        }
        parts.push(format!("{} {}", self.grad_function, self.answer_function));
        if self.token_positions {
            parts.push("token positions".into());
        }
        if !self.separate_qkv {
            parts.push("shared qkv".into());
        }
        parts.join(", ")
    }

    /// Refuses settings that do not go together: only the mask gradient takes mask points,
    /// and ACDC has no token-specific edges.
    pub fn check(&self) -> Result<(), SettingsError> {
        if self.method != Method::MaskGradient && self.points != MaskPoints::Value(0.0) {
            return Err(SettingsError::PointsNotTaken {
                method: self.method.name().to_string(),
            });
        }
        if self.token_positions && matches!(self.method, Method::Acdc { .. }) {
            return Err(SettingsError::NotTaken {
                method: "acdc".into(),
                what: "--token-positions (its visit order is defined for edges over all positions)",
            });
        }
        Ok(())
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

    #[test]
    fn methods_parse_by_name_and_refuse_wrong_steps_clearly() {
        assert_eq!(
            Method::from_name("eap-ig-inputs", Some(5), None).unwrap(),
            Method::EapIgInputs { steps: 5 }
        );
        assert_eq!(Method::from_name("eap", None, None).unwrap(), Method::Eap);
        let e = Method::from_name("eap-ig-activations", Some(0), None).unwrap_err();
        assert!(e.to_string().contains("at least 1"), "{e}");
        let e = Method::from_name("eap-ig-inputs", None, None).unwrap_err();
        assert!(e.to_string().contains("--steps"), "{e}");
        let e = Method::from_name("clean-corrupted", Some(3), None).unwrap_err();
        assert!(e.to_string().contains("takes no --steps"), "{e}");
        let e = Method::from_name("acdc2", None, None)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("\"acdc2\"") && e.contains("eap-ig-inputs"),
            "{e}"
        );
        let e = Method::from_name("acdc", None, Some(vec![]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("1 to 64 taus"), "{e}");
        let e = Method::from_name("eap", None, Some(vec![0.1]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("eap takes no --taus"), "{e}");
        let acdc = Method::from_name("acdc", None, None).unwrap();
        assert_eq!(acdc.taus().len(), 20);
        assert_eq!(acdc.taus()[..2], [1e-5, 1e-4]);
        let s = AttributionSettings {
            method: acdc,
            token_positions: true,
            ..Default::default()
        };
        assert!(s
            .check()
            .unwrap_err()
            .to_string()
            .contains("--token-positions"));
        let s = AttributionSettings {
            method: Method::Eap,
            points: MaskPoints::Integrated(3),
            ..Default::default()
        };
        assert!(s.check().unwrap_err().to_string().contains("no mask value"));
        assert_eq!(
            Method::EapIgActivations { steps: 5 }.per_prompt_divisor(2),
            Some(25.0)
        );
    }

    #[test]
    fn settings_from_before_methods_read_as_mask_gradient() {
        let old = r#"{"grad_function":"logit","answer_function":"avg_diff","points":{"value":0.0},"separate_qkv":true,"token_positions":false}"#;
        let s: AttributionSettings = serde_json::from_str(old).unwrap();
        assert_eq!(s, AttributionSettings::default());
        let new = serde_json::to_string(&AttributionSettings {
            method: Method::EapIgInputs { steps: 5 },
            ..Default::default()
        })
        .unwrap();
        assert!(
            new.contains(r#""method":{"eap_ig_inputs":{"steps":5}}"#),
            "{new}"
        );
    }
}
