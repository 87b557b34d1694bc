//! One attribution job in one process: dataset files → batches → mask-gradient scores →
//! the scores file. What `attrib-worker attribute` runs, as a function tests call directly.

use std::path::PathBuf;

use attrib_datasets::{prepare, Dataset, DatasetOptions, PromptFile, PromptTokenizer};
use attrib_proto::{AttributionSettings, DataSettings, ModelRecord, ScoresFile, ScoresMetadata};

use crate::attribution::{attribute_batches, graph_for, reduce, PassOptions, StageTimes};
use crate::model::Gpt2;
use crate::Result;

#[derive(Debug, Clone)]
pub struct AttributeJob {
    pub model_dir: PathBuf,
    pub datasets: Vec<PathBuf>,
    /// Prompt selection and batching; its `n_ctx` and `token_positions` are taken from the
    /// model and from `settings`, so there is one source of truth for each.
    pub data: DatasetOptions,
    pub settings: AttributionSettings,
    pub batches_per_pass: usize,
}

/// Reads and batches the job's prompts for `model`.
pub fn load_dataset(job: &AttributeJob, model: &Gpt2) -> Result<(Dataset, PromptTokenizer)> {
    let tok = PromptTokenizer::from_model_dir(&job.model_dir)?;
    let file = PromptFile::read_many(&job.datasets)?;
    let opts = DatasetOptions {
        n_ctx: model.cfg.n_ctx,
        token_positions: job.settings.token_positions,
        ..job.data.clone()
    };
    Ok((prepare(&file, &tok, &opts)?, tok))
}

/// Runs the job on `model`; `progress(done, total)` counts train batches.
pub fn run_attribute(
    job: &AttributeJob,
    model: &Gpt2,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<ScoresFile> {
    run_attribute_timed(job, model, progress).map(|(s, _)| s)
}

/// `run_attribute`, also reporting where the time went.
pub fn run_attribute_timed(
    job: &AttributeJob,
    model: &Gpt2,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(ScoresFile, StageTimes)> {
    let (dataset, tok) = load_dataset(job, model)?;
    let batches = dataset.train_batches(job.data.batch_size);
    let graph = graph_for(model, &job.settings, dataset.width);
    let opts = PassOptions {
        batches_per_pass: job.batches_per_pass,
        pad_id: tok.bos_id(),
        prepend_bos: job.data.prepend_bos,
    };
    let attributed = attribute_batches(model, &graph, &batches, &job.settings, &opts, progress)?;
    let reduced = reduce(&attributed.batches);
    let meta = ScoresMetadata {
        n_edges: graph.n_edges(),
        clean_logit_diff: reduced.clean_logit_diff,
        settings: job.settings,
        data: DataSettings {
            files: job
                .datasets
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            batch_size: job.data.batch_size,
            train_size: job.data.train_size,
            test_size: job.data.test_size,
            prepend_bos: job.data.prepend_bos,
            seed: job.data.seed,
            width: dataset.width,
            seq_labels: dataset.seq_labels.clone(),
        },
        model: ModelRecord {
            path: job.model_dir.display().to_string(),
            n_layers: model.cfg.n_layers,
            n_heads: model.cfg.n_heads,
            d_model: model.cfg.d_model,
        },
    };
    let file = ScoresFile::from_parts(meta, &graph, &reduced.scores);
    Ok((file, attributed.times))
}
