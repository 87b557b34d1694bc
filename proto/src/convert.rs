//! Conversions between the wire messages (`v1`) and the plain types every role computes
//! with. Wire input is untrusted: conversions from `v1` check it and say what is wrong.

use crate::settings::{AnswerFunction, AttributionSettings, GradFunction, MaskPoints, Method};
use crate::topology::GraphShape;
use crate::v1;

/// A wire message that does not describe a valid value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    #[error("{field} is missing")]
    Missing { field: &'static str },
    #[error("{field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

/// A job's datasets from its prompt files: one dataset of all of them (`merge`, as AutoCircuit
/// merges files), or one dataset per file.
pub fn dataset_specs(files: Vec<v1::PromptFileText>, merge: bool) -> Vec<v1::DatasetSpec> {
    let spec = |files| v1::DatasetSpec {
        name: String::new(),
        files,
    };
    if merge {
        vec![spec(files)]
    } else {
        files.into_iter().map(|f| spec(vec![f])).collect()
    }
}

impl From<&AttributionSettings> for v1::AttributionSettings {
    fn from(s: &AttributionSettings) -> Self {
        let grad_function = match s.grad_function {
            GradFunction::Logit => v1::GradFunction::Logit,
            GradFunction::Prob => v1::GradFunction::Prob,
            GradFunction::Logprob => v1::GradFunction::Logprob,
            GradFunction::LogitExp => v1::GradFunction::LogitExp,
        };
        let answer_function = match s.answer_function {
            AnswerFunction::AvgDiff => v1::AnswerFunction::AvgDiff,
            AnswerFunction::AvgVal => v1::AnswerFunction::AvgVal,
        };
        let points = match s.points {
            MaskPoints::Value(v) => v1::attribution_settings::Points::MaskVal(v),
            MaskPoints::Integrated(n) => {
                v1::attribution_settings::Points::IntegratedGradSamples(n as u32)
            }
        };
        let method = match &s.method {
            Method::MaskGradient => v1::Method::MaskGradient,
            Method::Eap => v1::Method::Eap,
            Method::EapIgInputs { .. } => v1::Method::EapIgInputs,
            Method::CleanCorrupted => v1::Method::CleanCorrupted,
            Method::EapIgActivations { .. } => v1::Method::EapIgActivations,
            Method::Exact => v1::Method::Exact,
            Method::Acdc { .. } => v1::Method::Acdc,
        };
        v1::AttributionSettings {
            grad_function: grad_function as i32,
            answer_function: answer_function as i32,
            points: Some(points),
            separate_qkv: s.separate_qkv,
            token_positions: s.token_positions,
            method: method as i32,
            steps: s.method.steps().unwrap_or(0) as u32,
            taus: s.method.taus().to_vec(),
        }
    }
}

impl TryFrom<&v1::AttributionSettings> for AttributionSettings {
    type Error = WireError;

    fn try_from(s: &v1::AttributionSettings) -> Result<Self, WireError> {
        let grad_function = match v1::GradFunction::try_from(s.grad_function) {
            Ok(v1::GradFunction::Logit) => GradFunction::Logit,
            Ok(v1::GradFunction::Prob) => GradFunction::Prob,
            Ok(v1::GradFunction::Logprob) => GradFunction::Logprob,
            Ok(v1::GradFunction::LogitExp) => GradFunction::LogitExp,
            _ => return Err(unknown("settings.grad_function", s.grad_function)),
        };
        let answer_function = match v1::AnswerFunction::try_from(s.answer_function) {
            Ok(v1::AnswerFunction::AvgDiff) => AnswerFunction::AvgDiff,
            Ok(v1::AnswerFunction::AvgVal) => AnswerFunction::AvgVal,
            _ => return Err(unknown("settings.answer_function", s.answer_function)),
        };
        let points = match s.points {
            None => {
                return Err(WireError::Missing {
                    field: "settings.points (mask_val or integrated_grad_samples)",
                })
            }
            Some(v1::attribution_settings::Points::MaskVal(v)) => {
                MaskPoints::from_options(Some(v), None).map_err(|e| WireError::Invalid {
                    field: "settings.mask_val",
                    reason: e.to_string(),
                })?
            }
            Some(v1::attribution_settings::Points::IntegratedGradSamples(n)) if n > 0 => {
                MaskPoints::Integrated(n as usize)
            }
            Some(_) => {
                return Err(WireError::Invalid {
                    field: "settings.points",
                    reason: "integrated_grad_samples must be at least 1".into(),
                })
            }
        };
        let name = match v1::Method::try_from(s.method) {
            // Unset reads as the default: protocol 3 clients (and jobs they stored) sent 0
            // for the mask gradient.
            Ok(v1::Method::Unspecified | v1::Method::MaskGradient) => "mask-gradient",
            Ok(v1::Method::Eap) => "eap",
            Ok(v1::Method::EapIgInputs) => "eap-ig-inputs",
            Ok(v1::Method::CleanCorrupted) => "clean-corrupted",
            Ok(v1::Method::EapIgActivations) => "eap-ig-activations",
            Ok(v1::Method::Exact) => "exact",
            Ok(v1::Method::Acdc) => "acdc",
            _ => return Err(unknown("settings.method", s.method)),
        };
        let invalid = |field, e: crate::SettingsError| WireError::Invalid {
            field,
            reason: e.to_string(),
        };
        let steps = (s.steps != 0).then_some(s.steps as usize);
        let taus = (!s.taus.is_empty()).then(|| s.taus.clone());
        let method =
            Method::from_name(name, steps, taus).map_err(|e| invalid("settings.method", e))?;
        let settings = AttributionSettings {
            method,
            grad_function,
            answer_function,
            points,
            separate_qkv: s.separate_qkv,
            token_positions: s.token_positions,
        };
        settings
            .check()
            .map_err(|e| invalid("settings.points", e))?;
        Ok(settings)
    }
}

fn unknown(field: &'static str, value: i32) -> WireError {
    WireError::Invalid {
        field,
        reason: format!("{value} is not a known value"),
    }
}

impl From<&GraphShape> for v1::GraphShape {
    fn from(g: &GraphShape) -> Self {
        v1::GraphShape {
            n_layers: g.n_layers as u32,
            n_heads: g.n_heads as u32,
            separate_qkv: g.separate_qkv,
            seq_len: g.seq_len.unwrap_or(0) as u32,
        }
    }
}

impl From<&v1::GraphShape> for GraphShape {
    fn from(g: &v1::GraphShape) -> Self {
        GraphShape {
            n_layers: g.n_layers as usize,
            n_heads: g.n_heads as usize,
            separate_qkv: g.separate_qkv,
            seq_len: (g.seq_len > 0).then_some(g.seq_len as usize),
        }
    }
}

impl v1::JobState {
    /// Done, failed or cancelled: nothing will change any more.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            v1::JobState::Done | v1::JobState::Failed | v1::JobState::Cancelled
        )
    }

    /// Lower-case name for people and JSON output.
    pub fn label(self) -> &'static str {
        match self {
            v1::JobState::Unspecified => "unspecified",
            v1::JobState::Queued => "queued",
            v1::JobState::Running => "running",
            v1::JobState::Done => "done",
            v1::JobState::Failed => "failed",
            v1::JobState::Cancelled => "cancelled",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_round_trip_and_bad_ones_are_named() {
        let s = AttributionSettings {
            method: Method::MaskGradient,
            grad_function: GradFunction::LogitExp,
            answer_function: AnswerFunction::AvgVal,
            points: MaskPoints::Integrated(5),
            separate_qkv: false,
            token_positions: true,
        };
        let wire = v1::AttributionSettings::from(&s);
        assert_eq!(AttributionSettings::try_from(&wire).unwrap(), s);
        for method in [
            Method::Acdc {
                taus: vec![0.01, 0.001],
            },
            Method::EapIgActivations { steps: 3 },
            Method::Exact,
        ] {
            let s = AttributionSettings {
                method,
                ..Default::default()
            };
            let back = AttributionSettings::try_from(&v1::AttributionSettings::from(&s));
            assert_eq!(back.unwrap(), s);
        }
        let bad = v1::AttributionSettings {
            grad_function: 0,
            ..wire.clone()
        };
        let e = AttributionSettings::try_from(&bad).unwrap_err().to_string();
        assert!(e.contains("grad_function"), "{e}");
        let no_points = v1::AttributionSettings {
            points: None,
            ..wire.clone()
        };
        assert!(AttributionSettings::try_from(&no_points).is_err());
        // The coordinator refuses the mask values the client's --mask-val refuses.
        for v in [2.0, -0.5, f64::NAN, f64::INFINITY] {
            let outside = v1::AttributionSettings {
                points: Some(v1::attribution_settings::Points::MaskVal(v)),
                ..wire.clone()
            };
            let e = AttributionSettings::try_from(&outside)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains("settings.mask_val") && e.contains("0 (clean) to 1"),
                "{e}"
            );
        }
    }

    /// Protocol 4's Method: the mask gradient is sent as 7, and an unset method (0, what a
    /// protocol 3 client sent for the mask gradient, and what its stored jobs hold) still
    /// reads as the mask gradient.
    #[test]
    fn an_unset_method_is_the_mask_gradient() {
        let s = AttributionSettings::default();
        let mut wire = v1::AttributionSettings::from(&s);
        assert_eq!(wire.method(), v1::Method::MaskGradient);
        assert_eq!(wire.method, 7);
        wire.method = v1::Method::Unspecified as i32;
        assert_eq!(wire.method, 0);
        assert_eq!(AttributionSettings::try_from(&wire).unwrap(), s);
        wire.method = 8;
        let e = AttributionSettings::try_from(&wire)
            .unwrap_err()
            .to_string();
        assert!(e.contains("settings.method") && e.contains('8'), "{e}");
    }

    #[test]
    fn graph_shape_round_trips() {
        let g = GraphShape {
            n_layers: 2,
            n_heads: 3,
            separate_qkv: true,
            seq_len: Some(7),
        };
        assert_eq!(GraphShape::from(&v1::GraphShape::from(&g)), g);
    }
}
