//! One attribution job in one process: dataset files → batches → scores (any method) →
//! the scores file (`attrib-worker attribute`); and the faithfulness of those scores' circuits
//! on the test prompts (`attrib-worker faithfulness`). Functions tests call directly.

use std::path::PathBuf;

use attrib_datasets::{prepare, Dataset, DatasetOptions, PromptFile, PromptTokenizer};
use attrib_proto::faithfulness::{circuits, edge_counts};
use attrib_proto::units::{unit_ranges, Accumulator};
use attrib_proto::{
    v1, AttributionSettings, DataSettings, FaithfulnessCurve, ModelRecord, ScoresFile,
    ScoresMetadata,
};

use crate::attribution::{attribute_batches, Attributed, PassOptions};
use crate::circuit::{evaluate_unit, UnitCircuits};
use crate::model::Gpt2;
use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct AttributeJob {
    pub model_dir: PathBuf,
    pub datasets: Vec<PathBuf>,
    /// Prompt selection, batching and K (batches per work unit, one pass each), as a cluster
    /// job carries them (`attrib_proto::JobSpec::data_options`).
    pub data: v1::DataOptions,
    pub settings: AttributionSettings,
}

impl AttributeJob {
    /// K: batches per work unit (0 reads as 1, as on the cluster).
    pub fn batches_per_unit(&self) -> usize {
        self.data.batches_per_unit.max(1) as usize
    }
}

/// Reads and batches the job's prompts for `model`.
pub fn load_dataset(job: &AttributeJob, model: &Gpt2) -> Result<(Dataset, PromptTokenizer)> {
    let tok = PromptTokenizer::from_model_dir(&job.model_dir)?;
    let file = PromptFile::read_many(&job.datasets)?;
    let opts = DatasetOptions::for_job(&job.data, model.cfg.n_ctx, job.settings.token_positions);
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

/// `run_attribute`, also reporting where the time and memory went (the sums are consumed).
pub fn run_attribute_timed(
    job: &AttributeJob,
    model: &Gpt2,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(ScoresFile, Attributed)> {
    let (dataset, tok) = load_dataset(job, model)?;
    let batches = dataset.train_batches(job.data.batch_size as usize);
    let graph = model.cfg.graph(&job.settings, dataset.width);
    let opts = PassOptions {
        batches_per_unit: job.batches_per_unit(),
        pad_id: tok.bos_id(),
        prepend_bos: job.data.prepend_bos,
        synced_stages: true,
        edges: None,
        tau: None,
    };
    let attributed = attribute_batches(model, &graph, &batches, &job.settings, &opts, progress)?;
    let reduced = attributed
        .sums
        .reduced()
        .normalised(&job.settings, graph.n_layers);
    let files = job.datasets.iter().map(|p| p.display().to_string());
    let data = DataSettings::new(
        &job.data,
        files.collect(),
        dataset.width,
        dataset.seq_labels.clone(),
    );
    let model_record = ModelRecord::new(&job.model_dir, &model.cfg);
    let meta = ScoresMetadata {
        // As on a cluster: where the bits were made, to compare with a job's scores.
        device_class: crate::device_class::device_class(model.device)?,
        ..ScoresMetadata::new(&graph, &reduced, &job.settings, data, model_record)
    };
    let file = ScoresFile::from_parts(meta, &graph, &reduced.scores);
    Ok((file, attributed))
}

/// Circuit faithfulness of a scores file in one process (`attrib-worker faithfulness`).
#[derive(Debug, Clone)]
pub struct FaithfulnessJob {
    pub model_dir: PathBuf,
    pub scores: ScoresFile,
    /// Where the scores came from, recorded in the curve.
    pub scores_from: String,
    /// The prompt files; the scores file's own `data.files` when empty.
    pub datasets: Vec<PathBuf>,
    /// Edge counts asked for (0 and all edges are always added).
    pub edge_counts: Vec<usize>,
}

/// The curve and every unit's per-prompt values (for inspection and tests).
pub struct Faithfulness {
    pub curve: FaithfulnessCurve,
    pub units: Vec<UnitCircuits>,
}

/// Runs the job on `model` in units of the scores' K test batches, every circuit in one group
/// (the cluster may split them: a circuit's values do not depend on its group);
/// `progress(done, total)` counts test batches.
pub fn run_faithfulness(
    job: &FaithfulnessJob,
    model: &Gpt2,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<Faithfulness> {
    let s = &job.scores;
    if (s.model.n_layers, s.model.n_heads) != (model.cfg.n_layers, model.cfg.n_heads) {
        return Err(Error::BadScores(format!(
            "the scores are for a model with {} layers and {} heads, this model has {} and {}",
            s.model.n_layers, s.model.n_heads, model.cfg.n_layers, model.cfg.n_heads
        )));
    }
    let scores = s.flat_scores().map_err(Error::BadScores)?;
    let datasets = if job.datasets.is_empty() {
        s.data.files.iter().map(PathBuf::from).collect()
    } else {
        job.datasets.clone()
    };
    let attribute = AttributeJob {
        model_dir: job.model_dir.clone(),
        datasets,
        data: s.data.data_options(),
        settings: s.settings.clone(),
    };
    let (dataset, tok) = load_dataset(&attribute, model)?;
    if dataset.width != s.data.width {
        return Err(Error::BadScores(format!(
            "the prompts are {} tokens wide here but {} when the scores were made: not the same dataset",
            dataset.width, s.data.width
        )));
    }
    let batches = dataset.test_batches(s.data.batch_size);
    if batches.is_empty() {
        return Err(Error::NoTestBatches {
            test_size: s.data.test_size,
            batch_size: s.data.batch_size,
        });
    }
    let graph = s.graph();
    let circuits = circuits(&scores, &edge_counts(&job.edge_counts, scores.len()));
    let mut sums = Accumulator::circuits(circuits.len());
    let mut units = Vec::new();
    for (u, range) in unit_ranges(batches.len(), s.data.batches_per_unit)
        .into_iter()
        .enumerate()
    {
        let end = range.end;
        let unit = evaluate_unit(
            model,
            &graph,
            &scores,
            &circuits,
            &batches[range],
            tok.bos_id(),
            s.data.prepend_bos,
        )?;
        sums.fold_circuits(
            0..circuits.len(),
            &unit.to_result(String::new(), u as u32, 0.0),
        )
        .map_err(|e| Error::Unit {
            unit: u as u32,
            reason: e.to_string(),
        })?;
        units.push(unit);
        progress(end, batches.len());
    }
    Ok(Faithfulness {
        curve: sums.curve(job.scores_from.clone(), scores.len(), &circuits),
        units,
    })
}
