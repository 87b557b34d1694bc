//! Mask-gradient attribution (AutoCircuit's `mask_gradient_prune_scores`), its metric, the
//! driver over batches, and two slow references used to cross-check it: EAP (spec 5.4) and
//! plain autograd on explicit masks.

pub mod autograd_reference;
pub mod eap;
pub mod mask_gradient;
pub mod metric;
pub mod run;

pub use eap::eap_batch_scores;
pub use mask_gradient::{
    pass_input, pass_scores, pass_scores_timed, BatchScores, PassInput, StageTimes,
};
pub use metric::{apply_grad_function, AnswerIndex, BatchAnswers};
pub use run::{
    attribute_batches, catch_torch, graph_for, reduce, Attributed, PassOptions, Reduced,
};
