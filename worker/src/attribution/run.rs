//! Attribution over a list of batches: group them into passes, run each, hand back per-batch
//! score sums, and reduce them the one way every attrib path reduces (batch order, f64).

use std::panic::{catch_unwind, AssertUnwindSafe};

use attrib_datasets::Batch;
pub use attrib_proto::Reduced;
use attrib_proto::{AttributionSettings, BatchOrderSum, GraphShape};

use super::mask_gradient::{pass_input, pass_scores_timed, BatchScores, StageTimes};
use crate::model::Gpt2;
use crate::{Error, Result};

/// How batches are fed to the model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PassOptions {
    /// Batches run together in one forward/backward pass (changes no score: the loss is a
    /// sum of per-batch means and scores are contracted per batch).
    pub batches_per_pass: usize,
    /// Token id used for left padding (GPT-2: `<|endoftext|>`).
    pub pad_id: i64,
    pub prepend_bos: bool,
}

impl Default for PassOptions {
    fn default() -> Self {
        PassOptions {
            batches_per_pass: 1,
            pad_id: 50256,
            prepend_bos: true,
        }
    }
}

/// The graph attributed for `settings` on prompts `width` tokens wide.
pub fn graph_for(model: &Gpt2, settings: &AttributionSettings, width: usize) -> GraphShape {
    GraphShape {
        n_layers: model.cfg.n_layers,
        n_heads: model.cfg.n_heads,
        separate_qkv: settings.separate_qkv,
        seq_len: settings.token_positions.then_some(width),
    }
}

/// Per-batch score sums in batch order, and where the time went.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributed {
    pub batches: Vec<BatchScores>,
    pub times: StageTimes,
}

/// Per-batch score sums for `batches`, in their order. `progress(done, total)` after each pass.
pub fn attribute_batches(
    model: &Gpt2,
    graph: &GraphShape,
    batches: &[Batch],
    settings: &AttributionSettings,
    opts: &PassOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Attributed> {
    let first = batches.first().ok_or(Error::NoBatches)?;
    if batches
        .iter()
        .any(|b| b.batch_size != first.batch_size || b.width != first.width)
    {
        return Err(Error::UnevenBatches);
    }
    if let Some(t) = graph.seq_len {
        if t != first.width {
            return Err(Error::SeqLenMismatch {
                width: first.width,
                seq_len: t,
            });
        }
    }
    let mut out = Attributed {
        batches: Vec::with_capacity(batches.len()),
        times: StageTimes::default(),
    };
    for group in batches.chunks(opts.batches_per_pass.max(1)) {
        let pass = pass_input(model, group, opts.pad_id, opts.prepend_bos)?;
        let (scores, times) = catch_torch(|| pass_scores_timed(model, graph, &pass, settings))??;
        out.batches.extend(scores);
        out.times += times;
        progress(out.batches.len(), batches.len());
    }
    Ok(out)
}

/// Final scores and the mean clean logit difference, through the reduction the cluster uses.
pub fn reduce(batches: &[BatchScores]) -> Reduced {
    let mut sum = BatchOrderSum::default();
    for (i, b) in batches.iter().enumerate() {
        sum.add(i, &b.scores, b.clean_logit_diff_sum, b.n_prompts);
    }
    sum.finish()
}

/// Runs `f`, turning a libtorch panic (tch's non-`f_` ops panic on C++ errors) into an error.
pub fn catch_torch<T>(f: impl FnOnce() -> T) -> Result<T> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|e| {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "unknown panic".into());
        Error::TorchPanic(msg)
    })
}
