//! The answer metric AutoCircuit differentiates (spec 5.1): a `grad_function` applied to the
//! last-position logits, then an `answer_function` over each prompt's answer tokens.

use attrib_proto::{AnswerFunction, GradFunction};
use tch::{Device, Kind, Tensor};

use crate::device::upload;

/// `z` `[B, V]` → `v` `[B, V]`.
pub fn apply_grad_function(f: GradFunction, z: &Tensor) -> Tensor {
    match f {
        GradFunction::Logit => z.shallow_clone(),
        GradFunction::Prob => z.softmax(-1, Kind::Float),
        GradFunction::Logprob => z.log_softmax(-1, Kind::Float),
        GradFunction::LogitExp => {
            let e = z.exp(); // no max-subtraction, as AutoCircuit
            let total = e.sum_dim_intlist(-1, true, Kind::Float).detach();
            e / total
        }
    }
}

/// Answer token ids of a batch as a gather index `[B, n]` and weights `[B, n]` that average
/// each prompt's own answers (prompts may have different numbers of answers).
pub struct AnswerIndex {
    idx: Tensor,
    weight: Tensor,
}

impl AnswerIndex {
    pub fn new(answers: &[Vec<i64>], device: Device) -> Self {
        let n = answers.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut idx = Vec::with_capacity(answers.len() * n);
        let mut weight = Vec::with_capacity(answers.len() * n);
        for a in answers {
            for j in 0..n {
                idx.push(*a.get(j).unwrap_or(&a[0]));
                weight.push(if j < a.len() {
                    1.0 / a.len() as f32
                } else {
                    0.0
                });
            }
        }
        let shape = [answers.len() as i64, n as i64];
        AnswerIndex {
            idx: upload(Tensor::from_slice(&idx).reshape(shape), device),
            weight: upload(Tensor::from_slice(&weight).reshape(shape), device),
        }
    }

    /// Mean of `v` over each prompt's answers: `[B]`.
    pub fn per_prompt_mean(&self, v: &Tensor) -> Tensor {
        (v.gather(1, &self.idx, false) * &self.weight).sum_dim_intlist(1, false, Kind::Float)
    }
}

/// Right and wrong answers of one batch.
pub struct BatchAnswers {
    pub answers: AnswerIndex,
    pub wrong: AnswerIndex,
}

impl BatchAnswers {
    pub fn new(answers: &[Vec<i64>], wrong: &[Vec<i64>], device: Device) -> Self {
        BatchAnswers {
            answers: AnswerIndex::new(answers, device),
            wrong: AnswerIndex::new(wrong, device),
        }
    }

    /// The answer function's value on `v` `[B, V]` (a scalar).
    pub fn value(&self, v: &Tensor, f: AnswerFunction) -> Tensor {
        self.per_prompt(v, f).mean(Kind::Float)
    }

    /// The answer function's value per prompt `[B]`, before the batch mean.
    pub fn per_prompt(&self, v: &Tensor, f: AnswerFunction) -> Tensor {
        match f {
            AnswerFunction::AvgDiff => {
                self.answers.per_prompt_mean(v) - self.wrong.per_prompt_mean(v)
            }
            AnswerFunction::AvgVal => self.answers.per_prompt_mean(v),
        }
    }

    /// Per-prompt logit difference `[B]` from logits `[B, V]`.
    pub fn logit_diff(&self, z: &Tensor) -> Tensor {
        self.answers.per_prompt_mean(z) - self.wrong.per_prompt_mean(z)
    }
}
