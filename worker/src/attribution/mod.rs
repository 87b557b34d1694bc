//! Mask-gradient attribution (AutoCircuit's `mask_gradient_prune_scores`), its metric, the
//! driver over batches, and two slow references used to cross-check it: EAP (spec 5.4) and
//! plain autograd on explicit masks.

pub mod acdc;
pub mod autograd_reference;
pub mod eap;
pub mod exact;
pub mod mask_gradient;
pub mod metric;
pub mod run;
mod runs;
mod stages;
mod uniform_patcher;

pub use eap::eap_batch_scores;
pub use mask_gradient::{
    pass_input, pass_scores, pass_scores_timed, PassInput, StageTimes, UnitScores,
};
pub use metric::{apply_grad_function, AnswerIndex, BatchAnswers};
pub use run::{
    attribute_batches, attribute_unit, catch_torch, check_unit, Attributed, PassOptions, Reduced,
};
